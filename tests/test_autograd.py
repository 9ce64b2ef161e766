"""Engine semantics: accumulation, graph lifetime, in-place checks, grad(), grad mode, higher order.

Expected values come from closed forms or NumPy, never from the engine itself; PyTorch, when
installed, is an extra oracle for a long random expression (first and second order).
"""
import sys

import numpy as np
import pytest

import tinygen
from tinygen import functional as F
from conftest import torch


def t64(values, requires_grad=True):
    return tinygen.tensor(np.asarray(values, dtype=np.float64), requires_grad=requires_grad)


# -- accumulation and .grad ------------------------------------------------------------------------
def test_leaf_gradients_accumulate_until_zeroed():
    x = t64([1.0, 2.0])
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.detach().numpy(), 3 + 2 * x.detach().numpy())
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3, 3])
    x.grad.zero_()  # PyTorch's old-style zero_grad: zeroing in place works too
    (x * 5).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [5, 5])
    assert x.grad.dtype == x.dtype and x.grad.shape == x.shape
    assert not x.grad.requires_grad and x.grad.grad_fn is None


def test_non_leaf_grad_only_with_retain_grad():
    x = t64([1.0, 2.0])
    h = x * 2
    k = x * 3
    assert k.retain_grad() is None
    (h * k).sum().backward()
    assert h.grad is None and not h.is_leaf and h.grad_fn is not None
    np.testing.assert_array_equal(k.grad.detach().numpy(), 2 * x.detach().numpy())  # d(h k)/dk = h
    np.testing.assert_array_equal(x.grad.detach().numpy(), 12 * x.detach().numpy())  # d(6 x^2)/dx
    # retained gradients accumulate like leaf gradients
    k2 = x * 3
    k2.retain_grad()
    k2.sum().backward(retain_graph=True)
    k2.sum().backward()
    np.testing.assert_array_equal(k2.grad.numpy(), [2.0, 2.0])
    x.retain_grad()  # a no-op on a leaf
    with pytest.raises(RuntimeError, match="does not require grad"):
        t64([1.0], requires_grad=False).retain_grad()


def test_backward_from_a_leaf_and_from_a_one_element_tensor():
    x = t64(2.0)
    x.backward()
    assert x.grad.item() == 1.0
    y = t64([3.0])
    (y * y).backward()  # shape (1,): an implicit seed of ones, as PyTorch
    np.testing.assert_array_equal(y.grad.detach().numpy(), 2 * y.detach().numpy())


def test_backward_errors():
    x = t64([1.0, 2.0])
    y = x * 2
    with pytest.raises(RuntimeError, match=r"only for scalar outputs.*\(2,\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"shape \(3,\).*\(2,\)"):
        y.backward(tinygen.ones(3, dtype=np.float64))
    with pytest.raises(ValueError, match=r"shape \(2, 1\).*\(2,\)"):
        y.backward(np.ones((2, 1)))
    with pytest.raises(RuntimeError, match="does not require grad"):
        t64([1.0], requires_grad=False).sum().backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        with tinygen.no_grad():
            z = x * 2
        z.sum().backward()
    assert x.grad is None  # nothing ran


def test_backward_with_an_explicit_gradient():
    x = t64([1.0, 2.0])
    v = np.array([10.0, -1.0])
    (x * x).backward(gradient=tinygen.tensor(v))  # PyTorch's keyword
    np.testing.assert_array_equal(x.grad.detach().numpy(), 2 * x.detach().numpy() * v)
    x.grad = None
    (x * 3).backward(v)  # a NumPy array is accepted too
    np.testing.assert_array_equal(x.grad.numpy(), 3 * v)
    x.grad = None
    (x * 3).backward(tinygen.tensor(v.astype(np.float32)))  # seed cast to the output's dtype
    assert x.grad.dtype == np.float64


def test_backward_inside_no_grad_still_runs():
    x = t64([1.0, 2.0])
    y = (x * x).sum()
    with tinygen.no_grad():
        y.backward()
    np.testing.assert_array_equal(x.grad.detach().numpy(), 2 * x.detach().numpy())
    assert tinygen.is_grad_enabled()


# -- graph lifetime --------------------------------------------------------------------------------
def test_second_backward_through_freed_graph():
    x = t64([1.0, 2.0])
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()
    x.grad = None
    z = (x.exp() * x).sum()
    z.backward(retain_graph=True)
    expected = (1 + x.detach().numpy()) * np.exp(x.detach().numpy())
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-14)
    z.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * expected, rtol=1e-14)
    with pytest.raises(RuntimeError, match="second time"):
        z.backward()


