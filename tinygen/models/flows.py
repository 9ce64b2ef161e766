"""Real NVP normalizing flows (Fleuret's lecture on autoencoders and generative models, "Non-Volume
Preserving
network"; Dinh et al. 2014, 2016).

A flow is an invertible f with a tractable Jacobian; with Z ~ N(0, I) the model density of X =
f^{-1}(Z) is the change of variables

    q(x) = q^Z(f(x)) |J_f(x)|,

and for a composition f = f^(K) o ... o f^(1), x^(0) = x, x^(k) = f^(k)(x^(k-1)), training
maximizes

    L(f) = sum_n ( -1/2 (||x_n^(K)||^2 + d log 2 pi) + sum_k log |J_f^(k)(x_n^(k-1))| ),

    log |J_f^(k)(x)| = sum_i ((1 - b^(k)) * s^(k)(x * b^(k)))_i                 (coupling layers)

Sampling: z ~ N(0, I), x = f^{-1}(z). The layers are in :mod:`tinygen.nn.flows`.

Models:

* ``nvp-toy``  the lecture's NVPNet on 2-D toy data: ``depth`` coupling layers, masks a random
               half of the dimensions for even layers and the complement for odd ones,
               one-hidden-layer tanh MLPs for s and t.
* ``realnvp``  the multi-scale convolutional flow of Dinh et al. 2016 on 28x28 MNIST:
               ``scales`` x (3 checkerboard couplings, squeeze, 3 channel couplings,
               factor-out), then 4 checkerboard couplings; residual conv nets for s and t with
               a bounded scale s = scale * tanh(.); dequantization + logit preprocessing.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from .. import functional as F
from .. import nn
from ..autograd import no_grad
from ..nn.flows import (AffineCoupling, CouplingResNet, DequantizeLogit, FactorOut, Squeeze,
                        channel_mask, checkerboard_mask, half_mask)
from .phases import Phase, warmup_cosine
from .base import GenerativeModel, register

LOG_2PI = math.log(2.0 * math.pi)


def standard_normal_logpdf(z):
    """log N(z; 0, I) per sample: -1/2 (||z||^2 + d log 2 pi), z (N, d) -> (N,)."""
    return -0.5 * ((z * z).sum(dim=1) + z.shape[1] * LOG_2PI)


class _FlowModel(GenerativeModel):
    """One maximum-likelihood training phase (``training_loss``), validated on ``evaluate``."""

    def training_loss(self, batch, rng):  # pragma: no cover - abstract
        raise NotImplementedError

    def phase_options(self) -> dict:
        """Extra :class:`Phase` arguments (clipping, learning-rate schedule); none by default."""
        return {}

    def phases(self, data):
        return [Phase("train", self.parameters, self.training_loss,
                      evaluate=(lambda: self.evaluate(data.val)) if data.val is not None else None,
                      select=self.select, **self.phase_options())]


# ================================================================================================
# nvp-toy: the lecture's NVPNet
# ================================================================================================
class NVPNet(nn.Module):
    """``depth`` affine couplings on R^dim (the lecture's NVPNet): layer d uses a random half
    mask b when d is even and 1 - b (the previous mask's complement) when d is odd; s and t are
    Linear(dim, hidden) - Tanh - Linear(hidden, dim)."""

    def __init__(self, dim: int, hidden: int, depth: int, rng: np.random.Generator):
        super().__init__()
        if dim < 2 or hidden < 1 or depth < 1:
            raise ValueError(f"NVPNet: need dim >= 2, hidden >= 1, depth >= 1, got {dim}, "
                             f"{hidden}, {depth}")
        self.dim = dim
        layers, b = [], None
        for d in range(depth):
            b = half_mask(dim, rng) if d % 2 == 0 else 1.0 - b   # tag half the dimensions
            s_net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, dim))
            t_net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, dim))
            layers.append(AffineCoupling(b, s_net, t_net))
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        """(f(x), log |J_f(x)|): x (N, dim) -> z (N, dim), logdet (N,)."""
        logdet = 0.0
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z):
        """f^{-1}(z), the layers inverted in reverse order."""
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        return z

    def log_prob(self, x):
        """log q(x) = log N(f(x); 0, I) + log |J_f(x)|, (N,)."""
        z, logdet = self(x)
        return standard_normal_logpdf(z) + logdet


@dataclass
class NVPToyConfig:
    dataset: str = "moons"   # 2-D toy set: moons, rings, 8gaussians, checkerboard
    hidden: int = 128        # hidden units of each one-hidden-layer tanh MLP (s and t)
    depth: int = 8           # number of coupling layers
    mask_seed: int = 0       # seed of the random half masks


@register
class NVPToy(_FlowModel):
    """The lecture's NVPNet trained by maximum likelihood on a 2-D toy set."""
    model_name = "nvp-toy"
    description = "Real NVP (the lecture's NVPNet: random half masks, tanh MLPs) on 2-D toy data"
    Config = NVPToyConfig
    select = "nll_nats"
    train_defaults = {"epochs": 400, "lr": 2e-3, "batch_size": 100}
    eval_batch_size = 5000

    def __init__(self, config=None):
        super().__init__(config or NVPToyConfig())
        from ..data import TOY_DATASETS
        if self.config.dataset not in TOY_DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(sorted(TOY_DATASETS))}, got "
                             f"{self.config.dataset!r}")
        self.flow = NVPNet(2, self.config.hidden, self.config.depth,
                           np.random.default_rng(self.config.mask_seed))

    def load_data(self, data_dir=None, val_fraction=0.1, seed=0):
        """The generated toy set (``config.dataset``); ``data_dir`` is not used."""
        from ..data import load_toy_data
        return load_toy_data(self.config.dataset, val_fraction=val_fraction, seed=seed)

    def forward(self, x):
        return self.flow(x)

    def log_prob(self, x):
        """log q(x) (N,) for points x (N, 2) (a Tensor)."""
        return self.flow.log_prob(x)

    def training_loss(self, batch, rng):
        nll = -self.log_prob(batch[0]).mean()       # - L(f) / N
        return nll, {}

    def log_density(self, points) -> np.ndarray:
        """log q(x) as float64 NumPy (K,) for an array of points (K, 2), without gradients."""
        parts = [lp.cpu().numpy().astype(np.float64) for lp, _ in
                 self.batched(lambda p: self.log_prob(self.as_tensor(p)), np.asarray(points))]
        return np.concatenate(parts)

    def evaluate(self, dataset):
        """``nll_nats``: mean -log q(x) over the set (exact, a continuous density on R^2)."""
        return {"nll_nats": float(-self.log_density(dataset.images).mean())}

    def latent(self, points) -> np.ndarray:
        """f(x) (N, 2) for points (N, 2)."""
        return np.concatenate([z.cpu().numpy() for (z, _), _ in
                               self.batched(lambda p: self.flow(self.as_tensor(p)),
                                            np.asarray(points))])

    def sample(self, n, rng):
        """x = f^{-1}(z), z ~ N(0, I): points (n, 2)."""
        z = rng.standard_normal((n, 2))
        with no_grad():
            return self.flow.inverse(self.as_tensor(z)).cpu().numpy()

    def save_samples(self, n, rng, path):
        """A scatter plot of ``n`` samples."""
        from .. import plots as images
        return images.plot_scatter_2d(self.sample(n, rng), path,
                                      title=f"nvp-toy samples ({self.config.dataset})")

    def pictures(self, out_dir, dataset, rng):
        """density.png (heat map of q), samples.png (samples over the data), latent.png (the
        data pushed to the latent space, over N(0, I) draws)."""
        from .. import plots as images
        x = dataset.images
        lo, hi = x.min(axis=0), x.max(axis=0)
        pad = 0.25 * (hi - lo)
        bounds = (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])
        return [
            images.plot_density_2d(self.log_density, os.path.join(out_dir, "density.png"),
                                   bounds=bounds, title=f"learned density q(x), "
                                                        f"{self.config.dataset}"),
            images.plot_scatter_2d(self.sample(len(x), rng), os.path.join(out_dir, "samples.png"),
                                   reference=x, title="samples f^-1(z) (gray: data)"),
            images.plot_scatter_2d(self.latent(x), os.path.join(out_dir, "latent.png"),
                                   reference=rng.standard_normal((len(x), 2)),
                                   title="data pushed to latent space f(x) (gray: N(0, I))"),
        ]


