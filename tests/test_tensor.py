"""Tensor construction, attributes, the dtype policy, factories, generators and devices.

Where a PyTorch user brings habits (``tensor(...)``, ``.detach()``, ``.to(...)``, factories with
``dtype=``/``requires_grad=``/``generator=``, ``manual_seed``) the behaviour is PyTorch's; dtype
promotion between tensors is NumPy's (see :mod:`tinygen.backend`).
"""
import pickle

import numpy as np
import pytest

import tinygen
from conftest import torch


@pytest.fixture
def default_float64():
    """Run a test with float64 as the default dtype, restoring float32 whatever happens."""
    tinygen.set_default_dtype(np.float64)
    try:
        yield
    finally:
        tinygen.set_default_dtype(np.float32)


# -- attributes and conversions --------------------------------------------------------------------
def test_attributes_and_conversions():
    values = [[1.0, 2.0], [3.0, 4.0]]
    t = tinygen.tensor(values, requires_grad=True)
    assert t.shape == (2, 2) and t.ndim == 2 and t.dtype == np.float32 and t.device == "cpu"
    assert t.requires_grad and t.is_leaf and t.grad is None and t.grad_fn is None
    assert isinstance(t.array, np.ndarray) and t.detach().numpy() is t.array
    np.testing.assert_array_equal(t.detach().numpy(), np.array(values, dtype=np.float32))
    assert t.size() == (2, 2) and t.size(1) == 2 and t.size(-2) == 2
    assert t.numel() == 4 and t.dim() == 2
    assert t[1, 0].item() == values[1][0] and isinstance(t[1, 0].item(), float)
    assert tinygen.tensor([7])[0].item() == 7 and isinstance(tinygen.tensor(7).item(), int)
    assert isinstance(tinygen.tensor(True).item(), bool)
    assert float(tinygen.tensor([2.5])) == 2.5 and int(tinygen.tensor(3)) == 3
    assert t.tolist() == values
    assert t.T.shape == (2, 2) and t.T.detach().numpy()[0, 1] == values[1][0]
    with pytest.raises(ValueError, match=r"one-element.*\(2, 2\)"):
        t.item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(t)
    assert bool(tinygen.tensor([1.0])) and not bool(tinygen.tensor(0))


def test_repr():
    r = repr(tinygen.tensor([1.5, -2.25], requires_grad=True))
    assert r.startswith("tensor(") and "1.5" in r and "-2.25" in r and "requires_grad=True" in r
    assert "dtype" not in r  # float32 is the default: not spelled out (as PyTorch)
    y = tinygen.tensor([1.0], requires_grad=True) * 2
    assert "grad_fn=<MulBackward>" in repr(y) and "requires_grad" not in repr(y)
    assert "dtype=float64" in repr(tinygen.tensor(np.zeros(2)))
    assert "dtype=int32" in repr(tinygen.tensor(np.zeros(2, np.int32)))
    plain = repr(tinygen.tensor([1, 2]))
    assert "dtype" not in plain and "grad" not in plain
    assert "dtype=float32" in repr(tinygen.zeros(0))  # empty: the dtype is all there is to say


def test_tensor_copies_its_data_and_from_numpy_shares():
    a = np.zeros(3)
    t = tinygen.tensor(a)
    a[0] = 1.0
    assert t.numpy()[0] == 0.0 and not np.shares_memory(t.numpy(), a)
    s = tinygen.from_numpy(a)
    a[1] = 5.0
    assert s.numpy()[1] == 5.0 and s.dtype == a.dtype
    assert tinygen.as_tensor(t) is t
    assert tinygen.as_tensor(t, dtype=np.float32).dtype == np.float32
    src = tinygen.tensor([1.0, 2.0], requires_grad=True) * 2
    c = tinygen.tensor(src)  # a fresh leaf holding a copy, cut from src's graph
    assert c.is_leaf and not c.requires_grad and not np.shares_memory(c.detach().numpy(), src.detach().numpy())
    np.testing.assert_array_equal(c.detach().numpy(), src.detach().numpy())
    k = tinygen.Tensor([1.0, 2.0], requires_grad=True)  # the class itself, like torch.Tensor
    assert isinstance(k, tinygen.Tensor) and k.requires_grad and k.dtype == np.float32
    with pytest.raises(TypeError, match="from_numpy"):
        tinygen.from_numpy([1.0])