def test_freed_subgraph_shared_with_a_new_graph():
    x = t64([1.0, 2.0])
    h = x.exp()
    h.sum().backward()
    with pytest.raises(RuntimeError, match="second time"):
        (h * 2).sum().backward()  # reaches h, whose graph was freed


def test_create_graph_keeps_the_graph_unless_told_otherwise():
    x = t64([1.5])
    y = (x ** 3).sum()
    y.backward(create_graph=True)  # retain_graph defaults to create_graph
    assert x.grad.requires_grad and x.grad.grad_fn is not None
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [2 * 3 * 1.5 ** 2])
    x.grad = None
    y2 = (x ** 3).sum()
    y2.backward(create_graph=True, retain_graph=False)
    with pytest.raises(RuntimeError, match="second time"):
        y2.backward()


def test_double_backward_through_dot_grad():
    x = t64([0.3, -1.2])
    (x * x * x).sum().backward(create_graph=True)
    g = x.grad
    np.testing.assert_allclose(g.detach().numpy(), 3 * x.detach().numpy() ** 2)
    (h,) = tinygen.grad(g.sum(), x)
    np.testing.assert_allclose(h.detach().numpy(), 6 * x.detach().numpy())


# -- in-place modification -------------------------------------------------------------------------
def test_inplace_change_of_a_saved_input_is_detected():
    a = t64([1.0, 2.0], requires_grad=False)
    w = t64([3.0, 4.0])
    y = (a * w).sum()
    a.add_(1.0)
    with pytest.raises(RuntimeError,
                       match=r"gradient of Mul \(input 0.*modified by an in-place operation"):
        y.backward()


def test_inplace_change_after_a_retained_backward_is_detected():
    a = t64([1.0, 2.0], requires_grad=False)
    w = t64([3.0, 4.0])
    y = (a * w).sum()
    y.backward(retain_graph=True)
    a.mul_(2.0)
    with pytest.raises(RuntimeError, match="in-place"):
        y.backward()


def test_inplace_change_of_an_unsaved_input_is_fine():
    a = t64([1.0, 2.0], requires_grad=False)
    w = t64([3.0, 4.0])
    y = (a + w).sum()  # Add needs neither input for its gradient (as in PyTorch)
    a.add_(1.0)
    y.backward()
    np.testing.assert_array_equal(w.grad.numpy(), [1.0, 1.0])


def test_clone_before_modifying_avoids_the_error():
    a = t64([1.0, 2.0], requires_grad=False)
    w = t64([3.0, 4.0])
    b = a.clone()
    y = (b * w).sum()
    a.add_(1.0)
    y.backward()
    np.testing.assert_array_equal(w.grad.numpy(), [1.0, 2.0])


def test_optimizer_style_update_after_forward_is_detected():
    w = t64([3.0, 4.0])
    y = (w * w).sum()
    with tinygen.no_grad():
        w.mul_(2.0)
    with pytest.raises(RuntimeError, match=r"Mul \(input [01].*in-place"):
        y.backward()


@pytest.mark.parametrize("op, name", [(F.exp, "Exp"), (F.tanh, "Tanh"), (F.sigmoid, "Sigmoid"),
                                      (F.sqrt, "Sqrt")])
def test_inplace_change_of_a_saved_output_is_detected(op, name):
    x = t64([0.5, 1.0])
    e = op(x)
    with tinygen.no_grad():
        e.mul_(2.0)
    with pytest.raises(RuntimeError, match=f"output of {name}.*modified by an in-place"):
        e.sum().backward()


@pytest.mark.parametrize("make_view", [
    lambda a: a.reshape(4), lambda a: a.T, lambda a: a[0], lambda a: a[:, 1:],
    lambda a: a.detach(), lambda a: a.unsqueeze(0)[0].flatten(),
], ids=["reshape", "T", "int-index", "slice", "detach", "chain"])
def test_views_share_the_version_counter(make_view):
    a = t64([[1.0, 2.0], [3.0, 4.0]], requires_grad=False)
    w = t64([[1.0, 1.0], [1.0, 1.0]])
    y = (a * w).sum()
    view = make_view(a)
    assert np.shares_memory(view.numpy(), a.numpy())
    view.mul_(10.0)
    assert a.numpy().max() >= 10.0  # the base's memory changed
    with pytest.raises(RuntimeError, match="in-place"):
        y.backward()


