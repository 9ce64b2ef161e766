"""Engine semantics: accumulation, graph lifetime, in-place checks, grad(), higher order."""
import numpy as np
import pytest

import tinygen
from tinygen import functional as F
from harness import torch


def t64(values, requires_grad=True):
    return tinygen.tensor(np.asarray(values, dtype=np.float64), requires_grad=requires_grad)


def test_leaf_gradients_accumulate_until_zeroed():
    x = t64([1.0, 2.0])
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3 + 2, 3 + 4])
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3, 3])


def test_non_leaf_grad_only_with_retain_grad():
    x = t64([1.0, 2.0])
    h = x * 2
    k = x * 3
    k.retain_grad()
    (h * k).sum().backward()
    assert h.grad is None and not h.is_leaf and h.grad_fn is not None
    np.testing.assert_array_equal(k.grad.numpy(), h.numpy())


def test_backward_errors():
    x = t64([1.0, 2.0])
    y = x * 2
    with pytest.raises(RuntimeError, match=r"only for scalar outputs.*\(2,\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"shape \(3,\).*\(2,\)"):
        y.backward(tinygen.ones(3, dtype=np.float64))
    with pytest.raises(RuntimeError, match="does not require grad"):
        t64([1.0], requires_grad=False).sum().backward()


def test_second_backward_through_freed_graph():
    x = t64([1.0, 2.0])
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()
    x.grad = None
    z = (x.exp() * x).sum()
    z.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    z.backward()
    np.testing.assert_allclose(x.grad.numpy(), first * 2)


def test_inplace_change_of_a_saved_input_is_detected():
    a = t64([1.0, 2.0], requires_grad=False)
    w = t64([3.0, 4.0])
    y = (a * w).sum()
    a.add_(1.0)
    with pytest.raises(RuntimeError, match=r"gradient of Mul \(input 0.*modified by an in-place operation"):
        y.backward()


def test_optimizer_style_update_after_forward_is_detected():
    w = t64([3.0, 4.0])
    y = (w * w).sum()
    with tinygen.no_grad():
        w.mul_(2.0)
    with pytest.raises(RuntimeError, match="in-place"):
        y.backward()


def test_inplace_change_of_a_saved_output_is_detected():
    x = t64([0.5, 1.0])
    e = x.exp()
    with tinygen.no_grad():
        e.mul_(2.0)
    with pytest.raises(RuntimeError, match="output of Exp"):
        e.sum().backward()


def test_views_share_the_version_counter():
    a = t64([[1.0, 2.0], [3.0, 4.0]], requires_grad=False)
    w = t64([[1.0, 1.0], [1.0, 1.0]])
    y = (a * w).sum()
    view = a.reshape(4)
    view[0] = 10.0
    assert a.numpy()[0, 0] == 10.0
    with pytest.raises(RuntimeError, match="in-place"):
        y.backward()


def test_inplace_refused_on_tensors_that_require_grad():
    x = t64([1.0])
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        x.add_(1.0)
    with pytest.raises(RuntimeError, match="part of a graph"):
        (x * 2).mul_(3.0)
    with tinygen.no_grad():
        x.add_(1.0)
    assert x.item() == 2.0
    with pytest.raises(RuntimeError, match="read-only"):
        tinygen.ones(1).expand(200, 400).mul_(2.0)


def test_grad_function():
    x, y = t64([1.0, 2.0]), t64([3.0])
    out = x * x * y
    gx, gy = tinygen.grad(out, [x, y], grad_outputs=tinygen.tensor(np.array([1.0, 10.0])))
    np.testing.assert_allclose(gx.numpy(), [2 * 1 * 3, 10 * 2 * 2 * 3])
    np.testing.assert_allclose(gy.numpy(), [1 + 10 * 4])
    assert x.grad is None and y.grad is None  # grad() does not accumulate
    z = t64([5.0])
    with pytest.raises(RuntimeError, match="allow_unused"):
        tinygen.grad((x * 2).sum(), [x, z])
    gx, gz = tinygen.grad((x * 2).sum(), [x, z], allow_unused=True)
    assert gz is None
    np.testing.assert_array_equal(gx.numpy(), [2.0, 2.0])


def test_grad_retain_graph_defaults_to_create_graph():
    x = t64([1.5])
    y = (x ** 3).sum()
    (g,) = tinygen.grad(y, x, create_graph=True)
    (h,) = tinygen.grad(g.sum(), x, create_graph=True)   # the graph of y was kept
    (k,) = tinygen.grad(h.sum(), x)
    np.testing.assert_allclose([g.item(), h.item(), k.item()], [3 * 1.5 ** 2, 6 * 1.5, 6.0])
    y2 = (x ** 3).sum()
    tinygen.grad(y2, x)
    with pytest.raises(RuntimeError, match="second time"):
        tinygen.grad(y2, x)


def test_hessian_vector_product_matches_analytic():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 4))
    a = a + a.T
    x = t64(rng.standard_normal(4))
    v = rng.standard_normal(4)
    # f(x) = 0.5 x^T A x + sum(tanh(x)):  H = A + diag(-2 tanh(x) (1 - tanh(x)^2))
    f = 0.5 * (x @ (tinygen.tensor(a) @ x)) + F.tanh(x).sum()
    (g,) = tinygen.grad(f, x, create_graph=True)
    (hv,) = tinygen.grad((g * tinygen.tensor(v)).sum(), x)
    th = np.tanh(x.numpy())
    expected = a @ v + (-2 * th * (1 - th ** 2)) * v
    np.testing.assert_allclose(hv.numpy(), expected, rtol=1e-12)


