"""Shape ops: reshape, permute, broadcast, sum-to, indexing, concatenation, padding, flipping."""
from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Function
from ..backend import get_array_module
from ..tensor import Tensor
from ._util import ShapeError, check_tensor, normalize_axis, normalize_dim

__all__ = ["reshape", "view", "transpose", "permute", "flatten", "unflatten", "squeeze", "unsqueeze",
           "expand", "broadcast_to", "sum_to", "cat", "concatenate", "stack", "split", "chunk",
           "pad", "flip", "getitem", "index_add_scatter", "embedding"]


class Reshape(Function):
    is_view = True

    def forward(self, x, shape):
        self.in_shape = x.shape
        return x.reshape(shape)

    def backward(self, g):
        return g.reshape(self.in_shape)


class Permute(Function):
    is_view = True

    def forward(self, x, axes):
        self.axes = axes
        return x.transpose(axes)

    def backward(self, g):
        return g.permute(tuple(np.argsort(self.axes).tolist()))


class BroadcastTo(Function):
    """Broadcast to ``shape``: a read-only view, or -- for small results, where NumPy's view
    machinery costs more than the copy -- a fresh array. Either way the result counts as a view
    (as ``torch.expand``): it shares its input's version counter, so modifying the input in
    place after expanding it is caught by backward."""
    is_view = True

    def forward(self, x, shape):
        self.in_shape = x.shape
        if _prod(shape) <= _SMALL_BROADCAST:
            out = get_array_module(x).empty(shape, dtype=x.dtype)
            out[...] = x
            return out
        return np.broadcast_to(x, shape)

    def backward(self, g):
        return sum_to(g, self.in_shape)


_SMALL_BROADCAST = 1 << 16  # elements


def _prod(shape):
    n = 1
    for s in shape:
        n *= s
    return n


class SumTo(Function):
    """Sum a broadcast result back down to ``shape`` (the adjoint of :class:`BroadcastTo`)."""

    def forward(self, x, shape):
        self.in_shape = x.shape
        lead = x.ndim - len(shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, s in enumerate(shape) if s == 1 and x.shape[lead + i] != 1)
        y = x.sum(axis=axes, keepdims=True) if axes else x
        return y.reshape(shape)

    def backward(self, g):
        return g.broadcast_to(self.in_shape)


def _is_basic_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (slice, type(None), type(Ellipsis))) or
               (isinstance(i, numbers.Integral) and not isinstance(i, (bool, np.bool_)))
               for i in items)


def _index_arrays(index):
    """Replace Tensors in an index by their arrays (lists are left to NumPy)."""
    if isinstance(index, Tensor):
        return index.array
    if isinstance(index, tuple):
        return tuple(i.array if isinstance(i, Tensor) else i for i in index)
    return index


def _scatter_add(out, index, values):
    """``out[index] += values`` with repeated indices accumulated (NumPy ``add.at``)."""
    if isinstance(out, np.ndarray):
        np.add.at(out, index, values)
    else:  # CuPy
        from ..kernels.cuda import _runtime  # the one place that imports CuPy
        _runtime.get_cupyx().scatter_add(out, index, values)


class GetItem(Function):
    def forward(self, x, index, basic):
        self.in_shape, self.index, self.basic = x.shape, index, basic
        return x[index]

    def backward(self, g):
        return IndexAddScatter.apply(g, index=self.index, shape=self.in_shape, basic=self.basic)


class BasicGetItem(GetItem):
    is_view = True


class IndexAddScatter(Function):
    """Zeros of ``shape`` with ``g`` added at ``index`` (the adjoint of indexing)."""

    def forward(self, g, index, shape, basic):
        self.index, self.basic = index, basic
        xp = get_array_module(g)
        out = xp.zeros(shape, dtype=g.dtype)
        if basic:
            out[index] = g
        else:
            _scatter_add(out, index, g)
        return out

    def backward(self, g):
        cls = BasicGetItem if self.basic else GetItem
        return cls.apply(g, index=self.index, basic=self.basic)


