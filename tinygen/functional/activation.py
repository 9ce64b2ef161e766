"""Activation functions beyond those of :mod:`.elementwise`: SiLU, GELU (exact and tanh),
log-sigmoid and the piecewise family (hardtanh, relu6, selu, celu, softsign, mish, hardswish,
hardsigmoid).

Most are compositions of differentiable primitives, so their gradients (and second derivatives)
come from the engine; ``logsigmoid`` is a primitive of its own for a stable forward.
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd import Function
from ..backend import get_array_module
from ..tensor import Tensor
from .elementwise import _float_input, abs, clamp, elu, sigmoid, softplus, tanh
from .pointwise import erf

__all__ = ["silu", "gelu", "logsigmoid", "hardtanh", "relu6", "selu", "celu", "softsign", "mish",
           "hardswish", "hardsigmoid"]

_SQRT_HALF = math.sqrt(0.5)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
# SELU's constants (Klambauer et al. 2017), as PyTorch spells them
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _sigmoid_array(x):
    """1 / (1 + e^-x) on a raw array, accurate to a few ulps in both tails; for x below about
    -88 (float32) / -709 (float64) e^-x overflows to inf and the result is 0 (the true value is
    below the smallest normal number)."""
    xp = get_array_module(x)
    with np.errstate(over="ignore"):   # NumPy's overflow warning for e^-x (CuPy does not warn)
        return 1.0 / (1.0 + xp.exp(-x))


class Silu(Function):
    """silu(x) = x s with s = sigmoid(x), one pass;  d/dx = s (1 + x (1 - s)), a primitive of
    its own (:class:`SiluDerivative`) so that the backward is one pass too."""

    def forward(self, x):
        return x * _sigmoid_array(x)

    def backward(self, g):
        return g * SiluDerivative.apply(self.saved_input(0))


class SiluDerivative(Function):
    """silu'(x) = s (1 + x (1 - s));  silu''(x) = s (1 - s) (2 + x (1 - 2 s))."""

    def forward(self, x):
        s = _sigmoid_array(x)
        return s * (1.0 + x * (1.0 - s))

    def backward(self, g):
        x = self.saved_input(0)
        s = sigmoid(x)
        return g * (s * (1.0 - s) * (2.0 + x * (1.0 - 2.0 * s)))


def silu(x) -> Tensor:
    """SiLU / swish: x * sigmoid(x)."""
    return Silu.apply(_float_input(x))


def gelu(x, approximate: str = "none") -> Tensor:
    """GELU: x Phi(x) with Phi the standard normal CDF, ``0.5 x (1 + erf(x / sqrt 2))``;
    ``approximate="tanh"``: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``."""
    x = _float_input(x)
    if approximate == "none":
        return 0.5 * x * (1.0 + erf(x * _SQRT_HALF))
    if approximate == "tanh":
        return 0.5 * x * (1.0 + tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


class LogSigmoid(Function):
    """log sigmoid(x) = min(x, 0) - log(1 + exp(-|x|));  d/dx = sigmoid(-x)."""

    def forward(self, x):
        xp = get_array_module(x)
        return (xp.minimum(x, 0) - xp.log1p(xp.exp(-xp.abs(x)))).astype(x.dtype, copy=False)

    def backward(self, g):
        return g * sigmoid(-self.saved_input(0))


def logsigmoid(x) -> Tensor:
    """log(1 / (1 + exp(-x))), stable for any x."""
    return LogSigmoid.apply(_float_input(x))


def hardtanh(x, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    """x clamped to ``[min_val, max_val]``."""
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val {min_val} is greater than max_val {max_val}")
    return clamp(_float_input(x), min_val, max_val)


def relu6(x) -> Tensor:
    """min(max(x, 0), 6)."""
    return hardtanh(x, 0.0, 6.0)


def selu(x) -> Tensor:
    """scale * elu(x, alpha) with SELU's fixed constants (self-normalizing networks)."""
    return _SELU_SCALE * elu(_float_input(x), _SELU_ALPHA)


def celu(x, alpha: float = 1.0) -> Tensor:
    """max(0, x) + min(0, alpha (exp(x / alpha) - 1)) = alpha * elu(x / alpha)."""
    if alpha == 0:
        raise ValueError("celu: alpha must not be 0")
    return alpha * elu(_float_input(x) / alpha)


def softsign(x) -> Tensor:
    """x / (1 + |x|)."""
    x = _float_input(x)
    return x / (1.0 + abs(x))


def mish(x) -> Tensor:
    """x * tanh(softplus(x)) (Misra 2019)."""
    x = _float_input(x)
    return x * tanh(softplus(x))


def hardsigmoid(x) -> Tensor:
    """relu6(x + 3) / 6: 0 below -3, 1 above 3, linear between."""
    return relu6(_float_input(x) + 3.0) * (1.0 / 6.0)


def hardswish(x) -> Tensor:
    """x * hardsigmoid(x) (MobileNetV3)."""
    x = _float_input(x)
    return x * hardsigmoid(x)
