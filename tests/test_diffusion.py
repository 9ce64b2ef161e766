"""Diffusion math (issue 18): schedules, q(x_t | x_0), the posterior, samplers, the bound.

* the schedules' alpha-bar endpoints and shapes (linear: Ho et al.; cosine: Nichol & Dhariwal);
* q(x_t | x_0) in closed form against the step-by-step chain (its variance recursion and a
  Monte-Carlo run of the chain);
* the posterior q(x_{t-1} | x_t, x_0) against Bayes' rule for two Gaussians written directly;
* with a perfect epsilon oracle (the exact E[x_0 | x_t] of a tiny data set), DDIM and ancestral
  sampling land on the data points; sampling is seeded;
* the bound: zero KL terms for a perfect oracle on one point, the decoder term against SciPy's
  normal CDF, the stratified estimator's mean against the full sum;
* classifier-free guidance mixes the two predictions as written.
"""
import math

import numpy as np
import pytest

import tinygen
from tinygen.models.diffusion import (GaussianDiffusion, classifier_free_guidance,
                                      cosine_betas, discretized_gaussian_log_likelihood,
                                      linear_betas, make_betas)


def test_linear_schedule_endpoints():
    d = GaussianDiffusion(linear_betas(1000))
    assert d.betas[0] == pytest.approx(1e-4) and d.betas[-1] == pytest.approx(0.02)
    assert d.alpha_bar[0] == pytest.approx(1 - 1e-4, rel=1e-12)
    # prod (1 - beta_t) over 1000 linear steps: about 4.0e-5, so x_T is almost pure noise
    assert d.alpha_bar[-1] == pytest.approx(np.prod(1 - np.linspace(1e-4, 0.02, 1000)))
    assert 3e-5 < d.alpha_bar[-1] < 5e-5
    assert np.all(np.diff(d.alpha_bar) < 0)


