"""Reductions and (log-)softmax through the gradient-check harness: sum, mean, var/std with
Bessel's correction, max/min (ties share the gradient like ``torch.amax``), logsumexp (with -inf
entries), softmax, log_softmax; arg-reductions and any/all by value."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import tinygen
from tinygen import functional as F
from harness import (arrays, assert_close, axes, check_op, distinct_arrays, grid_arrays, shapes,
                     torch)

T = torch


def torch_dims(axis, ndim):
    """torch spells "all axes" as every axis (its ``dim=()`` is ambiguous across versions)."""
    return tuple(range(ndim)) if axis is None else axis


def np_keep(result, axis, ndim, keepdim):
    """Reference reductions are computed with keepdims=True; drop the axes unless keepdim."""
    if keepdim:
        return result
    ax = tuple(range(ndim)) if axis is None else tuple(np.atleast_1d(axis) % max(ndim, 1))
    return np.squeeze(result, axis=ax) if ndim else result.reshape(())


@given(data=st.data(), keepdim=st.booleans())
def test_sum_mean(data, keepdim):
    x = data.draw(arrays(data.draw(shapes())))
    axis = data.draw(axes(x.ndim))
    check_op(lambda t: F.sum(t, axis, keepdim), [x], second_order="zero",
             reference=lambda v: np.sum(v, axis=axis, keepdims=keepdim),
             torch_fn=lambda t: T.sum(t, dim=torch_dims(axis, t.ndim), keepdim=keepdim))
    check_op(lambda t: t.mean(axis, keepdim), [x], second_order="zero",
             reference=lambda v: np.mean(v, axis=axis, keepdims=keepdim),
             torch_fn=lambda t: T.mean(t, dim=torch_dims(axis, t.ndim), keepdim=keepdim))


@given(data=st.data(), keepdim=st.booleans(), correction=st.sampled_from([0, 1, 2]))
def test_var_std(data, keepdim, correction):
    x = data.draw(arrays(data.draw(shapes(min_dims=1, min_side=3))))
    axis = data.draw(axes(x.ndim))

    def naive_var(v):  # two passes, written out
        n = v.size if axis is None else int(np.prod([v.shape[a] for a in np.atleast_1d(axis)]))
        mu = np.sum(v, axis=axis, keepdims=True) / n
        return np_keep(np.sum((v - mu) ** 2, axis=axis, keepdims=True) / (n - correction),
                       axis, v.ndim, keepdim)
    check_op(lambda t: F.var(t, axis, keepdim, correction), [x], reference=naive_var,
             torch_fn=lambda t: T.var(t, dim=torch_dims(axis, t.ndim), keepdim=keepdim,
                                      correction=correction))
    x = x + np.arange(x.size).reshape(x.shape)  # std needs a spread to be smooth
    check_op(lambda t: F.std(t, axis, keepdim, correction), [x],
             reference=lambda v: np.sqrt(naive_var(v)),
             torch_fn=lambda t: T.std(t, dim=torch_dims(axis, t.ndim), keepdim=keepdim,
                                      correction=correction))


def test_var_with_too_few_elements_is_nan_like_torch():
    x = tinygen.tensor(np.array([[1.0], [2.0]]))
    assert np.isnan(F.var(x, 1).numpy()).all()
    np.testing.assert_allclose(F.var(x, 1, correction=0).numpy(), [0.0, 0.0])
    if torch is not None:
        with pytest.warns(UserWarning, match="degrees of freedom"):
            assert T.var(T.tensor([[1.0], [2.0]]), 1).isnan().all()


@given(data=st.data(), keepdim=st.booleans())
def test_max_min_distinct_values(data, keepdim):
    x = data.draw(distinct_arrays(data.draw(shapes())))
    axis = data.draw(axes(x.ndim))
    for name, tname in (("max", "amax"), ("min", "amin")):
        check_op(lambda t: getattr(F, tname)(t, axis, keepdim), [x], second_order="zero",
                 reference=lambda v: getattr(np, name)(v, axis=axis, keepdims=keepdim),
                 torch_fn=lambda t: getattr(T, tname)(t, dim=torch_dims(axis, t.ndim),
                                                      keepdim=keepdim))


@pytest.mark.parametrize("name", ["max", "min"])
@given(data=st.data(), keepdim=st.booleans())
def test_max_min_ties_share_the_gradient_like_amax(name, data, keepdim):
    x = data.draw(grid_arrays(data.draw(shapes()), step=1.0, low=-1, high=1))  # many ties
    axis = data.draw(axes(x.ndim))
    u = np.random.default_rng(0).standard_normal(getattr(np, name)(x, axis=axis,
                                                                   keepdims=keepdim).shape)
    t = tinygen.tensor(x, requires_grad=True)
    y = getattr(t, "a" + name)(axis, keepdim)
    (g,) = tinygen.grad(y, [t], grad_outputs=tinygen.tensor(u))
    extreme = getattr(np, name)(x, axis=axis, keepdims=True)
    winners = (x == extreme).astype(float)
    expected = winners / winners.sum(axis=axis, keepdims=True) * u.reshape(extreme.shape)
    np.testing.assert_allclose(g.numpy(), expected, rtol=1e-14, atol=1e-15)
    if torch is not None:
        tt = T.tensor(x, requires_grad=True)
        ty = getattr(T, "a" + name)(tt, dim=torch_dims(axis, x.ndim), keepdim=keepdim)
        (tg,) = T.autograd.grad(ty, [tt], T.tensor(u))
        np.testing.assert_allclose(g.numpy(), tg.numpy(), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name", ["max", "min"])
@given(data=st.data(), keepdim=st.booleans())
def test_max_min_along_a_dim_return_values_and_indices_like_torch(name, data, keepdim):
    """``x.max(dim)`` is ``(values, indices)`` as in PyTorch (``x.max(1)[0]`` are the values);
    the gradient goes to the element at ``indices``, ties included, as torch.max(dim)."""
    x = data.draw(grid_arrays(data.draw(shapes(min_dims=1)), step=1.0, low=-1, high=1))
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1))
    t = tinygen.tensor(x, requires_grad=True)
    res = getattr(t, name)(dim, keepdim)
    values, indices = res
    assert res.values is values and res.indices is indices and res[0] is values
    assert indices.dtype == np.int64 and not indices.requires_grad
    np.testing.assert_array_equal(values.detach().numpy(), getattr(np, name)(x, axis=dim,
                                                                    keepdims=keepdim))
    np.testing.assert_array_equal(indices.numpy(), getattr(np, "arg" + name)(x, axis=dim,
                                                                             keepdims=keepdim))
    u = np.random.default_rng(0).standard_normal(values.shape)
    (g,) = tinygen.grad(values, [t], grad_outputs=tinygen.tensor(u))
    idx = getattr(np, "arg" + name)(x, axis=dim, keepdims=True)
    expected = np.zeros_like(x)
    np.put_along_axis(expected, idx, u.reshape(idx.shape), axis=dim)
    np.testing.assert_array_equal(g.numpy(), expected)
    assert getattr(F, name)(t, dim, keepdim)[0].shape == values.shape
    if torch is not None:
        tt = T.tensor(x, requires_grad=True)
        tv, ti = getattr(T, name)(tt, dim, keepdim)
        (tg,) = T.autograd.grad(tv, [tt], T.tensor(u))
        np.testing.assert_array_equal(indices.numpy(), ti.numpy())
        np.testing.assert_array_equal(g.numpy(), tg.numpy())


@given(data=st.data())
def test_max_min_values_along_a_dim_through_the_harness(data):
    x = data.draw(distinct_arrays(data.draw(shapes(min_dims=1))))
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1))
    for name in ("max", "min"):
        check_op(lambda t: getattr(t, name)(dim)[0], [x], second_order="zero",
                 reference=lambda v: getattr(np, name)(v, axis=dim),
                 torch_fn=lambda t: getattr(T, name)(t, dim)[0])


def test_max_min_forms_like_torch():
    x = tinygen.tensor(np.array([[1.0, 5.0], [7.0, 2.0]]))
    assert tinygen.max(x).item() == 7.0 and tinygen.min(x).item() == 1.0   # no dim: a value
    np.testing.assert_array_equal(tinygen.max(x, 1)[0].numpy(), [5.0, 7.0])
    np.testing.assert_array_equal(x.max(1)[1].numpy(), [1, 0])
    np.testing.assert_array_equal(tinygen.max(x, x.T).numpy(), [[1.0, 7.0], [7.0, 2.0]])
    np.testing.assert_array_equal(x.amax((0, 1)).numpy(), 7.0)
    with pytest.raises(TypeError, match="amax"):
        x.max((0, 1))
    s = tinygen.tensor(3.0)                      # 0-d with dim 0 / -1, as torch
    assert s.max(0).values.item() == 3.0 and s.min(-1).indices.item() == 0
    with pytest.raises(IndexError, match="empty"):
        tinygen.zeros(2, 0).max(1)


def test_max_of_an_empty_tensor_raises():
    with pytest.raises(ValueError, match=r"empty tensor \(shape \(0, 3\)\)"):
        F.max(tinygen.zeros(0, 3))


@given(data=st.data(), keepdim=st.booleans())
def test_logsumexp(data, keepdim):
    x = data.draw(arrays(data.draw(shapes(min_dims=1)), low=-20, high=20))
    axis = data.draw(axes(x.ndim))

    def ref(v):  # naive: no overflow for |v| <= 20
        return np_keep(np.log(np.sum(np.exp(v), axis=axis, keepdims=True)), axis, v.ndim,
                       keepdim)
    check_op(lambda t: F.logsumexp(t, axis, keepdim), [x], reference=ref,
             torch_fn=lambda t: T.logsumexp(t, dim=torch_dims(axis, t.ndim), keepdim=keepdim))


@given(data=st.data())
def test_logsumexp_and_softmax_with_minus_infinity_entries(data):
    """-inf entries contribute nothing (logsumexp and softmax give them zero gradient; log_softmax
    passes its cotangent straight through there, d(x_i - lse)/dx_i = 1); an all -inf slice gives
    -inf (softmax: NaN) exactly as in torch."""
    x = data.draw(arrays(data.draw(shapes(min_dims=1)), low=-5, high=5))
    mask = data.draw(hnp.arrays(np.bool_, x.shape))
    x = np.where(mask, -np.inf, x)
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1))
    u = np.random.default_rng(1).standard_normal(x.shape)
    finite_slices = ~np.all(mask, axis=dim, keepdims=True)
    for name in ("logsumexp", "softmax", "log_softmax"):
        t = tinygen.tensor(x, requires_grad=True)
        with np.errstate(invalid="ignore"):
            y = getattr(F, name)(t, dim)
            uu = u if name != "logsumexp" else u.sum(axis=dim)
            (g,) = tinygen.grad(y, [t], grad_outputs=tinygen.tensor(uu))
        if name == "logsumexp":  # reference on the slices with a finite entry
            with np.errstate(divide="ignore"):
                ref = np.log(np.sum(np.exp(x), axis=dim))
            assert_close(y.detach().numpy(), ref, 1e-12, 1e-14, "logsumexp vs reference")
        gn = g.numpy()
        at_inf = mask & np.broadcast_to(finite_slices, x.shape)
        expected_at_inf = u[at_inf] if name == "log_softmax" else 0.0
        np.testing.assert_array_equal(gn[at_inf], expected_at_inf)
        if torch is not None:
            tt = T.tensor(x, requires_grad=True)
            ty = getattr(T, name)(tt, dim)
            (tg,) = T.autograd.grad(ty, [tt], T.tensor(uu))
            assert_close(y.detach().numpy(), ty.detach().numpy(), 1e-12, 1e-12, f"{name} forward")
            assert_close(gn, tg.numpy(), 1e-12, 1e-12, f"{name} gradient")


@pytest.mark.parametrize("which", ["softmax", "log_softmax"])
@given(data=st.data())
def test_softmax_family(which, data):
    x = data.draw(arrays(data.draw(shapes(min_dims=1)), low=-10, high=10))
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1))

    def ref(v):  # naive: no overflow for |v| <= 10
        s = np.exp(v) / np.exp(v).sum(axis=dim, keepdims=True)
        return s if which == "softmax" else np.log(s)
    check_op(lambda t: getattr(t, which)(dim), [x], reference=ref,
             torch_fn=lambda t: getattr(T, which)(t, dim))


def test_softmax_family_is_stable_for_large_logits():
    x = tinygen.tensor(np.array([1000.0, 1001.0, -1000.0]))
    p = np.array([1 / (1 + np.e), np.e / (1 + np.e)])
    np.testing.assert_allclose(F.softmax(x, 0).numpy(), np.r_[p, 0.0], rtol=1e-14)
    np.testing.assert_allclose(F.log_softmax(x, 0).numpy(), np.r_[np.log(p), -2001 + np.log(p[1])],
                               rtol=1e-14)
    np.testing.assert_allclose(F.logsumexp(x, 0).numpy(), 1001 + np.log1p(np.exp(-1.0)),
                               rtol=1e-14)


@given(data=st.data(), keepdim=st.booleans())
def test_argmax_argmin(data, keepdim):
    x = data.draw(distinct_arrays(data.draw(shapes(min_dims=1))))
    t = tinygen.tensor(x)
    assert F.argmax(t).item() == np.argmax(x) and F.argmin(t).item() == np.argmin(x)
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1))
    for ours, ref in ((t.argmax(dim, keepdim), np.argmax(x, axis=dim, keepdims=keepdim)),
                      (t.argmin(dim, keepdim), np.argmin(x, axis=dim, keepdims=keepdim))):
        assert ours.dtype == np.int64
        np.testing.assert_array_equal(ours.numpy(), ref)


@given(data=st.data(), keepdim=st.booleans())
def test_any_all(data, keepdim):
    x = data.draw(grid_arrays(data.draw(shapes()), step=1.0, low=0, high=2)) > 0.5
    axis = data.draw(axes(x.ndim))
    t = tinygen.tensor(x)
    np.testing.assert_array_equal(F.any(t, axis, keepdim).numpy(),
                                  np.any(x, axis=axis, keepdims=keepdim))
    np.testing.assert_array_equal(t.all(axis, keepdim).numpy(),
                                  np.all(x, axis=axis, keepdims=keepdim))


def test_integer_and_boolean_sums():
    assert F.sum(tinygen.tensor([True, True, False])).item() == 2
    s = F.sum(tinygen.tensor(np.array([1, 2, 3], dtype=np.int32)))
    assert s.dtype == np.int64 and s.item() == 6


def test_reduction_argument_errors():
    x = tinygen.tensor(np.zeros((2, 3)))
    with pytest.raises(IndexError, match="out of range"):
        F.sum(x, 2)
    with pytest.raises(ValueError, match="repeats"):
        F.sum(x, (0, -2))
    with pytest.raises(TypeError, match="int or a tuple of ints"):
        F.sum(x, 0.5)
    with pytest.raises(TypeError, match="floating"):
        F.mean(tinygen.tensor([1, 2]))
    with pytest.raises(IndexError, match="out of range"):
        F.softmax(x, 2)