def test_views_detect_changes_of_the_base():
    a = t64([[1.0, 2.0], [3.0, 4.0]], requires_grad=False)
    w = t64([1.0, 1.0, 1.0, 1.0])
    v = a.reshape(4)
    y = (v * w).sum()  # v is saved
    a[0, 0] = 5.0
    with pytest.raises(RuntimeError, match="in-place"):
        y.backward()


def test_copies_do_not_share_the_version_counter():
    a = t64([[1.0, 2.0], [3.0, 4.0]], requires_grad=False)
    w = t64([[1.0, 1.0], [1.0, 1.0]])
    y = (a * w).sum()
    c = a[[0, 1]]  # advanced indexing: a copy, as in NumPy and PyTorch
    c.mul_(10.0)
    y.backward()
    np.testing.assert_array_equal(w.grad.numpy(), a.numpy())


@pytest.mark.parametrize("size", [10, 300])  # a copy below 65,536 elements, a view above
def test_expand_shares_the_version_counter(size):
    w = t64(np.ones(1), requires_grad=False)
    v = t64(np.ones((size, size)))
    big = w.expand(size, size)
    y = (big * v).sum()
    with tinygen.no_grad():
        w.add_(1.0)
    with pytest.raises(RuntimeError, match="in-place"):
        y.backward()


def test_inplace_refused_on_tensors_that_require_grad():
    x = t64([1.0])
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        x.add_(1.0)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        x[0] = 3.0
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        x += 1
    with pytest.raises(RuntimeError, match="part of a graph"):
        (x * 2).mul_(3.0)
    assert x.item() == 1.0 and x._version == 0  # refused before touching anything
    with tinygen.no_grad():
        x.add_(1.0)
    assert x.item() == 2.0 and x._version == 1
    with pytest.raises(RuntimeError, match="read-only"):
        tinygen.ones(1).expand(200, 400).mul_(2.0)


# -- tinygen.grad ----------------------------------------------------------------------------------
def test_grad_function():
    x, y = t64([1.0, 2.0]), t64([3.0])
    out = x * x * y
    v = np.array([1.0, 10.0])
    gx, gy = tinygen.grad(out, [x, y], grad_outputs=tinygen.tensor(v))
    np.testing.assert_allclose(gx.detach().numpy(), v * 2 * x.detach().numpy() * y.detach().numpy())
    np.testing.assert_allclose(gy.detach().numpy(), [np.sum(v * x.detach().numpy() ** 2)])
    assert x.grad is None and y.grad is None  # grad() does not accumulate
    assert not gx.requires_grad and gx.grad_fn is None


def test_grad_does_not_touch_existing_grads():
    x = t64([1.0, 2.0])
    (x * 7).sum().backward()
    before = x.grad.numpy().copy()
    h = x * 2
    h.retain_grad()
    (g,) = tinygen.grad((h * h).sum(), x)
    np.testing.assert_array_equal(x.grad.numpy(), before)
    assert h.grad is None
    np.testing.assert_array_equal(g.detach().numpy(), 8 * x.detach().numpy())


def test_grad_allow_unused():
    x, z = t64([1.0, 2.0]), t64([5.0])
    with pytest.raises(RuntimeError, match=r"\(1,\).*allow_unused=True"):
        tinygen.grad((x * 2).sum(), [x, z])
    gz, gx = tinygen.grad((x * 2).sum(), [z, x], allow_unused=True)
    assert gz is None
    np.testing.assert_array_equal(gx.numpy(), [2.0, 2.0])


def test_grad_arguments():
    x = t64([1.0, 2.0])
    h = x * 3
    y = (h * h).sum()
    (g,) = tinygen.grad(y, h, retain_graph=True)  # w.r.t. an intermediate tensor
    np.testing.assert_array_equal(g.detach().numpy(), 2 * h.detach().numpy())
    res = tinygen.grad(y, x, retain_graph=True)
    assert isinstance(res, tuple) and len(res) == 1
    np.testing.assert_array_equal(res[0].detach().numpy(), 18 * x.detach().numpy())
    # several outputs: their gradients add up
    y1, y2 = (x * 2).sum(), (x * x).sum()
    (gs,) = tinygen.grad([y1, y2], [x])
    np.testing.assert_array_equal(gs.detach().numpy(), 2 + 2 * x.detach().numpy())
    with pytest.raises(RuntimeError, match="does not require grad"):
        tinygen.grad(y, t64([1.0], requires_grad=False))
    with pytest.raises(TypeError, match="not a Tensor"):
        tinygen.grad(y, [np.ones(2)])
    with pytest.raises(ValueError, match="grad_outputs"):
        tinygen.grad(y, x, grad_outputs=[None, None])
    with pytest.raises(ValueError, match=r"grad_outputs\[0\] has shape \(3,\)"):
        tinygen.grad(x * 2, x, grad_outputs=tinygen.ones(3, dtype=np.float64))
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        tinygen.grad(x * 2, x)


