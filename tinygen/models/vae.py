"""Variational autoencoders (Shan's lecture on variational autoencoders; the lecture notes on
autoencoders and VAEs (the VanillaVAE example);
the VAE part of Fleuret's lecture on autoencoders and generative models; Kingma & Welling 2013).

A VAE is a latent-variable model p(x, z) = p(z) p(x | z) with the prior p(z) = N(0, I) and a
decoder g giving the parameters of p(x | z), trained together with an encoder f giving the
parameters of the approximate posterior q(z | x) = N(mu^f(x), diag sigma^f(x)^2). The log-
likelihood is bounded below by the evidence lower bound (ELBO):

    log p(x) >= ELBO(x) = E_{z ~ q(z|x)} [ log p(x | z) ] - D_KL( q(z | x) || p(z) )

with, for the diagonal Gaussian q and the standard normal prior, the KL in closed form

    D_KL = -1/2 sum_d ( 1 + log sigma_d^2 - mu_d^2 - sigma_d^2 ).

The expectation is estimated with one sample through the reparameterization trick
z = mu + sigma * eps, eps ~ N(0, I), so the gradient flows through mu and sigma. Training
minimizes -E log p(x|z) + beta * KL (beta = 1 is the ELBO; the lecture's convolutional VAE uses
its own weights, see ``conv-vae``).

Evaluation reports the ELBO and the importance-weighted estimate (Burda et al. 2015)

    log p(x) ~= log (1/k) sum_{i=1..k} p(x | z_i) p(z_i) / q(z_i | x),   z_i ~ q(z | x),

a lower bound that tightens as k grows, computed with log-sum-exp in float64. Both are in nats
per image; ``nll_nats`` is minus the estimate (lower is better).

Models in this file:

* ``vae``          MLP VAE (784-400-20 by default), Bernoulli or learned-variance Gaussian decoder.
* ``toy-vae``      the lecture's 2-D VAE on two moons (Gaussian decoder with learned variance).
* ``conv-vae``     the lecture's convolutional VAE (conv-ae encoder to 2d outputs, fixed decoder
                   variance, loss MSE + 0.5 KL, mean predictions at inference).
* ``vanilla-vae``  the convolutional VAE of the lecture notes on autoencoders and VAEs (the
VanillaVAE example) (stride-2 convs + BatchNorm + LeakyReLU,
                   transposed convs with output_padding, Tanh output, KL weight).
* ``cvae``         conditional VAE (Sohn et al. 2015): q(z | x, y), p(x | z, y).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from .. import functional as F
from .. import nn
from ..autograd import no_grad
from ..data import dynamic_binarize, static_binarize
from ..tensor import from_numpy, zeros
from .phases import Phase
from .base import GenerativeModel, register
from .pca import PCA

IMAGE_SHAPE = (1, 28, 28)
PIXELS = 28 * 28
LOG_2PI = math.log(2.0 * math.pi)
EVAL_BINARIZE_SEED = 0        # the held-out set is binarized once with this seed


# ---------------------------------------------------------------------------------------------
# Likelihoods p(x | z): each maps the decoder's output (a tuple of Tensors) and the data x to
# log p(x | z) per sample, as a Tensor (training) or in float64 NumPy (evaluation).
def _sum_per_sample(t):
    return t.reshape(t.shape[0], -1).sum(dim=1)                     # (N, ...) -> (N,)


def _np_sum_per_sample(a):
    return a.reshape(a.shape[0], -1).sum(axis=1)


class BernoulliLikelihood:
    """p(x | z) = prod_j Bernoulli(x_j; sigmoid(l_j)) for logits l: log p = -BCE(l, x), written
    with the stable BCE on logits (no sigmoid is ever taken of the logits to compute it)."""
    n_outputs = 1
    discrete = True

    def log_prob(self, params, x):
        (logits,) = params
        x = x.reshape(logits.shape)                    # images (N, 1, 28, 28) -> the decoder's shape
        return -_sum_per_sample(F.binary_cross_entropy_with_logits(logits, x, reduction="none"))

    def log_prob_np(self, params, x):
        """-sum BCE(l, x) per sample: the elementwise terms by the fused float32 kernel (relative
        error ~1e-7 each), summed in float64."""
        logits = np.ascontiguousarray(params[0])
        x = np.ascontiguousarray(x, dtype=logits.dtype).reshape(logits.shape)
        terms = F.binary_cross_entropy_with_logits(from_numpy(logits), from_numpy(x),
                                                   reduction="none").numpy()
        return -terms.reshape(len(terms), -1).sum(axis=1, dtype=np.float64)

    def mean(self, params):
        return F.sigmoid(params[0])


class GaussianLikelihood:
    """p(x | z) = N(x; mu_g, diag exp(logvar_g)) with a learned per-pixel log-variance (the
    lecture's ``log_g_x_given_z``); logvar_g is bounded to [logvar_min, logvar_max] by the
    decoder so that a constant pixel cannot drive the density to infinity."""
    n_outputs = 2
    discrete = False

    def log_prob(self, params, x):
        mean, logvar = params
        x = x.reshape(mean.shape)
        return -_sum_per_sample(F.gaussian_nll(mean, x, logvar, reduction="none"))

    def log_prob_np(self, params, x):
        mean, logvar = (p.astype(np.float64) for p in params)
        x = x.reshape(mean.shape)
        return -0.5 * _np_sum_per_sample(LOG_2PI + logvar + (x - mean) ** 2 * np.exp(-logvar))

    def mean(self, params):
        return params[0]


class FixedGaussianLikelihood:
    """p(x | z) = N(x; mu_g, std^2 I) with a fixed std (the lecture's convolutional VAE)."""
    n_outputs = 1
    discrete = False

    def __init__(self, std):
        if not std > 0:
            raise ValueError(f"decoder_std must be > 0, got {std}")
        self.std = float(std)
        self.const = math.log(self.std) + 0.5 * LOG_2PI             # per pixel

    def log_prob(self, params, x):
        d = x.reshape(params[0].shape) - params[0]
        return -_sum_per_sample(d * d) / (2.0 * self.std ** 2) - self.const * d[0].numel()

    def log_prob_np(self, params, x):
        d = x.reshape(params[0].shape) - params[0].astype(np.float64)
        return -_np_sum_per_sample(d * d) / (2.0 * self.std ** 2) - self.const * d[0].size

    def mean(self, params):
        return params[0]


def log_normal_np(z, mu=None, logvar=None):
    """log N(z; mu, diag exp(logvar)) summed over the last axis, float64 (standard normal when
    mu and logvar are None)."""
    z = np.asarray(z, np.float64)
    if mu is None:
        return -0.5 * np.sum(z * z + LOG_2PI, axis=-1)
    return -0.5 * np.sum(LOG_2PI + logvar + (z - mu) ** 2 * np.exp(-logvar), axis=-1)


def logmeanexp(a, axis=0):
    """log mean exp(a) along ``axis``, float64, stable."""
    a = np.asarray(a, np.float64)
    top = np.max(a, axis=axis, keepdims=True)
    out = np.log(np.mean(np.exp(a - top), axis=axis)) + np.squeeze(top, axis=axis)
    return out


def bounded(t, lo, hi):
    """Clamp a log-variance into [lo, hi] (its gradient is zero outside; the bounds are set so
    that only runaway values reach them)."""
    return F.clamp(t, lo, hi)


# ---------------------------------------------------------------------------------------------
class VAE(GenerativeModel):
    """What every VAE here shares: the ELBO loss, importance-weighted evaluation, sampling from
    the prior, reconstructions, interpolations, the 2-D manifold and the latent scatter.

    Subclasses define ``encode(x, y) -> (mu, logvar)`` (Tensors (N, d)), ``decode(z, y) ->
    params`` (a tuple of Tensors for ``self.likelihood``), ``self.likelihood`` and
    ``self.latent_dim``; ``y`` (integer labels, Tensor (N,)) is used by conditional models only.
    ``prepare(x, rng)`` maps a batch of [0, 1] images to the data the likelihood is defined on
    (a fresh binarization for Bernoulli models).
    """
    select = "neg_elbo"
    conditional = False
    train_defaults = {"epochs": 100, "lr": 1e-3, "batch_size": 100}
    iw_batch_rows = 20000          # decoder rows per chunk of the importance-weighted estimate

    # -- data ------------------------------------------------------------------------------------
    def prepare(self, x: np.ndarray, rng) -> np.ndarray:
        """Training data from a batch of [0, 1] pixels: Bernoulli models see a fresh binarization
        (dynamic binarization), the others the pixels themselves."""
        shift = getattr(self.config, "shift", 0)
        if shift:                                    # augmentation: random translations
            from .classifier import random_shift
            x = random_shift(np.asarray(x, np.float32), shift, rng)
        if self.likelihood.discrete:
            return dynamic_binarize(x, rng)
        return np.asarray(x, np.float32)

    def heldout_data(self, images: np.ndarray) -> np.ndarray:
        """Evaluation data: binarized once with a fixed seed for Bernoulli models."""
        if self.likelihood.discrete:
            return static_binarize(images, seed=EVAL_BINARIZE_SEED)
        return np.asarray(images, np.float32)

    def to_image(self, x: np.ndarray) -> np.ndarray:
        """Model space -> [0, 1] pixels (identity except for the Tanh model)."""
        return np.clip(x, 0.0, 1.0)

    def log_det_to_pixels(self) -> float:
        """log |d model-space / d pixel-space| per image, added to continuous densities so that
        they are densities of the [0, 1] pixels (0 except for the Tanh model)."""
        return 0.0

    def flatten_input(self, x):
        return x

    # -- the objective ---------------------------------------------------------------------------
    def encode(self, x, y=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, z, y=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def reparameterize(self, mu, logvar, rng):
        """z = mu + sigma * eps, eps ~ N(0, I) drawn from ``rng`` (the trainer's generator, so a
        resumed run draws the same noise)."""
        eps = self.as_tensor(rng.standard_normal(mu.shape))
        return mu + (0.5 * logvar).exp() * eps

    def elbo_terms(self, x, y, rng):
        """(log p(x | z), KL(q(z|x) || p(z))) per sample, Tensors (N,), one z per sample."""
        mu, logvar = self.encode(x, y)
        z = self.reparameterize(mu, logvar, rng)
        log_px = self.likelihood.log_prob(self.decode(z, y), x)
        kl = F.kl_normal_standard(mu, logvar, reduction="none")
        return log_px, kl

    def iwae_bound(self, x, y, k, rng):
        """The IWAE bound (Burda et al. 2015) per sample, Tensor (N,):
        log (1/k) sum_i p(x | z_i) p(z_i) / q(z_i | x), z_i = mu + sigma eps_i; with k = 1 it is
        the ELBO with a Monte-Carlo KL. (The KL warm-up does not apply to it.)"""
        mu, logvar = self.encode(x, y)
        n, d = mu.shape
        eps = self.as_tensor(rng.standard_normal((k, n, d)))
        sigma = (0.5 * logvar).exp()
        z = mu + sigma * eps                                           # (k, N, d)
        zf = z.reshape(k * n, d)                                       # k-major rows
        xk = F.cat([x] * k, dim=0)
        yk = None if y is None else F.cat([y] * k, dim=0)
        log_px = self.likelihood.log_prob(self.decode(zf, yk), xk).reshape(k, n)
        log_pz = -0.5 * (z * z).sum(dim=2) - 0.5 * d * LOG_2PI          # log N(z; 0, I)
        log_qz = (-0.5 * (eps * eps) - 0.5 * logvar - 0.5 * LOG_2PI).sum(dim=2)  # log q(z|x)
        return F.logsumexp(log_px + log_pz - log_qz, dim=0) - math.log(k)

    def kl_weight(self) -> float:
        """beta, ramped up linearly from 0 over the first ``warmup_epochs`` epochs of training
        (KL warm-up, Sønderby et al. 2016): beta_t = beta * min(1, images seen / (T * N))."""
        beta, warm = self.config.beta, getattr(self.config, "warmup_epochs", 0)
        if not warm or not self._train_size:
            return beta
        return beta * min(1.0, float(self.images_seen.item()) / (warm * self._train_size))

    def training_loss(self, batch, rng):
        """-E log p(x|z) + beta KL, averaged over the batch (nats per image)."""
        with no_grad():
            self.images_seen.add_(float(len(batch[0])))
        x = self.as_tensor(self.prepare(batch[0].numpy(), rng))
        y = batch[1] if self.conditional else None
        k = getattr(self.config, "train_samples", 1)
        if k > 1:
            bound = self.iwae_bound(x, y, k, rng).mean()
            return -bound, {"iwae_nats": float(bound)}
        log_px, kl = self.elbo_terms(x, y, rng)
        rec, kl_mean = -log_px.mean(), kl.mean()
        loss = rec + self.kl_weight() * kl_mean
        return loss, {"recon_nats": float(rec), "kl_nats": float(kl_mean)}

    def __init__(self, config):
        super().__init__(config)
        # images trained on so far (drives the KL warm-up; a buffer, so --resume continues it)
        self.register_buffer("images_seen", zeros((), dtype=np.float64))
        self._train_size = 0

    def phases(self, data):
        self._train_size = len(data.train)
        ev = (lambda: self.evaluate(data.val, iw_samples=0)) if data.val is not None else None
        return [Phase("train", self.parameters, self.training_loss, evaluate=ev,
                      select=self.select)]

    # -- evaluation ------------------------------------------------------------------------------
    def _labels_tensor(self, labels):
        return None if labels is None else self.as_tensor(labels).long()

    def posterior(self, x, labels=None):
        """(mu, logvar) of q(z | x) as float64 NumPy arrays (N, d), in batches."""
        mus, logvars = [], []
        lab = labels if self.conditional else None
        arrays = (x,) if lab is None else (x, lab)
        for (mu, lv), _ in self.batched(
                lambda *a: self.encode(self.as_tensor(a[0]),
                                       self._labels_tensor(a[1]) if len(a) > 1 else None),
                *arrays):
            mus.append(mu.numpy().astype(np.float64))
            logvars.append(lv.numpy().astype(np.float64))
        return np.concatenate(mus), np.concatenate(logvars)

    def _decode_np(self, z, labels=None):
        with no_grad():
            params = self.decode(self.as_tensor(z), self._labels_tensor(labels))
        return tuple(p.numpy() for p in params)

    def elbo_np(self, x, labels, rng):
        """Per-sample (ELBO, log p(x|z), KL) in float64 with one z ~ q(z|x) each."""
        mu, logvar = self.posterior(x, labels)
        z = mu + np.exp(0.5 * logvar) * rng.standard_normal(mu.shape)
        log_px = np.empty(len(x))
        for s in range(0, len(x), self.eval_batch_size):
            sl = slice(s, s + self.eval_batch_size)
            lab = labels[sl] if self.conditional else None
            log_px[sl] = self.likelihood.log_prob_np(self._decode_np(z[sl], lab), x[sl])
        kl = -0.5 * np.sum(1.0 + logvar - mu ** 2 - np.exp(logvar), axis=1)
        return log_px - kl, log_px, kl

    def iw_log_likelihood(self, x, labels=None, k=5000, rng=None):
        """Importance-weighted estimate of log p(x) (per sample, float64, nats) with ``k``
        samples from q(z | x): logmeanexp_i [log p(x|z_i) + log p(z_i) - log q(z_i|x)]."""
        if k < 1:
            raise ValueError(f"k (importance samples) must be >= 1, got {k}")
        rng = rng if rng is not None else np.random.default_rng(0)
        mu, logvar = self.posterior(x, labels)
        std = np.exp(0.5 * logvar)
        n, d = mu.shape
        out = np.empty(n)
        per_image = max(1, min(k, self.iw_batch_rows))
        images = max(1, self.iw_batch_rows // per_image)
        for s in range(0, n, images):
            sl = slice(s, min(n, s + images))
            b = sl.stop - sl.start
            log_w = []                                                        # (kc, b) chunks
            for k0 in range(0, k, per_image):
                kc = min(per_image, k - k0)
                eps = rng.standard_normal((kc, b, d))
                z = mu[sl] + std[sl] * eps                                    # (kc, b, d)
                zf = z.reshape(kc * b, d)                                     # rows k-major
                lab = None if not self.conditional else np.tile(labels[sl], kc)
                xr = np.broadcast_to(x[sl], (kc,) + x[sl].shape).reshape((kc * b,) + x.shape[1:])
                log_px = self.likelihood.log_prob_np(self._decode_np(zf, lab), xr)
                log_w.append(log_px.reshape(kc, b) + log_normal_np(z)
                             - log_normal_np(z, mu[sl], logvar[sl]))
            out[sl] = logmeanexp(np.concatenate(log_w), axis=0)              # (k, b) -> (b,)
        return out

    def evaluate(self, dataset, iw_samples=None) -> dict:
        """Metrics in nats per image on ``dataset`` (binarized once with a fixed seed for
        Bernoulli models): ``elbo_nats`` (the ELBO, higher is better), ``neg_elbo`` (its
        negative, the selection metric), ``recon_nats`` (-E log p(x|z)), ``kl_nats`` and, with
        ``iw_samples`` = k > 0 (default: the config's), ``nll_nats`` = -(importance-weighted
        log p(x) with k samples). Continuous models report densities of the [0, 1] pixels."""
        k = self.config.iw_samples if iw_samples is None else iw_samples
        x = self.heldout_data(self.model_input(dataset.images))
        labels = dataset.labels
        rng = np.random.default_rng(12345)
        elbo, log_px, kl = self.elbo_np(x, labels, rng)
        shift = 0.0 if self.likelihood.discrete else self.log_det_to_pixels()
        out = {"elbo_nats": float(np.mean(elbo) + shift), "neg_elbo": float(-np.mean(elbo) - shift),
               "recon_nats": float(-np.mean(log_px) - shift), "kl_nats": float(np.mean(kl))}
        if k:
            ll = self.iw_log_likelihood(x, labels, k=k, rng=rng)
            out["nll_nats"] = float(-np.mean(ll) - shift)
            out["iw_samples"] = float(k)
        out.update(self.extra_evaluation(dataset, x))
        return out

    def model_input(self, images):
        """[0, 1] images -> the model's data space (identity; Tanh model: [-1, 1])."""
        return images

    def extra_evaluation(self, dataset, x) -> dict:
        return {}

    # -- generation ------------------------------------------------------------------------------
    def _sample_labels(self, n):
        return (np.arange(n) % 10).astype(np.int64) if self.conditional else None

    def sample(self, n, rng, labels=None):
        """Decoder means E[x | z] for z ~ N(0, I): images (n, 1, 28, 28) in [0, 1] (conditional
        models: labels 0..9 cycling unless given)."""
        z = rng.standard_normal((n, self.latent_dim))
        return self.decode_to_images(z, self._sample_labels(n) if labels is None else labels)

    def decode_to_images(self, z, labels=None):
        with no_grad():
            params = self.decode(self.as_tensor(z), self._labels_tensor(labels))
            mean = self.likelihood.mean(params).numpy()
        return self.to_image(mean.reshape((len(z),) + IMAGE_SHAPE))

    def reconstruct(self, images, labels=None):
        """Decoder means at the posterior means: g(mu^f(x)) as [0, 1] images."""
        mu, _ = self.posterior(self.model_input(images), labels)
        return self.decode_to_images(mu, labels if self.conditional else None)

    def reconstruction_mse(self, images, labels=None) -> float:
        """Mean squared error per pixel of :meth:`reconstruct` against the [0, 1] images."""
        rec = self.reconstruct(images, labels)
        return float(np.mean((rec.astype(np.float64) - images) ** 2))

    def interpolate(self, x0, x1, steps=10, labels=None):
        """Decoded (1 - a) mu(x0) + a mu(x1) for a in [0, 1]: (R, steps, 1, 28, 28)."""
        m0, _ = self.posterior(self.model_input(x0), labels)
        m1, _ = self.posterior(self.model_input(x1), labels)
        a = np.linspace(0.0, 1.0, steps)[None, :, None]                     # (1, steps, 1)
        z = ((1 - a) * m0[:, None] + a * m1[:, None]).reshape(-1, m0.shape[1])  # (R*steps, d)
        lab = None if labels is None else np.repeat(labels, steps)
        return self.decode_to_images(z, lab).reshape((len(x0), steps) + IMAGE_SHAPE)

    def manifold(self, n=20, labels=None):
        """The 2-D latent manifold (d = 2): decoded z on an n x n grid of the inverse Gaussian
        CDF of equally spaced quantiles, as in Kingma & Welling's Frey-face/MNIST figure."""
        if self.latent_dim != 2:
            raise ValueError(f"the manifold grid needs latent_dim = 2, got {self.latent_dim}")
        q = [NormalDist().inv_cdf(p) for p in np.linspace(0.05, 0.95, n)]
        zz = np.array([[a, b] for b in q[::-1] for a in q])                 # rows top to bottom
        return self.decode_to_images(zz, labels)

    def styles(self, rng, n_styles=10):
        """Conditional models: the same ``n_styles`` latent codes z ~ N(0, I) decoded with each
        label (row r: digit r), so that z carries the handwriting style and y the class
        (Shan's "handwriting styles obtained by fixing the class label and varying z")."""
        z = rng.standard_normal((n_styles, self.latent_dim))
        zz = np.tile(z, (10, 1))                                        # (10 * n_styles, d)
        return self.decode_to_images(zz, np.repeat(np.arange(10), n_styles))

    def pictures(self, out_dir, dataset, rng):
        from .. import plots as img

        x, lab = dataset.images, dataset.labels
        lab20 = lab[:20] if self.conditional else None
        paths = [img.save_reconstructions(x[:20], self.reconstruct(x[:20], lab20),
                                          os.path.join(out_dir, "reconstructions.png"), scale=2)]
        paths.append(self.save_samples(100 if self.conditional else 64, rng,
                                       os.path.join(out_dir, "samples.png")))
        pick = rng.choice(len(x), size=(2, 8), replace=False)
        paths.append(img.save_interpolations(
            self.interpolate(x[pick[0]], x[pick[1]], labels=lab[pick[0]] if self.conditional
                             else None),
            os.path.join(out_dir, "interpolations.png"), scale=2))
        if self.latent_dim == 2 and not self.conditional:
            paths.append(img.save_image_grid(self.manifold(20),
                                             os.path.join(out_dir, "manifold.png"), nrow=20))
        if self.conditional:
            paths.append(img.save_image_grid(self.styles(rng),
                                             os.path.join(out_dir, "styles.png"), nrow=10,
                                             scale=2))
        mu, _ = self.posterior(self.model_input(x[:2000]), lab[:2000])
        codes = mu if mu.shape[1] == 2 else PCA.fit(mu, 2).encode(mu)
        paths.append(img.plot_scatter_2d(
            codes, os.path.join(out_dir, "latent.png"), labels=lab[:2000],
            title="posterior means by class" + ("" if mu.shape[1] == 2 else " (PCA to 2-D)")))
        return paths

    def save_samples(self, n, rng, path):
        from .. import plots as img
        nrow = 10 if self.conditional else int(np.ceil(np.sqrt(n)))
        return img.save_image_grid(self.sample(n, rng), path, nrow=nrow, scale=2)


def _check_common(config):
    if config.latent_dim < 1:
        raise ValueError(f"latent_dim must be >= 1, got {config.latent_dim}")
    if config.iw_samples < 0:
        raise ValueError(f"iw_samples must be >= 0, got {config.iw_samples}")
    if not config.beta >= 0:
        raise ValueError(f"beta must be >= 0, got {config.beta}")


def _mlp(sizes, final_activation=False):
    """Linear layers with ReLU between them: sizes (a, b, c) -> Linear(a,b) ReLU Linear(b,c)."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


# ---------------------------------------------------------------------------------------------
LIKELIHOODS = ("bernoulli", "gaussian")


@dataclass
class VAEConfig:
    latent_dim: int = 20            # d, dimension of z
    hidden: int = 400               # width of the hidden layers of encoder and decoder
    depth: int = 1                  # hidden layers in the encoder (the decoder mirrors it)
    likelihood: str = "bernoulli"   # bernoulli (dynamic binarization) | gaussian (learned var)
    beta: float = 1.0               # weight of the KL term (1: the ELBO)
    warmup_epochs: int = 0          # KL weight ramps linearly 0 -> beta over these epochs
    iw_samples: int = 5000          # k of the importance-weighted log p(x) estimate (0: off)
    logvar_min: float = -10.0       # bounds of every log-variance (encoder and decoder)
    logvar_max: float = 10.0
    train_samples: int = 1          # k of the training bound: 1 = the ELBO, > 1 = the IWAE bound
    shift: int = 0                  # training augmentation: random translations of <= shift px


@register
class MLPVAE(VAE):
    """The MLP VAE of Shan's lecture on variational autoencoders (Kingma & Welling's MNIST model):

        encoder  x (784) -> ReLU(W1 x + b1) (h) -> mu (d), logvar (d)
        decoder  z (d)   -> ReLU(W3 z + b3) (h) -> logits (784)      [Bernoulli]
                                                 -> mean, logvar (784 each) [Gaussian]
    """
    model_name = "vae"
    description = "MLP VAE (784-400-20), Bernoulli or Gaussian decoder, ELBO + importance-weighted NLL"
    Config = VAEConfig

    def __init__(self, config=None):
        super().__init__(config or VAEConfig())
        c = self.config
        _check_common(c)
        if c.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got "
                             f"{c.likelihood!r}")
        if c.hidden < 1 or c.depth < 1:
            raise ValueError(f"hidden and depth must be >= 1, got {c.hidden} and {c.depth}")
        if not c.logvar_min < c.logvar_max:
            raise ValueError(f"logvar_min must be < logvar_max, got {c.logvar_min} and "
                             f"{c.logvar_max}")
        if c.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {c.warmup_epochs}")
        if getattr(c, "train_samples", 1) < 1 or getattr(c, "shift", 0) < 0:
            raise ValueError(f"train_samples must be >= 1 and shift >= 0, got "
                             f"{getattr(c, 'train_samples', 1)} and {getattr(c, 'shift', 0)}")
        self.latent_dim = c.latent_dim
        self.likelihood = (BernoulliLikelihood() if c.likelihood == "bernoulli"
                           else GaussianLikelihood())
        self.dim_x = self.data_dim()
        hidden = [c.hidden] * c.depth
        self.encoder = _mlp([self.dim_x + self.cond_dim()] + hidden, final_activation=True)
        self.fc_mu = nn.Linear(c.hidden, c.latent_dim)
        self.fc_logvar = nn.Linear(c.hidden, c.latent_dim)
        self.decoder = _mlp([c.latent_dim + self.cond_dim()] + hidden
                            + [self.dim_x * self.likelihood.n_outputs])

    def data_dim(self):
        return PIXELS

    def cond_dim(self):
        return 0

    def _bounded(self, logvar):
        return bounded(logvar, self.config.logvar_min, self.config.logvar_max)

    def encode(self, x, y=None):
        h = self.encoder(x.reshape(x.shape[0], self.dim_x))               # (N, 1, 28, 28) -> (N, 784)
        return self.fc_mu(h), self._bounded(self.fc_logvar(h))

    def decode(self, z, y=None):
        out = self.decoder(z)                                              # (N, 784 * outputs)
        if self.likelihood.n_outputs == 1:
            return (out,)
        mean, logvar = out.split(self.dim_x, dim=1)
        return mean, self._bounded(logvar)


# ---------------------------------------------------------------------------------------------
@dataclass
class ToyVAEConfig:
    dataset: str = "moons"          # toy 2-D set (moons | rings | 8gaussians | checkerboard)
    n_points: int = 250             # training points (the lecture: nb = 250)
    latent_dim: int = 2             # dim_z
    hidden: int = 100               # dim_hidden
    depth: int = 1                  # hidden layers of encoder and decoder
    likelihood: str = "gaussian"    # the lecture's log_g_x_given_z: learned mean and variance
    beta: float = 1.0               # KL weight
    warmup_epochs: int = 0          # KL warm-up epochs
    iw_samples: int = 1000          # k of the importance-weighted estimate
    logvar_min: float = -10.0       # log-variance bounds
    logvar_max: float = 10.0


@register
class ToyVAE(MLPVAE):
    """The lecture's 2-D VAE: dim_x = dim_z = 2, one hidden layer of 100 units in f and g, g
    giving the mean and log-variance of a Gaussian p(x | z); the points are standardized
    ((x - mean) / std of the training set) as in the lecture. Samples are x = mu_g + sigma_g u,
    u ~ N(0, I), z ~ N(0, I) -- the lecture's ``toy-vae-synth.dat``."""
    model_name = "toy-vae"
    description = "the lecture's 2-D VAE on two moons (Gaussian decoder with learned variance)"
    Config = ToyVAEConfig
    train_defaults = {"epochs": 500, "lr": 1e-2, "batch_size": 10}

    def data_dim(self):
        return 2

    def load_data(self, data_dir=None, val_fraction=0.1, seed=0):
        """The toy set with ``n_points`` training points (and a held-out sample of the same
        size), standardized with the training points' mean and std."""
        from ..data import Dataset
        from ..data import load_toy_data

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
        mean, logvar = self._decode_np(z)
        return (mean + np.exp(0.5 * logvar) * rng.standard_normal(mean.shape)).astype(np.float32)

    def save_samples(self, n, rng, path, reference=None):
        from .. import plots as img
        if reference is None:
            reference = self.load_data(None)[0].train.images
        return img.plot_scatter_2d(self.sample(n, rng), path, reference=reference,
                                   title=f"toy-vae: {n} synthesized points over the data")

    def pictures(self, out_dir, dataset, rng):
        from .. import plots as img

        x = dataset.images
        paths = [self.save_samples(max(250, len(x)), rng, os.path.join(out_dir, "samples.png"),
                                   reference=x)]
        mu, _ = self.posterior(x)
        paths.append(img.plot_scatter_2d(mu[:, :2], os.path.join(out_dir, "latent.png"),
                                         title="posterior means of the held-out points"))
        return paths


# ---------------------------------------------------------------------------------------------
@dataclass
class ConvVAEConfig:
    latent_dim: int = 8             # d (the encoder's last conv has 2d channels: mu and logvar)
    channels: int = 32              # nb_channels of every hidden convolution (as conv-ae)
    kl_factor: float = 0.5          # the lecture's loss: mse + kl_factor * mean KL per dimension
    logvar_offset: float = math.log(0.01)   # the lecture adds log(0.01) to the encoder's logvar
    decoder_std: float = 0.1        # fixed std of p(x | z), used for the reported ELBO / NLL
    beta: float = 1.0               # KL weight of the reported ELBO (always 1: the true ELBO)
    iw_samples: int = 1000          # k of the importance-weighted estimate
    logvar_min: float = -10.0       # encoder log-variance bounds
    logvar_max: float = 10.0


@register
class ConvVAE(VAE):
    """The lecture's convolutional VAE: the conv-ae encoder now ends in 2d channels (mu^f and
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
    description = "the lecture's convolutional VAE (conv-ae layers, fixed decoder variance, mse + 0.5 KL)"
    Config = ConvVAEConfig
    train_defaults = {"epochs": 25, "lr": 1e-3, "batch_size": 100}

    def __init__(self, config=None):
        super().__init__(config or ConvVAEConfig())
        from .autoencoders import ConvAutoencoder, ConvAEConfig

        c = self.config
        _check_common(c)
        self.latent_dim = c.latent_dim
        self.likelihood = FixedGaussianLikelihood(c.decoder_std)
        ae = ConvAutoencoder(ConvAEConfig(latent_dim=2 * c.latent_dim, channels=c.channels))
        self.encoder = ae.encoder                  # ends in Conv2d(C, 2d, 4): (N, 2d, 1, 1)
        dec = ConvAutoencoder(ConvAEConfig(latent_dim=c.latent_dim, channels=c.channels))
        self.decoder = dec.decoder                 # from (N, d, 1, 1) back to (N, 1, 28, 28)

    def encode(self, x, y=None):
        param = self.encoder(x).reshape(x.shape[0], 2 * self.latent_dim)   # (N, 2d, 1, 1) -> (N, 2d)
        mu, logvar = param.split(self.latent_dim, dim=1)
        return mu, bounded(logvar + self.config.logvar_offset, self.config.logvar_min,
                           self.config.logvar_max)

    def decode(self, z, y=None):
        return (self.decoder(z.reshape(z.shape[0], self.latent_dim, 1, 1)),)

    def training_loss(self, batch, rng):
        x = batch[0]
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, rng)
        mse = F.mse_loss(self.decode(z)[0], x)
        kl = F.kl_normal_standard(mu, logvar, reduction="mean") / self.latent_dim  # per dim
        loss = mse + self.config.kl_factor * kl
        return loss, {"mse": float(mse), "kl_per_dim": float(kl)}

    def extra_evaluation(self, dataset, x):
        """``mse`` of the mean prediction g(mu^f(x)) (no sampling), as the lecture does."""
        return {"mse": self.reconstruction_mse(dataset.images)}


# ---------------------------------------------------------------------------------------------
@dataclass
class VanillaVAEConfig:
    latent_dim: int = 16            # d
    hidden_dims: str = "32,64,128"  # channels of the stride-2 conv blocks (28 -> 14 -> 7 -> 4)
    kl_weight: float = 0.00025      # the KL weight of the VanillaVAE notes' loss: mse + kl_weight * KL
    decoder_std: float = 0.1        # fixed std of p(x | z) on the [-1, 1] scale (reported ELBO)
    beta: float = 1.0               # KL weight of the reported ELBO (always 1)
    iw_samples: int = 1000          # k of the importance-weighted estimate
    logvar_min: float = -10.0       # encoder log-variance bounds
    logvar_max: float = 10.0


def _conv_sizes(size, blocks):
    """Spatial sizes through ``blocks`` convs of kernel 3, stride 2, padding 1."""
    sizes = [size]
    for _ in range(blocks):
        sizes.append((sizes[-1] + 2 - 3) // 2 + 1)
    return sizes


@register
class VanillaVAE(VAE):
    """The ``VanillaVAE`` of the lecture notes on autoencoders and VAEs (the VanillaVAE example)
    sized for 28x28 digits (pixels scaled to [-1, 1] for the
    Tanh output)::

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
        _check_common(c)
        try:
            dims = [int(v) for v in str(c.hidden_dims).split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"hidden_dims must be comma-separated integers, got "
                             f"{c.hidden_dims!r}") from None
        if len(dims) < 2 or min(dims) < 1:
            raise ValueError(f"hidden_dims needs at least two positive sizes, got {c.hidden_dims!r}")
        self.latent_dim = c.latent_dim
        self.likelihood = FixedGaussianLikelihood(c.decoder_std)
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
        x = self.as_tensor(self.prepare(batch[0].numpy(), rng))
        mu, logvar = self.encode(x)
        recons = self.decode(self.reparameterize(mu, logvar, rng))[0]
        mse = F.mse_loss(recons, x)
        kld = F.kl_normal_standard(mu, logvar, reduction="mean")
        return mse + self.config.kl_weight * kld, {"mse": float(mse), "kl_nats": float(kld)}

    def extra_evaluation(self, dataset, x):
        """``mse`` of the mean reconstruction in [0, 1] pixels."""
        return {"mse": self.reconstruction_mse(dataset.images)}


# ---------------------------------------------------------------------------------------------
@dataclass
class CVAEConfig:
    latent_dim: int = 2             # d (2: class-consistent samples, the lecture's style grid)
    hidden: int = 400               # hidden width of encoder and decoder
    depth: int = 1                  # hidden layers
    likelihood: str = "bernoulli"   # bernoulli | gaussian
    beta: float = 1.0               # KL weight
    warmup_epochs: int = 0          # KL warm-up epochs
    iw_samples: int = 1000          # k of the importance-weighted estimate of log p(x | y)
    logvar_min: float = -10.0       # log-variance bounds
    logvar_max: float = 10.0
    classifier: str = ""            # checkpoint of `tinygen train classifier`: scores samples


@register
class ConditionalVAE(MLPVAE):
    """Conditional VAE (Sohn et al. 2015): both networks see the label y as a one-hot vector,
    q(z | x, y) and p(x | z, y), with the prior p(z) = N(0, I); the bound is

        log p(x | y) >= E_{q(z|x,y)} [ log p(x | z, y) ] - D_KL( q(z | x, y) || p(z) ).

    Class-conditional samples: fix y, draw z ~ N(0, I). With ``classifier`` (a checkpoint of
    ``tinygen train classifier``) evaluation reports ``cond_accuracy``: the share of 1,000
    samples (100 per digit) that the classifier assigns to their conditioning label.
    """
    model_name = "cvae"
    description = "conditional VAE (Sohn et al.): encoder and decoder conditioned on the label"
    Config = CVAEConfig
    conditional = True
    n_classes = 10

    def cond_dim(self):
        return self.n_classes

    def one_hot(self, y):
        labels = y.numpy().astype(np.int64)
        return self.as_tensor(np.eye(self.n_classes, dtype=np.float32)[labels])  # (N,) -> (N, 10)

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
        if not self.config.classifier:
            return {}
        from .scoring import classify, load_classifier

        clf = load_classifier(self.config.classifier)
        labels = np.repeat(np.arange(self.n_classes), 100)
        samples = self.sample(len(labels), np.random.default_rng(2024), labels=labels)
        return {"cond_accuracy": float(np.mean(classify(clf, samples) == labels))}
