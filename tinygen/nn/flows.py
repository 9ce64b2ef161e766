"""Building blocks of normalizing flows: the Real NVP layers (Dinh et al. 2016; lecture
Fleuret's lecture on autoencoders and generative models, "Non-Volume Preserving network").

Every layer f here is invertible and knows its log-Jacobian-determinant:

    forward(x) -> (y, logdet)   y = f(x), logdet = log |det J_f(x)|, one value per sample (N,)
    inverse(y) -> x             x = f^{-1}(y)

so that a composition f = f^(K) o ... o f^(1) has log |J_f(x)| = sum_k log |J_f^(k)(x^(k-1))|
and, with Z ~ N(0, I), log p(x) = log N(f(x); 0, I) + log |J_f(x)|.

* :class:`AffineCoupling`     c(x) = b x + (1 - b)(x exp(s(b x)) + t(b x)), log|J| = sum (1-b) s
* :func:`half_mask`           the lecture's random half of the dimensions (fully connected flows)
* :func:`checkerboard_mask`   b[i, j] = 1 where i + j is even (or odd), for (C, H, W) inputs
* :func:`channel_mask`        the first (or second) half of the channels
* :class:`Squeeze`            space to depth, (C, H, W) -> (4C, H/2, W/2); volume preserving
* :class:`FactorOut`          split off half the channels to the prior; volume preserving
* :class:`DequantizeLogit`    pixels -> uniform dequantization -> logit space, log-det counted
* :class:`CouplingResNet`     the residual convolutional s and t nets of the multi-scale flow
"""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..backend import get_array_module
from ..tensor import Tensor, ones, zeros
from . import init
from .conv import Conv2d
from .layers import ReLU, Sequential
from .module import Module, Parameter

__all__ = ["AffineCoupling", "half_mask", "checkerboard_mask", "channel_mask", "Squeeze",
           "FactorOut", "DequantizeLogit", "CouplingResNet", "squeeze2x2", "unsqueeze2x2"]


