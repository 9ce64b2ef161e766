"""What every VAE here shares (Shan's lecture on variational autoencoders; the VAE part of
Fleuret's lecture on autoencoders and generative models; Kingma & Welling 2013).

A VAE is a latent-variable model p(x, z) = p(z) p(x | z) with the prior p(z) = N(0, I) and a
decoder g giving the parameters of p(x | z), trained together with an encoder f giving the
parameters of the approximate posterior q(z | x) = N(mu^f(x), diag sigma^f(x)^2). The log-
likelihood is bounded below by the evidence lower bound (ELBO):

    log p(x) >= ELBO(x) = E_{z ~ q(z|x)} [ log p(x | z) ] - D_KL( q(z | x) || p(z) )

with, for the diagonal Gaussian q and the standard normal prior, the KL in closed form

    D_KL = -1/2 sum_d ( 1 + log sigma_d^2 - mu_d^2 - sigma_d^2 ).

The expectation is estimated with one sample through the reparameterization trick
z = mu + sigma * eps, eps ~ N(0, I), so the gradient flows through mu and sigma.

Evaluation reports the ELBO and the importance-weighted estimate (Burda et al. 2015)

    log p(x) ~= log (1/k) sum_{i=1..k} p(x | z_i) p(z_i) / q(z_i | x),   z_i ~ q(z | x),

a lower bound that tightens as k grows. Both are in nats per image, computed in float64 by
casting the networks' outputs (:mod:`tinygen.distributions`); ``nll_nats`` is minus the
estimate (lower is better). The same log-weights, in the model's dtype and with gradients, give
the IWAE training bound (:meth:`VAE.iwae_bound`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from ... import functional as F
from ... import nn
from ...autograd import no_grad
from ...data import balanced_indices, static_binarize
from ...distributions import (DiagonalNormal, importance_weighted_log_likelihood, logmeanexp,
                              standard_normal_log_prob)
from ...tensor import float64, tensor
from ..base import GenerativeModel
from ..pca import PCA
from ..phases import Phase

__all__ = ["VAE", "VAEConfigBase", "IMAGE_SHAPE", "PIXELS", "mlp", "bounded"]

IMAGE_SHAPE = (1, 28, 28)
PIXELS = 28 * 28
EVAL_BINARIZE_SEED = 0        # the held-out set is binarized once with this seed


@dataclass
class VAEConfigBase:
    """The options every VAE has; a model's config extends it (and may change defaults)."""
    latent_dim: int = 20            # d, dimension of z
    beta: float = 1.0               # weight of the KL term (1: the ELBO)
    iw_samples: int = 1000          # k of the importance-weighted log p(x) estimate (0: off)
    logvar_min: float = -10.0       # lower bound of every log-variance (encoder, decoder)
    logvar_max: float = 10.0        # upper bound of every log-variance (encoder, decoder)

    def validate(self):
        """Raise a ValueError naming the first bad option."""
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.iw_samples < 0:
            raise ValueError(f"iw_samples must be >= 0, got {self.iw_samples}")
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if not self.logvar_min < self.logvar_max:
            raise ValueError(f"logvar_min must be < logvar_max, got {self.logvar_min} and "
                             f"{self.logvar_max}")


