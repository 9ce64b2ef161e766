"""Masked convolutions for autoregressive image models (PixelRNN / PixelCNN, van den Oord et al.
2016, section 3.4).

The pixels of an image are ordered row by row (raster order), and within a pixel the data
channels (R, G, B) in order. A conditional p(x_i | x_<i) may only see earlier positions, so the
kernel is multiplied by a fixed 0/1 mask before every use:

* taps below the center row and right of the center in the center row are zero;
* at the center tap, channels are split into ``data_channels`` contiguous groups (input and
  output alike); **mask A** (first layer, on the image itself) lets output group k see input
  groups < k only, **mask B** (every later layer) groups <= k.

With ``data_channels=1`` (binary or grayscale MNIST) mask A drops the center tap entirely and
mask B keeps it. Stacking one mask-A layer and any number of mask-B layers keeps the output at
(i, j) independent of pixel (i, j) and of every later pixel.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..tensor import tensor
from .conv import Conv2d

__all__ = ["MaskedConv2d", "conv_mask"]


def conv_mask(mask_type, out_channels, in_channels, kernel_size, data_channels=1):
    """The 0/1 mask (out_channels, in_channels, kh, kw) float32 of a masked convolution."""
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    kh, kw = kernel_size
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"masked convolutions need odd kernel sizes (a center tap), got "
                         f"kernel_size {tuple(kernel_size)}")
    if in_channels % data_channels or out_channels % data_channels:
        raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                         f"divisible by data_channels ({data_channels})")
    mask = np.ones((out_channels, in_channels, kh, kw), np.float32)
    ci, cj = kh // 2, kw // 2
    mask[:, :, ci + 1:, :] = 0.0                   # rows below the center
    mask[:, :, ci, cj + 1:] = 0.0                  # right of the center in its row
    group_out = np.arange(out_channels) // (out_channels // data_channels)     # (C_out,)
    group_in = np.arange(in_channels) // (in_channels // data_channels)        # (C_in,)
    allowed = group_in[None, :] < group_out[:, None] if mask_type == "A" else \
        group_in[None, :] <= group_out[:, None]
    mask[:, :, ci, cj] = allowed                   # the center tap, by channel group
    return mask


class MaskedConv2d(Conv2d):
    """``MaskedConv2d(mask_type, in_channels, out_channels, kernel_size, data_channels=1,
    bias=True)``: a stride-1 Conv2d whose weight is multiplied by :func:`conv_mask` in every
    forward, zero-padded so that the output has the input's height and width (odd kernels).
    The mask is a non-persistent buffer; the weight parameter keeps PyTorch's layout
    (C_out, C_in, kh, kw)."""

    def __init__(self, mask_type, in_channels, out_channels, kernel_size, data_channels=1,
                 bias=True, dtype=None):
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if len(ks) != 2 or any(not isinstance(k, (int, np.integer)) or k < 1 for k in ks):
            raise ValueError(f"MaskedConv2d: kernel_size must be a positive int or a pair, got "
                             f"{kernel_size!r}")
        mask = conv_mask(mask_type, out_channels, in_channels, ks, data_channels)
        super().__init__(in_channels, out_channels, ks, padding=(ks[0] // 2, ks[1] // 2),
                         bias=bias, dtype=dtype)
        self.mask_type, self.data_channels = mask_type, data_channels
        self.register_buffer("mask", tensor(mask.astype(self.weight.dtype)), persistent=False)

    def forward(self, input):
        return F.conv2d(input, self.weight * self.mask, self.bias, 1, self.padding)

    def extra_repr(self):
        return f"mask {self.mask_type}, " + super().extra_repr() + \
            (f", data_channels={self.data_channels}" if self.data_channels != 1 else "")
