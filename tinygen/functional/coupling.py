"""The affine coupling layer of Real NVP as a first-class op (Dinh et al. 2016; lecture
``000_b51d78cfb1a4d410.txt``, "Non-Volume Preserving network").

Given a binary mask b and the outputs s = s(b * x), t = t(b * x) of the scale and shift nets,

    y = b * x + (1 - b) * (x * exp(s) + t)                      (the coupling c(x))
    log |det J_c(x)| = sum_i ((1 - b) * s)_i                    (one value per sample)
    x = b * y + (1 - b) * (y - t) * exp(-s)                     (its inverse, s, t from b * y)

The elementwise part -- scale, shift, mask and the log-det reduction -- runs as one fused Numba
kernel (:mod:`tinygen.kernels.cpu.coupling`) instead of ~10 generic ops; exp(s) is taken once
with NumPy's vectorized exp and kept for the backward, which is one fused pass as well. The
engine's functions have one output each, so the pair (y, logdet) comes from one kernel call
feeding two graph nodes:

* ``AffineCouplingFn(x, s, t)``  -> y; its backward runs the fused backward kernel
      dL/dx = g * (b + (1 - b) exp(s)),  dL/ds = g (1 - b) x exp(s),  dL/dt = g (1 - b);
* ``CouplingLogdetFn(s)``        -> logdet (N,), the value the same kernel call reduced;
      dL/ds = dL/dlogdet * (1 - b)   (broadcast over the sample's elements).

When the backward itself is being recorded (``create_graph=True``) the same gradients are built
from differentiable ops instead of the kernel, so higher derivatives work. The inverse
(``AffineCouplingInverseFn``) runs a fused kernel forward and has a composed backward.

Shapes: x, s, t are (N, ...) of one shape; the mask broadcasts against one sample, x.shape[1:]
(e.g. (D,) for vectors, (1, H, W) for a checkerboard, (C, 1, 1) for a channel mask), and holds
only 0 and 1.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function, is_grad_enabled
from ..backend import get_array_module
from ..kernels.cpu import coupling as kernels
from ..tensor import Tensor
from ._util import check_tensor

__all__ = ["affine_coupling", "affine_coupling_inverse", "affine_coupling_composed"]


def _flat(a, n):
    """(N, ...) array as a C-contiguous (N, D) array (a view when it already is contiguous)."""
    return np.ascontiguousarray(a).reshape(n, -1)


def _mask_tensor(b, like):
    """The (D,)-flat mask as a Tensor of the sample's shape, for the composed backward."""
    return Tensor._wrap(b.reshape(like.shape[1:]))


def _forward_arrays(x, s, t, b):
    """One fused pass: (y, logdet, exp(s)) arrays from x, s, t (N, ...) and the flat mask b
    (D,); exp(s) is kept for the backward."""
    xp = get_array_module(x)
    n = x.shape[0]
    e = xp.exp(s)
    if xp is np:
        y = np.empty((n, b.size), dtype=x.dtype)
        logdet = np.empty(n, dtype=x.dtype)
        kernels.coupling_forward(_flat(x, n), _flat(e, n), _flat(s, n), _flat(t, n), b, y,
                                 logdet)
        return y.reshape(x.shape), logdet, e
    keep = b.reshape(x.shape[1:])   # no CPU kernel for device arrays: the formula with xp
    y = keep * x + (1 - keep) * (x * e + t)
    return y, ((1 - keep) * s).reshape(n, -1).sum(axis=1), e


class AffineCouplingFn(Function):
    """y = b x + (1 - b)(x exp(s) + t), given the value the fused kernel computed (``value``)
    and exp(s) (``exp_s``; see :func:`affine_coupling`); the backward runs the fused backward
    kernel."""

    def forward(self, x, s, t, b, value, exp_s):
        # b: the flat (D,) mask in x's dtype; x, s, t: (N, ...) of one shape
        self.b, self.exp_s = b, exp_s
        return value

    def backward(self, g):
        x, s = self.saved_input(0), self.saved_input(1)
        if is_grad_enabled() or get_array_module(g.data) is not np:
            # create_graph: the same gradients from differentiable ops
            b = _mask_tensor(self.b, x)
            free = 1 - b
            es = s.exp()
            return g * (b + free * es), g * free * x * es, g * free
        n = x.shape[0]
        flat = (n, self.b.size)
        gx, gs, gt = (np.empty(flat, dtype=x.dtype) for _ in range(3))
        kernels.coupling_backward(_flat(g.data, n), _flat(x.data, n), _flat(self.exp_s, n),
                                  self.b, gx, gs, gt)
        return tuple(Tensor._wrap(a.reshape(x.shape)) for a in (gx, gs, gt))


class CouplingLogdetFn(Function):
    """logdet = sum over each sample of (1 - b) * s, given the value the coupling kernel already
    reduced (``value``); the backward is dL/ds = dL/dlogdet * (1 - b)."""

    def forward(self, s, value, b):
        self.b = b
        return value

    def backward(self, g):
        s = self.saved_input(0)
        if is_grad_enabled() or get_array_module(g.data) is not np:   # create_graph
            free = 1 - _mask_tensor(self.b, s)                         # (...) one sample
            return g.reshape((s.shape[0],) + (1,) * (s.ndim - 1)) * free   # (N, 1, ..) * (...)
        out = np.empty((s.shape[0], self.b.size), dtype=s.dtype)
        kernels.masked_outer(np.ascontiguousarray(g.data), self.b, out)
        return Tensor._wrap(out.reshape(s.shape))


