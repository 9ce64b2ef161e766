"""Special paths of the CPU kernels (issue 19), each against a plain reference.

* conv: ``im2col`` / ``col2im`` when every sample has one window (1x1 output, the 4x4 -> 1x1
  layers), which take an eight-samples-at-a-time path, against a loop reference and the
  general loops (a geometry with the same windows and one extra output column);
* LSTM: the gate-major sequence kernels (float32 arithmetic for float32, batch slices, the
  returned ``acts`` a (T, N, 4H) view) against a float64 NumPy loop; inputs never modified;
  inputs with other layouts accepted; the float32 rational tanh within 4e-7 of tanh.
"""
import numpy as np
import pytest

from tinygen.kernels.cpu import _threads, conv as cpu_conv, lstm as cpu_lstm


# -- conv: one window per sample --------------------------------------------------------------
@pytest.mark.parametrize("n_batch", [1, 7, 8, 13, 100])
@pytest.mark.parametrize("dilation", [1, 2])
def test_im2col_col2im_one_window_per_sample(n_batch, dilation):
    rng = np.random.default_rng(n_batch)
    n_chan, k, row0, col0 = 3, 3, 1, 2
    size = row0 + dilation * (k - 1) + 1 + 2
    xp = rng.standard_normal((n_batch, n_chan, size, size + 1)).astype(np.float32)
    win = (k, k, 1, 1, dilation, dilation, row0, col0, 1, 1)
    cols = np.empty((n_chan * k * k, n_batch, 1), np.float32)
    cpu_conv.im2col(xp, win, cols)
    ref = np.empty_like(cols)
    for c in range(n_chan):
        for i in range(k):
            for j in range(k):
                r, s_ = row0 + i * dilation, col0 + j * dilation
                ref[(c * k + i) * k + j, :, 0] = xp[:, c, r, s_]
    np.testing.assert_array_equal(cols, ref)
    # the general loops (two output columns) give the same first column
    wide = np.empty((n_chan * k * k, n_batch, 2), np.float32)
    cpu_conv.im2col(xp, (k, k, 1, 1, dilation, dilation, row0, col0, 1, 2), wide)
    np.testing.assert_array_equal(wide[:, :, :1], cols)
    # col2im: the adjoint, <im2col(x), g> == <x, col2im(g)>
    g = rng.standard_normal(cols.shape).astype(np.float32)
    back = np.full_like(xp, np.nan)
    cpu_conv.col2im(g, win, back)
    np.testing.assert_allclose(float((cols.astype(np.float64) * g).sum()),
                               float((xp.astype(np.float64) * back).sum()), rtol=1e-5)
    expected = np.zeros_like(xp)
    for c in range(n_chan):
        for i in range(k):
            for j in range(k):
                r, s_ = row0 + i * dilation, col0 + j * dilation
                expected[:, c, r, s_] += g[(c * k + i) * k + j, :, 0]
    np.testing.assert_array_equal(back, expected)


# -- LSTM ----------------------------------------------------------------------------------------
def _reference(x, h0, c0, w_ih, w_hh, b, dhs, dc_last):
    """Float64 forward and BPTT, step by step in NumPy."""
    x, h0, c0, w_ih, w_hh, b, dhs, dc_last = (np.asarray(a, np.float64) for a in
                                              (x, h0, c0, w_ih, w_hh, b, dhs, dc_last))
    steps, hid = x.shape[0], h0.shape[1]
    sig = lambda v: 1 / (1 + np.exp(-v))   # noqa: E731
    h, c, hs, cs, gates = h0, c0, [], [], []
    for t in range(steps):
        z = x[t] @ w_ih.T + h @ w_hh.T + b
        i, f = sig(z[:, :hid]), sig(z[:, hid:2 * hid])
        g, o = np.tanh(z[:, 2 * hid:3 * hid]), sig(z[:, 3 * hid:])
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
        cs.append(c)
        gates.append((i, f, g, o))
    dh_next, dc, dz = np.zeros_like(h0), dc_last.copy(), []
    for t in range(steps - 1, -1, -1):
        i, f, g, o = gates[t]
        tc = np.tanh(cs[t])
        c_prev = cs[t - 1] if t > 0 else c0
        dh = dhs[t] + dh_next
        dct = dc + dh * o * (1 - tc * tc)
        d = np.concatenate([dct * g * i * (1 - i), dct * c_prev * f * (1 - f),
                            dct * i * (1 - g * g), dh * tc * o * (1 - o)], axis=1)
        dz.append(d)
        dh_next = d @ w_hh
        dc = dct * f
    dz = np.stack(dz[::-1])
    h_prev = np.concatenate([h0[None], np.stack(hs)[:-1]])
    return {"hs": np.stack(hs), "cs": np.stack(cs),
            "dx": dz @ w_ih, "dh0": dh_next, "dc0": dc,
            "dw_ih": np.einsum("tng,tni->gi", dz, x),
            "dw_hh": np.einsum("tng,tnh->gh", dz, h_prev),
            "db": dz.sum(axis=(0, 1))}


