"""The CUDA device the kernel-level tests (test_cuda_conv.py, test_cuda_lstm.py) run on.

* Real CuPy with a GPU, or the stand-in ``cupy`` that ``TINYGEN_TEST_DEVICE=cuda-emu`` installs:
  whatever :func:`tinygen.kernels.cuda._runtime.get_cupy` returns.
* Otherwise, when g++ exists, the stand-in of ``tests/cuda_emu`` is handed to the kernel modules
  for the duration of one test only (``_runtime._cupy`` patched and restored), so that the kernels
  are checked by the plain test run too. Only ``kernels/cuda`` sees it: ``device="cuda"`` stays
  refused for tensors.
* Otherwise the tests skip, saying why.

:func:`thread_order` sets the emulator's thread order (forward, reverse, seeded random) for a test;
on a real GPU the order is the hardware's and the parameter only repeats the test.
"""
from __future__ import annotations

import contextlib
import os
import sys

import pytest

_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
ORDERS = ("forward", "reverse", "random")


def _emulator():
    """The ``cuda_emu`` package of tests/ (importable as a top-level package, as in conftest)."""
    if _TESTS_DIR not in sys.path:
        sys.path.insert(0, _TESTS_DIR)
    import cuda_emu
    return cuda_emu


#: Grid cap of the elementwise kernels in sanitizer builds of the emulator: ThreadSanitizer allows
#: about 8,000 threads (fibers) per launch; the kernels' grid-stride loops give the same result
#: with any grid.
SANITIZER_MAX_BLOCKS = 4


@contextlib.contextmanager
def device_cupy():
    """Yield the ``cupy`` module the CUDA kernels run on during the block (see the module doc)."""
    from tinygen.kernels.cuda import _grid
    saved_blocks = _grid.MAX_BLOCKS
    if os.environ.get("TINYGEN_EMU_SANITIZE"):
        _grid.MAX_BLOCKS = SANITIZER_MAX_BLOCKS
    try:
        with _device_cupy() as cp:
            yield cp
    finally:
        _grid.MAX_BLOCKS = saved_blocks


@contextlib.contextmanager
def _device_cupy():
    from tinygen.kernels.cuda import _runtime
    try:
        cp = _runtime.get_cupy()
    except RuntimeError as exc:
        reason = str(exc)
    else:
        yield cp
        return
    emu = _emulator()
    if emu.gxx() is None:
        pytest.skip(f"no GPU ({reason}) and no g++ for the CUDA emulator")
    from cuda_emu import fake_cupy
    saved = (_runtime._cupy, _runtime._cupy_error)
    _runtime._cupy, _runtime._cupy_error = fake_cupy, None
    try:
        yield fake_cupy
    finally:
        _runtime._cupy, _runtime._cupy_error = saved


@contextlib.contextmanager
def thread_order(order: str, seed: int = 0):
    """Run the block with the emulator's threads in ``order`` (no effect on a real GPU)."""
    emu = _emulator()
    saved = emu.get_order()
    emu.set_order(order, seed)
    try:
        yield
    finally:
        emu.set_order(*saved)
