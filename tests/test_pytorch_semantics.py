"""PyTorch semantics where users bring habits (issue: type promotion, ``~`` on integers, mixed
advanced indexing, ``where`` with Python numbers, 0-d tensors with dim 0/-1, empty reductions,
the gradient of 0 ** 0, integer linspace, exception types), each checked against torch."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygen
from tinygen import functional as F
from harness import arrays, check_op, shapes, torch

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is the oracle here")

DTYPES = ["bool", "uint8", "int8", "int32", "int64", "float32", "float64"]


def _operand(kind, dtype, rng):
    """A tinygen operand and the same torch operand: a tensor with dims, a 0-d tensor or a
    Python scalar of ``dtype``'s kind."""
    if kind == "scalar":
        value = {"b": True, "u": 3, "i": -2, "f": 1.5}[np.dtype(dtype).kind]
        return value, value
    shape = (2, 3) if kind == "dims" else ()
    arr = (rng.integers(1, 4, shape) if dtype != "bool" else rng.integers(0, 2, shape)).astype(dtype)
    return tinygen.tensor(arr), torch.from_numpy(arr.copy())


OPS = {"add": lambda x, y: x + y, "mul": lambda x, y: x * y, "div": lambda x, y: x / y,
       "sub": lambda x, y: x - y, "gt": lambda x, y: x > y}


@needs_torch
@pytest.mark.parametrize("kinds", [("dims", "dims"), ("dims", "zero"), ("zero", "dims"),
                                   ("zero", "zero"), ("dims", "scalar"), ("scalar", "dims"),
                                   ("zero", "scalar")])
@pytest.mark.parametrize("op", ["add", "mul", "div", "sub", "where", "gt"])
def test_type_promotion_matches_torch(kinds, op):
    """Every pair of dtypes in every priority (dims, 0-d, Python scalar): tinygen's result dtype
    is torch's (NumPy's differs, e.g. float32 * int64 -> float64)."""
    rng = np.random.default_rng(0)
    for da in DTYPES:
        for db in DTYPES:
            a, ta = _operand(kinds[0], da, rng)
            b, tb = _operand(kinds[1], db, rng)
            if op == "sub" and "bool" in (da, db):
                continue                          # torch refuses bool subtraction
            if op == "where":
                cond = tinygen.tensor([[True, False, True]] * 2)
                ours, theirs = F.where(cond, a, b), torch.where(torch.from_numpy(cond.numpy()), ta,
                                                                tb)
            else:
                ours, theirs = OPS[op](a, b), OPS[op](ta, tb)
            expected = str(theirs.dtype).replace("torch.", "")
            assert str(ours.dtype) == expected, (op, kinds, da, db, ours.dtype, expected)
            np.testing.assert_allclose(ours.numpy().astype(float), theirs.numpy().astype(float),
                                       rtol=1e-6)


def test_masked_mean_idiom_stays_float32():
    x = tinygen.randn(4, 5)
    mask = x > 0
    out = (x * mask).sum() / mask.sum()
    assert out.dtype == np.float32
    assert (tinygen.ones(3) * tinygen.tensor(2.0, dtype=np.float64)).dtype == np.float32
    assert (tinygen.ones(2, dtype=tinygen.int32) / tinygen.tensor([2, 2])).dtype == np.float32
    assert (tinygen.from_numpy(np.ones(3)) * tinygen.ones(3)).dtype == np.float64  # from_numpy


def test_promoted_gradients_keep_their_input_dtypes():
    a = tinygen.tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    i = tinygen.tensor([3, 4])
    out = (a * i + tinygen.tensor(0.5, dtype=np.float64)).sum()
    assert out.dtype == np.float32
    out.backward()
    assert a.grad.dtype == np.float32
    np.testing.assert_array_equal(a.grad.numpy(), [3.0, 4.0])


def test_invert_is_bitwise_on_integers_and_logical_on_bools():
    v = np.array([0, 1, -3, 7])
    np.testing.assert_array_equal((~tinygen.tensor(v)).numpy(), ~v)
    np.testing.assert_array_equal((~tinygen.tensor([True, False])).numpy(), [False, True])
    if torch is not None:
        np.testing.assert_array_equal((~tinygen.tensor(v)).numpy(), (~torch.tensor(v)).numpy())
    with pytest.raises(TypeError, match="integer and bool"):
        ~tinygen.ones(2)