def _is_advanced(item) -> bool:
    return isinstance(item, (bool, np.bool_)) or \
        not isinstance(item, (slice, type(None), type(Ellipsis), numbers.Integral))


def _split_mixed_index(index):
    """PyTorch applies integer indices (a select) before array indices; NumPy treats an integer
    next to an array as one more array index, which moves the result's axes (``x[1, :, idx]``
    is ``(len(idx), C)`` in NumPy but ``(C, len(idx))`` in PyTorch). For an index with both, the
    two steps PyTorch takes: the basic part (ints, slices, None, ...) then the array part on the
    result. None when the index has not both."""
    if not isinstance(index, tuple):
        return None
    has_int = any(isinstance(i, numbers.Integral) and not isinstance(i, (bool, np.bool_))
                  for i in index)
    if not has_int or not any(_is_advanced(i) for i in index):
        return None
    basic, advanced = [], []
    for item in index:
        if _is_advanced(item):
            arr = item if hasattr(item, "dtype") else np.asarray(item)
            width = arr.ndim if arr.dtype == np.bool_ else 1  # a mask covers its ndim axes
            basic.extend([slice(None)] * width)
            advanced.append(item)
        elif isinstance(item, numbers.Integral):
            basic.append(item)                 # selected away: no axis left for step two
        elif item is Ellipsis:
            basic.append(item)
            advanced.append(item)
        else:                                  # a slice or None: done in step one
            basic.append(item)
            advanced.append(slice(None))
    return tuple(basic), tuple(advanced)


def getitem(x, index) -> Tensor:
    """``x[index]`` with PyTorch semantics: basic slicing (a view) and integer/boolean arrays
    (a copy; the backward scatters with accumulation, so repeated indices add up). Integers are
    applied before arrays, as PyTorch does (see :func:`_split_mixed_index`)."""
    x = check_tensor(x, "input")
    index = _index_arrays(index)
    steps = _split_mixed_index(index)
    if steps is not None:
        return getitem(getitem(x, steps[0]), steps[1])
    basic = _is_basic_index(index)
    try:
        return (BasicGetItem if basic else GetItem).apply(x, index=index, basic=basic)
    except IndexError as exc:
        raise IndexError(f"index {index!r} is invalid for a tensor of shape "
                         f"{tuple(x.shape)}: {exc}") from None


def index_add_scatter(g, index, shape) -> Tensor:
    """Zeros of ``shape`` with ``g`` accumulated at ``index``."""
    index = _index_arrays(index)
    return IndexAddScatter.apply(g, index=index, shape=tuple(shape),
                                 basic=_is_basic_index(index))


def reshape(x, shape) -> Tensor:
    """Same data, new shape (one entry may be -1)."""
    x = check_tensor(x, "input")
    shape = tuple(int(s) for s in shape)
    known = int(np.prod([s for s in shape if s != -1])) if shape else 1
    if shape.count(-1) > 1 or (shape.count(-1) == 0 and known != x.array.size) or \
            (shape.count(-1) == 1 and (known == 0 or x.array.size % known)):
        raise ShapeError(f"reshape: cannot view a tensor of shape {tuple(x.shape)} "
                         f"({x.array.size} elements) as shape {shape}")
    if shape == x.shape:
        return x
    return Reshape.apply(x, shape=shape)


