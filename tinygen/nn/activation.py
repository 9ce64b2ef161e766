"""Activation modules over :mod:`tinygen.functional.activation` (PyTorch's names and arguments;
``inplace`` is accepted and ignored)."""
from __future__ import annotations

from .. import functional as F
from .module import Module

__all__ = ["SiLU", "GELU", "Mish", "Hardtanh", "ReLU6", "SELU", "CELU", "Softsign", "Hardswish",
           "Hardsigmoid", "LogSigmoid"]


class SiLU(Module):
    """x * sigmoid(x)."""

    def __init__(self, inplace: bool = False):
        super().__init__()

    def forward(self, input):
        return F.silu(input)


class GELU(Module):
    """x Phi(x) (``approximate="tanh"``: the tanh approximation)."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, input):
        return F.gelu(input, self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Mish(Module):
    """x * tanh(softplus(x))."""

    def __init__(self, inplace: bool = False):
        super().__init__()

    def forward(self, input):
        return F.mish(input)


class Hardtanh(Module):
    """x clamped to [min_val, max_val]."""

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
        super().__init__()
        if min_val > max_val:
            raise ValueError(f"Hardtanh: min_val {min_val} is greater than max_val {max_val}")
        self.min_val, self.max_val = min_val, max_val

    def forward(self, input):
        return F.hardtanh(input, self.min_val, self.max_val)

    def extra_repr(self):
        return f"min_val={self.min_val}, max_val={self.max_val}"


class ReLU6(Hardtanh):
    """min(max(x, 0), 6)."""

    def __init__(self, inplace: bool = False):
        super().__init__(0.0, 6.0)


class SELU(Module):
    """scale * elu(x, alpha) with the self-normalizing constants."""

    def __init__(self, inplace: bool = False):
        super().__init__()

    def forward(self, input):
        return F.selu(input)


class CELU(Module):
    """max(0, x) + min(0, alpha (exp(x / alpha) - 1))."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha = alpha

    def forward(self, input):
        return F.celu(input, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}"


class Softsign(Module):
    """x / (1 + |x|)."""

    def forward(self, input):
        return F.softsign(input)


class Hardswish(Module):
    """x * relu6(x + 3) / 6."""

    def __init__(self, inplace: bool = False):
        super().__init__()

    def forward(self, input):
        return F.hardswish(input)


class Hardsigmoid(Module):
    """relu6(x + 3) / 6."""

    def __init__(self, inplace: bool = False):
        super().__init__()

    def forward(self, input):
        return F.hardsigmoid(input)


class LogSigmoid(Module):
    """log(sigmoid(x)), stable."""

    def forward(self, input):
        return F.logsigmoid(input)
