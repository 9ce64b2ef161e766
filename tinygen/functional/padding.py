"""``F.pad``'s index-based modes: ``reflect``, ``replicate`` and ``circular``.

Each padded axis is rebuilt by selecting input positions (an index array computed once), so the
backward is the indexing op's scatter with accumulation: an edge element that is copied into the
padding receives the gradients of all its copies.
"""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from .shape import getitem

__all__ = ["pad_indexed"]


def _source_positions(mode, n, lo, hi):
    """For padded positions -lo .. n+hi-1 of an axis of length n: the input position each copies."""
    i = np.arange(-lo, n + hi)
    if mode == "reflect":    # mirror about the edge element (not repeated): -1 -> 1, n -> n-2
        period = 2 * (n - 1)
        i = np.abs(i) % period if period else np.zeros_like(i)
        return np.where(i >= n, period - i, i)
    if mode == "replicate":  # repeat the edge element
        return np.clip(i, 0, n - 1)
    return i % n             # circular: wrap around


def pad_indexed(x: Tensor, widths, mode: str) -> Tensor:
    """Pad ``x`` by ``widths`` (one ``(before, after)`` pair per axis) in ``mode``."""
    for axis, (lo, hi) in enumerate(widths):
        if lo == 0 and hi == 0:
            continue
        n = x.shape[axis]
        if lo < 0 or hi < 0:
            raise ValueError(f"pad: mode={mode!r} needs non-negative widths, got {(lo, hi)} for "
                             f"axis {axis} of shape {tuple(x.shape)}")
        if mode == "reflect" and (lo >= n or hi >= n):
            raise ValueError(f"pad: mode='reflect' needs widths smaller than the axis, got "
                             f"{(lo, hi)} for axis {axis} of size {n} (shape {tuple(x.shape)})")
        if mode == "circular" and (lo > n or hi > n):
            raise ValueError(f"pad: mode='circular' needs widths at most the axis size, got "
                             f"{(lo, hi)} for axis {axis} of size {n} (shape {tuple(x.shape)})")
        if n == 0:
            raise ValueError(f"pad: mode={mode!r} cannot pad the empty axis {axis} of shape "
                             f"{tuple(x.shape)}")
        src = x._xp.asarray(_source_positions(mode, n, lo, hi))
        x = getitem(x, (slice(None),) * axis + (src,))
    return x