def test_grad_retain_graph_defaults_to_create_graph():
    x = t64([1.5])
    y = (x ** 3).sum()
    (g,) = tinygen.grad(y, x, create_graph=True)
    assert g.requires_grad and g.grad_fn is not None
    (h,) = tinygen.grad(g.sum(), x, create_graph=True)
    (k,) = tinygen.grad(h.sum(), x)
    assert not k.requires_grad
    xv = x.item()
    np.testing.assert_allclose([g.item(), h.item(), k.item()], [3 * xv ** 2, 6 * xv, 6.0])
    (g_again,) = tinygen.grad(y, x)  # the graph of y was kept by create_graph=True
    np.testing.assert_allclose(g_again.item(), 3 * xv ** 2)
    y2 = (x ** 3).sum()
    tinygen.grad(y2, x)
    with pytest.raises(RuntimeError, match="second time"):
        tinygen.grad(y2, x)
    y3 = (x ** 3).sum()
    tinygen.grad(y3, x, retain_graph=True)
    tinygen.grad(y3, x)  # explicitly retained


# -- higher order ----------------------------------------------------------------------------------
def _derivatives(f, x, order):
    """[f'(x), f''(x), ...] by repeated tinygen.grad with create_graph (elementwise f)."""
    out, y = [], f(x)
    for _ in range(order):
        (y,) = tinygen.grad(y.sum(), x, create_graph=True)
        out.append(y.detach().numpy().copy())
    return out


def _sigmoid_derivatives(s):
    return [s * (1 - s), s * (1 - s) * (1 - 2 * s), s * (1 - s) * (1 - 6 * s + 6 * s * s)]


@pytest.mark.parametrize("f, analytic", [
    (lambda x: x ** 3, lambda v: [3 * v ** 2, 6 * v, 6 + 0 * v]),
    (lambda x: x * x.exp(), lambda v: [(1 + v) * np.exp(v), (2 + v) * np.exp(v),
                                       (3 + v) * np.exp(v)]),
    (F.tanh, lambda v: [1 - np.tanh(v) ** 2, -2 * np.tanh(v) * (1 - np.tanh(v) ** 2),
                        (1 - np.tanh(v) ** 2) * (6 * np.tanh(v) ** 2 - 2)]),
    (F.sigmoid, lambda v: _sigmoid_derivatives(1 / (1 + np.exp(-v)))),
    (lambda x: (x * x + 1).log(), lambda v: [2 * v / (v * v + 1),
                                             2 * (1 - v * v) / (v * v + 1) ** 2,
                                             4 * v * (v * v - 3) / (v * v + 1) ** 3]),
], ids=["cube", "x_exp", "tanh", "sigmoid", "log1px2"])
def test_third_derivatives_match_closed_forms(f, analytic):
    v = np.array([-1.3, -0.2, 0.0, 0.7, 2.1])
    x = t64(v)
    for got, want in zip(_derivatives(f, x, 3), analytic(v)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


def test_composition_second_derivative_against_differences_of_the_first():
    # f(x) = exp(tanh(x)) * sqrt(1 + x^2): f'' checked against central differences of f'
    def f(x):
        return F.exp(F.tanh(x)) * F.sqrt(x * x + 1.0)

    v = np.array([-0.8, 0.1, 1.4])
    first, second = _derivatives(f, t64(v), 2)
    h = 1e-5
    d_plus = _derivatives(f, t64(v + h), 1)[0]
    d_minus = _derivatives(f, t64(v - h), 1)[0]
    np.testing.assert_allclose(second, (d_plus - d_minus) / (2 * h), rtol=1e-8, atol=1e-8)
    # and f' against differences of f
    fv = lambda u: np.exp(np.tanh(u)) * np.sqrt(u * u + 1)  # noqa: E731
    np.testing.assert_allclose(first, (fv(v + h) - fv(v - h)) / (2 * h), rtol=1e-8, atol=1e-8)


def test_mixed_second_derivative():
    x, y = t64([0.5, -1.5]), t64([2.0, 0.25])
    f = (x * x * y * y * y).sum()  # d2f/dxdy = 6 x y^2
    (gx,) = tinygen.grad(f, x, create_graph=True)
    (gxy,) = tinygen.grad(gx.sum(), y)
    np.testing.assert_allclose(gxy.detach().numpy(), 6 * x.detach().numpy() * y.detach().numpy() ** 2, rtol=1e-14)


def test_hessian_vector_product_matches_analytic():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 4))
    a = a + a.T
    x = t64(rng.standard_normal(4))
    v = rng.standard_normal(4)
    # f(x) = 0.5 x^T A x + sum(tanh(x)):  H = A + diag(-2 tanh(x) (1 - tanh(x)^2))
    f = 0.5 * (x @ (tinygen.tensor(a) @ x)) + F.tanh(x).sum()
    (g,) = tinygen.grad(f, x, create_graph=True)
    th = np.tanh(x.detach().numpy())
    np.testing.assert_allclose(g.detach().numpy(), a @ x.detach().numpy() + 1 - th ** 2, rtol=1e-12)
    # the full Hessian, row by row, equals the analytic one
    hess = np.stack([tinygen.grad(g[i], x, retain_graph=True)[0].numpy() for i in range(4)])
    np.testing.assert_allclose(hess, a + np.diag(-2 * th * (1 - th ** 2)), rtol=1e-12,
                               atol=1e-14)
    (hv,) = tinygen.grad((g * tinygen.tensor(v)).sum(), x)
    expected = a @ v + (-2 * th * (1 - th ** 2)) * v
    np.testing.assert_allclose(hv.numpy(), expected, rtol=1e-12)


