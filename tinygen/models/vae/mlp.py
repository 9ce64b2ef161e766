"""The MLP VAE family: ``vae`` (Shan's lecture on variational autoencoders: Kingma & Welling's
MNIST model), ``toy-vae`` (Fleuret's 2-D VAE on two moons) and ``cvae`` (Sohn et al. 2015).

    encoder  x (784) -> ReLU(W1 x + b1) (h) -> mu (d), logvar (d)
    decoder  z (d)   -> ReLU(W3 z + b3) (h) -> logits (784)             [Bernoulli]
                                          -> mean, logvar (784 each)  [Gaussian]

Training options of the family: KL warm-up (Sønderby et al. 2016), the IWAE bound with k > 1
samples (Burda et al. 2015) and random-shift augmentation.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ... import functional as F
from ... import nn
from ...autograd import no_grad
from ...data import Dataset, dynamic_binarize, load_toy_data, random_shift
from ...distributions import Bernoulli, Family, Normal
from ...tensor import zeros
from ..registry import register
from .base import PIXELS, VAE, VAEConfigBase, bounded, mlp

__all__ = ["MLPVAEConfigBase", "VAEConfig", "ToyVAEConfig", "CVAEConfig", "MLPVAE", "ToyVAE",
           "ConditionalVAE", "LIKELIHOODS"]

LIKELIHOODS = {"bernoulli": Bernoulli, "gaussian": Normal}


@dataclass
class MLPVAEConfigBase(VAEConfigBase):
    hidden: int = 400               # width of the hidden layers of encoder and decoder
    depth: int = 1                  # hidden layers in the encoder (the decoder mirrors it)
    likelihood: str = "bernoulli"   # bernoulli (dynamic binarization) | gaussian (learned var)
    warmup_epochs: int = 0          # KL weight ramps linearly 0 -> beta over these epochs
    train_samples: int = 1          # k of the training bound: 1 = the ELBO, > 1 = the IWAE bound
    shift: int = 0                  # training augmentation: random translations of <= shift px

    def validate(self):
        super().validate()
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got "
                             f"{self.likelihood!r}")
        if self.hidden < 1 or self.depth < 1:
            raise ValueError(f"hidden and depth must be >= 1, got {self.hidden} and {self.depth}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.train_samples < 1 or self.shift < 0:
            raise ValueError(f"train_samples must be >= 1 and shift >= 0, got "
                             f"{self.train_samples} and {self.shift}")


@dataclass
class VAEConfig(MLPVAEConfigBase):
    latent_dim: int = 20            # d, dimension of z
    iw_samples: int = 5000          # k of the importance-weighted log p(x) estimate (0: off)


@register
class MLPVAE(VAE):
    """The MLP VAE (see the module docstring)."""
    model_name = "vae"
    description = ("MLP VAE (784-400-20), Bernoulli or Gaussian decoder, ELBO + "
                   "importance-weighted NLL")
    Config = VAEConfig

    def __init__(self, config=None):
        super().__init__(config or self.Config())
        c = self.config
        self.latent_dim = c.latent_dim
        self.likelihood = Family(LIKELIHOODS[c.likelihood])
        self.dim_x = self.data_dim()
        hidden = [c.hidden] * c.depth
        self.encoder = mlp([self.dim_x + self.cond_dim()] + hidden, final_activation=True)
        self.fc_mu = nn.Linear(c.hidden, c.latent_dim)
        self.fc_logvar = nn.Linear(c.hidden, c.latent_dim)
        self.decoder = mlp([c.latent_dim + self.cond_dim()] + hidden
                           + [self.dim_x * self.likelihood.n_params])
        # images trained on so far (drives the KL warm-up; a buffer, so --resume continues it)
        self.register_buffer("images_seen", zeros((), dtype=np.float64))
        self._train_size = 0

    def data_dim(self):
        return PIXELS

    def cond_dim(self):
        return 0

    def _bounded(self, logvar):
        return bounded(logvar, self.config.logvar_min, self.config.logvar_max)

    def encode(self, x, y=None):
        h = self.encoder(x.reshape(x.shape[0], self.dim_x))        # (N, 1, 28, 28) -> (N, 784)
        return self.fc_mu(h), self._bounded(self.fc_logvar(h))

    def decode(self, z, y=None):
        out = self.decoder(z)                                       # (N, 784 * n_params)
        if self.likelihood.n_params == 1:
            return (out,)
        mean, logvar = out.split(self.dim_x, dim=1)
        return mean, self._bounded(logvar)

    # -- training --------------------------------------------------------------------------
    def prepare(self, x, rng):
        """Shifted (``shift`` > 0) and, for Bernoulli models, freshly binarized pixels (dynamic
        binarization), drawn from the trainer's generator."""
        x = np.asarray(x, np.float32)
        if self.config.shift:                         # augmentation: random translations
            x = random_shift(x, self.config.shift, rng)
        return dynamic_binarize(x, rng) if self.likelihood.discrete else x

    def phases(self, data):
        self._train_size = len(data.train)
        return super().phases(data)

    def kl_weight(self) -> float:
        """beta, ramped up linearly from 0 over the first ``warmup_epochs`` epochs of training
        (KL warm-up, Sønderby et al. 2016): beta_t = beta * min(1, images seen / (T * N))."""
        beta, warm = self.config.beta, self.config.warmup_epochs
        if not warm or not self._train_size:
            return beta
        return beta * min(1.0, float(self.images_seen.item()) / (warm * self._train_size))

    def training_loss(self, batch, rng):
        """The ELBO loss of the base class, or with ``train_samples`` = k > 1 minus the IWAE
        bound (the KL warm-up does not apply to it)."""
        with no_grad():
            self.images_seen.add_(float(len(batch[0])))
        k = self.config.train_samples
        if k > 1:
            y = batch[1] if self.conditional else None
            bound = self.iwae_bound(batch[0], y, k, rng).mean()
            return -bound, {"iwae_nats": float(bound)}
        return super().training_loss(batch, rng)