def test_detach_shares_memory_and_is_cut_from_graph():
    x = tinygen.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x * 3
    d = y.detach()
    assert d.is_leaf and d.grad_fn is None and not d.requires_grad
    assert np.shares_memory(d.detach().numpy(), y.detach().numpy())
    assert (d * 2).grad_fn is None and not (d * 2).requires_grad  # nothing flows through d
    d.numpy()[0] = 10.0  # the same memory
    assert y.detach().numpy()[0] == 10.0
    # in-place on the detached tensor bumps the shared version counter (as PyTorch)
    z = (x * x).sum()
    x.detach().add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        z.backward()
    # gradient does not flow into a detached branch
    w = tinygen.tensor(np.array([2.0, 3.0]), requires_grad=True)
    (w * w.detach()).sum().backward()
    np.testing.assert_array_equal(w.grad.detach().numpy(), w.detach().numpy())  # d/dw (w * c) = c, not 2w


def test_to_dtype_and_device():
    x = tinygen.tensor(np.array([1.0, 2.0]), requires_grad=True)
    assert x.to(np.float32).dtype == np.float32 and x.float().dtype == np.float32
    assert x.to(tinygen.float32).dtype == np.float32 and x.to("float32").dtype == np.float32
    assert x.to("cpu") is x and x.to(dtype=np.float64) is x and x.cpu() is x
    assert x.to("cpu", np.float32).dtype == np.float32
    assert x.to(device="cpu", dtype=np.float32).dtype == np.float32
    assert x.long().dtype == np.int64 and not x.long().requires_grad
    assert x.type_as(tinygen.zeros(1)).dtype == np.float32
    # a cast between floating dtypes is differentiable; the gradient comes back in x's dtype
    f = x.to(np.float32)
    assert f.requires_grad and not f.is_leaf
    (f * tinygen.tensor([3.0, 5.0])).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 5.0])
    with pytest.raises(ValueError, match="device must be"):
        x.to("tpu")


def test_clone():
    x = tinygen.tensor(np.array([1.0, -2.0]), requires_grad=True)
    c = x.clone()
    assert c.requires_grad and not c.is_leaf and not np.shares_memory(c.detach().numpy(), x.detach().numpy())
    np.testing.assert_array_equal(c.detach().numpy(), x.detach().numpy())
    (c * c).sum().backward()
    np.testing.assert_array_equal(x.grad.detach().numpy(), 2 * x.detach().numpy())
    plain = tinygen.tensor([1.0, 2.0])
    pc = plain.clone()
    assert not pc.requires_grad and pc.is_leaf
    pc.add_(1)
    np.testing.assert_array_equal(plain.numpy(), [1.0, 2.0])


def test_is_leaf_and_grad_fn():
    x = tinygen.tensor([1.0], requires_grad=True)
    c = tinygen.tensor([1.0])
    assert x.is_leaf and c.is_leaf
    y = x * 2
    assert not y.is_leaf and y.grad_fn is not None and y.requires_grad
    assert (c * 2).is_leaf and (c * 2).grad_fn is None
    with tinygen.no_grad():
        n = x * 2
    assert n.is_leaf and n.grad_fn is None and not n.requires_grad


# -- requires_grad and dtypes ---------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: tinygen.tensor([1, 2], requires_grad=True),
    lambda: tinygen.tensor([True], requires_grad=True),
    lambda: tinygen.tensor([1.0], dtype=np.int32, requires_grad=True),
    lambda: tinygen.tensor([1, 2]).requires_grad_(),
    lambda: tinygen.zeros(2, dtype=np.int64, requires_grad=True),
    lambda: tinygen.ones(2, dtype=np.bool_, requires_grad=True),
    lambda: tinygen.full((2,), 3, requires_grad=True),
    lambda: tinygen.arange(3, requires_grad=True),
], ids=["tensor-int", "tensor-bool", "tensor-int32", "requires_grad_", "zeros", "ones-bool",
        "full-int", "arange-int"])
