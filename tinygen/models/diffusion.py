"""Denoising diffusion (Ho, Jain, Abbeel 2020, "Denoising Diffusion Probabilistic Models"): the
forward noising process, its posterior, the simple loss, the variational bound, and the ancestral
(DDPM) and DDIM (Song, Meng, Ermon 2021) samplers, with classifier-free guidance (Ho & Salimans
2022). Kurmi's lecture on autoencoders and autoregressive models lists diffusion models among the
basic building blocks of generative modelling; this module is the math, independent of the
network (the U-Net of :mod:`tinygen.models.unet` predicts the noise).

Time steps are 0-based here: index i = 0..T-1 is the paper's t = i + 1; beta[i] = beta_{i+1}.

Forward process, with alpha_t = 1 - beta_t and alpha-bar_t = prod_{s <= t} alpha_s:

    q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I)
    q(x_t | x_0)     = N(sqrt(alpha-bar_t) x_0, (1 - alpha-bar_t) I)                       (1)
    i.e. x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) eps,  eps ~ N(0, I)

Posterior (Gaussian, closed form):

    q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I)                                             (2)
    mu~_t   = sqrt(alpha-bar_{t-1}) beta_t / (1 - alpha-bar_t) x_0
              + sqrt(alpha_t) (1 - alpha-bar_{t-1}) / (1 - alpha-bar_t) x_t
    beta~_t = (1 - alpha-bar_{t-1}) / (1 - alpha-bar_t) beta_t          (alpha-bar_0 = 1)

A network eps_theta(x_t, t) predicts the noise; x_0 is then estimated as
x^_0 = (x_t - sqrt(1 - alpha-bar_t) eps_theta) / sqrt(alpha-bar_t), and the reverse step is
p(x_{t-1} | x_t) = N(mu~_t(x^_0, x_t), beta~_t I). The **simple loss** (Ho et al., eq. 14) is

    L_simple = E_{t ~ U{1..T}, x_0, eps} || eps - eps_theta(x_t, t) ||^2                      (3)

and the **variational bound** on -log p(x_0) is

    L = KL(q(x_T | x_0) || N(0, I)) + sum_{t=2}^T KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))
        - log p(x_0 | x_1)                                                                  (4)

with a discretized Gaussian decoder p(x_0 | x_1) over 256 gray levels in [-1, 1] (Ho et al.
section 3.3), reported in bits per dimension.

Samplers:

* ancestral DDPM: x_T ~ N(0, I), then x_{t-1} ~ p(x_{t-1} | x_t) for t = T..1 (T network calls);
* DDIM (Song et al., eq. 12) on a sub-sequence tau_1 < ... < tau_S of the steps: with
  x^_0 and eps^ from the network at tau_i and a = alpha-bar_{tau_i}, a' = alpha-bar_{tau_{i-1}},

      x_{tau_{i-1}} = sqrt(a') x^_0 + sqrt(1 - a' - sigma^2) eps^ + sigma z,
      sigma = eta sqrt((1 - a') / (1 - a)) sqrt(1 - a / a'),                                (5)

  eta = 0 deterministic (an ODE sampler), eta = 1 the DDPM posterior's variance.

Schedules: **linear** (Ho et al.): beta from 1e-4 to 0.02 over T = 1000 steps; **cosine**
(Nichol & Dhariwal 2021, "Improved DDPM"): alpha-bar_t = f(t) / f(0), f(t) = cos^2(pi/2 (t/T +
s) / (1 + s)), s = 0.008, beta_t = 1 - alpha-bar_t / alpha-bar_{t-1} clipped at 0.999.

**Classifier-free guidance**: one network is trained with the label and, for a share of the
batch, with a "null" label; at sampling the two predictions are mixed,
eps^ = eps(x_t, t, null) + w (eps(x_t, t, y) - eps(x_t, t, null)), w = 1 the plain conditional
model, w > 1 sharper, more typical samples.
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd import no_grad
from ..backend import get_array_module, to_numpy
from ..tensor import Tensor, tensor
from .. import functional as F

__all__ = ["linear_betas", "cosine_betas", "make_betas", "GaussianDiffusion",
           "classifier_free_guidance", "normal_kl", "discretized_gaussian_log_likelihood"]


def linear_betas(steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
    """Ho et al.'s schedule: beta_1..beta_T evenly spaced from ``beta_start`` to ``beta_end``,
    (T,) float64. (With far fewer than 1000 steps alpha-bar_T stays well above 0.)"""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return np.linspace(beta_start, beta_end, steps, dtype=np.float64)


def cosine_betas(steps: int = 1000, s: float = 0.008, max_beta: float = 0.999):
    """Nichol & Dhariwal's cosine schedule: (T,) float64."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    f = np.cos((np.arange(steps + 1, dtype=np.float64) / steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]                                  # alpha-bar_0 .. alpha-bar_T
    return np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], max_beta)