# ================================================================================================
# realnvp: the multi-scale convolutional flow
# ================================================================================================
class MultiScaleFlow(nn.Module):
    """The multi-scale architecture of Dinh et al. 2016 for images (C, H, W):

        for each of ``scales`` stages:   ``checker`` checkerboard couplings   (C, H, W)
                                         squeeze                              -> (4C, H/2, W/2)
                                         ``channel`` channel couplings
                                         factor-out: 2C channels to the prior -> (2C, H/2, W/2)
        final stage:                     ``final`` checkerboard couplings, all to the prior

    Masks alternate (parity 0, 1, 0, ...) so that what one coupling keeps the next transforms.
    Every coupling has a :class:`CouplingResNet` (``width`` features, ``blocks`` residual
    blocks) and a bounded scale. ``forward(y) -> (z, logdet)`` with z (N, C*H*W): the
    factored-out parts in order, then the final output, each flattened.
    """

    def __init__(self, in_shape=(1, 28, 28), scales=2, width=32, blocks=1, checker=3, channel=3,
                 final=4):
        super().__init__()
        c, h, w = in_shape
        if h % (2 ** scales) or w % (2 ** scales):
            raise ValueError(f"MultiScaleFlow: height and width ({h}x{w}) must be divisible by "
                             f"2**scales = {2 ** scales}")
        if scales < 0 or min(checker, channel, final) < 0:
            raise ValueError("MultiScaleFlow: scales and the coupling counts must be >= 0")
        self.in_shape = (c, h, w)

        def coupling(mask, chans):
            return AffineCoupling(mask, CouplingResNet(chans, width, blocks), bounded_scale=True)

        self.stages = nn.ModuleList()
        self.out_shapes = []            # shape of each factored-out part, then of the last one
        for _ in range(scales):
            stage = nn.Module()
            stage.checker = nn.ModuleList([coupling(checkerboard_mask(h, w, k % 2), c)
                                           for k in range(checker)])
            stage.squeeze = Squeeze()
            c, h, w = 4 * c, h // 2, w // 2
            stage.channel = nn.ModuleList([coupling(channel_mask(c, k % 2), c)
                                           for k in range(channel)])
            stage.factor = FactorOut()
            c //= 2
            self.out_shapes.append((c, h, w))
            self.stages.append(stage)
        self.final = nn.ModuleList([coupling(checkerboard_mask(h, w, k % 2), c)
                                    for k in range(final)])
        self.out_shapes.append((c, h, w))

    def forward(self, x):
        """(z, log |J_f(x)|): images x (N, C, H, W) -> z (N, C*H*W), logdet (N,)."""
        n = x.shape[0]
        logdet, parts = 0.0, []
        for stage in self.stages:
            for layer in list(stage.checker) + [stage.squeeze] + list(stage.channel):
                x, ld = layer(x)
                logdet = logdet + ld
            x, z = stage.factor(x)
            parts.append(z.reshape(n, -1))                       # (N, C', H', W') -> (N, D')
        for layer in self.final:
            x, ld = layer(x)
            logdet = logdet + ld
        parts.append(x.reshape(n, -1))
        return F.cat(parts, dim=1), logdet

    def inverse(self, z):
        """f^{-1}(z): z (N, C*H*W) -> images (N, C, H, W)."""
        n = z.shape[0]
        sizes = [int(np.prod(s)) for s in self.out_shapes]
        if z.ndim != 2 or z.shape[1] != sum(sizes):
            raise ValueError(f"MultiScaleFlow.inverse: z must be (N, {sum(sizes)}), got "
                             f"{tuple(z.shape)}")
        offsets = np.cumsum([0] + sizes)
        pieces = [z[:, offsets[i]:offsets[i + 1]].reshape(n, *self.out_shapes[i])
                  for i in range(len(sizes))]                    # (N, D') -> (N, C', H', W')
        x = pieces[-1]
        for layer in reversed(self.final):
            x = layer.inverse(x)
        for stage, zk in zip(reversed(self.stages), reversed(pieces[:-1])):
            x = stage.factor.inverse(x, zk)
            for layer in reversed(list(stage.checker) + [stage.squeeze] + list(stage.channel)):
                x = layer.inverse(x)
        return x


