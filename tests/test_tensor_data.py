"""``Tensor.data`` as in PyTorch, and ``Tensor.array``, the backing NumPy/CuPy array.

``t.data`` is a Tensor over t's memory with requires_grad False, no history and its own version
counter; ``t.data = other`` rebinds t's memory. Every idiom of the canonical PyTorch scripts is
checked to write through to the parameter, with torch as the oracle for the values. The tests run
on the test device: the CPU, or the emulated CUDA device in ``make test-gpu-emu``.
"""
import numpy as np
import pytest

import tinygen
from tinygen import nn
from harness import DEVICE, torch

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is the oracle here")


def _host(t):
    return tinygen.backend.to_numpy(t.array)


def _pair(shape=(3, 4), seed=0, requires_grad=True):
    """The same float32 values as a tinygen tensor on the test device and a torch tensor."""
    arr = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    t = tinygen.tensor(arr, device=DEVICE, requires_grad=requires_grad)
    return t, (torch.tensor(arr, requires_grad=requires_grad) if torch is not None else None)


# -- what .data is --------------------------------------------------------------------------------
def test_data_is_a_tensor_sharing_memory_cut_from_the_graph():
    w = nn.Parameter(tinygen.randn(3, 2, device=DEVICE))
    d = w.data
    assert type(d) is tinygen.Tensor                     # a plain Tensor, not a Parameter
    assert d.array is w.array                           # the same memory, no copy
    assert d.device == w.device == DEVICE and d.dtype == w.dtype and d.shape == w.shape
    assert not d.requires_grad and d.is_leaf and d.grad_fn is None and d.grad is None
    y = w * 2.0                                          # a non-leaf: .data has no history either
    assert y.data.grad_fn is None and not y.data.requires_grad and y.data.array is y.array
    assert w.data is not w.data                          # a fresh Tensor each time, as in PyTorch
    assert isinstance(w.array, tinygen.backend.array_module(DEVICE).ndarray)


def test_data_numpy_is_the_parameters_memory():
    w = nn.Parameter(tinygen.randn(3, 2))               # numpy() is a CPU conversion
    with pytest.raises(RuntimeError, match="requires grad"):
        w.numpy()
    a = w.data.numpy()
    assert a is w.array
    a[0, 0] = 7.0
    assert w[0, 0].item() == 7.0
    if DEVICE == "cuda":
        x = w.to("cuda")
        with pytest.raises(TypeError, match="cpu"):
            x.data.numpy()
        np.testing.assert_array_equal(x.data.cpu().numpy(), a)