def mlp(sizes, final_activation=False):
    """Linear layers with ReLU between them: sizes (a, b, c) -> Linear(a,b) ReLU Linear(b,c)."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def bounded(t, lo, hi):
    """Clamp a log-variance into [lo, hi] (its gradient is zero outside; the bounds are set so
    that only runaway values reach them)."""
    return F.clamp(t, lo, hi)


class VAE(GenerativeModel):
    """The ELBO, importance-weighted evaluation, sampling from the prior, reconstructions,
    interpolations, the 2-D manifold and the latent scatter.

    Subclasses define ``encode(x, y) -> (mu, logvar)`` (Tensors (N, d)), ``decode(z, y) ->
    params`` (a tuple of Tensors), ``self.likelihood`` (a :class:`tinygen.distributions.Family`
    making p(x | z) from those params) and ``self.latent_dim``; ``y`` (integer labels, Tensor
    (N,)) is used by conditional models only. ``prepare(x, rng)`` maps a batch of [0, 1] images
    to the data the likelihood is defined on; it runs on the host, as the training phase's
    ``prepare`` hook, before the batch goes to the device.
    """
    select = "neg_elbo"
    conditional = False
    train_defaults = {"epochs": 100, "lr": 1e-3, "batch_size": 100}
    scored_samples = 10000
    iw_batch_rows = 20000          # decoder rows per chunk of the importance-weighted estimate

    def __init__(self, config):
        super().__init__(config)
        config.validate()

    # -- data (host side, NumPy) ---------------------------------------------------------------
    def prepare(self, x: np.ndarray, rng) -> np.ndarray:
        """Training data from a batch of [0, 1] pixels (default: the pixels, float32)."""
        return np.asarray(x, np.float32)

    def prepare_batch(self, arrays, rng):
        """The phase's ``prepare`` hook: (images, labels) -> (prepared images, labels)."""
        return (self.prepare(arrays[0], rng),) + tuple(arrays[1:])

    def heldout_data(self, images: np.ndarray) -> np.ndarray:
        """Evaluation data: binarized once with a fixed seed for discrete likelihoods."""
        if self.likelihood.discrete:
            return static_binarize(images, seed=EVAL_BINARIZE_SEED)
        return np.asarray(images, np.float32)

    def model_input(self, images):
        """[0, 1] images -> the model's data space (identity; Tanh model: [-1, 1])."""
        return images

    def to_image(self, x: np.ndarray) -> np.ndarray:
        """Model space -> [0, 1] pixels (identity except for the Tanh model)."""
        return np.clip(x, 0.0, 1.0)

    def log_det_to_pixels(self) -> float:
        """log |d model-space / d pixel-space| per image, added to continuous densities so that
        they are densities of the [0, 1] pixels (0 except for the Tanh model)."""
        return 0.0

    # -- the objective -------------------------------------------------------------------------
    def encode(self, x, y=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, z, y=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def posterior(self, x, y=None) -> DiagonalNormal:
        """q(z | x, y)."""
        return DiagonalNormal(*self.encode(x, y))

    def p_x_given_z(self, z, y=None):
        """p(x | z, y): the likelihood family applied to the decoder's outputs."""
        return self.likelihood(self.decode(z, y))

    def noise(self, shape, rng, like):
        """eps ~ N(0, I) of ``shape`` from ``rng`` (the trainer's generator, so a resumed run
        draws the same noise), as a Tensor of ``like``'s dtype and device."""
        return tensor(rng.standard_normal(shape).astype(like.dtype), device=like.device)

    def elbo_terms(self, x, y, rng, dtype=None):
        """(log p(x | z), KL(q(z|x) || p(z))) per sample, Tensors (N,), one z per sample;
        computed in ``dtype`` (default: the model's) from the networks' outputs."""
        q = self.posterior(x, y).to(dtype)
        z = q.rsample(self.noise(q.mu.shape, rng, q.mu))
        p = self.p_x_given_z(z.to(x.dtype), y).to(dtype)
        return p.log_prob(x), q.kl_standard()

    def log_weights(self, x, y, k, rng, dtype=None):
        """log p(x | z_i) + log p(z_i) - log q(z_i | x) for k samples z_i ~ q(z | x) per item,
        a Tensor (k, N), in ``dtype`` (default: the model's; float64 for evaluation)."""
        q = self.posterior(x, y).to(dtype)
        n, d = q.mu.shape
        z = q.rsample(self.noise((k, n, d), rng, q.mu))                  # (k, N, d)
        zf = z.reshape(k * n, d).to(x.dtype)                              # k-major rows
        xk = F.cat([x] * k, dim=0)
        yk = None if y is None else F.cat([y] * k, dim=0)
        log_px = self.p_x_given_z(zf, yk).to(dtype).log_prob(xk).reshape(k, n)
        return log_px + standard_normal_log_prob(z) - q.log_prob(z)

    def iwae_bound(self, x, y, k, rng):
        """The IWAE bound (Burda et al. 2015) per sample, Tensor (N,): log-mean-exp of
        :meth:`log_weights` over k samples; with k = 1 it is the ELBO with a Monte-Carlo KL."""
        return logmeanexp(self.log_weights(x, y, k, rng), dim=0)

    def training_loss(self, batch, rng):
        """-E log p(x|z) + beta KL, averaged over the batch (nats per image); the batch was
        prepared on the host by :meth:`prepare_batch`."""
        x, y = batch[0], (batch[1] if self.conditional else None)
        log_px, kl = self.elbo_terms(x, y, rng)
        rec, kl_mean = -log_px.mean(), kl.mean()
        loss = rec + self.kl_weight() * kl_mean
        return loss, {"recon_nats": float(rec), "kl_nats": float(kl_mean)}

    def kl_weight(self) -> float:
        return self.config.beta

    def phases(self, data):
        ev = (lambda: self.evaluate(data.val, iw_samples=0)) if data.val is not None else None
        return [Phase("train", self.parameters, self.training_loss, evaluate=ev,
                      select=self.select, prepare=self.prepare_batch)]

    # -- evaluation (float64 by casting) ------------------------------------------------------
    def _labels_tensor(self, labels):
        return None if labels is None else self.as_tensor(labels).long()

    def _batches(self, x, labels):
        """(x Tensor, y Tensor or None) over eval batches of NumPy ``x`` and ``labels``."""
        for s in range(0, len(x), self.eval_batch_size):
            sl = slice(s, s + self.eval_batch_size)
            lab = labels[sl] if self.conditional else None
            yield sl, self.as_tensor(x[sl]), self._labels_tensor(lab)

    def posterior_means(self, x, labels=None):
        """(mu, logvar) of q(z | x) as float64 NumPy arrays (N, d), in batches."""
        mus, logvars = [], []
        with no_grad():
            for _, xb, yb in self._batches(x, labels):
                q = self.posterior(xb, yb).to(float64)
                mus.append(q.mu.cpu().numpy())
                logvars.append(q.logvar.cpu().numpy())
        return np.concatenate(mus), np.concatenate(logvars)

    def elbo(self, x, labels, rng):
        """Per-sample (ELBO, log p(x|z), KL) in float64 NumPy with one z ~ q(z|x) each."""
        log_px, kl = np.empty(len(x)), np.empty(len(x))
        with no_grad():
            for sl, xb, yb in self._batches(x, labels):
                lp, k = self.elbo_terms(xb, yb, rng, dtype=float64)
                log_px[sl], kl[sl] = lp.cpu().numpy(), k.cpu().numpy()
        return log_px - kl, log_px, kl

    def iw_log_likelihood(self, x, labels=None, k=5000, rng=None):
        """Importance-weighted estimate of log p(x) (per sample, float64, nats) with ``k``
        samples from q(z | x) (:func:`tinygen.distributions.importance_weighted_log_likelihood`)."""
        rng = rng if rng is not None else np.random.default_rng(0)
        lab = labels if self.conditional else None

        def log_weights(items, kc):
            xb = self.as_tensor(x[items])
            yb = None if lab is None else self._labels_tensor(lab[items])
            return self.log_weights(xb, yb, kc, rng, dtype=float64)

        with no_grad():
            return importance_weighted_log_likelihood(log_weights, len(x), k, self.iw_batch_rows)

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
        elbo, log_px, kl = self.elbo(x, labels, rng)
        shift = 0.0 if self.likelihood.discrete else self.log_det_to_pixels()
        out = {"elbo_nats": float(np.mean(elbo) + shift), "neg_elbo": float(-np.mean(elbo) - shift),
               "recon_nats": float(-np.mean(log_px) - shift), "kl_nats": float(np.mean(kl))}
        if k:
            ll = self.iw_log_likelihood(x, labels, k=k, rng=rng)
            out["nll_nats"] = float(-np.mean(ll) - shift)
            out["iw_samples"] = float(k)
        out.update(self.extra_evaluation(dataset, x))
        return out

    def extra_evaluation(self, dataset, x) -> dict:
        return {}

    # -- generation ----------------------------------------------------------------------------
    def _sample_labels(self, n):
        return (np.arange(n) % 10).astype(np.int64) if self.conditional else None

    def sample(self, n, rng, labels=None):
        """Decoder means E[x | z] for z ~ N(0, I): images (n, 1, 28, 28) in [0, 1] (conditional
        models: labels 0..9 cycling unless given)."""
        z = rng.standard_normal((n, self.latent_dim))
        return self.decode_to_images(z, self._sample_labels(n) if labels is None else labels)

    def decode_to_images(self, z, labels=None):
        with no_grad():
            mean = self.p_x_given_z(self.as_tensor(z), self._labels_tensor(labels)).mean.cpu().numpy()
        return self.to_image(mean.reshape((len(z),) + IMAGE_SHAPE))

    def reconstruct(self, images, labels=None):
        """Decoder means at the posterior means: g(mu^f(x)) as [0, 1] images."""
        mu, _ = self.posterior_means(self.model_input(images), labels)
        return self.decode_to_images(mu, labels if self.conditional else None)

    def reconstruction_mse(self, images, labels=None) -> float:
        """Mean squared error per pixel of :meth:`reconstruct` against the [0, 1] images."""
        rec = self.reconstruct(images, labels)
        return float(np.mean((rec.astype(np.float64) - images) ** 2))

    def interpolate(self, x0, x1, steps=10, labels=None):
        """Decoded (1 - a) mu(x0) + a mu(x1) for a in [0, 1]: (R, steps, 1, 28, 28)."""
        m0, _ = self.posterior_means(self.model_input(x0), labels)
        m1, _ = self.posterior_means(self.model_input(x1), labels)
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
        from ... import plots as img

        x, lab = dataset.images, dataset.labels
        sel = balanced_indices(lab, 20)                            # two of each digit, fixed
        lab20 = lab[sel] if self.conditional else None
        paths = [img.save_reconstructions(x[sel], self.reconstruct(x[sel], lab20),
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
        mu, _ = self.posterior_means(self.model_input(x[:2000]), lab[:2000])
        codes = mu if mu.shape[1] == 2 else PCA.fit(mu, 2).encode(mu)
        paths.append(img.plot_scatter_2d(
            codes, os.path.join(out_dir, "latent.png"), labels=lab[:2000],
            title="posterior means by class" + ("" if mu.shape[1] == 2 else " (PCA to 2-D)")))
        return paths

    def save_samples(self, n, rng, path):
        from ... import plots as img
        nrow = 10 if self.conditional else int(np.ceil(np.sqrt(n)))
        return img.save_image_grid(self.sample(n, rng), path, nrow=nrow, scale=2)

