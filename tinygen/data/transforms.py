"""Pixel transforms for likelihood models on MNIST, and the shift augmentation."""
from __future__ import annotations

import numpy as np


def dynamic_binarize(x, rng: np.random.Generator) -> np.ndarray:
    """A fresh Bernoulli sample per call: each pixel is 1 with probability x (float32; the
    uniforms are drawn in float32, half the cost of float64 for 24 bits of resolution)."""
    x = np.asarray(x)
    return (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32)


def static_binarize(x, seed: int = 0) -> np.ndarray:
    """One fixed, seeded Bernoulli sample (the same result every call for the same x, seed)."""
    return dynamic_binarize(x, np.random.default_rng([seed, 104729]))


def dequantize(x, rng: np.random.Generator) -> np.ndarray:
    """Uniform dequantization of 8-bit pixels: (k + u) / 256 with k = round(255 x) and
    u ~ U[0, 1); float32, kept strictly inside the pixel's bin [k/256, (k+1)/256) (float32
    rounding would otherwise push a few values onto the next bin's edge)."""
    k = np.round(np.asarray(x, dtype=np.float64) * 255.0)
    y = ((k + rng.random(k.shape)) / 256.0).astype(np.float32)
    upper = np.nextafter(((k + 1) / 256.0).astype(np.float32), np.float32(0))
    return np.minimum(y, upper)


def random_shift(x: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each image of ``x`` (N, C, H, W) by its own random (dy, dx) in
    [-max_shift, max_shift]^2, filling with zeros (the MNIST background)."""
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    s = max_shift
    padded = np.pad(x, ((0, 0), (0, 0), (s, s), (s, s)))             # (N, C, H+2s, W+2s)
    dy = rng.integers(0, 2 * s + 1, size=n)
    dx = rng.integers(0, 2 * s + 1, size=n)
    out = np.empty_like(x)
    for i in range(n):
        out[i] = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
    return out


def balanced_indices(labels, n: int) -> np.ndarray:
    """``n`` indices for pictures: the first images of each class in turn (0, 1, ..., 9, 0, 1,
    ...), so a grid of a class-ordered split shows every digit, always the same ones. Classes
    that run out are skipped; fewer than ``n`` indices come back only if the set is smaller."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    members = [list(np.flatnonzero(labels == c)) for c in classes]
    picked, round_ = [], 0
    while len(picked) < n and any(round_ < len(m) for m in members):
        picked += [m[round_] for m in members if round_ < len(m)][:n - len(picked)]
        round_ += 1
    return np.array(picked, dtype=np.int64)