INDEXES = [
    (1, slice(None), [0, 2]), (slice(None), 1, [0, 2]), ([0, 1], slice(None), [0, 2]),
    (1, Ellipsis, [0, 3]), (None, 1, slice(None), [1, 2]), (1, [True, False, True]),
    (-1, slice(0, 2), [3, 3, 0]), ([1, 0], 2, slice(None, None, 2)), (0, [[0, 1], [2, 0]], 1),
    (slice(None), [0, 1], 2), (1, None, [1, 0], slice(1, None)),
]


@pytest.mark.parametrize("index", INDEXES, ids=[str(i) for i in range(len(INDEXES))])
def test_mixed_advanced_indexing_places_axes_like_torch(index):
    """Integers are applied before arrays (a select), as PyTorch: ``x[1, :, idx]`` is (C, K)."""
    x = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    tindex = tuple(tinygen.tensor(i) if isinstance(i, list) else i for i in index)
    check_op(lambda t: t[tindex], [x], second_order="zero",
             torch_fn=(lambda t: t[tuple(torch.tensor(i) if isinstance(i, list) else i
                                         for i in index)]) if torch is not None else None,
             reference=(lambda v: torch.from_numpy(v)[index].numpy()) if torch is not None
             else None)
    if torch is not None:
        ours = tinygen.zeros(2, 3, 4, dtype=np.float64)
        theirs = torch.zeros(2, 3, 4, dtype=torch.float64)
        value = np.arange(theirs[index].numel(), dtype=np.float64).reshape(theirs[index].shape)
        ours[tindex] = tinygen.tensor(value)
        theirs[index] = torch.from_numpy(value)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_where_with_python_numbers_like_torch():
    c = tinygen.tensor([True, False])
    assert F.where(c, 1, 3).dtype == np.int64
    np.testing.assert_array_equal(F.where(c, 1, 3).numpy(), [1, 3])
    assert F.where(c, 1.0, 3).dtype == np.float32
    assert F.where(c, tinygen.tensor([1, 2], dtype=np.int32), 3.0).dtype == np.float32
    assert F.where(c, True, False).dtype == np.bool_


ZERO_D = {  # name: (tinygen op, torch op)
    "sum": (lambda t, d: t.sum(d), lambda t, d: t.sum(d)),
    "sum_keepdim": (lambda t, d: t.sum(d, keepdim=True), lambda t, d: t.sum(d, keepdim=True)),
    "mean": (lambda t, d: t.mean(d), lambda t, d: t.mean(d)),
    "amax": (lambda t, d: t.amax(d), lambda t, d: t.amax(d)),
    "max_values": (lambda t, d: t.max(d)[0], lambda t, d: t.max(d)[0]),
    "logsumexp": (lambda t, d: t.logsumexp(d), lambda t, d: t.logsumexp(d)),
    "softmax": (lambda t, d: t.softmax(d) * t, lambda t, d: t.softmax(d) * t),
    "log_softmax": (lambda t, d: t.log_softmax(d) * t, lambda t, d: t.log_softmax(d) * t),
    "squeeze": (lambda t, d: t.squeeze(d) * t, lambda t, d: t.squeeze(d) * t),
    "unsqueeze": (lambda t, d: t.unsqueeze(d), lambda t, d: t.unsqueeze(d)),
    "transpose": (lambda t, d: t.transpose(d, 0) * t, lambda t, d: t.transpose(d, 0) * t),
}


@pytest.mark.parametrize("name", sorted(ZERO_D))
@pytest.mark.parametrize("dim", [0, -1])
def test_zero_d_tensors_accept_dim_0_and_minus_1(name, dim):
    ours, theirs = ZERO_D[name]
    check_op(lambda t: ours(t, dim), [np.array(0.7)],
             second_order=False if name in ("amax", "max_values", "squeeze", "transpose",
                                            "sum", "sum_keepdim", "mean", "unsqueeze") else True,
             torch_fn=(lambda t: theirs(t, dim)) if torch is not None else None)
    if name == "var":
        return
    t = tinygen.tensor(0.7)
    assert t.var(dim).isnan().item() and t.std(dim).isnan().item()
    assert t.argmax(dim).item() == 0


