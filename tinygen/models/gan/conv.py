"""``dcgan`` (Radford et al. 2015) and ``cgan`` (a class-conditional DCGAN with a projection
discriminator and an AC-GAN auxiliary classifier), sized for 28x28 MNIST (see
:mod:`tinygen.models.gan` for the game and the losses)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ... import functional as F
from ... import nn
from ..registry import register
from .base import GAN, init_dcgan

__all__ = ["DCGANConfig", "DCGAN", "CGANConfig", "ConditionalDCGAN"]


@dataclass
class DCGANConfig:
    latent_dim: int = 64            # d, dimension of z ~ N(0, I)
    channels: int = 64              # C: G has 2C then C channels, D has C then 2C
    loss: str = "non-saturating"    # generator loss: non-saturating (-log D(G(z))) or minimax
    d_steps: int = 1                # k, discriminator steps per generator step
    real_label: float = 1.0         # D's target for real images (0.9: one-sided smoothing)
    minibatch_std: bool = False     # D sees its batch's feature spread at 7x7 (Karras et al. 2018)
    classifier: str = ""            # scoring classifier ("": the shipped one; "none"; a path)
    eval_samples: int = 10000       # samples scored by evaluate()


def minibatch_std(h, eps=1e-8):
    """Karras et al.'s (2018) minibatch standard deviation: the spread of the batch's features,
    one number, appended to every sample as a constant channel,

        s = mean_{c,i,j} sqrt(Var_n[h_{n,c,i,j}] + eps),   out = cat([h, s * 1], dim=1),

    so that D can tell a batch of near-identical fakes (a collapsed G) from real digits, which
    vary, and G is pushed to cover more of the data. h: (N, C, H, W) -> (N, C+1, H, W)."""
    spread = (h.var(dim=0, correction=0) + eps).sqrt().mean()            # () over C, H, W
    n, _, height, width = h.shape
    return F.cat([h, spread.reshape(1, 1, 1, 1).expand(n, 1, height, width)], dim=1)


class _ConvGenerator(nn.Module):
    """Fractionally-strided convolutions from the latent (as a 1x1 image) up to 28x28:

        (d+c)x1x1  ConvT(d+c, 2C, 7)              -> 2Cx7x7,   BN, ReLU
        2Cx7x7     ConvT(2C, C, 4, stride 2, pad 1) -> Cx14x14,  BN, ReLU
        Cx14x14    ConvT(C, 1, 4, stride 2, pad 1)  -> 1x28x28,  tanh

    (a transposed conv maps W to (W - 1) s - 2p + k: 1 -> 7 -> 14 -> 28). ``c`` = 10 for the
    conditional generator (the one-hot label concatenated to z), else 0."""

    def __init__(self, d, ch, cond=0):
        super().__init__()
        self.in_dim = d + cond
        self.net = nn.Sequential(
            nn.ConvTranspose2d(d + cond, 2 * ch, 7, bias=False), nn.BatchNorm2d(2 * ch),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * ch, ch, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(ch), nn.ReLU(),
            nn.ConvTranspose2d(ch, 1, 4, stride=2, padding=1), nn.Tanh())

    def forward(self, z, y=None):
        h = z if y is None else F.cat([z, y], dim=1)                 # (N, d [+ 10])
        return self.net(h.reshape(h.shape[0], self.in_dim, 1, 1))    # -> (N, 1, 28, 28)


class _ConvDiscriminator(nn.Module):
    """Strided convolutions down to one logit:

        (1+c)x28x28 Conv(1+c, C, 4, stride 2, pad 1) -> Cx14x14,  LeakyReLU(0.2)
        Cx14x14     Conv(C, 2C, 4, stride 2, pad 1)  -> 2Cx7x7,   BN, LeakyReLU(0.2)
        2Cx7x7      Conv(2C, 1, 7)                  -> 1x1x1     (the logit)

    With ``mb_std`` the last conv also reads the :func:`minibatch_std` channel (2C+1 in).

    ``c`` = 10 for the conditional discriminator: the one-hot label as ten constant planes."""

    def __init__(self, ch, cond=0, mb_std=False):
        super().__init__()
        self.mb_std = mb_std
        self.net = nn.Sequential(
            nn.Conv2d(1 + cond, ch, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * ch),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * ch + int(mb_std), 1, 7))

    def forward(self, x, y=None):
        if y is not None:
            planes = y.reshape(y.shape[0], 10, 1, 1).expand(y.shape[0], 10, 28, 28)
            x = F.cat([x, planes], dim=1)                             # (N, 11, 28, 28)
        if not self.mb_std:
            return self.net(x).reshape(x.shape[0])                    # (N, 1, 1, 1) -> (N,)
        h = x
        for layer in self.net[:-1]:
            h = layer(h)                                              # -> (N, 2C, 7, 7)
        return self.net[-1](minibatch_std(h)).reshape(x.shape[0])     # (N, 2C+1, 7, 7) -> (N,)


@register
class DCGAN(GAN):
    """Radford et al.'s deep convolutional GAN, sized for 28x28 MNIST."""
    model_name = "dcgan"
    description = ("DCGAN: transposed-conv generator, strided-conv discriminator, BatchNorm, "
                   "LeakyReLU")
    Config = DCGANConfig

    def __init__(self, config=None):
        super().__init__(config or DCGANConfig())
        c = self.config
        if c.channels < 1:
            raise ValueError(f"channels must be >= 1, got {c.channels}")
        cond = 10 if self.conditional else 0
        self.generator = _ConvGenerator(c.latent_dim, c.channels, cond)
        self.discriminator = _ConvDiscriminator(c.channels, cond, c.minibatch_std)
        init_dcgan(self)


