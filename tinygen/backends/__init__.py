"""PyTorch's ``torch.backends`` switches that scripts set; tinygen has no cuDNN, so they are
accepted and change nothing (``tinygen.backends.cudnn.benchmark = True`` is a no-op)."""
from . import cudnn

__all__ = ["cudnn"]
