"""matmul (1-D, 2-D, batched with broadcasting, reflected), linear, dropout and batch_norm
through the harness, plus their statistics and error cases."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygen
from tinygen import functional as F
from harness import arrays, broadcastable_pair, check_op, shapes, torch

T = torch
TF = torch.nn.functional if torch is not None else None
side = st.integers(1, 4)


@st.composite
def matmul_shapes(draw):
    """Operand shapes with NumPy/torch matmul semantics: either may be 1-D; batch axes (up to
    two, either operand may lack them or have size-1 axes) broadcast."""
    n, k, m = draw(side), draw(side), draw(side)
    a_vec, b_vec = draw(st.booleans()), draw(st.booleans())
    ba, bb = draw(broadcastable_pair(max_dims=2, max_side=3))
    a = (k,) if a_vec else tuple(ba) + (n, k)
    b = (k,) if b_vec else tuple(bb) + (k, m)
    return a, b


@given(data=st.data())
def test_matmul_all_ranks(data):
    sa, sb = data.draw(matmul_shapes())
    a, b = data.draw(arrays(sa)), data.draw(arrays(sb))

    def naive(x, y):  # 1-D promotion and batch broadcasting by hand, then a triple loop
        x2 = x.reshape(1, -1) if x.ndim == 1 else x
        y2 = y.reshape(-1, 1) if y.ndim == 1 else y
        batch = np.broadcast_shapes(x2.shape[:-2], y2.shape[:-2])
        xb = np.broadcast_to(x2, batch + x2.shape[-2:])
        yb = np.broadcast_to(y2, batch + y2.shape[-2:])
        out = np.zeros(batch + (x2.shape[-2], y2.shape[-1]))
        for idx in np.ndindex(*batch):
            for i in range(x2.shape[-2]):
                for j in range(y2.shape[-1]):
                    out[idx + (i, j)] = sum(xb[idx + (i, q)] * yb[idx + (q, j)]
                                            for q in range(x2.shape[-1]))
        if y.ndim == 1:
            out = out[..., 0]
        if x.ndim == 1:
            out = out[..., 0, :] if y.ndim > 1 else out[..., 0]
        return out
    check_op(F.matmul, [a, b], reference=naive, torch_fn=lambda x, y: x @ y)
    check_op(lambda x: x @ b.astype(x.dtype), [a], reference=lambda x: x @ b,
             second_order="zero")  # linear in each operand alone
    check_op(lambda y: a.astype(y.dtype) @ y, [b], reference=lambda y: a @ y,  # reflected
             second_order="zero")


def test_matmul_shape_errors():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 5\)"):
        F.matmul(tinygen.zeros(2, 3), tinygen.zeros(4, 5))
    with pytest.raises(ValueError, match=r"\(3,\) and \(4,\)"):
        F.matmul(tinygen.zeros(3), tinygen.zeros(4))
    with pytest.raises(ValueError, match="at least one axis"):
        F.matmul(tinygen.tensor(1.0), tinygen.zeros(2))
    with pytest.raises(ValueError, match="do not broadcast"):
        F.matmul(tinygen.zeros(2, 2, 3), tinygen.zeros(3, 3, 4))


@given(data=st.data(), bias=st.booleans())
def test_linear(data, bias):
    batch = tuple(data.draw(st.lists(side, max_size=2)))
    i, o = data.draw(side), data.draw(side)
    x, w = data.draw(arrays(batch + (i,))), data.draw(arrays((o, i)))
    if bias:
        b = data.draw(arrays((o,)))
        check_op(F.linear, [x, w, b], reference=lambda x, w, b: x @ w.T + b,
                 torch_fn=TF.linear if TF else None)
        check_op(lambda b_: F.linear(tinygen.tensor(x, device=b_.device).to(b_.dtype),
                                     tinygen.tensor(w, device=b_.device)
                                     .to(b_.dtype), b_), [b],
                 reference=lambda b_: x @ w.T + b_, second_order="zero")
    else:
        check_op(F.linear, [x, w], reference=lambda x, w: x @ w.T,
                 torch_fn=TF.linear if TF else None)


def test_linear_errors():
    with pytest.raises(ValueError, match=r"input of shape \(2, 3\).*weight of shape \(4, 5\)"):
        F.linear(tinygen.zeros(2, 3), tinygen.zeros(4, 5))
    with pytest.raises(ValueError, match=r"bias has shape \(3,\), expected \(4,\)"):
        F.linear(tinygen.zeros(2, 3), tinygen.zeros(4, 3), tinygen.zeros(3))
    with pytest.raises(TypeError, match="weight must be a Tensor"):
        F.linear(tinygen.zeros(2, 3), np.zeros((4, 3)))


# -- dropout ---------------------------------------------------------------------------------------
@given(data=st.data(), p=st.sampled_from([0.2, 0.5, 0.9]), seed=st.integers(0, 2 ** 16))
def test_dropout_through_the_harness(data, p, seed):
    """With a fresh generator of the same seed per call the mask is fixed, so dropout is a
    linear map x -> x * mask / (1 - p), checked like any other op."""
    x = data.draw(arrays(data.draw(shapes())))
    keep = tinygen.Generator(seed).uniform(x.shape, np.float64) >= p
    check_op(lambda t: F.dropout(t, p, True, generator=tinygen.Generator(seed)), [x],
             reference=lambda v: v * keep / (1 - p), second_order="zero")


def test_dropout_statistics_and_modes():
    x = tinygen.ones(200, 500)
    y = F.dropout(x, 0.3, True, generator=tinygen.Generator(1)).numpy()
    kept = y != 0
    # 100,000 Bernoulli(0.7) draws: the kept fraction's standard deviation is 0.0014
    assert abs(kept.mean() - 0.7) < 0.007
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    assert abs(y.mean() - 1.0) < 0.01  # unbiased in expectation
    assert F.dropout(x, 0.3, training=False) is x
    assert F.dropout(x, 0.0, True) is x  # p = 0: the identity, no copy
    assert np.all(F.dropout(x, 1.0, True).numpy() == 0)
    # independent masks from the global generator, reproducible from a seed
    tinygen.manual_seed(5)
    m1 = F.dropout(x, 0.5).numpy()
    m2 = F.dropout(x, 0.5).numpy()
    tinygen.manual_seed(5)
    np.testing.assert_array_equal(F.dropout(x, 0.5).numpy(), m1)
    assert np.mean(m1 != m2) > 0.4
    # the gradient flows only through kept elements, scaled
    xb = tinygen.ones(200, 500, requires_grad=True)
    b = F.dropout(xb, 0.5, True, generator=tinygen.Generator(7))
    b.sum().backward()
    np.testing.assert_array_equal(xb.grad.detach().numpy(), b.detach().numpy())
    with pytest.raises(ValueError, match="p must be in"):
        F.dropout(x, 1.5)


def test_dropout_keeps_float32():
    x = tinygen.ones(10, 10)
    assert F.dropout(x, 0.5, generator=tinygen.Generator(0)).dtype == np.float32


# -- batch_norm ------------------------------------------------------------------------------------
def bn_shape(data, rank):
    return (data.draw(st.integers(2, 4)), data.draw(side)) + \
        tuple(data.draw(side) for _ in range(rank - 2))


@given(data=st.data(), rank=st.sampled_from([2, 3, 4]), affine=st.booleans())
def test_batch_norm_training(data, rank, affine):
    shape = bn_shape(data, rank)
    x = data.draw(arrays(shape))
    x = x + 0.1 * np.arange(x.size).reshape(shape)  # a spread in every channel
    c = shape[1]
    axes = (0,) + tuple(range(2, rank))
    bshape = (1, c) + (1,) * (rank - 2)

    def ref(x, w=None, b=None):
        mu = x.mean(axis=axes, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)  # biased, as PyTorch normalizes
        y = (x - mu) / np.sqrt(var + 1e-5)
        return y if w is None else y * w.reshape(bshape) + b.reshape(bshape)
    if affine:
        w, b = data.draw(arrays((c,))), data.draw(arrays((c,)))
        check_op(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), [x, w, b],
                 reference=ref, so_rtol=1e-4,
                 torch_fn=lambda x, w, b: TF.batch_norm(x, None, None, w, b, training=True))
    else:
        check_op(lambda x: F.batch_norm(x, None, None, training=True), [x], reference=ref,
                 so_rtol=1e-4, torch_fn=lambda x: TF.batch_norm(x, None, None, training=True))


@given(data=st.data(), rank=st.sampled_from([2, 3, 4]), momentum=st.sampled_from([0.1, 0.5]))
def test_batch_norm_running_statistics_match_torch(data, rank, momentum):
    shape = bn_shape(data, rank)
    x = data.draw(arrays(shape))
    c, n = shape[1], int(np.prod(shape)) // shape[1]
    rm0, rv0 = data.draw(arrays((c,))), data.draw(arrays((c,), low=0.5, high=2.0))
    rm, rv = tinygen.tensor(rm0), tinygen.tensor(rv0)
    F.batch_norm(tinygen.tensor(x), rm, rv, training=True, momentum=momentum)
    axes = (0,) + tuple(range(2, rank))
    np.testing.assert_allclose(rm.numpy(), (1 - momentum) * rm0 + momentum * x.mean(axis=axes),
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rv.numpy(), (1 - momentum) * rv0 + momentum *
                               x.var(axis=axes) * n / (n - 1), rtol=1e-12, atol=1e-14)
    if torch is not None:
        trm, trv = T.tensor(rm0), T.tensor(rv0)
        TF.batch_norm(T.tensor(x), trm, trv, training=True, momentum=momentum)
        np.testing.assert_allclose(rm.numpy(), trm.numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(rv.numpy(), trv.numpy(), rtol=1e-12, atol=1e-14)


@given(data=st.data(), rank=st.sampled_from([2, 3, 4]))
def test_batch_norm_eval_uses_the_running_statistics(data, rank):
    shape = bn_shape(data, rank)
    c = shape[1]
    x, w, b = data.draw(arrays(shape)), data.draw(arrays((c,))), data.draw(arrays((c,)))
    rm, rv = data.draw(arrays((c,))), data.draw(arrays((c,), low=0.5, high=2.0))
    bshape = (1, c) + (1,) * (rank - 2)

    def ours(x, w, b):
        return F.batch_norm(x, tinygen.tensor(rm, device=x.device).to(x.dtype),
                            tinygen.tensor(rv, device=x.device).to(x.dtype),
                            w, b, training=False)
    check_op(ours, [x, w, b],
             reference=lambda x, w, b: (x - rm.reshape(bshape)) / np.sqrt(rv.reshape(bshape) +
                                                                           1e-5) *
             w.reshape(bshape) + b.reshape(bshape),
             torch_fn=lambda x, w, b: TF.batch_norm(x, T.tensor(rm, dtype=x.dtype),
                                                    T.tensor(rv, dtype=x.dtype), w, b,
                                                    training=False))


def test_batch_norm_eval_does_not_touch_the_running_statistics_and_errors():
    rm, rv = tinygen.zeros(3, dtype=np.float64), tinygen.ones(3, dtype=np.float64)
    F.batch_norm(tinygen.randn(4, 3, dtype=np.float64), rm, rv, training=False)
    np.testing.assert_array_equal(rm.numpy(), 0.0)
    np.testing.assert_array_equal(rv.numpy(), 1.0)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(tinygen.zeros(1, 3), rm, rv, training=True)
    with pytest.raises(ValueError, match=r"running_mean has shape \(3,\), expected \(2,\)"):
        F.batch_norm(tinygen.zeros(4, 2), rm, rv, training=True)
    with pytest.raises(ValueError, match=r"weight has shape \(2,\), expected \(3,\)"):
        F.batch_norm(tinygen.zeros(4, 3), rm, rv, weight=tinygen.ones(2))
    with pytest.raises(ValueError, match=r"\(N, C, ...\), got \(3,\)"):
        F.batch_norm(tinygen.zeros(3), rm, rv)
