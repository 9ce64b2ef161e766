"""CUDA loss kernels (``losses.cu``): the API of :mod:`tinygen.kernels.cpu.losses` on device
arrays -- arrays of one shape and one floating dtype in, a new array of that shape out."""
from __future__ import annotations

from . import _grid, _runtime
from ._grid import i32 as _i32

__all__ = ["bce_with_logits_forward", "bce_with_logits_grad"]

_SOURCE = "losses.cu"


def _check(op, x, t):
    if x.shape != t.shape:
        raise ValueError(f"{op}: x and t must have the same shape, got {x.shape} and {t.shape}")
    if x.size >= 2**31:
        raise ValueError(f"{op}: {x.size} elements is more than the kernels' int index allows")
    return _grid.same_dtype(op, x, t)


def bce_with_logits_forward(x, t):
    """Elementwise loss (x's shape): t softplus(-x) + (1 - t) softplus(x) for logits x and
    targets t."""
    dtype = _check("bce_with_logits_forward", x, t)
    cp = _runtime.cupy()
    x, t = cp.ascontiguousarray(x), cp.ascontiguousarray(t)
    out = cp.empty(x.shape, dtype)
    _grid.launch(_SOURCE, "bce_with_logits_forward", dtype, x.size, (x, t, out) + _i32(x.size))
    return out


def bce_with_logits_grad(x, t, g):
    """g (sigmoid(x) - t) (x's shape), g broadcast to x's shape."""
    dtype = _check("bce_with_logits_grad", x, t)
    cp = _runtime.cupy()
    x, t = cp.ascontiguousarray(x), cp.ascontiguousarray(t)
    g = cp.ascontiguousarray(cp.broadcast_to(cp.asarray(g, dtype=dtype), x.shape))
    out = cp.empty(x.shape, dtype)
    _grid.launch(_SOURCE, "bce_with_logits_grad", dtype, x.size, (x, t, g, out) + _i32(x.size))
    return out
