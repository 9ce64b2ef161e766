"""Training utilities: gradient clipping."""
from __future__ import annotations

import math

import numpy as np

from ..tensor import Tensor

__all__ = ["clip_grad_norm_", "zero_grads_"]


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> Tensor:
    """Scale the gradients of ``parameters`` so that their joint norm is at most ``max_norm``.

    The total norm is taken over all gradients together as if concatenated; gradients are scaled
    by ``max_norm / (total + 1e-6)`` when that is below 1 (PyTorch's rule). Returns the total
    norm (before clipping) as a 0-d tensor. ``norm_type`` may be ``inf``. A non-finite norm
    raises with ``error_if_nonfinite=True``.
    """
    # a list: ``parameters`` is often a generator (model.parameters()) and is walked twice
    parameters = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad for p in parameters if p.grad is not None]
    norm_type = float(norm_type)
    if not norm_type > 0:
        raise ValueError(f"clip_grad_norm_: norm_type must be positive (or inf), got {norm_type}")
    if not grads:
        return Tensor._wrap(np.asarray(0.0, dtype=np.float32))
    xp = grads[0]._xp
    dtype = grads[0].dtype
    if math.isinf(norm_type):
        total = max(float(xp.abs(g.array).max()) if g.array.size else 0.0 for g in grads)
    else:
        total = sum(float((xp.abs(g.array.astype("float64")) ** norm_type).sum())
                    for g in grads) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the "
                           f"gradients is non-finite ({total}); set error_if_nonfinite=False to "
                           f"clip anyway")
    coef = float(max_norm) / (total + 1e-6)
    if not coef >= 1.0:  # NaN too: a NaN norm makes NaN gradients, as in PyTorch
        for p in parameters:
            if p.grad is not None:  # a new array: gradients may share memory with others
                p.grad = Tensor._wrap((p.grad.array * coef).astype(p.grad.dtype, copy=False))
    return Tensor._wrap(xp.asarray(total, dtype=dtype))


def zero_grads_(parameters, set_to_none: bool = True) -> None:
    """Drop each parameter's gradient, or replace it with zeros when ``set_to_none=False``
    (shared by ``Module.zero_grad`` and ``Optimizer.zero_grad``)."""
    for p in parameters:
        if p.grad is None:
            continue
        if set_to_none:
            p.grad = None
        else:
            p.grad = Tensor._wrap(p._xp.zeros_like(p.grad.array))
