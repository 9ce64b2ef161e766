"""The affine coupling layer of Real NVP as a first-class op (Dinh et al. 2016; Fleuret's lecture
on normalizing flows, "Non-Volume Preserving network").

Given a binary mask b and the outputs s = s(b * x), t = t(b * x) of the scale and shift nets,

    y = b * x + (1 - b) * (x * exp(s) + t)                      (the coupling c(x))
    log |det J_c(x)| = sum_i ((1 - b) * s)_i                    (one value per sample)
    x = b * y + (1 - b) * (y - t) * exp(-s)                     (its inverse, s, t from b * y)

The elementwise part -- scale, shift, mask and the log-det reduction -- runs as one fused kernel
(the ``coupling`` family of :mod:`tinygen.kernels`, chosen by device) instead of ~10 generic ops;
exp(s) is kept for the backward, which is one fused pass as well. One function, two outputs:

* ``AffineCouplingFn(x, s, t)`` -> (y, logdet (N,)); its backward runs the fused backward kernel
      dL/dx = g * (b + (1 - b) exp(s)),  dL/ds = g (1 - b) x exp(s) + dL/dlogdet (1 - b),
      dL/dt = g (1 - b).

When the backward itself is being recorded (``create_graph=True``) the same gradients are built
from differentiable ops instead of the kernel, so higher derivatives work. The inverse
(``AffineCouplingInverseFn``) runs a fused kernel forward and has a composed backward.

Shapes: x, s, t are (N, ...) of one shape; the mask broadcasts against one sample, x.shape[1:]
(e.g. (D,) for vectors, (1, H, W) for a checkerboard, (C, 1, 1) for a channel mask), and holds
only 0 and 1.
"""
from __future__ import annotations

from .. import kernels
from ..autograd import Function, is_grad_enabled
from ..backend import get_array_module
from ..tensor import Tensor
from ._util import check_tensor

__all__ = ["affine_coupling", "affine_coupling_inverse", "affine_coupling_composed"]


def _mask_tensor(b, like):
    """The (D,)-flat mask as a Tensor of one sample's shape, for the composed backward."""
    return Tensor._wrap(b.reshape(like.shape[1:]))


class AffineCouplingFn(Function):
    """(x, s, t) -> (y, logdet): y = b x + (1 - b)(x exp(s) + t), logdet = sum (1 - b) s."""

    def forward(self, x, s, t, b):
        # b: the flat (D,) mask in x's dtype; x, s, t: (N, ...) of one shape
        self.b = b
        y, logdet, self.exp_s = kernels.for_arrays("coupling", x).coupling_forward(x, s, t, b)
        return y, logdet

    def backward(self, gy, glogdet):
        x, s = self.saved_input(0), self.saved_input(1)
        gx = gs = gt = None
        if gy is not None:
            if is_grad_enabled():   # create_graph: the same gradients from differentiable ops
                b = _mask_tensor(self.b, x)
                free = 1 - b
                es = s.exp()
                gx, gs, gt = gy * (b + free * es), gy * free * x * es, gy * free
            else:
                k = kernels.for_arrays("coupling", gy.array)
                gx, gs, gt = (Tensor._wrap(a) for a in k.coupling_backward(
                    gy.array, x.array, self.exp_s, self.b))
        if glogdet is not None:
            if is_grad_enabled():
                free = 1 - _mask_tensor(self.b, s)                             # (...) one sample
                gl = glogdet.reshape((s.shape[0],) + (1,) * (s.ndim - 1)) * free   # (N, 1, ..)
            else:
                k = kernels.for_arrays("coupling", glogdet.array)
                gl = Tensor._wrap(k.coupling_logdet_backward(glogdet.array, self.b, s.shape))
            gs = gl if gs is None else gs + gl
        return gx, gs, gt


class AffineCouplingInverseFn(Function):
    """x = b y + (1 - b)(y - t) exp(-s)."""

    def forward(self, y, s, t, b):
        self.b = b
        return kernels.for_arrays("coupling", y).coupling_inverse(y, s, t, b)

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
        if type(a.array) is not type(x.array):
            raise ValueError(f"{op}: {name} and x are on different devices")
    m = mask.array if isinstance(mask, Tensor) else mask
    xp = get_array_module(x.array)
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
    return AffineCouplingFn.apply(x, s, t, b=b)


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
