"""Matrix products on the CPU: the API of :mod:`tinygen.kernels.cuda.matmul`, so that the seam
is symmetric. The CPU has one implementation, NumPy's ``matmul`` (BLAS); ``kernel`` names the
GPU ladder's rungs (``"library"``, ``"tiled"``, ``"naive"``) and is checked, then computed here
by BLAS all the same."""
from __future__ import annotations

import numpy as np

__all__ = ["matmul", "KERNELS"]

KERNELS = ("library", "tiled", "naive")


def matmul(a, b, kernel=None):
    """a @ b (``kernel`` checked, see the module docstring); the own kernels' 2-D rule applies
    to ``"tiled"``/``"naive"`` as on the GPU."""
    if kernel is not None and kernel not in KERNELS:
        raise ValueError(f"matmul: kernel must be one of {KERNELS}, got {kernel!r}")
    if kernel in ("tiled", "naive") and (a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]):
        raise ValueError(f"matmul (kernel={kernel!r}): needs 2-D operands (M, K) @ (K, N), got "
                         f"{a.shape} @ {b.shape}")
    return np.matmul(a, b)
