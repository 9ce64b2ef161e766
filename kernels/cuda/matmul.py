"""Matrix products on the GPU (``matmul.cu``): the API of :mod:`tinygen.kernels.cpu.matmul`.

``matmul(a, b, kernel=None)`` computes a @ b with one of

* ``"library"`` -- cuBLAS through ``cupy.matmul`` (any shapes, batched): the default;
* ``"tiled"``   -- tinygen's own shared-memory tiled SGEMM/DGEMM (2-D operands): 128x128 tiles
  per block, an 8x8 register tile per thread (see ``matmul.cu``);
* ``"naive"``   -- one thread per output element (2-D operands): the ladder's first rung.

The default comes from :func:`set_default_kernel` or the ``TINYGEN_CUDA_MATMUL`` environment
variable (``library`` unless set); the engine's matmul (:func:`tinygen.functional.matmul`, its
backward too) goes through :func:`matmul` with the default, so ``TINYGEN_CUDA_MATMUL=tiled``
trains a model on the own SGEMM. ``benchmarks/gpu_check.py`` times it against cuBLAS.
"""
from __future__ import annotations

import os

from . import _runtime
from ._grid import i32 as _i32

__all__ = ["matmul", "KERNELS", "set_default_kernel", "default_kernel"]

_SOURCE = "matmul.cu"
KERNELS = ("library", "tiled", "naive")
_TILE = 128             # TILE_M = TILE_N in matmul.cu
_TILED_THREADS = 256
_NAIVE_BLOCK = (16, 16)
_default = None


def set_default_kernel(kernel: str) -> None:
    """Make ``kernel`` (one of :data:`KERNELS`) the default of :func:`matmul`."""
    global _default
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    _default = kernel


def default_kernel() -> str:
    if _default is not None:
        return _default
    kernel = os.environ.get("TINYGEN_CUDA_MATMUL", "library")
    if kernel not in KERNELS:
        raise ValueError(f"TINYGEN_CUDA_MATMUL must be one of {KERNELS}, got {kernel!r}")
    return kernel


def _own_kernel_fits(a, b) -> bool:
    return a.ndim == 2 and b.ndim == 2 and a.dtype == b.dtype and \
        a.dtype.name in ("float32", "float64")


def matmul(a, b, kernel=None):
    """a @ b. ``kernel``: ``"library"`` (cuBLAS), ``"tiled"`` or ``"naive"`` (own kernels, 2-D
    float32/float64 operands of one dtype); None takes :func:`default_kernel`, which falls back
    to cuBLAS for what the own kernels do not cover (batched, integer, mixed dtypes)."""
    if kernel is None:
        kernel = default_kernel()
        if kernel != "library" and not _own_kernel_fits(a, b):
            kernel = "library"
    if kernel not in KERNELS:
        raise ValueError(f"matmul: kernel must be one of {KERNELS}, got {kernel!r}")
    cp = _runtime.cupy()
    if kernel == "library":
        return cp.matmul(a, b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul (kernel={kernel!r}): needs 2-D operands (M, K) @ (K, N), got "
                         f"{a.shape} @ {b.shape}")
    if a.dtype != b.dtype:
        raise TypeError(f"matmul (kernel={kernel!r}): operands must have one dtype, got "
                        f"{a.dtype} and {b.dtype}")
    name = _runtime.variant(f"matmul_{kernel}", a.dtype)
    m, k = a.shape
    n = b.shape[1]
    if max(m * k, k * n, m * n) >= 2**31:
        raise ValueError("matmul: too many elements for the kernels' int index")
    a, b = cp.ascontiguousarray(a), cp.ascontiguousarray(b)
    c = cp.empty((m, n), a.dtype)
    if m == 0 or n == 0:
        return c
    if k == 0:
        c[...] = 0
        return c
    if kernel == "tiled":
        grid, block = (-(-n // _TILE), -(-m // _TILE)), (_TILED_THREADS,)
    else:
        grid = (-(-n // _NAIVE_BLOCK[0]), -(-m // _NAIVE_BLOCK[1]))
        block = _NAIVE_BLOCK
    _runtime.launch(_SOURCE, name, grid, block, (a, b, c) + _i32(m, n, k))
    return c
