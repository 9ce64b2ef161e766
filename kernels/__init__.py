"""Array kernels, installed as ``tinygen.kernels``, and the one device seam that chooses them.

Kernels know arrays only, never Tensors:

* :mod:`tinygen.kernels.cpu`  -- Numba ``@njit(cache=True)`` functions (CPU hot loops);
* :mod:`tinygen.kernels.cuda` -- CUDA C sources (``*.cu``) and their CuPy ``RawModule`` loader.

The seam
--------
Each kernel *family* (``conv``, ``coupling``, ``losses``, ``lstm``, ``optim``, ...) is a module
``kernels/<device>/<family>.py`` per device, and the modules of one family export the same
functions: same names, same signatures, arrays in and arrays out (outputs are allocated by the
kernel module on the inputs' device). A differentiable op asks the seam once, from the arrays it
was given, and never tests the array type itself::

    k = kernels.for_arrays("conv", x, w)      # kernels.cpu.conv or kernels.cuda.conv
    y = k.conv2d_forward(x, w, geom, groups)

This is the only place in the package where a kernel module is chosen (a test reads the imports
of ``tinygen/`` and fails on any other). A device whose directory lacks the family raises
:class:`KernelNotAvailable` naming the family and the device.
"""
from __future__ import annotations

import importlib

import numpy as np

__all__ = ["for_arrays", "for_device", "device_of_arrays", "register", "KernelNotAvailable",
           "DEVICES"]

DEVICES = ("cpu", "cuda")


class KernelNotAvailable(NotImplementedError):
    """The device holding the arrays has no kernel module for the requested family."""


def device_of_arrays(*arrays) -> str:
    """``"cuda"`` when any argument is a device (non-NumPy) array, else ``"cpu"``.

    Only NumPy and CuPy arrays reach the kernels, so the test needs no CuPy import; ``None`` and
    Python scalars are ignored.
    """
    for a in arrays:
        if a is None or isinstance(a, (np.ndarray, np.generic, int, float, bool)):
            continue
        if hasattr(a, "shape") and hasattr(a, "dtype"):
            return "cuda"
    return "cpu"


_modules: dict = {}


def register(family: str, device: str, module) -> None:
    """Plug a kernel family that lives outside this package into the seam: ``module`` (a module
    or any object with the family's functions) serves ``family`` on ``device``. A built-in family
    cannot be replaced. See docs/extending.md for a worked example."""
    if device not in DEVICES:
        raise ValueError(f"kernels.register: unknown device {device!r} (expected one of "
                         f"{DEVICES})")
    try:
        importlib.import_module(f"{__name__}.{device}.{family}")
    except ModuleNotFoundError:
        pass
    else:
        raise ValueError(f"kernels.register: {family!r} is a built-in family on {device}")
    _modules[(family, device)] = module


def for_device(family: str, device: str):
    """The kernel module of ``family`` for ``device`` (``"cpu"`` or ``"cuda"``), imported once."""
    key = (family, device)
    mod = _modules.get(key)
    if mod is not None:
        return mod
    if device not in DEVICES:
        raise ValueError(f"kernels: unknown device {device!r} (expected one of {DEVICES})")
    try:
        mod = importlib.import_module(f"{__name__}.{device}.{family}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{device}.{family}":
            raise
        raise KernelNotAvailable(
            f"no '{family}' kernels for device '{device}' (looked for "
            f"tinygen.kernels.{device}.{family})") from None
    _modules[key] = mod
    return mod


def for_arrays(family: str, *arrays):
    """The kernel module of ``family`` for the device that holds ``arrays``."""
    return for_device(family, device_of_arrays(*arrays))
