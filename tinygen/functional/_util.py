"""Small helpers shared by the op modules: operand conversion, axis normalization."""
from __future__ import annotations

import numbers

import numpy as np

from .. import backend
from ..tensor import Tensor


class ShapeError(RuntimeError, ValueError):
    """Shapes that do not fit together (broadcasting, reshape, cat, matmul, ...).

    A ``RuntimeError`` as in PyTorch (so ``except RuntimeError`` in ported scripts catches it) and
    a ``ValueError`` as the rest of tinygen's bad-input errors.
    """


# -- type promotion (PyTorch's rules) -------------------------------------------------------------
# Categories bool < integer < floating. Operands come in three priorities: tensors with at least one
# dimension, 0-d tensors, and Python scalars ("wrapped numbers"). Within a priority dtypes promote as
# usual; a lower priority only matters when its category is higher, e.g. int32 tensor * 2.5 ->
# float32 (the default dtype), float32 tensor * float64 0-d tensor -> float32, int32 tensor * 0-d
# float64 tensor -> float64. (torch ``c10::result_type``; NumPy would give float64 in the first two.)

def _category(dtype) -> int:
    kind = dtype.kind
    return 0 if kind == "b" else 2 if kind == "f" else 1


def promote_types(a, b):
    """PyTorch's ``promote_types``: the higher category wins; within one category, the wider."""
    if a is None:
        return b
    if b is None or a == b:
        return a
    ca, cb = _category(a), _category(b)
    if ca != cb:
        return a if ca > cb else b
    return np.promote_types(a, b)


def _combine_priorities(higher, lower):
    if higher is None:
        return lower
    if lower is None:
        return higher
    ch, cl = _category(higher), _category(lower)
    if ch == 2:
        return higher
    if ch == 0 or cl == 2:
        return promote_types(higher, lower)
    return higher


def _scalar_dtype(value):
    if isinstance(value, (bool, np.bool_)):
        return np.dtype(np.bool_)
    if isinstance(value, numbers.Integral):
        return np.dtype(np.int64)
    if isinstance(value, numbers.Real):
        return backend.get_default_dtype()
    raise TypeError(f"unsupported operand type {type(value).__name__} (expected a Tensor, an "
                    f"array or a number)")


def result_type(*operands):
    """The dtype PyTorch gives an op on ``operands`` (Tensors, arrays, Python numbers)."""
    dims = zero = wrapped = None
    for op in operands:
        arr = op.array if isinstance(op, Tensor) else op
        if isinstance(arr, (numbers.Number, np.bool_)) and not isinstance(arr, np.ndarray):
            wrapped = promote_types(wrapped, _scalar_dtype(arr))
        elif arr.ndim:
            dims = promote_types(dims, arr.dtype)
        else:
            zero = promote_types(zero, arr.dtype)
    return _combine_priorities(dims, _combine_priorities(zero, wrapped))


def to_operand(value, like: Tensor, dtype=None) -> Tensor:
    """Turn a Python scalar or array into a constant Tensor on ``like``'s device (of ``dtype``
    when given, else of the type PyTorch gives ``value`` combined with ``like``)."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (numbers.Number, np.bool_)):
        dtype = dtype or result_type(like, value)
        try:
            return Tensor._wrap(like._xp.asarray(value, dtype=dtype))
        except OverflowError:  # e.g. -2 with a uint8 tensor: wraps around, as in PyTorch
            return Tensor._wrap(like._xp.asarray(np.asarray(value).astype(dtype)))
    if isinstance(value, np.ndarray) or backend.device_of_safe(value) is not None:
        return Tensor._wrap(backend.to_device(value, like.device))
    raise TypeError(f"unsupported operand type {type(value).__name__} (expected a Tensor, an "
                    f"array or a number)")


def binary_operands(a, b):
    """Both operands as Tensors of one dtype (PyTorch's promotion, see :func:`result_type`) on
    one device; raises a clear error on a device mismatch."""
    if not isinstance(a, Tensor):
        if not isinstance(b, Tensor):
            raise TypeError("at least one operand must be a Tensor")
        dtype = _with_scalar(b, a)
        a = to_operand(a, b, dtype)
    elif not isinstance(b, Tensor):
        dtype = _with_scalar(a, b)
        b = to_operand(b, a, dtype)
    else:
        if type(a.array) is not type(b.array):
            raise RuntimeError(f"operands are on different devices: {a.device} (shape "
                               f"{tuple(a.shape)}) and {b.device} (shape {tuple(b.shape)})")
        if a.array.dtype == b.array.dtype:
            return a, b
        dtype = result_type(a, b)
    return _cast(a, dtype), _cast(b, dtype)


def _with_scalar(t: Tensor, value):
    """:func:`result_type` of a tensor and a Python number, with the common case first: a number
    of the tensor's category or a lower one leaves the tensor's dtype (``float32 * 2.0``)."""
    kind = t.array.dtype.kind
    if isinstance(value, (bool, np.bool_)) or (kind == "f" and isinstance(value, numbers.Real)) \
            or (kind in "iu" and isinstance(value, numbers.Integral)):
        return t.array.dtype
    return result_type(t, value)


def _cast(t: Tensor, dtype) -> Tensor:
    """``t`` as ``dtype``: differentiable when it requires grad, else a plain array cast."""
    if t.array.dtype == dtype:
        return t
    if t.requires_grad:
        return t.to(dtype)
    return Tensor._wrap(t.array.astype(dtype))


def broadcast_operands(a, b, name: str):
    """:func:`binary_operands`, then a :class:`ShapeError` naming ``name`` and both shapes when
    they do not broadcast together."""
    a, b = binary_operands(a, b)
    sa, sb = a.array.shape, b.array.shape
    if sa != sb:
        for x, y in zip(reversed(sa), reversed(sb)):  # trailing axes: equal, or one of them 1
            if x != y and x != 1 and y != 1:
                raise ShapeError(f"{name}: the shapes {tuple(sa)} and {tuple(sb)} do not "
                                 f"broadcast together")
    return a, b


def normalize_axis(axis, ndim: int, name="dim"):
    """``None`` or a tuple of non-negative axes, validated against ``ndim``."""
    if axis is None:
        return None
    if isinstance(axis, numbers.Integral):
        axes = (axis,)
    elif isinstance(axis, (tuple, list, range)):
        axes = tuple(axis)
    else:
        raise TypeError(f"{name} must be an int or a tuple of ints, got {axis!r}")
    out = []
    for ax in axes:
        if not isinstance(ax, numbers.Integral):
            raise TypeError(f"{name} must be an int or a tuple of ints, got {axis!r}")
        if not -max(ndim, 1) <= ax < max(ndim, 1):
            raise IndexError(f"{name}={ax} is out of range for a tensor with {ndim} dimensions")
        out.append(int(ax) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{name}={axis!r} repeats an axis")
    return tuple(out)


def normalize_dim(dim, ndim: int, name="dim"):
    """One axis, validated and made non-negative."""
    return normalize_axis(int(dim), ndim, name)[0]


def keepdims_shape(shape, axes):
    """``shape`` with the reduced ``axes`` set to 1 (``axes=None`` reduces all)."""
    if axes is None:
        return (1,) * len(shape)
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def check_tensor(x, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(x).__name__}")
    return x
