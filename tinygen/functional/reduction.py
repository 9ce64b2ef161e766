"""Reductions: sum, mean, var, max/min, logsumexp, softmax and log-softmax, arg-reductions.

``dim`` is ``None`` (all axes), an int or a tuple of ints; ``keepdim`` keeps reduced axes as size 1.
"""
from __future__ import annotations

import collections

import numpy as np

from ..autograd import Function
from ..backend import get_array_module
from ..tensor import Tensor
from ._util import check_tensor, keepdims_shape, normalize_axis, normalize_dim
from .shape import BroadcastTo

__all__ = ["sum", "mean", "var", "std", "max", "min", "amax", "amin", "argmax", "argmin",
           "logsumexp", "softmax", "log_softmax", "any", "all"]

# ``torch.max(x, dim)`` / ``torch.min(x, dim)`` results: ``values, indices = x.max(1)``
MaxResult = collections.namedtuple("max", ["values", "indices"])
MinResult = collections.namedtuple("min", ["values", "indices"])


def _count(shape, axes):
    n = 1
    for i, s in enumerate(shape):
        if axes is None or i in axes:
            n *= s
    return n


class Sum(Function):
    def forward(self, x, axes, keepdim):
        self.in_shape, self.axes, self.keepdim = x.shape, axes, keepdim
        return x.sum(axis=axes, keepdims=keepdim)

    def backward(self, g):
        if not self.keepdim and self.axes is not None:
            g = g.reshape(keepdims_shape(self.in_shape, self.axes))
        return BroadcastTo.apply(g, shape=self.in_shape)  # a 0-d g broadcasts as it is


class Max(Function):
    """max/min along axes; the gradient is shared evenly between tied maxima (as ``amax``)."""

    def forward(self, x, axes, keepdim, smallest):
        if x.size == 0:
            raise ValueError(f"max/min of an empty tensor (shape {x.shape})")
        self.in_shape, self.axes, self.keepdim = x.shape, axes, keepdim
        y = x.min(axis=axes, keepdims=True) if smallest else x.max(axis=axes, keepdims=True)
        mask = (x == y)
        self.share = mask / mask.sum(axis=axes, keepdims=True)
        self.share = self.share.astype(x.dtype, copy=False)
        return y if keepdim else y.reshape(
            tuple(s for i, s in enumerate(x.shape) if axes is not None and i not in axes))

    def backward(self, g):
        if not self.keepdim:
            g = g.reshape(keepdims_shape(self.in_shape, self.axes))
        return g * Tensor._wrap(self.share)


class LogSumExp(Function):
    """y = m + log sum exp(x - m) with m = max x;  dy/dx = exp(x - y) = softmax(x)."""

    def forward(self, x, axes, keepdim):
        self.in_shape, self.axes, self.keepdim = x.shape, axes, keepdim
        if x.size == 0:  # log of an empty sum: -inf, as PyTorch
            shape = keepdims_shape(x.shape, axes) if keepdim else tuple(
                s for i, s in enumerate(x.shape) if axes is not None and i not in axes)
            return get_array_module(x).full(shape, -np.inf, dtype=x.dtype)
        m = x.max(axis=axes, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)  # all -inf (or inf) slices: avoid inf - inf
        with np.errstate(divide="ignore"):
            y = np.log(np.exp(x - m).sum(axis=axes, keepdims=True)) + m
        return y.astype(x.dtype, copy=False) if keepdim else y.reshape(
            tuple(s for i, s in enumerate(x.shape) if axes is not None and i not in axes)
        ).astype(x.dtype, copy=False)

    def backward(self, g):
        x, y = self.saved_input(0), self.saved_output()
        shape = keepdims_shape(self.in_shape, self.axes)
        if not self.keepdim:
            g, y = g.reshape(shape), y.reshape(shape)
        return g * (x - y).exp()


class Softmax(Function):
    def forward(self, x, axis):
        self.axis = axis
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

    def backward(self, g):
        # dL/dx = y * (g - sum(g * y))
        y = self.saved_output()
        return y * (g - (g * y).sum(self.axis, keepdim=True))


class LogSoftmax(Function):
    def forward(self, x, axis):
        self.axis = axis
        shifted = x - x.max(axis=axis, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))

    def backward(self, g):
        # dL/dx = g - softmax(x) * sum(g)
        y = self.saved_output()
        return g - y.exp() * g.sum(self.axis, keepdim=True)


def _reduce_input(x, dim, name):
    x = check_tensor(x, "input")
    axes = normalize_axis(dim, x.ndim, name)
    if x.ndim == 0:
        axes = None  # a 0-d tensor accepts dim=0 / -1 (as PyTorch) and reduces to itself
    return x, axes


def sum(x, dim=None, keepdim=False) -> Tensor:
    """Sum over ``dim`` (all axes when None). Booleans and ints sum to int64."""
    x, axes = _reduce_input(x, dim, "dim")
    if x.dtype.kind in "bi" and x.dtype != np.int64:
        x = x.to(np.int64)
    return Sum.apply(x, axes=axes, keepdim=bool(keepdim))


def mean(x, dim=None, keepdim=False) -> Tensor:
    """Mean over ``dim`` (all axes when None)."""
    x, axes = _reduce_input(x, dim, "dim")
    if x.dtype.kind != "f":
        raise TypeError(f"mean: input must be floating point, got dtype {x.dtype}")
    n = _count(x.shape, axes)
    # an empty reduction: 0 / 0 = nan, as PyTorch
    return Sum.apply(x, axes=axes, keepdim=bool(keepdim)) * (1.0 / n if n else float("nan"))


