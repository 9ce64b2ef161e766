"""Dropout (Srivastava et al. 2014): zero each element with probability p in training and scale
the survivors by 1 / (1 - p), so that evaluation needs no rescaling."""
from __future__ import annotations

import numpy as np

from ..random import _resolve as _resolve_generator
from ..tensor import Tensor
from ._util import check_tensor

__all__ = ["dropout"]


def dropout(x, p: float = 0.5, training: bool = True, generator=None) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) (in training)."""
    x = check_tensor(x, "input")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    gen = _resolve_generator(generator)
    from ..backend import to_device
    keep = to_device(gen.uniform(x.shape, np.float64), x.device) >= p
    return x * Tensor._wrap((keep / (1.0 - p)).astype(x.dtype))