# ---------------------------------------------------------------------------------------------
@dataclass
class ToyVAEConfig(MLPVAEConfigBase):
    dataset: str = "moons"          # toy 2-D set (moons | rings | 8gaussians | checkerboard)
    n_points: int = 250             # training points (the lecture: nb = 250)
    latent_dim: int = 2             # dim_z
    hidden: int = 100               # dim_hidden
    likelihood: str = "gaussian"    # the lecture's log_g_x_given_z: learned mean and variance

    def validate(self):
        super().validate()
        if self.shift:
            raise ValueError(f"shift translates images; toy-vae trains on 2-D points, got "
                             f"shift={self.shift}")


@register
class ToyVAE(MLPVAE):
    """Fleuret's 2-D VAE: dim_x = dim_z = 2, one hidden layer of 100 units in f and g, g
    giving the mean and log-variance of a Gaussian p(x | z); the points are standardized
    ((x - mean) / std of the training set) as in the lecture. Samples are x = mu_g + sigma_g u,
    u ~ N(0, I), z ~ N(0, I) -- the lecture's ``toy-vae-synth.dat``."""
    model_name = "toy-vae"
    description = "the lecture's 2-D VAE on two moons (Gaussian decoder with learned variance)"
    Config = ToyVAEConfig
    train_defaults = {"epochs": 500, "lr": 1e-2, "batch_size": 10}
    scored_samples = 0                 # 2-D points, not images

    def data_dim(self):
        return 2

    def load_data(self, data_dir=None, val_fraction=0.1, seed=0):
        """The toy set with ``n_points`` training points (and a held-out sample of the same
        size), standardized with the training points' mean and std."""
        if data_dir:
            raise ValueError(f"toy-vae trains on generated 2-D data; --data {data_dir!r} is not "
                             f"used (choose the set with --dataset)")
        data, desc = load_toy_data(self.config.dataset, n_train=self.config.n_points,
                                   n_test=max(self.config.n_points, 1000),
                                   val_fraction=val_fraction, seed=seed)
        mean, std = data.train.images.mean(axis=0), data.train.images.std(axis=0)
        for name in ("train", "val", "test"):
            ds = getattr(data, name)
            if ds is not None:
                setattr(data, name, Dataset(((ds.images - mean) / std).astype(np.float32),
                                            ds.labels, ds.name))
        desc["standardized"] = {"mean": mean.tolist(), "std": std.tolist()}
        return data, desc

    def sample(self, n, rng, labels=None):
        """Points x = mu_g(z) + sigma_g(z) u with z, u ~ N(0, I): float32 (n, 2)."""
        z = rng.standard_normal((n, self.latent_dim))
        with no_grad():
            mean, logvar = (t.cpu().numpy() for t in self.decode(self.as_tensor(z)))
        return (mean + np.exp(0.5 * logvar) * rng.standard_normal(mean.shape)).astype(np.float32)

    def save_samples(self, n, rng, path, reference=None):
        from ... import plots as img
        if reference is None:
            reference = self.load_data(None)[0].train.images
        return img.plot_scatter_2d(self.sample(n, rng), path, reference=reference,
                                   title=f"toy-vae: {n} synthesized points over the data")

    def pictures(self, out_dir, dataset, rng):
        from ... import plots as img

        x = dataset.images
        paths = [self.save_samples(max(250, len(x)), rng, os.path.join(out_dir, "samples.png"),
                                   reference=x)]
        mu, _ = self.posterior_means(x)
        paths.append(img.plot_scatter_2d(mu[:, :2], os.path.join(out_dir, "latent.png"),
                                         title="posterior means of the held-out points"))
        return paths


