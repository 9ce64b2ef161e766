"""Fused kernels for the elementwise part of the affine coupling layer (Dinh et al. 2016):

    y      = b * x + (1 - b) * (x * exp(s) + t)         (forward)
    logdet = sum_j (1 - b_j) * s_j                      (per sample)
    x      = b * y + (1 - b) * (y - t) * exp(-s)        (inverse)

and the backward of the forward (dL/dx, dL/ds, dL/dt from dL/dy). The mask b is binary, so each
element takes one branch: kept (b = 1: y = x, no exp evaluated) or transformed (b = 0).

Arrays only: x, s, t, y (and the gradients) are C-contiguous (N, D) arrays of one floating dtype,
N the batch and D the number of elements of one sample; b is a (D,) array of that dtype holding
0 or 1 (the wrapper in :mod:`tinygen.functional.coupling` broadcasts the mask and checks it).
One pass over memory per call instead of the ~10 passes (and temporaries) of the composed ops.
"""
from __future__ import annotations

import math

from numba import njit

__all__ = ["coupling_forward", "coupling_backward", "coupling_inverse"]


@njit(cache=True)
def coupling_forward(x, s, t, b, y, logdet):
    """Writes y (N, D) and logdet (N,) from x, s, t (N, D) and the mask b (D,).

    y[i, j] = x[i, j]                            if b[j] == 1
            = x[i, j] * exp(s[i, j]) + t[i, j]   if b[j] == 0
    logdet[i] = sum_{j: b[j] == 0} s[i, j]       (accumulated in float64)
    """
    n, d = x.shape
    for i in range(n):
        acc = 0.0
        for j in range(d):
            if b[j] != 0:
                y[i, j] = x[i, j]
            else:
                sij = s[i, j]
                y[i, j] = x[i, j] * math.exp(sij) + t[i, j]
                acc += sij
        logdet[i] = acc


@njit(cache=True)
def coupling_backward(g, x, s, b, gx, gs, gt):
    """Writes gx, gs, gt (N, D) from g = dL/dy, x, s (N, D) and the mask b (D,).

    b[j] == 1:  gx = g,             gs = 0,               gt = 0
    b[j] == 0:  gx = g * exp(s),    gs = g * x * exp(s),  gt = g
    (the log-det's own contribution to dL/ds, dL/dlogdet * (1 - b), is added by its op.)
    """
    n, d = x.shape
    for i in range(n):
        for j in range(d):
            gij = g[i, j]
            if b[j] != 0:
                gx[i, j] = gij
                gs[i, j] = 0.0
                gt[i, j] = 0.0
            else:
                ge = gij * math.exp(s[i, j])
                gx[i, j] = ge
                gs[i, j] = ge * x[i, j]
                gt[i, j] = gij


@njit(cache=True)
def coupling_inverse(y, s, t, b, x):
    """Writes x (N, D) from y, s, t (N, D) and the mask b (D,):

    x[i, j] = y[i, j]                              if b[j] == 1
            = (y[i, j] - t[i, j]) * exp(-s[i, j])  if b[j] == 0
    """
    n, d = y.shape
    for i in range(n):
        for j in range(d):
            if b[j] != 0:
                x[i, j] = y[i, j]
            else:
                x[i, j] = (y[i, j] - t[i, j]) * math.exp(-s[i, j])