# -- grad mode -------------------------------------------------------------------------------------
def test_no_grad_forms():
    x = t64([1.0])
    with tinygen.no_grad():
        assert not tinygen.is_grad_enabled()
        assert not (x * 2).requires_grad
        with tinygen.enable_grad():
            assert (x * 2).requires_grad
            with tinygen.no_grad():
                assert not (x * 2).requires_grad
            assert (x * 2).requires_grad
        with tinygen.set_grad_enabled(True):
            assert (x * 2).requires_grad
        assert not (x * 2).requires_grad
    assert (x * 2).requires_grad
    with tinygen.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert tinygen.is_grad_enabled()


def test_grad_mode_decorators():
    x = t64([1.0])

    @tinygen.no_grad()
    def f(v):
        """doc of f"""
        return v * 2

    @tinygen.no_grad
    def g(v):
        return v * 2

    @tinygen.enable_grad()
    def h(v):
        return v * 2

    @tinygen.enable_grad
    def k(v):
        return v * 2

    @tinygen.set_grad_enabled(False)
    def m(v):
        return v * 2

    assert tinygen.is_grad_enabled()  # decorating switched nothing
    assert not f(x).requires_grad and not g(x).requires_grad and not m(x).requires_grad
    assert f.__name__ == "f" and f.__doc__ == "doc of f" and g.__name__ == "g"
    np.testing.assert_array_equal(f(x).numpy(), [2.0])
    with tinygen.no_grad():
        assert h(x).requires_grad and k(x).requires_grad
        assert not tinygen.is_grad_enabled()
    assert tinygen.is_grad_enabled()

    @tinygen.no_grad()
    def recurse(n):  # one decorator instance, re-entered
        return tinygen.is_grad_enabled() if n == 0 else recurse(n - 1)

    assert recurse(3) is False and tinygen.is_grad_enabled()


def test_set_grad_enabled_as_a_function_call():
    try:
        tinygen.set_grad_enabled(False)  # PyTorch: switches at once, no `with` needed
        assert not tinygen.is_grad_enabled()
        assert not (t64([1.0]) * 2).requires_grad
        tinygen.set_grad_enabled(True)
        assert tinygen.is_grad_enabled()
        with tinygen.no_grad():
            tinygen.set_grad_enabled(True)
            assert tinygen.is_grad_enabled()
        assert tinygen.is_grad_enabled()
    finally:
        tinygen.set_grad_enabled(True)


