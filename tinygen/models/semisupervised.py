"""Semi-supervised learning with deep generative models (Kingma, Mohamed, Rezende & Welling
2014; Shan's lecture on variational autoencoders, "Semi-supervised VAE").

The data are pairs (x, y) of which only a few have their label: the labelled set ~p_l(x, y)
(``labels`` images, balanced over the classes, chosen with a seed from the training split) and
the unlabelled set ~p_u(x) (all the training images, their labels never read).

* **M1** (latent-feature discriminative model): a VAE p(z) = N(0, I), p(x | z) trained on all
  the images; then a classifier on the features mu^f(x) of the labelled images.

* **M2** (generative semi-supervised model): y is a partly observed latent variable,

      p(y) = Cat(y | pi),  p(z) = N(0, I),  p(x | y, z) = f(x; y, z, theta),

  with the inference networks q(z | x, y) = N(mu(x, y), diag sigma^2(x, y)) and
  q(y | x) = Cat(y | pi(x)) (the classifier). For a labelled pair the bound is

      -L(x, y) = E_{q(z|x,y)} [ log p(x | y, z) + log p(y) + log p(z) - log q(z | x, y) ],

  for an unlabelled x the label is summed out under q(y | x):

      -U(x) = sum_y q(y | x) (-L(x, y)) + H(q(y | x)),

  and the objective adds the classification loss so that q(y | x) also learns from the labels:

      J^alpha = sum_{(x,y) ~ p_l} L(x, y) + sum_{x ~ p_u} U(x) + alpha E_{p_l} [ -log q(y | x) ].

  Here each term is a mean over its mini-batch (an unlabelled batch from the training split and
  a labelled batch drawn from the labelled set), so ``alpha`` weighs the mean cross-entropy
  against the mean bounds.

* **M1+M2**: M2 trained on M1's latent codes z1 ~ q(z1 | x) instead of x, with a Gaussian
  p(z1 | y, z2) of learned variance:
  p(x, y, z1, z2) = p(y) p(z2) p(z1 | y, z2) p(x | z1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import functional as F
from .. import nn
from ..autograd import no_grad
from ..data import dynamic_binarize, static_binarize
from ..distributions import (Bernoulli, DiagonalNormal, Family, Normal,
                             importance_weighted_log_likelihood, standard_normal_log_prob)
from ..tensor import float64, tensor
from .base import GenerativeModel, register
from .phases import Phase
from .vae import MLPVAE, VAEConfig
from .vae.base import bounded, mlp as _mlp

N_CLASSES = 10
LOG_PRIOR_Y = -math.log(N_CLASSES)            # log p(y) for the uniform Cat(1/10)


def labelled_indices(labels: np.ndarray, n_labels: int, seed: int) -> np.ndarray:
    """``n_labels`` indices, balanced over the 10 classes (n_labels / 10 each), seeded."""
    classes = np.arange(N_CLASSES)
    if n_labels < N_CLASSES or n_labels % N_CLASSES:
        raise ValueError(f"labels must be a positive multiple of the {N_CLASSES} classes, "
                         f"got {n_labels}")
    per_class = n_labels // N_CLASSES
    rng = np.random.default_rng([seed, 2014])
    picked = []
    for c in classes:
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise ValueError(f"labels={n_labels} needs {per_class} images of class {c}, the "
                             f"training split has {len(members)}")
        picked.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(picked))


def _one_hot(labels, like):
    """Integer labels (N,) -> one-hot float32 Tensor (N, 10) on ``like``'s device."""
    return F.one_hot(like.as_tensor(np.asarray(labels)).long(), N_CLASSES).float()


