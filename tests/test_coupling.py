"""The fused affine coupling op (tinygen.functional.coupling, kernels/cpu/coupling.py): the
forward, the log-det and the inverse against a float64 NumPy reference, gradients (first order
through the fused backward kernel, second order through the create_graph path) against central
differences with hypothesis-drawn sizes and masks, PyTorch as the oracle of the composed
formula, the composed version, the kernels called directly, and bad input."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import tinygen
from tinygen import functional as F
from tinygen.kernels.cpu import coupling as kernels
from harness import arrays, check_op, torch

T = torch


@st.composite
def coupling_case(draw, max_dims=3):
    """(x, s, t, mask): x, s, t (N, ...) float64 and a 0/1 mask broadcastable to one sample
    (some of the sample's axes, taken from the right, possibly 1)."""
    n = draw(st.integers(1, 3))
    sample = draw(hnp.array_shapes(min_dims=1, max_dims=max_dims, min_side=1, max_side=4))
    keep = draw(st.integers(0, len(sample)))                # the mask may have fewer axes
    mshape = tuple(1 if draw(st.booleans()) else side for side in sample[len(sample) - keep:])
    mask = draw(hnp.arrays(np.float64, mshape, elements=st.sampled_from([0.0, 1.0])))
    shape = (n,) + sample
    x = draw(arrays(shape))
    s = draw(arrays(shape, low=-2.0, high=2.0))
    t = draw(arrays(shape))
    return x, s, t, mask


def reference(x, s, t, mask):
    """The lecture's formula in float64: y = b x + (1 - b)(x e^s + t), logdet = sum (1 - b) s."""
    b = np.broadcast_to(mask, x.shape[1:])
    y = b * x + (1 - b) * (x * np.exp(s) + t)
    return y, ((1 - b) * s).reshape(len(x), -1).sum(axis=1)


def packed(y, logdet):
    """(y, logdet) as one (N, D + 1) output, so that one check covers both."""
    return F.cat([y.reshape(y.shape[0], -1), logdet.reshape(-1, 1)], dim=1)


def packed_np(y, logdet):
    return np.concatenate([y.reshape(len(y), -1), logdet.reshape(-1, 1)], axis=1)


def torch_coupling(mask):
    """The composed formula in PyTorch (the oracle)."""
    def fn(x, s, t):
        b = T.tensor(np.broadcast_to(mask, tuple(x.shape[1:])).copy(), dtype=x.dtype)
        y = b * x + (1 - b) * (x * s.exp() + t)
        ld = ((1 - b) * s).reshape(x.shape[0], -1).sum(1)
        return T.cat([y.reshape(x.shape[0], -1), ld.reshape(-1, 1)], 1)
    return fn


@given(case=coupling_case())
def test_affine_coupling_against_reference_finite_differences_and_torch(case):
    x, s, t, mask = case
    check_op(lambda a, b, c: packed(*F.affine_coupling(a, b, c, mask)), [x, s, t],
             reference=lambda a, b, c: packed_np(*reference(a, b, c, mask)),
             torch_fn=torch_coupling(mask) if torch is not None else None)


@given(case=coupling_case())
def test_affine_coupling_inverse_against_reference_finite_differences_and_torch(case):
    x, s, t, mask = case
    b = np.broadcast_to(mask, x.shape[1:])

    def ref(y, s_, t_):
        return b * y + (1 - b) * (y - t_) * np.exp(-s_)

    def tfn(y, s_, t_):
        bt = T.tensor(b.copy(), dtype=y.dtype)
        return bt * y + (1 - bt) * (y - t_) * (-s_).exp()

    check_op(lambda y, s_, t_: F.affine_coupling_inverse(y, s_, t_, mask), [x, s, t],
             reference=ref, torch_fn=tfn if torch is not None else None)


@given(case=coupling_case())
def test_inverse_undoes_the_coupling_in_float64(case):
    x, s, t, mask = case
    xs, ss, ts = (tinygen.tensor(a) for a in (x, s, t))
    y, _ = F.affine_coupling(xs, ss, ts, mask)
    back = F.affine_coupling_inverse(y, ss, ts, mask)
    assert np.max(np.abs(back.numpy() - x), initial=0.0) <= 1e-10
    b = np.broadcast_to(mask, x.shape[1:])
    np.testing.assert_array_equal(y.numpy() * b, x * b)     # kept coordinates pass unchanged


@settings(max_examples=10)
@given(case=coupling_case(), dtype=st.sampled_from([np.float32, np.float64]))
def test_fused_equals_composed_forward_and_backward(case, dtype):
    x, s, t, mask = (a.astype(dtype) for a in case)
    u = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    w = np.random.default_rng(2).standard_normal(len(x)).astype(dtype)
    results = []
    for op in (F.affine_coupling, F.affine_coupling_composed):
        ts = [tinygen.tensor(a, requires_grad=True) for a in (x, s, t)]
        y, ld = op(*ts, mask)
        assert y.dtype == dtype and ld.dtype == dtype and ld.shape == (len(x),)
        loss = (y * tinygen.tensor(u)).sum() + (ld * tinygen.tensor(w)).sum()
        results.append([y.detach().numpy(), ld.detach().numpy()] + [g.detach().numpy() for g in tinygen.grad(loss, ts)])
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_without_graph_the_op_gives_the_same_values_and_records_nothing():
    rng = np.random.default_rng(0)
    x, s, t = (rng.standard_normal((4, 3, 2)) for _ in range(3))
    mask = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y_ref, ld_ref = reference(x, s, t, mask)
    ts = [tinygen.tensor(a, requires_grad=True) for a in (x, s, t)]
    with tinygen.no_grad():
        y, ld = F.affine_coupling(*ts, mask)
    assert not y.requires_grad and not ld.requires_grad
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(ld.numpy(), ld_ref, rtol=1e-14, atol=1e-14)
    y, ld = F.affine_coupling(*(tinygen.tensor(a) for a in (x, s, t)), tinygen.tensor(mask))
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-14, atol=1e-14)