def make_betas(schedule: str, steps: int):
    """``schedule`` "linear" or "cosine" with ``steps`` steps."""
    if schedule == "linear":
        return linear_betas(steps)
    if schedule == "cosine":
        return cosine_betas(steps)
    raise ValueError(f"schedule must be 'linear' or 'cosine', got {schedule!r}")


def normal_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) per element (arrays or floats; the log
    variances are floats here)."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + math.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * math.exp(-logvar2))


def _std_normal_cdf(x):
    """Phi(x) through erf (Abramowitz & Stegun 7.1.26, absolute error < 1.5e-7), xp-agnostic."""
    xp = get_array_module(x)
    z = xp.abs(x) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
                                                                         + t * 1.061405429))))
    erf = 1.0 - poly * xp.exp(-z * z)
    return 0.5 * (1.0 + xp.sign(x) * erf)


def discretized_gaussian_log_likelihood(x, mean, log_scale, bins: int = 256):
    """log P(x) per element for data x on the grid of ``bins`` levels in [-1, 1] under
    N(mean, e^(2 log_scale)) integrated over each level's bin; the edge bins reach to -inf and
    +inf (Ho et al. section 3.3). Arrays (float64)."""
    xp = get_array_module(x)
    half = 1.0 / (bins - 1)                                # half a bin on [-1, 1]
    inv = xp.exp(-log_scale)
    upper = xp.where(x > 1.0 - 1e-3, 1.0, _std_normal_cdf((x - mean + half) * inv))
    lower = xp.where(x < -1.0 + 1e-3, 0.0, _std_normal_cdf((x - mean - half) * inv))
    return xp.log(xp.maximum(upper - lower, 1e-12))


