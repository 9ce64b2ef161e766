"""Convolution and transposed convolution (1-D and 2-D) with PyTorch's signatures and semantics.

Three primitives, each the adjoint of another, so that every backward is made of differentiable
ops and double backward works (as in Chainer's convolution_2d / deconvolution_2d):

* ``Conv2dFn(x, w)``           y = conv(x, w)
* ``ConvTranspose2dFn(y, w)``  x = conv^T(y, w)   (the adjoint of conv in its input)
* ``ConvWeightFn(x, gy)``      dw = dL/dw of conv(x, w) for gy = dL/dy (bilinear in x and gy)

    d conv(x, w)    :  dx = conv^T(g, w),   dw = ConvWeight(x, g)
    d conv^T(y, w)  :  dy = conv(g, w),     dw = ConvWeight(g, y)
    d ConvWeight(x, gy) with incoming G (shape of w):  dx = conv^T(gy, G),  dgy = conv(x, G)

The geometry (sizes, padding, stride, dilation) is computed once, in
:mod:`tinygen.kernels.geometry`; 1-D ops run as 2-D ops on a height-1 image. Bias is a
broadcast add (its gradient, a sum, comes from the engine).
"""
from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Function
from .. import kernels
from ..kernels import geometry
from ..tensor import Tensor
from ._util import check_tensor

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"]

_UNIT_AXIS = geometry.AxisGeometry(1, 1, 1, 1, 0, 1)  # the dummy height axis of a 1-D op


class Conv2dFn(Function):
    def forward(self, x, w, geom, groups):
        self.geom, self.groups = geom, groups
        return kernels.for_arrays("conv", x, w).conv2d_forward(x, w, geom, groups)

    def backward(self, g):
        x, w = self.saved_input(0), self.saved_input(1)
        gx = ConvTranspose2dFn.apply(g, w, geom=self.geom, groups=self.groups) \
            if self.needs_input_grad[0] else None
        gw = ConvWeightFn.apply(x, g, geom=self.geom, groups=self.groups, shape=w.shape) \
            if self.needs_input_grad[1] else None
        return gx, gw


class ConvTranspose2dFn(Function):
    def forward(self, y, w, geom, groups):
        self.geom, self.groups = geom, groups
        return kernels.for_arrays("conv", y, w).conv2d_transpose_forward(y, w, geom, groups)

    def backward(self, g):
        y, w = self.saved_input(0), self.saved_input(1)
        gy = Conv2dFn.apply(g, w, geom=self.geom, groups=self.groups) \
            if self.needs_input_grad[0] else None
        gw = ConvWeightFn.apply(g, y, geom=self.geom, groups=self.groups, shape=w.shape) \
            if self.needs_input_grad[1] else None
        return gy, gw


class ConvWeightFn(Function):
    def forward(self, x, gy, geom, groups, shape):
        self.geom, self.groups = geom, groups
        return kernels.for_arrays("conv", x, gy).conv2d_weight(x, gy, geom, groups, shape)

    def backward(self, g):
        x, gy = self.saved_input(0), self.saved_input(1)
        gx = ConvTranspose2dFn.apply(gy, g, geom=self.geom, groups=self.groups) \
            if self.needs_input_grad[0] else None
        ggy = Conv2dFn.apply(x, g, geom=self.geom, groups=self.groups) \
            if self.needs_input_grad[1] else None
        return gx, ggy


# -- argument checking ------------------------------------------------------------------------------
def _check_common(op, x, weight, bias, groups, nd):
    x, weight = check_tensor(x, "input"), check_tensor(weight, "weight")
    if x.ndim not in (nd + 1, nd + 2):
        layout = "(N, C, L)" if nd == 1 else "(N, C, H, W)"
        raise ValueError(f"{op}: input must have shape {layout} (or without the batch axis), "
                         f"got shape {tuple(x.shape)}")
    if weight.ndim != nd + 2:
        raise ValueError(f"{op}: weight must have {nd + 2} axes, got shape {tuple(weight.shape)}")
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    if x.dtype.kind != "f" or weight.dtype != x.dtype:
        raise TypeError(f"{op}: input and weight must have the same floating dtype, got "
                        f"{x.dtype} and {weight.dtype}")
    if x.device != weight.device:
        raise RuntimeError(f"{op}: input is on {x.device} but weight is on {weight.device}")
    if any(k < 1 for k in weight.shape[2:]):
        raise ValueError(f"{op}: weight must have a positive kernel size on every spatial axis, "
                         f"got shape {tuple(weight.shape)}")
    if bias is not None:
        check_tensor(bias, "bias")
        if bias.dtype != x.dtype:
            raise TypeError(f"{op}: bias has dtype {bias.dtype} but input and weight have "
                            f"{x.dtype}")
        if bias.device != x.device:
            raise RuntimeError(f"{op}: input is on {x.device} but bias is on {bias.device}")
    return x, weight


