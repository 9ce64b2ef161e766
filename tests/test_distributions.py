"""tinygen.distributions: every log-density against its direct formula (float64), the stable
Bernoulli at extreme logits, the KL against Monte Carlo, dtype casting for evaluation, and the
one importance-weighted estimator (chunking, log-mean-exp, errors)."""
import math

import numpy as np
import pytest

import tinygen
from tinygen import distributions as D


def _t(a):
    return tinygen.tensor(np.asarray(a, np.float64))


def test_normal_and_fixed_normal_match_direct_densities():
    rng = np.random.default_rng(1)
    x, mean, logvar = rng.normal(size=(4, 6)), rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    sd = np.exp(0.5 * logvar)
    direct = np.sum(np.log(np.exp(-0.5 * ((x - mean) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))),
                    axis=1)
    np.testing.assert_allclose(D.Normal(_t(mean), _t(logvar)).log_prob(_t(x)).numpy(), direct,
                               rtol=1e-10)
    direct_fixed = np.sum(-0.5 * ((x - mean) / 0.3) ** 2 - math.log(0.3 * math.sqrt(2 * math.pi)),
                          axis=1)
    fixed = D.Family(D.FixedNormal, std=0.3)((_t(mean),))
    np.testing.assert_allclose(fixed.log_prob(x).numpy(), direct_fixed, rtol=1e-10)
    with pytest.raises(ValueError, match="std"):
        D.FixedNormal(_t(mean), 0.0)


def test_bernoulli_is_exact_and_stable_at_extreme_logits():
    rng = np.random.default_rng(2)
    logits = rng.normal(scale=3, size=(3, 8))
    x = (rng.random((3, 1, 2, 4)) < 0.5).astype(np.float64)         # reshaped to the logits
    p = 1 / (1 + np.exp(-logits))
    direct = np.sum(np.log(np.where(x.reshape(3, 8) == 1, p, 1 - p)), axis=1)
    np.testing.assert_allclose(D.Bernoulli(_t(logits)).log_prob(_t(x)).numpy(), direct,
                               rtol=1e-12)
    ext = D.Bernoulli(_t([[-60.0, 60.0]])).log_prob(_t([[1.0, 0.0]])).numpy()
    assert ext[0] == pytest.approx(-120.0, rel=1e-12)
    np.testing.assert_allclose(D.Bernoulli(_t(logits)).mean.numpy(), p, rtol=1e-12)


def test_categorical_log_prob():
    logits = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]])
    y = np.array([1, 2])
    lp = D.Categorical(_t(logits)).log_prob(tinygen.tensor(y)).numpy()
    direct = logits[[0, 1], y] - np.log(np.exp(logits).sum(axis=1))
    np.testing.assert_allclose(lp, direct, rtol=1e-12)


def test_diagonal_normal_log_prob_rsample_and_kl():
    rng = np.random.default_rng(0)
    mu, logvar = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    q = D.DiagonalNormal(_t(mu), _t(logvar))
    var = np.exp(logvar)
    direct_kl = np.sum(0.5 * (var + mu ** 2 - 1.0 - logvar), axis=1)
    np.testing.assert_allclose(q.kl_standard().numpy(), direct_kl, rtol=1e-12)
    eps = rng.standard_normal((400_000, 1, 3))
    z = q.rsample(_t(eps))                                          # (k, 5, 3) broadcast
    np.testing.assert_allclose(z.numpy()[:, 0], mu[0] + np.sqrt(var[0]) * eps[:, 0], rtol=1e-12)
    mc = (q.log_prob(z) - D.standard_normal_log_prob(z)).numpy().mean(axis=0)
    np.testing.assert_allclose(mc, direct_kl, atol=0.03)
    zz = rng.normal(size=(5, 3))
    direct_lp = np.sum(-0.5 * (np.log(2 * np.pi) + logvar + (zz - mu) ** 2 / var), axis=1)
    np.testing.assert_allclose(q.log_prob(_t(zz)).numpy(), direct_lp, rtol=1e-12)


def test_to_casts_the_parameters_for_float64_evaluation():
    logits = tinygen.tensor(np.array([[0.1, -0.2]], np.float32))
    b64 = D.Bernoulli(logits).to(tinygen.float64)
    assert b64.logits.dtype == np.float64
    assert b64.log_prob(np.array([[1.0, 0.0]])).dtype == np.float64
    fam = D.Family(D.FixedNormal, std=0.5)
    assert fam.n_params == 1 and not fam.discrete and "std=0.5" in repr(fam)
    assert fam((logits,)).to(tinygen.float64).fixed == {"std": 0.5}


def test_logmeanexp_is_stable_and_differentiable():
    a = tinygen.tensor(np.array([[1000.0, -1000.0], [1000.0, -1001.0]]), requires_grad=True)
    out = D.logmeanexp(a, dim=0)
    np.testing.assert_allclose(out.detach().numpy(), [1000.0, -1000.0 + np.log((1 + np.exp(-1)) / 2)])
    out.sum().backward()
    np.testing.assert_allclose(a.grad.numpy().sum(axis=0), [1.0, 1.0])


@pytest.mark.parametrize("rows", [1, 3, 7, 40, 10_000])
def test_importance_weighted_estimator_chunks_give_the_same_numbers(rows):
    """log-weights from a fixed table: any chunking reduces to the same log-mean-exp."""
    rng = np.random.default_rng(0)
    table = rng.normal(size=(12, 5)) * 3                    # (k, n) log-weights
    calls = {"next": np.zeros(5, int)}

    def log_weights(items, kc):
        idx = np.arange(5)[items]
        start = calls["next"][idx]
        assert np.all(start == start[0])
        calls["next"][idx] += kc
        return table[start[0]:start[0] + kc][:, idx]

    got = D.importance_weighted_log_likelihood(log_weights, 5, 12, rows=rows)
    top = table.max(axis=0)
    want = np.log(np.mean(np.exp(table - top), axis=0)) + top
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.all(calls["next"] == 12)


def test_importance_weighted_estimator_refuses_k_zero():
    with pytest.raises(ValueError, match="k"):
        D.importance_weighted_log_likelihood(lambda items, kc: None, 3, 0)
