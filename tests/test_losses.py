"""The losses through the harness, each with every reduction (mean/sum/none), against closed-form
NumPy references and PyTorch: mse, l1, binary cross-entropy (clamped logs and finite gradients at
p = 0 and 1, as torch), BCE with logits (pos_weight, weight, stable for |x| up to 1e4), cross
entropy and nll (integer targets incl. (N, C, d1, d2), weight, ignore_index; probability targets),
the Gaussian NLL and the KL to a standard normal; plus their error cases."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygen
from tinygen import functional as F
from harness import DEVICE, arrays, broadcastable_pair, check_op, shapes, torch

T = torch
TF = torch.nn.functional if torch is not None else None
REDUCTIONS = ["mean", "sum", "none"]


def reduce_np(loss, reduction):
    return {"mean": np.mean, "sum": np.sum, "none": lambda v: v}[reduction](loss)


def as_t(arr, like):
    """A constant tinygen tensor of ``like``'s dtype (None passes through)."""
    return None if arr is None else tinygen.tensor(arr, device=like.device).to(like.dtype)


def as_torch(arr, like):
    return None if arr is None else T.tensor(arr, dtype=like.dtype)


# -- regression losses -----------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(data=st.data())
def test_mse_l1(reduction, data):
    shape = data.draw(shapes())
    a, b = data.draw(arrays(shape)), data.draw(arrays(shape))
    b = np.where(np.abs(a - b) < 1e-3, b + 0.5, b)  # |a - b| has a kink at 0
    check_op(lambda x, y: F.mse_loss(x, y, reduction), [a, b],
             reference=lambda x, y: reduce_np((x - y) ** 2, reduction),
             torch_fn=lambda x, y: TF.mse_loss(x, y, reduction=reduction))
    check_op(lambda x, y: F.l1_loss(x, y, reduction), [a, b], second_order="zero",
             reference=lambda x, y: reduce_np(np.abs(x - y), reduction),
             torch_fn=lambda x, y: TF.l1_loss(x, y, reduction=reduction))


def test_l1_gradient_is_zero_where_input_equals_target():
    x = tinygen.tensor(np.array([1.0, 2.0]), requires_grad=True)
    F.l1_loss(x, tinygen.tensor(np.array([1.0, 0.0])), "sum").backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 1.0])


# -- binary cross-entropy --------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(data=st.data(), weighted=st.booleans())
def test_binary_cross_entropy(reduction, data, weighted):
    shape, wshape = data.draw(broadcastable_pair()) if weighted else (data.draw(shapes()), None)
    shape = np.broadcast_shapes(shape, wshape) if weighted else shape  # weight broadcasts
    p = data.draw(arrays(shape, low=0.02, high=0.98))
    t = data.draw(arrays(shape, low=0.0, high=1.0))
    w = data.draw(arrays(wshape, low=0.5, high=2.0)) if weighted else None

    def ref(p, t):  # the textbook formula (no clamping needed inside [0.02, 0.98])
        loss = -(t * np.log(p) + (1 - t) * np.log(1 - p))
        return reduce_np(loss * (w if weighted else 1.0), reduction)
    check_op(lambda x, y: F.binary_cross_entropy(x, y, weight=as_t(w, x), reduction=reduction),
             [p, t], reference=ref,
             torch_fn=lambda x, y: TF.binary_cross_entropy(x, y, weight=as_torch(w, x),
                                                           reduction=reduction))


def test_binary_cross_entropy_at_p_zero_and_one_is_finite_like_torch():
    """Each log is clamped at -100; the gradient is (p - t) / max(p (1 - p), 1e-12), finite --
    the clamped logs alone would give 0 * inf = NaN."""
    pv = np.array([0.0, 1.0, 0.0, 1.0, 0.5, 1e-300])
    tv = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.25])
    for dtype in (np.float64, np.float32):
        p = tinygen.tensor(pv.astype(dtype), requires_grad=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no divide-by-zero / invalid-value warnings
            loss = F.binary_cross_entropy(p, tinygen.tensor(tv.astype(dtype)), reduction="none")
            loss.sum().backward()
        expected = np.array([100.0, 100.0, 0.0, 0.0, math.log(2.0), 0.25 * 100])  # log clamped
        np.testing.assert_allclose(loss.detach().numpy(), expected, rtol=1e-6)
        g = p.grad.numpy()
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g[:5], [-1e12, 1e12, 0.0, 0.0, -2.0], rtol=1e-6)
        if torch is not None:
            tp = T.tensor(pv.astype(dtype), requires_grad=True)
            tl = TF.binary_cross_entropy(tp, T.tensor(tv.astype(dtype)), reduction="none")
            tl.sum().backward()
            np.testing.assert_allclose(loss.detach().numpy(), tl.detach().numpy(), rtol=1e-6)
            np.testing.assert_allclose(g, tp.grad.numpy(), rtol=1e-6)
    # a saturated float32 sigmoid (exactly 0 or 1) still trains: zero gradient, not NaN
    z = tinygen.tensor(np.array([30.0, -120.0], dtype=np.float32), requires_grad=True)
    F.binary_cross_entropy(F.sigmoid(z), tinygen.tensor(np.array([1.0, 0.0], np.float32))
                           ).backward()
    np.testing.assert_array_equal(z.grad.numpy(), [0.0, 0.0])


