"""Elementwise ops: arithmetic with broadcasting, unary math, activations, comparisons.

Each primitive is a :class:`~tinygen.autograd.Function` whose backward is written with Tensor ops
(so it is itself differentiable). Broadcasting is *not* undone here: the engine sums every
gradient down to its input's shape.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..autograd import Function
from ..backend import get_array_module
from ..tensor import Tensor
from ._util import binary_operands, broadcast_operands, check_tensor, result_type, to_operand

__all__ = ["add", "sub", "mul", "div", "neg", "pow", "exp", "log", "log1p", "sqrt", "abs",
           "sign", "tanh", "sigmoid", "relu", "leaky_relu", "softplus", "elu", "clamp",
           "maximum", "minimum", "where", "cast", "to_device", "clone", "eq", "ne", "lt", "le",
           "gt", "ge", "logical_not", "bitwise_not", "isfinite", "isnan", "square"]


# -- arithmetic ----------------------------------------------------------------------------------
class Add(Function):
    def forward(self, a, b):
        return a + b

    def backward(self, g):
        return g, g


class Sub(Function):
    def forward(self, a, b):
        return a - b

    def backward(self, g):
        return g, -g


class Mul(Function):
    def forward(self, a, b):
        return a * b

    def backward(self, g):
        a = self.saved_input(0) if self.needs_input_grad[1] else None
        b = self.saved_input(1) if self.needs_input_grad[0] else None
        return (g * b if b is not None else None), (g * a if a is not None else None)


class Div(Function):
    def forward(self, a, b):
        return a / b

    def backward(self, g):
        b = self.saved_input(1)
        ga = g / b
        gb = -ga * self.saved_input(0) / b if self.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, g):
        return -g


class PowConst(Function):
    """x ** p for a Python number p:  d/dx = p x^(p-1)."""

    def forward(self, x, p):
        self.p = p
        return x ** p

    def backward(self, g):
        p = self.p
        if p == 0:
            return g * 0.0
        if p == 1:
            return g
        if p == 2:
            return g * (2.0 * self.saved_input(0))
        return g * (p * self.saved_input(0) ** (p - 1))


class Pow(Function):
    """a ** b for tensors:  d/da = b a^(b-1),  d/db = a^b log a  (taken as 0 where a == 0)."""

    def forward(self, a, b):
        return a ** b

    def backward(self, g):
        a, b = self.saved_input(0), self.saved_input(1)
        ga = None
        if self.needs_input_grad[0]:
            # b a^(b-1), taken as 0 where a == b == 0 (PyTorch's value; 0 * 0 ** -1 is nan)
            both_zero = Tensor._wrap((a.array == 0) & (b.array == 0))
            ga = g * where(both_zero, 0.0, b * a ** where(both_zero, 1.0, b - 1))
        gb = None
        if self.needs_input_grad[1]:
            zero = a == 0
            log_a = where(zero, 0.0, log(where(zero, 1.0, a)))
            gb = g * self.saved_output() * log_a
        return ga, gb


def add(a, b) -> Tensor:
    """``a + b`` with broadcasting."""
    return Add.apply(*broadcast_operands(a, b, "add"))


def sub(a, b) -> Tensor:
    """``a - b`` with broadcasting."""
    return Sub.apply(*broadcast_operands(a, b, "sub"))


def mul(a, b) -> Tensor:
    """``a * b`` with broadcasting."""
    return Mul.apply(*broadcast_operands(a, b, "mul"))


def div(a, b, *, rounding_mode=None) -> Tensor:
    """``a / b`` (true division) with broadcasting; integer inputs give a float result.
    ``rounding_mode="trunc"`` / ``"floor"`` rounds the quotient (see :mod:`.utility`)."""
    if rounding_mode is not None:
        from .utility import divide_rounded
        return divide_rounded(a, b, rounding_mode)
    if result_type(a, b).kind in "biu":  # true division of integers: in the default float
        from ..backend import get_default_dtype
        a, b = (t.to(get_default_dtype()) if isinstance(t, Tensor) else float(t) for t in (a, b))
    a, b = broadcast_operands(a, b, "div")
    return Div.apply(a, b)


def neg(x) -> Tensor:
    return Neg.apply(check_tensor(x, "input"))


def pow(base, exponent) -> Tensor:
    """``base ** exponent``; a Python-number exponent uses the cheaper constant-power rule."""
    if isinstance(base, Tensor) and isinstance(exponent, numbers.Real) and \
            not isinstance(exponent, bool):
        if base.dtype.kind != "f" and (not isinstance(exponent, numbers.Integral) or exponent < 0):
            from ..backend import get_default_dtype
            base = base.to(get_default_dtype())
        return PowConst.apply(base, p=exponent)
    base, exponent = broadcast_operands(base, exponent, "pow")
    if base.dtype.kind in "biu" and exponent.dtype.kind in "biu":
        if (exponent.array < 0).any():
            raise ValueError("pow: integers to negative integer powers are not allowed")
    return Pow.apply(base, exponent)


def square(x) -> Tensor:
    return PowConst.apply(check_tensor(x, "input"), p=2)


# -- unary math ------------------------------------------------------------------------------------
class Exp(Function):
    def forward(self, x):
        return np.exp(x)

    def backward(self, g):
        return g * self.saved_output()


class Log(Function):
    def forward(self, x):
        return np.log(x)

    def backward(self, g):
        return g / self.saved_input(0)


class Log1p(Function):
    def forward(self, x):
        return np.log1p(x)

    def backward(self, g):
        return g / (1.0 + self.saved_input(0))


class Sqrt(Function):
    def forward(self, x):
        return np.sqrt(x)

    def backward(self, g):
        return g / (2.0 * self.saved_output())


class Abs(Function):
    def forward(self, x):
        return np.abs(x)

    def backward(self, g):
        return g * sign(self.saved_input(0))  # d|x|/dx = sign(x), 0 at x = 0 as in PyTorch


class Tanh(Function):
    def forward(self, x):
        return np.tanh(x)

    def backward(self, g):
        y = self.saved_output()
        return g * (1.0 - y * y)


class Sigmoid(Function):
    def forward(self, x):
        # 1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) for x < 0: never overflows.
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)

    def backward(self, g):
        y = self.saved_output()
        return g * (y * (1.0 - y))


def _float_input(x, name="input"):
    x = check_tensor(x, name)
    if x.dtype.kind != "f":
        from ..backend import get_default_dtype
        x = x.to(get_default_dtype())
    return x


def exp(x) -> Tensor:
    return Exp.apply(_float_input(x))


def log(x) -> Tensor:
    return Log.apply(_float_input(x))


def log1p(x) -> Tensor:
    return Log1p.apply(_float_input(x))


def sqrt(x) -> Tensor:
    return Sqrt.apply(_float_input(x))


def abs(x) -> Tensor:
    return Abs.apply(check_tensor(x, "input"))


class Sign(Function):
    def forward(self, x):
        return get_array_module(x).sign(x)

    def backward(self, g):
        return g * 0.0  # zero almost everywhere, and taken as 0 at x = 0 (as PyTorch)


def sign(x) -> Tensor:
    """Sign of each element (-1, 0, 1); its gradient is zero (as in PyTorch)."""
    x = check_tensor(x, "input")
    if x.dtype.kind == "b":
        return Tensor._wrap(x.array.copy())
    return Sign.apply(x)


def tanh(x) -> Tensor:
    return Tanh.apply(_float_input(x))


def sigmoid(x) -> Tensor:
    """Logistic function 1 / (1 + exp(-x)), computed without overflow for any x."""
    return Sigmoid.apply(_float_input(x))


# -- activations ------------------------------------------------------------------------------------
class Relu(Function):
    def forward(self, x):
        # one pass, the dtype kept (0 is a weak scalar); NaN stays NaN as in torch.relu
        return get_array_module(x).maximum(x, 0)

    def backward(self, g):
        # d relu / dx = [x > 0] = [relu(x) > 0], read off the output (no mask kept)
        return g * Tensor._wrap((self.saved_output().array > 0).astype(g.dtype))


class LeakyRelu(Function):
    def forward(self, x, negative_slope):
        self.slope = Tensor._wrap(np.where(x > 0, 1.0, negative_slope).astype(x.dtype))
        return x * self.slope.array

    def backward(self, g):
        return g * self.slope


class Softplus(Function):
    """softplus(x) = log(1 + exp(beta x)) / beta; linear (= x) where beta x > threshold."""

    def forward(self, x, beta, threshold):
        bx = x * beta
        self.beta, self.linear = beta, bx > threshold
        stable = (np.maximum(bx, 0) + np.log1p(np.exp(-np.abs(bx)))) / beta
        return np.where(self.linear, x, stable).astype(x.dtype, copy=False)

    def backward(self, g):
        s = sigmoid(self.saved_input(0) * self.beta)
        if not self.linear.any():
            return g * s
        return where(Tensor._wrap(self.linear), g, g * s)


class Elu(Function):
    """elu(x) = x for x > 0, alpha (exp(x) - 1) otherwise."""

    def forward(self, x, alpha):
        self.alpha, self.pos = alpha, x > 0
        return np.where(self.pos, x, alpha * np.expm1(np.minimum(x, 0))).astype(x.dtype,
                                                                               copy=False)

    def backward(self, g):
        # for x <= 0: d/dx alpha (e^x - 1) = alpha e^x = y + alpha
        return where(Tensor._wrap(self.pos), g, g * (self.saved_output() + self.alpha))


class Clamp(Function):
    def forward(self, x, lo, hi):
        self.x_dtype = x.dtype
        xp = get_array_module(x)
        inside = xp.ones(x.shape, dtype=bool)
        if lo is not None:
            inside &= x >= lo
        if hi is not None:
            inside &= x <= hi
        self.inside = inside
        return xp.clip(x, lo, hi)

    def backward(self, g):
        return g * Tensor._wrap(self.inside.astype(g.dtype))


class Maximum(Function):
    """Elementwise max; at ties the gradient is split evenly between the inputs (as PyTorch)."""

    sign = 1

    def forward(self, a, b):
        wins = (a > b) if self.sign > 0 else (a < b)
        self.share_a = (wins + 0.5 * (a == b)).astype(np.result_type(a, b))
        return np.maximum(a, b) if self.sign > 0 else np.minimum(a, b)

    def backward(self, g):
        share_a = Tensor._wrap(self.share_a)
        return g * share_a, g * (1.0 - share_a)


class Minimum(Maximum):
    sign = -1


class Where(Function):
    def forward(self, a, b, cond):
        self.cond = cond
        return np.where(cond, a, b)

    def backward(self, g):
        zero = Tensor._wrap(g._xp.zeros((), dtype=g.dtype))
        cond = Tensor._wrap(self.cond)
        ga = where(cond, g, zero) if self.needs_input_grad[0] else None
        gb = where(cond, zero, g) if self.needs_input_grad[1] else None
        return ga, gb


def relu(x) -> Tensor:
    return Relu.apply(check_tensor(x, "input"))


def leaky_relu(x, negative_slope: float = 0.01) -> Tensor:
    return LeakyRelu.apply(_float_input(x), negative_slope=float(negative_slope))


def softplus(x, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, stable for any x; returns x where beta x > threshold."""
    if beta <= 0:
        raise ValueError(f"softplus: beta must be positive, got {beta}")
    return Softplus.apply(_float_input(x), beta=float(beta), threshold=float(threshold))


