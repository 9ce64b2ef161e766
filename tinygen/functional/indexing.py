"""Index-driven ops with PyTorch's semantics: ``gather`` / ``scatter`` / ``scatter_add``,
``index_select``, ``masked_fill``, ``one_hot``, the running ``cumsum`` / ``cumprod`` /
``logcumsumexp``, ``prod`` and the triangle masks ``tril`` / ``triu``.

``gather`` and ``scatter_add`` into zeros are adjoint to each other, so each one's backward is the
other and every order of derivative is available. Positions are computed as flat offsets into a
C-ordered array with the input's array module, so the same code runs on NumPy and CuPy.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..autograd import Function, is_grad_enabled
from ..backend import get_array_module
from ..tensor import Tensor
from ._util import check_tensor, normalize_dim
from .elementwise import where
from .reduction import logsumexp
from .shape import _scatter_add, cat, flip, getitem

__all__ = ["gather", "scatter", "scatter_add", "index_select", "masked_fill", "one_hot",
           "cumsum", "cumprod", "tril", "triu", "prod", "logcumsumexp"]


def _flat_positions(xp, shape, dim, index):
    """Offsets into a C-ordered array of ``shape`` of the elements ``x[i_0, .., index[i], ..]``
    (``index[i]`` replacing the coordinate along ``dim``), one per element of ``index``."""
    strides = [1] * len(shape)
    for a in range(len(shape) - 2, -1, -1):
        strides[a] = strides[a + 1] * shape[a + 1]
    pos = index.astype(np.int64) * strides[dim]
    for a in range(index.ndim):
        if a != dim:
            axis_shape = [1] * index.ndim
            axis_shape[a] = index.shape[a]
            pos = pos + xp.arange(index.shape[a], dtype=np.int64).reshape(axis_shape) * strides[a]
    return pos


class Gather(Function):
    """out[i] = x[i with coordinate ``dim`` replaced by index[i]];  backward: scatter-add."""

    def forward(self, x, dim, index):
        self.dim, self.index, self.in_shape = dim, index, x.shape
        xp = get_array_module(x)
        return xp.ascontiguousarray(x).reshape(-1)[_flat_positions(xp, x.shape, dim, index)]

    def backward(self, g):
        return ScatterAddZeros.apply(g, dim=self.dim, index=self.index, shape=self.in_shape)


class ScatterAddZeros(Function):
    """Zeros of ``shape`` with ``src`` added at the gathered positions (repeats accumulate);
    the adjoint of :class:`Gather`."""

    def forward(self, src, dim, index, shape):
        self.dim, self.index = dim, index
        xp = get_array_module(src)
        out = xp.zeros(shape, dtype=src.dtype)
        _scatter_add(out.reshape(-1), _flat_positions(xp, shape, dim, index).reshape(-1),
                     src.reshape(-1))
        return out

    def backward(self, g):
        return Gather.apply(g, dim=self.dim, index=self.index)


class Scatter(Function):
    """x with the positions chosen by ``index`` overwritten by ``src``.

    d/dx: g with those positions zeroed;  d/dsrc: g gathered at them.
    """

    def forward(self, x, src, dim, index):
        self.dim, self.index = dim, index
        xp = get_array_module(x)
        out = xp.array(x, order="C", copy=True)
        out.reshape(-1)[_flat_positions(xp, x.shape, dim, index)] = src
        return out

    def backward(self, g):
        gx = gsrc = None
        if self.needs_input_grad[0]:
            zeros = Tensor._wrap(g._xp.zeros(self.index.shape, dtype=g.dtype))
            gx = Scatter.apply(g, zeros, dim=self.dim, index=self.index)
        if self.needs_input_grad[1]:
            gsrc = Gather.apply(g, dim=self.dim, index=self.index)
        return gx, gsrc


def _check_index(name, x, dim, index, src=None):
    """Validate ``index`` (and ``src``) against ``x`` as PyTorch does; returns (dim, index
    array)."""
    check_tensor(index, "index")
    if index.dtype.kind not in "iu":
        raise TypeError(f"{name}: index must be an integer tensor, got dtype {index.dtype}")
    d = normalize_dim(dim, max(x.ndim, 1))
    if index.ndim != x.ndim:
        raise ValueError(f"{name}: index has {index.ndim} dimensions (shape {tuple(index.shape)}) "
                         f"but input has {x.ndim} (shape {tuple(x.shape)})")
    for a, (i, s) in enumerate(zip(index.shape, x.shape)):
        if a != d and i > s:
            raise ValueError(f"{name}: index of shape {tuple(index.shape)} is larger than input "
                             f"of shape {tuple(x.shape)} along dimension {a}")
        if src is not None and i > src.shape[a]:
            raise ValueError(f"{name}: index of shape {tuple(index.shape)} is larger than src "
                             f"of shape {tuple(src.shape)} along dimension {a}")
    idx = index.array
    if idx.size and (bool((idx < 0).any()) or bool((idx >= x.shape[d]).any())):
        raise IndexError(f"{name}: index values must lie in [0, {x.shape[d]}) for dim={dim} of "
                         f"input shape {tuple(x.shape)}, got [{int(idx.min())}, {int(idx.max())}]")
    return d, idx


def gather(input, dim, index, *, sparse_grad: bool = False) -> Tensor:
    """``out[i][j][k] = input[index[i][j][k]][j][k]`` for ``dim=0`` (and likewise for other
    dims); ``out`` has ``index``'s shape. ``sparse_grad`` is accepted and ignored (the gradient
    is dense)."""
    x = check_tensor(input, "input")
    d, idx = _check_index("gather", x, dim, index)
    return Gather.apply(x, dim=d, index=idx)


def _src_for(index, src, like, name):
    """``src`` as a Tensor cut to ``index``'s shape (a number fills it)."""
    if isinstance(src, numbers.Number):
        return Tensor._wrap(like._xp.full(index.shape, src, dtype=like.dtype))
    src = check_tensor(src, "src")
    if src.ndim != index.ndim:
        raise ValueError(f"{name}: src has shape {tuple(src.shape)}, index "
                         f"{tuple(index.shape)}; they need the same number of dimensions")
    if src.shape != index.shape:
        src = getitem(src, tuple(slice(0, s) for s in index.shape))
    return src


