"""Principal component analysis: the linear baseline of the autoencoders.

The lecture: with a linear encoder f and decoder g, the optimal MSE autoencoder spans the same
subspace as PCA. With X (N, D) centred by its mean m, X = U S V^T; the top-d principal
directions are the first d rows of V^T, and the reconstruction of x is
m + V_d V_d^T (x - m).

This is a baseline computed with NumPy's SVD, not part of the engine.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PCA:
    """Fitted PCA: ``mean`` (D,), ``components`` (d, D) orthonormal rows, ``explained`` (d,)
    variances."""
    mean: np.ndarray
    components: np.ndarray
    explained: np.ndarray

    @classmethod
    def fit(cls, x, d: int) -> "PCA":
        """Fit the top-``d`` principal subspace of ``x`` (N, ...) flattened to (N, D)."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)  # (N, D)
        if not 1 <= d <= min(x.shape):
            raise ValueError(f"PCA: d must be in [1, min(N, D)] = [1, {min(x.shape)}], got {d}")
        mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        return cls(mean, vt[:d], s[:d] ** 2 / max(len(x) - 1, 1))

    def encode(self, x) -> np.ndarray:
        """(N, ...) -> codes (N, d)."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        return (x - self.mean) @ self.components.T

    def decode(self, z) -> np.ndarray:
        """codes (N, d) -> (N, D)."""
        return np.asarray(z, dtype=np.float64) @ self.components + self.mean

    def mse(self, x) -> float:
        """Mean squared reconstruction error per pixel of ``x`` (N, ...)."""
        flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        return float(np.mean((self.decode(self.encode(flat)) - flat) ** 2))


def principal_angles(a, b) -> np.ndarray:
    """Principal angles (radians, ascending) between the column spaces of ``a`` (D, p) and
    ``b`` (D, q): arccos of the singular values of Q_a^T Q_b."""
    qa, _ = np.linalg.qr(np.asarray(a, dtype=np.float64))
    qb, _ = np.linalg.qr(np.asarray(b, dtype=np.float64))
    s = np.linalg.svd(qa.T @ qb, compute_uv=False)
    return np.sort(np.arccos(np.clip(s, -1.0, 1.0)))