def elu(x, alpha: float = 1.0) -> Tensor:
    return Elu.apply(_float_input(x), alpha=float(alpha))


def clamp(x, min=None, max=None) -> Tensor:
    """Limit values to ``[min, max]``; the gradient passes where min <= x <= max."""
    x = check_tensor(x, "input")
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    lo = min.item() if isinstance(min, Tensor) else min
    hi = max.item() if isinstance(max, Tensor) else max
    return Clamp.apply(x, lo=lo, hi=hi)


def maximum(a, b) -> Tensor:
    return Maximum.apply(*broadcast_operands(a, b, "maximum"))


def minimum(a, b) -> Tensor:
    return Minimum.apply(*broadcast_operands(a, b, "minimum"))


def where(condition, a, b) -> Tensor:
    """``a`` where ``condition`` is true, else ``b`` (all three broadcast together)."""
    if isinstance(condition, Tensor):
        cond = condition.array
    else:
        cond = np.asarray(condition)
    if cond.dtype != np.bool_:
        raise TypeError(f"where: condition must be boolean, got dtype {cond.dtype}")
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        # two Python numbers: int64 for ints, the default float dtype for floats (as PyTorch)
        dtype = result_type(a, b)
        like = Tensor._wrap(get_array_module(cond).zeros((), dtype))
        a, b = to_operand(a, like, dtype), to_operand(b, like, dtype)
    a, b = broadcast_operands(a, b, "where")
    if not isinstance(condition, Tensor):
        cond = a._xp.asarray(cond)  # host data (a NumPy array or a list) go to a's device
    return Where.apply(a, b, cond=cond)