def test_requires_grad_refused_on_non_float_tensors(make):
    with pytest.raises(RuntimeError, match="only floating point tensors can require gradients"):
        make()


def test_requires_grad_flag_toggles_on_leaves_only():
    x = tinygen.tensor([1.0])
    assert x.requires_grad_() is x and x.requires_grad
    x.requires_grad_(False)
    assert not x.requires_grad
    y = tinygen.tensor([1.0], requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="only allowed on leaf"):
        y.requires_grad_(False)


@pytest.mark.parametrize("data, expected", [
    (1.5, np.float32), ([1.0, 2.0], np.float32), ([1, 2.5], np.float32), ([], np.float32),
    ([[1.0], [2.0]], np.float32), (3, np.int64), ([1, 2], np.int64), (True, np.bool_),
    ([True, False], np.bool_), (np.zeros(2), np.float64), (np.zeros(2, np.float32), np.float32),
    (np.zeros(2, np.int32), np.int32), (np.zeros(2, np.uint8), np.uint8),
    (np.float64(1.5), np.float64), (np.int32(4), np.int32),
], ids=lambda v: type(v).__name__ if not isinstance(v, type) else v.__name__)
def test_dtype_of_new_tensors(data, expected):
    t = tinygen.tensor(data)
    assert t.dtype == expected
    np.testing.assert_array_equal(t.numpy(), np.asarray(data).astype(expected))


@pytest.mark.parametrize("data", [["a"], np.array(["a"]), np.array([None]), 1 + 2j,
                                  np.zeros(2, np.complex128)], ids=repr)
def test_non_numeric_data_refused(data):
    with pytest.raises(TypeError, match="dtype"):
        tinygen.tensor(data)


def test_explicit_dtype_wins():
    assert tinygen.tensor([1, 2], dtype=np.float64).dtype == np.float64
    assert tinygen.tensor(np.zeros(2), dtype=tinygen.float32).dtype == np.float32
    assert tinygen.tensor([1.7], dtype=np.int64).numpy()[0] == 1
    with pytest.raises(TypeError, match="cannot interpret"):
        tinygen.tensor([1.0], dtype="not-a-dtype")


def test_promotion_in_ops():
    f32 = tinygen.tensor([1.0, 2.0])
    f64 = tinygen.tensor(np.array([3.0, 4.0]))
    i64 = tinygen.tensor([1, 2])
    i32 = tinygen.tensor(np.array([1, 2], dtype=np.int32))
    b = tinygen.tensor([True, False])
    # a Python (or NumPy) scalar never widens a float tensor
    for r in (f32 * 2.0, 2.0 * f32, f32 + 1, f32 / 3, 1 - f32, f32 ** 2.0, f32 * np.float64(2)):
        assert r.dtype == np.float32
    # tensor with tensor: PyTorch's promotion (an int or bool tensor never widens a float one;
    # tests/test_pytorch_semantics.py checks the whole table against torch)
    assert (f32 + f64).dtype == np.float64 and (f64 * f32).dtype == np.float64
    assert (f32 * i64).dtype == np.float32 and (f32 * b).dtype == np.float32
    assert (i64 + i64).dtype == np.int64 and (i64 + 1).dtype == np.int64
    assert (i32 + 1).dtype == np.int32 and (b + 1).dtype == np.int64
    # true division of integers gives the default float dtype (as PyTorch)
    for r in (i64 / tinygen.tensor([2, 2]), i64 / 2, 2 / i64, i32 / i32):
        assert r.dtype == np.float32
    np.testing.assert_allclose((i64 / tinygen.tensor([2, 4])).numpy(), [0.5, 0.5])
    # an integer tensor meeting a float scalar becomes the default float dtype
    assert (i64 * 2.5).dtype == np.float32 and (1.5 - i64).dtype == np.float32
    np.testing.assert_allclose((i64 * 2.5).numpy(), [2.5, 5.0])
    # comparisons are boolean
    assert (f32 > 1.5).dtype == np.bool_ and (f32 == f64).dtype == np.bool_


