"""CUDA reductions over one axis (``reduce.cu``): the API of :mod:`tinygen.kernels.cpu.reduce`
on device arrays. ``reduce_sum``, ``reduce_max`` and ``logsumexp`` drop the axis; ``softmax``
and ``log_softmax`` keep the shape. ``reduce_sum_naive`` is the ladder's first rung (one thread
per output, a serial loop), kept for teaching and benchmarks."""
from __future__ import annotations

from . import _grid, _runtime
from ._grid import i32 as _i32

__all__ = ["reduce_sum", "reduce_sum_naive", "reduce_max", "logsumexp", "softmax",
           "log_softmax"]

_SOURCE = "reduce.cu"
_THREADS = 256          # block size of the one-block-per-output kernels (a multiple of 32)


def _split(op, x, axis):
    """(x contiguous, outer, n, inner, axis) for the (outer, n, inner) view of x."""
    _runtime.variant(op, x.dtype)
    if x.ndim == 0:
        raise ValueError(f"{op}: x must have at least one dimension")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{op}: axis {axis} is out of range for shape {x.shape}")
    axis %= x.ndim
    outer = 1
    for side in x.shape[:axis]:
        outer *= side
    inner = 1
    for side in x.shape[axis + 1:]:
        inner *= side
    n = x.shape[axis]
    if x.size >= 2**31:
        raise ValueError(f"{op}: too many elements for the kernels' int index")
    if n == 0 and op != "reduce_sum":
        raise ValueError(f"{op}: cannot reduce an empty axis (shape {x.shape}, axis {axis})")
    return _runtime.cupy().ascontiguousarray(x), outer, n, inner, axis


def _reduce(op, x, axis):
    x, outer, n, inner, axis = _split(op, x, axis)
    out = _runtime.cupy().empty(x.shape[:axis] + x.shape[axis + 1:], x.dtype)
    if outer * inner:
        _runtime.launch(_SOURCE, _runtime.variant(op, x.dtype), (outer * inner,), (_THREADS,),
                        (x, out) + _i32(n, inner))
    return out


def reduce_sum(x, axis):
    """x summed over ``axis`` (block reduction: shared memory and warp shuffles)."""
    return _reduce("reduce_sum", x, axis)


def reduce_sum_naive(x, axis):
    """x summed over ``axis``, one thread per output (the ladder's first rung)."""
    x, outer, n, inner, axis = _split("reduce_sum_naive", x, axis)
    out = _runtime.cupy().empty(x.shape[:axis] + x.shape[axis + 1:], x.dtype)
    _grid.launch(_SOURCE, "reduce_sum_naive", x.dtype, outer * inner,
                 (x, out) + _i32(outer * inner, n, inner))
    return out


def reduce_max(x, axis):
    """The maximum of x over ``axis`` (NaN propagates)."""
    return _reduce("reduce_max", x, axis)


def logsumexp(x, axis):
    """log sum exp x over ``axis``, shifted by the maximum (no overflow)."""
    return _reduce("logsumexp", x, axis)


def _normalize(op, x, axis):
    x, outer, n, inner, axis = _split(op, x, axis)
    out = _runtime.cupy().empty(x.shape, x.dtype)
    if outer * inner:
        _runtime.launch(_SOURCE, _runtime.variant(op, x.dtype), (outer * inner,), (_THREADS,),
                        (x, out) + _i32(n, inner))
    return out


def softmax(x, axis):
    """exp(x - max) / sum exp(x - max) over ``axis`` (x's shape)."""
    return _normalize("softmax", x, axis)


def log_softmax(x, axis):
    """x - max - log sum exp(x - max) over ``axis`` (x's shape)."""
    return _normalize("log_softmax", x, axis)
