"""More elementwise math: trigonometric and hyperbolic functions and their inverses, expm1,
reciprocal, the error function, base-2/base-10 logs and powers, the reciprocal square root,
rounding (zero gradient), ``logaddexp``, ``lerp`` and the tests ``isinf`` / ``isclose``.

Each differentiable primitive is a :class:`~tinygen.autograd.Function` whose forward runs on the
input's array module and whose backward is written with differentiable Tensor ops (second
derivatives work). Integer inputs are promoted to the default float dtype, as in PyTorch.
"""
from __future__ import annotations

import math

from ..autograd import Function
from ..backend import get_array_module
from ..tensor import Tensor
from ._util import binary_operands, check_tensor
from .elementwise import _float_input, exp, sigmoid

__all__ = ["sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "expm1",
           "reciprocal", "erf", "log2", "log10", "exp2", "rsqrt", "floor", "ceil", "round",
           "trunc", "logaddexp", "lerp", "isinf", "isclose"]

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_LN2 = math.log(2.0)
_LN10 = math.log(10.0)


def _special(xp):
    """``scipy.special`` for NumPy arrays, ``cupyx.scipy.special`` for CuPy arrays (erf lives
    there; NumPy has none). SciPy comes with the ``mlxtend`` dependency."""
    if xp.__name__ == "numpy":
        import scipy.special
        return scipy.special
    from ..kernels.cuda import _runtime  # the one place that imports CuPy
    return _runtime.get_cupyx("scipy.special")


class Sin(Function):
    def forward(self, x):
        return get_array_module(x).sin(x)

    def backward(self, g):
        return g * cos(self.saved_input(0))


class Cos(Function):
    def forward(self, x):
        return get_array_module(x).cos(x)

    def backward(self, g):
        return -g * sin(self.saved_input(0))


class Tan(Function):
    def forward(self, x):
        return get_array_module(x).tan(x)

    def backward(self, g):
        y = self.saved_output()
        return g * (1.0 + y * y)


class Asin(Function):
    def forward(self, x):
        return get_array_module(x).arcsin(x)

    def backward(self, g):
        x = self.saved_input(0)
        return g * (1.0 - x * x) ** -0.5


class Acos(Function):
    def forward(self, x):
        return get_array_module(x).arccos(x)

    def backward(self, g):
        x = self.saved_input(0)
        return -g * (1.0 - x * x) ** -0.5


class Atan(Function):
    def forward(self, x):
        return get_array_module(x).arctan(x)

    def backward(self, g):
        x = self.saved_input(0)
        return g / (1.0 + x * x)


class Sinh(Function):
    def forward(self, x):
        return get_array_module(x).sinh(x)

    def backward(self, g):
        return g * cosh(self.saved_input(0))


class Cosh(Function):
    def forward(self, x):
        return get_array_module(x).cosh(x)

    def backward(self, g):
        return g * sinh(self.saved_input(0))


class Expm1(Function):
    """e^x - 1, accurate near 0;  d/dx = e^x = y + 1."""

    def forward(self, x):
        return get_array_module(x).expm1(x)

    def backward(self, g):
        return g * (self.saved_output() + 1.0)


class Reciprocal(Function):
    def forward(self, x):
        return 1.0 / x

    def backward(self, g):
        y = self.saved_output()
        return -g * y * y


class Atan2(Function):
    """atan2(a, b), the angle of the point (b, a);  d/da = b / r^2,  d/db = -a / r^2."""

    def forward(self, a, b):
        return get_array_module(a).arctan2(a, b)

    def backward(self, g):
        a, b = self.saved_input(0), self.saved_input(1)
        r2 = a * a + b * b
        ga = g * b / r2 if self.needs_input_grad[0] else None
        gb = -g * a / r2 if self.needs_input_grad[1] else None
        return ga, gb


class Erf(Function):
    """erf(x) = 2/sqrt(pi) int_0^x exp(-t^2) dt;  d/dx = 2/sqrt(pi) exp(-x^2)."""

    def forward(self, x):
        return _special(get_array_module(x)).erf(x).astype(x.dtype, copy=False)

    def backward(self, g):
        x = self.saved_input(0)
        return g * (_TWO_OVER_SQRT_PI * exp(-(x * x)))


class Log2(Function):
    def forward(self, x):
        return get_array_module(x).log2(x)

    def backward(self, g):
        return g / (self.saved_input(0) * _LN2)


class Log10(Function):
    def forward(self, x):
        return get_array_module(x).log10(x)

    def backward(self, g):
        return g / (self.saved_input(0) * _LN10)


class Exp2(Function):
    def forward(self, x):
        return get_array_module(x).exp2(x)

    def backward(self, g):
        return g * (self.saved_output() * _LN2)


class Rsqrt(Function):
    """1 / sqrt(x);  d/dx = -1/2 x^(-3/2) = -y^3 / 2."""

    def forward(self, x):
        return 1.0 / get_array_module(x).sqrt(x)

    def backward(self, g):
        y = self.saved_output()
        return g * (-0.5 * y * y * y)


