"""Stochastic gradient descent with momentum, Nesterov momentum and weight decay."""
from __future__ import annotations

from .. import kernels
from ..backend import get_array_module
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
        """One SGD step on the array ``p``, by the ``optim`` kernels of p's device."""
        momentum = group["momentum"]
        first = momentum and "momentum_buffer" not in state
        if first:
            state["momentum_buffer"] = get_array_module(p).empty_like(p)
        kernels.for_arrays("optim", p).sgd_step(
            p, grad, state.get("momentum_buffer"), first, group["lr"], momentum,
            group["dampening"], group["weight_decay"], group["nesterov"], group["maximize"])