def var(x, dim=None, keepdim=False, correction: int = 1) -> Tensor:
    """Variance over ``dim`` with Bessel's ``correction`` (1: unbiased, PyTorch's default)."""
    x, axes = _reduce_input(x, dim, "dim")
    n = _count(x.shape, axes)
    d = x - mean(x, axes, keepdim=True)
    scale = 1.0 / (n - correction) if n > correction else float("nan")
    return sum(d * d, axes, keepdim) * scale


def std(x, dim=None, keepdim=False, correction: int = 1) -> Tensor:
    return var(x, dim, keepdim, correction).sqrt()


def amax(x, dim=None, keepdim=False) -> Tensor:
    """Largest value over ``dim`` (None or ``()``: all axes; an int or a tuple); tied maxima
    share the gradient evenly (as ``torch.amax``)."""
    x, axes = _reduce_input(x, None if dim == () else dim, "dim")
    return Max.apply(x, axes=axes, keepdim=bool(keepdim), smallest=False)


def amin(x, dim=None, keepdim=False) -> Tensor:
    """Smallest value over ``dim`` (as ``torch.amin``)."""
    x, axes = _reduce_input(x, None if dim == () else dim, "dim")
    return Max.apply(x, axes=axes, keepdim=bool(keepdim), smallest=True)


def _max_min(x, dim, keepdim, smallest):
    name = "min" if smallest else "max"
    if isinstance(dim, Tensor):  # torch.max(a, b): the elementwise maximum
        from .elementwise import maximum, minimum
        return minimum(x, dim) if smallest else maximum(x, dim)
    x = check_tensor(x, "input")
    if dim is None:
        return Max.apply(x, axes=None, keepdim=False, smallest=smallest)
    if not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{name}: dim must be an int (got {dim!r}); use amax/amin for several "
                        f"dims")
    result = MinResult if smallest else MaxResult
    if x.ndim == 0:
        normalize_dim(dim, 0)
        from .elementwise import clone
        return result(clone(x), Tensor._wrap(x._xp.asarray(0, dtype=np.int64)))
    d = normalize_dim(dim, x.ndim)
    if x.shape[d] == 0:
        raise IndexError(f"{name}(): dim {dim} of the tensor (shape {tuple(x.shape)}) is empty")
    xp = x._xp
    idx = (x.array.argmin if smallest else x.array.argmax)(axis=d, keepdims=True)
    # values = x[i_0, ..., idx, ..., i_n] (the gradient goes to the chosen element, as PyTorch)
    index = tuple(idx if i == d else xp.arange(n).reshape((n,) + (1,) * (x.ndim - 1 - i))
                  for i, n in enumerate(x.shape))
    from .shape import getitem, squeeze
    values = getitem(x, index)
    indices = Tensor._wrap(idx.astype(np.int64, copy=False))
    if not keepdim:
        values, indices = squeeze(values, d), squeeze(indices, d)
    return result(values, indices)


def max(x, dim=None, keepdim=False):
    """PyTorch's ``max``: ``max(x)`` is the largest value (tied maxima share the gradient);
    ``max(x, dim)`` is the pair ``(values, indices)`` along ``dim`` (the gradient goes to the
    element at ``indices``); ``max(x, other)`` is :func:`maximum`."""
    return _max_min(x, dim, keepdim, smallest=False)


def min(x, dim=None, keepdim=False):
    """PyTorch's ``min``: the smallest value, ``(values, indices)`` along ``dim``, or
    :func:`minimum` of two tensors (see :func:`max`)."""
    return _max_min(x, dim, keepdim, smallest=True)


def argmax(x, dim=None, keepdim=False) -> Tensor:
    """Index of the largest value (over the flattened tensor when ``dim`` is None); int64."""
    x = check_tensor(x, "input")
    if dim is None or x.ndim == 0:
        return Tensor._wrap(x.array.argmax().astype(np.int64))
    return Tensor._wrap(x.array.argmax(axis=normalize_dim(dim, x.ndim),
                                      keepdims=keepdim).astype(np.int64))


def argmin(x, dim=None, keepdim=False) -> Tensor:
    """Index of the smallest value; int64."""
    x = check_tensor(x, "input")
    if dim is None or x.ndim == 0:
        return Tensor._wrap(x.array.argmin().astype(np.int64))
    return Tensor._wrap(x.array.argmin(axis=normalize_dim(dim, x.ndim),
                                      keepdims=keepdim).astype(np.int64))


def any(x, dim=None, keepdim=False) -> Tensor:
    x, axes = _reduce_input(x, dim, "dim")
    return Tensor._wrap(x._xp.asarray(x.array.any(axis=axes, keepdims=keepdim)))


def all(x, dim=None, keepdim=False) -> Tensor:
    x, axes = _reduce_input(x, dim, "dim")
    return Tensor._wrap(x._xp.asarray(x.array.all(axis=axes, keepdims=keepdim)))


def logsumexp(x, dim=None, keepdim=False) -> Tensor:
    """log(sum(exp(x))) over ``dim``, computed stably (the max is subtracted first)."""
    x, axes = _reduce_input(x, dim, "dim")
    return LogSumExp.apply(x, axes=axes, keepdim=bool(keepdim))


def softmax(x, dim) -> Tensor:
    """exp(x) / sum(exp(x)) along ``dim``."""
    x = check_tensor(x, "input")
    return Softmax.apply(x, axis=normalize_dim(dim, x.ndim))


def log_softmax(x, dim) -> Tensor:
    """x - logsumexp(x) along ``dim``, computed stably."""
    x = check_tensor(x, "input")
    return LogSoftmax.apply(x, axis=normalize_dim(dim, x.ndim))
