"""Stochastic gradient descent with momentum, Nesterov momentum and weight decay."""
from __future__ import annotations

import numpy as np

from ..kernels.cpu.optim import sgd_update
from .optimizer import Optimizer

__all__ = ["SGD"]


class SGD(Optimizer):
    """PyTorch's SGD:

        g <- grad + weight_decay * p                      (g <- -grad first if maximize)
        b <- g (first step),  b <- momentum * b + (1 - dampening) * g
        g <- g + momentum * b  (nesterov)   or   g <- b
        p <- p - lr * g

    ``state[p]["momentum_buffer"]`` holds b (with momentum).
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, maximize=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    def _check_group(self, group):
        super()._check_group(group)
        if group["momentum"] < 0:
            raise ValueError(f"SGD: invalid momentum {group['momentum']}")
        if group["weight_decay"] < 0:
            raise ValueError(f"SGD: invalid weight_decay {group['weight_decay']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: nesterov momentum requires a momentum and zero dampening")

    def _update(self, p, grad, state, group):
        """One SGD step on the array ``p`` (fused Numba kernel for contiguous NumPy arrays,
        array-module ops otherwise)."""
        momentum = group["momentum"]
        if isinstance(p, np.ndarray) and p.flags.c_contiguous:  # fused Numba kernel
            first = "momentum_buffer" not in state
            if momentum and first:
                state["momentum_buffer"] = np.empty_like(p)
            buf = state["momentum_buffer"] if momentum else p
            sgd_update(p.reshape(-1), np.ascontiguousarray(grad, dtype=p.dtype).reshape(-1),
                       buf.reshape(-1), float(group["lr"]), float(momentum),
                       float(group["dampening"]), float(group["weight_decay"]),
                       bool(group["nesterov"]), bool(group["maximize"]), first)
            return
        g = -grad if group["maximize"] else grad
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.copy()
            else:
                buf *= momentum
                buf += (1.0 - group["dampening"]) * g
            g = g + momentum * buf if group["nesterov"] else buf
        p -= group["lr"] * g