class M2Net(nn.Module):
    """The networks of M2 for inputs of dimension ``dim_x``: the classifier q(y | x), the
    encoder q(z | x, y) and the decoder p(x | y, z) (MLPs with ``hidden`` units)."""

    def __init__(self, dim_x, latent_dim, hidden, likelihood, logvar_bounds):
        super().__init__()
        self.dim_x, self.latent_dim = dim_x, latent_dim
        self.likelihood = likelihood
        self.lo, self.hi = logvar_bounds
        self.classifier = _mlp([dim_x, hidden, N_CLASSES])                       # logits of q(y|x)
        self.encoder = _mlp([dim_x + N_CLASSES, hidden], final_activation=True)
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_logvar = nn.Linear(hidden, latent_dim)
        self.decoder = _mlp([latent_dim + N_CLASSES, hidden, dim_x * likelihood.n_params])

    def as_tensor(self, a):
        return tensor(np.ascontiguousarray(a, dtype=np.float32), device=self.device)

    @property
    def device(self):
        return next(iter(self.parameters())).device

    def encode(self, x, y_onehot):
        h = self.encoder(F.cat([x, y_onehot], dim=1))                            # (N, dim_x + 10)
        return self.fc_mu(h), bounded(self.fc_logvar(h), self.lo, self.hi)

    def decode(self, z, y_onehot):
        out = self.decoder(F.cat([z, y_onehot], dim=1))
        if self.likelihood.n_params == 1:
            return (out,)
        mean, logvar = out.split(self.dim_x, dim=1)
        return mean, bounded(logvar, self.lo, self.hi)

    def neg_bound(self, x, labels, rng):
        """L(x, y) per sample (Tensor (N,)) with one z ~ q(z | x, y): -log p(x|y,z) + KL - log p(y)."""
        y1 = _one_hot(labels, self)
        mu, logvar = self.encode(x, y1)
        z = mu + (0.5 * logvar).exp() * self.as_tensor(rng.standard_normal(mu.shape))
        log_px = self.likelihood(self.decode(z, y1)).log_prob(x)
        return -log_px + F.kl_normal_standard(mu, logvar, reduction="none") - LOG_PRIOR_Y

    def unlabelled_bound(self, x, rng):
        """U(x) per sample: sum_y q(y|x) L(x, y) - H(q(y|x)), the label summed out exactly (the
        batch is repeated once per class)."""
        n = x.shape[0]
        log_q = F.log_softmax(self.classifier(x), dim=1)                         # (N, 10)
        q = log_q.exp()
        xs = F.cat([x] * N_CLASSES, dim=0)                                       # (10 N, dim_x), class-major
        ys = np.repeat(np.arange(N_CLASSES), n)
        bound = self.neg_bound(xs, ys, rng).reshape(N_CLASSES, n).transpose(0, 1)  # (N, 10)
        return (q * (bound + log_q)).sum(dim=1)                                  # E_q[L] - H(q)

    def loss(self, x_u, x_l, y_l, alpha, rng):
        """J^alpha with means over the batches; returns (loss, stats)."""
        u = self.unlabelled_bound(x_u, rng).mean()
        l_bound = self.neg_bound(x_l, y_l, rng).mean()
        ce = F.cross_entropy(self.classifier(x_l), self.as_tensor(y_l).long())
        return u + l_bound + alpha * ce, {"unlabelled": float(u), "labelled": float(l_bound),
                                          "ce": float(ce)}

    def sample_means(self, n, rng):
        """E[x | y, z] for y = r % 10 (r = 0..n-1) and z ~ N(0, I): NumPy (n, dim_x)."""
        labels = np.arange(n) % N_CLASSES
        z = rng.standard_normal((n, self.latent_dim))
        with no_grad():
            params = self.decode(self.as_tensor(z), _one_hot(labels, self))
            return self.likelihood(params).mean.cpu().numpy()

    def predict(self, x_np, batch=1000):
        """argmax_y q(y | x) for NumPy inputs (N, dim_x)."""
        out = []
        with no_grad():
            for s in range(0, len(x_np), batch):
                out.append(self.classifier(self.as_tensor(x_np[s:s + batch])).cpu().numpy().argmax(1))
        return np.concatenate(out)

    def log_weights(self, x, c, k, rng):
        """log p(x|y=c,z_i) + log p(z_i) - log q(z_i|x,y=c) for k samples per item, float64
        Tensor (k, N) (x a Tensor (N, dim_x), c a class)."""
        b = x.shape[0]
        q = DiagonalNormal(*self.encode(x, _one_hot(np.full(b, c), self))).to(float64)
        eps = tensor(rng.standard_normal((k, b, self.latent_dim)), device=self.device)
        z = q.rsample(eps)                                                      # (k, b, d)
        params = self.decode(z.reshape(k * b, -1).float(), _one_hot(np.full(k * b, c), self))
        log_px = self.likelihood(params).to(float64).log_prob(F.cat([x] * k, dim=0))
        return log_px.reshape(k, b) + standard_normal_log_prob(z) - q.log_prob(z)

    def iw_log_likelihood(self, x_np, k, rng, batch=100):
        """log p(x) = log sum_y p(y) p(x | y), each p(x | y) by importance sampling with k
        samples of q(z | x, y); float64 per sample."""
        out = np.empty(len(x_np))
        with no_grad():
            for s in range(0, len(x_np), batch):
                xb = self.as_tensor(x_np[s:s + batch])
                b = xb.shape[0]
                per_class = [importance_weighted_log_likelihood(
                    lambda items, kc, c=c: self.log_weights(xb, c, kc, rng), b, k, rows=k * b)
                    + LOG_PRIOR_Y for c in range(N_CLASSES)]
                stacked = np.stack(per_class)                                   # (10, b)
                top = stacked.max(axis=0)
                out[s:s + b] = np.log(np.exp(stacked - top).sum(axis=0)) + top  # log sum_y
        return out


