"""PyTorch's ``torch.cuda`` questions, answered for tinygen's one-GPU CuPy backend.

``tinygen.cuda.is_available()`` is what scripts ask before choosing a device::

    device = tinygen.device("cuda" if tinygen.cuda.is_available() else "cpu")
"""
from __future__ import annotations

from . import backend

__all__ = ["is_available", "device_count", "current_device", "synchronize", "manual_seed",
           "manual_seed_all"]


def is_available() -> bool:
    """True when CuPy imports and sees a GPU (tinygen uses one)."""
    return backend.cuda_available()


def device_count() -> int:
    """1 when a GPU is usable (tinygen drives one), else 0."""
    return 1 if is_available() else 0


def current_device() -> int:
    if not is_available():
        backend.normalize_device("cuda")  # raises the explanatory error
    return 0


def synchronize() -> None:
    """Wait for the GPU to finish its queued work (nothing to do without one)."""
    if is_available():
        backend._import_cupy().cuda.Stream.null.synchronize()


def manual_seed(seed: int) -> None:
    """Accepted for PyTorch scripts and ignored: tinygen draws GPU random numbers from its one
    default generator, which ``tinygen.manual_seed`` seeds (PyTorch scripts call both)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")


manual_seed_all = manual_seed
