"""Ops for likelihoods and quantization through the gradient-check harness (float64 naive
references, hypothesis-drawn shapes, central differences, second order, PyTorch as oracle):
logaddexp, logsigmoid, log2, log10, exp2, rsqrt, floor/ceil/round/trunc (zero gradient), prod
(zeros included), logcumsumexp, the tests isinf / isclose; and more pointwise math (tan, asin,
acos, atan, atan2, sinh, cosh, expm1, reciprocal)."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygen
from tinygen import functional as F
from harness import arrays, broadcastable_pair, check_op, shapes, torch

T = torch
TF = torch.nn.functional if torch is not None else None


@given(data=st.data())
def test_logaddexp_broadcasting(data):
    sa, sb = data.draw(broadcastable_pair())
    a, b = data.draw(arrays(sa, low=-30, high=30)), data.draw(arrays(sb, low=-30, high=30))
    check_op(F.logaddexp, [a, b], reference=lambda x, y: np.log(np.exp(x) + np.exp(y)),
             torch_fn=lambda x, y: T.logaddexp(x, y))


def test_logaddexp_does_not_overflow():
    a = tinygen.tensor(np.array([1000.0, -1000.0, -math.inf]))
    b = tinygen.tensor(np.array([1000.0, -1001.0, 0.0]))
    np.testing.assert_allclose(a.logaddexp(b).numpy(),
                               [1000 + math.log(2), -1000 + math.log1p(math.exp(-1)), 0.0])


@given(data=st.data())
def test_logsigmoid(data):
    x = data.draw(arrays(data.draw(shapes()), low=-40.0, high=40.0))
    check_op(F.logsigmoid, [x], reference=lambda v: -np.logaddexp(0.0, -v),
             torch_fn=lambda t: TF.logsigmoid(t))


POSITIVE = {  # name: (ours, naive reference, torch)
    "log2": (lambda t: t.log2(), lambda v: np.log(v) / math.log(2), lambda t: T.log2(t)),
    "log10": (lambda t: t.log10(), lambda v: np.log(v) / math.log(10), lambda t: T.log10(t)),
    "exp2": (lambda t: t.exp2(), lambda v: 2.0 ** v, lambda t: T.exp2(t)),
    "rsqrt": (lambda t: t.rsqrt(), lambda v: 1 / np.sqrt(v), lambda t: T.rsqrt(t)),
}


@pytest.mark.parametrize("name", sorted(POSITIVE))
@given(data=st.data())
def test_logs_and_powers(name, data):
    x = data.draw(arrays(data.draw(shapes()), low=0.1, high=5.0))
    ours, ref, theirs = POSITIVE[name]
    check_op(ours, [x], reference=ref, torch_fn=theirs)


ROUNDING = {  # name: (ours, reference, torch, where the op jumps)
    "floor": (F.floor, np.floor, lambda t: T.floor(t), np.arange(-4, 5)),
    "ceil": (lambda t: t.ceil(), np.ceil, lambda t: T.ceil(t), np.arange(-4, 5)),
    "trunc": (lambda t: t.trunc(), np.trunc, lambda t: T.trunc(t), np.arange(-4, 5)),
    "round": (lambda t: t.round(), np.round, lambda t: T.round(t), np.arange(-4, 5) + 0.5),
}


@pytest.mark.parametrize("name", sorted(ROUNDING))
@given(data=st.data())
def test_rounding_has_zero_gradient(name, data):
    ours, ref, theirs, jumps = ROUNDING[name]
    x = data.draw(arrays(data.draw(shapes()), away_from=tuple(jumps), gap=0.01))
    check_op(ours, [x], reference=ref, torch_fn=theirs, second_order="zero")


@given(x=arrays(shapes(), low=-5, high=5), decimals=st.integers(-1, 3))
def test_round_decimals_and_halves_to_even(x, decimals):
    ours = F.round(tinygen.tensor(x), decimals=decimals).numpy()
    np.testing.assert_array_equal(ours, np.round(x, decimals))
    if torch is not None:
        np.testing.assert_allclose(ours, T.round(T.tensor(x), decimals=decimals).numpy(),
                                   rtol=1e-15, atol=1e-15)
    np.testing.assert_array_equal(F.round(tinygen.tensor([0.5, 1.5, 2.5, -0.5])).numpy(),
                                  [0.0, 2.0, 2.0, -0.0])


def test_rounding_keeps_integer_tensors():
    i = tinygen.tensor([1, -2, 3])
    for op in (F.floor, F.ceil, F.trunc, F.round):
        out = op(i)
        assert out.dtype == np.int64
        np.testing.assert_array_equal(out.numpy(), [1, -2, 3])


@given(data=st.data(), zeros=st.integers(0, 2), keepdim=st.booleans())
def test_prod_including_zeros(data, zeros, keepdim):
    x = data.draw(arrays(data.draw(shapes(min_dims=0)), low=-2.0, high=2.0))
    flat = x.reshape(-1)
    for _ in range(zeros):
        flat[data.draw(st.integers(0, flat.size - 1))] = 0.0
    dim = None if x.ndim == 0 or data.draw(st.booleans()) else \
        data.draw(st.integers(-x.ndim, x.ndim - 1))

    def ref(a):
        if dim is None:
            out = 1.0
            for v in a.reshape(-1):
                out *= v
            return np.full((1,) * a.ndim, out) if keepdim else np.array(out)
        return np.prod(a, axis=dim, keepdims=keepdim)   # each slice in the same order
    # PyTorch divides by x where it can: its gradient underflows for tiny values and its double
    # backward is wrong for small ones; ours (no division) is checked by central differences
    oracle = bool(np.all((x == 0) | (np.abs(x) > 1e-3)))
    if dim is None:
        tfn = (lambda t: T.prod(t).reshape((1,) * t.ndim) if keepdim else T.prod(t))
    else:
        tfn = (lambda t: T.prod(t, dim, keepdim=keepdim))
    check_op(lambda t: t.prod(dim, keepdim), [x], reference=ref, so_rtol=1e-4,
             torch_fn=tfn if oracle else None, torch_second_order=bool(np.all(np.abs(x) > 1e-3)))


def test_prod_of_integers_and_zero_gradient_positions():
    assert F.prod(tinygen.tensor([[1, 2], [3, 4]]), 1).dtype == np.int64
    np.testing.assert_array_equal(F.prod(tinygen.tensor([[1, 2], [3, 4]]), 1).numpy(), [2, 12])
    x = tinygen.tensor(np.array([2.0, 0.0, 3.0, 0.0]), requires_grad=True)
    x.prod().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 0.0, 0.0])   # two zeros
    y = tinygen.tensor(np.array([2.0, 0.0, 3.0]), requires_grad=True)
    y.prod().backward()
    np.testing.assert_array_equal(y.grad.numpy(), [0.0, 6.0, 0.0])        # one zero


@given(data=st.data())
def test_logcumsumexp(data):
    x = data.draw(arrays(data.draw(shapes(min_dims=1)), low=-50, high=50))
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1))

    def ref(a):   # one prefix at a time, in exact (Python float) log-sum-exp
        out = np.empty_like(a)
        b, o = np.moveaxis(a, dim, 0), np.moveaxis(out, dim, 0)
        for i in range(b.shape[0]):
            m = b[:i + 1].max(axis=0)
            o[i] = m + np.log(np.exp(b[:i + 1] - m).sum(axis=0))
        return out
    check_op(lambda t: t.logcumsumexp(dim), [x], reference=ref,
             torch_fn=lambda t: T.logcumsumexp(t, dim))


def test_logcumsumexp_extreme_ranges():
    x = tinygen.tensor(np.array([-1000.0, 0.0, 1000.0, -math.inf]))
    np.testing.assert_allclose(F.logcumsumexp(x, 0).numpy(), [-1000.0, 0.0, 1000.0, 1000.0])


@given(data=st.data())
def test_isinf_isclose(data):
    sa, sb = data.draw(broadcastable_pair())
    specials = st.sampled_from([math.inf, -math.inf, math.nan, 0.0, 1.0, 1.0 + 1e-6])
    a = np.array(data.draw(st.lists(specials, min_size=int(np.prod(sa)),
                                    max_size=int(np.prod(sa))))).reshape(sa)
    b = np.array(data.draw(st.lists(specials, min_size=int(np.prod(sb)),
                                    max_size=int(np.prod(sb))))).reshape(sb)
    np.testing.assert_array_equal(tinygen.tensor(a).isinf().numpy(), np.isinf(a))
    for equal_nan in (False, True):
        ours = tinygen.tensor(a).isclose(tinygen.tensor(b), equal_nan=equal_nan).numpy()
        assert ours.dtype == np.bool_
        np.testing.assert_array_equal(ours, np.isclose(a, b, equal_nan=equal_nan))
        if torch is not None:
            np.testing.assert_array_equal(
                ours, T.isclose(T.tensor(a), T.tensor(b), equal_nan=equal_nan).numpy())


MORE_MATH = {  # name: (ours, naive reference, torch, input range)
    "tan": (lambda t: t.tan(), np.tan, lambda t: T.tan(t), (-1.3, 1.3)),
    "asin": (lambda t: t.asin(), np.arcsin, lambda t: T.asin(t), (-0.95, 0.95)),
    "acos": (lambda t: t.acos(), np.arccos, lambda t: T.acos(t), (-0.95, 0.95)),
    "atan": (lambda t: t.atan(), np.arctan, lambda t: T.atan(t), (-4.0, 4.0)),
    "sinh": (lambda t: t.sinh(), lambda v: (np.exp(v) - np.exp(-v)) / 2, lambda t: T.sinh(t),
             (-3.0, 3.0)),
    "cosh": (lambda t: t.cosh(), lambda v: (np.exp(v) + np.exp(-v)) / 2, lambda t: T.cosh(t),
             (-3.0, 3.0)),
    "expm1": (lambda t: t.expm1(), np.expm1, lambda t: T.expm1(t), (-3.0, 3.0)),
}


@pytest.mark.parametrize("name", sorted(MORE_MATH))
@given(data=st.data())
def test_more_pointwise_math(name, data):
    ours, ref, theirs, (lo, hi) = MORE_MATH[name]
    x = data.draw(arrays(data.draw(shapes()), low=lo, high=hi))
    check_op(ours, [x], reference=ref, torch_fn=theirs)


@given(data=st.data())
def test_reciprocal_and_atan2(data):
    x = data.draw(arrays(data.draw(shapes()), away_from=0.0, gap=0.3))
    check_op(lambda t: t.reciprocal(), [x], reference=lambda v: 1 / v,
             torch_fn=lambda t: T.reciprocal(t))
    sa, sb = data.draw(broadcastable_pair())
    a, b = data.draw(arrays(sa, away_from=0.0, gap=0.3)), data.draw(arrays(sb, away_from=0.0,
                                                                           gap=0.3))
    check_op(F.atan2, [a, b], reference=np.arctan2, torch_fn=lambda u, v: T.atan2(u, v))