@dataclass
class SemiSupervisedConfig:
    labels: int = 100               # labelled training images, balanced (labels / 10 per class)
    label_seed: int = 0             # seed of the choice of labelled images
    m1_latent_dim: int = 50         # M1: dimension of z1 (the paper: 50)
    m1_hidden: int = 600            # M1: hidden width (the paper: two layers of 600)
    m1_depth: int = 2               # M1: hidden layers
    m1_epochs: int = 100            # M1: VAE training epochs (before the classifier / M2)
    latent_dim: int = 50            # M2: dimension of z (z2 for M1+M2)
    hidden: int = 500               # M2: hidden width of its three MLPs
    alpha: float = 1.0              # M2: weight of the mean classification loss
    classifier_epochs: int = 50     # M1: epochs of the classifier on the labelled features
    iw_samples: int = 100           # k of the importance-weighted log p(x) (0: off)


class SemiSupervised(GenerativeModel):
    """Shared by m1, m2 and m1m2: the labelled subset, the M1 VAE, the test error."""
    Config = SemiSupervisedConfig
    select = "error"
    train_defaults = {"epochs": 100, "lr": 1e-3, "batch_size": 100}
    scored_samples = 10000
    uses_m1 = True
    uses_m2 = True

    def __init__(self, config=None):
        super().__init__(config or SemiSupervisedConfig())
        c = self.config
        for name in ("m1_latent_dim", "m1_hidden", "m1_depth", "latent_dim", "hidden"):
            if getattr(c, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(c, name)}")
        if c.alpha < 0 or c.iw_samples < 0 or c.m1_epochs < 0 or c.classifier_epochs < 0:
            raise ValueError("alpha, iw_samples, m1_epochs and classifier_epochs must be >= 0")
        if self.uses_m1:
            self.m1 = MLPVAE(VAEConfig(latent_dim=c.m1_latent_dim, hidden=c.m1_hidden,
                                       depth=c.m1_depth, iw_samples=c.iw_samples))
        self._labelled = None

    # -- data ------------------------------------------------------------------------------------
    def _set_labelled(self, data):
        idx = labelled_indices(data.train.labels, self.config.labels, self.config.label_seed)
        self._labelled = (data.train.images[idx], data.train.labels[idx])

    def labelled_batch(self, rng, size=100):
        """A batch drawn (with replacement) from the labelled images."""
        x, y = self._labelled
        pick = rng.integers(0, len(x), size=min(size, len(x)))
        return x[pick], y[pick]

    def m1_phase(self, data):
        ev = (lambda: self.m1.evaluate(data.val, iw_samples=0)) if data.val is not None else None
        self.m1._train_size = len(data.train)
        return Phase("m1", self.m1.parameters, self.m1.training_loss, epochs=self.config.m1_epochs,
                     evaluate=ev, prepare=self.m1.prepare_batch)

    def features(self, images):
        """M1's posterior means mu^f(x) (float32 (N, d1)) of [0, 1] images."""
        return self.m1.posterior_means(images)[0].astype(np.float32)

    def _val_error(self, data):
        return (lambda: {"error": self.error(data.val)}) if data.val is not None else None

    def error(self, dataset) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def evaluate(self, dataset):
        """``error``: the share of misclassified images; with ``iw_samples`` k > 0 also the
        likelihood figures of the generative part (see the subclasses)."""
        return {"error": self.error(dataset)}

    def save_samples(self, n, rng, path):
        from .. import plots as img
        return img.save_image_grid(self.sample(n, rng), path, nrow=10, scale=2)

    def pictures(self, out_dir, dataset, rng):
        import os
        return [self.save_samples(100, rng, os.path.join(out_dir, "samples.png"))]


@register
class M1(SemiSupervised):
    """M1: a VAE trained on every training image, then a softmax classifier (one hidden layer)
    on the features mu^f(x) of the labelled images only."""
    model_name = "m1"
    description = "semi-supervised M1: VAE features + a classifier on the few labelled codes"
    uses_m2 = False

    def __init__(self, config=None):
        super().__init__(config)
        self.head = _mlp([self.config.m1_latent_dim, 100, N_CLASSES])

    def classifier_loss(self, batch, rng):
        x, y = self.labelled_batch(rng)              # the batch of the iterator is not used
        with no_grad():
            feats = self.m1.encode(self.as_tensor(x))[0]
        ce = F.cross_entropy(self.head(feats), self.as_tensor(y).long())
        return ce, {}

    def phases(self, data):
        self._set_labelled(data)
        return [self.m1_phase(data),
                Phase("classifier", self.head.parameters, self.classifier_loss,
                      epochs=self.config.classifier_epochs, evaluate=self._val_error(data),
                      select="error")]

    def error(self, dataset):
        with no_grad():
            logits = self.head(self.as_tensor(self.features(dataset.images))).cpu().numpy()
        return float(np.mean(logits.argmax(1) != dataset.labels))

    def evaluate(self, dataset):
        out = super().evaluate(dataset)
        if self.config.iw_samples:
            vae = self.m1.evaluate(dataset)
            out.update({"elbo_nats": vae["elbo_nats"], "nll_nats": vae["nll_nats"]})
        return out

    def sample(self, n, rng):
        return self.m1.sample(n, rng)


