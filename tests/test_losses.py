"""The losses through the harness, each with every reduction, plus their error cases."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygen
from tinygen import functional as F
from harness import arrays, check_op, shapes, torch

T = torch
REDUCTIONS = ["mean", "sum", "none"]


def reduce_np(loss, reduction):
    return {"mean": np.mean, "sum": np.sum, "none": lambda v: v}[reduction](loss)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(data=st.data())
def test_mse_l1(reduction, data):
    shape = data.draw(shapes())
    a, b = data.draw(arrays(shape)), data.draw(arrays(shape))
    b = np.where(np.abs(a - b) < 1e-3, b + 0.5, b)  # |a - b| is not smooth at 0
    check_op(lambda x, y: F.mse_loss(x, y, reduction), [a, b],
             reference=lambda x, y: reduce_np((x - y) ** 2, reduction),
             torch_fn=lambda x, y: T.nn.functional.mse_loss(x, y, reduction=reduction))
    check_op(lambda x, y: F.l1_loss(x, y, reduction), [a, b],
             reference=lambda x, y: reduce_np(np.abs(x - y), reduction),
             torch_fn=lambda x, y: T.nn.functional.l1_loss(x, y, reduction=reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(data=st.data(), weighted=st.booleans())
def test_binary_cross_entropy(reduction, data, weighted):
    shape = data.draw(shapes(min_dims=1))
    p = data.draw(arrays(shape, low=0.02, high=0.98))
    t = data.draw(arrays(shape, low=0.0, high=1.0))
    w = data.draw(arrays(shape, low=0.5, high=2.0)) if weighted else None

    def ref(p, t):
        loss = -(t * np.log(p) + (1 - t) * np.log(1 - p))
        return reduce_np(loss * (w if weighted else 1.0), reduction)
    wt = tinygen.tensor(w) if weighted else None
    check_op(lambda x, y: F.binary_cross_entropy(x, y, weight=wt if wt is None else
                                                 wt.to(x.dtype), reduction=reduction),
             [p, t], reference=ref,
             torch_fn=lambda x, y: T.nn.functional.binary_cross_entropy(
                 x, y, weight=None if w is None else T.tensor(w, dtype=x.dtype),
                 reduction=reduction))


def test_binary_cross_entropy_clamps_log_like_torch():
    p = tinygen.tensor(np.array([0.0, 1.0, 0.5]))
    t = tinygen.tensor(np.array([1.0, 0.0, 1.0]))
    loss = F.binary_cross_entropy(p, t, reduction="none").numpy()
    np.testing.assert_allclose(loss, [100.0, 100.0, math.log(2.0)])
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        F.binary_cross_entropy(tinygen.tensor([1.5]), tinygen.tensor([1.0]))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(data=st.data(), weighted=st.booleans(), pos=st.booleans())
def test_binary_cross_entropy_with_logits(reduction, data, weighted, pos):
    shape = data.draw(shapes(min_dims=1))
    x = data.draw(arrays(shape, low=-30, high=30))
    t = data.draw(arrays(shape, low=0.0, high=1.0))
    w = data.draw(arrays(shape[-1:], low=0.5, high=2.0)) if weighted else None
    pw = data.draw(arrays(shape[-1:], low=0.5, high=3.0)) if pos else None

    def ref(x, t):
        ls = -np.logaddexp(0, -x)  # log sigmoid
        l1s = -np.logaddexp(0, x)  # log(1 - sigmoid)
        loss = -((pw if pos else 1.0) * t * ls + (1 - t) * l1s)
        return reduce_np(loss * (w if weighted else 1.0), reduction)

    def ours(x, t):
        return F.binary_cross_entropy_with_logits(
            x, t, weight=None if w is None else tinygen.tensor(w).to(x.dtype),
            reduction=reduction, pos_weight=None if pw is None else tinygen.tensor(pw).to(x.dtype))
    check_op(ours, [x, t], reference=ref,
             torch_fn=lambda x, t: T.nn.functional.binary_cross_entropy_with_logits(
                 x, t, weight=None if w is None else T.tensor(w, dtype=x.dtype),
                 reduction=reduction,
                 pos_weight=None if pw is None else T.tensor(pw, dtype=x.dtype)))


def test_bce_with_logits_is_stable_and_correct_at_zero():
    x = tinygen.tensor(np.array([-1e4, -50.0, 0.0, 50.0, 1e4]), requires_grad=True)
    t = tinygen.tensor(np.array([1.0, 0.0, 0.3, 1.0, 0.0]))
    loss = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    np.testing.assert_allclose(loss.numpy(), [1e4, np.log1p(np.exp(-50.0)), math.log(2.0),
                                              np.log1p(np.exp(-50.0)), 1e4], rtol=1e-12,
                               atol=1e-15)
    loss.sum().backward()
    sig = 0.5 * (1 + np.tanh(np.array([-1e4, -50.0, 0.0, 50.0, 1e4]) / 2))
    np.testing.assert_allclose(x.grad.numpy(), sig - t.numpy(), atol=1e-15)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(data=st.data(), spatial=st.booleans(), weighted=st.booleans(), ignore=st.booleans())
def test_cross_entropy_and_nll_integer_targets(reduction, data, spatial, weighted, ignore):
    n, c = data.draw(st.integers(1, 4)), data.draw(st.integers(2, 4))
    extra = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2))) if spatial else ()
    logits = data.draw(arrays((n, c) + extra, low=-5, high=5))
    target = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n * int(np.prod(extra)),
                                         max_size=n * int(np.prod(extra))))).reshape((n,) + extra)
    if ignore:
        target.reshape(-1)[0] = -100
        if (target == -100).all() and reduction == "mean":
            return  # torch gives nan for an all-ignored mean
    w = data.draw(arrays((c,), low=0.5, high=2.0)) if weighted else None
    tt = tinygen.tensor(target)

    def ref(x):
        m = x.max(axis=1, keepdims=True)
        logp = x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))
        safe = np.where(target == -100, 0, target)
        picked = np.take_along_axis(logp, safe[:, None], axis=1)[:, 0]
        wt = (w[safe] if weighted else np.ones_like(picked)) * (target != -100)
        loss = -picked * wt
        if reduction == "mean":
            return loss.sum() / wt.sum()
        return loss.sum() if reduction == "sum" else loss

    def ours(x):
        return F.cross_entropy(x, tt, weight=None if w is None else tinygen.tensor(w).to(x.dtype),
                               reduction=reduction)
    check_op(ours, [logits], reference=ref,
             torch_fn=lambda x: T.nn.functional.cross_entropy(
                 x, T.tensor(target), weight=None if w is None else T.tensor(w, dtype=x.dtype),
                 reduction=reduction))
    check_op(lambda x: F.nll_loss(F.log_softmax(x, 1), tt, reduction=reduction,
                                  weight=None if w is None else tinygen.tensor(w).to(x.dtype)),
             [logits], reference=ref)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(data=st.data())
def test_cross_entropy_probability_targets(reduction, data):
    n, c = data.draw(st.integers(1, 4)), data.draw(st.integers(2, 4))
    logits = data.draw(arrays((n, c), low=-5, high=5))
    p = data.draw(arrays((n, c), low=0.01, high=1.0))
    p = p / p.sum(axis=1, keepdims=True)

    def ref(x):
        logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
        return reduce_np(-(p * logp).sum(axis=1), reduction)
    check_op(lambda x: F.cross_entropy(x, tinygen.tensor(p).to(x.dtype), reduction=reduction),
             [logits], reference=ref,
             torch_fn=lambda x: T.nn.functional.cross_entropy(x, T.tensor(p, dtype=x.dtype),
                                                             reduction=reduction))


def test_cross_entropy_errors():
    x = tinygen.zeros(3, 4)
    with pytest.raises(ValueError, match=r"outside \[0, 3\]"):
        F.cross_entropy(x, tinygen.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match=r"target has shape \(2,\), expected \(3,\)"):
        F.cross_entropy(x, tinygen.tensor([0, 1]))
    with pytest.raises(TypeError, match="integer class indices"):
        F.nll_loss(x, tinygen.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="reduction must be"):
        F.cross_entropy(x, tinygen.tensor([0, 1, 2]), reduction="avg")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(data=st.data())
def test_gaussian_nll(reduction, data):
    shape = data.draw(shapes(min_dims=1))
    mu, x, logvar = (data.draw(arrays(shape)) for _ in range(3))

    def ref(mu, x, logvar):
        return reduce_np(0.5 * (np.log(2 * np.pi) + logvar + (x - mu) ** 2 / np.exp(logvar)),
                         reduction)
    check_op(lambda m, t, lv: F.gaussian_nll(m, t, lv, reduction), [mu, x, logvar],
             reference=ref,
             torch_fn=lambda m, t, lv: T.nn.functional.gaussian_nll_loss(
                 m, t, T.exp(lv), full=True, eps=1e-300, reduction=reduction))


def test_gaussian_nll_matches_the_lecture_density():
    """-gaussian_nll summed over dims = log N(x; mu, diag exp(logvar)) (the lecture's
    log_g_x_given_z with the normalizing constant counted once per dimension)."""
    rng = np.random.default_rng(3)
    mu, x, logvar = rng.standard_normal((3, 5, 4))
    ours = -F.gaussian_nll(tinygen.tensor(mu), tinygen.tensor(x), tinygen.tensor(logvar),
                           reduction="none").sum(1).numpy()
    var = np.exp(logvar)
    expected = np.sum(-0.5 * np.log(2 * np.pi * var) - (x - mu) ** 2 / (2 * var), axis=1)
    np.testing.assert_allclose(ours, expected, rtol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(data=st.data())
def test_kl_normal_standard(reduction, data):
    shape = data.draw(shapes(min_dims=1))
    mu, logvar = data.draw(arrays(shape)), data.draw(arrays(shape))

    def ref(mu, logvar):  # KL(N(mu, s^2) || N(0, 1)) = log(1/s) + (s^2 + mu^2)/2 - 1/2
        s2 = np.exp(logvar)
        return reduce_np(np.sum(-0.5 * logvar + 0.5 * (s2 + mu ** 2) - 0.5, axis=-1), reduction)
    check_op(lambda m, lv: F.kl_normal_standard(m, lv, reduction), [mu, logvar], reference=ref)


def test_kl_normal_standard_matches_a_numeric_integral():
    mu, logvar = 0.7, -0.4
    s = math.exp(0.5 * logvar)
    z = np.linspace(mu - 12 * s, mu + 12 * s, 200001)
    q = np.exp(-0.5 * ((z - mu) / s) ** 2) / (s * math.sqrt(2 * math.pi))
    log_ratio = (-0.5 * ((z - mu) / s) ** 2 - math.log(s)) - (-0.5 * z ** 2)
    numeric = np.trapezoid(q * log_ratio, z)
    ours = F.kl_normal_standard(tinygen.tensor(np.array([[mu]])),
                                tinygen.tensor(np.array([[logvar]])), reduction="sum").item()
    assert abs(ours - numeric) < 1e-8


def test_loss_shape_errors_name_the_shapes():
    a, b = tinygen.zeros(2, 3), tinygen.zeros(3, 2)
    for fn in (F.mse_loss, F.l1_loss, F.binary_cross_entropy_with_logits):
        with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
            fn(a, b)
    with pytest.raises(ValueError, match="logvar has shape"):
        F.gaussian_nll(a, a, b)
    with pytest.raises(ValueError, match="mu has shape"):
        F.kl_normal_standard(a, b)