def test_binary_cross_entropy_refuses_logits():
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\].*with_logits"):
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
        log_sig = -np.logaddexp(0, -x)  # log sigmoid(x)
        log_one_minus = -np.logaddexp(0, x)  # log(1 - sigmoid(x))
        loss = -((pw if pos else 1.0) * t * log_sig + (1 - t) * log_one_minus)
        return reduce_np(loss * (w if weighted else 1.0), reduction)

    def ours(x, t):
        return F.binary_cross_entropy_with_logits(x, t, weight=as_t(w, x), reduction=reduction,
                                                  pos_weight=as_t(pw, x))
    check_op(ours, [x, t], reference=ref,
             torch_fn=lambda x, t: TF.binary_cross_entropy_with_logits(
                 x, t, weight=as_torch(w, x), reduction=reduction, pos_weight=as_torch(pw, x)))


def test_bce_with_logits_is_stable_for_huge_logits_and_right_at_zero():
    xv = np.array([-1e4, -50.0, 0.0, 0.0, 50.0, 1e4])
    tv = np.array([1.0, 0.0, 0.3, 1.0, 1.0, 0.0])
    for dtype in (np.float64, np.float32):
        x = tinygen.tensor(xv.astype(dtype), requires_grad=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loss = F.binary_cross_entropy_with_logits(x, tinygen.tensor(tv.astype(dtype)),
                                                      reduction="none")
            loss.sum().backward()
        expected = [1e4, np.log1p(np.exp(-50.0)), math.log(2.0), math.log(2.0),
                    np.log1p(np.exp(-50.0)), 1e4]
        np.testing.assert_allclose(loss.detach().numpy(), expected, rtol=1e-6 if dtype == np.float32
                                   else 1e-12, atol=1e-30)
        with np.errstate(over="ignore"):
            sig, sig_neg = 1 / (1 + np.exp(-xv)), 1 / (1 + np.exp(xv))
        # sigmoid(x) - t, written so that no term cancels: (1 - t) sigmoid(x) - t sigmoid(-x)
        np.testing.assert_allclose(x.grad.numpy(), (1 - tv) * sig - tv * sig_neg, rtol=1e-6,
                                   atol=1e-30)


# -- cross-entropy and nll -------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(data=st.data(), spatial=st.booleans(), weighted=st.booleans(),
       ignore=st.sampled_from([None, -100, 1]))