def test_gradient_of_float32_input_is_float32_under_promotion():
    a = tinygen.tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    b = tinygen.tensor(np.array([3.0, 4.0]), requires_grad=True)
    out = (a * b + a / b).sum()
    assert out.dtype == np.float64
    out.backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    av, bv = a.detach().numpy().astype(np.float64), b.detach().numpy()
    np.testing.assert_allclose(a.grad.numpy(), bv + 1 / bv, rtol=1e-6)
    np.testing.assert_allclose(b.grad.numpy(), av - av / bv ** 2, rtol=1e-12)


def test_set_default_dtype(default_float64):
    assert tinygen.get_default_dtype() == np.float64
    assert tinygen.tensor([1.0]).dtype == np.float64 and tinygen.zeros(2).dtype == np.float64
    assert tinygen.ones(2).dtype == np.float64 and tinygen.rand(2).dtype == np.float64
    assert tinygen.randn(2).dtype == np.float64 and tinygen.arange(0.5, 2).dtype == np.float64
    assert tinygen.linspace(0, 1, 3).dtype == np.float64 and tinygen.eye(2).dtype == np.float64
    assert tinygen.full((1,), 0.5).dtype == np.float64
    i = tinygen.tensor([1, 2])
    assert i.dtype == np.int64 and (i / i).dtype == np.float64 and (i * 0.5).dtype == np.float64
    # float32 data keeps its dtype whatever the default
    assert tinygen.tensor(np.zeros(1, np.float32)).dtype == np.float32


def test_set_default_dtype_refuses_non_float():
    for bad in (np.int64, np.float16, "bool"):
        with pytest.raises(TypeError, match="float32 or float64"):
            tinygen.set_default_dtype(bad)
    assert tinygen.get_default_dtype() == np.float32


# -- factories -------------------------------------------------------------------------------------
def test_constant_factories():
    for shape_args in ((2, 3), ((2, 3),), ([2, 3],)):
        z = tinygen.zeros(*shape_args)
        assert z.shape == (2, 3) and z.dtype == np.float32 and not z.requires_grad
        np.testing.assert_array_equal(z.numpy(), np.zeros((2, 3)))
    o = tinygen.ones(4, dtype=np.float64, requires_grad=True)
    assert o.dtype == np.float64 and o.requires_grad and o.is_leaf
    np.testing.assert_array_equal(o.detach().numpy(), np.ones(4))
    assert tinygen.zeros(()).shape == () and tinygen.zeros(0, 3).shape == (0, 3)
    assert tinygen.empty(3, 2).shape == (3, 2)
    assert tinygen.empty(3, dtype=np.int32).dtype == np.int32
    f = tinygen.full((2, 2), 7)
    assert f.dtype == np.int64 and np.all(f.numpy() == 7)
    assert tinygen.full((2,), 7.5).dtype == np.float32 and tinygen.full((2,), 7.5).numpy()[0] == 7.5
    assert tinygen.full(3, True).dtype == np.bool_ and tinygen.full(3, 2, dtype=np.float64).dtype \
        == np.float64
    assert tinygen.full((2,), 0.5, requires_grad=True).requires_grad
    np.testing.assert_array_equal(tinygen.eye(3).numpy(), np.eye(3))
    np.testing.assert_array_equal(tinygen.eye(2, 3).numpy(), np.eye(2, 3))
    assert tinygen.eye(2, dtype=np.float64, requires_grad=True).requires_grad
    with pytest.raises(ValueError, match="non-negative"):
        tinygen.zeros(-1)
    with pytest.raises(ValueError, match="non-negative"):
        tinygen.ones(2, 1.5)


def test_ranges():
    a = tinygen.arange(5)
    assert a.dtype == np.int64 and a.tolist() == list(range(5))
    assert tinygen.arange(2, 11, 3).tolist() == list(range(2, 11, 3))
    fa = tinygen.arange(0, 1, 0.25)
    assert fa.dtype == np.float32 and fa.tolist() == [0.0, 0.25, 0.5, 0.75]
    assert tinygen.arange(4.0).dtype == np.float32
    assert tinygen.arange(3, dtype=np.float64, requires_grad=True).requires_grad
    ls = tinygen.linspace(-1, 1, 5)
    assert ls.dtype == np.float32 and ls.shape == (5,)
    np.testing.assert_allclose(ls.numpy(), np.linspace(-1, 1, 5))
    assert tinygen.linspace(0, 1, 4, dtype=np.float64, requires_grad=True).requires_grad


