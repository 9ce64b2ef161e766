"""Normalization layers without running statistics: ``GroupNorm`` and ``LayerNorm``."""
from __future__ import annotations

import numbers

from .. import functional as F
from ..tensor import empty
from . import init
from .module import Module, Parameter

__all__ = ["GroupNorm", "LayerNorm"]


class GroupNorm(Module):
    """Group normalization (Wu & He 2018): the C channels in ``num_groups`` groups, each group of
    each sample normalized to zero mean and unit variance, then a per-channel affine map (weight
    1, bias 0 at the start). Independent of the batch size, so the same in training and
    evaluation -- the norm of diffusion U-Nets."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 device=None, dtype=None):
        super().__init__()
        if num_groups <= 0 or num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels={num_channels} must be divisible by "
                             f"num_groups={num_groups}")
        self.num_groups, self.num_channels, self.eps, self.affine = \
            num_groups, num_channels, eps, affine
        self.register_parameter("weight", Parameter(empty(num_channels, dtype=dtype,
                                                          device=device)) if affine else None)
        self.register_parameter("bias", Parameter(empty(num_channels, dtype=dtype,
                                                        device=device)) if affine else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """weight 1, bias 0."""
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def forward(self, input):
        if input.ndim < 2 or input.shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm({self.num_groups}, {self.num_channels}): input of shape "
                             f"{tuple(input.shape)} must be (N, {self.num_channels}, ...)")
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class LayerNorm(Module):
    """Layer normalization (Ba et al. 2016) over the trailing ``normalized_shape`` axes, with an
    elementwise affine map of that shape (weight 1, bias 0 at the start)."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        self.register_parameter("weight", Parameter(empty(*self.normalized_shape, dtype=dtype,
                                                          device=device))
                                if elementwise_affine else None)
        self.register_parameter("bias", Parameter(empty(*self.normalized_shape, dtype=dtype,
                                                        device=device))
                                if elementwise_affine and bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """weight 1, bias 0."""
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input):
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")