class _Rounding(Function):
    """Piecewise-constant ops: the gradient is zero everywhere (PyTorch's convention)."""

    def forward(self, x, name, decimals=0):
        xp = get_array_module(x)
        if name == "round":
            return xp.round(x, decimals)
        return getattr(xp, name)(x)

    def backward(self, g):
        return Tensor._wrap(g._xp.zeros(g.shape, dtype=g.dtype))


class LogAddExp(Function):
    """log(e^a + e^b);  d/da = sigmoid(a - b),  d/db = sigmoid(b - a)."""

    def forward(self, a, b):
        return get_array_module(a).logaddexp(a, b)

    def backward(self, g):
        a, b = self.saved_input(0), self.saved_input(1)
        ga = g * sigmoid(a - b) if self.needs_input_grad[0] else None
        gb = g * sigmoid(b - a) if self.needs_input_grad[1] else None
        return ga, gb


def sin(x) -> Tensor:
    """Sine, elementwise (radians)."""
    return Sin.apply(_float_input(x))


def cos(x) -> Tensor:
    """Cosine, elementwise (radians)."""
    return Cos.apply(_float_input(x))


def tan(x) -> Tensor:
    """Tangent, elementwise (radians)."""
    return Tan.apply(_float_input(x))


def asin(x) -> Tensor:
    """Inverse sine (radians), elementwise; nan outside [-1, 1]."""
    return Asin.apply(_float_input(x))


def acos(x) -> Tensor:
    """Inverse cosine (radians), elementwise; nan outside [-1, 1]."""
    return Acos.apply(_float_input(x))


def atan(x) -> Tensor:
    """Inverse tangent (radians), elementwise."""
    return Atan.apply(_float_input(x))


def atan2(input, other) -> Tensor:
    """The angle of the point (other, input) in (-pi, pi], with broadcasting."""
    a, b = binary_operands(input, other)
    return Atan2.apply(_float_input(a, "input"), _float_input(b, "other"))


def sinh(x) -> Tensor:
    """Hyperbolic sine."""
    return Sinh.apply(_float_input(x))


def cosh(x) -> Tensor:
    """Hyperbolic cosine."""
    return Cosh.apply(_float_input(x))


def expm1(x) -> Tensor:
    """exp(x) - 1, accurate for small x."""
    return Expm1.apply(_float_input(x))


def reciprocal(x) -> Tensor:
    """1 / x."""
    return Reciprocal.apply(_float_input(x))


def erf(x) -> Tensor:
    """The error function, elementwise."""
    return Erf.apply(_float_input(x))


def log2(x) -> Tensor:
    """Base-2 logarithm."""
    return Log2.apply(_float_input(x))


def log10(x) -> Tensor:
    """Base-10 logarithm."""
    return Log10.apply(_float_input(x))


def exp2(x) -> Tensor:
    """2 ** x."""
    return Exp2.apply(_float_input(x))


def rsqrt(x) -> Tensor:
    """1 / sqrt(x)."""
    return Rsqrt.apply(_float_input(x))


def _rounding(name, x, **params):
    x = check_tensor(x, "input")
    if x.dtype.kind != "f":  # integers are already whole numbers (PyTorch returns a copy)
        return Tensor._wrap(x.array.copy())
    return _Rounding.apply(x, name=name, **params)


def floor(x) -> Tensor:
    """Largest integer <= x (zero gradient)."""
    return _rounding("floor", x)


def ceil(x) -> Tensor:
    """Smallest integer >= x (zero gradient)."""
    return _rounding("ceil", x)


def trunc(x) -> Tensor:
    """x rounded toward zero (zero gradient)."""
    return _rounding("trunc", x)


def round(x, decimals: int = 0) -> Tensor:
    """x rounded to ``decimals`` places, halves to even as in PyTorch (zero gradient)."""
    return _rounding("round", x, decimals=int(decimals))


def logaddexp(a, b) -> Tensor:
    """log(exp(a) + exp(b)) without overflow, with broadcasting."""
    a, b = binary_operands(a, b)
    a, b = _float_input(a, "input"), _float_input(b, "other")
    return LogAddExp.apply(a, b)


def lerp(start, end, weight) -> Tensor:
    """Linear interpolation ``start + weight * (end - start)`` (weight a number or a Tensor).

    The update of an exponential moving average, ``ema.lerp(param, 1 - decay)``.
    """
    start, end = binary_operands(start, end)
    return start + weight * (end - start)


def isinf(x) -> Tensor:
    """Boolean tensor: where x is +inf or -inf."""
    x = check_tensor(x, "input")
    return Tensor._wrap(x._xp.isinf(x.array))


def isclose(a, b, rtol: float = 1e-5, atol: float = 1e-8, equal_nan: bool = False) -> Tensor:
    """Boolean tensor: ``|a - b| <= atol + rtol * |b|`` elementwise (PyTorch's ``isclose``)."""
    a, b = binary_operands(a, b)
    return Tensor._wrap(a._xp.isclose(a.array, b.array, rtol=rtol, atol=atol, equal_nan=equal_nan))

