"""``gan``: Goodfellow et al.'s GAN with MLP players, on MNIST or a 2-D toy set (see
:mod:`tinygen.models.gan` for the game and the losses)."""
from __future__ import annotations

from dataclasses import dataclass

from ... import functional as F
from ... import nn
from ..registry import register
from .base import GAN
from .space import IMAGE_SHAPE, space_for

__all__ = ["GANConfig", "MLPGAN"]


@dataclass
class GANConfig:
    dataset: str = "mnist"          # "mnist" or a 2-D toy set (moons, rings, 8gaussians, ...)
    latent_dim: int = 32            # d, dimension of z ~ N(0, I)
    hidden: int = 256               # width of the hidden layers of G and D
    loss: str = "non-saturating"    # generator loss: non-saturating (-log D(G(z))) or minimax
    d_steps: int = 1                # k, discriminator steps per generator step
    real_label: float = 1.0         # D's target for real images (0.9: one-sided smoothing)
    classifier: str = ""            # scoring classifier ("": the shipped one; "none"; a path)
    eval_samples: int = 10000       # samples scored by evaluate()


class _MLPGenerator(nn.Module):
    """z (N, d) -> h -> h -> out, LeakyReLU(0.2); tanh on images (N, 1, 28, 28), linear on
    points (N, 2)."""

    def __init__(self, d, h, out_dim, image):
        super().__init__()
        self.image = image
        self.net = nn.Sequential(nn.Linear(d, h), nn.LeakyReLU(0.2), nn.Linear(h, h),
                                 nn.LeakyReLU(0.2), nn.Linear(h, out_dim))

    def forward(self, z):
        out = self.net(z)
        if self.image:
            return F.tanh(out).reshape(z.shape[0], *IMAGE_SHAPE)   # (N, 784) -> (N, 1, 28, 28)
        return out


class _MLPDiscriminator(nn.Module):
    """x (N, 1, 28, 28) or (N, 2) -> h -> h -> 1 logit, LeakyReLU(0.2)."""

    def __init__(self, in_dim, h):
        super().__init__()
        self.in_dim = in_dim
        self.net = nn.Sequential(nn.Linear(in_dim, h), nn.LeakyReLU(0.2), nn.Linear(h, h),
                                 nn.LeakyReLU(0.2), nn.Linear(h, 1))

    def forward(self, x):
        return self.net(x.reshape(x.shape[0], self.in_dim)).reshape(x.shape[0])   # (N, 1) -> (N,)


@register
class MLPGAN(GAN):
    """Goodfellow et al.'s GAN with MLP players, on MNIST or a 2-D toy set."""
    model_name = "gan"
    description = ("GAN with MLP generator/discriminator (minimax or non-saturating loss, k D "
                   "steps), MNIST or 2-D toy sets")
    Config = GANConfig
    betas = (0.5, 0.999)

    def __init__(self, config=None):
        config = config or GANConfig()
        space = space_for(config.dataset)               # refuses an unknown dataset
        super().__init__(config)
        self.space = space
        c = self.config
        if c.hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {c.hidden}")
        self.generator = _MLPGenerator(c.latent_dim, c.hidden, self.space.dim,
                                       image=self.space.images)
        self.discriminator = _MLPDiscriminator(self.space.dim, c.hidden)

    def interpolate(self, z0, z1, steps=10, labels=None):
        if not self.space.images:
            raise ValueError("interpolation pictures are for the MNIST variant")
        return super().interpolate(z0, z1, steps, labels)
