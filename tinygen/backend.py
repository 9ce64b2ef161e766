"""Array-module abstraction: devices, array modules (``xp``) and the dtype policy.

Everything above this layer asks *here* which array library holds a tensor's data, so that a
CuPy backend can slot in without touching the engine. Only NumPy is used on ``"cpu"``;
``"cuda"`` needs CuPy and a GPU and is refused with a clear error where either is missing.

dtype policy
------------
* Floating point data made from Python numbers or lists is ``float32`` (the default dtype).
* NumPy arrays keep their dtype: a ``float64`` array stays ``float64`` (gradient checks run there).
* Python ints and bools become ``int64`` and ``bool`` tensors (labels, indices, masks).
* Mixing dtypes in one op follows PyTorch's promotion (``tinygen.functional._util.result_type``):
  categories bool < integer < float, the higher category wins (``float32 * int64`` gives
  ``float32``), within a category the wider dtype of the tensors with dimensions, and a 0-d tensor
  or a Python scalar only raises the category (``float32_tensor * 2.0`` stays ``float32``).
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "get_default_dtype", "set_default_dtype", "normalize_device", "array_module", "device_of",
    "cuda_available", "to_device", "to_numpy", "is_floating",
]

_default_dtype = np.dtype(np.float32)
_cupy = None          # the cupy module once imported successfully
_cupy_error = None    # why importing cupy failed (str), once tried


def get_default_dtype() -> np.dtype:
    """The floating dtype used for data made from Python numbers (``float32`` unless changed)."""
    return _default_dtype


def set_default_dtype(dtype) -> None:
    """Set the default floating dtype (``float32`` or ``float64``)."""
    global _default_dtype
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"set_default_dtype: dtype must be float32 or float64, got {dtype}")
    _default_dtype = dtype


def is_floating(dtype) -> bool:
    return np.dtype(dtype).kind == "f"


def _import_cupy():
    global _cupy, _cupy_error
    if _cupy is None and _cupy_error is None:
        from .kernels.cuda import _runtime  # the only module that imports CuPy (lazily)
        try:
            _cupy = _runtime.get_cupy()
        except RuntimeError:  # CuPy missing, no driver, no GPU: the runtime says which
            _cupy_error = _runtime._cupy_error
    return _cupy


def cuda_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    return _import_cupy() is not None


def normalize_device(device) -> str:
    """Map ``None``/``"cpu"``/``"cuda"``/``"cuda:0"`` to ``"cpu"`` or ``"cuda"``; refuse anything else."""
    if device is None:
        return "cpu"
    name = str(device)
    if name == "cpu":
        return "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        if _import_cupy() is None:
            raise RuntimeError(
                f"device={name!r} needs CuPy and a CUDA GPU, which are not available "
                f"({_cupy_error}); install the 'cuda' extra on a machine with a GPU or use device='cpu'")
        return "cuda"
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


def array_module(device: str):
    """The array module (``numpy`` or ``cupy``) for a normalized device string."""
    if device == "cpu":
        return np
    return _import_cupy()


def device_of(array) -> str:
    """The device string of a backing array."""
    if isinstance(array, np.ndarray) or np.isscalar(array):
        return "cpu"
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return "cuda"
    raise TypeError(f"unsupported array type {type(array).__name__}")


def get_array_module(array):
    """The array module that owns ``array``."""
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return _cupy
    return np


def to_device(array, device: str):
    """Move a backing array to ``device`` (no copy when it is already there)."""
    if device == "cpu":
        return to_numpy(array)
    cp = _import_cupy()
    if cp is None:
        normalize_device("cuda")  # raises the explanatory error
    return cp.asarray(array)


def to_numpy(array) -> np.ndarray:
    """A NumPy array holding ``array`` (copied from the GPU when needed)."""
    if isinstance(array, np.ndarray):
        return array
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return _cupy.asnumpy(array)
    return np.asarray(array)


def device_of_safe(array):
    """The device string of ``array``, or None when it is not an array of a known backend."""
    try:
        return device_of(array)
    except TypeError:
        return None
