"""The convolutional VAEs: ``conv-vae`` (Fleuret's lecture on autoencoders and generative models:
the conv-ae layers, a fixed decoder variance, loss MSE + 0.5 KL) and ``vanilla-vae`` (the
``VanillaVAE`` of the lecture notes on autoencoders and VAEs: stride-2 convs + BatchNorm +
LeakyReLU, transposed convs with output_padding, Tanh output, KL weight)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ... import functional as F
from ... import nn
from ...distributions import Family, FixedNormal
from ..registry import register
from .base import PIXELS, VAE, VAEConfigBase, bounded

__all__ = ["ConvVAEConfig", "ConvVAE", "VanillaVAEConfig", "VanillaVAE"]


class _FixedDecoderVariance:
    """Config mixin check: the fixed std of p(x | z) must be positive."""

    def validate(self):
        super().validate()
        if not self.decoder_std > 0:
            raise ValueError(f"decoder_std must be > 0, got {self.decoder_std}")


@dataclass
class ConvVAEConfig(_FixedDecoderVariance, VAEConfigBase):
    latent_dim: int = 8             # d (the encoder's last conv has 2d channels: mu and logvar)
    channels: int = 32              # nb_channels of every hidden convolution (as conv-ae)
    kl_factor: float = 0.5          # the lecture's loss: mse + kl_factor * mean KL per dimension
    logvar_offset: float = math.log(0.01)   # the lecture adds log(0.01) to the encoder's logvar
    decoder_std: float = 0.1        # fixed std of p(x | z), used for the reported ELBO / NLL
    iw_samples: int = 0             # k of the importance-weighted NLL (0: off; k = 1,000 of a
    #                                 conv decoder on the 10,000 test digits: hours on a CPU)


@register
class ConvVAE(VAE):
    """Fleuret's convolutional VAE: the conv-ae encoder now ends in 2d channels (mu^f and
    log sigma^f^2), the decoder is the conv-ae decoder, the decoder variance is fixed, and the
    loss estimate of the autoencoder becomes (lecture, "For MNIST, we keep our convolutional
    structure...")::

        mu, logvar = split(encode(x)); logvar = logvar + log(0.01)
        kl = -0.5 (1 + logvar - mu^2 - exp(logvar))         mean over batch and dimensions
        loss = mse(decode(mu + sigma eps), x) + 0.5 kl

    At inference it does not sample: reconstructions use mu^f and mu^g. The ELBO and NLL it
    reports are those of the fixed-variance Gaussian p(x | z) = N(mu^g(z), decoder_std^2 I), as
    densities of the [0, 1] pixels (continuous nats, not comparable with binarized figures).
    """
    model_name = "conv-vae"
    description = ("the lecture's convolutional VAE (conv-ae layers, fixed decoder variance, "
                   "mse + 0.5 KL)")
    Config = ConvVAEConfig
    train_defaults = {"epochs": 25, "lr": 1e-3, "batch_size": 100}

    def __init__(self, config=None):
        super().__init__(config or ConvVAEConfig())
        from ..autoencoders import ConvAEConfig, ConvAutoencoder

        c = self.config
        self.latent_dim = c.latent_dim
        self.likelihood = Family(FixedNormal, std=c.decoder_std)
        ae = ConvAutoencoder(ConvAEConfig(latent_dim=2 * c.latent_dim, channels=c.channels))
        self.encoder = ae.encoder                  # ends in Conv2d(C, 2d, 4): (N, 2d, 1, 1)
        dec = ConvAutoencoder(ConvAEConfig(latent_dim=c.latent_dim, channels=c.channels))
        self.decoder = dec.decoder                 # from (N, d, 1, 1) back to (N, 1, 28, 28)

    def encode(self, x, y=None):
        param = self.encoder(x).reshape(x.shape[0], 2 * self.latent_dim)  # (N, 2d, 1, 1) -> (N, 2d)
        mu, logvar = param.split(self.latent_dim, dim=1)
        return mu, bounded(logvar + self.config.logvar_offset, self.config.logvar_min,
                           self.config.logvar_max)

    def decode(self, z, y=None):
        return (self.decoder(z.reshape(z.shape[0], self.latent_dim, 1, 1)),)

    def training_loss(self, batch, rng):
        x = batch[0]
        q = self.posterior(x)
        z = q.rsample(self.noise(q.mu.shape, rng, q.mu))
        mse = F.mse_loss(self.decode(z)[0], x)
        kl = F.kl_normal_standard(q.mu, q.logvar, reduction="mean") / self.latent_dim  # per dim
        loss = mse + self.config.kl_factor * kl
        return loss, {"mse": float(mse), "kl_per_dim": float(kl)}

    def extra_evaluation(self, dataset, x):
        """``mse`` of the mean prediction g(mu^f(x)) (no sampling), as the lecture does."""
        return {"mse": self.reconstruction_mse(dataset.images)}


# ---------------------------------------------------------------------------------------------
@dataclass
class VanillaVAEConfig(_FixedDecoderVariance, VAEConfigBase):
    latent_dim: int = 16            # d
    hidden_dims: str = "32,64,128"  # channels of the stride-2 conv blocks (28 -> 14 -> 7 -> 4)
    kl_weight: float = 0.00025      # the KL weight of the notes' loss: mse + kl_weight * KL
    decoder_std: float = 0.1        # fixed std of p(x | z) on the [-1, 1] scale (reported ELBO)
    iw_samples: int = 0             # k of the importance-weighted NLL (0: off; k = 1,000 of a
    #                                 conv decoder on the 10,000 test digits: hours on a CPU)

    def dims(self):
        """hidden_dims as a list of ints (a ValueError naming the option if malformed)."""
        try:
            dims = [int(v) for v in str(self.hidden_dims).split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"hidden_dims must be comma-separated integers, got "
                             f"{self.hidden_dims!r}") from None
        if len(dims) < 2 or min(dims) < 1:
            raise ValueError(f"hidden_dims needs at least two positive sizes, got "
                             f"{self.hidden_dims!r}")
        return dims

    def validate(self):
        super().validate()
        self.dims()


def _conv_sizes(size, blocks):
    """Spatial sizes through ``blocks`` convs of kernel 3, stride 2, padding 1."""
    sizes = [size]
    for _ in range(blocks):
        sizes.append((sizes[-1] + 2 - 3) // 2 + 1)
    return sizes


@register
class VanillaVAE(VAE):
    """The ``VanillaVAE`` of the lecture notes on autoencoders and VAEs, sized for 28x28 digits
    (pixels scaled to [-1, 1] for the Tanh output)::

        encoder: [Conv2d(k3, s2, p1) + BatchNorm2d + LeakyReLU] per hidden dim
                 (1x28x28 -> 32x14x14 -> 64x7x7 -> 128x4x4), flatten, fc_mu / fc_var
        decoder: Linear(d, 128*4*4), view, [ConvTranspose2d(k3, s2, p1, output_padding) + BN +
                 LeakyReLU] (4 -> 7 -> 14), final ConvTranspose2d to 28 + BN + LeakyReLU,
                 Conv2d(32, 1, k3, p1), Tanh
        loss     = mse(recons, x) + kl_weight * mean_batch(-0.5 sum_d(1 + logvar - mu^2 - e^logvar))

    ``output_padding`` is chosen per layer so that the decoder retraces the encoder's sizes
    exactly (the notes use 1 everywhere, which suits 64x64 inputs; for 28 the first is 0). The
    reported ELBO/NLL use p(x | z) = N(mu^g, decoder_std^2 I) on the [-1, 1] scale, converted to
    densities of the [0, 1] pixels (+ 784 log 2).
    """
    model_name = "vanilla-vae"
    description = ("the VanillaVAE of the lecture notes (stride-2 convs, BatchNorm, LeakyReLU, "
                   "Tanh output)")
    Config = VanillaVAEConfig
    train_defaults = {"epochs": 25, "lr": 1e-3, "batch_size": 100}

    def __init__(self, config=None):
        super().__init__(config or VanillaVAEConfig())
        c = self.config
        dims = c.dims()
        self.latent_dim = c.latent_dim
        self.likelihood = Family(FixedNormal, std=c.decoder_std)
        sizes = _conv_sizes(28, len(dims))                         # e.g. [28, 14, 7, 4]
        self.top = (dims[-1], sizes[-1], sizes[-1])
        blocks, cin = [], 1
        for h in dims:
            blocks += [nn.Conv2d(cin, h, kernel_size=3, stride=2, padding=1), nn.BatchNorm2d(h),
                       nn.LeakyReLU()]
            cin = h
        self.encoder = nn.Sequential(*blocks)
        flat = dims[-1] * sizes[-1] ** 2
        self.fc_mu = nn.Linear(flat, c.latent_dim)
        self.fc_var = nn.Linear(flat, c.latent_dim)
        self.decoder_input = nn.Linear(c.latent_dim, flat)
        rev, out_sizes = dims[::-1], sizes[::-1]                   # [128, 64, 32], [4, 7, 14, 28]
        blocks = []
        for i in range(len(rev)):
            cout = rev[i + 1] if i + 1 < len(rev) else rev[-1]
            op = out_sizes[i + 1] - ((out_sizes[i] - 1) * 2 - 2 + 3)   # output_padding
            blocks += [nn.ConvTranspose2d(rev[i], cout, kernel_size=3, stride=2, padding=1,
                                          output_padding=op), nn.BatchNorm2d(cout),
                       nn.LeakyReLU()]
        self.decoder = nn.Sequential(*blocks)
        self.final_layer = nn.Sequential(nn.Conv2d(rev[-1], 1, kernel_size=3, padding=1),
                                         nn.Tanh())

    def model_input(self, images):
        return (2.0 * np.asarray(images, np.float32) - 1.0).astype(np.float32)   # [0,1] -> [-1,1]

    def prepare(self, x, rng):
        return self.model_input(x)

    def to_image(self, x):
        return np.clip((x + 1.0) / 2.0, 0.0, 1.0)

    def log_det_to_pixels(self):
        return PIXELS * math.log(2.0)

    def encode(self, x, y=None):
        h = self.encoder(x).reshape(x.shape[0], -1)                # (N, C, s, s) -> (N, C*s*s)
        return self.fc_mu(h), bounded(self.fc_var(h), self.config.logvar_min,
                                      self.config.logvar_max)

    def decode(self, z, y=None):
        h = self.decoder_input(z).reshape((z.shape[0],) + self.top)   # (N, C*s*s) -> (N, C, s, s)
        return (self.final_layer(self.decoder(h)),)

    def training_loss(self, batch, rng):
        x = batch[0]                                  # already on the [-1, 1] scale (prepare)
        q = self.posterior(x)
        recons = self.decode(q.rsample(self.noise(q.mu.shape, rng, q.mu)))[0]
        mse = F.mse_loss(recons, x)
        kld = F.kl_normal_standard(q.mu, q.logvar, reduction="mean")
        return mse + self.config.kl_weight * kld, {"mse": float(mse), "kl_nats": float(kld)}

    def extra_evaluation(self, dataset, x):
        """``mse`` of the mean reconstruction in [0, 1] pixels."""
        return {"mse": self.reconstruction_mse(dataset.images)}
