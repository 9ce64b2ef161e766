"""Reductions over one axis on the CPU (NumPy): the API of :mod:`tinygen.kernels.cuda.reduce`,
so that the seam is symmetric. ``reduce_sum``, ``reduce_max`` and ``logsumexp`` drop the axis;
``softmax`` and ``log_softmax`` keep the shape. ``reduce_sum_naive`` is the same sum (the CPU has
one implementation; the name exists so that code written against the CUDA ladder runs here)."""
from __future__ import annotations

import numpy as np

__all__ = ["reduce_sum", "reduce_sum_naive", "reduce_max", "logsumexp", "softmax",
           "log_softmax"]


def _check(op, x, axis, empty_ok=False):
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: x must be float32 or float64, got {x.dtype}")
    if x.ndim == 0:
        raise ValueError(f"{op}: x must have at least one dimension")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{op}: axis {axis} is out of range for shape {x.shape}")
    if x.shape[axis] == 0 and not empty_ok:
        raise ValueError(f"{op}: cannot reduce an empty axis (shape {x.shape}, axis {axis})")


def reduce_sum(x, axis):
    """x summed over ``axis``."""
    _check("reduce_sum", x, axis, empty_ok=True)
    return np.sum(x, axis=axis)


reduce_sum_naive = reduce_sum


def reduce_max(x, axis):
    """The maximum of x over ``axis`` (NaN propagates)."""
    _check("reduce_max", x, axis)
    return np.max(x, axis=axis)


def _shifted(x, axis):
    """(x - shift, shift) with shift the maximum over ``axis`` (0 where it is infinite)."""
    m = np.max(x, axis=axis, keepdims=True)
    shift = np.where(np.isinf(m), np.zeros_like(m), m)
    return x - shift, shift


def logsumexp(x, axis):
    """log sum exp x over ``axis``, shifted by the maximum (no overflow)."""
    _check("logsumexp", x, axis)
    z, shift = _shifted(x, axis)
    with np.errstate(divide="ignore"):  # an all -inf row: log(0) = -inf is the answer
        return np.squeeze(shift, axis) + np.log(np.sum(np.exp(z), axis=axis))


def softmax(x, axis):
    """exp(x - max) / sum exp(x - max) over ``axis`` (x's shape)."""
    _check("softmax", x, axis)
    e = np.exp(_shifted(x, axis)[0])
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis):
    """x - max - log sum exp(x - max) over ``axis`` (x's shape)."""
    _check("log_softmax", x, axis)
    z = _shifted(x, axis)[0]
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))
