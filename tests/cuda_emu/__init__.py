"""Run tinygen's CUDA C kernels on the CPU (tests only; never installed, never seen by users).

:func:`compile_source` compiles a ``.cu`` text with g++ and ``cuda_emu.h`` force-included (the
file is not changed), after finding its ``extern "C" __global__`` kernels in the preprocessed
text (so kernels stamped out by macros are found) and appending one C++ thunk per kernel that
unpacks a ``void**`` argument array. :class:`EmuModule` / :class:`EmuKernel` launch them with
CuPy's calling convention ``k(grid, block, args)`` and check every argument against the C
signature exactly: a ``float*`` takes a float32 array, an ``int`` an ``np.int32`` -- a Python
``float`` or ``int`` is refused, since real CuPy would pass it as a double / 64-bit integer.

Settings (environment, or :func:`set_order`):

* ``TINYGEN_EMU_ORDER`` -- thread order within a block: ``forward`` (default), ``reverse`` or
  ``random`` (seeded by ``TINYGEN_EMU_SEED``, re-drawn every scheduling round);
* ``TINYGEN_EMU_SANITIZE`` -- ``address`` (ASan + UBSan) or ``thread`` (TSan) builds; the
  process must then have the sanitizer runtime preloaded (see tests/test_cuda_emu.py).

Compiled libraries are cached by content hash in ``$TMPDIR/tinygen-cuda-emu-<uid>/``.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["HEADER", "compile_source", "EmuModule", "EmuKernel", "EmuError", "set_order",
           "get_order", "Param", "gxx"]

HEADER = Path(__file__).resolve().parent / "cuda_emu.h"
_ORDERS = {"forward": 0, "reverse": 1, "random": 2}
_order = os.environ.get("TINYGEN_EMU_ORDER", "forward")
_seed = int(os.environ.get("TINYGEN_EMU_SEED", "0"))
_lock = threading.Lock()
_libs: dict[str, "_Lib"] = {}


class EmuError(RuntimeError):
    """A kernel misbehaved under emulation (barrier divergence, deadlock, bad warp mask, an
    out-of-bounds write into a guard, a wrong argument)."""


def set_order(order: str, seed: int = 0) -> None:
    """Thread order for the following launches: ``forward``, ``reverse`` or ``random``."""
    global _order, _seed
    if order not in _ORDERS:
        raise ValueError(f"order must be one of {sorted(_ORDERS)}, got {order!r}")
    _order, _seed = order, int(seed)


def get_order() -> tuple[str, int]:
    return _order, _seed


def gxx() -> str | None:
    """The g++ executable, or None."""
    return shutil.which(os.environ.get("CXX", "g++"))


def _sanitize_flags() -> list[str]:
    mode = os.environ.get("TINYGEN_EMU_SANITIZE", "")
    if mode == "address":
        return ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                "-fno-omit-frame-pointer"]
    if mode == "thread":
        return ["-fsanitize=thread"]
    if mode:
        raise ValueError(f"TINYGEN_EMU_SANITIZE must be 'address' or 'thread', got {mode!r}")
    return []


# -- signatures ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One kernel parameter: the C base type and whether it is a pointer."""
    ctype: str         # "float", "double", "int", "long long", "unsigned int", "unsigned char"
    pointer: bool
    name: str


_SCALARS = {
    "float": (np.float32, ctypes.c_float),
    "double": (np.float64, ctypes.c_double),
    "int": (np.int32, ctypes.c_int32),
    "long long": (np.int64, ctypes.c_int64),
    "long long int": (np.int64, ctypes.c_int64),
    "unsigned int": (np.uint32, ctypes.c_uint32),
    "unsigned": (np.uint32, ctypes.c_uint32),
    "unsigned char": (np.uint8, ctypes.c_uint8),
    "bool": (np.bool_, ctypes.c_bool),
}
_KERNEL_RE = re.compile(r'extern\s+"C"\s+__emu_kernel__\s+void\s+(\w+)\s*\(([^)]*)\)')


def _parse_param(text: str, kernel: str) -> Param:
    words = text.replace("*", " * ").split()
    name = words[-1]
    pointer = "*" in words
    base = " ".join(w for w in words[:-1] if w not in ("const", "*", "__restrict", "__restrict__",
                                                        "volatile"))
    if base not in _SCALARS:
        raise EmuError(f"kernel {kernel}: parameter {text.strip()!r} has a type the emulator "
                       f"does not know (known: {sorted(_SCALARS)})")
    if words.count("*") > 1:
        raise EmuError(f"kernel {kernel}: parameter {text.strip()!r}: pointers to pointers are "
                       "not kernel arguments")
    return Param(base, pointer, name)


