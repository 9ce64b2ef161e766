"""CUDA affine-coupling kernels (``coupling.cu``): the API of
:mod:`tinygen.kernels.cpu.coupling` on device arrays. x, s, t and the gradients are (N, ...)
arrays of one floating dtype and shape; b is the flat (D,) mask (D elements in one sample, 0 or 1)
of that dtype; outputs are new arrays of the inputs' shape."""
from __future__ import annotations

from . import _grid, _runtime
from ._grid import i32 as _i32

__all__ = ["coupling_forward", "coupling_backward", "coupling_logdet_backward",
           "coupling_inverse"]

_SOURCE = "coupling.cu"
_ROW_THREADS = 256      # block size of the one-block-per-sample forward (a multiple of 32)


def _rows(op, b, *arrays):
    """(N, D) of the (N, ...) arrays, after checking shapes, dtypes and the mask's length."""
    shape = arrays[0].shape
    for a in arrays[1:]:
        if a.shape != shape:
            raise ValueError(f"{op}: arrays must have one shape, got "
                             f"{[tuple(x.shape) for x in arrays]}")
    n = shape[0] if shape else 0
    d = arrays[0].size // n if n else b.size
    if b.ndim != 1 or b.size != d:
        raise ValueError(f"{op}: mask b must be flat with one entry per element of a sample "
                         f"({d}), got shape {b.shape}")
    if arrays[0].size >= 2**31:
        raise ValueError(f"{op}: too many elements for the kernels' int index")
    _grid.same_dtype(op, b, *arrays)
    return n, d


def _c(*arrays):
    cp = _runtime.cupy()
    return tuple(cp.ascontiguousarray(a) for a in arrays)


def coupling_forward(x, s, t, b):
    """(y, logdet, exp_s): y (N, ...) and logdet (N,) of the coupling, exp(s) kept for the
    backward."""
    n, d = _rows("coupling_forward", b, x, s, t)
    cp = _runtime.cupy()
    x, s, t, b = _c(x, s, t, b)
    y, exp_s = cp.empty(x.shape, x.dtype), cp.empty(x.shape, x.dtype)
    logdet = cp.empty((n,), x.dtype)
    if n:
        _runtime.launch(_SOURCE, _runtime.variant("coupling_forward", x.dtype), (n,),
                        (_ROW_THREADS,), (x, s, t, b, y, logdet, exp_s) + _i32(d))
    return y, logdet, exp_s


def coupling_backward(g, x, exp_s, b):
    """(gx, gs, gt), each (N, ...), from g = dL/dy (the log-det's share of dL/ds comes from
    :func:`coupling_logdet_backward`)."""
    n, d = _rows("coupling_backward", b, g, x, exp_s)
    cp = _runtime.cupy()
    g, x, exp_s, b = _c(g, x, exp_s, b)
    gx, gs, gt = (cp.empty(x.shape, x.dtype) for _ in range(3))
    _grid.launch(_SOURCE, "coupling_backward", x.dtype, x.size,
                 (g, x, exp_s, b, gx, gs, gt) + _i32(x.size, d))
    return gx, gs, gt


def coupling_logdet_backward(g, b, shape):
    """dL/ds (``shape`` = (N, ...)) from g = dL/dlogdet (N,): g[i] (1 - b[j])."""
    cp = _runtime.cupy()
    shape = tuple(shape)
    size = 1
    for side in shape:
        size *= side
    g, b = _c(cp.asarray(g, dtype=b.dtype), b)
    if g.shape != shape[:1] or size != shape[0] * b.size:
        raise ValueError(f"coupling_logdet_backward: g {g.shape} and b {b.shape} do not fit "
                         f"shape {shape}")
    out = cp.empty(shape, b.dtype)
    _grid.launch(_SOURCE, "coupling_logdet_backward", b.dtype, size,
                 (g, b, out) + _i32(size, b.size))
    return out


def coupling_inverse(y, s, t, b):
    """x (N, ...) with coupling_forward(x, s, t, b)[0] == y."""
    _, d = _rows("coupling_inverse", b, y, s, t)
    cp = _runtime.cupy()
    y, s, t, b = _c(y, s, t, b)
    x = cp.empty(y.shape, y.dtype)
    _grid.launch(_SOURCE, "coupling_inverse", y.dtype, y.size, (y, s, t, b, x) + _i32(y.size, d))
    return x