class AffineCouplingInverseFn(Function):
    """x = b y + (1 - b)(y - t) exp(-s)."""

    def forward(self, y, s, t, b):
        self.b = b
        xp = get_array_module(y)
        n = y.shape[0]
        if xp is np:
            x = np.empty((n, b.size), dtype=y.dtype)
            kernels.coupling_inverse(_flat(y, n), _flat(np.exp(-s), n), _flat(t, n), b, x)
            return x.reshape(y.shape)
        keep = b.reshape(y.shape[1:])
        return keep * y + (1 - keep) * (y - t) * xp.exp(-s)

    def backward(self, g):
        # dx/dy = b + (1 - b) e^{-s};  dx/ds = -(1 - b)(y - t) e^{-s};  dx/dt = -(1 - b) e^{-s}
        y, s, t = self.saved_input(0), self.saved_input(1), self.saved_input(2)
        b = _mask_tensor(self.b, y)
        free = 1 - b
        ge = g * free * (-s).exp()
        return g * b + ge, -ge * (y - t), -ge


def _check(op, x, s, t, mask):
    x, s, t = check_tensor(x, "x"), check_tensor(s, "s"), check_tensor(t, "t")
    if x.ndim < 2:
        raise ValueError(f"{op}: x must be a batch (N, ...) with at least 2 dimensions, got "
                         f"shape {tuple(x.shape)}")
    if x.dtype.kind != "f":
        raise ValueError(f"{op}: x must be floating point, got {x.dtype}")
    for name, a in (("s", s), ("t", t)):
        if a.shape != x.shape:
            raise ValueError(f"{op}: {name} must have x's shape {tuple(x.shape)}, got "
                             f"{tuple(a.shape)}")
        if a.dtype != x.dtype:
            raise ValueError(f"{op}: {name} has dtype {a.dtype} but x has {x.dtype}")
        if type(a.data) is not type(x.data):
            raise ValueError(f"{op}: {name} and x are on different devices")
    m = mask.data if isinstance(mask, Tensor) else mask
    xp = get_array_module(x.data)
    m = xp.asarray(m)
    try:
        full = xp.broadcast_to(m, x.shape[1:])
    except ValueError:
        raise ValueError(f"{op}: mask of shape {tuple(m.shape)} does not broadcast against one "
                         f"sample of x, shape {tuple(x.shape[1:])}") from None
    if not bool(((full == 0) | (full == 1)).all()):
        raise ValueError(f"{op}: mask must hold only 0 and 1 (shape {tuple(m.shape)})")
    b = xp.ascontiguousarray(full, dtype=x.dtype).reshape(-1)   # (D,) flat, x's dtype
    return x, s, t, b


def affine_coupling(x, s, t, mask):
    """The affine coupling y = b x + (1 - b)(x exp(s) + t) and its log-det.

    x, s, t: Tensors of one shape (N, ...); ``s``/``t`` are the scale/shift nets' outputs,
    computed from ``mask * x``. mask: 0/1 array or Tensor broadcastable to x.shape[1:]
    (1 = passed through unchanged). Returns ``(y, logdet)``: y of x's shape and logdet (N,),
    log |det dy/dx| = sum over each sample of (1 - b) * s. Differentiable in x, s and t (to
    any order); a mask that requires grad is treated as a constant.
    """
    x, s, t, b = _check("affine_coupling", x, s, t, mask)
    y_arr, logdet_arr, exp_s = _forward_arrays(x.data, s.data, t.data, b)   # one kernel call
    y = AffineCouplingFn.apply(x, s, t, b=b, value=y_arr, exp_s=exp_s)
    logdet = CouplingLogdetFn.apply(s, b=b, value=logdet_arr)
    return y, logdet


def affine_coupling_inverse(y, s, t, mask):
    """The inverse coupling x = b y + (1 - b)(y - t) exp(-s) (s, t computed from ``mask * y``,
    which equals ``mask * x``). Shapes and mask as in :func:`affine_coupling`; returns x."""
    y, s, t, b = _check("affine_coupling_inverse", y, s, t, mask)
    return AffineCouplingInverseFn.apply(y, s, t, b=b)


def affine_coupling_composed(x, s, t, mask):
    """The same ``(y, logdet)`` as :func:`affine_coupling`, composed from generic ops (the
    lecture's ``NVPCouplingLayer.forward``); the baseline of ``benchmarks/bench_coupling.py``."""
    x, s, t, b = _check("affine_coupling_composed", x, s, t, mask)
    b = Tensor._wrap(b.reshape(x.shape[1:]))
    free = 1 - b
    y = b * x + free * (x * s.exp() + t)
    logdet = (free * s).reshape(x.shape[0], -1).sum(dim=1)   # (N, D) -> (N,)
    return y, logdet