def scatter_add(input, dim, index, src) -> Tensor:
    """``input`` plus ``src`` added at the positions of ``index`` (repeats accumulate):
    ``out[index[i][j]][j] += src[i][j]`` for ``dim=0``."""
    x = check_tensor(input, "input")
    d, idx = _check_index("scatter_add", x, dim, index, check_tensor(src, "src"))
    src = _src_for(index, src, x, "scatter_add")
    return x + ScatterAddZeros.apply(src, dim=d, index=idx, shape=x.shape)


def scatter(input, dim, index, src=None, *, value=None, reduce=None) -> Tensor:
    """``input`` with ``out[index[i][j]][j] = src[i][j]`` for ``dim=0`` (``src`` a Tensor or a
    number, or ``value=`` a number). ``reduce="add"`` is :func:`scatter_add`. Where ``index``
    repeats a position, which write wins is unspecified (as in PyTorch)."""
    x = check_tensor(input, "input")
    if (src is None) == (value is None):
        raise TypeError("scatter: give exactly one of src and value")
    src = value if src is None else src
    if reduce == "add":
        return scatter_add(x, dim, index, src)
    if reduce is not None:
        raise ValueError(f"scatter: reduce must be None or 'add', got {reduce!r}")
    d, idx = _check_index("scatter", x, dim, index,
                          src if isinstance(src, Tensor) else None)
    src = _src_for(index, src, x, "scatter")
    if src.dtype != x.dtype:
        src = src.to(x.dtype)
    return Scatter.apply(x, src, dim=d, index=idx)


def index_select(input, dim, index) -> Tensor:
    """The slices ``index`` (a 1-D integer tensor) of ``input`` along ``dim``."""
    x = check_tensor(input, "input")
    check_tensor(index, "index")
    if index.ndim > 1 or index.dtype.kind not in "iu":
        raise ValueError(f"index_select: index must be a 0-D or 1-D integer tensor, got shape "
                         f"{tuple(index.shape)} dtype {index.dtype}")
    d = normalize_dim(dim, max(x.ndim, 1))
    return getitem(x, (slice(None),) * d + (index.array.reshape(-1),))


def masked_fill(input, mask, value) -> Tensor:
    """``input`` with ``value`` (a number or a 0-d Tensor) where the boolean ``mask`` is true;
    ``mask`` broadcasts to ``input``'s shape."""
    x = check_tensor(input, "input")
    mask = check_tensor(mask, "mask")
    if mask.dtype != np.bool_:
        raise TypeError(f"masked_fill: mask must be a bool tensor, got dtype {mask.dtype}")
    try:
        if np.broadcast_shapes(mask.shape, x.shape) != x.shape:
            raise ValueError
    except ValueError:
        raise ValueError(f"masked_fill: mask of shape {tuple(mask.shape)} does not broadcast to "
                         f"input of shape {tuple(x.shape)}") from None
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise ValueError(f"masked_fill: value must be a number or a 0-d tensor, got shape "
                             f"{tuple(value.shape)}")
        if value.dtype != x.dtype:
            value = value.to(x.dtype)
    elif isinstance(value, numbers.Number):
        value = Tensor._wrap(x._xp.asarray(value, dtype=x.dtype))
    else:
        raise TypeError(f"masked_fill: value must be a number or a 0-d Tensor, got "
                        f"{type(value).__name__}")
    out = where(mask, value, x)
    return out