def test_cosine_schedule_endpoints_and_shape():
    d = GaussianDiffusion(cosine_betas(1000))
    s = 0.008
    f = lambda t: math.cos((t / 1000 + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    # alpha-bar_t = f(t) / f(0) wherever beta is not clipped
    for t in (1, 10, 500, 900, 990):
        assert d.alpha_bar[t - 1] == pytest.approx(f(t) / f(0), rel=1e-9)
    assert d.alpha_bar[0] > 0.9999 and d.alpha_bar[-1] < 1e-6
    assert d.betas.max() <= 0.999 and np.all(np.diff(d.alpha_bar) < 0)
    # the cosine schedule destroys information more slowly in the middle than the linear one
    assert d.alpha_bar[499] > GaussianDiffusion(linear_betas(1000)).alpha_bar[499]
    with pytest.raises(ValueError, match="schedule must be"):
        make_betas("quadratic", 10)


def test_q_sample_closed_form_against_the_chain():
    d = GaussianDiffusion(linear_betas(20))
    # the chain's mean coefficient and variance, step by step
    mean_coef, var = 1.0, 0.0
    for t in range(20):
        mean_coef *= math.sqrt(d.alphas[t])
        var = d.alphas[t] * var + d.betas[t]
        assert mean_coef == pytest.approx(math.sqrt(d.alpha_bar[t]), rel=1e-12)
        assert var == pytest.approx(1 - d.alpha_bar[t], rel=1e-12)
    # Monte Carlo: run the chain x_{t} = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps
    rng = np.random.default_rng(0)
    x0 = np.array([0.7, -0.3])
    x = np.repeat(x0[None], 200_000, axis=0)
    for t in range(12):
        x = math.sqrt(d.alphas[t]) * x + math.sqrt(d.betas[t]) * rng.standard_normal(x.shape)
    np.testing.assert_allclose(x.mean(0), math.sqrt(d.alpha_bar[11]) * x0, atol=4e-3)
    np.testing.assert_allclose(x.var(0), 1 - d.alpha_bar[11], rtol=2e-2)
    # q_sample is the closed form with the given noise
    noise = rng.standard_normal((2, 1, 2, 2))
    x0t = tinygen.tensor(rng.uniform(-1, 1, (2, 1, 2, 2)))
    t = np.array([3, 17])
    xt = d.q_sample(x0t, t, tinygen.tensor(noise)).numpy()
    for i in range(2):
        np.testing.assert_allclose(xt[i], math.sqrt(d.alpha_bar[t[i]]) * x0t.numpy()[i]
                                   + math.sqrt(1 - d.alpha_bar[t[i]]) * noise[i], rtol=1e-12)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_posterior_against_bayes_rule(schedule):
    d = GaussianDiffusion(make_betas(schedule, 50))
    rng = np.random.default_rng(1)
    x0, xt = rng.uniform(-1, 1, (4, 3)), rng.standard_normal((4, 3))
    t = np.array([1, 7, 30, 49])
    mean, var, logvar = d.q_posterior(tinygen.tensor(x0), tinygen.tensor(xt), t)
    for i, s in enumerate(t):
        # prior q(x_{t-1} | x_0) = N(sqrt(ab_{t-1}) x0, 1 - ab_{t-1}); likelihood
        # q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t): precisions add
        ab_prev = d.alpha_bar[s - 1]
        precision = 1 / (1 - ab_prev) + d.alphas[s] / d.betas[s]
        direct_mean = (math.sqrt(ab_prev) * x0[i] / (1 - ab_prev)
                       + math.sqrt(d.alphas[s]) * xt[i] / d.betas[s]) / precision
        np.testing.assert_allclose(mean.numpy()[i], direct_mean, rtol=1e-9)
        assert var.numpy()[i, 0] == pytest.approx(1 / precision, rel=1e-9)
        assert logvar.numpy()[i, 0] == pytest.approx(math.log(1 / precision), rel=1e-9)
    # at the first step the posterior is the point x_0 (its variance is 0)
    m0, v0, _ = d.q_posterior(tinygen.tensor(x0), tinygen.tensor(xt), np.zeros(4, np.int64))
    np.testing.assert_allclose(m0.numpy(), x0, atol=1e-12)
    assert np.all(v0.numpy() == 0)


def mixture_oracle(diffusion, data):
    """The exact noise predictor for the empirical distribution of ``data`` (K, ...):
    E[eps | x_t] = (x_t - sqrt(ab) E[x_0 | x_t]) / sqrt(1 - ab), with posterior weights
    w_k proportional to N(x_t; sqrt(ab) x_k, (1 - ab) I)."""
    flat = data.reshape(len(data), -1)

    def eps_fn(xt, t):
        x = xt.numpy().reshape(len(t), -1).astype(np.float64)
        ab = diffusion.alpha_bar[t][:, None]                        # (N, 1)
        d2 = ((x[:, None, :] - np.sqrt(ab)[:, :, None] * flat[None]) ** 2).sum(-1)  # (N, K)
        logw = -d2 / (2 * (1 - ab))
        w = np.exp(logw - logw.max(1, keepdims=True))
        w /= w.sum(1, keepdims=True)
        x0 = w @ flat
        eps = (x - np.sqrt(ab) * x0) / np.sqrt(1 - ab)
        return tinygen.tensor(eps.reshape(xt.shape).astype(xt.numpy().dtype))
    return eps_fn


@pytest.mark.parametrize("method,schedule", [("ddim", "linear"), ("ddim", "cosine"),
                                             ("ddpm", "linear")])
def test_perfect_oracle_sampling_recovers_the_data(method, schedule):
    d = GaussianDiffusion(make_betas(schedule, 1000))
    data = np.random.default_rng(2).choice([-1.0, 1.0], (3, 1, 2, 2))  # three 2x2 "images"
    oracle = mixture_oracle(d, data)
    x, frames = d.sample(oracle, (16, 1, 2, 2), np.random.default_rng(3), method=method,
                         sampling_steps=50, trajectory=5, dtype=np.float64)
    dist = np.abs(x[:, None] - data[None]).reshape(16, 3, -1).max(-1).min(-1)   # (16,)
    assert dist.max() < 1e-3
    assert frames.shape == (5, 16, 1, 2, 2)
    np.testing.assert_array_equal(frames[-1], x)
    assert np.abs(frames[0]).mean() > 0.5                    # the first frame is the noise
    # at least two of the three points are reached (no collapse onto one)
    assert len({int(np.argmin(np.abs(xi - data).reshape(3, -1).max(-1))) for xi in x}) >= 2


def test_ddim_inverts_to_the_known_image_with_a_one_point_oracle():
    d = GaussianDiffusion(linear_betas(1000))
    x0 = np.random.default_rng(4).uniform(-0.9, 0.9, (1, 1, 4, 4))
    x, _ = d.sample(mixture_oracle(d, x0), (2, 1, 4, 4), np.random.default_rng(5),
                    method="ddim", sampling_steps=10, dtype=np.float64)
    np.testing.assert_allclose(x, np.repeat(x0, 2, axis=0), atol=1e-9)


def test_sampling_is_seeded():
    d = GaussianDiffusion(linear_betas(30))
    data = np.random.default_rng(2).uniform(-1, 1, (4, 1, 2, 2))
    oracle = mixture_oracle(d, data)
    for method, eta in (("ddpm", 0.0), ("ddim", 1.0)):
        a, _ = d.sample(oracle, (3, 1, 2, 2), np.random.default_rng(9), method, 10, eta)
        b, _ = d.sample(oracle, (3, 1, 2, 2), np.random.default_rng(9), method, 10, eta)
        c, _ = d.sample(oracle, (3, 1, 2, 2), np.random.default_rng(10), method, 10, eta)
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c)


def test_discretized_decoder_against_scipy():
    from scipy.stats import norm
    levels = np.array([-1.0, -1 + 2 / 255 * 40, 0 + 1 / 255, 1.0])
    mean, log_scale = np.array([-0.97, -0.6, 0.1, 0.95]), np.log(np.array([0.02, 0.1, 0.3, 0.05]))
    ours = discretized_gaussian_log_likelihood(levels, mean, log_scale)
    sd, h = np.exp(log_scale), 1 / 255
    upper = np.where(levels >= 1, 1.0, norm.cdf((levels + h - mean) / sd))
    lower = np.where(levels <= -1, 0.0, norm.cdf((levels - h - mean) / sd))
    np.testing.assert_allclose(ours, np.log(upper - lower), rtol=2e-5)
    # the probabilities of all 256 levels sum to 1
    grid = np.linspace(-1, 1, 256)
    total = np.exp(discretized_gaussian_log_likelihood(grid, 0.3 * np.ones(256),
                                                       np.log(0.2) * np.ones(256))).sum()
    assert total == pytest.approx(1.0, abs=1e-6)


def test_variational_bound_terms():
    d = GaussianDiffusion(linear_betas(40))
    x0 = np.random.default_rng(6).choice(np.linspace(-1, 1, 256), (2, 1, 3, 3))
    oracle = mixture_oracle(d, x0[:1])
    x = tinygen.tensor(x0[:1])
    rng = np.random.default_rng(0)
    # a perfect oracle for one point: every KL term vanishes
    for step in (1, 5, 39):
        assert d.bound_term(oracle, x, step, rng)[0] == pytest.approx(0.0, abs=1e-9)
    # the decoder term is -log of the bin mass around x_0 of N(x_0, beta~_2)
    from scipy.stats import norm
    sd, h = math.exp(0.5 * d.posterior_logvar[0]), 1 / 255
    v = x0[0].reshape(-1)
    mass = np.where(v >= 1, 1, norm.cdf(h / sd)) - np.where(v <= -1, 0, norm.cdf(-h / sd))
    assert d.bound_term(oracle, x, 0, rng)[0] == pytest.approx(-np.log(mass).sum(), rel=1e-5)
    # the stratified estimate of an imperfect model's bound is unbiased: mean of many draws
    imperfect = lambda xt, t: oracle(xt, t) * 0.8    # noqa: E731
    xs = tinygen.tensor(np.repeat(x0[:1], 64, axis=0))
    full = d.variational_bound(imperfect, xs, np.random.default_rng(1)).mean()
    est = np.mean([d.variational_bound(imperfect, xs, np.random.default_rng(s), timesteps=4)
                   .mean() for s in range(40)])
    assert est == pytest.approx(full, rel=0.05)
    assert full > d.variational_bound(oracle, xs, np.random.default_rng(1)).mean() + 1.0


def test_classifier_free_guidance_mixes_the_predictions():
    def eps_model(x, t, y):
        # "conditional" output: the label; "unconditional" (label 10): -1
        y = np.asarray(y, np.float64)
        return tinygen.tensor(np.where(y == 10, -1.0, y)[:, None]) + 0 * x

    x = tinygen.tensor(np.zeros((3, 1)))
    t = np.zeros(3, np.int64)
    guided = classifier_free_guidance(eps_model, [0, 2, 5], 10, 3.0)(x, t).numpy()[:, 0]
    np.testing.assert_allclose(guided, -1 + 3.0 * (np.array([0, 2, 5]) + 1))
    plain = classifier_free_guidance(eps_model, [0, 2, 5], 10, 1.0)(x, t).numpy()[:, 0]
    np.testing.assert_allclose(plain, [0, 2, 5])


def test_bad_input():
    d = GaussianDiffusion(linear_betas(10))
    x = tinygen.tensor(np.zeros((2, 1, 2, 2)))
    with pytest.raises(ValueError, match=r"t must be \(N,\)"):
        d.q_sample(x, np.array([0, 10]), x)
    with pytest.raises(ValueError, match="betas must be"):
        GaussianDiffusion([0.1, 1.2])
    with pytest.raises(ValueError, match="sampling_steps"):
        d.ddim_timesteps(11)
    with pytest.raises(ValueError, match="method must be"):
        d.sample(lambda a, b: a, (1, 1), np.random.default_rng(0), method="euler")
