"""The harness itself: every check of :func:`harness.check_op` fails on an op built to break it,
and the strategies keep their promises."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygen
from tinygen.autograd import Function
from tinygen.tensor import Tensor
from harness import (arrays, assert_close, axes, broadcastable_shapes, check_op,
                     distinct_arrays, grid_arrays, numeric_grad, numeric_jacobian, shapes, torch)

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch oracle not installed")
X = np.linspace(-1.0, 1.5, 6).reshape(2, 3) + 0.0123  # no value exact in float16


class Square(Function):
    """x**2 with a configurable (possibly wrong) backward."""

    mode = "right"

    def forward(self, x):
        return x * x

    def backward(self, g):
        x = self.saved_input(0)
        if self.mode == "scaled":  # first order off by 1e-5 relative
            return g * (2.00002 * x)
        if self.mode == "one_entry":  # one entry of the Jacobian off by 3e-6 relative
            scale = np.ones(x.shape)
            scale.reshape(-1)[0] += 3e-6
            return g * (2.0 * x) * Tensor._wrap(scale.astype(x.dtype)).to(x.device)
        if self.mode == "detached":  # right values, but the backward is not differentiable
            return g * Tensor._wrap(2.0 * x.array)
        if self.mode == "mutating":
            out = g * (2.0 * x)
            x.array[...] = 0.0
            return out
        if self.mode == "float32_bug":  # right in float64, 1% off in float32
            return g * ((2.02 if x.dtype == np.float32 else 2.0) * x)
        return g * (2.0 * x)


def square(mode):
    return type(f"Square_{mode}", (Square,), {"mode": mode}).apply


def test_a_correct_op_passes_and_returns_the_output():
    y = check_op(square("right"), [X], reference=lambda x: x ** 2,
                 torch_fn=lambda x: x * x)
    np.testing.assert_array_equal(y, X ** 2)


def test_forward_against_the_reference():
    with pytest.raises(AssertionError, match="forward vs float64 reference"):
        check_op(square("right"), [X], reference=lambda x: x ** 2 * (1 + 1e-9))
    with pytest.raises(AssertionError, match="reference shape"):
        check_op(square("right"), [X], reference=lambda x: (x ** 2).T)


def test_output_type_and_dtype():
    with pytest.raises(AssertionError, match="not a Tensor"):
        check_op(lambda x: x.array * 2, [X])
    with pytest.raises(AssertionError, match="gave a float32 output"):
        check_op(lambda x: (x * 2).to(np.float32), [X])
    with pytest.raises(AssertionError, match="does not require grad"):
        check_op(lambda x: Tensor._wrap(x.array * 2), [X])


def test_first_order_directional_derivative():
    with pytest.raises(AssertionError, match="first-order directional derivative"):
        check_op(square("scaled"), [X], second_order=False)


def test_full_jacobian_catches_a_single_wrong_entry():
    x = np.linspace(0.5, 2.0, 64).reshape(4, 16)
    with pytest.raises(AssertionError, match="Jacobian vs central differences"):
        check_op(square("one_entry"), [x], second_order=False, float32=False,
                 full_jacobian_max=64)
    # too large for the element-by-element check: only the directional one, which this
    # 3e-6 error in one of 64 entries slips through -- hence the full Jacobian on small inputs
    check_op(square("one_entry"), [x], second_order=False, float32=False, full_jacobian_max=0)


def test_gradient_vs_central_differences_when_the_output_is_large():
    x = np.linspace(0.5, 2.0, 8)

    def outer(v):  # 64 outputs from 8 inputs, one of the 8 gradient entries wrong
        return square("one_entry")(v).reshape(8, 1) * tinygen.tensor(np.ones((1, 9)), device=v.device)
    with pytest.raises(AssertionError, match="gradient vs central differences"):
        check_op(outer, [x], second_order=False, float32=False, full_jacobian_max=8)


def test_second_order():
    with pytest.raises(AssertionError, match="second-order directional derivative"):
        check_op(square("detached"), [X])
    check_op(square("detached"), [X], second_order=False)  # first order is right
    with pytest.raises(AssertionError, match="piecewise-linear op is not zero"):
        check_op(square("right"), [X], second_order="zero")
    with pytest.raises(ValueError, match="second_order must be"):
        check_op(square("right"), [X], second_order="yes")


def test_zero_second_order_passes_for_piecewise_linear_ops():
    check_op(lambda x: tinygen.functional.relu(x) * 3.0, [X + 0.05], second_order="zero")


def test_mutation_is_detected_in_forward_and_backward():
    def mutate_forward(x, t):
        t.array[...] += 1.0  # t does not require grad: nothing else stops this
        return x * 2.0
    with pytest.raises(AssertionError, match="the forward mutated input 1"):
        check_op(mutate_forward, [X, X], wrt=[0])
    with pytest.raises(AssertionError, match="the backward mutated input 0"):
        check_op(square("mutating"), [X])


def test_gradient_dtype_and_shape_checks(monkeypatch):
    real_grad = tinygen.grad

    def wrong_dtype(*args, **kwargs):
        return tuple(None if g is None else g.detach().to(np.float32)
                     for g in real_grad(*args, **kwargs))
    monkeypatch.setattr(tinygen, "grad", wrong_dtype)
    with pytest.raises(AssertionError, match="dtype float32"):
        check_op(square("right"), [X])

    def wrong_shape(*args, **kwargs):
        return tuple(None if g is None else g.detach().reshape(-1)
                     for g in real_grad(*args, **kwargs))
    monkeypatch.setattr(tinygen, "grad", wrong_shape)
    with pytest.raises(AssertionError, match="has shape"):
        check_op(square("right"), [X])


@needs_torch
def test_torch_oracle():
    with pytest.raises(AssertionError, match=r"forward vs torch \(float64\)"):
        check_op(square("right"), [X], torch_fn=lambda x: x * x * (1 + 1e-8))
    with pytest.raises(AssertionError, match=r"gradient of input 0 vs torch \(float64\)"):
        check_op(square("right"), [X], torch_fn=lambda x: x * x + 1e-6 * (x - x.detach()))
    with pytest.raises(AssertionError, match="shape"):
        check_op(square("right"), [X], torch_fn=lambda x: (x * x).T)
    # right value and first derivative, but torch's double backward sees a constant gradient
    with pytest.raises(AssertionError, match="second-order gradient of input 0 vs torch"):
        check_op(square("right"), [X], torch_fn=lambda x: 2 * x * x.detach() - x.detach() ** 2)
    check_op(square("right"), [X], torch_second_order=False,
             torch_fn=lambda x: 2 * x * x.detach() - x.detach() ** 2)


@needs_torch
def test_torch_oracle_float32():
    def f16(x):  # fine in float64, float16 precision in float32
        y = x * x
        return y if y.dtype == np.float64 else y.to(np.float16).to(np.float32)
    with pytest.raises(AssertionError, match=r"forward vs torch \(float32\)"):
        check_op(f16, [X], torch_fn=lambda x: x * x)


def test_float32_forward_and_gradient():
    def f16(x):
        y = x * x
        return y if y.dtype == np.float64 else y.to(np.float16).to(np.float32)
    with pytest.raises(AssertionError, match="float32 forward vs float64"):
        check_op(f16, [X])
    with pytest.raises(AssertionError, match="float32 gradient of input 0 vs float64"):
        check_op(square("float32_bug"), [X])
    check_op(square("float32_bug"), [X], float32=False)


def test_wrt_selects_the_differentiated_inputs():
    seen = []

    def fn(a, b):
        seen.append((a.requires_grad, b.requires_grad))
        return a * b
    check_op(fn, [X, X + 1], wrt=[1])
    assert (False, True) in seen and not any(a for a, _ in seen)


def test_numeric_helpers_against_known_derivatives():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    jac = numeric_jacobian(lambda x, y: x @ y, [a, b], [0, 1])
    assert jac.shape == (8, 6 + 12)
    # d(ab)_ij / d a_ik = b_kj
    expected_a = np.einsum("il,kj->ijlk", np.eye(2), b).reshape(8, 6)
    np.testing.assert_allclose(jac[:, :6], expected_a, atol=1e-8)
    u = rng.standard_normal((2, 4))
    np.testing.assert_allclose(numeric_grad(lambda x, y: x @ y, [a, b], u, 1), a.T @ u,
                               atol=1e-8)


def test_assert_close_treats_nan_and_inf_positions():
    assert_close([1.0, np.nan, np.inf], [1.0, np.nan, np.inf], 0, 0, "same")
    with pytest.raises(AssertionError, match="NaN at different places"):
        assert_close([np.nan, 1.0], [1.0, 1.0], 1, 1, "nan")
    with pytest.raises(AssertionError, match="infinities differ"):
        assert_close([np.inf], [-np.inf], 1, 1, "inf")
    with pytest.raises(AssertionError, match="max error"):
        assert_close([1.0], [1.1], 1e-3, 0, "value")


# -- the strategies --------------------------------------------------------------------------------
@given(data=st.data())
def test_strategies_keep_their_promises(data):
    shape = data.draw(shapes())
    assert len(shape) <= 3 and all(1 <= s <= 4 for s in shape)
    a = data.draw(arrays(shape, away_from=(0.0, 1.0), gap=0.1))
    assert a.dtype == np.float64 and a.shape == shape
    assert np.all((np.abs(a) >= 0.1) & (np.abs(a - 1.0) >= 0.1))
    d = data.draw(distinct_arrays(shape))
    assert len(np.unique(d)) == d.size
    s1, s2 = data.draw(broadcastable_shapes(2))
    np.broadcast_shapes(s1, s2)
    g1, g2 = data.draw(grid_arrays(s1, offset=0.1)), data.draw(grid_arrays(s2))
    assert np.min(np.abs(np.subtract(g1, g2)), initial=1.0) >= 0.1 - 1e-12
    ax = data.draw(axes(len(shape)))
    np.sum(a, axis=ax)  # a valid NumPy axis argument
    if isinstance(ax, tuple):
        assert len({x % len(shape) for x in ax}) == len(ax)
