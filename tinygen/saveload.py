"""``tinygen.save`` / ``tinygen.load``: state dicts, tensors and plain structures in the same
data-only file format as the checkpoints (:mod:`tinygen.serialization`: arrays in an ``.npz``,
the structure as JSON, a checksum; never pickle).

What can be saved: Tensors (saved as their data, with ``requires_grad``), NumPy arrays, and dicts,
lists and tuples of them and of strings, numbers, booleans and None -- a model's or an
optimizer's ``state_dict()``, a scheduler's, a dict of several, as PyTorch scripts save them.
Unlike ``torch.save``, whole modules or other Python objects are not saved (that would need
pickle, which runs code from the file when loading); save ``model.state_dict()`` and rebuild
the model in code. Loading a file never runs code from it (as ``torch.load(weights_only=True)``).
"""
from __future__ import annotations

import os

import numpy as np

from . import backend
from .serialization import load_tree, save_tree
from .tensor import Tensor

__all__ = ["save", "load"]

_KIND = "tinygen.save"
_TENSOR = "__tinygen_tensor__"


def _pack(obj, where="obj"):
    if isinstance(obj, Tensor):
        return {_TENSOR: backend.to_numpy(obj.array), "requires_grad": bool(obj.requires_grad)}
    if isinstance(obj, dict):
        if _TENSOR in obj:
            raise ValueError(f"save: {where} has the reserved key {_TENSOR!r}")
        return {k: _pack(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(_pack(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, list):
        return [_pack(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if hasattr(obj, "_fields"):  # a named tuple: saved as a plain tuple
        return tuple(_pack(v, f"{where}.{f}") for f, v in zip(obj._fields, obj))
    if obj is None or isinstance(obj, (bool, int, float, str, np.ndarray, np.generic)):
        return obj
    from .nn.module import Module
    hint = " (save its state_dict() instead)" if isinstance(obj, Module) else ""
    raise TypeError(f"save: {where} is a {type(obj).__name__}{hint}; tinygen.save stores "
                    f"Tensors, arrays, numbers, strings, None and dicts/lists/tuples of them, "
                    f"never pickled objects")


def _unpack(obj, device):
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR, "requires_grad"}:
            data = obj[_TENSOR]
            t = Tensor._wrap(data if device == "cpu" else backend.to_device(data, device))
            if obj["requires_grad"]:
                t.requires_grad_(True)
            return t
        return {k: _unpack(v, device) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(_unpack(v, device) for v in obj)
    if isinstance(obj, list):
        return [_unpack(v, device) for v in obj]
    return obj


def _path(f, name):
    if hasattr(f, "write") or hasattr(f, "read"):
        raise TypeError(f"{name}: pass a file path (str or os.PathLike); file objects are not "
                        f"supported (files are written atomically by path)")
    return os.fspath(f)


def save(obj, f) -> None:
    """Write ``obj`` (Tensors, arrays, numbers, strings, None and dicts/lists/tuples of them,
    e.g. ``model.state_dict()``) to the path ``f`` (atomically: a crash never leaves half a
    file)."""
    save_tree(_path(f, "save"), _pack(obj), kind=_KIND)


def load(f, map_location=None, weights_only=True, **kwargs):
    """Read what :func:`save` wrote; Tensors come back on ``map_location`` (``"cpu"``,
    ``"cuda"``, a ``tinygen.device``; default: the CPU). Only data is ever loaded, so
    ``weights_only=False`` is refused rather than silently ignored."""
    if not weights_only:
        raise ValueError("load: tinygen files hold data only (no pickled objects); "
                         "weights_only=False is not supported")
    device = "cpu" if map_location is None else backend.normalize_device(
        map_location if not callable(map_location) else "cpu")
    return _unpack(load_tree(_path(f, "load"), kind=_KIND), device)
