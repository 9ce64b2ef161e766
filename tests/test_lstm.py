"""LSTM ops and modules (issue 7): functional.lstm_cell, functional.lstm, functional.lstm_recurrence,
nn.LSTMCell, nn.LSTM and the Numba kernels behind them.

* naive float64 loop references of the cell and the sequence (PyTorch's equations, gates i,f,g,o);
* hypothesis over batch, input, hidden and sequence sizes through :func:`harness.check_op`
  (forward vs the reference and PyTorch's LSTMCell / LSTM, gradients vs central differences and
  PyTorch, float32 vs float64); second order for the cell, and a clear error for the fused
  sequence ops, whose backward is the BPTT kernel;
* modules: PyTorch parameter names, state-dict loading, layers, batch_first, initial state,
  unbatched input, dropout between layers;
* argument errors.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinygen
from tinygen import functional as F
from tinygen import nn
from tinygen.kernels.cpu import lstm as cpu_lstm

from harness import arrays, check_op, torch

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch oracle not installed")


# -- naive float64 references ----------------------------------------------------------------------
def _sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def cell_reference(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One step, element by element: z = W_ih x + b_ih + W_hh h + b_hh, gates i, f, g, o."""
    n_batch, hid = h.shape
    h_new, c_new = np.zeros_like(h), np.zeros_like(c)
    for n in range(n_batch):
        for j in range(hid):
            z = [sum(w_ih[k * hid + j, q] * x[n, q] for q in range(x.shape[1])) +
                 sum(w_hh[k * hid + j, q] * h[n, q] for q in range(hid)) +
                 b_ih[k * hid + j] + b_hh[k * hid + j] for k in range(4)]
            i, f, g, o = _sig(z[0]), _sig(z[1]), np.tanh(z[2]), _sig(z[3])
            c_new[n, j] = f * c[n, j] + i * g
            h_new[n, j] = o * np.tanh(c_new[n, j])
    return h_new, c_new


def sequence_reference(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
    """The cell reference applied step by step: outputs (T, N, H), h_T, c_T."""
    h, c, outs = h0, c0, []
    for t in range(x.shape[0]):
        h, c = cell_reference(x[t], h, c, w_ih, w_hh, b_ih, b_hh)
        outs.append(h)
    return np.stack(outs), h, c


def _pack(out, h, c):
    """One tensor holding the outputs and the final state (check_op takes one output)."""
    return F.cat([out.reshape(-1), h.reshape(-1), c.reshape(-1)])


@st.composite
def lstm_case(draw, max_t=4):
    t, n = draw(st.integers(1, max_t)), draw(st.integers(1, 3))
    i, h = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    x = draw(arrays((t, n, i), -2.0, 2.0))
    h0, c0 = draw(arrays((n, h), -1.0, 1.0)), draw(arrays((n, h), -2.0, 2.0))
    w_ih, w_hh = draw(arrays((4 * h, i), -1.0, 1.0)), draw(arrays((4 * h, h), -1.0, 1.0))
    b_ih, b_hh = draw(arrays((4 * h,), -1.0, 1.0)), draw(arrays((4 * h,), -1.0, 1.0))
    return [x, h0, c0, w_ih, w_hh, b_ih, b_hh]


# -- the cell --------------------------------------------------------------------------------------
def _torch_cell(x, h, c, w_ih, w_hh, b_ih, b_hh):
    hn, cn = torch.lstm_cell(x, (h, c), w_ih, w_hh, b_ih, b_hh)
    return torch.cat([hn.reshape(-1), cn.reshape(-1)])


@given(lstm_case(max_t=1))
def test_lstm_cell_gradcheck(case):
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = case
    inputs = [x[0], h0, c0, w_ih, w_hh, b_ih, b_hh]

    def fn(*ts):
        hn, cn = F.lstm_cell(ts[0], (ts[1], ts[2]), *ts[3:])
        return F.cat([hn.reshape(-1), cn.reshape(-1)])

    def ref(*a):
        hn, cn = cell_reference(*a)
        return np.concatenate([hn.reshape(-1), cn.reshape(-1)])

    check_op(fn, inputs, reference=ref, torch_fn=_torch_cell if torch is not None else None,
             torch_rtol32=2e-5)


def test_lstm_cell_double_backward_vs_torch_larger():
    """Second derivatives of a loss through two cell steps, against PyTorch (float64)."""
    if torch is None:
        pytest.skip("PyTorch oracle not installed")
    rng = np.random.default_rng(3)
    n, i, h = 3, 5, 4
    arrs = [rng.standard_normal((n, i)), rng.standard_normal((n, h)), rng.standard_normal((n, h)),
            rng.standard_normal((4 * h, i)) * 0.5, rng.standard_normal((4 * h, h)) * 0.5,
            rng.standard_normal(4 * h), rng.standard_normal(4 * h)]
    ours = [tinygen.tensor(a, requires_grad=True) for a in arrs]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrs]

    def loss(mod, fcell, ts):
        h1, c1 = fcell(ts[0], (ts[1], ts[2]), *ts[3:])
        h2, c2 = fcell(ts[0] * 0.5, (h1, c1), *ts[3:])
        return (h2 * h2).sum() + (c2 * h1).sum()

    g1 = tinygen.grad(loss(tinygen, F.lstm_cell, ours), ours, create_graph=True)
    s = sum((g * g).sum() for g in g1)
    g2 = tinygen.grad(s, ours)
    t1 = torch.autograd.grad(loss(torch, torch.lstm_cell, theirs), theirs, create_graph=True)
    t2 = torch.autograd.grad(sum((g * g).sum() for g in t1), theirs)
    for a, b in zip(g2, t2):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-11)