# -- the idioms of PyTorch scripts write through ----------------------------------------------------
@needs_torch
def test_sgd_through_data_matches_torch():
    """word_language_model: ``p.data.add_(p.grad, alpha=-lr)`` after backward, a few steps."""
    t_w, r_w = _pair((4, 3), seed=1)
    t_b, r_b = _pair((4,), seed=2)
    x = np.random.default_rng(3).standard_normal((5, 3)).astype(np.float32)
    for _ in range(3):
        for w, b, lib, xx in ((t_w, t_b, tinygen, tinygen.tensor(x, device=DEVICE)),
                              (r_w, r_b, torch, torch.tensor(x))):
            w.grad = b.grad = None
            loss = (lib.tanh(xx @ w.T + b) ** 2).sum()
            loss.backward()
            for p in (w, b):
                version = p._version
                p.data.add_(p.grad, alpha=-0.1)
                assert p._version == version     # .data has its own version counter
    np.testing.assert_allclose(_host(t_w), r_w.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_host(t_b), r_b.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert t_w.requires_grad and t_w.is_leaf


def test_dcgan_init_through_data_writes_the_parameters():
    """dcgan's weights_init: ``m.weight.data.normal_(0.0, 0.02)``, ``m.bias.data.fill_(0)``."""
    conv = nn.Conv2d(8, 16, 3).to(DEVICE)
    bn = nn.BatchNorm2d(16).to(DEVICE)
    before, version = _host(conv.weight).copy(), conv.weight._version
    conv.weight.data.normal_(0.0, 0.02)
    bn.weight.data.normal_(1.0, 0.02)
    bn.bias.data.fill_(0)
    w = _host(conv.weight)
    assert not np.array_equal(w, before)
    assert abs(w.mean()) < 0.005 and 0.017 < w.std() < 0.023           # 1152 draws
    assert abs(_host(bn.weight).mean() - 1.0) < 0.01
    np.testing.assert_array_equal(_host(bn.bias), 0.0)
    assert conv.weight.requires_grad and type(conv.weight) is nn.Parameter
    assert conv.weight._version == version                               # no autograd bump


@needs_torch
def test_wgan_clamp_and_copy_through_data_match_torch():
    """WGAN: ``p.data.clamp_(-c, c)``; target networks: ``p.data.copy_(q.data)``."""
    t_p, r_p = _pair((6, 5), seed=4)
    t_p.data.clamp_(-0.5, 0.5)
    r_p.data.clamp_(-0.5, 0.5)
    np.testing.assert_array_equal(_host(t_p), r_p.detach().numpy())
    t_q, r_q = _pair((6, 5), seed=5)
    t_p.data.copy_(t_q.data)
    r_p.data.copy_(r_q.data)
    np.testing.assert_array_equal(_host(t_p), r_p.detach().numpy())
    assert t_p.array is not t_q.array                     # copied, not rebound
    t_p.data.mul_(2.0).sub_(1.0).zero_()                  # chained in place ops return the view
    np.testing.assert_array_equal(_host(t_p), 0.0)
    np.testing.assert_array_equal(_host(t_q), r_q.detach().numpy())


def test_data_writes_under_grad_mode_and_on_a_graph_tensor():
    """In-place methods on a tensor that requires grad are refused; through .data they are not
    (as in PyTorch), and out-of-place results of .data stay out of the graph."""
    w, _ = _pair((2, 3), seed=6)
    with pytest.raises(RuntimeError, match="in-place"):
        w.add_(1.0)
    w.data.add_(1.0)
    y = w * 3.0
    y.data.zero_()
    np.testing.assert_array_equal(_host(y), 0.0)
    z = w.data * 2.0
    assert not z.requires_grad and z.grad_fn is None


# -- version counters: .data vs .detach() ------------------------------------------------------------
@needs_torch
@pytest.mark.parametrize("how", ["detach", "data"])
def test_version_counter_detach_raises_data_does_not(how):
    """PyTorch's documented difference: an in-place change of a tensor saved for backward is
    caught when made through ``.detach()`` (shared version counter), not through ``.data``."""
    results = []
    t_x, r_x = _pair((3,), seed=7)
    for x in (t_x, r_x):
        y = x * 2.0
        z = (y * y).sum()                                  # saves y for backward
        version = y._version
        (y.detach() if how == "detach" else y.data).mul_(3.0)
        if how == "detach":
            assert y._version == version + 1
            with pytest.raises(RuntimeError, match="modified by an in-?place"):
                z.backward()
            results.append(None)
        else:
            assert y._version == version
            z.backward()                                   # uses the modified y, silently
            results.append(x.grad)
    if how == "data":
        np.testing.assert_allclose(_host(results[0]), results[1].numpy(), rtol=1e-6)


def test_detach_shares_the_version_counter_data_has_its_own():
    w, _ = _pair((4,), seed=8)
    d, e = w.data, w.detach()
    e.add_(1.0)
    assert w._version == 1 and e._version == 1 and d._version == 0
    d.add_(1.0)
    assert w._version == 1 and d._version == 1
    assert w.data._version == 0                            # fresh each time


# -- the setter -----------------------------------------------------------------------------------
def test_setting_data_rebinds_the_memory():
    p = nn.Parameter(tinygen.zeros(3, device=DEVICE))
    p.grad = tinygen.ones(3, device=DEVICE)
    version = p._version
    new = tinygen.arange(8, dtype=tinygen.float64, device=DEVICE).reshape(2, 4)
    p.data = new
    assert p.array is new.array and p.shape == (2, 4) and p.dtype == tinygen.float64
    assert type(p) is nn.Parameter and p.requires_grad and p.is_leaf and p._version == version
    assert p.grad.shape == (3,)                                    # grad left alone
    new.data.add_(1.0)                                              # shared with `new`
    np.testing.assert_array_equal(_host(p), np.arange(1, 9).reshape(2, 4))
    arr = tinygen.backend.array_module(DEVICE).ones((2, 2), dtype=np.float32)
    p.data = arr                                                    # a raw array is accepted too
    assert p.array is arr and p.dtype == tinygen.float32


def test_setting_data_refuses_what_pytorch_refuses():
    p = nn.Parameter(tinygen.zeros(3))
    with pytest.raises(RuntimeError, match="floating point"):
        p.data = tinygen.zeros(3, dtype=tinygen.int64)
    with pytest.raises(TypeError, match="Tensor"):
        p.data = [1.0, 2.0]
    with pytest.raises(TypeError, match="dtype"):
        p.data = np.array(["a"])
    assert p.shape == (3,) and p.dtype == tinygen.float32
    t = tinygen.zeros(3)
    t.data = tinygen.ones(2, dtype=tinygen.int64)            # no grad needed: any numeric dtype
    assert t.dtype == tinygen.int64 and t.tolist() == [1, 1]


@needs_torch
def test_setting_data_matches_torch():
    """``c.data = b``: c takes b's memory (writes to b show in c), keeps its own requires_grad."""
    for lib in (tinygen, torch):
        b = lib.ones(2, requires_grad=True)
        c = lib.zeros(2)
        c.data = b
        assert not c.requires_grad
        with lib.no_grad():
            b.mul_(5.0)
        assert c.tolist() == [5.0, 5.0]


def test_setting_data_moves_a_parameter_between_devices():
    """``p.data = p.data.to(device)``: the old idiom of Module._apply."""
    p = nn.Parameter(tinygen.randn(3))
    values = p.detach().numpy().copy()
    p.data = p.data.to(DEVICE)
    assert p.device == DEVICE and type(p) is nn.Parameter and p.requires_grad
    np.testing.assert_array_equal(_host(p), values)
    (p * 2.0).sum().backward()
    np.testing.assert_array_equal(_host(p.grad), 2.0)


def test_optimizers_and_state_dicts_see_writes_through_data():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).to(DEVICE)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.weight.data.fill_(0.5)
            m.bias.data.zero_()
    sd = model.state_dict()
    np.testing.assert_array_equal(_host(sd["0.weight"]), 0.5)
    opt = tinygen.optim.Adam(model.parameters(), lr=0.1)
    model(tinygen.ones(2, 3, device=DEVICE)).sum().backward()
    opt.step()                                      # Adam's fused kernel writes p.array
    assert not np.allclose(_host(model[0].weight), 0.5)
    assert model[0].weight.data.array is model[0].weight.array
