"""Small helpers shared by the op modules: operand conversion, axis normalization."""
from __future__ import annotations

import numbers

import numpy as np

from .. import backend
from ..tensor import Tensor


def scalar_dtype(tensor_dtype, value):
    """dtype for a Python scalar combined with a tensor of ``tensor_dtype``.

    A scalar never widens a floating tensor (``float32 * 2.0`` stays float32, as in PyTorch); a
    float scalar with an integer or bool tensor gives the default float dtype; an int scalar with a
    bool tensor gives int64.
    """
    kind = np.dtype(tensor_dtype).kind
    if isinstance(value, (bool, np.bool_)):
        return tensor_dtype
    if isinstance(value, numbers.Integral):
        return np.dtype(np.int64) if kind == "b" else tensor_dtype
    if isinstance(value, numbers.Real):
        return tensor_dtype if kind == "f" else backend.get_default_dtype()
    raise TypeError(f"unsupported operand type {type(value).__name__}")


def to_operand(value, like: Tensor) -> Tensor:
    """Turn a Python scalar or array into a constant Tensor on ``like``'s device."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (numbers.Number, np.bool_)):
        xp = like._xp
        return Tensor._wrap(xp.asarray(value, dtype=scalar_dtype(like.dtype, value)))
    if isinstance(value, np.ndarray) or backend.device_of_safe(value) is not None:
        return Tensor._wrap(backend.to_device(value, like.device))
    raise TypeError(f"unsupported operand type {type(value).__name__} (expected a Tensor, an "
                    f"array or a number)")


def _promote_for_scalar(t: Tensor, value) -> Tensor:
    """An integer/bool tensor meeting a float Python scalar becomes the default float dtype."""
    if t.dtype.kind in "biu" and isinstance(value, numbers.Real) and \
            not isinstance(value, (numbers.Integral, np.bool_)):
        return t.to(backend.get_default_dtype())
    return t


def binary_operands(a, b):
    """Both operands as Tensors on one device; raises a clear error on a device mismatch."""
    if not isinstance(a, Tensor):
        if not isinstance(b, Tensor):
            raise TypeError("at least one operand must be a Tensor")
        b = _promote_for_scalar(b, a)
        a = to_operand(a, b)
    elif not isinstance(b, Tensor):
        a = _promote_for_scalar(a, b)
        b = to_operand(b, a)
    elif type(a.data) is not type(b.data):
        raise RuntimeError(f"operands are on different devices: {a.device} (shape "
                           f"{tuple(a.shape)}) and {b.device} (shape {tuple(b.shape)})")
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
