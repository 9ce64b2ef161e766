"""Pixel transforms for likelihood models on MNIST."""
from __future__ import annotations

import numpy as np


def dynamic_binarize(x, rng: np.random.Generator) -> np.ndarray:
    """A fresh Bernoulli sample per call: each pixel is 1 with probability x (float32)."""
    x = np.asarray(x)
    return (rng.random(x.shape) < x).astype(np.float32)


def static_binarize(x, seed: int = 0) -> np.ndarray:
    """One fixed, seeded Bernoulli sample (the same result every call for the same x, seed)."""
    return dynamic_binarize(x, np.random.default_rng([seed, 104729]))


def dequantize(x, rng: np.random.Generator) -> np.ndarray:
    """Uniform dequantization of 8-bit pixels: (255 x + u) / 256 with u ~ U[0, 1), in [0, 1)."""
    x = np.asarray(x, dtype=np.float32)
    return ((np.round(x * 255.0) + rng.random(x.shape, dtype=np.float32)) / 256.0).astype(
        np.float32)
