"""Elementwise ops through the gradient-check harness, with hypothesis-drawn shapes and values:
arithmetic with broadcasting (tensor/tensor, tensor/scalar, reflected, NumPy operands), powers,
unary math, activations with their parameters, clamp, maximum/minimum (ties included), where,
comparisons, and the gradient conventions at kinks (as PyTorch)."""
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygen
from tinygen import functional as F
from harness import (arrays, broadcastable_pair, check_op, grid_arrays, shapes, sum_to_shape,
                     torch)

T = torch  # the oracle (None without torch): torch_fn lambdas only run when it is installed
TF = torch.nn.functional if torch is not None else None


# -- binary arithmetic with broadcasting -----------------------------------------------------------
BINARY = {  # name: (op, reference, second_order)
    "add": (lambda a, b: a + b, np.add, "zero"),
    "sub": (lambda a, b: a - b, np.subtract, "zero"),
    "mul": (lambda a, b: a * b, np.multiply, True),
    "div": (lambda a, b: a / b, np.divide, True),
    "method_forms": (lambda a, b: a.add(b).mul(b).sub(a).div(b), lambda a, b: ((a + b) * b - a) / b,
                     True),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(data=st.data())
def test_binary_broadcasting(name, data):
    sa, sb = data.draw(broadcastable_pair())
    a = data.draw(arrays(sa))
    b = data.draw(arrays(sb, away_from=0.0, gap=0.2) if name in ("div", "method_forms")
                  else arrays(sb))
    op, ref, second = BINARY[name]
    check_op(op, [a, b], reference=ref, torch_fn=ref if name == "method_forms" else op,
             second_order=second)


@pytest.mark.parametrize("name", ["maximum", "minimum"])
@given(data=st.data())
def test_maximum_minimum_broadcasting(name, data):
    sa, sb = data.draw(broadcastable_pair())
    a = data.draw(grid_arrays(sa, offset=0.1))  # two offset grids: never closer than 0.1
    b = data.draw(grid_arrays(sb))
    check_op(getattr(F, name), [a, b], reference=getattr(np, name),
             torch_fn=lambda x, y: getattr(T, name)(x, y), second_order="zero")
    check_op(lambda x: getattr(x, name)(0.3), [a], reference=lambda x: getattr(np, name)(x, 0.3),
             second_order="zero")


@pytest.mark.parametrize("name", ["maximum", "minimum"])
@given(data=st.data())
def test_maximum_minimum_ties_split_the_gradient(name, data):
    sa, sb = data.draw(broadcastable_pair())
    a = data.draw(grid_arrays(sa, step=1.0, low=-1, high=1))  # three values: ties are common
    b = data.draw(grid_arrays(sb, step=1.0, low=-1, high=1))
    u = np.random.default_rng(0).standard_normal(np.broadcast_shapes(sa, sb))
    ta, tb = tinygen.tensor(a, requires_grad=True), tinygen.tensor(b, requires_grad=True)
    out = getattr(F, name)(ta, tb)
    ga, gb = tinygen.grad(out, [ta, tb], grad_outputs=tinygen.tensor(u))
    wins = (a > b) if name == "maximum" else (a < b)
    share = np.where(a == b, 0.5, wins.astype(float))
    np.testing.assert_array_equal(out.detach().numpy(), getattr(np, name)(a, b))
    np.testing.assert_allclose(ga.numpy(), sum_to_shape(u * share, sa), rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(gb.numpy(), sum_to_shape(u * (1 - share), sb), rtol=1e-14,
                               atol=1e-14)
    if torch is not None:
        xa, xb = T.tensor(a, requires_grad=True), T.tensor(b, requires_grad=True)
        tga, tgb = T.autograd.grad(getattr(T, name)(xa, xb), [xa, xb], T.tensor(u))
        np.testing.assert_allclose(ga.numpy(), tga.numpy(), rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(gb.numpy(), tgb.numpy(), rtol=1e-14, atol=1e-14)


# -- scalars, reflected operators, NumPy operands --------------------------------------------------
SCALAR_FORMS = [  # (op(x, c), second_order); c is a Python float
    (lambda x, c: x + c, "zero"), (lambda x, c: c + x, "zero"),
    (lambda x, c: x - c, "zero"), (lambda x, c: c - x, "zero"),
    (lambda x, c: x * c, "zero"), (lambda x, c: c * x, "zero"),
    (lambda x, c: x / c, "zero"), (lambda x, c: c / x, True),
    (lambda x, c: -x, "zero"), (lambda x, c: +x * c, "zero"),
]


@pytest.mark.parametrize("k", range(len(SCALAR_FORMS)))
@given(data=st.data(), c=st.floats(-4, 4).filter(lambda v: abs(v) > 0.1))
def test_scalar_operands_on_either_side(k, data, c):
    x = data.draw(arrays(data.draw(shapes()), away_from=0.0, gap=0.2))
    op, second = SCALAR_FORMS[k]
    check_op(lambda t: op(t, c), [x], reference=lambda v: op(v, c),
             torch_fn=lambda t: op(t, c), second_order=second)


NUMPY_FORMS = [lambda a, t: a + t, lambda a, t: a - t, lambda a, t: a * t, lambda a, t: a / t,
               lambda a, t: t - a, lambda a, t: t / a, lambda a, t: a ** 2 * t]


@given(data=st.data())
def test_numpy_array_operands_on_either_side(data):
    sa, sb = data.draw(broadcastable_pair())
    x = data.draw(arrays(sa, away_from=0.0, gap=0.2))
    arr = data.draw(arrays(sb, away_from=0.0, gap=0.2))
    for op in NUMPY_FORMS:
        assert isinstance(op(arr, tinygen.tensor(x)), tinygen.Tensor)  # NumPy defers to us
        # (the array is cast to the tensor's dtype: a float64 array would promote a float32 one)
        check_op(lambda t: op(arr.astype(t.dtype), t), [x], reference=lambda v: op(arr, v),
                 torch_fn=lambda t: op(T.tensor(arr, dtype=t.dtype), t))


def test_zero_d_tensor_operands_broadcast_and_get_summed_gradients():
    x = tinygen.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    c = tinygen.tensor(np.array(2.0), requires_grad=True)
    (x * c + c).sum().backward()
    assert c.grad.shape == ()
    np.testing.assert_allclose(c.grad.numpy(), 1 + 2 + 3 + 3)
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0, 2.0])


def test_integer_tensors_promote_like_torch():
    i = tinygen.tensor([1, 2, 3])
    assert (i * 2).dtype == np.int64
    assert (i * 2.5).dtype == np.float32 and (i / 2).dtype == np.float32
    assert (i / tinygen.tensor([2, 2, 2])).dtype == np.float32
    np.testing.assert_allclose((i / 2).numpy(), [0.5, 1.0, 1.5])
    assert F.exp(i).dtype == np.float32 and (i ** -1).dtype == np.float32


# -- powers ----------------------------------------------------------------------------------------
@given(data=st.data(), p=st.sampled_from([0, 1, 2, 3, -1, -2, 0.5, 1.5, -2.5]))
def test_pow_scalar_exponent(data, p):
    fractional = not float(p).is_integer()
    x = data.draw(arrays(data.draw(shapes()), low=0.2 if fractional else -3.0, high=3.0,
                         away_from=0.0 if p < 0 and not fractional else None, gap=0.2))
    check_op(lambda t: t ** p, [x], reference=lambda v: v ** p, torch_fn=lambda t: t ** p,
             second_order="zero" if p in (0, 1) else True)
    check_op(lambda t: t.pow(p), [x], reference=lambda v: np.power(v, p))


@given(data=st.data())
def test_pow_tensor_exponent(data):
    sa, sb = data.draw(broadcastable_pair())
    a = data.draw(arrays(sa, low=0.2, high=3.0))
    b = data.draw(arrays(sb, low=-2.0, high=2.0, away_from=0.0))  # torch zeroes d/da at b == 0
    check_op(lambda x, y: x ** y, [a, b], reference=np.power, torch_fn=lambda x, y: x ** y)


@given(data=st.data(), base=st.floats(0.2, 4.0))
def test_scalar_base_tensor_exponent(data, base):
    x = data.draw(arrays(data.draw(shapes())))
    check_op(lambda t: base ** t, [x], reference=lambda v: base ** v,
             torch_fn=lambda t: base ** t)


def test_pow_gradient_wrt_exponent_at_zero_base_is_zero():
    a = tinygen.tensor(np.array([0.0, 2.0, 0.0]))
    b = tinygen.tensor(np.array([2.0, 3.0, 0.5]), requires_grad=True)
    (a ** b).sum().backward()
    np.testing.assert_allclose(b.grad.numpy(), [0.0, 8.0 * np.log(2.0), 0.0])
    if torch is not None:
        tb = T.tensor([2.0, 3.0, 0.5], dtype=T.float64, requires_grad=True)
        (T.tensor([0.0, 2.0, 0.0], dtype=T.float64) ** tb).sum().backward()
        np.testing.assert_allclose(b.grad.numpy(), tb.grad.numpy(), rtol=1e-15)


# -- unary math and activations --------------------------------------------------------------------
def _sigmoid(x):
    with np.errstate(over="ignore"):  # exp(1000) = inf gives the right limit, 0
        return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


UNARY = {  # name: (op, reference, torch op, strategy options, second order)
    "exp": (F.exp, np.exp, lambda x: T.exp(x), {}, True),
    "log": (F.log, np.log, lambda x: T.log(x), {"low": 0.1}, True),
    "log1p": (F.log1p, np.log1p, lambda x: T.log1p(x), {"low": -0.9}, True),
    "sqrt": (F.sqrt, np.sqrt, lambda x: T.sqrt(x), {"low": 0.1}, True),
    "abs": (F.abs, np.abs, lambda x: T.abs(x), {"away_from": 0.0}, "zero"),
    "tanh": (F.tanh, np.tanh, lambda x: T.tanh(x), {}, True),
    "tanh_wide": (F.tanh, np.tanh, lambda x: T.tanh(x), {"low": -40, "high": 40}, True),
    "sigmoid": (F.sigmoid, _sigmoid, lambda x: T.sigmoid(x), {}, True),
    "sigmoid_wide": (F.sigmoid, _sigmoid, lambda x: T.sigmoid(x), {"low": -60, "high": 60},
                     True),
    "relu": (F.relu, lambda x: np.maximum(x, 0), lambda x: T.relu(x), {"away_from": 0.0},
             "zero"),
    "softplus": (F.softplus, lambda x: np.where(x > 20, x, np.logaddexp(0, x)),  # threshold 20
                 lambda x: TF.softplus(x),
                 {"low": -30, "high": 30, "away_from": 20.0}, True),
    "square": (F.square, np.square, lambda x: x * x, {}, True),
    "neg": (F.neg, np.negative, lambda x: -x, {}, "zero"),
    "method_chain": (lambda x: x.abs().sqrt().exp().log1p().tanh(),
                     lambda x: np.tanh(np.log1p(np.exp(np.sqrt(np.abs(x))))),
                     lambda x: x.abs().sqrt().exp().log1p().tanh(), {"away_from": 0.0, "gap": 0.1},
                     True),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(data=st.data())
def test_unary(name, data):
    op, ref, torch_fn, opts, second = UNARY[name]
    opts = dict(opts)
    x = data.draw(arrays(data.draw(shapes()), low=opts.pop("low", -3.0),
                         high=opts.pop("high", 3.0), **opts))
    check_op(op, [x], reference=ref, torch_fn=torch_fn, second_order=second)


@given(data=st.data(), slope=st.sampled_from([0.0, 0.01, 0.2, 1.5]))
def test_leaky_relu(data, slope):
    x = data.draw(arrays(data.draw(shapes()), away_from=0.0))
    check_op(lambda t: F.leaky_relu(t, slope), [x],
             reference=lambda v: np.where(v > 0, v, slope * v),
             torch_fn=lambda t: TF.leaky_relu(t, slope), second_order="zero")


@given(data=st.data(), alpha=st.sampled_from([0.5, 1.0, 2.0]))
def test_elu(data, alpha):
    x = data.draw(arrays(data.draw(shapes()), away_from=0.0))
    check_op(lambda t: F.elu(t, alpha), [x],
             reference=lambda v: np.where(v > 0, v, alpha * np.expm1(v)),
             torch_fn=lambda t: TF.elu(t, alpha))


@given(data=st.data(), beta=st.sampled_from([0.5, 1.0, 2.0, 3.0]),
       threshold=st.sampled_from([0.5, 2.0, 20.0]))
def test_softplus_beta_threshold(data, beta, threshold):
    """log(1 + exp(beta x)) / beta, and exactly x where beta x > threshold (a kink: kept away)."""
    x = data.draw(arrays(data.draw(shapes()), low=-8, high=8, away_from=threshold / beta,
                         gap=1e-2))

    def ref(v):
        return np.where(beta * v > threshold, v, np.logaddexp(0, beta * v) / beta)
    check_op(lambda t: F.softplus(t, beta, threshold), [x], reference=ref,
             torch_fn=lambda t: TF.softplus(t, beta, threshold))


@given(data=st.data(), which=st.sampled_from(["both", "min", "max", "tensor_bounds"]),
       lo=st.sampled_from([-1.0, -0.25, 0.5]), width=st.sampled_from([0.5, 2.0]))
def test_clamp(data, which, lo, width):
    hi = lo + width
    kw = {"both": dict(min=lo, max=hi), "min": dict(min=lo), "max": dict(max=hi),
          "tensor_bounds": dict(min=tinygen.tensor(lo), max=tinygen.tensor(hi))}[which]
    lo_ = None if which == "max" else lo
    hi_ = None if which == "min" else hi
    x = data.draw(arrays(data.draw(shapes()), away_from=(lo, hi), gap=1e-3))
    check_op(lambda t: F.clamp(t, **kw), [x], reference=lambda v: np.clip(v, lo_, hi_),
             second_order="zero", torch_fn=lambda t: T.clamp(t, lo_, hi_))
    check_op(lambda t: t.clamp(**kw), [x], reference=lambda v: np.clip(v, lo_, hi_),
             second_order="zero")


def test_sigmoid_softplus_tanh_are_stable_for_large_inputs():
    values = np.array([-1e4, -1000.0, -40.0, 0.0, 40.0, 1000.0, 1e4])
    for dtype in (np.float64, np.float32):
        x = tinygen.tensor(values.astype(dtype), requires_grad=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no overflow warnings either
            s, sp, th = F.sigmoid(x), F.softplus(x, threshold=np.inf), F.tanh(x)
            (s.sum() + sp.sum() + th.sum()).backward()
        assert s.dtype == sp.dtype == x.grad.dtype == dtype
        np.testing.assert_allclose(s.detach().numpy(), _sigmoid(values), rtol=1e-6 if dtype == np.float32
                                   else 1e-14, atol=0)
        np.testing.assert_allclose(sp.detach().numpy(), np.logaddexp(0, values),
                                   rtol=1e-6 if dtype == np.float32 else 1e-14)
        expected = _sigmoid(values) * (1 - _sigmoid(values)) + _sigmoid(values) + \
            (1 - np.tanh(values) ** 2)
        np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-5, atol=1e-30)


def test_gradients_at_kinks_follow_torch():
    """relu'(0) = 0, |x|'(0) = 0, leaky_relu'(0) = slope, elu'(0) = alpha, clamp passes the
    gradient at its bounds, softplus is linear only strictly above the threshold."""
    x = np.array([-1.0, 0.0, 1.0, 2.0])
    cases = [(F.relu, T and T.relu), (F.abs, T and T.abs),
             (lambda t: F.leaky_relu(t, 0.1), T and (lambda t: TF.leaky_relu(t, 0.1))),
             (lambda t: F.elu(t, 0.7), T and (lambda t: TF.elu(t, 0.7))),
             (lambda t: F.clamp(t, 0.0, 1.0), T and (lambda t: T.clamp(t, 0.0, 1.0))),
             (lambda t: F.softplus(t, 2.0, 2.0), T and (lambda t: TF.softplus(t, 2.0, 2.0)))]
    expected = [[0, 0, 1, 1], [-1, 0, 1, 1], [0.1, 0.1, 1, 1], [0.7 * np.exp(-1), 0.7, 1, 1],
                [0, 1, 1, 0], list(_sigmoid(2 * x[:3])) + [1.0]]
    for (ours, theirs), exp in zip(cases, expected):
        t = tinygen.tensor(x, requires_grad=True)
        ours(t).sum().backward()
        np.testing.assert_allclose(t.grad.numpy(), exp, rtol=1e-15)
        if torch is not None:
            tt = T.tensor(x, requires_grad=True)
            theirs(tt).sum().backward()
            np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(), rtol=1e-15)


def test_clamp_errors():
    with pytest.raises(ValueError, match="at least one of min and max"):
        F.clamp(tinygen.tensor([1.0]))


# -- where -----------------------------------------------------------------------------------------
@given(data=st.data())
def test_where(data):
    sa, sb = data.draw(broadcastable_pair())
    a, b = data.draw(arrays(sa)), data.draw(arrays(sb))
    shape = np.broadcast_shapes(sa, sb)
    cond = data.draw(arrays(shape[data.draw(st.integers(0, len(shape))):])) > 0
    check_op(lambda x, y: F.where(tinygen.tensor(cond, device=x.device), x, y), [a, b],
             reference=lambda x, y: np.where(cond, x, y), second_order="zero",
             torch_fn=lambda x, y: T.where(T.tensor(cond), x, y))
    check_op(lambda x: F.where(cond, x, 0.5), [a], reference=lambda x: np.where(cond, x, 0.5),
             second_order="zero")
    check_op(lambda y: F.where(cond, -1.0, y), [b], reference=lambda y: np.where(cond, -1.0, y),
             second_order="zero")


def test_where_refuses_non_boolean_condition():
    with pytest.raises(TypeError, match="boolean"):
        F.where(tinygen.tensor([1, 0]), tinygen.tensor([1.0, 2.0]), 0.0)


# -- comparisons and other non-differentiable ops --------------------------------------------------
@given(data=st.data())
def test_comparisons(data):
    sa, sb = data.draw(broadcastable_pair())
    a = data.draw(arrays(sa, low=-2, high=2).map(np.round))  # rounded: equality is common
    b = data.draw(arrays(sb, low=-2, high=2).map(np.round))
    ta, tb = tinygen.tensor(a, requires_grad=True), tinygen.tensor(b)
    pairs = [(lambda x, y: x == y, np.equal), (lambda x, y: x != y, np.not_equal),
             (lambda x, y: x < y, np.less), (lambda x, y: x <= y, np.less_equal),
             (lambda x, y: x > y, np.greater), (lambda x, y: x >= y, np.greater_equal)]
    for op, ref in pairs:
        for out, expected in ((op(ta, tb), ref(a, b)), (op(ta, 0.0), ref(a, 0.0)),
                              (op(1.0, ta), ref(1.0, a)), (op(ta, b), ref(a, b))):
            assert isinstance(out, tinygen.Tensor)
            assert out.dtype == np.bool_ and not out.requires_grad and out.grad_fn is None
            np.testing.assert_array_equal(out.numpy(), expected)
    np.testing.assert_array_equal((~(ta > tb)).numpy(), ~(a > b))
    np.testing.assert_array_equal(F.logical_not(ta == tb).numpy(), a != b)


def test_sign_isfinite_isnan():
    v = np.array([-2.0, 0.0, 3.0, np.inf, -np.inf, np.nan])
    x = tinygen.tensor(v, requires_grad=True)
    for ours, ref in ((F.isfinite(x), np.isfinite(v)), (F.isnan(x), np.isnan(v))):
        assert not ours.requires_grad
        np.testing.assert_array_equal(ours.numpy(), ref)
    np.testing.assert_array_equal(F.sign(x).detach().numpy(), np.sign(v))


@given(data=st.data())
def test_sign_is_differentiable_with_zero_gradient_like_torch(data):
    x = data.draw(arrays(data.draw(shapes()), away_from=0.0))
    check_op(lambda t: F.sign(t) * t, [x], reference=lambda v: np.sign(v) * v,
             torch_fn=lambda t: T.sign(t) * t, second_order="zero")
    t = tinygen.tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    (g,) = tinygen.grad(F.sign(t).sum(), [t])
    np.testing.assert_array_equal(g.numpy(), [0.0, 0.0, 0.0])   # also at 0, as torch


# -- dtype casts and copies ------------------------------------------------------------------------
def test_cast_is_differentiable_between_float_dtypes():
    x = tinygen.tensor(np.array([1.5, -2.0]), requires_grad=True)
    y = x.to(np.float32)
    assert y.dtype == np.float32
    (y * y).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad.numpy(), [3.0, -4.0])
    assert F.cast(x, np.int64).dtype == np.int64 and not F.cast(x, np.int64).requires_grad


@given(data=st.data())
def test_cast_and_clone_through_the_harness(data):
    x = data.draw(arrays(data.draw(shapes())))
    check_op(lambda t: F.clone(t) * 2.0, [x], reference=lambda v: v * 2.0, second_order="zero")
    # float64 -> float64 is a copy; float32 -> float64 -> float32 is exact
    check_op(lambda t: F.cast(F.cast(t, np.float64), t.dtype) * 3.0, [x],
             reference=lambda v: v * 3.0, second_order="zero")


def test_clone_copies_memory_and_passes_gradient():
    x = tinygen.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x.clone()
    assert not np.shares_memory(y.detach().numpy(), x.detach().numpy())
    (3 * y).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])