def test_cross_entropy_and_nll_integer_targets(reduction, data, spatial, weighted, ignore):
    n, c = data.draw(st.integers(1, 4)), data.draw(st.integers(2, 4))
    extra = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2))) if spatial else ()
    logits = data.draw(arrays((n, c) + extra, low=-5, high=5))
    size = n * int(np.prod(extra))
    target = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=size, max_size=size))
                      ).reshape((n,) + extra)
    if ignore == -100:
        target.reshape(-1)[0] = -100
    ignore_index = -100 if ignore is None else ignore
    counted = target != ignore_index
    if reduction == "mean" and not counted.any():
        return  # 0 / 0: NaN, checked in test_all_ignored_mean_is_nan_like_torch
    w = data.draw(arrays((c,), low=0.5, high=2.0)) if weighted else None
    tt = tinygen.tensor(target, device=DEVICE)

    def ref(x):  # the textbook definition, one target at a time
        loss = np.zeros(target.shape)
        wsum = 0.0
        for pos in np.ndindex(*target.shape):
            k = target[pos]
            if k == ignore_index:
                continue
            logits_here = x[(pos[0], slice(None)) + pos[1:]]
            wk = w[k] if weighted else 1.0
            loss[pos] = -wk * (logits_here[k] - np.log(np.sum(np.exp(logits_here))))
            wsum += wk
        return loss.sum() / wsum if reduction == "mean" else reduce_np(loss, reduction)

    def ours(x):
        return F.cross_entropy(x, tt, weight=as_t(w, x), ignore_index=ignore_index,
                               reduction=reduction)
    check_op(ours, [logits], reference=ref,
             torch_fn=lambda x: TF.cross_entropy(x, T.tensor(target), weight=as_torch(w, x),
                                                 ignore_index=ignore_index, reduction=reduction))
    # nll_loss on its own: linear in the log-probabilities (any numbers will do)
    check_op(lambda x: F.nll_loss(x, tt, weight=as_t(w, x), ignore_index=ignore_index,
                                  reduction=reduction), [logits], second_order="zero",
             torch_fn=lambda x: TF.nll_loss(x, T.tensor(target), weight=as_torch(w, x),
                                            ignore_index=ignore_index, reduction=reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_of_a_single_sample(reduction):
    """Input (C,) with a 0-d target, as torch: reduction 'none' gives a 0-d loss."""
    logits = np.array([0.1, 0.5, -0.3])
    out = check_op(lambda x: F.cross_entropy(x, tinygen.tensor(1, device=x.device),
                                             reduction=reduction),
                   [logits], reference=lambda x: -(x[1] - np.log(np.sum(np.exp(x)))),
                   torch_fn=lambda x: TF.cross_entropy(x, T.tensor(1), reduction=reduction))
    assert out.shape == ()
    probs = np.array([0.2, 0.5, 0.3])
    check_op(lambda x: F.cross_entropy(x, as_t(probs, x), reduction=reduction), [logits],
             reference=lambda x: -np.sum(probs * (x - np.log(np.sum(np.exp(x))))),
             torch_fn=lambda x: TF.cross_entropy(x, as_torch(probs, x), reduction=reduction))


def test_all_ignored_mean_is_nan_like_torch():
    x = tinygen.tensor(np.zeros((2, 3)))
    with np.errstate(invalid="ignore", divide="ignore"):
        assert math.isnan(F.cross_entropy(x, tinygen.tensor([-100, -100])).item())
    if torch is not None:
        assert math.isnan(TF.cross_entropy(T.zeros(2, 3), T.tensor([-100, -100])).item())
    assert F.cross_entropy(x, tinygen.tensor([-100, -100]), reduction="sum").item() == 0.0


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(data=st.data(), spatial=st.booleans(), weighted=st.booleans())
def test_cross_entropy_probability_targets(reduction, data, spatial, weighted):
    n, c = data.draw(st.integers(1, 4)), data.draw(st.integers(2, 4))
    shape = (n, c) + ((data.draw(st.integers(1, 3)),) if spatial else ())
    logits = data.draw(arrays(shape, low=-5, high=5))
    p = data.draw(arrays(shape, low=0.01, high=1.0))
    p = p / p.sum(axis=1, keepdims=True)
    w = data.draw(arrays((c,), low=0.5, high=2.0)) if weighted else None
    wshape = (1, c) + (1,) * (len(shape) - 2)

    def ref(x):  # mean divides by the number of samples (N * d1), not by the weights
        logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
        terms = p * logp * (w.reshape(wshape) if weighted else 1.0)
        return reduce_np(-terms.sum(axis=1), reduction)
    check_op(lambda x: F.cross_entropy(x, as_t(p, x), weight=as_t(w, x), reduction=reduction),
             [logits], reference=ref,
             torch_fn=lambda x: TF.cross_entropy(x, as_torch(p, x), weight=as_torch(w, x),
                                                 reduction=reduction))


def test_cross_entropy_and_nll_errors():
    x = tinygen.zeros(3, 4)
    with pytest.raises(ValueError, match=r"outside \[0, 3\] \(min 0, max 4\)"):
        F.cross_entropy(x, tinygen.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match=r"outside \[0, 3\] \(min -1"):
        F.nll_loss(x, tinygen.tensor([0, -1, 1]))
    with pytest.raises(ValueError, match=r"target has shape \(2,\), expected \(3,\)"):
        F.cross_entropy(x, tinygen.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"target has shape \(3, 2\), expected \(3, 5\) for "
                                         r"input of shape \(3, 4, 5\)"):
        F.cross_entropy(tinygen.zeros(3, 4, 5), tinygen.zeros(3, 2, dtype=np.int64))
    with pytest.raises(ValueError, match=r"probability target has shape \(3, 5\), expected the "
                                         r"input's shape \(3, 4\)"):
        F.cross_entropy(x, tinygen.zeros(3, 5))
    with pytest.raises(TypeError, match="integer class indices"):
        F.nll_loss(x, tinygen.tensor([0.0, 1.0, 2.0]))


def test_weight_dtype_does_not_change_the_loss_dtype():
    x = tinygen.zeros(3, 4)  # float32
    w64 = tinygen.tensor(np.ones(4))
    assert F.cross_entropy(x, tinygen.tensor([0, 1, 2]), weight=w64).dtype == np.float32
    assert F.nll_loss(x, tinygen.tensor([0, 1, 2]), weight=w64, reduction="none").dtype == \
        np.float32


# -- Gaussian NLL and KL ---------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(data=st.data())
def test_gaussian_nll(reduction, data):
    shape = data.draw(shapes(min_dims=1))
    mu, x, logvar = (data.draw(arrays(shape)) for _ in range(3))

    def ref(mu, x, logvar):  # -log N(x; mu, exp(logvar)), per element
        var = np.exp(logvar)
        return reduce_np(-np.log(np.exp(-(x - mu) ** 2 / (2 * var)) / np.sqrt(2 * np.pi * var)),
                         reduction)
    check_op(lambda m, t, lv: F.gaussian_nll(m, t, lv, reduction), [mu, x, logvar],
             reference=ref, ref_rtol=1e-9,
             torch_fn=lambda m, t, lv: TF.gaussian_nll_loss(m, t, T.exp(lv), full=True,
                                                            eps=1e-300, reduction=reduction))


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

    def ref(mu, logvar):  # KL(N(mu, s^2) || N(0, 1)) = log(1/s) + (s^2 + mu^2)/2 - 1/2, per dim
        s2 = np.exp(logvar)
        return reduce_np(np.sum(-0.5 * logvar + 0.5 * (s2 + mu ** 2) - 0.5, axis=-1), reduction)
    check_op(lambda m, lv: F.kl_normal_standard(m, lv, reduction), [mu, logvar], reference=ref)


@pytest.mark.parametrize("mu, logvar", [(0.7, -0.4), (0.0, 0.0), (-2.0, 1.3), (1.5, -3.0)])
def test_kl_normal_standard_matches_a_numeric_integral(mu, logvar):
    """E_q[log q(z) - log p(z)] by the trapezoid rule on a fine grid (no Monte Carlo)."""
    s = math.exp(0.5 * logvar)
    z = np.linspace(mu - 14 * s, mu + 14 * s, 200001)
    log_q = -0.5 * ((z - mu) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)
    log_p = -0.5 * z ** 2 - 0.5 * math.log(2 * math.pi)
    numeric = np.trapezoid(np.exp(log_q) * (log_q - log_p), z)
    ours = F.kl_normal_standard(tinygen.tensor(np.array([[mu]])),
                                tinygen.tensor(np.array([[logvar]])), reduction="sum").item()
    assert abs(ours - numeric) < 1e-8 * (1 + abs(numeric))
    if torch is not None:
        d = T.distributions
        f64 = dict(dtype=T.float64)
        exact = d.kl_divergence(d.Normal(T.tensor(mu, **f64), T.tensor(s, **f64)),
                                d.Normal(T.tensor(0.0, **f64), T.tensor(1.0, **f64))).item()
        assert abs(ours - exact) < 1e-12 * (1 + abs(exact))


# -- errors shared by every loss -------------------------------------------------------------------
def _all_losses(a, b):
    """Each loss called on (a, b)-shaped arguments, as (name, thunk(reduction))."""
    ints = tinygen.zeros(a.shape[0], dtype=np.int64)
    return [("mse_loss", lambda r: F.mse_loss(a, b, r)),
            ("l1_loss", lambda r: F.l1_loss(a, b, r)),
            ("binary_cross_entropy", lambda r: F.binary_cross_entropy(a.sigmoid(), b.sigmoid(),
                                                                      reduction=r)),
            ("binary_cross_entropy_with_logits",
             lambda r: F.binary_cross_entropy_with_logits(a, b, reduction=r)),
            ("cross_entropy", lambda r: F.cross_entropy(a, ints, reduction=r)),
            ("nll_loss", lambda r: F.nll_loss(a, ints, reduction=r)),
            ("gaussian_nll", lambda r: F.gaussian_nll(a, b, b, r)),
            ("kl_normal_standard", lambda r: F.kl_normal_standard(a, b, r))]


def test_every_loss_refuses_a_bad_reduction():
    a = tinygen.zeros(2, 3)
    for name, call in _all_losses(a, a):
        with pytest.raises(ValueError, match=f"{name}: reduction must be 'mean', 'sum' or "
                                             f"'none', got 'avg'"):
            call("avg")


def test_loss_shape_errors_name_the_shapes():
    a, b = tinygen.zeros(2, 3), tinygen.zeros(3, 2)
    for name, call in _all_losses(a, b):
        if name in ("cross_entropy", "nll_loss"):
            continue  # target shapes differ by design; see test_cross_entropy_and_nll_errors
        with pytest.raises(ValueError, match=rf"{name}: .*\(2, 3\).*\(3, 2\)"):
            call("mean")
    with pytest.raises(ValueError, match=r"logvar has shape \(3, 2\) but input has \(2, 3\)"):
        F.gaussian_nll(a, a, b)
