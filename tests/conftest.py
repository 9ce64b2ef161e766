"""Test configuration: hypothesis profiles and the optional PyTorch oracle.

Profiles (select with ``HYPOTHESIS_PROFILE=...``; CI and ``make test`` use ``ci``):

* ``ci``  -- derandomized (the same examples every run), no deadline, a modest number of examples:
  fast and deterministic.
* ``dev`` -- random examples, more of them: for hunting bugs locally.
"""
import os
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# The device the op tests run on (tests/harness.py reads it too): "cpu" (default); "cuda-emu" --
# the stand-in cupy (tests/cuda_emu/fake_cupy.py) is installed here, before anything imports
# tinygen, and the .cu kernels run on the CPU emulator (``make test-gpu-emu``); "cuda" -- real
# CuPy on a real GPU (``make gpu-check``).
TEST_DEVICE = os.environ.get("TINYGEN_TEST_DEVICE", "cpu")
if TEST_DEVICE not in ("cpu", "cuda-emu", "cuda"):
    raise pytest.UsageError(
        f"TINYGEN_TEST_DEVICE must be cpu, cuda-emu or cuda, got {TEST_DEVICE!r}")
if TEST_DEVICE == "cuda-emu":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from cuda_emu import fake_cupy
    fake_cupy.install()


def pytest_report_header(config):
    if TEST_DEVICE == "cuda-emu":
        return ["tinygen test device: cuda-emu -- device arrays are the stand-in cupy (NumPy "
                "underneath) and the .cu kernels run on the g++ CPU emulator: NO GPU CODE RAN"]
    if TEST_DEVICE == "cuda":
        from tinygen.kernels.cuda import _runtime
        cp = _runtime.get_cupy()  # raises when there is no GPU: a "cuda" run needs one
        name = cp.cuda.runtime.getDeviceProperties(0)["name"]
        return [f"tinygen test device: cuda -- real CuPy {cp.__version__} on {name!r}"]
    return ["tinygen test device: cpu -- the CUDA kernel tests use the g++ CPU emulator; "
            "NO GPU CODE RAN"]

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])
settings.register_profile("dev", deadline=None, max_examples=200,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

try:  # PyTorch is an optional test oracle, never a runtime dependency
    import torch
    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - exercised in the no-torch CI leg
    torch = None


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same global random state."""
    import tinygen
    tinygen.manual_seed(0)
    np.random.seed(0)
    yield
