"""Elementwise ops through the gradient-check harness, with hypothesis-drawn shapes and values."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygen
from tinygen import functional as F
from harness import arrays, broadcastable_pair, check_op, shapes, torch

T = torch  # the oracle (None without torch): torch_fn lambdas only run when it is installed


# -- binary arithmetic with broadcasting -------------------------------------------------------
BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
    "maximum": (F.maximum, np.maximum),
    "minimum": (F.minimum, np.minimum),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(data=st.data())
def test_binary_broadcasting(name, data):
    sa, sb = data.draw(broadcastable_pair())
    a = data.draw(arrays(sa))
    b = data.draw(arrays(sb, away_from=0.0, gap=0.2) if name == "div" else arrays(sb))
    if name in ("maximum", "minimum"):  # keep away from ties, where the gradient is split
        b = b + np.where(np.abs(np.broadcast_to(b, np.broadcast_shapes(sa, sb)) -
                                np.broadcast_to(a, np.broadcast_shapes(sa, sb))).min(
            initial=1.0) < 1e-3, 0.5, 0.0)
    op, ref = BINARY[name]
    torch_fn = {"maximum": lambda x, y: T.maximum(x, y), "minimum": lambda x, y: T.minimum(x, y)
                }.get(name, op)
    check_op(op, [a, b], reference=ref, torch_fn=torch_fn)


def test_maximum_minimum_ties_split_the_gradient():
    a = tinygen.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    b = tinygen.tensor(np.array([1.0, 5.0, 0.0]), requires_grad=True)
    F.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [0.5, 0.0, 1.0])
    np.testing.assert_array_equal(b.grad.numpy(), [0.5, 1.0, 0.0])
    if torch is not None:
        ta = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
        tb = torch.tensor([1.0, 5.0, 0.0], dtype=torch.float64, requires_grad=True)
        torch.maximum(ta, tb).sum().backward()
        np.testing.assert_array_equal(a.grad.numpy(), ta.grad.numpy())


@given(data=st.data())
def test_reflected_scalar_forms(data):
    a = data.draw(arrays(data.draw(shapes()), away_from=0.0, gap=0.2))
    for op in (lambda x: 2.5 - x, lambda x: 1.5 / x, lambda x: 3.0 * x + 1.0, lambda x: -x,
               lambda x: 2.0 ** x, lambda x: x - 0.5, lambda x: x / 4.0):
        check_op(op, [a], reference=op, torch_fn=op)


def test_numpy_array_on_the_left_defers_to_tensor():
    a = tinygen.tensor(np.ones(3), requires_grad=True)
    out = np.full(3, 2.0) * a
    assert isinstance(out, tinygen.Tensor)
    out.sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [2.0, 2.0, 2.0])


# -- powers ----------------------------------------------------------------------------------------
@given(data=st.data(), p=st.sampled_from([0, 1, 2, 3, -1, 0.5, 1.5, -2.5]))
def test_pow_scalar_exponent(data, p):
    positive = not float(p).is_integer()
    a = data.draw(arrays(data.draw(shapes()), low=0.2 if positive else -3.0, high=3.0,
                         away_from=None if positive or p >= 0 else 0.0, gap=0.2))
    check_op(lambda x: x ** p, [a], reference=lambda x: x ** p, torch_fn=lambda x: x ** p)


@given(data=st.data())
def test_pow_tensor_exponent(data):
    sa, sb = data.draw(broadcastable_pair())
    a = data.draw(arrays(sa, low=0.2, high=3.0))
    b = data.draw(arrays(sb, low=-2.0, high=2.0))
    check_op(lambda x, y: x ** y, [a, b], reference=np.power, torch_fn=lambda x, y: x ** y)


def test_pow_gradient_wrt_exponent_at_zero_base_is_zero():
    a = tinygen.tensor(np.array([0.0, 2.0]))
    b = tinygen.tensor(np.array([2.0, 3.0]), requires_grad=True)
    (a ** b).sum().backward()
    np.testing.assert_allclose(b.grad.numpy(), [0.0, 8.0 * np.log(2.0)])


# -- unary math and activations -----------------------------------------------------------------------
UNARY = {
    "exp": (F.exp, np.exp, lambda x: T.exp(x), {}),
    "log": (F.log, np.log, lambda x: T.log(x), {"low": 0.1}),
    "log1p": (F.log1p, np.log1p, lambda x: T.log1p(x), {"low": -0.9}),
    "sqrt": (F.sqrt, np.sqrt, lambda x: T.sqrt(x), {"low": 0.1}),
    "abs": (F.abs, np.abs, lambda x: T.abs(x), {"away_from": 0.0}),
    "tanh": (F.tanh, np.tanh, lambda x: T.tanh(x), {}),
    "sigmoid": (F.sigmoid, lambda x: 1 / (1 + np.exp(-x)), lambda x: T.sigmoid(x), {}),
    "relu": (F.relu, lambda x: np.maximum(x, 0), lambda x: T.relu(x), {"away_from": 0.0}),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), lambda x: np.where(x > 0, x, 0.2 * x),
                   lambda x: T.nn.functional.leaky_relu(x, 0.2), {"away_from": 0.0}),
    "softplus": (F.softplus, lambda x: np.log1p(np.exp(x)),
                 lambda x: T.nn.functional.softplus(x), {}),
    "softplus_beta": (lambda x: F.softplus(x, beta=2.0, threshold=3.0),
                      lambda x: np.where(2 * x > 3.0, x, np.log1p(np.exp(2 * x)) / 2),
                      lambda x: T.nn.functional.softplus(x, beta=2.0, threshold=3.0),
                      {"away_from": 1.5}),
    "elu": (lambda x: F.elu(x, 0.7), lambda x: np.where(x > 0, x, 0.7 * np.expm1(x)),
            lambda x: T.nn.functional.elu(x, 0.7), {"away_from": 0.0}),
    "clamp": (lambda x: F.clamp(x, -1.0, 0.5), lambda x: np.clip(x, -1.0, 0.5),
              lambda x: T.clamp(x, -1.0, 0.5), {"away_from": None}),
    "square": (F.square, np.square, lambda x: x * x, {}),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(data=st.data())
def test_unary(name, data):
    op, ref, torch_fn, opts = UNARY[name]
    opts = dict(opts)
    low = opts.pop("low", -3.0)
    a = data.draw(arrays(data.draw(shapes()), low=low, **opts))
    if name == "clamp":  # keep away from the clamp boundaries
        a = np.where(np.abs(a + 1.0) < 1e-3, a + 0.1, a)
        a = np.where(np.abs(a - 0.5) < 1e-3, a + 0.1, a)
    check_op(op, [a], reference=ref, torch_fn=torch_fn)


def test_sigmoid_and_softplus_are_stable_for_large_inputs():
    x = tinygen.tensor(np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0]), requires_grad=True)
    s = F.sigmoid(x)
    assert np.all(np.isfinite(s.numpy()))
    np.testing.assert_allclose(s.numpy(), [0.0, np.exp(-40.0), 0.5, 1.0, 1.0], rtol=1e-12,
                               atol=0)
    sp = F.softplus(x, threshold=np.inf)
    np.testing.assert_allclose(sp.numpy(), [0.0, np.exp(-40.0), np.log(2.0), 40.0, 1000.0],
                               rtol=1e-12)
    (s.sum() + sp.sum()).backward()
    assert np.all(np.isfinite(x.grad.numpy()))


def test_relu_gradient_at_zero_is_zero_like_torch():
    x = tinygen.tensor(np.array([-1.0, 0.0, 1.0]), requires_grad=True)
    F.relu(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 1.0])
    y = tinygen.tensor(np.array([0.0]), requires_grad=True)
    F.abs(y).sum().backward()
    np.testing.assert_array_equal(y.grad.numpy(), [0.0])


def test_clamp_gradient_passes_at_the_bounds_like_torch():
    x = tinygen.tensor(np.array([-2.0, -1.0, 0.0, 1.0, 2.0]), requires_grad=True)
    F.clamp(x, -1.0, 1.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 1.0, 1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="at least one of min and max"):
        F.clamp(x)


@given(data=st.data())
def test_where(data):
    sa, sb = data.draw(broadcastable_pair())
    a, b = data.draw(arrays(sa)), data.draw(arrays(sb))
    shape = np.broadcast_shapes(sa, sb)
    cond = data.draw(arrays(shape)) > 0
    check_op(lambda x, y: F.where(tinygen.tensor(cond), x, y), [a, b],
             reference=lambda x, y: np.where(cond, x, y),
             torch_fn=lambda x, y: T.where(T.tensor(cond), x, y))


def test_where_refuses_non_boolean_condition():
    with pytest.raises(TypeError, match="boolean"):
        F.where(tinygen.tensor([1, 0]), tinygen.tensor([1.0, 2.0]), 0.0)


# -- comparisons (no gradient) ----------------------------------------------------------------------
@given(data=st.data())
def test_comparisons(data):
    sa, sb = data.draw(broadcastable_pair())
    a = data.draw(arrays(sa, low=-2, high=2).map(np.round))
    b = data.draw(arrays(sb, low=-2, high=2).map(np.round))
    ta = tinygen.tensor(a, requires_grad=True)
    tb = tinygen.tensor(b)
    for op, ref in ((lambda x, y: x == y, np.equal), (lambda x, y: x != y, np.not_equal),
                    (lambda x, y: x < y, np.less), (lambda x, y: x <= y, np.less_equal),
                    (lambda x, y: x > y, np.greater), (lambda x, y: x >= y, np.greater_equal)):
        out = op(ta, tb)
        assert out.dtype == np.bool_ and not out.requires_grad
        np.testing.assert_array_equal(out.numpy(), ref(a, b))


def test_cast_is_differentiable_between_float_dtypes():
    x = tinygen.tensor(np.array([1.5, -2.0]), requires_grad=True)
    y = x.to(np.float32)
    assert y.dtype == np.float32
    (y * y).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad.numpy(), [3.0, -4.0])


def test_clone_copies_memory_and_passes_gradient():
    x = tinygen.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x.clone()
    assert not np.shares_memory(y.numpy(), x.numpy())
    (3 * y).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])
