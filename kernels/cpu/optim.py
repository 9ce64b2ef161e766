"""Fused optimizer updates (Numba): one pass over the parameter instead of a dozen NumPy
temporaries. Arrays are flat views of the parameter, its gradient and its state buffers, all of
one dtype and length; the formulas are those of :mod:`tinygen.optim`."""
from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["adam_update", "adam_update_plain", "sgd_update"]


@njit(cache=True)
def adam_update(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, decoupled, amsgrad,
                maximize, step):
    """In place: p, m, v (and vmax when ``amsgrad``) of length n; g read only.

    g' = -g if maximize; decoupled: p *= 1 - lr wd, else g' += wd p;
    m = beta1 m + (1-beta1) g';  v = beta2 v + (1-beta2) g'^2;  vmax = max(vmax, v)
    p -= lr / (1 - beta1^t) * m / (sqrt(v or vmax) / sqrt(1 - beta2^t) + eps)
    """
    step_size = lr / (1.0 - beta1 ** step)
    inv_bc2_sqrt = 1.0 / math.sqrt(1.0 - beta2 ** step)
    decay = 1.0 - lr * weight_decay
    for i in range(p.size):
        gi = -g[i] if maximize else g[i]
        if weight_decay != 0.0:
            if decoupled:
                p[i] *= decay
            else:
                gi += weight_decay * p[i]
        mi = beta1 * m[i] + (1.0 - beta1) * gi
        vi = beta2 * v[i] + (1.0 - beta2) * gi * gi
        m[i] = mi
        v[i] = vi
        if amsgrad:
            if vi > vmax[i]:
                vmax[i] = vi
            vi = vmax[i]
        p[i] -= step_size * mi / (math.sqrt(vi) * inv_bc2_sqrt + eps)


@njit(cache=True, error_model="numpy")
def adam_update_plain(p, g, m, v, step_size, beta1, beta2, one_minus_beta1, one_minus_beta2,
                      inv_bc2_sqrt, eps):
    """The common case of :func:`adam_update` (no weight decay, no amsgrad, no maximize), in
    place on p, m, v of length n. The scalars must have the arrays' dtype (float32 arithmetic
    for float32 parameters, as PyTorch); with no branch in the loop, unsigned indices (no
    negative-index test) and NumPy's error model (no zero-division test) LLVM vectorizes it.

    m = beta1 m + (1-beta1) g;  v = beta2 v + (1-beta2) g^2  (1-beta passed, in the dtype);
    p -= step_size * m / (sqrt(v) * inv_bc2_sqrt + eps)
    """
    for i in range(np.uint64(p.size)):
        gi = g[i]
        mi = beta1 * m[i] + one_minus_beta1 * gi
        vi = beta2 * v[i] + one_minus_beta2 * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] -= step_size * mi / (np.sqrt(vi) * inv_bc2_sqrt + eps)


@njit(cache=True)
def sgd_update(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, maximize, first):
    """In place: p and buf (the momentum buffer, unused when momentum == 0); g read only.

    g' = (-g if maximize) + wd p;  buf = g' (first step) or momentum buf + (1-dampening) g';
    p -= lr * (g' + momentum buf if nesterov else buf)   (p -= lr g' without momentum)
    """
    for i in range(p.size):
        gi = -g[i] if maximize else g[i]
        if weight_decay != 0.0:
            gi += weight_decay * p[i]
        if momentum != 0.0:
            if first:
                b = gi
            else:
                b = momentum * buf[i] + (1.0 - dampening) * gi
            buf[i] = b
            gi = gi + momentum * b if nesterov else b
        p[i] -= lr * gi