def test_grad_mode_restored_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with tinygen.no_grad():
            1 / 0
    assert tinygen.is_grad_enabled()

    @tinygen.no_grad
    def boom():
        raise KeyError("x")

    with pytest.raises(KeyError):
        boom()
    assert tinygen.is_grad_enabled()
    x = t64([1.0])

    class Exploding(tinygen.Function):
        def forward(self, a):
            return a * 1.0

        def backward(self, g):
            assert not tinygen.is_grad_enabled()  # backward runs without recording
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        Exploding.apply(x).sum().backward()
    assert tinygen.is_grad_enabled()


@pytest.mark.parametrize("op", [
    lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a / (b * b + 1.0),
    lambda a, b: (a @ b.T).exp(), lambda a, b: tinygen.cat([a, b], 0)[1:].sum(1),
    lambda a, b: tinygen.where(a > b, a, b).reshape(-1), lambda a, b: tinygen.maximum(a, b).T,
    lambda a, b: (a - b).to(np.float32).abs().mean(0),
], ids=["add", "mul", "div", "matmul-exp", "cat-slice-sum", "where-reshape", "maximum-T",
        "cast-abs-mean"])
@pytest.mark.parametrize("grad_mode", [True, False])
@pytest.mark.parametrize("ra, rb", [(False, False), (True, False), (False, True), (True, True)])
def test_requires_grad_propagation(op, grad_mode, ra, rb):
    rng = np.random.default_rng(1)
    a = t64(rng.standard_normal((2, 3)), requires_grad=ra)
    b = t64(rng.standard_normal((2, 3)), requires_grad=rb)
    with tinygen.set_grad_enabled(grad_mode):
        out = op(a, b)
    expected = (ra or rb) and grad_mode
    assert out.requires_grad == expected
    assert out.is_leaf == (not expected) and (out.grad_fn is not None) == expected
    assert not (a > b).requires_grad and not (a == b).requires_grad


def test_non_differentiable_results_do_not_require_grad():
    x = t64([1.0, -2.0])
    for r in (x > 0, x.argmax(), x.isfinite(), x.long(), ~(x > 0)):
        assert not r.requires_grad and r.grad_fn is None


# -- the engine ------------------------------------------------------------------------------------
@pytest.mark.parametrize("a_shape", [(3, 1), (4,), (1, 3, 1), (), (2, 1, 4)])
def test_broadcasting_is_undone_in_the_engine(a_shape):
    rng = np.random.default_rng(2)
    av, bv = rng.standard_normal(a_shape), rng.standard_normal((2, 3, 4))
    c = rng.standard_normal((2, 3, 4))
    a, b = t64(av), t64(bv)
    ((a + b) * tinygen.tensor(c) + a * b).sum().backward()
    assert a.grad.shape == a_shape and b.grad.shape == (2, 3, 4)

    def reduce_to(g, shape):
        lead = g.ndim - len(shape)
        g = g.sum(axis=tuple(range(lead)))
        return g.sum(axis=tuple(i for i, s in enumerate(shape) if s == 1), keepdims=True) \
            .reshape(shape)

    np.testing.assert_allclose(a.grad.numpy(), reduce_to(c + bv, a_shape), rtol=1e-13)
    np.testing.assert_allclose(b.grad.numpy(), c + np.broadcast_to(av, (2, 3, 4)), rtol=1e-13)


def test_engine_fixes_gradients_of_custom_functions():
    class Twice(tinygen.Function):
        """Returns the output-shaped gradient for a broadcast input, in the wrong dtype."""

        def forward(self, a, b):
            return a + 2 * b

        def backward(self, g):
            return g.to(np.float64), (2.0 * g).to(np.float64)

    a = tinygen.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    b = tinygen.tensor(np.ones((1, 3), np.float32), requires_grad=True)
    Twice.apply(a, b).sum().backward()
    assert a.grad.shape == (2, 3) and b.grad.shape == (1, 3)
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float32
    np.testing.assert_array_equal(b.grad.numpy(), np.full((1, 3), 4.0))
    np.testing.assert_array_equal(a.grad.numpy(), np.ones((2, 3)))


@pytest.mark.parametrize("bad, err, pattern", [
    (lambda g: g.reshape(3, 2), RuntimeError, r"Bad.backward returned a gradient of shape \(3, 2\)"
                                              r" for input 0 of shape \(2, 3\)"),
    (lambda g: g.numpy(), TypeError, "Bad.backward returned ndarray"),
    (lambda g: (g, g), RuntimeError, "returned 2 gradients for 1 inputs"),
], ids=["shape", "type", "count"])
def test_engine_rejects_bad_gradients_of_custom_functions(bad, err, pattern):
    class Bad(tinygen.Function):
        def forward(self, x):
            return x * 2

        def backward(self, g):
            return bad(g)

    x = t64(np.ones((2, 3)))
    with pytest.raises(err, match=pattern):
        Bad.apply(x).sum().backward()


