"""Probability distributions on Tensors: the likelihoods, posteriors, priors and the
importance-weighted estimator that the latent-variable models share (one of each).

Every ``log_prob`` is a differentiable Tensor expression. Training uses it in the model's dtype
(float32); evaluation in float64 simply casts the parameters first (``dist.to(float64)``) -- there
is no second NumPy copy of any formula.

Observation models p(x | z) (``log_prob(x)`` sums over everything but the batch axis, giving one
value per sample (N,)):

* :class:`Bernoulli` (logits l):  log p = -sum BCE(l, x), through the stable fused BCE on logits;
* :class:`Normal` (mean, log-variance):  log p = -1/2 sum (log 2 pi + logvar + (x - mean)^2 / var);
* :class:`FixedNormal` (mean, a fixed std):  the same with logvar = 2 log std;
* :class:`Categorical` (logits over classes, axis 1).

Latent variables: :class:`DiagonalNormal` (mu, logvar) over the last axis, with the
reparameterized sample ``rsample(eps) = mu + sigma eps``, ``log_prob(z)`` and the closed-form
``kl_standard()`` = KL(q || N(0, I)); :func:`standard_normal_log_prob`.

:func:`importance_weighted_log_likelihood` is the one estimator of

    log p(x) ~= log (1/k) sum_{i=1..k} p(x | z_i) p(z_i) / q(z_i | x),   z_i ~ q(z | x)

(Burda et al. 2015), chunked so that any k fits in memory, reduced by one log-mean-exp in float64;
:func:`logmeanexp` is the same reduction on a Tensor, differentiable (the IWAE training bound).
"""
from __future__ import annotations

import math

import numpy as np

from . import functional as F
from .backend import to_numpy
from .tensor import Tensor

__all__ = ["LOG_2PI", "Bernoulli", "Normal", "FixedNormal", "Categorical", "DiagonalNormal",
           "Family", "standard_normal_log_prob", "logmeanexp",
           "importance_weighted_log_likelihood", "sum_per_sample"]

LOG_2PI = math.log(2.0 * math.pi)


def sum_per_sample(t: Tensor) -> Tensor:
    """(N, ...) -> (N,): the sum over everything but the batch axis."""
    return t.reshape(t.shape[0], -1).sum(dim=1)


class _Distribution:
    """Parameters are Tensors; ``to(dtype)`` gives the same distribution with cast parameters."""
    params: tuple = ()
    n_params = 1          # Tensors a network outputs to parameterize it (a decoder's outputs)
    discrete = False      # a probability mass (True) or a density (False)

    def __init__(self, *params, **fixed):
        self.params = tuple(params)
        self.fixed = fixed

    def to(self, dtype):
        """The same distribution with its parameters cast to ``dtype`` (None: unchanged)."""
        if dtype is None or all(p.dtype == dtype for p in self.params):
            return self
        return type(self)(*(p.to(dtype) for p in self.params), **self.fixed)

    def _x(self, x):
        """x cast to the parameters' dtype and shaped like the first parameter."""
        p = self.params[0]
        if not isinstance(x, Tensor):
            from .tensor import tensor
            x = tensor(np.asarray(x), device=p.device)
        return x.to(p.dtype).reshape(p.shape)


class Bernoulli(_Distribution):
    """Independent Bernoulli variables with logits l: p(x_j = 1) = sigmoid(l_j). log_prob is
    -BCE(l, x) summed per sample, computed on the logits (no sigmoid is taken to compute it)."""
    discrete = True

    def __init__(self, logits):
        super().__init__(logits)

    @property
    def logits(self):
        return self.params[0]

    def log_prob(self, x) -> Tensor:
        return -sum_per_sample(F.binary_cross_entropy_with_logits(self.logits, self._x(x),
                                                                  reduction="none"))

    @property
    def mean(self) -> Tensor:
        return F.sigmoid(self.logits)


class Normal(_Distribution):
    """Independent Gaussians N(mean, exp(logvar)) (a learned variance per element)."""
    n_params = 2

    def __init__(self, mean, logvar):
        super().__init__(mean, logvar)

    def log_prob(self, x) -> Tensor:
        mean, logvar = self.params
        return -sum_per_sample(F.gaussian_nll(mean, self._x(x), logvar, reduction="none"))

    @property
    def mean(self) -> Tensor:
        return self.params[0]


