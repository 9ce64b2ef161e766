"""Reductions and (log-)softmax through the gradient-check harness."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygen
from tinygen import functional as F
from harness import arrays, check_op, shapes, torch

T = torch


def axes_for(data, ndim):
    """None, one axis (maybe negative) or a tuple of distinct axes."""
    if ndim == 0:
        return None
    kind = data.draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        return None
    if kind == "int":
        return data.draw(st.integers(-ndim, ndim - 1))
    return tuple(data.draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim,
                                    unique=True)))


def torch_dims(axis, ndim):
    return tuple(range(ndim)) if axis is None else axis


@given(data=st.data(), keepdim=st.booleans())
def test_sum_mean(data, keepdim):
    a = data.draw(arrays(data.draw(shapes())))
    axis = axes_for(data, a.ndim)
    check_op(lambda x: F.sum(x, axis, keepdim), [a],
             reference=lambda x: np.sum(x, axis=axis, keepdims=keepdim),
             torch_fn=lambda x: T.sum(x, dim=torch_dims(axis, x.ndim), keepdim=keepdim))
    check_op(lambda x: F.mean(x, axis, keepdim), [a],
             reference=lambda x: np.mean(x, axis=axis, keepdims=keepdim),
             torch_fn=lambda x: T.mean(x, dim=torch_dims(axis, x.ndim), keepdim=keepdim))


@given(data=st.data(), keepdim=st.booleans(), correction=st.sampled_from([0, 1]))
def test_var_std(data, keepdim, correction):
    a = data.draw(arrays(data.draw(shapes(min_dims=1, min_side=2))))
    axis = axes_for(data, a.ndim)
    check_op(lambda x: F.var(x, axis, keepdim, correction), [a],
             reference=lambda x: np.var(x, axis=axis, keepdims=keepdim, ddof=correction),
             torch_fn=lambda x: T.var(x, dim=torch_dims(axis, x.ndim), keepdim=keepdim,
                                      correction=correction))
    a = a + np.arange(a.size).reshape(a.shape)  # std needs a non-zero spread to be smooth
    check_op(lambda x: F.std(x, axis, keepdim, correction), [a],
             reference=lambda x: np.std(x, axis=axis, keepdims=keepdim, ddof=correction),
             torch_fn=lambda x: T.std(x, dim=torch_dims(axis, x.ndim), keepdim=keepdim,
                                      correction=correction))


@given(data=st.data(), keepdim=st.booleans())
def test_max_min_distinct_values(data, keepdim):
    shape = data.draw(shapes())
    n = int(np.prod(shape))
    a = np.array(data.draw(st.permutations(list(range(n)))), dtype=np.float64).reshape(shape)
    a = a * 0.37 - 1.0  # distinct values: no ties
    axis = axes_for(data, a.ndim)
    check_op(lambda x: F.max(x, axis, keepdim), [a],
             reference=lambda x: np.max(x, axis=axis, keepdims=keepdim),
             torch_fn=lambda x: T.amax(x, dim=torch_dims(axis, x.ndim), keepdim=keepdim))
    check_op(lambda x: F.min(x, axis, keepdim), [a],
             reference=lambda x: np.min(x, axis=axis, keepdims=keepdim),
             torch_fn=lambda x: T.amin(x, dim=torch_dims(axis, x.ndim), keepdim=keepdim))


def test_max_ties_share_the_gradient_like_amax():
    a = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    x = tinygen.tensor(a, requires_grad=True)
    F.max(x, 1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    if torch is not None:
        t = torch.tensor(a, requires_grad=True)
        torch.amax(t, 1).sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-15)


@given(data=st.data(), keepdim=st.booleans())
def test_logsumexp(data, keepdim):
    a = data.draw(arrays(data.draw(shapes(min_dims=1)), low=-20, high=20))
    axis = axes_for(data, a.ndim)

    def ref(x):
        m = np.max(x, axis=axis, keepdims=True)
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
        return out if keepdim else np.squeeze(out, axis=axis) if axis is not None else \
            out.reshape(())
    check_op(lambda x: F.logsumexp(x, axis, keepdim), [a], reference=ref,
             torch_fn=lambda x: T.logsumexp(x, dim=torch_dims(axis, x.ndim), keepdim=keepdim))


def test_logsumexp_with_minus_infinity_entries():
    a = np.array([[-np.inf, 0.0, 1.0], [-np.inf, -np.inf, -np.inf]])
    x = tinygen.tensor(a, requires_grad=True)
    y = F.logsumexp(x, 1)
    np.testing.assert_allclose(y.numpy()[0], np.log(1 + np.e))
    assert y.numpy()[1] == -np.inf
    y[0].backward()
    np.testing.assert_allclose(x.grad.numpy()[0], [0.0, 1 / (1 + np.e), np.e / (1 + np.e)])


@pytest.mark.parametrize("which", ["softmax", "log_softmax"])
@given(data=st.data())
def test_softmax_family(which, data):
    a = data.draw(arrays(data.draw(shapes(min_dims=1)), low=-10, high=10))
    dim = data.draw(st.integers(-a.ndim, a.ndim - 1))

    def ref(x):
        e = np.exp(x - x.max(axis=dim, keepdims=True))
        s = e / e.sum(axis=dim, keepdims=True)
        return s if which == "softmax" else np.log(s)
    check_op(lambda x: getattr(F, which)(x, dim), [a], reference=ref,
             torch_fn=lambda x: getattr(T, which)(x, dim))


def test_softmax_is_stable_for_large_logits():
    x = tinygen.tensor(np.array([1000.0, 1001.0, -1000.0]))
    np.testing.assert_allclose(F.softmax(x, 0).numpy(), [1 / (1 + np.e), np.e / (1 + np.e), 0.0])
    assert np.all(np.isfinite(F.log_softmax(x, 0).numpy()))


def test_argmax_argmin_and_any_all():
    a = np.array([[1.0, 5.0, 2.0], [7.0, 0.0, 7.0]])
    x = tinygen.tensor(a)
    np.testing.assert_array_equal(F.argmax(x, 1).numpy(), [1, 0])
    np.testing.assert_array_equal(F.argmin(x, 0).numpy(), [0, 1, 0])
    assert F.argmax(x).item() == 3 and F.argmax(x).dtype == np.int64
    assert bool(F.any(x > 6)) and not bool(F.all(x > 0))


def test_reduction_argument_errors():
    x = tinygen.tensor(np.zeros((2, 3)))
    with pytest.raises(IndexError, match="out of range"):
        F.sum(x, 2)
    with pytest.raises(ValueError, match="repeats"):
        F.sum(x, (0, 0))
    with pytest.raises(TypeError, match="floating"):
        F.mean(tinygen.tensor([1, 2]))
    assert F.sum(tinygen.tensor([True, True, False])).item() == 2