# -- dtype / device / copy ------------------------------------------------------------------------------
class Cast(Function):
    def forward(self, x, dtype):
        self.in_dtype = x.dtype
        return x.astype(dtype)

    def backward(self, g):
        return Cast.apply(g, dtype=self.in_dtype)


class ToDevice(Function):
    def forward(self, x, device):
        from .. import backend
        self.in_device = backend.device_of(x)
        return backend.to_device(x, device)

    def backward(self, g):
        return ToDevice.apply(g, device=self.in_device)


class Clone(Function):
    def forward(self, x):
        return x.copy()

    def backward(self, g):
        return g


def cast(x, dtype) -> Tensor:
    """``x`` converted to ``dtype`` (differentiable between floating dtypes)."""
    x = check_tensor(x, "input")
    dtype = np.dtype(dtype)
    if x.requires_grad and dtype.kind != "f":
        return Tensor._wrap(x.array.astype(dtype))  # leaving the differentiable world
    return Cast.apply(x, dtype=dtype)


def to_device(x, device: str) -> Tensor:
    return ToDevice.apply(check_tensor(x, "input"), device=device)


def clone(x) -> Tensor:
    """A copy with its own memory; gradients flow through."""
    return Clone.apply(check_tensor(x, "input"))


# -- comparisons (no gradient) --------------------------------------------------------------------------
def _compare(ufunc):
    def op(a, b) -> Tensor:
        a, b = binary_operands(a, b)
        return Tensor._wrap(ufunc(a.array, b.array))
    op.__name__ = ufunc.__name__
    op.__doc__ = f"Elementwise ``{ufunc.__name__}`` as a boolean tensor (no gradient)."
    return op


eq = _compare(np.equal)
ne = _compare(np.not_equal)
lt = _compare(np.less)
le = _compare(np.less_equal)
gt = _compare(np.greater)
ge = _compare(np.greater_equal)


def logical_not(x) -> Tensor:
    return Tensor._wrap(np.logical_not(check_tensor(x, "input").array))


def bitwise_not(x) -> Tensor:
    """``~x``: bitwise not of an integer tensor, logical not of a bool tensor (as PyTorch)."""
    x = check_tensor(x, "input")
    if x.dtype.kind not in "biu":
        raise TypeError(f"bitwise_not (~): only integer and bool tensors, got dtype {x.dtype}")
    return Tensor._wrap(get_array_module(x.array).invert(x.array))


def isfinite(x) -> Tensor:
    return Tensor._wrap(np.isfinite(check_tensor(x, "input").array))


def isnan(x) -> Tensor:
    return Tensor._wrap(np.isnan(check_tensor(x, "input").array))


_LOG_2PI = math.log(2.0 * math.pi)