def one_hot(tensor, num_classes: int = -1) -> Tensor:
    """int64 tensor of shape ``(*tensor.shape, num_classes)`` with a 1 at each label
    (``num_classes=-1``: one more than the largest label)."""
    t = check_tensor(tensor, "tensor")
    if t.dtype.kind not in "iu":
        raise TypeError(f"one_hot: expected an integer (class index) tensor, got dtype {t.dtype}")
    xp = t._xp
    labels = t.array.astype(np.int64)
    if num_classes == -1:
        if labels.size == 0:
            raise ValueError("one_hot: cannot infer num_classes from an empty tensor")
        num_classes = int(labels.max()) + 1
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"one_hot: class values must lie in [0, {num_classes}), got "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    return Tensor._wrap((labels[..., None] == xp.arange(num_classes)).astype(np.int64))


# -- running sums and products ------------------------------------------------------------------
class CumSum(Function):
    """y_i = sum_{j<=i} x_j along ``axis`` (``reverse``: sum_{j>=i});  the adjoint of a running
    sum is the reversed running sum."""

    def forward(self, x, axis, reverse):
        self.axis, self.reverse = axis, reverse
        xp = get_array_module(x)
        if reverse:
            return xp.flip(xp.cumsum(xp.flip(x, axis), axis=axis), axis)
        return xp.cumsum(x, axis=axis)

    def backward(self, g):
        return CumSum.apply(g, axis=self.axis, reverse=not self.reverse)


class CumProd(Function):
    """y_i = prod_{j<=i} x_j;  dL/dx_k = sum_{i>=k} g_i prod_{j<=i, j!=k} x_j.

    For a first-order backward without tiny |x| that is revcumsum(g y) / x (PyTorch's formula,
    accurate: no cancellation). Otherwise the products that leave x_k out are formed explicitly
    (an n x n matrix per line, n = length along ``axis``): with zeros in x the division fails, and
    the derivative of the division formula (``create_graph=True``) cancels terms of size |g / x|,
    losing all accuracy where |x| is small (PyTorch's double backward has that flaw).
    """

    def forward(self, x, axis):
        self.axis = axis
        return get_array_module(x).cumprod(x, axis=axis)

    def backward(self, g):
        x, ax = self.saved_input(0), self.axis
        tiny = float(np.finfo(x.dtype).tiny) ** 0.25   # products of four stay normal
        if not is_grad_enabled() and not bool((x._xp.abs(x.array) < tiny).any()):
            return CumSum.apply(g * self.saved_output(), axis=ax, reverse=True) / x
        xl, gl = x.transpose(ax, -1), g.transpose(ax, -1)          # (..., n)
        n = x.shape[ax]
        xp = x._xp
        diag = Tensor._wrap(xp.eye(n, dtype=bool))
        rows = where(diag, 1.0, xl.unsqueeze(-2).expand(*xl.shape[:-1], n, n))  # (..., k, j)
        q = CumProd.apply(rows, axis=rows.ndim - 1)   # q[.., k, i] = prod_{j<=i, j!=k} x_j
        upper = Tensor._wrap(xp.triu(xp.ones((n, n), dtype=bool)))   # i >= k
        gk = where(upper, gl.unsqueeze(-2) * q, 0.0).sum(-1)        # (..., n)
        return gk.transpose(ax, -1)


def _accumulator(x, dtype):
    """``x`` in ``dtype``, or -- for sums and products of integers and bools -- int64 (PyTorch)."""
    if dtype is not None:
        return x.to(dtype)
    return x.to(np.int64) if x.dtype.kind in "biu" else x


def _scan_input(x, dim, dtype=None):
    """(x as at least 1-D in the accumulating dtype, the scan axis, whether x was 0-d)."""
    x = _accumulator(check_tensor(x, "input"), dtype)
    if x.ndim == 0:
        normalize_dim(dim, 1)
        return x.reshape(1), 0, True
    return x, normalize_dim(dim, x.ndim), False