def test_kernels_directly_against_a_loop():
    """The CPU seam API of the coupling family on (N, D) arrays against a plain Python loop,
    both dtypes."""
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        x, s, t, g = (rng.standard_normal((3, 5)).astype(dtype) for _ in range(4))
        b = np.array([1, 0, 0, 1, 0], dtype=dtype)
        y, ld, exp_s = kernels.coupling_forward(x, s, t, b)
        gx, gs, gt = kernels.coupling_backward(g, x, exp_s, b)
        back = kernels.coupling_inverse(y, s, t, b)
        tol = 1e-6 if dtype == np.float32 else 1e-14
        for i in range(3):
            acc = 0.0
            for j in range(5):
                if b[j]:
                    expect = (x[i, j], g[i, j], 0.0, 0.0)
                else:
                    e = np.exp(float(s[i, j]))
                    expect = (x[i, j] * e + t[i, j], g[i, j] * e, g[i, j] * x[i, j] * e, g[i, j])
                    acc += float(s[i, j])
                for got, want in zip((y[i, j], gx[i, j], gs[i, j], gt[i, j]), expect):
                    assert abs(float(got) - float(want)) <= tol * (1 + abs(float(want)))
            assert abs(float(ld[i]) - acc) <= tol * (1 + abs(acc))
        np.testing.assert_allclose(back, x, rtol=10 * tol, atol=10 * tol)
        gl = rng.standard_normal(3).astype(dtype)
        outer = kernels.coupling_logdet_backward(gl, b, x.shape)
        np.testing.assert_array_equal(outer, gl[:, None] * (1 - b)[None, :])
        # y = x exactly where b = 1, even where exp(s) overflows there
        s_big = s.copy()
        s_big[:, 0] = 1e4
        with np.errstate(over="ignore"):
            y2, _, _ = kernels.coupling_forward(x, s_big, t, b)
        np.testing.assert_array_equal(y2[:, 0], x[:, 0])
        # the same on (N, C, H, W) arrays: outputs keep the inputs' shape
        x4 = x.reshape(3, 5, 1, 1)
        y4, ld4, _ = kernels.coupling_forward(x4, s.reshape(x4.shape), t.reshape(x4.shape), b)
        assert y4.shape == x4.shape and ld4.shape == (3,)
        np.testing.assert_array_equal(y4.reshape(3, 5), y)


def test_second_order_through_create_graph():
    """d^2/dx ds of the coupling: the create_graph backward against the closed form
    d/ds (g (1-b) e^s) = g (1-b) e^s for the x-gradient."""
    rng = np.random.default_rng(4)
    x, s, t = (rng.standard_normal((2, 4)) for _ in range(3))
    mask = np.array([1.0, 0.0, 1.0, 0.0])
    xs, ss, ts = (tinygen.tensor(a, requires_grad=True) for a in (x, s, t))
    y, ld = F.affine_coupling(xs, ss, ts, mask)
    (gx,) = tinygen.grad(y.sum() + ld.sum(), [xs], create_graph=True)
    np.testing.assert_allclose(gx.detach().numpy(), mask + (1 - mask) * np.exp(s), rtol=1e-14)
    (gss,) = tinygen.grad(gx.sum(), [ss])
    np.testing.assert_allclose(gss.numpy(), (1 - mask) * np.exp(s), rtol=1e-14)


def test_bad_input_raises_clear_value_errors():
    x = tinygen.tensor(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"s must have x's shape \(2, 4\), got \(2, 3\)"):
        F.affine_coupling(x, tinygen.tensor(np.zeros((2, 3))), x, np.ones(4))
    with pytest.raises(ValueError, match=r"t must have x's shape"):
        F.affine_coupling_inverse(x, x, tinygen.tensor(np.zeros((4, 2))), np.ones(4))
    with pytest.raises(ValueError, match="only 0 and 1"):
        F.affine_coupling(x, x, x, np.full(4, 0.5))
    with pytest.raises(ValueError, match=r"mask of shape \(3,\) does not broadcast .* \(4,\)"):
        F.affine_coupling(x, x, x, np.ones(3))
    with pytest.raises(ValueError, match=r"\(1, 1, 4\) does not broadcast"):
        F.affine_coupling(x, x, x, np.ones((1, 1, 4)))
    with pytest.raises(ValueError, match=r"at least 2 dimensions, got shape \(4,\)"):
        v = tinygen.tensor(np.zeros(4))
        F.affine_coupling(v, v, v, np.ones(4))
    with pytest.raises(ValueError, match="dtype float32 but x has float64"):
        F.affine_coupling(x, tinygen.tensor(np.zeros((2, 4), np.float32)), x, np.ones(4))
