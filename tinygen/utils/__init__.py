"""PyTorch's ``torch.utils`` pieces that scripts use: :mod:`tinygen.utils.data`."""
from . import data

__all__ = ["data"]