def test_gradients_never_alias():
    # two leaves of x + y get separate arrays
    x, y = t64([1.0, 2.0]), t64([3.0, 4.0])
    (x + y).sum().backward()
    assert not np.shares_memory(x.grad.numpy(), y.grad.numpy())
    x.grad.numpy()[0] = 100.0
    assert y.grad.numpy()[0] == 1.0
    # ... also on a second, accumulating backward
    (x + y).sum().backward()
    assert not np.shares_memory(x.grad.numpy(), y.grad.numpy())
    # the seed given to backward() is not stored as .grad
    z = t64([1.0, 1.0])
    seed = tinygen.tensor(np.array([1.0, 2.0]))
    (z + 0.0).backward(seed)
    assert not np.shares_memory(z.grad.numpy(), seed.numpy())
    seed.numpy()[0] = 50.0
    assert z.grad.numpy()[0] == 1.0
    # a view of the seed (reshape's backward) is not stored either
    m = t64([[1.0, 2.0], [3.0, 4.0]])
    s2 = np.arange(4.0)
    m.reshape(4).backward(s2)
    assert not np.shares_memory(m.grad.numpy(), s2)
    # a retained non-leaf gradient and the leaf gradient below it
    w = t64([1.0, 2.0])
    h = w + 0.0
    h.retain_grad()
    h.sum().backward()
    assert not np.shares_memory(h.grad.numpy(), w.grad.numpy())
    # nor with a leaf's data
    assert not np.shares_memory(w.grad.detach().numpy(), w.detach().numpy())


def test_gradients_never_alias_with_create_graph():
    x, y = t64([1.0, 2.0]), t64([3.0, 4.0])
    (x + y).sum().backward(create_graph=True)
    assert x.grad is not y.grad and not np.shares_memory(x.grad.numpy(), y.grad.numpy())
    z = t64([1.0, 1.0])
    seed = tinygen.tensor(np.array([1.0, 2.0]))
    (z + 0.0).backward(seed, create_graph=True)
    assert z.grad is not seed and not np.shares_memory(z.grad.numpy(), seed.numpy())
    with tinygen.no_grad():
        x.grad.zero_()
        z.grad.zero_()
    np.testing.assert_array_equal(y.grad.numpy(), [1.0, 1.0])
    np.testing.assert_array_equal(seed.numpy(), [1.0, 2.0])
    # the copies stay differentiable: d/dx of sum(x.grad * x) for x.grad = 2x (from x*x)
    u = t64([0.5, -1.0])
    (u * u).sum().backward(create_graph=True)
    (gg,) = tinygen.grad((u.grad * u).sum(), u)
    np.testing.assert_allclose(gg.detach().numpy(), 4 * u.detach().numpy())


def test_diamond_graph_sums_paths():
    x = t64([2.0])
    a = x * 3
    y = a * a + a.exp() + a
    y.backward()
    av = 3 * x.item()
    np.testing.assert_allclose(x.grad.numpy(), [3 * (2 * av + np.exp(av) + 1)], rtol=1e-14)


def test_tensor_reused_at_several_depths():
    xv = np.array([0.5, -2.0, 3.0])
    x = t64(xv)
    h1 = x * 2
    h2 = h1 + x           # 3x
    h3 = h2 * h1          # 6x^2
    y = h3.sum() + x.sum() + (x * x).sum()  # 7 x^2 + x
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 14 * xv + 1, rtol=1e-14)


def _frame_depth():
    f, n = sys._getframe(), 0
    while f is not None:
        f, n = f.f_back, n + 1
    return n


def test_long_chain_has_no_recursion_limit():
    x = t64([0.3])
    y = x
    for i in range(5000):
        y = y * 1.0001 if i % 3 else (y + 0.001).reshape(1, 1)[0]  # views in the chain
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(_frame_depth() + 200)  # any recursion over the chain would fail
    try:
        y.backward()
    finally:
        sys.setrecursionlimit(limit)
    n_mul = sum(1 for i in range(5000) if i % 3)
    np.testing.assert_allclose(x.grad.numpy(), [1.0001 ** n_mul], rtol=1e-10)