# -- the sequence ----------------------------------------------------------------------------------
def _torch_sequence(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
    mod = torch.nn.LSTM(x.shape[2], h0.shape[1]).to(x.dtype)
    params = {"weight_ih_l0": w_ih, "weight_hh_l0": w_hh, "bias_ih_l0": b_ih, "bias_hh_l0": b_hh}
    out, (hn, cn) = torch.func.functional_call(mod, params, (x, (h0[None], c0[None])))
    return torch.cat([out.reshape(-1), hn.reshape(-1), cn.reshape(-1)])


@given(lstm_case())
def test_lstm_sequence_gradcheck(case):
    def fn(*ts):
        out, (hn, cn) = F.lstm(ts[0], (ts[1], ts[2]), *ts[3:])
        return _pack(out, hn, cn)

    def ref(*a):
        out, hn, cn = sequence_reference(*a)
        return np.concatenate([out.reshape(-1), hn.reshape(-1), cn.reshape(-1)])

    check_op(fn, case, reference=ref, torch_fn=_torch_sequence if torch is not None else None,
             second_order=False, torch_rtol32=2e-5)


@given(lstm_case())
def test_lstm_recurrence_gradcheck(case):
    """lstm_recurrence(xg, ...) with xg = W_ih x + b: the same numbers as lstm, gradients for
    xg, h0, c0 and W_hh."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = case
    xg = x @ w_ih.T + b_ih + b_hh                                 # (T, N, 4H)

    def fn(xg_t, h_t, c_t, whh_t):
        out, (hn, cn) = F.lstm_recurrence(xg_t, (h_t, c_t), whh_t)
        return _pack(out, hn, cn)

    def ref(xg_a, h_a, c_a, whh_a):
        hid = h_a.shape[1]
        # xg = W_ih x + b exactly when x = xg, W_ih = I (4H x 4H) and b = 0; then the naive
        # sequence reference applies
        out, hn, cn = sequence_reference(xg_a, h_a, c_a, np.eye(4 * hid), whh_a,
                                         np.zeros(4 * hid), np.zeros(4 * hid))
        return np.concatenate([out.reshape(-1), hn.reshape(-1), cn.reshape(-1)])

    check_op(fn, [xg, h0, c0, w_hh], reference=ref, second_order=False)


def banded_reference(kernel, length, anchor):
    """W[g L + p, u L + q] = kernel[g, u, q - p + anchor] (the state conv as a matrix)."""
    g4, hid, taps = kernel.shape
    w = np.zeros((g4 * length, hid * length))
    for g in range(g4):
        for u in range(hid):
            for p in range(length):
                for t in range(taps):
                    q = p + t - anchor
                    if 0 <= q < length:
                        w[g * length + p, u * length + q] = kernel[g, u, t]
    return w


@st.composite
def conv_lstm_case(draw):
    t, n, hid, length = (draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2)),
                         draw(st.integers(1, 4)))
    taps = draw(st.integers(1, 3))
    anchor, axis = draw(st.integers(0, taps - 1)), draw(st.sampled_from([2, 3]))
    shape = (n, 4 * hid, t, length) if axis == 2 else (n, 4 * hid, length, t)
    return (draw(arrays(shape, -2.0, 2.0)), draw(arrays((4 * hid, hid, taps), -1.0, 1.0)),
            anchor, axis)


@given(conv_lstm_case())
def test_conv_lstm_recurrence_gradcheck(case):
    """PixelRNN's line-state LSTM against the plain LSTM recurrence with the banded matrix of
    its state convolution (naive float64 reference), both time axes."""
    xg, kernel, anchor, axis = case
    order = (2, 0, 1, 3) if axis == 2 else (3, 0, 1, 2)                # -> (T, N, 4h, L)

    def ref(xg_a, k_a):
        z = xg_a.transpose(order)
        steps, n, g4, length = z.shape
        hid = g4 // 4
        zeros = np.zeros((n, hid * length))
        out, _, _ = sequence_reference(z.reshape(steps, n, g4 * length), zeros, zeros,
                                       np.eye(g4 * length), banded_reference(k_a, length, anchor),
                                       np.zeros(g4 * length), np.zeros(g4 * length))
        return out.reshape(steps, n, hid, length).transpose(np.argsort(order))

    check_op(lambda x_t, k_t: F.conv_lstm_recurrence(x_t, k_t, anchor, time_axis=axis),
             [xg, kernel], reference=ref, second_order=False)


def test_sequence_ops_refuse_double_backward():
    rng = np.random.default_rng(0)
    x = tinygen.tensor(rng.standard_normal((3, 2, 2)), requires_grad=True)
    w_ih = tinygen.tensor(rng.standard_normal((8, 2)), requires_grad=True)
    w_hh = tinygen.tensor(rng.standard_normal((8, 2)), requires_grad=True)
    out, _ = F.lstm(x, None, w_ih, w_hh)
    with pytest.raises(RuntimeError, match="double backward"):
        tinygen.grad(out.sum(), [x], create_graph=True)
    out, _ = F.lstm_recurrence(F.cat([x, x, x, x], dim=2), None, w_hh)    # xg (3, 2, 8)
    with pytest.raises(RuntimeError, match="double backward"):
        tinygen.grad(out.sum(), [w_hh], create_graph=True)
    k = tinygen.tensor(rng.standard_normal((4, 1, 3)), requires_grad=True)
    out = F.conv_lstm_recurrence(x.reshape(1, 4, 3, 1) * 1.0, k, 1)
    with pytest.raises(RuntimeError, match="double backward"):
        tinygen.grad(out.sum(), [k], create_graph=True)


def test_kernel_float32_long_sequence_matches_float64():
    """The kernels on a longer float32 sequence (T = 40) stay close to the float64 result, and
    the float64 kernel matches the naive reference."""
    rng = np.random.default_rng(1)
    t, n, i, h = 40, 3, 5, 6
    x = rng.standard_normal((t, n, i))
    h0, c0 = rng.standard_normal((n, h)) * 0.5, rng.standard_normal((n, h)) * 0.5
    w_ih, w_hh = rng.standard_normal((4 * h, i)) * 0.4, rng.standard_normal((4 * h, h)) * 0.4
    b = rng.standard_normal(4 * h) * 0.2
    hs64, cs64, _ = cpu_lstm.lstm_sequence_forward(x, h0, c0, w_ih, w_hh, b)
    ref, _, c_ref = sequence_reference(x, h0, c0, w_ih, w_hh, b, np.zeros(4 * h))
    np.testing.assert_allclose(hs64, ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(cs64[-1], c_ref, rtol=1e-12, atol=1e-13)
    f32 = [a.astype(np.float32) for a in (x, h0, c0, w_ih, w_hh, b)]
    hs32, cs32, _ = cpu_lstm.lstm_sequence_forward(*f32)
    assert hs32.dtype == np.float32
    np.testing.assert_allclose(hs32, hs64, atol=2e-5)
    # backward: float32 against float64 for a random cotangent
    dh = rng.standard_normal((t, n, h))
    dc = rng.standard_normal((n, h))
    g64 = cpu_lstm.lstm_sequence_backward(dh, dc, x, h0, c0, w_ih, w_hh, hs64, cs64,
                                          cpu_lstm.lstm_sequence_forward(x, h0, c0, w_ih, w_hh,
                                                                         b)[2])
    _, _, acts32 = cpu_lstm.lstm_sequence_forward(*f32)
    g32 = cpu_lstm.lstm_sequence_backward(dh.astype(np.float32), dc.astype(np.float32), f32[0],
                                          f32[1], f32[2], f32[3], f32[4], hs32, cs32, acts32)
    for a, b_ in zip(g32, g64):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b_, rtol=1e-3, atol=1e-3 * (1 + np.abs(b_).max()))


# -- modules ---------------------------------------------------------------------------------------
def test_lstm_module_parameter_names_and_shapes():
    m = nn.LSTM(3, 5, num_layers=2)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {"weight_ih_l0": (20, 3), "weight_hh_l0": (20, 5), "bias_ih_l0": (20,),
                      "bias_hh_l0": (20,), "weight_ih_l1": (20, 5), "weight_hh_l1": (20, 5),
                      "bias_ih_l1": (20,), "bias_hh_l1": (20,)}
    bound = 1 / np.sqrt(5)
    assert all(np.all(np.abs(p.detach().numpy()) <= bound) for p in m.parameters())
    assert sorted(nn.LSTM(3, 5, bias=False).state_dict()) == ["weight_hh_l0", "weight_ih_l0"]
    cell = nn.LSTMCell(3, 5)
    assert list(cell.state_dict()) == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]


@needs_torch
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_lstm_module_matches_torch(batch_first, with_state):
    """A torch.nn.LSTM's state dict loads; outputs, (h_n, c_n) and every gradient agree."""
    torch.manual_seed(0)
    tm = torch.nn.LSTM(4, 6, num_layers=3, batch_first=batch_first)
    m = nn.LSTM(4, 6, num_layers=3, batch_first=batch_first)
    m.load_state_dict({k: tinygen.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 7, 4) if batch_first else (7, 2, 4)).astype(np.float32)
    hx = [rng.standard_normal((3, 2, 6)).astype(np.float32) for _ in range(2)]
    xt, xo = torch.tensor(x, requires_grad=True), tinygen.tensor(x, requires_grad=True)
    ht = tuple(torch.tensor(a, requires_grad=True) for a in hx) if with_state else None
    ho = tuple(tinygen.tensor(a, requires_grad=True) for a in hx) if with_state else None
    ot, (hnt, cnt) = tm(xt, ht)
    oo, (hno, cno) = m(xo, ho)
    assert oo.shape == tuple(ot.shape) and hno.shape == (3, 2, 6) and cno.shape == (3, 2, 6)
    for a, b in ((oo, ot), (hno, hnt), (cno, cnt)):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=2e-6)
    w = rng.standard_normal(ot.shape).astype(np.float32)
    (ot * torch.tensor(w)).sum().add((hnt * 2).sum()).add((cnt ** 2).sum()).backward()
    ((oo * tinygen.tensor(w)).sum() + (hno * 2).sum() + (cno ** 2).sum()).backward()
    np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), atol=2e-5)
    if with_state:
        for a, b in zip(ho, ht):
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), atol=2e-5)
    params = dict(m.named_parameters())
    for k, p in tm.named_parameters():
        np.testing.assert_allclose(params[k].grad.numpy(), p.grad.numpy(), atol=5e-5, rtol=1e-4,
                                   err_msg=k)


