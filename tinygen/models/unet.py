"""The noise-prediction network of the diffusion model: a small U-Net (Ronneberger et al. 2015)
in the form Ho et al. 2020 use for DDPM (itself after PixelCNN++ and the Wide ResNet):

* a sinusoidal embedding of the step t (as the Transformer's position encoding, Vaswani et
  al. 2017), through a two-layer MLP with SiLU, and optionally a learned embedding of the class
  label (index ``num_classes`` = "no label", for classifier-free guidance) added to it;
* residual blocks GroupNorm -> SiLU -> 3x3 conv -> + Linear(SiLU(embedding)) -> GroupNorm ->
  SiLU -> dropout -> 3x3 conv, plus the input (through a 1x1 conv when the width changes); the
  block's last conv starts at zero, so every block starts as the identity;
* a down path (blocks, then a stride-2 3x3 conv per level), a middle (block, self-attention,
  block), an up path (blocks reading the down path's activations concatenated on the channel
  axis -- the skip connections -- then nearest-neighbour upsampling and a 3x3 conv per level);
* optional single-head self-attention over the positions of the coarsest level (7 x 7 for
  MNIST), residual, its output projection starting at zero.

Shapes for 28 x 28 MNIST and ``channel_mults=(1, 2, 2)``: 28 x 28 x C -> 14 x 14 x 2C ->
7 x 7 x 2C -> back up; the output has the input's shape (the predicted noise).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import functional as F
from .. import nn
from ..tensor import empty, tensor

__all__ = ["UNetConfig", "UNet", "ResBlock", "AttentionBlock", "timestep_embedding"]


@dataclass
class UNetConfig:
    in_channels: int = 1               # image channels (the output has as many)
    base_channels: int = 32            # C: width of the first level
    channel_mults: tuple = (1, 2, 2)   # width of each level as a multiple of C (28, 14, 7 px)
    blocks_per_level: int = 1          # residual blocks per level on the way down
    attention: bool = True             # self-attention at the coarsest level and the middle
    groups: int = 8                    # GroupNorm groups (must divide every width)
    dropout: float = 0.0               # dropout inside the residual blocks (training only)
    num_classes: int = 0               # > 0: class-conditional, label num_classes = no label


def timestep_embedding(t, dim: int, device="cpu", dtype=np.float32, max_period=10000.0):
    """Sinusoidal embedding of integer steps ``t`` (N,) -> (N, dim): [sin(t w_k), cos(t w_k)]
    with frequencies w_k = max_period^(-k / (dim/2)), k = 0..dim/2-1."""
    if dim < 2 or dim % 2:
        raise ValueError(f"timestep_embedding: dim must be even and >= 2, got {dim}")
    half = dim // 2
    freqs = np.exp(-math.log(max_period) * np.arange(half) / half)           # (dim/2,)
    args = tensor((np.asarray(t, np.float64)[:, None] * freqs[None]).astype(dtype),
                  device=device)                                              # (N, dim/2)
    return F.cat([F.sin(args), F.cos(args)], dim=1)                            # (N, dim)


class ResBlock(nn.Module):
    """x (N, C_in, H, W), emb (N, E) -> (N, C_out, H, W) (see the module docstring)."""

    def __init__(self, in_channels, out_channels, emb_dim, groups, dropout=0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels \
            else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]                # per-channel shift
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.shortcut(x) + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the H W positions, residual: (N, C, H, W) -> same."""

    def __init__(self, channels, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        n, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(n, 3, c, h * w)            # (N, 3, C, HW)
        q, k, v = (qkv[:, i].permute(0, 2, 1) for i in range(3))        # each (N, HW, C)
        out = F.scaled_dot_product_attention(q, k, v)                  # (N, HW, C)
        return x + self.proj(out.permute(0, 2, 1).reshape(n, c, h, w))


class UNet(nn.Module):
    """eps_theta(x_t, t[, y]): x (N, C, H, W), t (N,) int steps, y (N,) int labels or None ->
    (N, C, H, W). H and W must be divisible by 2^(levels - 1)."""

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        c = self.config = config or UNetConfig()
        mults = tuple(int(m) for m in c.channel_mults)
        if not mults or min(mults) < 1 or c.base_channels < 1 or c.blocks_per_level < 1:
            raise ValueError(f"UNet: base_channels, blocks_per_level and channel_mults must be "
                             f"positive, got {c.base_channels}, {c.blocks_per_level}, {mults}")
        widths = [c.base_channels * m for m in mults]
        if any(w % c.groups for w in widths):
            raise ValueError(f"UNet: groups={c.groups} must divide every level width {widths}")
        base, emb_dim = c.base_channels, 4 * c.base_channels
        self.levels = len(mults)
        self.time_mlp = nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(),
                                      nn.Linear(emb_dim, emb_dim))
        if c.num_classes:
            self.label_emb = nn.Parameter(empty(c.num_classes + 1, emb_dim))   # (K + 1, E)
            nn.init.normal_(self.label_emb, 0.0, 1.0)
        self.conv_in = nn.Conv2d(c.in_channels, base, 3, padding=1)

        def block(cin, cout):
            return ResBlock(cin, cout, emb_dim, c.groups, c.dropout)

        last = self.levels - 1
        skips, ch = [base], base                 # channels of each saved activation
        self.down = nn.ModuleList()
        for level, width in enumerate(widths):
            for _ in range(c.blocks_per_level):
                self.down.append(block(ch, width))
                ch = width
                skips.append(ch)
            if level != last:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid1 = block(ch, ch)
        self.mid_attn = AttentionBlock(ch, c.groups) if c.attention else None
        self.mid2 = block(ch, ch)
        self.up = nn.ModuleList()
        for level in reversed(range(self.levels)):
            for _ in range(c.blocks_per_level + 1):
                self.up.append(block(ch + skips.pop(), widths[level]))
                ch = widths[level]
            if level != 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(ch, ch, 3, padding=1)))
        self.attn_coarse = AttentionBlock(widths[-1], c.groups) if c.attention else None
        self.norm_out = nn.GroupNorm(c.groups, ch)
        self.conv_out = nn.Conv2d(ch, c.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def embedding(self, t, y, device, dtype):
        """The step embedding (plus the label's): (N, 4C)."""
        emb = self.time_mlp(timestep_embedding(t, self.config.base_channels, device, dtype))
        if self.config.num_classes:
            if y is None:
                y = np.full(len(t), self.config.num_classes, np.int64)   # no label
            y = np.asarray(y, np.int64)
            if y.shape != (len(t),) or y.min() < 0 or y.max() > self.config.num_classes:
                raise ValueError(f"UNet: labels must be (N,) = ({len(t)},) ints in [0, "
                                 f"{self.config.num_classes}], got shape {y.shape}")
            emb = emb + self.label_emb[tensor(y, device=device)]
        elif y is not None:
            raise ValueError("UNet: labels given to an unconditional network (num_classes=0)")
        return emb

    def forward(self, x, t, y=None):
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.in_channels or \
                x.shape[2] % 2 ** (self.levels - 1) or x.shape[3] % 2 ** (self.levels - 1):
            raise ValueError(f"UNet: input must be (N, {c.in_channels}, H, W) with H and W "
                             f"divisible by {2 ** (self.levels - 1)}, got {tuple(x.shape)}")
        t = np.asarray(t)
        if t.shape != (x.shape[0],):
            raise ValueError(f"UNet: t must have shape ({x.shape[0]},), got {t.shape}")
        emb = self.embedding(t, y, x.device, x.dtype)
        h = self.conv_in(x)
        saved = [h]
        coarse = x.shape[2] // 2 ** (self.levels - 1)
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            if self.attn_coarse is not None and isinstance(layer, ResBlock) and \
                    h.shape[2] == coarse:
                h = self.attn_coarse(h)
            saved.append(h)
        h = self.mid1(h, emb)
        if self.mid_attn is not None:
            h = self.mid_attn(h)
        h = self.mid2(h, emb)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(F.cat([h, saved.pop()], dim=1), emb)
            else:
                h = layer(h)
        return self.conv_out(F.silu(self.norm_out(h)))