def _case(steps, n_batch, n_in, hid, dtype, seed=0):
    rng = np.random.default_rng(seed)

    def r(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    return dict(x=r(steps, n_batch, n_in), h0=r(n_batch, hid, scale=0.5),
                c0=r(n_batch, hid, scale=0.5), w_ih=r(4 * hid, n_in, scale=0.4),
                w_hh=r(4 * hid, hid, scale=0.4), b=r(4 * hid, scale=0.3),
                dhs=r(steps, n_batch, hid), dc_last=r(n_batch, hid))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slices", [1, 2, 3])
@pytest.mark.parametrize("sizes", [(1, 1, 1, 1), (5, 19, 3, 7), (9, 33, 4, 16)])
def test_lstm_sequence_kernels_against_reference(monkeypatch, dtype, slices, sizes):
    a = _case(*sizes, dtype)
    n_batch = sizes[1]
    monkeypatch.setattr(_threads, "N_CORES", 2)
    monkeypatch.setattr(cpu_lstm, "_batch_slices", lambda n: [
        (n * k // slices, n * (k + 1) // slices) for k in range(slices)])
    saved = {k: v.copy() for k, v in a.items()}
    hs, cs, acts = cpu_lstm.lstm_sequence_forward(a["x"], a["h0"], a["c0"], a["w_ih"],
                                                  a["w_hh"], a["b"])
    assert hs.shape == cs.shape == (sizes[0], n_batch, sizes[3])
    assert acts.shape == (sizes[0], n_batch, 4 * sizes[3])
    assert hs.dtype == cs.dtype == acts.dtype == dtype
    assert hs.flags.c_contiguous and cs.flags.c_contiguous
    grads = cpu_lstm.lstm_sequence_backward(a["dhs"], a["dc_last"], a["x"], a["h0"], a["c0"],
                                            a["w_ih"], a["w_hh"], hs, cs, acts)
    for k, v in a.items():                       # nothing the caller passed is modified
        np.testing.assert_array_equal(v, saved[k])
    ref = _reference(**a)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(hs, ref["hs"], **tol)
    np.testing.assert_allclose(cs, ref["cs"], **tol)
    for name, g in zip(("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db"), grads):
        assert g.dtype == dtype and g.shape == ref[name].shape, name
        scale = 1 + np.abs(ref[name]).max()
        np.testing.assert_allclose(g, ref[name], rtol=tol["rtol"] * 10,
                                   atol=tol["atol"] * 10 * scale, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lstm_recurrence_kernels_any_layout(dtype):
    """lstm_recurrence_forward/backward: xg with any strides and a C-contiguous acts (not the
    forward's view) give the same numbers; the caller's xg and dc_last are left alone."""
    a = _case(6, 11, 3, 5, dtype, seed=4)
    xg = (a["x"] @ a["w_ih"].T + a["b"]).astype(dtype)
    xg_f = np.asfortranarray(xg)
    saved = xg.copy(), a["dc_last"].copy()
    w_hh_t = np.ascontiguousarray(a["w_hh"].T)
    fast = dtype == np.float32
    hs, cs, acts = cpu_lstm.lstm_recurrence_forward(xg, a["h0"], a["c0"], w_hh_t, fast)
    hs2, cs2, acts2 = cpu_lstm.lstm_recurrence_forward(xg_f, a["h0"], a["c0"], a["w_hh"].T, fast)
    np.testing.assert_array_equal(hs, hs2)
    np.testing.assert_array_equal(acts, acts2)
    dz, dh0, dc0 = cpu_lstm.lstm_recurrence_backward(a["dhs"], a["dc_last"], acts, cs, a["c0"],
                                                     a["w_hh"], fast)
    dz2, dh02, dc02 = cpu_lstm.lstm_recurrence_backward(
        a["dhs"], a["dc_last"], np.ascontiguousarray(acts), np.asfortranarray(cs), a["c0"],
        a["w_hh"], fast)
    assert dz.shape == xg.shape and dz.flags.c_contiguous
    np.testing.assert_array_equal(dz, dz2)
    np.testing.assert_array_equal(dh0, dh02)
    np.testing.assert_array_equal(dc0, dc02)
    np.testing.assert_array_equal(xg, saved[0])
    np.testing.assert_array_equal(a["dc_last"], saved[1])
    ref = _reference(**a)
    tol = 3e-5 if fast else 1e-11
    np.testing.assert_allclose(hs, ref["hs"], rtol=tol, atol=tol)
    np.testing.assert_allclose(dh0, ref["dh0"], rtol=10 * tol, atol=10 * tol)


def test_float32_rational_tanh_and_sigmoid():
    from numba import njit

    @njit
    def both(v):
        t = np.empty_like(v)
        s = np.empty_like(v)
        for i in range(v.size):
            t[i] = cpu_lstm._tanh32(v[i])
            s[i] = cpu_lstm._sig32(v[i])
        return t, s

    v = np.linspace(-20, 20, 400001).astype(np.float32)
    t, s = both(v)
    assert t.dtype == s.dtype == np.float32
    v64 = v.astype(np.float64)
    assert np.abs(t - np.tanh(v64)).max() < 4e-7
    assert np.abs(s - 1 / (1 + np.exp(-v64))).max() < 4e-7
    assert np.all(np.abs(t) <= 1) and np.all((s >= 0) & (s <= 1))