@needs_torch
def test_lstm_cell_module_and_unbatched_match_torch():
    torch.manual_seed(1)
    tc, c = torch.nn.LSTMCell(3, 4), nn.LSTMCell(3, 4)
    c.load_state_dict({k: tinygen.tensor(v.detach().numpy()) for k, v in tc.state_dict().items()})
    x = np.random.default_rng(2).standard_normal((5, 3)).astype(np.float32)
    h1, c1 = c(tinygen.tensor(x))
    th, tcc = tc(torch.tensor(x))
    np.testing.assert_allclose(h1.detach().numpy(), th.detach().numpy(), atol=1e-6)
    h2, c2 = c(tinygen.tensor(x[0]), (h1[0], c1[0]))                     # unbatched (I,)
    th2, tc2 = tc(torch.tensor(x[0]), (th[0], tcc[0]))
    assert h2.shape == (4,)
    np.testing.assert_allclose(c2.detach().numpy(), tc2.detach().numpy(), atol=1e-6)
    tl, lo = torch.nn.LSTM(3, 4, num_layers=2), nn.LSTM(3, 4, num_layers=2)
    lo.load_state_dict({k: tinygen.tensor(v.detach().numpy()) for k, v in tl.state_dict().items()})
    out, (hn, cn) = lo(tinygen.tensor(x))                                # unbatched (T, I)
    tout, (thn, tcn) = tl(torch.tensor(x))
    assert out.shape == (5, 4) and hn.shape == (2, 4)
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(cn.detach().numpy(), tcn.detach().numpy(), atol=1e-6)


