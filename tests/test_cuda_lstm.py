"""The CUDA LSTM kernels (kernels/cuda/lstm.cu + lstm.py) against the CPU kernels.

Run on the CPU emulator of tests/cuda_emu (or a real GPU when one is present, see
tests/_cuda_device.py), float32 and float64, hypothesis-drawn sizes, three thread orders: the cell
step, the recurrence and the whole sequence forward and backward through time, and PixelRNN's
convolutional LSTM (state convolution fused into the gate kernels) forward and backward.
The CPU kernels run float32 through their rational tanh (``fast``), as the ops call them.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _cuda_device import ORDERS, device_cupy, thread_order
from tinygen.kernels.cpu import lstm as cpu_lstm

DTYPES = (np.float32, np.float64)


def _assert_close(name, got, ref, dtype):
    assert got.dtype == dtype and got.shape == ref.shape, (name, got.dtype, got.shape, ref.shape)
    mag = max(1.0, float(np.abs(ref).max())) if ref.size else 1.0
    rtol = 1e-11 if dtype == np.float64 else 3e-5
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * mag, err_msg=name)


def _compare(cp, names, dev_results, cpu_results, dtype):
    for name, dev, ref in zip(names, dev_results, cpu_results):
        _assert_close(name, cp.asnumpy(dev), ref, dtype)


@contextlib.contextmanager
def _recurrence(mode, max_hidden=None, max_work=None):
    """Run the block with kernels.cuda.lstm.RECURRENCE = ``mode`` (and MAX_SEQUENCE_HIDDEN,
    MAX_SEQUENCE_WORK when given)."""
    from tinygen.kernels.cuda import lstm as cuda_lstm
    names = ("RECURRENCE", "MAX_SEQUENCE_HIDDEN", "MAX_SEQUENCE_WORK")
    saved = [getattr(cuda_lstm, n) for n in names]
    for name, value in zip(names, (mode, max_hidden, max_work)):
        if value is not None:
            setattr(cuda_lstm, name, value)
    try:
        yield
    finally:
        for name, value in zip(names, saved):
            setattr(cuda_lstm, name, value)


@st.composite
def lstm_sizes(draw):
    """(T, N, I, H, seed), small."""
    return (draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 4)),
            draw(st.integers(1, 5)), draw(st.integers(0, 2 ** 32 - 1)))


def _lstm_arrays(sizes, dtype):
    steps, n, n_in, hid, seed = sizes
    rng = np.random.default_rng(seed)

    def r(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    return dict(x=r(steps, n, n_in), h0=r(n, hid, scale=0.5), c0=r(n, hid, scale=0.5),
                w_ih=r(4 * hid, n_in, scale=0.5), w_hh=r(4 * hid, hid, scale=0.5), b=r(4 * hid),
                dhs=r(steps, n, hid), dc_last=r(n, hid))


@given(n=st.integers(1, 4), hid=st.integers(1, 6), seed=st.integers(0, 2 ** 32 - 1),
       dtype=st.sampled_from(DTYPES))
@settings(max_examples=10)
def test_cell_forward_matches_cpu(n, hid, seed, dtype):
    from tinygen.kernels.cuda import lstm as cuda_lstm
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal((n, 4 * hid)) * 3).astype(dtype)      # saturating gates too
    c = rng.standard_normal((n, hid)).astype(dtype)
    with device_cupy() as cp:
        _compare(cp, ("h", "c"), cuda_lstm.lstm_cell_forward(cp.asarray(z), cp.asarray(c)),
                 cpu_lstm.lstm_cell_forward(z, c), dtype)


RECURRENCES = ("sequence", "step")     # kernels.cuda.lstm.RECURRENCE: whole-sequence or per-step


@pytest.mark.parametrize("recurrence", RECURRENCES)
@pytest.mark.parametrize("order", ORDERS)
@given(sizes=lstm_sizes(), dtype=st.sampled_from(DTYPES))
@settings(max_examples=10)
def test_sequence_forward_and_backward_match_cpu(recurrence, order, sizes, dtype):
    from tinygen.kernels.cuda import lstm as cuda_lstm
    a = _lstm_arrays(sizes, dtype)
    fast = dtype == np.float32
    ref_fwd = cpu_lstm.lstm_sequence_forward(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"],
                                             a["b"])
    ref_bwd = cpu_lstm.lstm_sequence_backward(a["dhs"], a["dc_last"], a["x"], a["h0"], a["c0"],
                                              a["w_ih"], a["w_hh"], *ref_fwd)
    assert fast == (ref_fwd[0].dtype == np.float32)
    with device_cupy() as cp, thread_order(order, seed=3), _recurrence(recurrence):
        d = {k: cp.asarray(v) for k, v in a.items()}
        fwd = cuda_lstm.lstm_sequence_forward(d["x"], d["h0"], d["c0"], d["w_ih"], d["w_hh"],
                                              d["b"])
        _compare(cp, ("hs", "cs", "acts"), fwd, ref_fwd, dtype)
        bwd = cuda_lstm.lstm_sequence_backward(d["dhs"], d["dc_last"], d["x"], d["h0"], d["c0"],
                                               d["w_ih"], d["w_hh"], *fwd)
        _compare(cp, ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db"), bwd, ref_bwd, dtype)


@pytest.mark.parametrize("recurrence", RECURRENCES)
@given(sizes=lstm_sizes(), dtype=st.sampled_from(DTYPES))
@settings(max_examples=8)
def test_recurrence_with_given_projections_matches_cpu(recurrence, sizes, dtype):
    """lstm_recurrence_forward/backward directly (PixelRNN's path), W_hh^T passed as a view."""
    from tinygen.kernels.cuda import lstm as cuda_lstm
    a = _lstm_arrays(sizes, dtype)
    steps, n, _, hid, _ = sizes
    xg = np.random.default_rng(1).standard_normal((steps, n, 4 * hid)).astype(dtype)
    fast = dtype == np.float32
    ref = cpu_lstm.lstm_recurrence_forward(xg, a["h0"], a["c0"],
                                           np.ascontiguousarray(a["w_hh"].T), fast)
    ref_b = cpu_lstm.lstm_recurrence_backward(a["dhs"], a["dc_last"], ref[2], ref[1], a["c0"],
                                              a["w_hh"], fast)
    with device_cupy() as cp, _recurrence(recurrence):
        d = {k: cp.asarray(v) for k, v in a.items()}
        fwd = cuda_lstm.lstm_recurrence_forward(cp.asarray(xg), d["h0"], d["c0"], d["w_hh"].T,
                                                fast)
        _compare(cp, ("hs", "cs", "acts"), fwd, ref, dtype)
        bwd = cuda_lstm.lstm_recurrence_backward(d["dhs"], d["dc_last"], fwd[2], fwd[1], d["c0"],
                                                 d["w_hh"], fast)
        _compare(cp, ("dz", "dh0", "dc0"), bwd, ref_b, dtype)


@st.composite
def conv_lstm_cases(draw):
    """(T, N, h, L, k, anchor, seed) of PixelRNN's convolutional LSTM, small."""
    taps = draw(st.integers(1, 3))
    return (draw(st.integers(1, 4)), draw(st.integers(1, 2)), draw(st.integers(1, 3)),
            draw(st.integers(1, 5)), taps, draw(st.integers(0, taps - 1)),
            draw(st.integers(0, 2 ** 32 - 1)))


@pytest.mark.parametrize("order", ORDERS)
@given(case=conv_lstm_cases(), dtype=st.sampled_from(DTYPES))
@settings(max_examples=12)
def test_conv_lstm_forward_and_backward_match_cpu(order, case, dtype):
    from tinygen.kernels.cuda import lstm as cuda_lstm
    steps, n, hid, length, taps, anchor, seed = case
    rng = np.random.default_rng(seed)
    xg = rng.standard_normal((steps, n, 4 * hid, length)).astype(dtype)
    kernel = (rng.standard_normal((4 * hid, hid, taps)) * 0.5).astype(dtype)
    dhs = rng.standard_normal((steps, n, hid, length)).astype(dtype)
    fast = dtype == np.float32
    ref = cpu_lstm.conv_lstm_forward(xg, kernel, anchor, fast)
    ref_b = cpu_lstm.conv_lstm_backward(dhs, ref[2], ref[1], ref[0], kernel, anchor, fast)
    with device_cupy() as cp, thread_order(order, seed=9):
        dk = cp.asarray(kernel)
        fwd = cuda_lstm.conv_lstm_forward(cp.asarray(xg), dk, anchor, fast)
        _compare(cp, ("hs", "cs", "acts"), fwd, ref, dtype)
        bwd = cuda_lstm.conv_lstm_backward(cp.asarray(dhs), fwd[2], fwd[1], fwd[0], dk, anchor,
                                           fast)
        _compare(cp, ("dxg", "dkernel"), bwd, ref_b, dtype)


def test_bad_dtypes_are_refused_with_the_function_name():
    from tinygen.kernels.cuda import lstm as cuda_lstm
    with device_cupy() as cp:
        with pytest.raises(TypeError, match="lstm_cell_forward"):
            cuda_lstm.lstm_cell_forward(cp.zeros((2, 8), dtype=np.int64),
                                        cp.zeros((2, 2), dtype=np.int64))
        with pytest.raises(TypeError, match="same dtype"):
            cuda_lstm.conv_lstm_forward(cp.zeros((1, 1, 4, 3), dtype=np.float32),
                                        cp.zeros((4, 1, 2), dtype=np.float64), 0)


def test_whole_sequence_kernels_are_used_within_their_bounds(monkeypatch):
    """RECURRENCE "sequence": one launch each way while H <= MAX_SEQUENCE_HIDDEN and
    N H^2 <= MAX_SEQUENCE_WORK, the per-step kernels beyond; a bad RECURRENCE is a clear error."""
    from tinygen.kernels.cuda import _runtime
    from tinygen.kernels.cuda import lstm as cuda_lstm
    a = _lstm_arrays((3, 2, 2, 3, 5), np.float64)
    names = []
    launch = _runtime.launch

    def spy(cu_file, name, *args):
        names.append(name)
        return launch(cu_file, name, *args)

    monkeypatch.setattr(_runtime, "launch", spy)
    with device_cupy() as cp:
        d = {k: cp.asarray(v) for k, v in a.items()}

        def run():
            names.clear()
            fwd = cuda_lstm.lstm_sequence_forward(d["x"], d["h0"], d["c0"], d["w_ih"], d["w_hh"],
                                                  d["b"])
            cuda_lstm.lstm_sequence_backward(d["dhs"], d["dc_last"], d["x"], d["h0"], d["c0"],
                                             d["w_ih"], d["w_hh"], *fwd)
            return list(names)

        with _recurrence("sequence"):
            assert run() == ["lstm_seq_forward_f64", "lstm_seq_backward_f64"]
        per_step = ["lstm_step_forward_f64"] * 3 + ["lstm_step_backward_f64"] * 3
        with _recurrence("sequence", max_hidden=2):
            assert run() == per_step
        with _recurrence("sequence", max_work=2 * 3 * 3):            # N H^2 = 18
            assert run() == ["lstm_seq_forward_f64", "lstm_seq_backward_f64"]
        with _recurrence("sequence", max_work=2 * 3 * 3 - 1):
            assert run() == per_step
        with _recurrence("steps"), pytest.raises(ValueError, match="RECURRENCE"):
            run()


@pytest.mark.parametrize("recurrence", RECURRENCES)
def test_empty_sequence_matches_cpu(recurrence):
    """T = 0: empty outputs, dh0 = 0 and dc0 = the incoming dc, as the CPU kernels give."""
    from tinygen.kernels.cuda import lstm as cuda_lstm
    a = _lstm_arrays((0, 2, 3, 4, 8), np.float64)
    xg = np.zeros((0, 2, 16))
    ref = cpu_lstm.lstm_recurrence_forward(xg, a["h0"], a["c0"], np.ascontiguousarray(a["w_hh"].T))
    ref_b = cpu_lstm.lstm_recurrence_backward(a["dhs"], a["dc_last"], ref[2], ref[1], a["c0"],
                                              a["w_hh"])
    with device_cupy() as cp, _recurrence(recurrence):
        d = {k: cp.asarray(v) for k, v in a.items()}
        fwd = cuda_lstm.lstm_recurrence_forward(cp.asarray(xg), d["h0"], d["c0"], d["w_hh"].T)
        _compare(cp, ("hs", "cs", "acts"), fwd, ref, np.float64)
        bwd = cuda_lstm.lstm_recurrence_backward(d["dhs"], d["dc_last"], fwd[2], fwd[1], d["c0"],
                                                 d["w_hh"])
        _compare(cp, ("dz", "dh0", "dc0"), bwd, ref_b, np.float64)


def test_shapes_that_do_not_fit_are_refused():
    """A wrong shape would make a GPU kernel read or write outside its arrays: ValueError."""
    from tinygen.kernels.cuda import lstm as cuda_lstm
    with device_cupy() as cp:
        def z(*shape):
            return cp.zeros(shape, dtype=np.float64)
        with pytest.raises(ValueError, match=r"lstm_cell_forward: z \(2, 7\)"):
            cuda_lstm.lstm_cell_forward(z(2, 7), z(2, 2))
        with pytest.raises(ValueError, match=r"lstm_recurrence_forward: c0 \(3, 2\)"):
            cuda_lstm.lstm_recurrence_forward(z(4, 2, 8), z(2, 2), z(3, 2), z(2, 8))
        with pytest.raises(ValueError, match=r"lstm_recurrence_backward: .*w_hh \(2, 8\)"):
            cuda_lstm.lstm_recurrence_backward(z(4, 2, 2), z(2, 2), z(4, 2, 8), z(4, 2, 2),
                                               z(2, 2), z(2, 8))
        with pytest.raises(ValueError, match=r"conv_lstm_forward: kernel \(8, 2, 3\)"):
            cuda_lstm.conv_lstm_forward(z(3, 1, 4, 5), z(8, 2, 3), 0)
        with pytest.raises(ValueError, match="anchor"):
            cuda_lstm.conv_lstm_forward(z(3, 1, 4, 5), z(4, 1, 3), 3)
        with pytest.raises(ValueError, match=r"conv_lstm_backward: hs \(3, 1, 1, 4\)"):
            cuda_lstm.conv_lstm_backward(z(3, 1, 1, 5), z(3, 1, 4, 5), z(3, 1, 1, 5),
                                         z(3, 1, 1, 4), z(4, 1, 2), 1)


def test_every_kernel_once_forward_float32():
    """Each kernel of lstm.cu once on small sizes, forward thread order, float32: small launches
    that the sanitizer runs of tests/test_cuda_emu.py select (``-k "forward and float32"``)."""
    from tinygen.kernels.cuda import lstm as cuda_lstm
    dtype = np.float32
    a = _lstm_arrays((3, 2, 3, 5, 21), dtype)
    rng = np.random.default_rng(4)
    xg = rng.standard_normal((3, 2, 8, 4)).astype(dtype)
    kernel = (rng.standard_normal((8, 2, 2)) * 0.5).astype(dtype)
    dhs = rng.standard_normal((3, 2, 2, 4)).astype(dtype)
    z = (rng.standard_normal((2, 20)) * 2).astype(dtype)               # (N, 4H) for H = 5
    ref_cell = cpu_lstm.lstm_cell_forward(z, a["c0"])
    ref = cpu_lstm.lstm_sequence_forward(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b"])
    ref_b = cpu_lstm.lstm_sequence_backward(a["dhs"], a["dc_last"], a["x"], a["h0"], a["c0"],
                                            a["w_ih"], a["w_hh"], *ref)
    ref_c = cpu_lstm.conv_lstm_forward(xg, kernel, 1, True)
    ref_cb = cpu_lstm.conv_lstm_backward(dhs, ref_c[2], ref_c[1], ref_c[0], kernel, 1, True)
    with device_cupy() as cp, thread_order("forward"):
        d = {k: cp.asarray(v) for k, v in a.items()}
        _compare(cp, ("h", "c"), cuda_lstm.lstm_cell_forward(cp.asarray(z), d["c0"]), ref_cell,
                 dtype)
        for recurrence in RECURRENCES:
            with _recurrence(recurrence):
                fwd = cuda_lstm.lstm_sequence_forward(d["x"], d["h0"], d["c0"], d["w_ih"],
                                                      d["w_hh"], d["b"])
                _compare(cp, ("hs", "cs", "acts"), fwd, ref, dtype)
                bwd = cuda_lstm.lstm_sequence_backward(d["dhs"], d["dc_last"], d["x"], d["h0"],
                                                       d["c0"], d["w_ih"], d["w_hh"], *fwd)
                _compare(cp, ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db"), bwd, ref_b, dtype)
        dk = cp.asarray(kernel)
        fwd = cuda_lstm.conv_lstm_forward(cp.asarray(xg), dk, 1)
        _compare(cp, ("hs", "cs", "acts"), fwd, ref_c, dtype)
        bwd = cuda_lstm.conv_lstm_backward(cp.asarray(dhs), fwd[2], fwd[1], fwd[0], dk, 1)
        _compare(cp, ("dxg", "dkernel"), bwd, ref_cb, dtype)