def _batched(x, nd):
    return (x, False) if x.ndim == nd + 2 else (x.unsqueeze(0), True)


def _as_2d(x, weight, nd):
    """1-D tensors as height-1 images: (N, C, L) -> (N, C, 1, L), weight (.., k) -> (.., 1, k)."""
    if nd == 2:
        return x, weight
    return x.unsqueeze(2), weight.unsqueeze(2)


def _add_bias(y, bias, n_out, op):
    if bias is None:
        return y
    if tuple(bias.shape) != (n_out,):
        raise ValueError(f"{op}: bias must have shape ({n_out},), got {tuple(bias.shape)}")
    return y + bias.reshape((1, n_out) + (1,) * (y.ndim - 2))


def _conv(op, nd, x, weight, bias, stride, padding, dilation, groups):
    x, weight = _check_common(op, x, weight, bias, groups, nd)
    x, unbatched = _batched(x, nd)
    c_in, c_out = x.shape[1], weight.shape[0]
    if c_in % groups or c_out % groups:
        raise ValueError(f"{op}: in_channels ({c_in}) and out_channels ({c_out}) must both be "
                         f"divisible by groups ({groups}); input shape {tuple(x.shape)}, weight "
                         f"shape {tuple(weight.shape)}")
    if weight.shape[1] * groups != c_in:
        raise ValueError(f"{op}: weight of shape {tuple(weight.shape)} expects "
                         f"{weight.shape[1] * groups} input channels (weight.shape[1] * groups), "
                         f"but the input of shape {tuple(x.shape)} has {c_in}")
    geom = geometry.conv_geometry(op, tuple(x.shape[2:]), tuple(weight.shape[2:]), stride,
                                  padding, dilation)
    x2, w2 = _as_2d(x, weight, nd)
    geom2 = geom if nd == 2 else (_UNIT_AXIS,) + geom
    y = Conv2dFn.apply(x2, w2, geom=geom2, groups=int(groups))
    if nd == 1:
        y = y.squeeze(2)
    y = _add_bias(y, bias, c_out, op)
    return y.squeeze(0) if unbatched else y


def _conv_transpose(op, nd, x, weight, bias, stride, padding, output_padding, groups, dilation):
    x, weight = _check_common(op, x, weight, bias, groups, nd)
    x, unbatched = _batched(x, nd)
    c_in = x.shape[1]
    if weight.shape[0] != c_in:
        raise ValueError(f"{op}: weight of shape {tuple(weight.shape)} expects {weight.shape[0]} "
                         f"input channels (weight.shape[0]), but the input of shape "
                         f"{tuple(x.shape)} has {c_in}")
    if c_in % groups:
        raise ValueError(f"{op}: in_channels ({c_in}) must be divisible by groups ({groups}); "
                         f"input shape {tuple(x.shape)}, weight shape {tuple(weight.shape)}")
    c_out = weight.shape[1] * groups
    geom = geometry.conv_transpose_geometry(op, tuple(x.shape[2:]), tuple(weight.shape[2:]),
                                            stride, padding, output_padding, dilation)
    x2, w2 = _as_2d(x, weight, nd)
    geom2 = geom if nd == 2 else (_UNIT_AXIS,) + geom
    y = ConvTranspose2dFn.apply(x2, w2, geom=geom2, groups=int(groups))
    if nd == 1:
        y = y.squeeze(2)
    y = _add_bias(y, bias, c_out, op)
    return y.squeeze(0) if unbatched else y


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """1-D convolution (cross-correlation, as in PyTorch) over (N, C_in, L).

    ``weight``: (C_out, C_in/groups, k); ``padding``: int, tuple, ``"valid"`` or ``"same"``.
    Output length: floor((L + 2 padding - dilation (k-1) - 1) / stride) + 1.
    """
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """2-D convolution (cross-correlation, as in PyTorch) over (N, C_in, H, W).

    ``weight``: (C_out, C_in/groups, kh, kw); ``stride``, ``padding``, ``dilation``: an int or a
    pair; ``padding`` may also be ``"valid"`` or ``"same"`` (stride 1 only; an odd total padding
    puts the extra zero on the bottom/right, as PyTorch).
    """
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1) -> Tensor:
    """1-D transposed convolution over (N, C_in, L): the adjoint of conv1d in its input.

    ``weight``: (C_in, C_out/groups, k). Output length:
    (L - 1) stride - 2 padding + dilation (k - 1) + output_padding + 1.
    """
    return _conv_transpose("conv_transpose1d", 1, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1) -> Tensor:
    """2-D transposed convolution over (N, C_in, H, W): the adjoint of conv2d in its input.

    ``weight``: (C_in, C_out/groups, kh, kw); ``output_padding`` (< stride or < dilation) adds
    rows/columns at the bottom/right to pick among the input sizes a strided conv maps to the
    same output size.
    """
    return _conv_transpose("conv_transpose2d", 2, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)