class FixedNormal(_Distribution):
    """Independent Gaussians N(mean, std^2) with one fixed std (e.g. the decoder of Fleuret's
    convolutional VAE)."""

    def __init__(self, mean, std):
        if not std > 0:
            raise ValueError(f"FixedNormal: std (the decoder_std) must be > 0, got {std}")
        super().__init__(mean, std=float(std))

    def log_prob(self, x) -> Tensor:
        mean, std = self.params[0], self.fixed["std"]
        d = self._x(x) - mean
        per_element = math.log(std) + 0.5 * LOG_2PI
        return -sum_per_sample(d * d) / (2.0 * std * std) - per_element * d[0].numel()

    @property
    def mean(self) -> Tensor:
        return self.params[0]


class Categorical(_Distribution):
    """A categorical distribution over axis 1 of ``logits`` (N, C, ...); log_prob of integer
    classes (N, ...) summed per sample."""
    discrete = True

    def __init__(self, logits):
        super().__init__(logits)

    def log_prob(self, y) -> Tensor:
        logits = self.params[0]
        y = y if isinstance(y, Tensor) else Tensor._wrap(logits._xp.asarray(y))
        return -sum_per_sample(F.cross_entropy(logits, y.long(), reduction="none")
                               .reshape(logits.shape[0], -1))

    @property
    def probs(self) -> Tensor:
        return F.softmax(self.params[0], dim=1)


class DiagonalNormal(_Distribution):
    """q(z) = N(mu, diag exp(logvar)) over the last axis (a VAE's approximate posterior)."""
    n_params = 2

    def __init__(self, mu, logvar):
        super().__init__(mu, logvar)

    @property
    def mu(self):
        return self.params[0]

    @property
    def logvar(self):
        return self.params[1]

    def rsample(self, eps) -> Tensor:
        """mu + sigma * eps (the reparameterization trick): eps ~ N(0, I) of mu's shape, or
        (k,) + mu's shape for k samples each."""
        return self.mu + (0.5 * self.logvar).exp() * eps

    def log_prob(self, z) -> Tensor:
        """log q(z) summed over the last axis; z broadcasts against mu (e.g. (k, N, d))."""
        mu, logvar = self.params
        return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 * (-logvar).exp()).sum(dim=-1)

    def kl_standard(self) -> Tensor:
        """KL(q || N(0, I)) = -1/2 sum_d (1 + logvar - mu^2 - exp(logvar)), per sample."""
        return F.kl_normal_standard(self.mu, self.logvar, reduction="none")


def standard_normal_log_prob(z) -> Tensor:
    """log N(z; 0, I) summed over the last axis."""
    return -0.5 * (z * z).sum(dim=-1) - 0.5 * z.shape[-1] * LOG_2PI


class Family:
    """A distribution class with its fixed arguments, made from a network's outputs:
    ``Family(FixedNormal, std=0.1)(params)`` is ``FixedNormal(*params, std=0.1)``."""

    def __init__(self, cls, **fixed):
        self.cls, self.fixed = cls, fixed
        self.n_params, self.discrete = cls.n_params, cls.discrete

    def __call__(self, params):
        return self.cls(*params, **self.fixed)

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.fixed.items())
        return f"Family({self.cls.__name__}{', ' + args if args else ''})"


def logmeanexp(t: Tensor, dim: int = 0) -> Tensor:
    """log mean exp(t) along ``dim``, stable and differentiable: logsumexp - log k."""
    return F.logsumexp(t, dim=dim) - math.log(t.shape[dim])


def importance_weighted_log_likelihood(log_weights, n: int, k: int, rows: int = 20000):
    """log (1/k) sum_i w_ij for items j < n, float64 NumPy (n,).

    ``log_weights(items, kc)`` returns the log-weights log p(x|z_i) + log p(z_i) - log q(z_i|x)
    of the items ``items`` (a slice) for ``kc`` fresh samples each, shape (kc, b), as a Tensor
    or an array. The work is chunked into about ``rows`` samples at a time: several items per
    chunk when k is small, several chunks of samples per item when k is large. The chunks of
    one group of items are concatenated and reduced by one log-mean-exp in float64.
    """
    if k < 1:
        raise ValueError(f"k (importance samples) must be >= 1, got {k}")
    per_item = max(1, min(k, rows))
    items = max(1, rows // per_item)
    out = np.empty(n)
    for s in range(0, n, items):
        sl = slice(s, min(n, s + items))
        parts = []
        for k0 in range(0, k, per_item):
            w = log_weights(sl, min(per_item, k - k0))
            parts.append(np.asarray(to_numpy(w.array if isinstance(w, Tensor) else w),
                                    np.float64))
        log_w = np.concatenate(parts)                                    # (k, b)
        top = log_w.max(axis=0)
        out[sl] = np.log(np.mean(np.exp(log_w - top), axis=0)) + top
    return out