def test_random_factories_distribution_and_dtype():
    u = tinygen.rand(20000)
    assert u.dtype == np.float32 and u.shape == (20000,)
    assert 0 <= u.numpy().min() and u.numpy().max() < 1 and abs(u.numpy().mean() - 0.5) < 0.01
    n = tinygen.randn(20000, dtype=np.float64).numpy()
    assert n.dtype == np.float64 and abs(n.mean()) < 0.03 and abs(n.std() - 1) < 0.03
    assert tinygen.randn(2, 3).shape == (2, 3) and tinygen.randn((2, 3)).shape == (2, 3)
    assert tinygen.rand(2, requires_grad=True).requires_grad
    r = tinygen.randint(3, 7, (1000,))
    assert r.dtype == np.int64 and r.numpy().min() == 3 and r.numpy().max() == 6
    assert set(np.unique(r.numpy())) == {3, 4, 5, 6}
    r2 = tinygen.randint(4, (500,))  # torch.randint(high, size)
    assert r2.shape == (500,) and r2.numpy().min() == 0 and r2.numpy().max() == 3
    r3 = tinygen.randint(4, size=(2, 2), dtype=np.int32)
    assert r3.shape == (2, 2) and r3.dtype == np.int32
    with pytest.raises(ValueError, match="low < high"):
        tinygen.randint(5, 5, (2,))
    with pytest.raises(TypeError, match="floating"):
        tinygen.randn(2, dtype=np.int64)
    with pytest.raises(TypeError, match="floating"):
        tinygen.rand(2, dtype=np.int32)


def test_like_factories():
    x = tinygen.randn(2, 3, dtype=np.float64)
    for like in (tinygen.zeros_like, tinygen.ones_like, tinygen.rand_like, tinygen.randn_like,
                 tinygen.empty_like):
        y = like(x)
        assert y.shape == x.shape and y.dtype == x.dtype and not y.requires_grad
        assert like(x, dtype=np.float32).dtype == np.float32
        assert like(x, requires_grad=True).requires_grad
    np.testing.assert_array_equal(tinygen.zeros_like(x).numpy(), np.zeros((2, 3)))
    np.testing.assert_array_equal(tinygen.ones_like(x).numpy(), np.ones((2, 3)))
    f = tinygen.full_like(x, 2.5)
    assert f.dtype == np.float64 and np.all(f.numpy() == 2.5)
    assert tinygen.zeros_like(tinygen.tensor([1, 2])).dtype == np.int64
    g = tinygen.Generator(11)
    a = tinygen.randn_like(x, generator=g).numpy()
    np.testing.assert_array_equal(a, tinygen.randn_like(x, generator=tinygen.Generator(11)).numpy())


# -- seeds and generators --------------------------------------------------------------------------
@pytest.mark.parametrize("draw", [
    lambda: tinygen.rand(5), lambda: tinygen.randn(3, 2, dtype=np.float64),
    lambda: tinygen.randint(0, 1000, (6,)), lambda: tinygen.zeros(4).normal_(),
    lambda: tinygen.zeros(4).uniform_(-2, 2), lambda: tinygen.rand_like(tinygen.zeros(3)),
], ids=["rand", "randn", "randint", "normal_", "uniform_", "rand_like"])
def test_manual_seed_reproduces_draws(draw):
    tinygen.manual_seed(123)
    a = draw().numpy()
    tinygen.manual_seed(123)
    b = draw().numpy()
    np.testing.assert_array_equal(a, b)
    tinygen.manual_seed(124)
    assert not np.array_equal(a, draw().numpy())
    assert not np.array_equal(b, draw().numpy())  # the stream moved on