def view(x, shape) -> Tensor:
    """PyTorch's ``view``: :func:`reshape` that refuses to copy. A non-contiguous tensor (a
    transpose, a strided slice) may have no view of the new shape; then writes through the result
    would be lost, so this raises (use ``reshape``, which copies, or ``contiguous()`` first)."""
    x = check_tensor(x, "input")
    out = reshape(x, shape)
    if out is not x and out.array.size and not get_array_module(x.array).may_share_memory(
            out.array, x.array):
        strides = tuple(st // x.array.itemsize for st in x.array.strides)
        raise RuntimeError(f"view: the tensor of shape {tuple(x.shape)} and strides "
                           f"{strides} (elements) has no view of shape {tuple(out.shape)} without a "
                           f"copy; use .reshape(...) instead (or .contiguous().view(...))")
    return out


def permute(x, dims) -> Tensor:
    """Reorder the axes: output axis i is input axis ``dims[i]``."""
    x = check_tensor(x, "input")
    axes = normalize_axis(tuple(dims), x.ndim, "dims")
    if len(axes) != x.ndim:
        raise ValueError(f"permute: dims {tuple(dims)} must name all {x.ndim} axes of a tensor "
                         f"of shape {tuple(x.shape)}")
    return Permute.apply(x, axes=axes)


def transpose(x, dim0, dim1) -> Tensor:
    """Swap two axes."""
    x = check_tensor(x, "input")
    axes = list(range(x.ndim))
    d0, d1 = normalize_dim(dim0, x.ndim), normalize_dim(dim1, x.ndim)
    if x.ndim == 0:  # dim 0 / -1 of a 0-d tensor (as PyTorch): nothing to swap
        return Permute.apply(x, axes=())
    axes[d0], axes[d1] = axes[d1], axes[d0]
    return Permute.apply(x, axes=tuple(axes))


def flatten(x, start_dim=0, end_dim=-1) -> Tensor:
    """Merge axes ``start_dim..end_dim`` (inclusive) into one."""
    x = check_tensor(x, "input")
    if x.ndim == 0:
        return reshape(x, (1,))
    s, e = normalize_dim(start_dim, x.ndim), normalize_dim(end_dim, x.ndim)
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shape = x.shape[:s] + (int(np.prod(x.shape[s:e + 1])),) + x.shape[e + 1:]
    return reshape(x, shape)


def unflatten(x, dim, sizes) -> Tensor:
    """Split axis ``dim`` into ``sizes`` (one may be -1)."""
    x = check_tensor(x, "input")
    d = normalize_dim(dim, x.ndim)
    sizes = tuple(sizes)
    if -1 in sizes:
        known = int(np.prod([s for s in sizes if s != -1]))
        sizes = tuple(x.shape[d] // known if s == -1 else s for s in sizes)
    if int(np.prod(sizes)) != x.shape[d]:
        raise ValueError(f"unflatten: sizes {sizes} do not multiply to {x.shape[d]} (axis {d} of "
                         f"shape {tuple(x.shape)})")
    return reshape(x, x.shape[:d] + sizes + x.shape[d + 1:])


def squeeze(x, dim=None) -> Tensor:
    """Drop axes of size 1 (only ``dim`` when given; a ``dim`` of another size is left alone)."""
    x = check_tensor(x, "input")
    if dim is None:
        axes = tuple(i for i, s in enumerate(x.shape) if s == 1)
    else:
        axes = tuple(a for a in normalize_axis(dim, x.ndim) if x.ndim and x.shape[a] == 1)
    return reshape(x, tuple(s for i, s in enumerate(x.shape) if i not in axes))


def unsqueeze(x, dim) -> Tensor:
    """Insert an axis of size 1 at ``dim`` (``-1`` appends)."""
    x = check_tensor(x, "input")
    d = normalize_dim(dim, x.ndim + 1)
    return reshape(x, x.shape[:d] + (1,) + x.shape[d:])


def broadcast_to(x, shape) -> Tensor:
    """A read-only broadcast view of ``x`` with ``shape``."""
    x = check_tensor(x, "input")
    shape = tuple(int(s) for s in shape)
    if shape == x.shape:
        return x
    lead = len(shape) - x.ndim
    if lead < 0 or any(s != 1 and s != shape[lead + i] for i, s in enumerate(x.shape)):
        raise ShapeError(f"broadcast_to: shape {tuple(x.shape)} cannot be broadcast to "
                         f"{shape}")
    return BroadcastTo.apply(x, shape=shape)


def expand(x, shape) -> Tensor:
    """PyTorch's ``expand``: broadcast to ``shape``, where -1 keeps an axis's size."""
    x = check_tensor(x, "input")
    shape = tuple(shape)
    lead = len(shape) - x.ndim
    if lead < 0:
        raise ShapeError(f"expand: shape {shape} has fewer axes than the tensor "
                         f"{tuple(x.shape)}")
    full = tuple(x.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(shape))
    return broadcast_to(x, full)


def sum_to(x, shape) -> Tensor:
    """Sum ``x`` down to ``shape``, the shape it was broadcast from (engine's unbroadcast)."""
    shape = tuple(shape)
    if shape == x.shape:
        return x
    lead = x.ndim - len(shape)
    if lead < 0 or any(s != 1 and s != x.shape[lead + i] for i, s in enumerate(shape)):
        raise ValueError(f"sum_to: shape {tuple(x.shape)} is not a broadcast of {shape}")
    return SumTo.apply(x, shape=shape)


class Cat(Function):
    def forward(self, *arrays, axis):
        self.axis = axis
        self.bounds = np.cumsum([0] + [a.shape[axis] for a in arrays]).tolist()
        xp = get_array_module(arrays[0])
        return xp.concatenate(arrays, axis=axis)

    def backward(self, g):
        lead = (slice(None),) * self.axis
        return tuple(g[lead + (slice(lo, hi),)]
                     for lo, hi in zip(self.bounds[:-1], self.bounds[1:]))


def cat(tensors, dim=0) -> Tensor:
    """Concatenate tensors along an existing axis ``dim``."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    for i, t in enumerate(tensors):
        check_tensor(t, f"tensors[{i}]")
    ref = tensors[0]
    d = normalize_dim(dim, ref.ndim)
    for i, t in enumerate(tensors):
        if t.ndim != ref.ndim or any(a != b for j, (a, b) in enumerate(zip(t.shape, ref.shape))
                                     if j != d):
            raise ShapeError(f"cat: tensors[{i}] has shape {tuple(t.shape)} but tensors[0] has "
                             f"{tuple(ref.shape)}; all axes but dim={dim} must match")
        if t.device != ref.device:
            raise RuntimeError(f"cat: tensors[{i}] is on {t.device}, tensors[0] on {ref.device}")
    return Cat.apply(*tensors, axis=d)


concatenate = cat


def stack(tensors, dim=0) -> Tensor:
    """Join same-shaped tensors along a new axis ``dim``."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty sequence of tensors")
    for i, t in enumerate(tensors):
        check_tensor(t, f"tensors[{i}]")
        if t.shape != tensors[0].shape:
            raise ShapeError(f"stack: tensors[{i}] has shape {tuple(t.shape)} but tensors[0] has "
                             f"{tuple(tensors[0].shape)}")
    d = normalize_dim(dim, tensors[0].ndim + 1)
    return cat([unsqueeze(t, d) for t in tensors], d)


def split(x, split_size_or_sections, dim=0) -> list:
    """Split into pieces of ``split_size`` (the last may be smaller) or of the given sizes."""
    x = check_tensor(x, "input")
    d = normalize_dim(dim, x.ndim)
    n = x.shape[d]
    if isinstance(split_size_or_sections, numbers.Integral):
        size = int(split_size_or_sections)
        if size <= 0:
            raise ValueError(f"split: split_size must be positive, got {size}")
        sizes = [size] * (n // size) + ([n % size] if n % size else [])
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if sum(sizes) != n or any(s < 0 for s in sizes):
            raise ValueError(f"split: sections {sizes} do not add up to {n} (axis {d} of shape "
                             f"{tuple(x.shape)})")
    lead = (slice(None),) * d
    out, start = [], 0
    for s in sizes:
        out.append(getitem(x, lead + (slice(start, start + s),)))
        start += s
    return out


def chunk(x, chunks: int, dim=0) -> list:
    """Split into ``chunks`` pieces of ceil(n / chunks) (PyTorch semantics: maybe fewer)."""
    x = check_tensor(x, "input")
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    n = x.shape[normalize_dim(dim, x.ndim)]
    return split(x, max(-(-n // chunks), 1), dim)


class Pad(Function):
    """Constant padding; a negative width crops. The backward of pad(p) is pad(-p)."""

    def forward(self, x, widths, value):
        self.widths = widths
        crop = tuple(slice(max(-lo, 0), x.shape[i] - max(-hi, 0)) for i, (lo, hi) in
                     enumerate(widths))
        x = x[crop]
        grow = [(max(lo, 0), max(hi, 0)) for lo, hi in widths]
        xp = get_array_module(x)
        return xp.pad(x, grow, mode="constant", constant_values=value)

    def backward(self, g):
        return Pad.apply(g, widths=tuple((-lo, -hi) for lo, hi in self.widths), value=0)


def pad(x, pad, mode="constant", value=0.0) -> Tensor:
    """PyTorch's ``F.pad``: ``pad = (left, right)`` for the last axis, then the one before, ...

    ``mode``: ``"constant"`` (``value``; negative widths crop), ``"reflect"``, ``"replicate"``
    or ``"circular"`` (see :mod:`.padding`).
    """
    x = check_tensor(x, "input")
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise ValueError(f"pad: mode must be 'constant', 'reflect', 'replicate' or 'circular', "
                         f"got mode={mode!r}")
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: pad {pad} must have an even length of at most 2*{x.ndim} for a "
                         f"tensor of shape {tuple(x.shape)}")
    widths = [(0, 0)] * x.ndim
    for k in range(len(pad) // 2):
        widths[x.ndim - 1 - k] = (pad[2 * k], pad[2 * k + 1])
    if mode != "constant":
        from .padding import pad_indexed
        return pad_indexed(x, widths, mode)
    for i, (lo, hi) in enumerate(widths):
        if x.shape[i] + lo + hi < 0 or -lo > x.shape[i] or -hi > x.shape[i]:
            raise ValueError(f"pad: widths {(lo, hi)} crop more than axis {i} of shape "
                             f"{tuple(x.shape)} holds")
    return Pad.apply(x, widths=tuple(widths), value=value)


class Flip(Function):
    def forward(self, x, axes):
        self.axes = axes
        xp = get_array_module(x)
        return xp.flip(x, axis=axes).copy()

    def backward(self, g):
        return Flip.apply(g, axes=self.axes)


def flip(x, dims) -> Tensor:
    """Reverse the order of elements along ``dims``."""
    x = check_tensor(x, "input")
    return Flip.apply(x, axes=normalize_axis(dims, x.ndim, "dims"))


def embedding(input, weight, padding_idx=None) -> Tensor:
    """Rows of ``weight`` (num_embeddings, D) picked by the integer tensor ``input`` (any shape):
    output ``input.shape + (D,)`` (PyTorch's ``F.embedding``). The gradient of a row adds up over
    its uses; the row ``padding_idx`` gets none."""
    input, weight = check_tensor(input, "input"), check_tensor(weight, "weight")
    if input.dtype.kind not in "iu":
        raise TypeError(f"embedding: input must hold integer indices, got dtype {input.dtype}")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must have shape (num_embeddings, embedding_dim), "
                         f"got {tuple(weight.shape)}")
    n = weight.shape[0]
    if input.array.size and (int(input.array.min()) < -n or int(input.array.max()) >= n):
        raise IndexError(f"embedding: indices must be in [0, {n}), got values in "
                         f"[{int(input.array.min())}, {int(input.array.max())}]")
    out = getitem(weight, input)                                         # input.shape + (D,)
    if padding_idx is not None and weight.requires_grad:
        from .elementwise import where
        keep = Tensor._wrap((input.array != padding_idx % n)[..., None])
        out = where(keep, out, out.detach())
    return out