# -- masks ----------------------------------------------------------------------------------------
def half_mask(dim: int, rng: np.random.Generator) -> np.ndarray:
    """The lecture's NVPNet mask: b in {0, 1}^dim with dim // 2 ones at random places (float32)."""
    if dim < 2:
        raise ValueError(f"half_mask: dim must be >= 2, got {dim}")
    b = np.zeros(dim, np.float32)
    b[rng.permutation(dim)[:dim // 2]] = 1.0
    return b


def checkerboard_mask(height: int, width: int, parity: int = 0) -> np.ndarray:
    """Spatial checkerboard b (1, H, W): b[0, i, j] = 1 where (i + j + parity) is even."""
    if height < 1 or width < 1:
        raise ValueError(f"checkerboard_mask: height and width must be >= 1, got {height}x{width}")
    i, j = np.mgrid[0:height, 0:width]
    return ((i + j + parity) % 2 == 0).astype(np.float32)[None]


def channel_mask(channels: int, parity: int = 0) -> np.ndarray:
    """Channel-wise b (C, 1, 1): ones on the first half of the channels (parity 0) or on the
    second half (parity 1)."""
    if channels < 2 or channels % 2:
        raise ValueError(f"channel_mask: channels must be even and >= 2, got {channels}")
    b = np.zeros((channels, 1, 1), np.float32)
    half = channels // 2
    if parity % 2 == 0:
        b[:half] = 1.0
    else:
        b[half:] = 1.0
    return b


# -- the coupling layer ---------------------------------------------------------------------------
class AffineCoupling(Module):
    """The affine coupling layer

        c(x)   = b * x + (1 - b) * (x * exp(s(b * x)) + t(b * x))
        c^-1(y) = b * y + (1 - b) * (y - t(b * y)) * exp(-s(b * y))
        log |det J_c(x)| = sum_i ((1 - b) * s(b * x))_i

    (the Jacobian is triangular after putting the b = 1 coordinates first). The elementwise part
    is the fused op :func:`tinygen.functional.affine_coupling`.

    mask: the 0/1 array b, broadcastable to one sample (x.shape[1:]); kept as a buffer.
    s_net, t_net: Modules mapping b * x to x's shape. With ``t_net=None``, ``s_net`` outputs
    twice x's channels (dim 1), split into s then t (one net for both, as in Dinh et al.).
    bounded_scale: s = scale * tanh(s_raw) with a learned ``scale`` (initialized to 1) of shape
    (mask.shape[0], 1, ...): one value per entry of the mask's first axis -- per channel for a
    channel mask (C, 1, 1), a single value for a checkerboard (1, H, W), per coordinate for a
    vector mask (D,). It keeps |s| <= |scale|, so exp(s) stays bounded early in training (Dinh
    et al. 2016, sec. 4.1).
    """

    def __init__(self, mask, s_net, t_net=None, bounded_scale=False):
        super().__init__()
        mask = np.asarray(mask, dtype=np.float32)
        if not np.all((mask == 0) | (mask == 1)):
            raise ValueError(f"AffineCoupling: mask must hold only 0 and 1 (shape {mask.shape})")
        self.register_buffer("mask", Tensor._wrap(mask))
        self.s_net = s_net
        self.t_net = t_net
        self.bounded_scale = bool(bounded_scale)
        if self.bounded_scale:
            channels = mask.shape[0] if mask.ndim > 1 else mask.size
            self.scale = Parameter(ones(*((channels,) + (1,) * (mask.ndim - 1))))

    def _s_t(self, masked):
        if self.t_net is None:
            out = self.s_net(masked)
            c = masked.shape[1]
            if out.shape[1] != 2 * c:
                raise ValueError(f"AffineCoupling: s_net must output 2 x {c} channels (s and t) "
                                 f"when t_net is None, got shape {tuple(out.shape)}")
            s, t = out[:, :c], out[:, c:]
        else:
            s, t = self.s_net(masked), self.t_net(masked)
        if self.bounded_scale:
            s = self.scale * s.tanh()
        return s, t

    def _masked(self, x):
        b = self.mask if self.mask.dtype == x.dtype else self.mask.to(x.dtype)
        return b, x * b

    def forward(self, x):
        """(y, logdet) = (c(x), log |det J_c(x)|), logdet (N,)."""
        b, masked = self._masked(x)
        s, t = self._s_t(masked)
        return F.affine_coupling(x, s, t, b)

    def inverse(self, y):
        """x = c^-1(y); s and t see b * y = b * x, so they are those of the forward."""
        b, masked = self._masked(y)
        s, t = self._s_t(masked)
        return F.affine_coupling_inverse(y, s, t, b)

    def extra_repr(self):
        return f"mask={tuple(self.mask.shape)}, bounded_scale={self.bounded_scale}"


# -- reshaping layers -----------------------------------------------------------------------------
def _check_image(op, x):
    if x.ndim != 4:
        raise ValueError(f"{op}: expected images (N, C, H, W), got shape {tuple(x.shape)}")


def squeeze2x2(x):
    """Space to depth: (N, C, H, W) -> (N, 4C, H/2, W/2) with
    y[n, 4c + 2i + j, h, w] = x[n, c, 2h + i, 2w + j]."""
    _check_image("squeeze2x2", x)
    n, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"squeeze2x2: height and width must be even, got shape {tuple(x.shape)}")
    y = x.reshape(n, c, h // 2, 2, w // 2, 2)              # (N, C, H/2, i, W/2, j)
    y = y.permute(0, 1, 3, 5, 2, 4)                        # (N, C, i, j, H/2, W/2)
    return y.reshape(n, 4 * c, h // 2, w // 2)


def unsqueeze2x2(y):
    """Depth to space, the inverse of :func:`squeeze2x2`: (N, 4C, H, W) -> (N, C, 2H, 2W)."""
    _check_image("unsqueeze2x2", y)
    n, c4, h, w = y.shape
    if c4 % 4:
        raise ValueError(f"unsqueeze2x2: channels must be a multiple of 4, got shape "
                         f"{tuple(y.shape)}")
    x = y.reshape(n, c4 // 4, 2, 2, h, w)                  # (N, C, i, j, H, W)
    x = x.permute(0, 1, 4, 2, 5, 3)                        # (N, C, H, i, W, j)
    return x.reshape(n, c4 // 4, 2 * h, 2 * w)


class Squeeze(Module):
    """The squeezing layer: each 2x2 block of every channel becomes 4 channels (a permutation of
    the coordinates, so log |det J| = 0)."""

    def forward(self, x):
        return squeeze2x2(x), zeros(x.shape[0], dtype=x.dtype, device=x.device)

    def inverse(self, y):
        return unsqueeze2x2(y)


class FactorOut(Module):
    """Factoring out (Dinh et al. 2016, fig. 4b): the first half of the channels, z, goes
    straight to the Gaussian prior; the second half, h, is transformed further. A permutation
    (log |det J| = 0); ``forward(x) -> (h, z)``, ``inverse(h, z) -> x``."""

    def forward(self, x):
        if x.ndim < 2 or x.shape[1] < 2 or x.shape[1] % 2:
            raise ValueError(f"FactorOut: need an even number (>= 2) of channels on dim 1, got "
                             f"shape {tuple(x.shape)}")
        half = x.shape[1] // 2
        return x[:, half:], x[:, :half]

    def inverse(self, h, z):
        if h.shape != z.shape:
            raise ValueError(f"FactorOut.inverse: h and z must have one shape, got "
                             f"{tuple(h.shape)} and {tuple(z.shape)}")
        return F.cat([z, h], dim=1)


# -- preprocessing --------------------------------------------------------------------------------
class DequantizeLogit(Module):
    """Pixels on ``levels`` levels -> continuous data -> logit space (Dinh et al. 2016, sec. 4.1).

    Dequantization: a pixel x = k / (levels - 1) becomes v = (k + u) / levels, u ~ U[0, 1), so v
    has a density on [0, 1)^D and for the discrete image

        log P(k) >= E_u [ log p_V(v) ] - D log(levels)                  (Jensen)

    Logit: y = logit(p), p = alpha + (1 - 2 alpha) v, invertible with

        dy_i/dv_i = (1 - 2 alpha) / (p_i (1 - p_i)),
        log |det J| = sum_i [ log(1 - 2 alpha) - log p_i - log(1 - p_i) ].

    :meth:`forward` returns ``(y, logdet)`` where logdet is that sum *minus D log(levels)*, so
    that log p_Y(y) + logdet is the dequantized log-likelihood of the discrete pixels (per
    sample; see :func:`bits_per_dim`). :meth:`forward_continuous` / :meth:`inverse_continuous`
    are the bijection v <-> y alone; :meth:`inverse` maps y back to the pixel levels exactly.
    """

    def __init__(self, levels: int = 256, alpha: float = 0.05):
        super().__init__()
        if levels < 2:
            raise ValueError(f"DequantizeLogit: levels must be >= 2, got {levels}")
        if not 0.0 <= alpha < 0.5:
            raise ValueError(f"DequantizeLogit: alpha must be in [0, 0.5), got {alpha}")
        self.levels, self.alpha = int(levels), float(alpha)

    def dequantize(self, x, u):
        """v = (k + u) / levels with k = round(x (levels - 1)); x, u arrays or Tensors of one
        shape, u in [0, 1). Returns a Tensor of x's dtype (no gradient flows: pixels are data)."""
        xd = x.detach().array if isinstance(x, Tensor) else np.asarray(x)
        xp = get_array_module(xd)                   # on the device of x (u may come from the host)
        ud = xp.asarray(u.detach().array if isinstance(u, Tensor) else u)
        if xd.shape != ud.shape:
            raise ValueError(f"DequantizeLogit.dequantize: x and u must have one shape, got "
                             f"{xd.shape} and {ud.shape}")
        dtype = xd.dtype if xd.dtype.kind == "f" else np.dtype(np.float32)
        k = xp.round(xd.astype(np.float64) * (self.levels - 1))
        v = (k + ud) / self.levels
        # keep v strictly inside the bin [k, k + 1) / levels after rounding to the dtype
        v = xp.minimum(v.astype(dtype), xp.nextafter(((k + 1) / self.levels).astype(dtype),
                                                     xp.zeros((), dtype)))
        return Tensor._wrap(v)

    def quantize(self, v):
        """The pixel levels of dequantized data: floor(v levels) / (levels - 1), clipped."""
        vd = v.detach().cpu().numpy() if isinstance(v, Tensor) else np.asarray(v)
        k = np.clip(np.floor(vd.astype(np.float64) * self.levels), 0, self.levels - 1)
        return (k / (self.levels - 1)).astype(vd.dtype if vd.dtype.kind == "f" else np.float32)

    def forward_continuous(self, v):
        """(y, log |det dy/dv|) for v in (0, 1)^D; y = logit(alpha + (1 - 2 alpha) v)."""
        p = self.alpha + (1.0 - 2.0 * self.alpha) * v
        log_p, log_q = p.log(), (1.0 - p).log()
        y = log_p - log_q
        per = math.log(1.0 - 2.0 * self.alpha) - log_p - log_q
        return y, per.reshape(v.shape[0], -1).sum(dim=1)             # (N, D) -> (N,)

    def inverse_continuous(self, y):
        """v = (sigmoid(y) - alpha) / (1 - 2 alpha)."""
        return (y.sigmoid() - self.alpha) / (1.0 - 2.0 * self.alpha)

    def forward(self, x, u):
        """(y, logdet) from pixels x and dequantization noise u (see the class docstring);
        logdet includes -D log(levels)."""
        v = self.dequantize(x, u)
        y, logdet = self.forward_continuous(v)
        d = int(np.prod(v.shape[1:]))
        return y, logdet - d * math.log(self.levels)

    def inverse(self, y):
        """The pixel levels x (an array) of the logit-space point y (exact unless v lies
        within rounding error of a bin edge, where the logit round trip can cross it)."""
        return self.quantize(self.inverse_continuous(y))

    def extra_repr(self):
        return f"levels={self.levels}, alpha={self.alpha}"


# -- s and t nets of the convolutional flow -------------------------------------------------------
class _ResidualBlock(Module):
    """h + conv(relu(conv(relu(h)))), 3x3 convolutions keeping the width."""

    def __init__(self, width):
        super().__init__()
        self.conv1 = Conv2d(width, width, 3, padding=1)
        self.conv2 = Conv2d(width, width, 3, padding=1)

    def forward(self, h):
        return h + self.conv2(self.conv1(h.relu()).relu())


class CouplingResNet(Module):
    """The s and t mappings of a convolutional coupling (one net for both): a 3x3 conv from
    ``in_channels`` to ``width``, ``blocks`` residual blocks, ReLU and a 3x3 conv to
    ``2 * in_channels`` (s, then t). The last conv starts at zero, so every coupling starts as
    the identity (s = t = 0), which keeps the initial flow well conditioned."""

    def __init__(self, in_channels: int, width: int, blocks: int = 1):
        super().__init__()
        if in_channels < 1 or width < 1 or blocks < 0:
            raise ValueError(f"CouplingResNet: need in_channels >= 1, width >= 1, blocks >= 0, "
                             f"got {in_channels}, {width}, {blocks}")
        self.head = Conv2d(in_channels, width, 3, padding=1)
        self.body = Sequential(*[_ResidualBlock(width) for _ in range(blocks)])
        self.out = Conv2d(width, 2 * in_channels, 3, padding=1)
        init.zeros_(self.out.weight)
        init.zeros_(self.out.bias)
        self.act = ReLU()

    def forward(self, x):
        return self.out(self.act(self.body(self.head(x))))