# ------------------------------------------------------------------------------------------------
@dataclass
class CGANConfig(DCGANConfig):
    projection: bool = True         # D(x, y) = psi(phi(x)) + <V y, phi(x)> (Miyato & Koyama
    #                                 2018); False: y as ten planes concatenated to the image
    aux_weight: float = 1.0         # weight of D's auxiliary classifier loss (AC-GAN, Odena et
    #                                 al. 2017) in L_D (real digits) and L_G (G(z, y) as y); 0: off


class _ProjectionDiscriminator(nn.Module):
    """The conditional discriminator with a projection (Miyato & Koyama 2018): features

        1x28x28  Conv(1, C, 4, stride 2, pad 1)  -> Cx14x14,  LeakyReLU(0.2)
        Cx14x14  Conv(C, 2C, 4, stride 2, pad 1) -> 2Cx7x7,   BN, LeakyReLU(0.2)
        flatten                                 -> phi(x) (N, 2C*49)

    and the logit  l(x, y) = psi^T phi(x) + b + (V y)^T phi(x)  with V (2C*49, 10) one
    embedding per digit: the label enters as an inner product with the image's features, not
    as extra input channels. ``aux`` adds a linear classifier of phi(x) (N, 10)."""

    def __init__(self, ch, aux):
        super().__init__()
        width = 2 * ch * 49
        self.features = nn.Sequential(
            nn.Conv2d(1, ch, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * ch),
            nn.LeakyReLU(0.2), nn.Flatten())                            # -> (N, 2C*49)
        self.psi = nn.Linear(width, 1)
        self.embed = nn.Linear(10, width, bias=False)                   # V y for one-hot y
        self.aux = nn.Linear(width, 10) if aux else None

    def both(self, x, y):
        phi = self.features(x)                                          # (N, 2C*49)
        logit = self.psi(phi).reshape(x.shape[0]) + (self.embed(y) * phi).sum(dim=1)   # (N,)
        return logit, (self.aux(phi) if self.aux is not None else None)

    def forward(self, x, y):
        return self.both(x, y)[0]


@register
class ConditionalDCGAN(DCGAN):
    """Class-conditional DCGAN: G(z, y), D(x, y) with y the one-hot digit; the game is

        min_G max_D  E_{(X, Y) ~ q} [log D(X, Y)] + E_{Z, Y} [log(1 - D(G(Z, Y), Y))].

    The discriminator sees y through a projection (default) or as input planes; with
    ``aux_weight`` > 0 it also has an auxiliary classifier c(x) trained on the real digits,
    and G is pushed to make c(G(z, y)) = y (AC-GAN's term):

        L_D += w * CE(c(x), y)     (real),         L_G += w * CE(c(G(z, y)), y).

    Samples and grids have the digit 0..9 in turn (a row per digit); ``label_accuracy`` is the
    share of samples the *independent* scoring classifier labels as their conditioning digit."""
    model_name = "cgan"
    description = ("class-conditional DCGAN (label into G; projection D, optional auxiliary "
                   "classifier), a row per digit")
    Config = CGANConfig
    conditional = True

    def __init__(self, config=None):
        config = config or CGANConfig()
        if config.aux_weight < 0:
            raise ValueError(f"aux_weight must be >= 0, got {config.aux_weight}")
        if config.projection and config.minibatch_std:
            raise ValueError("minibatch_std is a layer of the concatenating discriminator: use "
                             "it with --no-projection")
        super().__init__(config)
        if config.projection:
            self.discriminator = _ProjectionDiscriminator(config.channels,
                                                          aux=config.aux_weight > 0)
            init_dcgan(self.discriminator)
        elif config.aux_weight > 0:
            raise ValueError("aux_weight > 0 needs the projection discriminator (--projection)")

    def D_both(self, x, y=None):
        if self.config.projection:
            return self.discriminator.both(x, y)
        return super().D_both(x, y)

    def evaluate(self, dataset):
        """The DCGAN scores plus ``label_accuracy`` (with a classifier)."""
        out = super().evaluate(dataset)
        clf = self.scoring_classifier()
        if clf is not None:
            from ..scoring import classify
            n = self.config.eval_samples
            labels = np.arange(n) % 10
            got = classify(clf, self.sample(n, np.random.default_rng(4), labels=labels))
            out["label_accuracy"] = float(np.mean(got == labels))
        return out

    def fixed_sample_metrics(self, labels):
        """``label_accuracy``: the share of the fixed-latent samples (drawn for the digits 0..9
        in turn) that the scoring classifier labels as the digit asked."""
        return {"label_accuracy": float(np.mean(labels == np.arange(len(labels)) % 10))}

    def save_samples(self, n, rng, path):
        """A grid with a row per digit 0..9 and ceil(n / 10) samples in each."""
        per = -(-n // 10)
        return self.save_grid(self.sample(10 * per, rng), path)

    def save_grid(self, x, path):
        """x holds the digits 0..9 in turn: reorder (N, ...) into a row per digit."""
        from ... import plots as img
        per = len(x) // 10
        rows = x[:per * 10].reshape(per, 10, *x.shape[1:]).swapaxes(0, 1)   # (10, per, 1, 28, 28)
        return img.save_interpolations(rows, path, scale=2)
