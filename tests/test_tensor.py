"""Tensor construction, attributes, the dtype policy, factories, generators and devices."""
import numpy as np
import pytest

import tinygen


def test_attributes_and_conversions():
    t = tinygen.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    assert t.shape == (2, 2) and t.ndim == 2 and t.dtype == np.float32 and t.device == "cpu"
    assert t.requires_grad and t.is_leaf and t.grad is None and t.grad_fn is None
    assert isinstance(t.data, np.ndarray) and t.numpy() is t.data
    assert t.size() == (2, 2) and t.size(1) == 2 and t.numel() == 4 and t.dim() == 2
    assert t[1, 0].item() == 3.0 and isinstance(t[1, 0].item(), float)
    assert t.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert t.T.shape == (2, 2) and t.T.numpy()[0, 1] == 3.0
    with pytest.raises(ValueError, match="one-element"):
        t.item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(t)
    assert "requires_grad=True" in repr(t)
    assert "grad_fn=<MulBackward>" in repr(t * 2)
    assert "dtype=float64" in repr(tinygen.tensor(np.zeros(2)))


def test_tensor_copies_its_data_and_from_numpy_shares():
    a = np.zeros(3)
    t = tinygen.tensor(a)
    a[0] = 1.0
    assert t.numpy()[0] == 0.0
    s = tinygen.from_numpy(a)
    a[1] = 5.0
    assert s.numpy()[1] == 5.0
    assert tinygen.as_tensor(t) is t


def test_dtype_policy():
    assert tinygen.tensor(1.5).dtype == np.float32
    assert tinygen.tensor([1, 2]).dtype == np.int64
    assert tinygen.tensor([True, False]).dtype == np.bool_
    assert tinygen.tensor(np.zeros(2)).dtype == np.float64
    assert tinygen.tensor(np.zeros(2, np.float32)).dtype == np.float32
    assert tinygen.tensor([1, 2], dtype=np.float64).dtype == np.float64
    f32 = tinygen.tensor([1.0, 2.0])
    assert (f32 * 2.0).dtype == np.float32 and (2 * f32).dtype == np.float32
    assert (f32 + tinygen.tensor(np.ones(2))).dtype == np.float64
    ints = tinygen.tensor([1, 2])
    assert (ints / tinygen.tensor([2, 2])).dtype == np.float32
    assert (ints * 2.5).dtype == np.float32 and (ints + 1).dtype == np.int64
    with pytest.raises(RuntimeError, match="only floating point"):
        tinygen.tensor([1, 2], requires_grad=True)
    with pytest.raises(TypeError, match="dtype"):
        tinygen.tensor(["a"])


def test_set_default_dtype():
    try:
        tinygen.set_default_dtype(np.float64)
        assert tinygen.tensor([1.0]).dtype == np.float64 and tinygen.zeros(2).dtype == np.float64
    finally:
        tinygen.set_default_dtype(np.float32)
    assert tinygen.get_default_dtype() == np.float32
    with pytest.raises(TypeError):
        tinygen.set_default_dtype(np.int64)


def test_to_and_detach_and_clone():
    x = tinygen.tensor(np.array([1.0, 2.0]), requires_grad=True)
    assert x.to(np.float32).dtype == np.float32 and x.float().dtype == np.float32
    assert x.to("cpu") is x and x.to(dtype=np.float64) is x
    assert x.long().dtype == np.int64 and not x.long().requires_grad
    d = x.detach()
    assert not d.requires_grad and np.shares_memory(d.numpy(), x.numpy())
    c = x.clone()
    assert c.requires_grad and not np.shares_memory(c.numpy(), x.numpy())


def test_factories():
    assert tinygen.zeros(2, 3).shape == (2, 3) and tinygen.zeros((2, 3)).dtype == np.float32
    assert np.all(tinygen.ones(4, dtype=np.float64).numpy() == 1)
    assert tinygen.full((2,), 7).dtype == np.int64 and tinygen.full((2,), 7.5).numpy()[0] == 7.5
    assert tinygen.empty(3).shape == (3,)
    np.testing.assert_array_equal(tinygen.eye(2, 3).numpy(), np.eye(2, 3))
    assert tinygen.arange(5).dtype == np.int64 and tinygen.arange(0, 1, 0.25).shape == (4,)
    np.testing.assert_allclose(tinygen.linspace(0, 1, 5).numpy(), np.linspace(0, 1, 5))
    x = tinygen.randn(2, 3, dtype=np.float64)
    for like in (tinygen.zeros_like, tinygen.ones_like, tinygen.rand_like, tinygen.randn_like,
                 tinygen.empty_like):
        y = like(x)
        assert y.shape == x.shape and y.dtype == x.dtype
    assert tinygen.full_like(x, 2.0).numpy().sum() == 12.0
    r = tinygen.randint(3, 7, (1000,))
    assert r.dtype == np.int64 and r.numpy().min() == 3 and r.numpy().max() == 6
    u = tinygen.rand(10000).numpy()
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.02
    n = tinygen.randn(20000).numpy()
    assert abs(n.mean()) < 0.03 and abs(n.std() - 1) < 0.03
    assert tinygen.zeros(2, requires_grad=True).requires_grad
    with pytest.raises(ValueError, match="non-negative"):
        tinygen.zeros(-1)
    with pytest.raises(TypeError, match="floating"):
        tinygen.randn(2, dtype=np.int64)


def test_manual_seed_and_generators():
    tinygen.manual_seed(123)
    a = tinygen.randn(5).numpy()
    tinygen.manual_seed(123)
    b = tinygen.randn(5).numpy()
    np.testing.assert_array_equal(a, b)
    g1, g2 = tinygen.Generator(7), tinygen.Generator(7)
    tinygen.manual_seed(0)
    x = tinygen.randn(4, generator=g1).numpy()
    tinygen.randn(100)  # the default stream does not disturb g2
    np.testing.assert_array_equal(x, tinygen.randn(4, generator=g2).numpy())
    state = g1.get_state()
    after = tinygen.rand(3, generator=g1).numpy()
    g1.set_state(state)
    np.testing.assert_array_equal(after, tinygen.rand(3, generator=g1).numpy())
    saved = tinygen.get_rng_state()
    u = tinygen.rand(2).numpy()
    tinygen.set_rng_state(saved)
    np.testing.assert_array_equal(u, tinygen.rand(2).numpy())
    with pytest.raises(TypeError, match="seed must be an int"):
        tinygen.manual_seed(1.5)


def test_devices():
    if not tinygen.cuda_available():
        with pytest.raises(RuntimeError, match="needs CuPy and a CUDA GPU"):
            tinygen.zeros(2, device="cuda")
    with pytest.raises(ValueError, match="device must be"):
        tinygen.zeros(2, device="tpu")


def test_inplace_ops_and_setitem():
    x = tinygen.zeros(3)
    x.add_(1).mul_(3).sub_(1).div_(2)
    np.testing.assert_array_equal(x.numpy(), [1, 1, 1])
    x[1] = 5.0
    x += 1
    np.testing.assert_array_equal(x.numpy(), [2, 6, 2])
    x.zero_().fill_(4).clamp_(max=3)
    np.testing.assert_array_equal(x.numpy(), [3, 3, 3])
    x.copy_(np.array([1.0, 2.0, 3.0]))
    assert x._version > 0 and x.numpy()[2] == 3.0
    x.uniform_(-1, 1, generator=tinygen.Generator(0))
    assert np.all(np.abs(x.numpy()) <= 1)


def test_iteration_and_len():
    x = tinygen.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert len(x) == 2 and [r.tolist() for r in x] == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(TypeError):
        len(tinygen.tensor(1.0))
