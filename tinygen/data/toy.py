"""Generated 2-D toy distributions (for flows, GANs and VAEs on the plane), seeded."""
from __future__ import annotations

import numpy as np


def _rng(seed):
    return np.random.default_rng(seed)


def _check_n(n):
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")


def make_moons(n, *, noise=0.1, seed=0):
    """Two interleaved half circles: points float32 (n, 2) and labels int64 (n,) (0 upper,
    1 lower), Gaussian noise of std ``noise``."""
    _check_n(n)
    rng = _rng(seed)
    n0 = n // 2
    t0, t1 = rng.uniform(0.0, np.pi, n0), rng.uniform(0.0, np.pi, n - n0)
    upper = np.stack([np.cos(t0), np.sin(t0)], axis=1)
    lower = np.stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)
    x = np.concatenate([upper, lower]) + rng.normal(0.0, noise, (n, 2))
    y = np.concatenate([np.zeros(n0, np.int64), np.ones(n - n0, np.int64)])
    return x.astype(np.float32), y


def make_rings(n, *, noise=0.05, seed=0, radii=(1.0, 2.0, 3.0)):
    """Concentric circles of the given radii, points spread over them in proportion to the
    circumference; float32 (n, 2)."""
    _check_n(n)
    rng = _rng(seed)
    radii = np.asarray(radii, dtype=np.float64)
    which = rng.choice(len(radii), size=n, p=radii / radii.sum())
    theta = rng.uniform(0.0, 2 * np.pi, n)
    x = radii[which, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1)
    return (x + rng.normal(0.0, noise, (n, 2))).astype(np.float32)


def make_eight_gaussians(n, *, noise=0.1, seed=0, radius=2.0):
    """A mixture of 8 Gaussians (std ``noise``) centred on a circle of ``radius``; float32
    (n, 2)."""
    _check_n(n)
    rng = _rng(seed)
    angles = 2 * np.pi * rng.integers(0, 8, n) / 8
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return (centres + rng.normal(0.0, noise, (n, 2))).astype(np.float32)


def make_checkerboard(n, *, seed=0, squares=4, size=4.0):
    """Uniform on the dark squares of a ``squares`` x ``squares`` checkerboard covering
    [-size/2, size/2]^2; float32 (n, 2)."""
    _check_n(n)
    rng = _rng(seed)
    cell = size / squares
    # pick a dark square (i + j even), then a uniform point inside it
    dark = np.array([(i, j) for i in range(squares) for j in range(squares) if (i + j) % 2 == 0])
    pick = dark[rng.integers(0, len(dark), n)]
    x = (pick + rng.random((n, 2))) * cell - size / 2
    return x.astype(np.float32)


TOY_DATASETS = {"moons": lambda n, seed=0: make_moons(n, seed=seed)[0],
                "rings": make_rings, "8gaussians": make_eight_gaussians,
                "checkerboard": make_checkerboard}
