"""Normalizations: ``batch_norm`` (Ioffe & Szegedy 2015, with running statistics),
``layer_norm`` (Ba et al. 2016), ``group_norm`` (Wu & He 2018) and ``normalize`` (division by a
p-norm).

Written with differentiable ops (mean, biased variance, power), so their gradients of every
order come from the engine.
"""
from __future__ import annotations

import numbers

from ..autograd import no_grad
from ..tensor import Tensor
from ._util import check_tensor, normalize_dim
from .elementwise import abs, clamp
from .reduction import mean, sum, var

__all__ = ["batch_norm", "layer_norm", "group_norm", "normalize"]


def _standardize(x, axes, eps):
    """(x - mean) / sqrt(var + eps) over ``axes`` (biased variance, as every norm layer)."""
    mu = mean(x, axes, keepdim=True)
    v = var(x, axes, keepdim=True, correction=0)
    return (x - mu) * (v + eps) ** -0.5


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Normalize over the trailing ``normalized_shape`` axes of each sample, then scale by
    ``weight`` and shift by ``bias`` (both of shape ``normalized_shape``, optional)."""
    x = check_tensor(input, "input")
    if isinstance(normalized_shape, numbers.Integral):
        normalized_shape = (normalized_shape,)
    shape = tuple(int(s) for s in normalized_shape)
    k = len(shape)
    if k == 0 or x.ndim < k or tuple(x.shape[x.ndim - k:]) != shape:
        raise ValueError(f"layer_norm: normalized_shape {shape} must match the trailing axes of "
                         f"the input, got shape {tuple(x.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(check_tensor(t, name).shape) != shape:
            raise ValueError(f"layer_norm: {name} has shape {tuple(t.shape)}, expected {shape}")
    y = _standardize(x, tuple(range(x.ndim - k, x.ndim)), eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def group_norm(input, num_groups: int, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Split the C channels of an (N, C, ...) input into ``num_groups`` groups and normalize each
    group of each sample over its channels and positions; then a per-channel affine map
    (``weight``, ``bias`` of shape (C,), optional)."""
    x = check_tensor(input, "input")
    if x.ndim < 2:
        raise ValueError(f"group_norm: input must have shape (N, C, ...), got {tuple(x.shape)}")
    n, c = x.shape[:2]
    if num_groups <= 0 or c % num_groups:
        raise ValueError(f"group_norm: num_groups={num_groups} must divide the {c} channels of "
                         f"input shape {tuple(x.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(check_tensor(t, name).shape) != (c,):
            raise ValueError(f"group_norm: {name} has shape {tuple(t.shape)}, expected ({c},)")
    grouped = x.reshape(n, num_groups, -1)                 # (N, G, C/G * spatial)
    y = _standardize(grouped, (2,), eps).reshape(x.shape)
    bshape = (1, c) + (1,) * (x.ndim - 2)                  # per-channel broadcast
    if weight is not None:
        y = y * weight.reshape(bshape)
    if bias is not None:
        y = y + bias.reshape(bshape)
    return y


def normalize(input, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Tensor:
    """``input / max(||input||_p, eps)`` with the norm taken along ``dim``."""
    x = check_tensor(input, "input")
    d = normalize_dim(dim, max(x.ndim, 1))
    if p == 2:
        norm = sum(x * x, d, keepdim=True) ** 0.5
    elif p == 1:
        norm = sum(abs(x), d, keepdim=True)
    else:
        norm = sum(abs(x) ** p, d, keepdim=True) ** (1.0 / p)
    return x / clamp(norm, min=eps)


def batch_norm(x, running_mean=None, running_var=None, weight=None, bias=None,
               training=False, momentum=0.1, eps=1e-5) -> Tensor:
    """Batch normalization over all axes but the channel axis 1 (PyTorch's ``F.batch_norm``).

    y = (x - mean) / sqrt(var + eps) * weight + bias, with the batch's mean and biased variance in
    training (and the running statistics updated in place with the unbiased variance) or the
    running statistics in evaluation.
    """
    x = check_tensor(x, "input")
    if x.ndim < 2:
        raise ValueError(f"batch_norm: input must have shape (N, C, ...), got {tuple(x.shape)}")
    c = x.shape[1]
    axes = (0,) + tuple(range(2, x.ndim))
    bshape = (1, c) + (1,) * (x.ndim - 2)  # broadcast shape of per-channel vectors
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(f"batch_norm: {name} has shape {tuple(t.shape)}, expected ({c},) "
                             f"for input of shape {tuple(x.shape)}")
    if training or running_mean is None:
        n = x.array.size // c
        if training and n <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, "
                             f"got input of shape {tuple(x.shape)}")
        mu = mean(x, axes, keepdim=True)
        v = var(x, axes, keepdim=True, correction=0)
        if training and running_mean is not None:
            with no_grad():
                running_mean.array[...] = (1 - momentum) * running_mean.array + \
                    momentum * mu.array.reshape(c)
                running_var.array[...] = (1 - momentum) * running_var.array + \
                    momentum * v.array.reshape(c) * (n / (n - 1))
                running_mean._vbox[0] += 1
                running_var._vbox[0] += 1
    else:
        mu = running_mean.detach().reshape(bshape)
        v = running_var.detach().reshape(bshape)
    y = (x - mu) * (v + eps) ** -0.5
    if weight is not None:
        y = y * weight.reshape(bshape)
    if bias is not None:
        y = y + bias.reshape(bshape)
    return y
