"""Optimizer updates, the ``optim`` kernel family (the same API in
:mod:`tinygen.kernels.cuda.optim`): :func:`adam_step` and :func:`sgd_step` update a parameter
array and its state buffers in place; the formulas are those of :mod:`tinygen.optim`.

On the CPU a contiguous parameter goes through fused Numba updates, one pass over the parameter
instead of a dozen NumPy temporaries (flat views of the parameter, its gradient and its state
buffers, all of one dtype and length); any other layout takes the same formulas as array ops.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["adam_step", "sgd_step"]


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


# -- the seam API ---------------------------------------------------------------------------------
def _flat(grad, dtype):
    """The gradient as a flat contiguous array of the parameter's dtype."""
    return np.ascontiguousarray(grad, dtype=dtype).reshape(-1)


def adam_step(p, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr, beta1, beta2, eps,
              weight_decay, decoupled, amsgrad, maximize):
    """One Adam (``decoupled=False``) or AdamW step, in place on ``p`` and its state.

    p, grad, exp_avg (m), exp_avg_sq (v): arrays of p's shape; max_exp_avg_sq: v_hat with
    ``amsgrad`` (else ignored, may be None); ``step``: t after this update (>= 1).
    """
    if p.flags.c_contiguous:
        if not (weight_decay or amsgrad or maximize):
            dt = p.dtype.type
            adam_update_plain(p.reshape(-1), _flat(grad, p.dtype), exp_avg.reshape(-1),
                              exp_avg_sq.reshape(-1), dt(lr / (1.0 - beta1 ** step)), dt(beta1),
                              dt(beta2), dt(1.0 - beta1), dt(1.0 - beta2),
                              dt(1.0 / math.sqrt(1.0 - beta2 ** step)), dt(eps))
            return
        vmax = max_exp_avg_sq if amsgrad else exp_avg_sq
        adam_update(p.reshape(-1), _flat(grad, p.dtype), exp_avg.reshape(-1),
                    exp_avg_sq.reshape(-1), vmax.reshape(-1), float(lr), float(beta1),
                    float(beta2), float(eps), float(weight_decay), bool(decoupled), bool(amsgrad),
                    bool(maximize), int(step))
        return
    g = -grad if maximize else grad                 # a non-contiguous parameter: array ops
    if weight_decay:
        if decoupled:
            p *= 1.0 - lr * weight_decay
        else:
            g = g + weight_decay * p
    m, v = exp_avg, exp_avg_sq
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    v += (1.0 - beta2) * (g * g)
    if amsgrad:
        np.maximum(max_exp_avg_sq, v, out=max_exp_avg_sq)
        v = max_exp_avg_sq
    denom = np.sqrt(v)
    denom *= 1.0 / math.sqrt(1.0 - beta2 ** step)
    denom += eps
    p -= lr / (1.0 - beta1 ** step) * (m / denom)


def sgd_step(p, grad, momentum_buffer, first, lr, momentum, dampening, weight_decay, nesterov,
             maximize):
    """One SGD step, in place on ``p`` and ``momentum_buffer`` (p's shape; ignored, may be None,
    without momentum); ``first``: the buffer holds nothing yet."""
    if p.flags.c_contiguous and (not momentum or momentum_buffer.flags.c_contiguous):
        buf = momentum_buffer if momentum else p
        sgd_update(p.reshape(-1), _flat(grad, p.dtype), buf.reshape(-1), float(lr),
                   float(momentum), float(dampening), float(weight_decay), bool(nesterov),
                   bool(maximize), bool(first))
        return
    g = -grad if maximize else grad
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        if first:
            momentum_buffer[...] = g
        else:
            momentum_buffer *= momentum
            momentum_buffer += (1.0 - dampening) * g
        g = g + momentum * momentum_buffer if nesterov else momentum_buffer
    p -= lr * g