class GaussianDiffusion:
    """The schedule's constants (float64 NumPy, index i = paper's t = i + 1) and the math of the
    module docstring. Methods that take Tensors return Tensors of the input's dtype and device.

    An ``eps_fn(x_t, t)`` maps x_t (N, ...) and integer steps t (N,) to the predicted noise."""

    def __init__(self, betas):
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size < 1 or not np.all((betas > 0) & (betas < 1)):
            raise ValueError(f"betas must be a non-empty 1-D array in (0, 1), got shape "
                             f"{betas.shape}")
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alpha_bar = np.cumprod(self.alphas)
        self.alpha_bar_prev = np.concatenate([[1.0], self.alpha_bar[:-1]])
        # posterior (2): beta~ and the two coefficients of mu~
        self.posterior_var = betas * (1.0 - self.alpha_bar_prev) / (1.0 - self.alpha_bar)
        # beta~_1 = 0: its log is taken from beta~_2 (as in Ho et al.'s code)
        self.posterior_logvar = np.log(np.append(self.posterior_var[1], self.posterior_var[1:])
                                       if self.steps > 1 else np.array([betas[0]]))
        self.coef_x0 = np.sqrt(self.alpha_bar_prev) * betas / (1.0 - self.alpha_bar)
        self.coef_xt = np.sqrt(self.alphas) * (1.0 - self.alpha_bar_prev) / (1.0 - self.alpha_bar)

    @property
    def steps(self) -> int:
        return len(self.betas)

    def _check_t(self, t, n):
        t = np.asarray(t)
        if t.shape != (n,) or t.dtype.kind not in "iu" or t.min() < 0 or t.max() >= self.steps:
            raise ValueError(f"t must be (N,) = ({n},) integer steps in [0, {self.steps - 1}], "
                             f"got shape {t.shape} and dtype {t.dtype}")
        return t

    @staticmethod
    def _at(values, t, like: Tensor) -> Tensor:
        """values[t] as a Tensor (N, 1, 1, ...) broadcasting against ``like``."""
        v = np.asarray(values[t]).reshape((-1,) + (1,) * (like.ndim - 1))
        return tensor(v.astype(like.dtype), device=like.device)

    def sample_timesteps(self, n: int, rng) -> np.ndarray:
        """t ~ U{0..T-1} for a batch: (n,) int64."""
        return rng.integers(0, self.steps, n).astype(np.int64)

    # -- forward process and posterior -------------------------------------------------------------
    def q_sample(self, x0: Tensor, t, noise: Tensor) -> Tensor:
        """(1): x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) noise."""
        t = self._check_t(t, x0.shape[0])
        return self._at(np.sqrt(self.alpha_bar), t, x0) * x0 + \
            self._at(np.sqrt(1.0 - self.alpha_bar), t, x0) * noise

    def q_posterior(self, x0: Tensor, xt: Tensor, t):
        """(2): (mu~_t, beta~_t, log beta~_t (clipped at t = 1)) for q(x_{t-1} | x_t, x_0)."""
        t = self._check_t(t, x0.shape[0])
        mean = self._at(self.coef_x0, t, x0) * x0 + self._at(self.coef_xt, t, x0) * xt
        return mean, self._at(self.posterior_var, t, x0), self._at(self.posterior_logvar, t, x0)

    def predict_x0(self, xt: Tensor, t, eps: Tensor) -> Tensor:
        """x^_0 = (x_t - sqrt(1 - alpha-bar_t) eps) / sqrt(alpha-bar_t)."""
        t = self._check_t(t, xt.shape[0])
        return self._at(np.sqrt(1.0 / self.alpha_bar), t, xt) * xt - \
            self._at(np.sqrt(1.0 / self.alpha_bar - 1.0), t, xt) * eps

    def simple_loss(self, eps_fn, x0: Tensor, rng) -> Tensor:
        """(3) on a batch, one t and one eps per image (drawn from the NumPy ``rng``)."""
        t = self.sample_timesteps(x0.shape[0], rng)
        noise = tensor(rng.standard_normal(x0.shape).astype(x0.dtype), device=x0.device)
        return F.mse_loss(eps_fn(self.q_sample(x0, t, noise), t), noise)

    # -- samplers ----------------------------------------------------------------------------------
    def p_step(self, eps_fn, xt: Tensor, step: int, rng, clip=True) -> Tensor:
        """One ancestral step x_t -> x_{t-1} ~ N(mu~_t(x^_0, x_t), beta~_t I) at index ``step``
        (no noise at the last step)."""
        t = np.full(xt.shape[0], step, np.int64)
        x0 = self.predict_x0(xt, t, eps_fn(xt, t))
        if clip:
            x0 = x0.clamp(-1.0, 1.0)
        mean, var, _ = self.q_posterior(x0, xt, t)
        if step == 0:
            return mean
        z = tensor(rng.standard_normal(xt.shape).astype(xt.dtype), device=xt.device)
        return mean + var.sqrt() * z

    def ddim_step(self, eps_fn, xt: Tensor, step: int, prev: int, rng, eta=0.0,
                  clip=True) -> Tensor:
        """(5): x_{tau_i} -> x_{tau_{i-1}} for indices ``step`` > ``prev`` (prev = -1: to x_0)."""
        t = np.full(xt.shape[0], step, np.int64)
        eps = eps_fn(xt, t)
        x0 = self.predict_x0(xt, t, eps)
        if clip:
            x0 = x0.clamp(-1.0, 1.0)
            # the noise direction consistent with the clipped x^_0 (as in Song et al.'s code)
            a = self.alpha_bar[step]
            eps = (xt - math.sqrt(a) * x0) * (1.0 / math.sqrt(1.0 - a))
        a, a_prev = self.alpha_bar[step], (self.alpha_bar[prev] if prev >= 0 else 1.0)
        sigma = eta * math.sqrt((1.0 - a_prev) / (1.0 - a)) * math.sqrt(1.0 - a / a_prev)
        out = math.sqrt(a_prev) * x0 + math.sqrt(max(1.0 - a_prev - sigma ** 2, 0.0)) * eps
        if sigma > 0:
            z = tensor(rng.standard_normal(xt.shape).astype(xt.dtype), device=xt.device)
            out = out + sigma * z
        return out

    def ddim_timesteps(self, sampling_steps: int) -> list:
        """tau_S > ... > tau_1: ``sampling_steps`` indices evenly spaced over 0..T-1,
        descending (the last is 0)."""
        if not 1 <= sampling_steps <= self.steps:
            raise ValueError(f"sampling_steps must be in [1, {self.steps}], got "
                             f"{sampling_steps}")
        taus = np.round(np.linspace(0, self.steps - 1, sampling_steps)).astype(np.int64)
        return sorted(set(int(v) for v in taus), reverse=True)

    def sample(self, eps_fn, shape, rng, method="ddim", sampling_steps=50, eta=0.0,
               trajectory=0, progress=False, device="cpu", dtype=np.float32, clip=True):
        """Draw x_0 of ``shape`` from x_T ~ N(0, I): ``method`` "ddpm" (all T ancestral steps)
        or "ddim" (``sampling_steps`` steps, eq. 5 with ``eta``). Returns ``(x0, frames)``:
        NumPy arrays, ``frames`` (trajectory, *shape) holding x_t at ``trajectory`` evenly
        spaced points from noise to the end (empty when 0)."""
        if method not in ("ddpm", "ddim"):
            raise ValueError(f"method must be 'ddpm' or 'ddim', got {method!r}")
        steps = list(range(self.steps - 1, -1, -1)) if method == "ddpm" else \
            self.ddim_timesteps(sampling_steps)
        keep = set(np.round(np.linspace(0, len(steps), trajectory)).astype(int)) \
            if trajectory else set()
        x = tensor(rng.standard_normal(shape).astype(dtype), device=device)
        frames = [x.cpu().numpy()] if 0 in keep else []
        iterator = steps
        if progress:
            from tqdm.auto import tqdm
            iterator = tqdm(steps, desc=method, leave=False)
        with no_grad():
            for k, step in enumerate(iterator):
                if method == "ddpm":
                    x = self.p_step(eps_fn, x, step, rng, clip)
                else:
                    prev = steps[k + 1] if k + 1 < len(steps) else -1
                    x = self.ddim_step(eps_fn, x, step, prev, rng, eta, clip)
                if k + 1 in keep:
                    frames.append(x.cpu().numpy())
        frames = np.stack(frames) if frames else np.zeros((0,) + tuple(shape), dtype)
        return x.cpu().numpy(), frames

    # -- the variational bound ---------------------------------------------------------------------
    def prior_kl(self, x0):
        """KL(q(x_T | x_0) || N(0, I)) per image, in nats: x0 (N, ...) float64 array."""
        a = self.alpha_bar[-1]
        kl = normal_kl(math.sqrt(a) * x0, math.log(1.0 - a), 0.0, 0.0)
        return to_numpy(kl.reshape(len(x0), -1).sum(axis=1))

    def bound_term(self, eps_fn, x0: Tensor, step: int, rng):
        """The term of (4) at index ``step`` per image, in nats (float64 NumPy (N,)): for
        step >= 1 KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)), for step 0 -log p(x_0 | x_1)."""
        n = x0.shape[0]
        t = np.full(n, step, np.int64)
        noise = tensor(rng.standard_normal(x0.shape).astype(x0.dtype), device=x0.device)
        with no_grad():
            xt = self.q_sample(x0, t, noise)
            x0_hat = self.predict_x0(xt, t, eps_fn(xt, t)).clamp(-1.0, 1.0)
            mean_p, _, logvar = self.q_posterior(x0_hat, xt, t)
            x0_64, mean_p = x0.double().array, mean_p.double().array
            logvar = float(self.posterior_logvar[step])
            if step == 0:
                ll = discretized_gaussian_log_likelihood(x0_64, mean_p, 0.5 * logvar)
                return -to_numpy(ll.reshape(n, -1).sum(axis=1))
            mean_q, _, _ = self.q_posterior(x0.double(), xt.double(), t)
            kl = normal_kl(mean_q.array, logvar, mean_p, logvar)
            return to_numpy(kl.reshape(n, -1).sum(axis=1))

    def variational_bound(self, eps_fn, x0: Tensor, rng, timesteps=None):
        """(4) per image in nats, float64 NumPy (N,). ``timesteps`` None sums every term (T
        network calls); an int K estimates the sum of the KL terms at indices 1..T-1 without
        bias from K stratified draws (one uniform index in each of K equal strata, weighted by
        the stratum's size); the prior term and the decoder term are always exact."""
        total = self.prior_kl(x0.double().array) + self.bound_term(eps_fn, x0, 0, rng)
        middle = np.arange(1, self.steps)
        if timesteps is None or timesteps >= len(middle):
            for step in middle:
                total = total + self.bound_term(eps_fn, x0, int(step), rng)
            return total
        if timesteps < 1:
            raise ValueError(f"timesteps must be >= 1 or None, got {timesteps}")
        for stratum in np.array_split(middle, timesteps):
            step = int(rng.choice(stratum))
            total = total + len(stratum) * self.bound_term(eps_fn, x0, step, rng)
        return total


def classifier_free_guidance(eps_model, labels, null_label: int, scale: float):
    """An ``eps_fn(x_t, t)`` for :meth:`GaussianDiffusion.sample` mixing the conditional and
    unconditional predictions of ``eps_model(x, t, labels)`` (one batch of 2N):
    eps = eps_null + scale (eps_y - eps_null). ``scale`` 1 is the conditional model alone."""
    labels = np.asarray(labels, np.int64)
    if scale == 1.0:
        return lambda x, t: eps_model(x, t, labels)
    both = np.concatenate([labels, np.full_like(labels, null_label)])

    def eps_fn(x, t):
        out = eps_model(F.cat([x, x], dim=0), np.concatenate([t, t]), both)
        cond, uncond = out[:len(labels)], out[len(labels):]
        return uncond + scale * (cond - uncond)
    return eps_fn