def test_explicit_generators_are_independent_of_the_default_one():
    # drawing from the default stream does not disturb an explicit generator ...
    g1, g2 = tinygen.Generator(7), tinygen.Generator(7)
    x = tinygen.randn(4, generator=g1).numpy()
    tinygen.randn(100)
    np.testing.assert_array_equal(x, tinygen.randn(4, generator=g2).numpy())
    # ... and drawing from an explicit generator does not move the default stream
    tinygen.manual_seed(3)
    expected = tinygen.rand(5).numpy()
    tinygen.manual_seed(3)
    tinygen.rand(50, generator=tinygen.Generator(3))
    tinygen.zeros(10).normal_(generator=g1)
    np.testing.assert_array_equal(expected, tinygen.rand(5).numpy())
    # two generators with different seeds give different streams
    assert not np.array_equal(tinygen.rand(5, generator=tinygen.Generator(1)).numpy(),
                              tinygen.rand(5, generator=tinygen.Generator(2)).numpy())
    assert tinygen.Generator(9).initial_seed() == 9
    assert tinygen.manual_seed(5) is tinygen.random.default_generator


def test_generator_state_round_trip():
    g = tinygen.Generator(42)
    tinygen.rand(3, generator=g)  # state mid-stream, not just after seeding
    state = g.get_state()
    after = [tinygen.rand(3, generator=g).numpy(), tinygen.randn(2, generator=g).numpy(),
             tinygen.randint(0, 100, (4,), generator=g).numpy()]
    g.set_state(state)
    again = [tinygen.rand(3, generator=g).numpy(), tinygen.randn(2, generator=g).numpy(),
             tinygen.randint(0, 100, (4,), generator=g).numpy()]
    for a, b in zip(after, again):
        np.testing.assert_array_equal(a, b)
    # the state is a picklable snapshot that another generator can take over
    other = tinygen.Generator(0)
    other.set_state(pickle.loads(pickle.dumps(state)))
    np.testing.assert_array_equal(after[0], tinygen.rand(3, generator=other).numpy())
    assert other.initial_seed() == 42
    # the snapshot is not a live view of the generator
    before = pickle.dumps(state)
    tinygen.rand(10, generator=g)
    assert pickle.dumps(state) == before
    # the default generator through get_rng_state/set_rng_state
    saved = tinygen.get_rng_state()
    u = tinygen.rand(2).numpy()
    tinygen.set_rng_state(saved)
    np.testing.assert_array_equal(u, tinygen.rand(2).numpy())


def test_generator_argument_checks():
    with pytest.raises(TypeError, match="seed must be an int"):
        tinygen.manual_seed(1.5)
    with pytest.raises(TypeError, match="seed must be an int"):
        tinygen.Generator(True)
    with pytest.raises(TypeError, match="tinygen.Generator"):
        tinygen.rand(2, generator=np.random.default_rng(0))


# -- devices ---------------------------------------------------------------------------------------
@pytest.mark.skipif(tinygen.cuda_available(), reason="checks the error raised without CuPy/GPU")
@pytest.mark.parametrize("make", [
    lambda: tinygen.tensor([1.0], device="cuda"), lambda: tinygen.zeros(2, device="cuda"),
    lambda: tinygen.randn(2, device="cuda:0"), lambda: tinygen.tensor([1.0]).to("cuda"),
    lambda: tinygen.tensor([1.0]).cuda(), lambda: tinygen.Generator(0, device="cuda"),
], ids=["tensor", "zeros", "randn", "to", "cuda", "Generator"])
def test_cuda_without_cupy_is_a_clear_runtime_error(make):
    with pytest.raises(RuntimeError, match="needs CuPy and a CUDA GPU"):
        make()


@pytest.mark.parametrize("make", [
    lambda d: tinygen.tensor([1.0], device=d), lambda d: tinygen.zeros(2, device=d),
    lambda d: tinygen.rand(2, device=d), lambda d: tinygen.arange(3, device=d),
    lambda d: tinygen.Generator(0, device=d),
], ids=["tensor", "zeros", "rand", "arange", "Generator"])
@pytest.mark.parametrize("device", ["tpu", "gpu", "CPU", "cuda0"])
def test_bad_device_string_is_a_value_error(make, device):
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        make(device)


def test_cpu_device_everywhere():
    for t in (tinygen.tensor([1.0], device="cpu"), tinygen.zeros(1, device="cpu"),
              tinygen.randn(1, device=None)):
        assert t.device == "cpu" and isinstance(t.array, np.ndarray)


