"""The one place in tinygen that touches CuPy: import it, compile ``kernels/cuda/*.cu``, launch.

* :func:`get_cupy` imports CuPy lazily (on first use, never at ``import tinygen``) and returns the
  module, or raises ``RuntimeError`` saying why a CUDA device cannot be used (CuPy missing, no
  driver, no GPU).
* :func:`source` reads ``kernels/cuda/<file>.cu`` once and prefixes ``#line 1 "<path>"`` so that
  compiler errors point at the real file and line.
* :func:`module` compiles a file with ``cupy.RawModule(code=..., options=...)`` once per process
  and device; :func:`kernel` hands out one of its ``extern "C"`` kernels by name, an object called
  with CuPy's convention ``k(grid, block, args)``.
* :func:`launch` checks the arguments first: device arrays and NumPy scalars of the exact dtype
  (``np.int32``, ``np.int64`` for ``long long``, ``np.float32``, ``np.float64``). CuPy passes a
  Python ``float`` as a C ``double`` and a Python ``int`` as a 64-bit integer whatever the kernel
  declares, so a ``float``/``int`` parameter given a Python number reads garbage on a GPU;
  :func:`launch` refuses them.
* float32/float64 variants of a kernel are ``<name>_f32`` / ``<name>_f64`` (:func:`variant`),
  generated in the ``.cu`` file from one templated body by a macro.

Under ``make test-gpu-emu`` the test suite puts a stand-in ``cupy`` module (tests/cuda_emu) into
``sys.modules`` before tinygen is imported; this file cannot tell the difference and needs none.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

__all__ = ["get_cupy", "cupy", "get_cupyx", "source", "module", "kernel", "launch", "variant", "blocks_for",
           "CU_DIR", "COMPILE_OPTIONS", "SCALAR_TYPES"]

CU_DIR = Path(__file__).resolve().parent
#: NVRTC options for every module (the emulator and the nvcc test use the same language level).
COMPILE_OPTIONS = ("-std=c++17",)
#: The only scalar types a kernel argument may have (C int, long long, float, double).
SCALAR_TYPES = (np.int32, np.int64, np.float32, np.float64)

_cupy = None
_cupy_error: str | None = None
_sources: dict[str, str] = {}
_modules: dict[tuple[int, str], object] = {}
_kernels: dict[tuple[int, str, str], object] = {}


def get_cupy():
    """The ``cupy`` module, imported once; ``RuntimeError`` when CuPy or a CUDA GPU is missing."""
    global _cupy, _cupy_error
    if _cupy is None and _cupy_error is None:
        try:
            import cupy
            if cupy.cuda.runtime.getDeviceCount() < 1:
                raise RuntimeError("CuPy found no CUDA device")
            _cupy = cupy
        except Exception as exc:  # ImportError, CUDARuntimeError (no driver), ...
            _cupy_error = f"{type(exc).__name__}: {exc}"
    if _cupy is None:
        raise RuntimeError(
            f"the CUDA backend needs CuPy and a CUDA GPU, which are not available ({_cupy_error}); "
            "install the 'cuda' extra on a machine with a GPU or use device='cpu'")
    return _cupy


cupy = get_cupy  # short name used by the kernel wrappers: ``cp = _runtime.cupy()``


def get_cupyx(submodule: str = ""):
    """``cupyx`` or ``cupyx.<submodule>`` (e.g. ``"scipy.special"``), imported after CuPy (so
    that the engine needs no CuPy import of its own)."""
    get_cupy()
    return importlib.import_module("cupyx" + ("." + submodule if submodule else ""))


def source(cu_file: str) -> str:
    """The text of ``kernels/cuda/<cu_file>`` (read once), starting with a ``#line`` directive.
    An absolute path names a ``.cu`` file of the user's own (docs/extending.md)."""
    text = _sources.get(cu_file)
    if text is None:
        path = Path(cu_file) if Path(cu_file).is_absolute() else CU_DIR / cu_file
        inside = path.parent == CU_DIR or Path(cu_file).is_absolute()
        if path.suffix != ".cu" or not inside or not path.is_file():
            raise ValueError(f"cu_file must name a .cu file in {CU_DIR} (or be an absolute "
                             f"path to one), got {cu_file!r}")
        text = f'#line 1 "{path}"\n' + path.read_text()
        _sources[cu_file] = text
    return text


def _device_id(cp) -> int:
    return int(cp.cuda.runtime.getDevice())


def module(cu_file: str):
    """``cupy.RawModule`` of ``cu_file``, compiled once per process and device."""
    cp = get_cupy()
    key = (_device_id(cp), cu_file)
    mod = _modules.get(key)
    if mod is None:
        mod = cp.RawModule(code=source(cu_file), options=COMPILE_OPTIONS)
        _modules[key] = mod
    return mod


def kernel(cu_file: str, name: str):
    """The kernel ``name`` of ``cu_file``, called as ``k(grid, block, args)`` (CuPy's way)."""
    cp = get_cupy()
    key = (_device_id(cp), cu_file, name)
    k = _kernels.get(key)
    if k is None:
        k = module(cu_file).get_function(name)
        _kernels[key] = k
    return k


def variant(name: str, dtype) -> str:
    """``<name>_f32`` or ``<name>_f64`` for a float32/float64 dtype; ``TypeError`` otherwise."""
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return name + "_f32"
    if dtype == np.float64:
        return name + "_f64"
    raise TypeError(f"{name}: CUDA kernels take float32 or float64 arrays, got {dtype}")


def blocks_for(n: int, threads: int, max_blocks: int = 65535) -> int:
    """Grid size for a grid-stride loop over ``n`` elements with ``threads`` per block."""
    return max(1, min(max_blocks, -(-int(n) // threads)))


def _check_args(name: str, args) -> None:
    for i, a in enumerate(args):
        if isinstance(a, SCALAR_TYPES):
            continue
        if isinstance(a, (bool, int, float, np.generic)):
            raise TypeError(
                f"{name}: argument {i} is {type(a).__name__} {a!r}; pass np.int32, np.int64, "
                "np.float32 or np.float64 (CuPy passes Python ints as int64 and floats as "
                "double whatever the kernel declares)")
        if isinstance(a, np.ndarray):
            raise TypeError(f"{name}: argument {i} is a NumPy array; kernels take device arrays")
        if not getattr(a, "flags", None) or not a.flags.c_contiguous:
            raise TypeError(f"{name}: argument {i} must be a C-contiguous device array "
                            f"(a kernel sees only a pointer), got {type(a).__name__}")


def launch(cu_file: str, name: str, grid, block, args) -> None:
    """Check ``args`` (device arrays and exact NumPy scalars only) and launch ``name``."""
    args = tuple(args)
    _check_args(name, args)
    kernel(cu_file, name)(tuple(grid) if not isinstance(grid, int) else (grid,),
                          tuple(block) if not isinstance(block, int) else (block,), args)
