"""matmul, linear, dropout and batch_norm through the harness."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygen
from tinygen import functional as F
from harness import arrays, check_op, torch

T = torch
side = st.integers(1, 4)


@given(data=st.data())
def test_matmul_all_ranks(data):
    kind = data.draw(st.sampled_from(["vv", "mv", "vm", "mm", "batched", "broadcast"]))
    n, k, m = data.draw(side), data.draw(side), data.draw(side)
    b1 = tuple(data.draw(st.lists(side, max_size=2)))
    shapes = {"vv": ((k,), (k,)), "mv": ((n, k), (k,)), "vm": ((k,), (k, m)),
              "mm": ((n, k), (k, m)), "batched": (b1 + (n, k), b1 + (k, m)),
              "broadcast": ((2, 1, n, k), (3, k, m))}[kind]
    a, b = data.draw(arrays(shapes[0])), data.draw(arrays(shapes[1]))
    check_op(F.matmul, [a, b], reference=np.matmul, torch_fn=lambda x, y: x @ y)
    check_op(lambda x, y: x @ y, [a, b], reference=np.matmul)


def test_matmul_shape_errors():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 5\)"):
        F.matmul(tinygen.zeros(2, 3), tinygen.zeros(4, 5))
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
                 torch_fn=T.nn.functional.linear if T else None)
    else:
        check_op(F.linear, [x, w], reference=lambda x, w: x @ w.T,
                 torch_fn=T.nn.functional.linear if T else None)


def test_linear_errors():
    with pytest.raises(ValueError, match=r"input of shape \(2, 3\).*weight of shape \(4, 5\)"):
        F.linear(tinygen.zeros(2, 3), tinygen.zeros(4, 5))
    with pytest.raises(ValueError, match="bias has shape"):
        F.linear(tinygen.zeros(2, 3), tinygen.zeros(4, 3), tinygen.zeros(3))


def test_dropout_statistics_and_modes():
    x = tinygen.ones(200, 500)
    g = tinygen.Generator(1)
    y = F.dropout(x, 0.3, True, generator=g).numpy()
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    assert F.dropout(x, 0.3, training=False) is x
    assert F.dropout(x, 0.0, True) is x
    assert np.all(F.dropout(x, 1.0, True).numpy() == 0)
    # same generator seed, same mask; gradient flows only through kept elements
    a = F.dropout(x, 0.5, True, generator=tinygen.Generator(7)).numpy()
    xb = tinygen.ones(200, 500, requires_grad=True)
    b = F.dropout(xb, 0.5, True, generator=tinygen.Generator(7))
    np.testing.assert_array_equal(a, b.numpy())
    b.sum().backward()
    np.testing.assert_array_equal(xb.grad.numpy(), a)
    with pytest.raises(ValueError, match="p must be in"):
        F.dropout(x, 1.5)


@given(data=st.data(), rank=st.sampled_from([2, 3, 4]))
def test_batch_norm_training(data, rank):
    shape = (data.draw(st.integers(2, 4)), data.draw(side)) + \
        tuple(data.draw(side) for _ in range(rank - 2))
    x = data.draw(arrays(shape))
    x = x + 0.1 * np.arange(x.size).reshape(shape)  # a spread in every channel
    c = shape[1]
    w, b = data.draw(arrays((c,))), data.draw(arrays((c,)))
    axes = (0,) + tuple(range(2, rank))
    bshape = (1, c) + (1,) * (rank - 2)

    def ref(x, w, b):
        mu = x.mean(axis=axes, keepdims=True)
        var = x.var(axis=axes, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * w.reshape(bshape) + b.reshape(bshape)
    check_op(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), [x, w, b],
             reference=ref, so_rtol=1e-4,
             torch_fn=lambda x, w, b: T.nn.functional.batch_norm(x, None, None, w, b,
                                                                 training=True))


def test_batch_norm_running_statistics_and_eval():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3, 4)) * 2 + 1
    rm, rv = tinygen.zeros(3, dtype=np.float64), tinygen.ones(3, dtype=np.float64)
    F.batch_norm(tinygen.tensor(x), rm, rv, training=True, momentum=0.1)
    n = 8 * 4
    np.testing.assert_allclose(rm.numpy(), 0.1 * x.mean(axis=(0, 2)))
    np.testing.assert_allclose(rv.numpy(), 0.9 + 0.1 * x.var(axis=(0, 2)) * n / (n - 1))
    y = F.batch_norm(tinygen.tensor(x), rm, rv, training=False).numpy()
    np.testing.assert_allclose(y, (x - rm.numpy()[None, :, None]) /
                               np.sqrt(rv.numpy()[None, :, None] + 1e-5))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(tinygen.zeros(1, 3), rm, rv, training=True)
    with pytest.raises(ValueError, match="running_mean has shape"):
        F.batch_norm(tinygen.zeros(4, 2), rm, rv, training=True)