# -- in-place ops ----------------------------------------------------------------------------------
def test_inplace_ops_and_setitem():
    x = tinygen.zeros(3)
    assert x.add_(1).mul_(3).sub_(1).div_(2) is x
    np.testing.assert_array_equal(x.numpy(), [1, 1, 1])
    x[1] = 5.0
    x += 1
    np.testing.assert_array_equal(x.numpy(), [2, 6, 2])
    x.add_(tinygen.tensor([1.0, 2.0, 3.0]), alpha=2).sub_(1, alpha=3)
    np.testing.assert_array_equal(x.numpy(), [1, 7, 5])
    x.zero_().fill_(4).clamp_(max=3)
    np.testing.assert_array_equal(x.numpy(), [3, 3, 3])
    v0 = x._version
    x.copy_(np.array([1.0, 2.0, 3.0]))
    assert x._version > v0 and x.numpy().tolist() == [1.0, 2.0, 3.0]
    x[tinygen.tensor([0, 2])] = tinygen.tensor([8.0, 9.0])
    assert x.numpy().tolist() == [8.0, 2.0, 9.0]
    x.uniform_(-1, 1, generator=tinygen.Generator(0))
    assert np.all(np.abs(x.numpy()) <= 1)
    x.normal_(mean=10.0, std=0.01)
    assert np.all(np.abs(x.numpy() - 10) < 1)


def test_inplace_with_an_operand_that_requires_grad_is_refused():
    w = tinygen.tensor([5.0, 6.0], requires_grad=True)
    buf = tinygen.zeros(2)
    for op in (lambda: buf.add_(w), lambda: buf.mul_(w), lambda: buf.copy_(w),
               lambda: buf.__setitem__(slice(None), w), lambda: buf.sub_(w, alpha=2),
               lambda: buf.fill_(w[0])):
        with pytest.raises(RuntimeError, match="gradient would be lost"):
            op()
    np.testing.assert_array_equal(buf.numpy(), [0.0, 0.0])
    with tinygen.no_grad():  # outside grad mode it is just a copy of the values
        buf.copy_(w)
    np.testing.assert_array_equal(buf.detach().numpy(), w.detach().numpy())
    buf.add_(w.detach())
    np.testing.assert_array_equal(buf.detach().numpy(), 2 * w.detach().numpy())


# -- Python protocol -------------------------------------------------------------------------------
def test_iteration_len_and_hash():
    x = tinygen.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert len(x) == 2 and [r.tolist() for r in x] == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(TypeError):
        len(tinygen.tensor(1.0))
    with pytest.raises(TypeError):
        iter(tinygen.tensor(1.0))
    a, b = tinygen.tensor([1.0]), tinygen.tensor([1.0])
    assert hash(a) != hash(b) and {a: 1, b: 2}[b] == 2 and len({a, b, a}) == 2


@pytest.mark.skipif(torch is None, reason="PyTorch oracle not installed")
def test_factory_dtypes_match_torch():
    cases = [((1.5,), {}), (([1, 2],), {}), (([True],), {}), (([1, 2.5],), {}), (([],), {})]
    for args, kw in cases:
        ours, theirs = tinygen.tensor(*args, **kw), torch.tensor(*args, **kw)
        assert str(ours.dtype) == str(theirs.dtype).replace("torch.", "")
    programs = [lambda lib: lib.arange(5), lambda lib: lib.arange(0, 1, 0.25),
                lambda lib: lib.full((2,), 3), lambda lib: lib.full((2,), True),
                lambda lib: lib.tensor([1, 2]) / lib.tensor([2, 2]),
                lambda lib: lib.tensor([1, 2]) * 2.5, lambda lib: lib.tensor([1.0]) * 2.0,
                lambda lib: lib.tensor([1, 2]) + 1, lambda lib: lib.tensor([True]) + 1]
    for program in programs:
        ours, theirs = program(tinygen), program(torch)
        assert str(ours.dtype) == str(theirs.dtype).replace("torch.", "")
        np.testing.assert_allclose(ours.numpy(), theirs.numpy())