def test_reductions_over_an_empty_axis_like_torch():
    x = tinygen.zeros(0, 3, dtype=np.float64)
    assert np.isnan(x.mean(0).numpy()).all() and x.mean(0).shape == (3,)
    assert np.isnan(x.var(0).numpy()).all() and np.isnan(x.std(0).numpy()).all()
    assert np.isneginf(x.logsumexp(0).numpy()).all()
    assert x.sum(0).numpy().tolist() == [0.0, 0.0, 0.0]
    assert x.logsumexp(1).shape == (0,) and x.mean(1).shape == (0,)
    if torch is not None:
        tx = torch.zeros(0, 3, dtype=torch.float64)
        np.testing.assert_array_equal(x.logsumexp(0).numpy(), tx.logsumexp(0).numpy())
        np.testing.assert_array_equal(x.mean(0).numpy(), tx.mean(0).numpy())
    t = tinygen.zeros(0, 3, dtype=np.float64, requires_grad=True)
    t.logsumexp(0).sum().backward()
    assert t.grad.shape == (0, 3)


def test_pow_gradient_at_zero_to_the_zero_is_zero_like_torch():
    a = tinygen.tensor(np.array([0.0, 0.0, 2.0]), requires_grad=True)
    b = tinygen.tensor(np.array([0.0, 2.0, 0.0]), requires_grad=True)
    ga, gb = tinygen.grad((a ** b).sum(), [a, b])
    np.testing.assert_array_equal(ga.numpy(), [0.0, 0.0, 0.0])
    np.testing.assert_allclose(gb.numpy(), [0.0, 0.0, np.log(2.0)])
    if torch is not None:
        ta = torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64, requires_grad=True)
        tb = torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64, requires_grad=True)
        tga, tgb = torch.autograd.grad((ta ** tb).sum(), [ta, tb])
        np.testing.assert_array_equal(ga.numpy(), tga.numpy())
        np.testing.assert_array_equal(gb.numpy(), tgb.numpy())


@given(data=st.data())
def test_pow_of_tensors_through_the_harness_with_zero_exponents(data):
    shape = data.draw(shapes())
    a = data.draw(arrays(shape, low=0.2, high=3.0))
    b = data.draw(arrays(shape, low=-2.0, high=2.0)) * data.draw(
        st.sampled_from([0.0, 1.0]))                                     # b == 0 everywhere too
    # torch masks d/da at every b == 0 with a non-differentiable fill, so its second
    # derivative in b there is 0; ours masks only a == b == 0 and matches finite differences
    check_op(lambda x, y: x ** y, [a, b], reference=np.power,
             torch_fn=(lambda x, y: x ** y) if torch is not None else None,
             torch_second_order=False)


@pytest.mark.parametrize("start,end,steps", [(-5, 5, 4), (-5.0, 5, 7), (0, -7, 5), (3, 4, 6)])
def test_integer_linspace_truncates_toward_zero_like_torch(start, end, steps):
    ours = tinygen.linspace(start, end, steps, dtype=tinygen.long)
    expected = np.trunc(np.linspace(start, end, steps)).astype(np.int64)
    np.testing.assert_array_equal(ours.numpy(), expected)
    if torch is not None:
        np.testing.assert_array_equal(
            ours.numpy(), torch.linspace(start, end, steps, dtype=torch.int64).numpy())


def test_shape_errors_are_runtime_errors_as_in_torch_and_value_errors():
    """PyTorch raises RuntimeError for shape mismatches; tinygen's ShapeError is both."""
    from tinygen.functional._util import ShapeError
    x = tinygen.zeros(2, 3)
    cases = [lambda: x + tinygen.zeros(4), lambda: x.reshape(4, 2), lambda: x.view(5),
             lambda: F.cat([x, tinygen.zeros(3, 2)]), lambda: F.stack([x, tinygen.zeros(3)]),
             lambda: x.expand(4, 3), lambda: F.where(x > 0, x, tinygen.zeros(5))]
    for case in cases:
        with pytest.raises(RuntimeError, match=r"\(2, 3\)|\(5,\)|\(4, 3\)") as info:
            case()
        assert isinstance(info.value, ShapeError) and isinstance(info.value, ValueError)
        if torch is not None:  # the same mistake in torch raises RuntimeError too
            pass
    if torch is not None:
        with pytest.raises(RuntimeError):
            torch.zeros(2, 3) + torch.zeros(4)
        with pytest.raises(RuntimeError):
            torch.zeros(2, 3).reshape(4, 2)