def cumsum(input, dim, *, dtype=None) -> Tensor:
    """Running sum along ``dim``; integer and bool inputs give int64 (as PyTorch)."""
    x, d, was_0d = _scan_input(input, dim, dtype)
    out = CumSum.apply(x, axis=d, reverse=False)
    return out.reshape(()) if was_0d else out


def cumprod(input, dim, *, dtype=None) -> Tensor:
    """Running product along ``dim``; integer and bool inputs give int64 (as PyTorch)."""
    x, d, was_0d = _scan_input(input, dim, dtype)
    out = CumProd.apply(x, axis=d)
    return out.reshape(()) if was_0d else out


# -- triangles ---------------------------------------------------------------------------------
def _triangle(name, x, diagonal, lower):
    x = check_tensor(x, "input")
    if x.ndim < 2:
        raise ValueError(f"{name}: input must have at least 2 dimensions, got shape "
                         f"{tuple(x.shape)}")
    n, m = x.shape[-2:]
    xp = x._xp
    keep = xp.tri(n, m, int(diagonal), dtype=bool)   # j <= i + diagonal
    if not lower:
        keep = ~xp.tri(n, m, int(diagonal) - 1, dtype=bool)  # j >= i + diagonal
    return where(Tensor._wrap(keep), x, Tensor._wrap(xp.zeros((), dtype=x.dtype)))


def tril(input, diagonal: int = 0) -> Tensor:
    """The lower triangle of the last two axes (elements with j <= i + diagonal), zeros above."""
    return _triangle("tril", input, diagonal, lower=True)


def triu(input, diagonal: int = 0) -> Tensor:
    """The upper triangle of the last two axes (elements with j >= i + diagonal), zeros below."""
    return _triangle("triu", input, diagonal, lower=False)


# -- products and log-sum-exp scans -------------------------------------------------------------
class Prod(Function):
    """y = prod_j x_j over ``axes``;  dL/dx_k = g prod_{j != k} x_j, the product of the elements
    left of k times the product of those right of it (exclusive running products: no division,
    so zeros are handled exactly)."""

    def forward(self, x, axis, keepdim):
        self.axis, self.keepdim, self.in_shape = axis, keepdim, x.shape
        return get_array_module(x).prod(x, axis=axis, keepdims=keepdim)

    def backward(self, g):
        x, ax = self.saved_input(0), self.axis
        if not self.keepdim:
            g = g.unsqueeze(ax)
        return g * _others_product(x, ax)


def _others_product(x, axis):
    """prod_{j != k} x_j along ``axis`` for every k (exclusive running products from both ends)."""
    n = x.shape[axis]
    ones = Tensor._wrap(x._xp.ones(x.shape[:axis] + (1,) + x.shape[axis + 1:], dtype=x.dtype))
    lead = (slice(None),) * axis
    left = cumprod(cat([ones, getitem(x, lead + (slice(0, n - 1),))], axis), axis)
    rx = flip(x, axis)
    right = flip(cumprod(cat([ones, getitem(rx, lead + (slice(0, n - 1),))], axis), axis), axis)
    return left * right


def prod(input, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """Product of the elements (over ``dim``, one axis, when given); integer and bool inputs give
    int64 (as PyTorch)."""
    x = _accumulator(check_tensor(input, "input"), dtype)
    if dim is None:
        out = Prod.apply(x.reshape(-1), axis=0, keepdim=False)
        return out.reshape((1,) * x.ndim) if keepdim else out
    if x.ndim == 0:
        normalize_dim(dim, 1)
        return x
    return Prod.apply(x, axis=normalize_dim(dim, x.ndim), keepdim=bool(keepdim))


def logcumsumexp(input, dim) -> Tensor:
    """y_i = log sum_{j<=i} exp(x_j) along ``dim``, stable for any range of values.

    Computed as a logsumexp over the masked matrix x_j [j <= i] (an n x n matrix per line, n the
    length along ``dim``), so it suits the short sequences of likelihood computations.
    """
    x = check_tensor(input, "input")
    if x.dtype.kind != "f":
        from ..backend import get_default_dtype
        x = x.to(get_default_dtype())
    x, d, was_0d = _scan_input(x, dim)
    xl = x.transpose(d, -1)                                     # (..., n)
    n = xl.shape[-1]
    lower = Tensor._wrap(x._xp.tri(n, n, 0, dtype=bool))        # [j <= i], rows i, columns j
    rows = where(lower, xl.unsqueeze(-2), -math.inf)            # (..., i, j)
    out = logsumexp(rows, -1).transpose(d, -1)
    return out.reshape(()) if was_0d else out
