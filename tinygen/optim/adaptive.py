"""Optimizers with per-coordinate step sizes from running gradient statistics: Adagrad, RMSprop,
Adadelta (PyTorch's update rules, state names and defaults). Written with the array module of
the parameter (NumPy or CuPy), no fused kernel.

Notation: g is the gradient (negated when ``maximize``), plus ``weight_decay * p`` when set.
"""
from __future__ import annotations

from ..backend import get_array_module
from .optimizer import Optimizer

__all__ = ["Adagrad", "RMSprop", "Adadelta"]


def _check_nonneg(opt, group, *names):
    for n in names:
        if not group[n] >= 0:
            raise ValueError(f"{type(opt).__name__}: invalid {n} {group[n]} (must be >= 0)")


def _decayed_grad(p, grad, group):
    g = -grad if group["maximize"] else grad
    if group["weight_decay"]:
        g = g + group["weight_decay"] * p
    return g


class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011), as PyTorch:

        s <- s + g^2                          (s starts at initial_accumulator_value)
        p <- p - lr / (1 + (t - 1) lr_decay) * g / (sqrt(s) + eps)

    State: ``step`` (t) and ``sum`` (s).
    """

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10, maximize=False):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps, maximize=maximize))

    def _check_group(self, group):
        super()._check_group(group)
        _check_nonneg(self, group, "lr_decay", "weight_decay", "initial_accumulator_value", "eps")

    def _update(self, p, grad, state, group):
        xp = get_array_module(p)
        if "sum" not in state:
            state["step"] = 0
            state["sum"] = xp.full_like(p, group["initial_accumulator_value"])
        state["step"] += 1
        g = _decayed_grad(p, grad, group)
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        state["sum"] += g * g
        p -= (clr * g / (xp.sqrt(state["sum"]) + group["eps"])).astype(p.dtype, copy=False)


class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture notes on neural networks, lecture 6e), as PyTorch:

        v <- alpha v + (1 - alpha) g^2
        m <- alpha m + (1 - alpha) g,  d = sqrt(v - m^2) + eps   (centered)
        d = sqrt(v) + eps                                         (otherwise)
        b <- momentum b + g / d,  p <- p - lr b                   (momentum > 0)
        p <- p - lr g / d                                         (otherwise)

    State: ``step``, ``square_avg`` (v), ``grad_avg`` (m, centered), ``momentum_buffer`` (b).
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, maximize=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize))

    def _check_group(self, group):
        super()._check_group(group)
        _check_nonneg(self, group, "alpha", "eps", "weight_decay", "momentum")

    def _update(self, p, grad, state, group):
        xp = get_array_module(p)
        if "square_avg" not in state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p)
            if group["momentum"] > 0:
                state["momentum_buffer"] = xp.zeros_like(p)
            if group["centered"]:
                state["grad_avg"] = xp.zeros_like(p)
        state["step"] += 1
        alpha = group["alpha"]
        g = _decayed_grad(p, grad, group)
        v = state["square_avg"]
        v *= alpha
        v += (1 - alpha) * g * g
        if group["centered"]:
            m = state["grad_avg"]
            m *= alpha
            m += (1 - alpha) * g
            denom = xp.sqrt(v - m * m) + group["eps"]
        else:
            denom = xp.sqrt(v) + group["eps"]
        if group["momentum"] > 0:
            b = state["momentum_buffer"]
            b *= group["momentum"]
            b += g / denom
            p -= (group["lr"] * b).astype(p.dtype, copy=False)
        else:
            p -= (group["lr"] * g / denom).astype(p.dtype, copy=False)


class Adadelta(Optimizer):
    """Adadelta (Zeiler 2012), as PyTorch:

        v <- rho v + (1 - rho) g^2
        d = sqrt(u + eps) / sqrt(v + eps) * g
        u <- rho u + (1 - rho) d^2
        p <- p - lr d

    State: ``step``, ``square_avg`` (v), ``acc_delta`` (u).
    """

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize))

    def _check_group(self, group):
        super()._check_group(group)
        _check_nonneg(self, group, "eps", "weight_decay")
        if not 0.0 <= group["rho"] <= 1.0:
            raise ValueError(f"Adadelta: invalid rho {group['rho']} (must be in [0, 1])")

    def _update(self, p, grad, state, group):
        xp = get_array_module(p)
        if "square_avg" not in state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p)
            state["acc_delta"] = xp.zeros_like(p)
        state["step"] += 1
        rho, eps = group["rho"], group["eps"]
        g = _decayed_grad(p, grad, group)
        v, u = state["square_avg"], state["acc_delta"]
        v *= rho
        v += (1 - rho) * g * g
        delta = xp.sqrt(u + eps) / xp.sqrt(v + eps) * g
        u *= rho
        u += (1 - rho) * delta * delta
        p -= (group["lr"] * delta).astype(p.dtype, copy=False)