def test_lstm_module_dropout_between_layers():
    m = nn.LSTM(2, 3, num_layers=2, dropout=0.5)
    x = tinygen.randn(4, 2, 2)
    m.eval()
    a, b = m(x)[0].detach().numpy(), m(x)[0].detach().numpy()
    np.testing.assert_array_equal(a, b)                  # no dropout in eval mode
    m.train()
    outs = [m(x)[0].detach().numpy() for _ in range(3)]
    assert any(not np.array_equal(o, a) for o in outs)   # dropout active in training
    single = nn.LSTM(2, 3, num_layers=1, dropout=0.5)    # one layer: dropout has no effect
    single.train()
    np.testing.assert_array_equal(single(x)[0].detach().numpy(), single(x)[0].detach().numpy())


# -- errors ----------------------------------------------------------------------------------------
def test_argument_errors():
    x = tinygen.randn(3, 2, 4)
    w_ih, w_hh = tinygen.randn(8, 4), tinygen.randn(8, 2)
    with pytest.raises(ValueError, match=r"input must have shape \(T, N, I\).*\(2, 4\)"):
        F.lstm(tinygen.randn(2, 4), None, w_ih, w_hh)
    with pytest.raises(ValueError, match=r"weight_hh must have shape \(4H, H\).*\(8, 3\)"):
        F.lstm(x, None, w_ih, tinygen.randn(8, 3))
    with pytest.raises(ValueError, match=r"weight_ih must have shape.*\(8, 5\)"):
        F.lstm(x, None, tinygen.randn(8, 5), w_hh)
    with pytest.raises(ValueError, match=r"bias_hh must have shape \(8,\).*\(4,\)"):
        F.lstm(x, None, w_ih, w_hh, None, tinygen.randn(4))
    with pytest.raises(ValueError, match=r"hx\[1\] \(c\) must have shape \(2, 2\).*\(3, 2\)"):
        F.lstm(x, (tinygen.randn(2, 2), tinygen.randn(3, 2)), w_ih, w_hh)
    with pytest.raises(TypeError, match="dtype"):
        F.lstm(x, None, w_ih.double(), w_hh)
    with pytest.raises(ValueError, match=r"xg must have shape \(T, N, 4H\) = \(T, N, 8\)"):
        F.lstm_recurrence(tinygen.randn(3, 2, 7), None, w_hh)
    with pytest.raises(ValueError, match=r"lstm_cell: input must have shape \(N, I\)"):
        F.lstm_cell(x, None, w_ih, w_hh)
    with pytest.raises(ValueError, match=r"LSTM: input must have shape \(T, N, 3\)"):
        nn.LSTM(3, 2)(x)
    with pytest.raises(ValueError, match=r"h_0 must have shape \(1, 2, 2\)"):
        nn.LSTM(4, 2)(x, (tinygen.randn(2, 2), tinygen.randn(1, 2, 2)))
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        nn.LSTM(3, 0)
    with pytest.raises(ValueError, match=r"xg must have shape \(N, 4h, A, B\) = \(N, 8, A, B\)"):
        F.conv_lstm_recurrence(tinygen.randn(2, 4, 3, 3), tinygen.randn(8, 2, 3), 1)
    with pytest.raises(ValueError, match="anchor must be a tap index"):
        F.conv_lstm_recurrence(tinygen.randn(2, 8, 3, 3), tinygen.randn(8, 2, 3), 3)
    with pytest.raises(ValueError, match="time_axis must be 2 or 3"):
        F.conv_lstm_recurrence(tinygen.randn(2, 8, 3, 3), tinygen.randn(8, 2, 3), 1, 1)
    with pytest.raises(ValueError, match="bidirectional"):
        nn.LSTM(3, 2, bidirectional=True)
