"""Tensor utilities with PyTorch's semantics: ``repeat``, ``repeat_interleave``, ``roll``,
``sort`` / ``argsort`` / ``topk``, ``diag`` / ``diagonal``, ``meshgrid``, ``var_mean`` /
``std_mean``, and the rounding divisions ``floor_divide`` / ``remainder`` /
``div(rounding_mode=...)``.

Every differentiable result is built from differentiable primitives (broadcast, reshape,
indexing, gather), so gradients of every order come from the engine; sort orders and indices are
computed on the raw arrays.
"""
from __future__ import annotations

import collections
import numbers

import numpy as np

from ..tensor import Tensor
from ._util import binary_operands, check_tensor, normalize_dim
from .elementwise import div as true_div
from .indexing import gather, index_select
from .pointwise import floor, trunc
from .reduction import mean, var
from .shape import broadcast_to, getitem, index_add_scatter, permute

__all__ = ["repeat", "repeat_interleave", "roll", "sort", "argsort", "topk", "diag", "diagonal",
           "meshgrid", "var_mean", "std_mean", "floor_divide", "remainder"]

SortResult = collections.namedtuple("sort", ["values", "indices"])
TopkResult = collections.namedtuple("topk", ["values", "indices"])


def _sizes(args):
    """``f(2, 3)`` and ``f((2, 3))`` alike."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    return tuple(int(a) for a in args)


def repeat(input, *sizes) -> Tensor:
    """Tile ``input`` ``sizes[i]`` times along axis i (``Tensor.repeat``; ``sizes`` may have more
    entries than ``input`` has axes: leading axes are added)."""
    x = check_tensor(input, "input")
    reps = _sizes(sizes)
    if len(reps) < x.ndim or any(r < 0 for r in reps):
        raise ValueError(f"repeat: need at least {x.ndim} non-negative repeat counts for shape "
                         f"{tuple(x.shape)}, got {reps}")
    shape = (1,) * (len(reps) - x.ndim) + tuple(x.shape)
    # (1, s0, 1, s1, ...) broadcast to (r0, s0, r1, s1, ...), then merged pairwise
    spread = x.reshape(tuple(v for s in shape for v in (1, s)))
    tiled = broadcast_to(spread, tuple(v for r, s in zip(reps, shape) for v in (r, s)))
    return tiled.reshape(tuple(r * s for r, s in zip(reps, shape)))


def repeat_interleave(input, repeats=None, dim=None, *, output_size=None) -> Tensor:
    """Repeat each element ``repeats`` times (an int, or a 1-D integer tensor with one count per
    element) along ``dim`` (the flattened input when None). ``repeat_interleave(counts)`` with
    a single integer tensor gives ``[0]*counts[0] + [1]*counts[1] + ...``."""
    x = check_tensor(input, "input")
    if repeats is None:    # torch.repeat_interleave(repeats): the indices
        counts = x.array
        return Tensor._wrap(x._xp.repeat(x._xp.arange(counts.size), counts).astype(np.int64))
    if dim is None:
        x, d = x.reshape(-1), 0
    else:
        d = normalize_dim(dim, max(x.ndim, 1))
        if x.ndim == 0:
            x = x.reshape(1)
    n = x.shape[d]
    if isinstance(repeats, Tensor):
        counts = repeats.array.reshape(-1)
        if counts.dtype.kind not in "iu" or counts.size not in (1, n) or \
                (counts.size and int(counts.min()) < 0):
            raise ValueError(f"repeat_interleave: repeats must hold 1 or {n} non-negative ints, "
                             f"got shape {tuple(repeats.shape)} dtype {repeats.dtype}")
        if counts.size == 1:
            repeats = int(counts[0])
    if isinstance(repeats, numbers.Integral):
        if repeats < 0:
            raise ValueError(f"repeat_interleave: repeats must be non-negative, got {repeats}")
        wide = x.unsqueeze(d + 1)
        wide = broadcast_to(wide, wide.shape[:d + 1] + (int(repeats),) + wide.shape[d + 2:])
        return wide.reshape(x.shape[:d] + (n * int(repeats),) + x.shape[d + 1:])
    xp = x._xp
    positions = xp.repeat(xp.arange(n), xp.asarray(counts))
    return index_select(x, d, Tensor._wrap(positions))


def roll(input, shifts, dims=None) -> Tensor:
    """Shift elements cyclically by ``shifts`` along ``dims`` (the flattened tensor when None)."""
    x = check_tensor(input, "input")
    if dims is None:
        if not isinstance(shifts, numbers.Integral):
            raise ValueError(f"roll: with dims=None, shifts must be one int, got {shifts!r}")
        return roll(x.reshape(-1), shifts, 0).reshape(x.shape)
    shifts = (shifts,) if isinstance(shifts, numbers.Integral) else tuple(shifts)
    dims = (dims,) if isinstance(dims, numbers.Integral) else tuple(dims)
    if len(shifts) != len(dims):
        raise ValueError(f"roll: shifts {shifts} and dims {dims} must have the same length")
    for s, dim in zip(shifts, dims):
        d = normalize_dim(dim, x.ndim)
        n = x.shape[d]
        if n == 0 or s % n == 0:
            continue
        source = x._xp.asarray((np.arange(n) - s) % n)   # out[i] = x[i - s]
        x = getitem(x, (slice(None),) * d + (source,))
    return x


def _order(x, dim, descending, stable=True):
    """Indices that sort ``x`` along ``dim`` (stable; descending keeps equal elements in order)."""
    xp = x._xp
    data = x.array
    if descending:   # a stable descending order: sort the reversed line, map back
        n = data.shape[dim]
        flipped = xp.flip(data, axis=dim)
        idx = xp.argsort(flipped, axis=dim, kind="stable")
        return xp.flip(n - 1 - idx, axis=dim).astype(np.int64)
    return xp.argsort(data, axis=dim, kind="stable").astype(np.int64)


def sort(input, dim: int = -1, descending: bool = False, stable: bool = False) -> SortResult:
    """``(values, indices)`` of ``input`` sorted along ``dim`` (always stable here); the values
    are a gather, so gradients flow to the sorted elements."""
    x = check_tensor(input, "input")
    if x.ndim == 0:
        normalize_dim(dim, 1)
        return SortResult(x, Tensor._wrap(x._xp.zeros((), dtype=np.int64)))
    d = normalize_dim(dim, x.ndim)
    idx = Tensor._wrap(_order(x, d, descending))
    return SortResult(gather(x, d, idx), idx)


def argsort(input, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:
    """The indices that sort ``input`` along ``dim`` (int64)."""
    return sort(input, dim, descending, stable).indices


def topk(input, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> TopkResult:
    """``(values, indices)`` of the ``k`` largest (``largest=False``: smallest) elements along
    ``dim``, in sorted order."""
    x = check_tensor(input, "input")
    d = normalize_dim(dim, max(x.ndim, 1))
    n = x.shape[d] if x.ndim else 1
    if not 0 <= k <= n:
        raise ValueError(f"topk: k={k} is out of range for dimension {d} of size {n} (shape "
                         f"{tuple(x.shape)})")
    if x.ndim == 0:
        return TopkResult(x, Tensor._wrap(x._xp.zeros((), dtype=np.int64)))
    order = _order(x, d, descending=largest)
    idx = Tensor._wrap(order[(slice(None),) * d + (slice(0, k),)].copy())
    return TopkResult(gather(x, d, idx), idx)


def _diagonal_positions(xp, n, m, offset):
    """Row and column of each element of the ``offset`` diagonal of an (n, m) matrix."""
    rows = np.arange(max(0, -offset), max(min(n, m - offset), max(0, -offset)))
    return xp.asarray(rows), xp.asarray(rows + offset)


def diagonal(input, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:
    """The ``offset`` diagonal of the matrices spanned by ``dim1`` and ``dim2``, as a new last
    axis (PyTorch's ``diagonal``)."""
    x = check_tensor(input, "input")
    if x.ndim < 2:
        raise ValueError(f"diagonal: input must have at least 2 dimensions, got shape "
                         f"{tuple(x.shape)}")
    return _diagonal(x, int(offset), dim1, dim2)


def _diagonal(x, offset, dim1, dim2):
    d1, d2 = normalize_dim(dim1, x.ndim), normalize_dim(dim2, x.ndim)
    if d1 == d2:
        raise ValueError(f"diagonal: dim1 and dim2 must differ, both are {d1}")
    rest = [a for a in range(x.ndim) if a not in (d1, d2)]
    moved = permute(x, rest + [d1, d2])                       # (..., n, m)
    n, m = moved.shape[-2:]
    flat = moved.reshape(moved.shape[:-2] + (n * m,))         # (..., n*m)
    rows, cols = _diagonal_positions(x._xp, n, m, offset)
    return getitem(flat, (Ellipsis, rows * m + cols))


def diag(input, diagonal: int = 0) -> Tensor:
    """A 1-D input becomes a square matrix with it on the ``diagonal``-th diagonal; a 2-D input
    gives that diagonal."""
    x = check_tensor(input, "input")
    k = int(diagonal)
    if x.ndim == 2:
        return _diagonal(x, k, 0, 1)
    if x.ndim != 1:
        raise ValueError(f"diag: input must be 1-D or 2-D, got shape {tuple(x.shape)}")
    size = x.shape[0] + abs(k)
    rows, cols = _diagonal_positions(x._xp, size, size, k)
    return index_add_scatter(x, (rows, cols), (size, size))


def meshgrid(*tensors, indexing: str = "ij") -> tuple:
    """Coordinate grids from 1-D tensors: output i varies along axis i (``indexing="ij"``,
    PyTorch's default) or, with ``"xy"``, the first two axes swapped (NumPy's default)."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    ts = [check_tensor(t, f"tensors[{i}]") for i, t in enumerate(tensors)]
    for i, t in enumerate(ts):
        if t.ndim > 1:
            raise ValueError(f"meshgrid: tensors[{i}] must be 0-D or 1-D, got shape "
                             f"{tuple(t.shape)}")
    ts = [t.reshape(-1) for t in ts]
    swap = indexing == "xy" and len(ts) >= 2
    order = [1, 0] + list(range(2, len(ts))) if swap else list(range(len(ts)))
    shape = tuple(ts[a].shape[0] for a in order)
    out = []
    for i, t in enumerate(ts):
        axis = order.index(i)
        lined = t.reshape(tuple(-1 if a == axis else 1 for a in range(len(ts))))
        out.append(broadcast_to(lined, shape))
    return tuple(out)


def var_mean(input, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    """``(var, mean)`` over ``dim`` (Bessel's ``correction``, 1 by default, as ``var``)."""
    corr = 1 if correction is None else correction
    if unbiased is not None:
        corr = 1 if unbiased else 0
    return var(input, dim, keepdim, correction=corr), mean(input, dim, keepdim)


def std_mean(input, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    """``(std, mean)`` over ``dim``."""
    v, m = var_mean(input, dim, unbiased, keepdim, correction=correction)
    return v.sqrt(), m


# -- rounding divisions -------------------------------------------------------------------------
def _integer_operands(a, b, name):
    a, b = binary_operands(a, b)
    if a.dtype.kind in "biu" and b.dtype.kind in "biu":
        if bool((b.array == 0).any()):
            raise ZeroDivisionError(f"{name}: integer division by zero")
        return a, b, True
    return a, b, False


def floor_divide(a, b) -> Tensor:
    """``a // b``: the quotient rounded down (integers stay integers; zero gradient)."""
    return divide_rounded(a, b, "floor")


def divide_rounded(a, b, rounding_mode: str) -> Tensor:
    """``a / b`` rounded toward zero (``"trunc"``) or down (``"floor"``); integer operands give
    an integer result, floating ones a float with zero gradient."""
    if rounding_mode not in ("trunc", "floor"):
        raise ValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', got "
                         f"{rounding_mode!r}")
    a, b, integer = _integer_operands(a, b, "div")
    if not integer:
        q = true_div(a, b)
        return floor(q) if rounding_mode == "floor" else trunc(q)
    xp = a._xp
    q = xp.floor_divide(a.array, b.array)
    if rounding_mode == "trunc":   # floor and trunc differ where the signs differ, inexactly
        inexact = xp.remainder(a.array, b.array) != 0
        q = xp.where(inexact & ((a.array < 0) != (b.array < 0)), q + 1, q)
    return Tensor._wrap(q)


def remainder(a, b) -> Tensor:
    """``a % b`` with the sign of ``b`` (Python's and PyTorch's ``remainder``):
    ``a - b * floor(a / b)``; gradients 1 for ``a`` and ``-floor(a / b)`` for ``b``."""
    a, b, integer = _integer_operands(a, b, "remainder")
    if integer:
        return Tensor._wrap(a._xp.remainder(a.array, b.array))
    return a - b * floor(true_div(a, b))