def test_long_chain_second_order_and_teardown():
    x = t64([0.7])
    y = x
    for _ in range(2000):
        y = y * 1.0005
    y = y * y  # c^2 x^2 with c = 1.0005^2000
    (g,) = tinygen.grad(y.sum(), x, create_graph=True)
    (h,) = tinygen.grad(g.sum(), x)
    c = 1.0005 ** 2000
    np.testing.assert_allclose([g.item(), h.item()], [2 * c * c * 0.7, 2 * c * c], rtol=1e-9)
    z = x
    for _ in range(10000):
        z = z * 1.0
    del z  # dropping a deep graph that never ran backward must not overflow the stack


def test_tensors_hash_by_identity():
    a, b = t64([1.0]), t64([1.0])
    d = {a: 1, b: 2}
    assert d[a] == 1 and d[b] == 2 and len({a, b, a}) == 2
    assert a in {a} and b not in {a}  # no elementwise == involved
    state = {p: np.zeros(1) for p in (a, b)}  # per-parameter state, as optimizers keep it
    assert set(state) == {a, b}


# -- PyTorch as an oracle --------------------------------------------------------------------------
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
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)
    v = [rng.standard_normal(t.shape) for t in ours]
    so = tinygen.grad(sum((g * tinygen.tensor(vv)).sum() for g, vv in zip(go, v)), ours)
    st_ = torch.autograd.grad(sum((g * torch.tensor(vv)).sum() for g, vv in zip(gt, v)), theirs)
    for a, b in zip(so, st_):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-11)


def _random_program(lib, F_, p, q, r, pad):
    """A long expression mixing broadcasting, views, indexing, joins and many elementwise ops."""
    h = p @ q + r                                            # (4,5) + (5,): broadcast add
    h = lib.tanh(h) * 0.7 + lib.sigmoid(h * r) - h.abs() * 0.1
    h = lib.where(h > 0.1, h * h, h.exp() - 1.0)
    h = lib.maximum(h, r * 0.05) + lib.minimum(h, -r * 0.02)
    s = h.reshape(2, 10).permute(1, 0).flip([0])            # views and a copy
    s = lib.cat([s[:3] * 2.0, s[[0, 2, 2, 7]], (s[5:] ** 2 + 1).sqrt()], 0)
    s = s / (1.5 + s.abs()) + (s * s + 1.0).log() + lib.log1p(s.abs()) * 0.3
    s = s.clamp(-0.9, 1.2) * 0.5 + s * 0.5
    t = lib.stack([s.sum(0), s.amax(0), s.mean(0)], 1)      # reductions, (2, 3)
    t = t.softmax(1) * t.logsumexp(1, keepdim=True) + t.var(0, keepdim=True)
    u = F_.pad(t.unsqueeze(0), pad)[..., 1:4] + (t.abs() + 0.5) ** q[0, :3].abs().unsqueeze(0)
    return (u * u).sum() + (p ** 3).mean() - (p.exp() @ q.tanh()).std()


@pytest.mark.skipif(torch is None, reason="PyTorch oracle not installed")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_program_matches_torch_first_and_second_order(seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((4, 3)), rng.standard_normal((3, 5)) * 0.7,
              rng.standard_normal(5) * 0.5]
    pad = (1, 2)
    ours = [tinygen.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    yo = _random_program(tinygen, tinygen.functional, *ours, pad)
    yt = _random_program(torch, torch.nn.functional, *theirs, pad)
    np.testing.assert_allclose(yo.item(), yt.item(), rtol=1e-12)
    go = tinygen.grad(yo, ours, create_graph=True)
    gt = torch.autograd.grad(yt, theirs, create_graph=True)
    for a, b in zip(go, gt):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)
    vs = [rng.standard_normal(a.shape) for a in arrays]
    so = tinygen.grad(sum((g * tinygen.tensor(v)).sum() for g, v in zip(go, vs)), ours)
    st_ = torch.autograd.grad(sum((g * torch.tensor(v)).sum() for g, v in zip(gt, vs)), theirs)
    for a, b in zip(so, st_):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-11)
    # and .backward() accumulates the same first-order gradients into .grad
    yo2 = _random_program(tinygen, tinygen.functional, *ours, pad)
    yo2.backward()
    for p, b in zip(ours, gt):
        assert p.grad.shape == p.shape
        np.testing.assert_allclose(p.grad.numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)