def test_no_grad_forms():
    x = t64([1.0])
    with tinygen.no_grad():
        assert not (x * 2).requires_grad
        with tinygen.enable_grad():
            assert (x * 2).requires_grad
        with tinygen.set_grad_enabled(True):
            assert (x * 2).requires_grad
    assert (x * 2).requires_grad

    @tinygen.no_grad()
    def f(v):
        return v * 2

    @tinygen.no_grad
    def g(v):
        return v * 2
    assert not f(x).requires_grad and not g(x).requires_grad
    assert tinygen.is_grad_enabled()


def test_requires_grad_propagation():
    a, b = t64([1.0]), t64([1.0], requires_grad=False)
    assert (a + b).requires_grad and not (b + b).requires_grad
    assert (a + b).grad_fn is not None and (b + b).grad_fn is None
    assert not (a > b).requires_grad
    assert not a.detach().requires_grad and np.shares_memory(a.detach().numpy(), a.numpy())


def test_broadcasting_is_undone_in_the_engine():
    a = tinygen.tensor(np.arange(3.0).reshape(3, 1), requires_grad=True)
    b = tinygen.tensor(np.ones((2, 3, 4)), requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.shape == (3, 1) and b.grad.shape == (2, 3, 4)
    np.testing.assert_array_equal(a.grad.numpy(), np.full((3, 1), 8.0))
    np.testing.assert_array_equal(b.grad.numpy(), np.broadcast_to(np.arange(3.0).reshape(3, 1),
                                                                  (2, 3, 4)))


def test_mixed_precision_gradients_keep_each_input_dtype():
    a = tinygen.tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    b = tinygen.tensor(np.array([3.0, 4.0]), requires_grad=True)
    out = a * b
    assert out.dtype == np.float64
    out.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    np.testing.assert_array_equal(a.grad.numpy(), [3.0, 4.0])


def test_gradients_never_alias():
    x, y = t64([1.0, 2.0]), t64([3.0, 4.0])
    (x + y).sum().backward()
    x.grad.numpy()[0] = 100.0
    assert y.grad.numpy()[0] == 1.0
    z = t64([1.0, 1.0])
    seed = tinygen.tensor(np.array([1.0, 2.0]))
    (z + 0.0).backward(seed)
    seed.numpy()[0] = 50.0
    assert z.grad.numpy()[0] == 1.0


def test_diamond_graph_sums_paths():
    x = t64([2.0])
    a = x * 3
    y = a * a + a.exp() + a
    y.backward()
    expected = 3 * (2 * 6.0 + np.exp(6.0) + 1)
    np.testing.assert_allclose(x.grad.numpy(), [expected])


def test_long_chain_has_no_recursion_limit():
    x = t64([1.0])
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0001 ** 5000], rtol=1e-10)


def test_tensors_hash_by_identity():
    a, b = t64([1.0]), t64([1.0])
    d = {a: 1, b: 2}
    assert d[a] == 1 and len({a, b, a}) == 2


@pytest.mark.skipif(torch is None, reason="PyTorch oracle not installed")
def test_composite_expression_matches_torch_first_and_second_order():
    rng = np.random.default_rng(5)
    xa, wa, ba = rng.standard_normal((4, 3)), rng.standard_normal((2, 3)), rng.standard_normal(2)

    def expr(lib, x, w, b, F_):
        h = F_.linear(x, w, b)
        h = lib.tanh(h) * lib.sigmoid(h) + F_.softplus(h) - F_.elu(h) * 0.3
        z = F_.log_softmax(h, 1) + lib.logsumexp(h, 1, keepdim=True) * 0.1
        return (z ** 2).mean() + F_.mse_loss(h, lib.zeros_like(h)) + lib.var(h, 0).sum()

    ours = [tinygen.tensor(v, requires_grad=True) for v in (xa, wa, ba)]
    theirs = [torch.tensor(v, requires_grad=True) for v in (xa, wa, ba)]
    yo = expr(tinygen, *ours, tinygen.functional)
    yt = expr(torch, *theirs, torch.nn.functional)
    np.testing.assert_allclose(yo.item(), yt.item(), rtol=1e-12)
    go = tinygen.grad(yo, ours, create_graph=True)
    gt = torch.autograd.grad(yt, theirs, create_graph=True)
    for a, b in zip(go, gt):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)
    v = [rng.standard_normal(t.shape) for t in ours]
    so = tinygen.grad(sum((g * tinygen.tensor(vv)).sum() for g, vv in zip(go, v)), ours)
    st_ = torch.autograd.grad(sum((g * torch.tensor(vv)).sum() for g, vv in zip(gt, v)), theirs)
    for a, b in zip(so, st_):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-11)