# ---------------------------------------------------------------------------------------------
@dataclass
class CVAEConfig(MLPVAEConfigBase):
    latent_dim: int = 2             # d (2: class-consistent samples, the lecture's style grid)
    classifier: str = ""            # scoring classifier ("": the shipped one; "none"; a path)


@register
class ConditionalVAE(MLPVAE):
    """Conditional VAE (Sohn et al. 2015): both networks see the label y as a one-hot vector,
    q(z | x, y) and p(x | z, y), with the prior p(z) = N(0, I); the bound is

        log p(x | y) >= E_{q(z|x,y)} [ log p(x | z, y) ] - D_KL( q(z | x, y) || p(z) ).

    Class-conditional samples: fix y, draw z ~ N(0, I). Evaluation reports ``cond_accuracy``:
    the share of 1,000 samples (100 per digit) that the scoring classifier (the shipped one,
    the checkpoint ``classifier`` names, or none with ``none``) assigns to their conditioning
    label.
    """
    model_name = "cvae"
    description = "conditional VAE (Sohn et al.): encoder and decoder conditioned on the label"
    Config = CVAEConfig
    conditional = True
    n_classes = 10

    def cond_dim(self):
        return self.n_classes

    def one_hot(self, y):
        """Integer labels (N,) -> float one-hot (N, 10) of the model's dtype."""
        return F.one_hot(y.long(), self.n_classes).to(self.fc_mu.weight.dtype)

    def encode(self, x, y=None):
        if y is None:
            raise ValueError("cvae: encode needs the labels y")
        xy = F.cat([x.reshape(x.shape[0], self.dim_x), self.one_hot(y)], dim=1)  # (N, 784 + 10)
        h = self.encoder(xy)
        return self.fc_mu(h), self._bounded(self.fc_logvar(h))

    def decode(self, z, y=None):
        if y is None:
            raise ValueError("cvae: decode needs the labels y")
        return super().decode(F.cat([z, self.one_hot(y)], dim=1))           # (N, d + 10)

    def extra_evaluation(self, dataset, x):
        from ..scoring import classify

        clf = self.scoring_classifier()
        if clf is None:
            return {}
        labels = np.repeat(np.arange(self.n_classes), 100)
        samples = self.sample(len(labels), np.random.default_rng(2024), labels=labels)
        return {"cond_accuracy": float(np.mean(classify(clf, samples) == labels))}
