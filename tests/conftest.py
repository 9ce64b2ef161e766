"""Test configuration: hypothesis profiles and the optional PyTorch oracle.

Profiles (select with ``HYPOTHESIS_PROFILE=...``; CI and ``make test`` use ``ci``):

* ``ci``  -- derandomized (the same examples every run), no deadline, a modest number of examples:
  fast and deterministic.
* ``dev`` -- random examples, more of them: for hunting bugs locally.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

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
