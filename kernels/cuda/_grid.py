"""1-D launches of the elementwise CUDA kernels (grid-stride loops) with exact argument types.

The kernels launched through here (``conv.cu``, ``lstm.cu``) loop over their elements with a
grid-stride loop, so any grid and block size gives the same result; the grid is capped at
:data:`MAX_BLOCKS` blocks of :data:`THREADS` threads. Kernels come in ``<name>_f32`` and
``<name>_f64`` variants; scalars must be passed as ``np.int32`` / ``np.int64`` / ``np.float32``
/ ``np.float64`` (CuPy passes a Python int as int64 and a Python float as float64).
"""
from __future__ import annotations

import numpy as np

from . import _runtime

__all__ = ["THREADS", "MAX_BLOCKS", "launch", "i32", "same_dtype"]

THREADS = 256          # threads per block
MAX_BLOCKS = 8192      # grid size cap; larger problems loop inside the kernels


def launch(source: str, name: str, dtype, total: int, args: tuple) -> None:
    """Run kernel ``<name>_<f32|f64>`` of ``source`` over ``total`` elements (nothing when 0),
    the arguments checked by :func:`tinygen.kernels.cuda._runtime.launch`."""
    if total <= 0:
        return
    _runtime.launch(source, _runtime.variant(name, dtype),
                    (_runtime.blocks_for(total, THREADS, MAX_BLOCKS),), (THREADS,), args)


def i32(*values) -> tuple:
    """``values`` as a tuple of ``np.int32`` kernel arguments."""
    return tuple(np.int32(v) for v in values)


def same_dtype(op: str, *arrays):
    """The common float32/float64 dtype of ``arrays``; a TypeError naming ``op`` otherwise."""
    dtype = arrays[0].dtype
    _runtime.variant(op, dtype)
    if any(a.dtype != dtype for a in arrays[1:]):
        raise TypeError(f"{op}: all arrays must have the same dtype, got "
                        f"{[str(a.dtype) for a in arrays]}")
    return dtype