@dataclass
class RealNVPConfig:
    width: int = 32            # features of every s/t residual net
    blocks: int = 0            # residual blocks per s/t net (0: conv-ReLU-conv, CPU-sized)
    scales: int = 2            # multi-scale stages (checker, squeeze, channel, factor-out)
    checker: int = 3           # checkerboard couplings per stage
    channel: int = 3           # channel couplings per stage (after the squeeze)
    final: int = 4             # checkerboard couplings of the last stage
    alpha: float = 0.05        # logit preprocessing: y = logit(alpha + (1 - 2 alpha) v)
    temperature: float = 0.7   # the second sample picture draws z ~ N(0, T^2 I)
    eval_seed: int = 1234      # seed of the dequantization noise used for evaluation
    clip_grad: float = 0.0     # gradient norm clipping (0: off)
    warmup_steps: int = 0      # linear learning-rate warm-up over the first steps
    cosine_lr: bool = False    # cosine decay of the learning rate to 10% at the last step


LEVELS = 256


@register
class RealNVP(_FlowModel):
    """The multi-scale Real NVP on dequantized MNIST (Dinh et al. 2016), with exact
    log-likelihood.

    For a discrete image k (D = 784 pixels, 256 levels) dequantized as v = (k + u) / 256 and
    mapped to y = logit(alpha + (1 - 2 alpha) v), z = f(y):

        log P(k) >= log N(z; 0, I) + log |J_f(y)| + log |dy/dv| - D log 256      (per image)
        nll_nats = -(that right-hand side), averaged over images (one u per image)
        bits_per_dim = nll_nats / (D log 2)

    (the bound is Jensen's, E_u log p_V(v) <= log P(k); the reported NLL is an upper bound of
    the discrete NLL up to the noise of one dequantization sample per image).
    """
    model_name = "realnvp"
    description = ("multi-scale Real NVP (checkerboard/channel couplings, squeeze, factor-out) "
                   "on MNIST, bits/dim")
    Config = RealNVPConfig
    select = "bits_per_dim"
    train_defaults = {"epochs": 18, "lr": 1e-3, "batch_size": 64}
    eval_batch_size = 250
    scored_samples = 10000

    def __init__(self, config=None):
        super().__init__(config or RealNVPConfig())
        cfg = self.config
        if not cfg.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {cfg.temperature}")
        if cfg.clip_grad < 0 or cfg.warmup_steps < 0:
            raise ValueError(f"clip_grad and warmup_steps must be >= 0, got {cfg.clip_grad}, "
                             f"{cfg.warmup_steps}")
        self.preprocess = DequantizeLogit(LEVELS, cfg.alpha)
        self.flow = MultiScaleFlow((1, 28, 28), cfg.scales, cfg.width, cfg.blocks, cfg.checker,
                                   cfg.channel, cfg.final)

    def phase_options(self) -> dict:
        cfg, options = self.config, {}
        if cfg.clip_grad > 0:
            options["clip_grad_norm"] = cfg.clip_grad
        if cfg.warmup_steps or cfg.cosine_lr:
            # cosine_lr off: the factor stays 1 after the warm-up (final factor 1)
            options["lr_schedule"] = warmup_cosine(cfg.warmup_steps, 0.1 if cfg.cosine_lr else 1.0)
        return options

    @property
    def dims(self) -> int:
        return int(np.prod(self.flow.in_shape))

    # -- likelihood ------------------------------------------------------------------------------
    def log_likelihood(self, x, u):
        """The dequantized log-likelihood bound of the class docstring, in nats, (N,), for pixel
        images x (N, 1, 28, 28) in [0, 1] and noise u of the same shape in [0, 1)."""
        y, ld_pre = self.preprocess(x, u)                # logit space, includes -D log 256
        z, ld_flow = self.flow(y)
        return standard_normal_logpdf(z) + ld_flow + ld_pre

    def training_loss(self, batch, rng):
        x = batch[0]
        u = rng.random(x.shape).astype(np.float32)        # fresh dequantization noise
        nll = -self.log_likelihood(x, u)
        bpd = nll.mean() / (self.dims * math.log(2.0))    # bits/dim of the batch
        return bpd, {}

    def evaluate(self, dataset):
        """``nll_nats`` (mean -log P per image, see the class docstring) and ``bits_per_dim``
        = nll_nats / (784 log 2), with one seeded dequantization sample per image."""
        rng = np.random.default_rng(self.config.eval_seed)
        u = rng.random(dataset.images.shape).astype(np.float32)
        total = 0.0
        for ll, _ in self.batched(lambda x, v: self.log_likelihood(self.as_tensor(x),
                                                                   self.as_tensor(v)),
                                  dataset.images, u):
            total += float(ll.cpu().numpy().astype(np.float64).sum())
        nll = -total / len(dataset.images)
        return {"nll_nats": nll, "bits_per_dim": nll / (self.dims * math.log(2.0))}

    # -- generation ------------------------------------------------------------------------------
    def decode(self, z) -> np.ndarray:
        """Pixels in [0, 1] (N, 1, 28, 28) of latent codes z (N, 784) (NumPy)."""
        with no_grad():
            y = self.flow.inverse(self.as_tensor(z))
            v = self.preprocess.inverse_continuous(y).cpu().numpy()
        return np.clip(v, 0.0, 1.0)

    def encode(self, images, seed=0) -> np.ndarray:
        """z = f(logit(dequantized x)) (N, 784) for pixel images, with seeded noise."""
        u = np.random.default_rng(seed).random(images.shape).astype(np.float32)
        parts = []
        for (z, _), _ in self.batched(
                lambda x, v: self.flow(self.preprocess(self.as_tensor(x), self.as_tensor(v))[0]),
                images, u):
            parts.append(z.cpu().numpy())
        return np.concatenate(parts)

    def sample(self, n, rng, temperature=1.0):
        """x = f^{-1}(z), z ~ N(0, T^2 I) (T = ``temperature``), as pixels (n, 1, 28, 28)."""
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        return self.decode(temperature * rng.standard_normal((n, self.dims)))

    def interpolate(self, x0, x1, steps=10) -> np.ndarray:
        """Images along the line (1 - a) f(x0) + a f(x1) in latent space, a in [0, 1]:
        x0, x1 (R, 1, 28, 28) -> (R, steps, 1, 28, 28)."""
        z0, z1 = self.encode(x0), self.encode(x1)                     # (R, D) each
        a = np.linspace(0.0, 1.0, steps)[None, :, None]                # (1, steps, 1)
        z = (1 - a) * z0[:, None] + a * z1[:, None]                    # (R, steps, D)
        x = self.decode(z.reshape(-1, self.dims))
        return x.reshape(len(x0), steps, *self.flow.in_shape)

    def pictures(self, out_dir, dataset, rng):
        """samples.png (T = 1), samples_t<T>.png (the config's temperature), interpolations.png."""
        from .. import plots as img
        t = self.config.temperature
        paths = [img.save_image_grid(self.sample(64, rng), os.path.join(out_dir, "samples.png"),
                                     nrow=8, scale=2),
                 img.save_image_grid(self.sample(64, rng, temperature=t),
                                     os.path.join(out_dir, f"samples_t{t:g}.png"), nrow=8,
                                     scale=2)]
        pick = rng.choice(len(dataset.images), size=(2, 8), replace=False)
        paths.append(img.save_interpolations(
            self.interpolate(dataset.images[pick[0]], dataset.images[pick[1]]),
            os.path.join(out_dir, "interpolations.png"), scale=2))
        return paths

    def save_samples(self, n, rng, path):
        """A PNG grid of ``n`` samples at the config's temperature."""
        from .. import plots as images
        return images.save_image_grid(self.sample(n, rng, temperature=self.config.temperature),
                                      path, nrow=int(np.ceil(np.sqrt(n))), scale=2)
