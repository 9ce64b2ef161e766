"""Tensor utilities and the remaining activations through the gradient-check harness (float64
naive references, hypothesis-drawn shapes and arguments, central differences, second order,
PyTorch as oracle): repeat, repeat_interleave, roll, sort/argsort/topk, diag/diagonal, meshgrid,
var_mean/std_mean, // and % and div(rounding_mode=), F.normalize, hardtanh, relu6, selu, celu,
softsign, mish, hardswish, hardsigmoid and their modules; logical_not / unflatten methods."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygen
from tinygen import functional as F
from tinygen import nn
from harness import arrays, broadcastable_pair, check_op, distinct_arrays, grid_arrays, shapes, \
    torch

T = torch
TF = torch.nn.functional if torch is not None else None


# -- repeat, repeat_interleave, roll ---------------------------------------------------------------
@given(data=st.data())
def test_repeat(data):
    x = data.draw(arrays(data.draw(shapes(max_dims=2, max_side=3))))
    extra = data.draw(st.integers(0, 1))
    reps = tuple(data.draw(st.integers(0, 3)) for _ in range(x.ndim + extra))
    if not reps:
        reps = (2,)

    def ref(a):   # naive: out[i] = a[i mod shape]
        shape = (1,) * (len(reps) - a.ndim) + a.shape
        b = a.reshape(shape)
        out = np.empty(tuple(r * s for r, s in zip(reps, shape)))
        for idx in np.ndindex(*out.shape):
            out[idx] = b[tuple(i % s for i, s in zip(idx, shape))]
        return out
    check_op(lambda t: t.repeat(*reps), [x], reference=ref, second_order="zero",
             torch_fn=lambda t: t.repeat(*reps))


@given(data=st.data(), per_element=st.booleans())
def test_repeat_interleave(data, per_element):
    x = data.draw(arrays(data.draw(shapes(min_dims=1, max_dims=3, max_side=3))))
    dim = data.draw(st.sampled_from([None] + list(range(-x.ndim, x.ndim))))
    n = x.size if dim is None else x.shape[dim]
    if per_element:
        counts = np.array([data.draw(st.integers(0, 3)) for _ in range(n)])
        reps, treps = tinygen.tensor(counts), (torch.tensor(counts) if torch is not None else None)
    else:
        counts = np.full(n, data.draw(st.integers(0, 3)))
        reps = treps = int(counts[0])
    check_op(lambda t: t.repeat_interleave(reps, dim), [x],
             reference=lambda a: np.repeat(a, counts, axis=dim),
             torch_fn=lambda t: t.repeat_interleave(treps, dim), second_order="zero")


def test_repeat_interleave_of_counts_gives_indices():
    np.testing.assert_array_equal(F.repeat_interleave(tinygen.tensor([2, 0, 3])).numpy(),
                                  [0, 0, 2, 2, 2])
    with pytest.raises(ValueError, match="non-negative"):
        F.repeat_interleave(tinygen.zeros(3), -1)


@given(data=st.data())
def test_roll(data):
    x = data.draw(arrays(data.draw(shapes(min_dims=1))))
    if data.draw(st.booleans()):
        shifts, dims = data.draw(st.integers(-7, 7)), None
    else:
        k = data.draw(st.integers(1, x.ndim))
        dims = tuple(data.draw(st.permutations(list(range(x.ndim))))[:k])
        shifts = tuple(data.draw(st.integers(-5, 5)) for _ in dims)
    check_op(lambda t: t.roll(shifts, dims), [x], reference=lambda a: np.roll(a, shifts, dims),
             torch_fn=lambda t: T.roll(t, shifts, dims), second_order="zero")


# -- sort, argsort, topk ---------------------------------------------------------------------------
@given(data=st.data(), descending=st.booleans())
def test_sort_values_indices(data, descending):
    x = data.draw(distinct_arrays(data.draw(shapes(min_dims=1))))
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1))
    ref_idx = np.argsort(-x if descending else x, axis=dim, kind="stable")
    check_op(lambda t: t.sort(dim, descending).values, [x],
             reference=lambda a: np.take_along_axis(a, ref_idx, dim), second_order="zero",
             torch_fn=lambda t: T.sort(t, dim, descending).values)
    out = F.sort(tinygen.tensor(x), dim, descending)
    np.testing.assert_array_equal(out.indices.numpy(), ref_idx)
    values, indices = out   # unpacks as PyTorch's return type
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(F.argsort(tinygen.tensor(x), dim, descending).numpy(), ref_idx)


@given(data=st.data(), descending=st.booleans())
def test_sort_is_stable_with_ties_like_torch(data, descending):
    x = data.draw(grid_arrays(data.draw(shapes(min_dims=1)), step=1.0, low=-1, high=1))
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1))
    ours = tinygen.tensor(x).sort(dim, descending)
    if torch is not None:
        theirs = T.sort(T.tensor(x), stable=True, dim=dim, descending=descending)
        np.testing.assert_array_equal(ours.indices.numpy(), theirs.indices.numpy())
    np.testing.assert_array_equal(ours.values.numpy(), np.take_along_axis(
        x, ours.indices.numpy(), dim))


@given(data=st.data(), largest=st.booleans())
def test_topk(data, largest):
    x = data.draw(distinct_arrays(data.draw(shapes(min_dims=1))))
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1))
    k = data.draw(st.integers(0, x.shape[dim]))
    order = np.argsort(-x if largest else x, axis=dim)
    ref_idx = np.take(order, np.arange(k), axis=dim)
    check_op(lambda t: t.topk(k, dim, largest).values, [x],
             reference=lambda a: np.take_along_axis(a, ref_idx, dim), second_order="zero",
             torch_fn=lambda t: T.topk(t, k, dim, largest).values)
    np.testing.assert_array_equal(F.topk(tinygen.tensor(x), k, dim, largest).indices.numpy(),
                                  ref_idx)
    with pytest.raises(ValueError, match="out of range"):
        F.topk(tinygen.tensor(x), x.shape[dim] + 1, dim)


# -- diag, diagonal, meshgrid ----------------------------------------------------------------------
@given(data=st.data(), offset=st.integers(-3, 3))
def test_diag(data, offset):
    if data.draw(st.booleans()):
        x = data.draw(arrays((data.draw(st.integers(1, 4)),)))
    else:
        x = data.draw(arrays((data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4)))))
    check_op(lambda t: t.diag(offset), [x], reference=lambda a: np.diag(a, offset),
             torch_fn=lambda t: T.diag(t, offset), second_order="zero")


@given(data=st.data(), offset=st.integers(-3, 3))
def test_diagonal(data, offset):
    x = data.draw(arrays(data.draw(shapes(min_dims=2))))
    d1, d2 = data.draw(st.permutations(list(range(x.ndim))))[:2]
    d1 -= x.ndim * data.draw(st.integers(0, 1))   # negative dims too
    check_op(lambda t: t.diagonal(offset, d1, d2), [x],
             reference=lambda a: np.diagonal(a, offset, d1, d2),
             torch_fn=lambda t: T.diagonal(t, offset, d1, d2), second_order="zero")


@given(data=st.data(), indexing=st.sampled_from(["ij", "xy"]))
def test_meshgrid(data, indexing):
    k = data.draw(st.integers(1, 3))
    xs = [data.draw(arrays((data.draw(st.integers(1, 3)),))) for _ in range(k)]
    for i in range(k):
        check_op(lambda *ts: F.meshgrid(*ts, indexing=indexing)[i], xs,
                 reference=lambda *a: np.meshgrid(*a, indexing=indexing)[i],
                 torch_fn=lambda *ts: T.meshgrid(*ts, indexing=indexing)[i],
                 second_order="zero")


# -- var_mean, std_mean ----------------------------------------------------------------------------
@given(data=st.data(), correction=st.sampled_from([0, 1]), keepdim=st.booleans())
def test_var_mean_std_mean(data, correction, keepdim):
    x = data.draw(distinct_arrays(data.draw(shapes(min_dims=1, min_side=2)), spacing=0.3))
    dim = data.draw(st.sampled_from([None] + list(range(-x.ndim, x.ndim))))
    for k, (ours, theirs, ref) in enumerate([
            (F.var_mean, T.var_mean if torch is not None else None,
             lambda a: np.var(a, axis=dim, ddof=correction, keepdims=keepdim)),
            (F.std_mean, T.std_mean if torch is not None else None,
             lambda a: np.std(a, axis=dim, ddof=correction, keepdims=keepdim))]):
        for part, refp in ((0, ref), (1, lambda a: np.mean(a, axis=dim, keepdims=keepdim))):
            check_op(lambda t: ours(t, dim, keepdim=keepdim, correction=correction)[part], [x],
                     reference=refp,
                     torch_fn=lambda t: theirs(t, dim, keepdim=keepdim,
                                               correction=correction)[part])
    v, m = F.var_mean(tinygen.tensor(x), dim, False, keepdim)   # the unbiased= positional form
    np.testing.assert_allclose(v.numpy(), np.var(x, axis=dim, ddof=0, keepdims=keepdim),
                               rtol=1e-12, atol=1e-14)


# -- rounding divisions ----------------------------------------------------------------------------
@given(data=st.data())
def test_floor_divide_and_remainder_on_floats(data):
    sa, sb = data.draw(broadcastable_pair())
    b = data.draw(arrays(sb, low=0.5, high=3.0)) * data.draw(st.sampled_from([1.0, -1.0]))
    a = data.draw(arrays(sa, low=-6.0, high=6.0))
    if np.any(np.abs(a / b - np.round(a / b)) < 0.02):   # where // and % jump
        return
    check_op(lambda x, y: x // y, [a, b], reference=np.floor_divide,  # (torch's // has no grad)
             torch_fn=lambda x, y: T.div(x, y, rounding_mode="floor"), second_order="zero")
    check_op(lambda x, y: x % y, [a, b], reference=np.remainder,
             torch_fn=lambda x, y: x % y)
    for mode, ref in (("trunc", lambda x, y: np.trunc(x / y)), ("floor", np.floor_divide)):
        check_op(lambda x, y: x.div(y, rounding_mode=mode), [a, b], reference=ref,
                 torch_fn=lambda x, y: T.div(x, y, rounding_mode=mode), second_order="zero")


@given(a=st.lists(st.integers(-20, 20), min_size=1, max_size=6),
       b=st.sampled_from([1, 2, 3, -2, -3, 7]))
def test_integer_rounding_divisions_match_python(a, b):
    x = tinygen.tensor(a)
    np.testing.assert_array_equal((x // b).numpy(), [v // b for v in a])
    np.testing.assert_array_equal((x % b).numpy(), [v % b for v in a])
    np.testing.assert_array_equal(x.div(b, rounding_mode="trunc").numpy(),
                                  [int(v / b) for v in a])
    assert (x // b).dtype == np.int64 and (x % b).dtype == np.int64
    np.testing.assert_array_equal((b % x.abs().clamp(min=1)).numpy(),
                                  [b % max(abs(v), 1) for v in a])
    with pytest.raises(ZeroDivisionError):
        x // 0
    with pytest.raises(ValueError, match="rounding_mode"):
        x.div(2, rounding_mode="round")


# -- normalize and activations ---------------------------------------------------------------------
@given(data=st.data(), p=st.sampled_from([1.0, 2.0, 3.0]))
def test_normalize(data, p):
    x = data.draw(arrays(data.draw(shapes(min_dims=1)), away_from=0.0, gap=0.1))
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1))

    def ref(a):
        norm = (np.abs(a) ** p).sum(axis=dim, keepdims=True) ** (1 / p)
        return a / np.maximum(norm, 1e-12)
    check_op(lambda t: F.normalize(t, p, dim), [x], reference=ref,
             torch_fn=lambda t: TF.normalize(t, p, dim), so_rtol=1e-4)


ACTIVATIONS = {  # name: (ours, reference, torch, kinks)
    "hardtanh": (lambda t: F.hardtanh(t, -1.5, 2.0), lambda v: np.clip(v, -1.5, 2.0),
                 lambda t: TF.hardtanh(t, -1.5, 2.0), (-1.5, 2.0)),
    "relu6": (F.relu6, lambda v: np.minimum(np.maximum(v, 0), 6), lambda t: TF.relu6(t),
              (0.0, 6.0)),
    "selu": (F.selu, lambda v: 1.0507009873554804934193349852946 * np.where(
        v > 0, v, 1.6732632423543772848170429916717 * np.expm1(v)), lambda t: TF.selu(t), (0.0,)),
    "celu": (lambda t: F.celu(t, 0.7), lambda v: np.maximum(v, 0) + np.minimum(
        0, 0.7 * np.expm1(v / 0.7)), lambda t: TF.celu(t, 0.7), (0.0,)),
    "softsign": (F.softsign, lambda v: v / (1 + np.abs(v)), lambda t: TF.softsign(t), (0.0,)),
    "mish": (F.mish, lambda v: v * np.tanh(np.log1p(np.exp(v))), lambda t: TF.mish(t), ()),
    "hardswish": (F.hardswish, lambda v: v * np.clip(v + 3, 0, 6) / 6, lambda t: TF.hardswish(t),
                  (-3.0, 3.0)),
    "hardsigmoid": (F.hardsigmoid, lambda v: np.clip(v + 3, 0, 6) / 6,
                    lambda t: TF.hardsigmoid(t), (-3.0, 3.0)),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@given(data=st.data())
def test_activations(name, data):
    ours, ref, theirs, kinks = ACTIVATIONS[name]
    x = data.draw(arrays(data.draw(shapes()), low=-8.0, high=8.0,
                         away_from=kinks or None, gap=0.01))
    piecewise_linear = name in ("hardtanh", "relu6", "hardsigmoid")
    check_op(ours, [x], reference=ref, torch_fn=theirs,
             second_order="zero" if piecewise_linear else True,
             # PyTorch's celu and hardsigmoid backwards use float32 constants (1/alpha, 1/6):
             # e.g. exp(-1/0.7) comes out 0.2396510347 against the exact 0.2396510364 (ours)
             torch_rtol64=1e-7 if name in ("celu", "hardsigmoid") else 1e-10,
             torch_second_order=name != "hardsigmoid")   # torch: no double backward for it


MODULES = [  # (ours, torch's)
    (lambda: nn.Hardtanh(-2.0, 1.0), lambda: torch.nn.Hardtanh(-2.0, 1.0)),
    (nn.ReLU6, lambda: torch.nn.ReLU6()), (nn.SELU, lambda: torch.nn.SELU()),
    (lambda: nn.CELU(0.5), lambda: torch.nn.CELU(0.5)), (nn.Softsign, lambda: torch.nn.Softsign()),
    (nn.Mish, lambda: torch.nn.Mish()), (nn.Hardswish, lambda: torch.nn.Hardswish()),
    (nn.Hardsigmoid, lambda: torch.nn.Hardsigmoid()),
    (nn.LogSigmoid, lambda: torch.nn.LogSigmoid()),
    (nn.SiLU, lambda: torch.nn.SiLU()), (lambda: nn.GELU("tanh"), lambda: torch.nn.GELU("tanh")),
]


@pytest.mark.parametrize("k", range(len(MODULES)))
def test_activation_modules_match_torch(k):
    x = np.linspace(-7, 7, 57).reshape(3, 19)
    ours, theirs = MODULES[k]
    out = ours()(tinygen.tensor(x)).numpy()
    assert out.shape == x.shape
    if torch is not None:
        np.testing.assert_allclose(out, theirs()(torch.tensor(x)).numpy(), rtol=1e-12,
                                   atol=1e-14)


def test_logical_not_and_unflatten_methods():
    m = tinygen.tensor([True, False])
    np.testing.assert_array_equal(m.logical_not().numpy(), [False, True])
    np.testing.assert_array_equal(tinygen.tensor([0, 2]).logical_not().numpy(), [True, False])
    x = tinygen.arange(12.0)
    assert x.unflatten(0, (3, -1)).shape == (3, 4)
    assert tinygen.unflatten(x.reshape(2, 6), 1, (2, 3)).shape == (2, 2, 3)
    with pytest.raises(ValueError, match="do not multiply"):
        x.unflatten(0, (5, 2))


def test_hardtanh_and_celu_argument_errors():
    with pytest.raises(ValueError, match="min_val"):
        F.hardtanh(tinygen.zeros(2), 1.0, -1.0)
    with pytest.raises(ValueError, match="alpha"):
        F.celu(tinygen.zeros(2), 0.0)
    assert math.isclose(F.selu(tinygen.tensor([1.0])).item(), 1.0507009873554805, rel_tol=1e-6)


IN_PLACE = [  # (in-place call, the out-of-place op it must equal)
    (lambda t: t.lerp_(tinygen.ones(3, 4), 0.25), lambda t: F.lerp(t, tinygen.ones(3, 4), 0.25)),
    (lambda t: t.tril_(1), lambda t: F.tril(t, 1)),
    (lambda t: t.triu_(-1), lambda t: F.triu(t, -1)),
    (lambda t: t.floor_(), F.floor), (lambda t: t.ceil_(), F.ceil), (lambda t: t.trunc_(), F.trunc),
    (lambda t: t.round_(1), lambda t: F.round(t, 1)),
    (lambda t: t.scatter_(1, tinygen.tensor([[3], [0], [1]]), value=9.0),
     lambda t: F.scatter(t, 1, tinygen.tensor([[3], [0], [1]]), value=9.0)),
    (lambda t: t.scatter_add_(0, tinygen.tensor([[2, 2, 0, 1]]), tinygen.ones(1, 4)),
     lambda t: F.scatter_add(t, 0, tinygen.tensor([[2, 2, 0, 1]]), tinygen.ones(1, 4))),
]


@pytest.mark.parametrize("k", range(len(IN_PLACE)))
def test_in_place_forms(k):
    inplace, op = IN_PLACE[k]
    x = tinygen.tensor(np.random.default_rng(k).standard_normal((3, 4)) * 3)
    want = op(x).numpy().copy()
    version = x._version
    assert inplace(x) is x
    np.testing.assert_array_equal(x.numpy(), want)
    assert x._version > version            # the backward of an earlier use would notice
    graph = tinygen.ones(3, 4, requires_grad=True) * 2.0
    with pytest.raises(RuntimeError, match="in-place"):
        inplace(graph)


def test_ema_update_with_lerp_in_place():
    ema, p = tinygen.zeros(2), tinygen.ones(2, requires_grad=True)
    with tinygen.no_grad():
        for _ in range(3):
            ema.lerp_(p, 1 - 0.9)
    np.testing.assert_allclose(ema.numpy(), 1 - 0.9 ** 3, rtol=1e-6)
    with pytest.raises(RuntimeError, match="operand"):   # p requires grad: refused outside no_grad
        ema.lerp_(p, 0.1)


@given(x=arrays(shapes(), low=-50.0, high=50.0))
def test_dtype_conversion_methods_match_torch(x):
    t = tinygen.tensor(x)
    for name, dtype in (("int", np.int32), ("long", np.int64), ("bool", np.bool_),
                        ("float", np.float32), ("double", np.float64)):
        out = getattr(t, name)()
        assert out.dtype == dtype, name
        want = np.trunc(x).astype(dtype) if dtype in (np.int32, np.int64) else x.astype(dtype)
        np.testing.assert_array_equal(out.numpy(), want, err_msg=name)
        if torch is not None:
            np.testing.assert_array_equal(out.numpy(), getattr(T.tensor(x), name)().numpy(),
                                          err_msg=name)
    g = tinygen.tensor(x, requires_grad=True)
    (g.float().double() * 3.0).sum().backward()     # float <-> double conversions pass gradients
    np.testing.assert_array_equal(g.grad.numpy(), np.full(x.shape, 3.0))