def scan_kernels(code: str, path_hint: str = "kernel.cu") -> dict[str, tuple[Param, ...]]:
    """``{name: params}`` of every ``extern "C" __global__`` kernel in ``code``, read from the
    preprocessed text (macros expanded)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "scan.cu"
        src.write_text(code)
        proc = subprocess.run([gxx(), "-x", "c++", "-std=gnu++17", "-E", "-P", "-DEMU_SCAN",
                               "-include", str(HEADER), str(src)], capture_output=True, text=True)
    if proc.returncode:
        raise EmuError(f"preprocessing {path_hint} failed:\n{proc.stderr}")
    kernels = {}
    for m in _KERNEL_RE.finditer(proc.stdout):
        params = m.group(2).strip()
        plist = () if params in ("", "void") else tuple(
            _parse_param(p, m.group(1)) for p in params.split(","))
        kernels[m.group(1)] = plist
    return kernels


def _thunks(kernels: dict[str, tuple[Param, ...]]) -> str:
    lines = ["\n// ---- emulator thunks (generated) ----"]
    for name, params in kernels.items():
        args = ", ".join(f"*({p.ctype}{'*' if p.pointer else ''}*)a[{i}]"
                         for i, p in enumerate(params))
        lines.append(f'extern "C" void __emu_thunk_{name}(void** a) {{ {name}({args}); }}')
    return "\n".join(lines) + "\n"


# -- compilation -----------------------------------------------------------------------------------
class _Lib:
    def __init__(self, path: Path, kernels):
        self.cdll = ctypes.CDLL(str(path))
        self.cdll.emu_launch.restype = ctypes.c_int
        self.kernels = kernels
        self.path = path


def _cache_dir() -> Path:
    d = Path(tempfile.gettempdir()) / f"tinygen-cuda-emu-{os.getuid()}"
    d.mkdir(exist_ok=True)
    return d


def compile_source(code: str, options=(), path_hint: str = "kernel.cu") -> "_Lib":
    """Compile ``code`` for the emulator (cached by content, header and flags); return the
    loaded library and its kernel signatures."""
    if gxx() is None:
        raise EmuError("the CUDA emulator needs g++ on PATH")
    flags = ["-x", "c++", "-std=gnu++17", "-O1", "-g", "-shared", "-fPIC", "-fno-strict-aliasing",
             "-Wall", "-Wno-unused-function", "-Wno-unused-variable"] + _sanitize_flags()
    header = HEADER.read_bytes()
    key = hashlib.sha256(code.encode() + header + " ".join(flags).encode()).hexdigest()[:24]
    with _lock:
        lib = _libs.get(key)
        if lib is not None:
            return lib
        kernels = scan_kernels(code, path_hint)
        out = _cache_dir() / f"{key}.so"
        if not out.exists():
            src = _cache_dir() / f"{key}.{os.getpid()}.cpp"
            src.write_text(code + _thunks(kernels))
            tmp_out = out.with_suffix(f".{os.getpid()}.tmp")
            proc = subprocess.run([gxx(), *flags, "-include", str(HEADER), str(src), "-o",
                                   str(tmp_out)], capture_output=True, text=True)
            src.unlink()
            if proc.returncode:
                raise EmuError(f"g++ could not compile {path_hint} for the emulator:\n"
                               f"{proc.stderr}")
            os.replace(tmp_out, out)
        lib = _Lib(out, kernels)
        _libs[key] = lib
        return lib


# -- launching -------------------------------------------------------------------------------------
# Bytes of guard on each side of an array argument (none in AddressSanitizer builds, where the
# argument is an exactly sized allocation, so that ASan's own red zones catch reads too).
_GUARD = 0 if os.environ.get("TINYGEN_EMU_SANITIZE") == "address" else 256
_GUARD_BYTE = 0xA5


def _dims(v, what: str) -> tuple[int, int, int]:
    if isinstance(v, (int, np.integer)):
        v = (v,)
    if not isinstance(v, tuple) or not 1 <= len(v) <= 3 or \
            not all(isinstance(d, (int, np.integer)) for d in v):
        raise TypeError(f"{what} must be an int or a tuple of 1-3 ints, got {v!r}")
    v = tuple(int(d) for d in v) + (1,) * (3 - len(v))
    if min(v) < 1:
        raise ValueError(f"{what} dimensions must be >= 1, got {v}")
    return v


class EmuKernel:
    """One kernel of an :class:`EmuModule`; ``k(grid, block, args)`` as a ``cupy.RawKernel``."""

    def __init__(self, lib: _Lib, name: str, unwrap):
        if name not in lib.kernels:
            raise EmuError(f"no kernel named {name!r} (the module has {sorted(lib.kernels)})")
        self.lib, self.name, self.params = lib, name, lib.kernels[name]
        self._unwrap = unwrap       # device array -> its NumPy buffer (or None if not one)
        self._thunk = ctypes.cast(getattr(lib.cdll, f"__emu_thunk_{name}"), ctypes.c_void_p)

    def _check(self, args):
        if not isinstance(args, tuple):
            raise TypeError(f"{self.name}: args must be a tuple, got {type(args).__name__}")
        if len(args) != len(self.params):
            raise TypeError(f"{self.name} takes {len(self.params)} arguments "
                            f"({', '.join(p.name for p in self.params)}), got {len(args)}")
        for i, (a, p) in enumerate(zip(args, self.params)):
            want = _SCALARS[p.ctype][0]
            where = f"{self.name}: argument {i} ({p.name}, {p.ctype}{'*' if p.pointer else ''})"
            if p.pointer:
                arr = self._unwrap(a)
                if arr is None:
                    raise TypeError(f"{where} needs a device array, got {type(a).__name__}")
                if arr.dtype != want:
                    raise TypeError(f"{where} needs a {np.dtype(want)} array, got {arr.dtype}")
                if not arr.flags.c_contiguous:
                    raise TypeError(f"{where}: the array is not C-contiguous (the kernel sees a "
                                    "pointer only)")
            elif type(a) is not want:
                raise TypeError(f"{where} needs np.{np.dtype(want).name}, got "
                                f"{type(a).__name__} {a!r} (CuPy passes Python ints as int64 "
                                "and Python floats as double)")

    def __call__(self, grid, block, args, shared_mem=0, stream=None):
        g, b = _dims(grid, "grid"), _dims(block, "block")
        if b[0] * b[1] * b[2] > 1024 or b[0] > 1024 or b[1] > 1024 or b[2] > 64:
            raise EmuError(f"{self.name}: block {b} exceeds CUDA's limits (1024 threads, "
                           "(1024, 1024, 64))")
        if g[1] > 65535 or g[2] > 65535:
            raise EmuError(f"{self.name}: grid {g} exceeds CUDA's limits")
        if shared_mem:
            raise EmuError("dynamic shared memory is not used by tinygen's kernels")
        self._check(args)
        keep, slots, guarded = [], [], []
        buffers = {}    # (address, nbytes) -> guarded copy, so that aliased arguments stay aliased
        for a, p in zip(args, self.params):
            if p.pointer:
                arr = self._unwrap(a)
                key = (arr.__array_interface__["data"][0], arr.nbytes)
                if key not in buffers:
                    raw = np.full(arr.nbytes + 2 * _GUARD, _GUARD_BYTE, np.uint8)
                    raw[_GUARD:_GUARD + arr.nbytes] = arr.reshape(-1).view(np.uint8)
                    buffers[key] = raw
                    guarded.append((arr, raw))
                value = ctypes.c_void_p(buffers[key].ctypes.data + _GUARD)
            else:
                value = _SCALARS[p.ctype][1](a.item())
            keep.append(value)
            slots.append(ctypes.addressof(value))
        argv = (ctypes.c_void_p * max(1, len(slots)))(*slots)
        err = ctypes.create_string_buffer(2048)
        order, seed = _order, _seed
        rc = self.lib.cdll.emu_launch(self._thunk, argv, *map(ctypes.c_uint, g + b),
                                      ctypes.c_int(_ORDERS[order]), ctypes.c_ulonglong(seed), err,
                                      ctypes.c_int(len(err)))
        for arr, raw in guarded:
            head, tail = raw[:_GUARD], raw[_GUARD + arr.nbytes:]
            if (head != _GUARD_BYTE).any() or (tail != _GUARD_BYTE).any():
                raise EmuError(f"{self.name}: out-of-bounds write next to an array argument of "
                               f"{arr.nbytes} bytes (guard bytes changed) [grid {g}, block {b}]")
        if rc:
            raise EmuError(f"{self.name} [grid {g}, block {b}, order {order}]: "
                           f"{err.value.decode()}")
        for arr, raw in guarded:    # copy results back (arguments may be outputs)
            if arr.flags.writeable:
                arr.reshape(-1).view(np.uint8)[...] = raw[_GUARD:_GUARD + arr.nbytes]


class EmuModule:
    """``cupy.RawModule(code=..., options=...)`` for the emulator."""

    def __init__(self, code: str, options=(), unwrap=None, name_expressions=None, **_):
        m = re.match(r'#line 1 "([^"]+)"', code)
        self.path_hint = m.group(1) if m else "<code>"
        self.lib = compile_source(code, options, self.path_hint)
        self._unwrap = unwrap or (lambda a: a if isinstance(a, np.ndarray) else None)

    def get_function(self, name: str) -> EmuKernel:
        return EmuKernel(self.lib, name, self._unwrap)

    @property
    def kernel_names(self):
        return sorted(self.lib.kernels)
