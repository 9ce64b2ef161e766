"""``tinygen.nn.functional`` is :mod:`tinygen.functional` itself (PyTorch scripts write
``import torch.nn.functional as F``): importing this module returns that one."""
import sys

from .. import functional as _functional

sys.modules[__name__] = _functional