@register
class M2(SemiSupervised):
    """M2 on the pixels (Bernoulli p(x | y, z), dynamic binarization)."""
    model_name = "m2"
    description = "semi-supervised M2: the label as a partly observed latent variable"
    uses_m1 = False

    def __init__(self, config=None):
        super().__init__(config)
        c = self.config
        self.m2 = M2Net(28 * 28, c.latent_dim, c.hidden, Family(Bernoulli), (-10.0, 10.0))

    def m2_input(self, images, rng=None):
        """Binarized pixels (N, 784): fresh per call with ``rng`` (training), else fixed."""
        x = images.reshape(len(images), -1)                              # (N, 1, 28, 28) -> (N, 784)
        return static_binarize(x, seed=0) if rng is None else dynamic_binarize(x, rng)

    def prepare_batch(self, arrays, rng):
        """Host side: (images, labels) of the iterator -> (binarized unlabelled images, a
        binarized labelled batch, its labels); the iterator's labels are not used."""
        x_u = self.m2_input(arrays[0], rng)
        x_l, y_l = self.labelled_batch(rng)
        return x_u, self.m2_input(x_l, rng), y_l

    def m2_loss(self, batch, rng):
        x_u, x_l, y_l = batch
        return self.m2.loss(x_u, x_l, y_l.cpu().numpy(), self.config.alpha, rng)

    def phases(self, data):
        self._set_labelled(data)
        return [Phase("m2", self.m2.parameters, self.m2_loss, evaluate=self._val_error(data),
                      select="error", prepare=self.prepare_batch)]

    def error(self, dataset):
        return float(np.mean(self.m2.predict(self.m2_input(dataset.images)) != dataset.labels))

    def evaluate(self, dataset):
        out = super().evaluate(dataset)
        if self.config.iw_samples:
            ll = self.m2.iw_log_likelihood(self.m2_input(dataset.images), self.config.iw_samples,
                                           np.random.default_rng(12345))
            out["nll_nats"] = float(-np.mean(ll))
        return out

    def sample(self, n, rng):
        """Class-conditional samples: row r is digit r % 10, z ~ N(0, I)."""
        return self.m2.sample_means(n, rng).reshape(n, 1, 28, 28)


@register
class M1M2(SemiSupervised):
    """M1+M2: M1's VAE first, then M2 on its codes z1 ~ q(z1 | x) (fresh each step), with a
    Gaussian p(z1 | y, z2) of learned variance; the classifier is q(y | z1 = mu^f(x))."""
    model_name = "m1m2"
    description = "semi-supervised M1+M2: M2 on the latent codes of M1"

    def __init__(self, config=None):
        super().__init__(config)
        c = self.config
        self.m2 = M2Net(c.m1_latent_dim, c.latent_dim, c.hidden, Family(Normal), (-10.0, 10.0))

    def codes(self, x, rng):
        """z1 ~ q(z1 | x) for a Tensor of [0, 1] images (float32 (N, d1)), no gradient into M1."""
        with no_grad():
            q = self.m1.posterior(x).to(float64)
            return q.rsample(tensor(rng.standard_normal(q.mu.shape), device=x.device)).float()

    def m2_loss(self, batch, rng):
        x_u = self.codes(batch[0], rng)                                  # labels of the batch unused
        x_l, y_l = self.labelled_batch(rng)
        return self.m2.loss(x_u, self.codes(self.as_tensor(x_l), rng), y_l, self.config.alpha, rng)

    def phases(self, data):
        self._set_labelled(data)
        return [self.m1_phase(data),
                Phase("m2", self.m2.parameters, self.m2_loss, evaluate=self._val_error(data),
                      select="error")]

    def error(self, dataset):
        return float(np.mean(self.m2.predict(self.features(dataset.images)) != dataset.labels))

    def evaluate(self, dataset):
        """``error``, and (k > 0) M1's ELBO / NLL on the images (``m1_elbo_nats``,
        ``m1_nll_nats``): the stacked model's own likelihood is not estimated."""
        out = super().evaluate(dataset)
        if self.config.iw_samples:
            vae = self.m1.evaluate(dataset)
            out.update({"m1_elbo_nats": vae["elbo_nats"], "m1_nll_nats": vae["nll_nats"]})
        return out

    def sample(self, n, rng):
        """x from y (row r: digit r % 10), z2 ~ N(0, I), z1 = mean of p(z1 | y, z2), x = M1's
        decoder mean at z1."""
        return self.m1.decode_to_images(self.m2.sample_means(n, rng))
