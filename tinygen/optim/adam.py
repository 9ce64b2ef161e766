"""Adam and AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019), PyTorch's update rules."""
from __future__ import annotations

import math

import numpy as np

from ..backend import get_array_module
from ..kernels.cpu.optim import adam_update, adam_update_plain
from .optimizer import Optimizer

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam:

        g <- grad + weight_decay * p                 (L2 penalty; AdamW decays p instead)
        m <- beta1 m + (1 - beta1) g,   v <- beta2 v + (1 - beta2) g^2
        v_hat <- max(v_hat, v) with amsgrad, else v
        p <- p - lr / (1 - beta1^t) * m / (sqrt(v_hat) / sqrt(1 - beta2^t) + eps)

    (g <- -grad first with ``maximize``.) ``state[p]`` holds ``step`` (t, per parameter),
    ``exp_avg`` (m), ``exp_avg_sq`` (v) and, with ``amsgrad``, ``max_exp_avg_sq``.
    """

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, maximize=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize))

    def _check_group(self, group):
        super()._check_group(group)
        name = type(self).__name__
        b1, b2 = group["betas"]
        if not 0.0 <= b1 < 1.0 or not 0.0 <= b2 < 1.0:
            raise ValueError(f"{name}: betas must be in [0, 1), got {group['betas']}")
        if group["eps"] < 0:
            raise ValueError(f"{name}: invalid eps {group['eps']}")
        if group["weight_decay"] < 0:
            raise ValueError(f"{name}: invalid weight_decay {group['weight_decay']}")

    def _update(self, p, grad, state, group):
        """One Adam step on the array ``p`` (fused Numba kernel for contiguous NumPy arrays,
        array-module ops otherwise, e.g. CuPy)."""
        xp = self._xp_of(p)
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p)
            state["exp_avg_sq"] = xp.zeros_like(p)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(p)
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], \
            group["weight_decay"]
        if isinstance(p, np.ndarray) and p.flags.c_contiguous:  # fused Numba kernel
            state["step"] += 1
            m, v = state["exp_avg"], state["exp_avg_sq"]
            if not (wd or group["amsgrad"] or group["maximize"]):
                t, dt = state["step"], p.dtype.type
                adam_update_plain(p.reshape(-1), _flat(grad, p.dtype), m.reshape(-1),
                                  v.reshape(-1), dt(lr / (1.0 - beta1 ** t)), dt(beta1),
                                  dt(beta2), dt(1.0 - beta1), dt(1.0 - beta2),
                                  dt(1.0 / math.sqrt(1.0 - beta2 ** t)), dt(eps))
                return
            vmax = state["max_exp_avg_sq"] if group["amsgrad"] else v
            adam_update(p.reshape(-1), _flat(grad, p.dtype), m.reshape(-1), v.reshape(-1),
                        vmax.reshape(-1), float(lr), float(beta1), float(beta2), float(eps),
                        float(wd), self._decoupled, bool(group["amsgrad"]),
                        bool(group["maximize"]), state["step"])
            return
        g = -grad if group["maximize"] else grad
        if wd:
            if self._decoupled:
                p *= 1.0 - lr * wd
            else:
                g = g + wd * p
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= beta1
        m += (1.0 - beta1) * g
        v *= beta2
        v += (1.0 - beta2) * (g * g)
        if group["amsgrad"]:
            vmax = state["max_exp_avg_sq"]
            xp.maximum(vmax, v, out=vmax)
            v = vmax
        step_size = lr / (1.0 - beta1 ** t)
        denom = xp.sqrt(v)
        denom *= 1.0 / math.sqrt(1.0 - beta2 ** t)
        denom += eps
        p -= step_size * (m / denom)

    _xp_of = staticmethod(get_array_module)  # the array module (numpy or cupy) of an array


def _flat(grad, dtype):
    """The gradient as a flat contiguous array of the parameter's dtype."""
    return np.ascontiguousarray(grad, dtype=dtype).reshape(-1)


class AdamW(Adam):
    """Adam with decoupled weight decay: p <- p (1 - lr weight_decay) before the Adam step."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)
