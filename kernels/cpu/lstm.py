"""CPU LSTM kernels (Numba): a whole sequence forward and backward through time in one call each.

Gate layout as in PyTorch: the 4H pre-activations of a step are the blocks i, f, g, o (input,
forget, cell candidate, output gate), each of width H:

    z_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh                   (N, 4H)
    i = sigma(z_i), f = sigma(z_f), g = tanh(z_g), o = sigma(z_o)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

The input projections W_ih x_t + b do not depend on the recurrence, so they are hoisted out of
the time loop: :func:`lstm_sequence_forward` computes them for all T steps as one GEMM
((T N, I) x (I, 4H)) and the recurrence kernels take the result ``xg`` (T, N, 4H). Inside the
time loop each step is one GEMM (N, H) x (H, 4H) plus one fused elementwise pass over the gates.

Backward through time (:func:`lstm_recurrence_backward`), t = T-1 ... 0, with dh, dc the
gradients reaching h_t, c_t:

    dc  = dc_{t+1 -> t} + dh * o * (1 - tanh(c_t)^2)
    dz_i = dc * g * i (1 - i),   dz_f = dc * c_{t-1} * f (1 - f),
    dz_g = dc * i * (1 - g^2),   dz_o = dh * tanh(c_t) * o (1 - o)
    dh_{t-1} += dz_t W_hh,       dc_{t-1} = dc * f

and afterwards, again as single GEMMs over all steps: dW_hh = sum_t dz_t^T h_{t-1},
dx = dz W_ih, dW_ih = dz^T x, db = sum dz (:func:`lstm_sequence_backward`).

The samples of a batch never interact, so the recurrence kernels split the batch into one
slice per core and run each slice's whole time loop on its own thread with a single-threaded
BLAS (``_threads.run_pieces``): no synchronization per step, where a 2-thread BLAS call per
step would wait for its slower thread T times.

Arrays only, C-contiguous, one floating dtype (float32 or float64) per call.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._threads import idle_cores, run_pieces

__all__ = ["lstm_cell_forward", "lstm_recurrence_forward", "lstm_recurrence_backward",
           "lstm_sequence_forward", "lstm_sequence_backward", "conv_lstm_forward",
           "conv_lstm_backward"]


@njit(cache=True)
def _sigmoid(x):
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@njit(cache=True, fastmath=True, inline="always")
def _tanh_rational(x):
    """tanh(x) as a (13, 6) odd rational function on [-7.9053, 7.9053] (clamped outside, where
    tanh is 1 to float32 precision): max abs error 2.4e-7 in float32 measured over [-10, 10]
    (float32's spacing at 1 is 1.2e-7). Only multiplications, additions and one division: on
    the development machine the forward gate loop of a (T=64, N=32, H=256) float32 sequence
    took 39 ms with it and 163 ms with libm's exp/tanh (same process, best of 5)."""
    x = min(max(x, -7.90531110763549805), 7.90531110763549805)
    x2 = x * x
    p = -2.76076847742355e-16
    p = p * x2 + 2.00018790482477e-13
    p = p * x2 + -8.60467152213735e-11
    p = p * x2 + 5.12229709037114e-08
    p = p * x2 + 1.48572235717979e-05
    p = p * x2 + 6.37261928875436e-04
    p = p * x2 + 4.89352455891786e-03
    q = 1.19825839466702e-06
    q = q * x2 + 1.18534705686654e-04
    q = q * x2 + 2.26843463243900e-03
    q = q * x2 + 4.89352518554385e-03
    return x * p / q


@njit(cache=True, inline="always")
def _sig(x, fast):
    """sigma(x): 1/2 + tanh(x/2)/2 from the rational tanh when ``fast`` (float32 kernels),
    else libm (float64 kernels: exact to rounding)."""
    if fast:
        return 0.5 + 0.5 * _tanh_rational(0.5 * x)
    return _sigmoid(x)


@njit(cache=True, inline="always")
def _tanh(x, fast):
    if fast:
        return _tanh_rational(x)
    return math.tanh(x)


@njit(cache=True)
def lstm_cell_forward(z, c_prev):
    """One LSTM step from its pre-activations.

    z: (N, 4H) pre-activations (i, f, g, o blocks); c_prev: (N, H).
    Returns (h, c) of shape (N, H) each.
    """
    n_batch, h4 = z.shape
    hid = h4 // 4
    h = np.empty_like(c_prev)
    c = np.empty_like(c_prev)
    for n in range(n_batch):
        for j in range(hid):
            ig = _sigmoid(z[n, j])
            fg = _sigmoid(z[n, hid + j])
            gg = math.tanh(z[n, 2 * hid + j])
            og = _sigmoid(z[n, 3 * hid + j])
            cn = fg * c_prev[n, j] + ig * gg
            c[n, j] = cn
            h[n, j] = og * math.tanh(cn)
    return h, c


@njit(cache=True, nogil=True)
def _recurrence_forward_into(xg, h0, c0, w_hh_t, fast, hs, cs, acts):
    """The time loop of :func:`lstm_recurrence_forward` for a slice of the batch (any strides),
    writing hs, cs (T, n, H) and acts (T, n, 4H)."""
    steps, n_batch, h4 = xg.shape
    hid = h4 // 4
    h = h0.copy()
    c = c0.copy()
    for t in range(steps):
        z = np.dot(h, w_hh_t)                                     # (N, 4H), one GEMM per step
        for n in range(n_batch):
            for j in range(hid):
                ig = _sig(xg[t, n, j] + z[n, j], fast)
                fg = _sig(xg[t, n, hid + j] + z[n, hid + j], fast)
                gg = _tanh(xg[t, n, 2 * hid + j] + z[n, 2 * hid + j], fast)
                og = _sig(xg[t, n, 3 * hid + j] + z[n, 3 * hid + j], fast)
                cn = fg * c[n, j] + ig * gg
                hn = og * _tanh(cn, fast)
                acts[t, n, j] = ig
                acts[t, n, hid + j] = fg
                acts[t, n, 2 * hid + j] = gg
                acts[t, n, 3 * hid + j] = og
                c[n, j] = cn
                h[n, j] = hn
                cs[t, n, j] = cn
                hs[t, n, j] = hn


# Samples per batch slice below which the recurrence is not split across cores: a slice's
# per-step GEMM (rows, H) x (H, 4H) gets inefficient with very few rows.
_MIN_SLICE_ROWS = 8


def _batch_slices(n_batch):
    """Contiguous [start, stop) batch ranges, one per idle core (fewer for small batches or
    a loaded machine, see ``_threads.idle_cores``). The samples of a batch are independent
    through the whole recurrence, so each slice runs its own time loop with no
    synchronization (``_threads.run_pieces``)."""
    parts = max(1, min(idle_cores(), n_batch // _MIN_SLICE_ROWS))
    bounds = [n_batch * k // parts for k in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def lstm_recurrence_forward(xg, h0, c0, w_hh_t, fast=False):
    """The recurrence over a whole sequence, input projections given.

    xg: (T, N, 4H) input projections W_ih x_t + b_ih + b_hh; h0, c0: (N, H);
    w_hh_t: (H, 4H), the transpose of weight_hh; ``fast``: rational sigmoid/tanh (for float32,
    see :func:`_tanh_rational`) instead of libm.
    Returns hs (T, N, H) (the outputs h_1..h_T), cs (T, N, H) (c_1..c_T) and acts (T, N, 4H)
    (the gate activations i, f, g, o after their nonlinearities, for the backward).
    Slices of the batch run on all cores (see :func:`_batch_slices`); the result does not
    depend on the split.
    """
    steps, n_batch, h4 = xg.shape
    hid = h4 // 4
    w_hh_t = np.ascontiguousarray(w_hh_t)
    hs = np.empty((steps, n_batch, hid), dtype=xg.dtype)
    cs = np.empty((steps, n_batch, hid), dtype=xg.dtype)
    acts = np.empty_like(xg)

    def piece(bounds):
        a, b = bounds
        _recurrence_forward_into(xg[:, a:b], np.ascontiguousarray(h0[a:b]),
                                 np.ascontiguousarray(c0[a:b]), w_hh_t, bool(fast),
                                 hs[:, a:b], cs[:, a:b], acts[:, a:b])

    run_pieces(piece, _batch_slices(n_batch))
    return hs, cs, acts


@njit(cache=True, nogil=True)
def _recurrence_backward_into(dhs, dc_last, acts, cs, c0, w_hh, fast, dz, dh0, dc0):
    """The time loop of :func:`lstm_recurrence_backward` for a slice of the batch (any
    strides), writing dz (T, n, 4H), dh0 and dc0 (n, H)."""
    steps, n_batch, hid = dhs.shape
    dh_rec = np.zeros((n_batch, hid), dtype=dhs.dtype)     # dz_{t+1} W_hh
    dc = dc_last.copy()
    for t in range(steps - 1, -1, -1):
        for n in range(n_batch):
            for j in range(hid):
                ig = acts[t, n, j]
                fg = acts[t, n, hid + j]
                gg = acts[t, n, 2 * hid + j]
                og = acts[t, n, 3 * hid + j]
                tc = _tanh(cs[t, n, j], fast)
                c_prev = cs[t - 1, n, j] if t > 0 else c0[n, j]
                dh = dhs[t, n, j] + dh_rec[n, j]
                dct = dc[n, j] + dh * og * (1.0 - tc * tc)
                dz[t, n, j] = dct * gg * ig * (1.0 - ig)
                dz[t, n, hid + j] = dct * c_prev * fg * (1.0 - fg)
                dz[t, n, 2 * hid + j] = dct * ig * (1.0 - gg * gg)
                dz[t, n, 3 * hid + j] = dh * tc * og * (1.0 - og)
                dc[n, j] = dct * fg
        dh_rec = np.dot(np.ascontiguousarray(dz[t]), w_hh)      # (N, H), one GEMM per step
    dh0[:] = dh_rec
    dc0[:] = dc


def lstm_recurrence_backward(dhs, dc_last, acts, cs, c0, w_hh, fast=False):
    """Backward through time of :func:`lstm_recurrence_forward`.

    dhs: (T, N, H) gradients reaching the outputs h_1..h_T; dc_last: (N, H) the gradient
    reaching c_T; acts, cs: as returned by the forward; c0: (N, H); w_hh: (4H, H); ``fast`` as
    in the forward (tanh(c_t) is recomputed with the same function). Returns dz (T, N, 4H) (the
    gradient of the pre-activations, i.e. of xg), dh0 and dc0 (N, H). Batch slices on all
    cores, as in the forward.
    """
    steps, n_batch, hid = dhs.shape
    w_hh = np.ascontiguousarray(w_hh)
    dz = np.empty_like(acts)
    dh0 = np.empty((n_batch, hid), dtype=dhs.dtype)
    dc0 = np.empty((n_batch, hid), dtype=dhs.dtype)

    def piece(bounds):
        a, b = bounds
        _recurrence_backward_into(dhs[:, a:b], np.ascontiguousarray(dc_last[a:b]),
                                  acts[:, a:b], cs[:, a:b], c0[a:b], w_hh, bool(fast),
                                  dz[:, a:b], dh0[a:b], dc0[a:b])

    run_pieces(piece, _batch_slices(n_batch))
    return dz, dh0, dc0


def lstm_sequence_forward(x, h0, c0, w_ih, w_hh, b):
    """Whole-sequence LSTM forward with the input projection hoisted out of the loop.

    x: (T, N, I); h0, c0: (N, H); w_ih: (4H, I); w_hh: (4H, H); b: (4H,) (b_ih + b_hh).
    Returns hs, cs (T, N, H) and acts (T, N, 4H) (see :func:`lstm_recurrence_forward`).
    """
    steps, n_batch, n_in = x.shape
    xg = np.dot(x.reshape(steps * n_batch, n_in), w_ih.T)         # one GEMM for all steps
    xg += b
    xg = xg.reshape(steps, n_batch, w_ih.shape[0])                # (T, N, 4H)
    return lstm_recurrence_forward(xg, np.ascontiguousarray(h0), np.ascontiguousarray(c0),
                                   np.ascontiguousarray(w_hh.T), xg.dtype == np.float32)


def lstm_sequence_backward(dhs, dc_last, x, h0, c0, w_ih, w_hh, hs, cs, acts):
    """Gradients of a whole-sequence LSTM (see :func:`lstm_sequence_forward`).

    Returns dx (T, N, I), dh0, dc0 (N, H), dw_ih (4H, I), dw_hh (4H, H), db (4H,) where db is
    the gradient of each of b_ih and b_hh.
    """
    steps, n_batch, n_in = x.shape
    hid = h0.shape[1]
    dz, dh0, dc0 = lstm_recurrence_backward(dhs, dc_last, acts, cs, c0, w_hh,
                                            dhs.dtype == np.float32)
    dz2 = dz.reshape(steps * n_batch, 4 * hid)                    # (T N, 4H)
    h_prev = np.concatenate((h0[None], hs[:-1]), axis=0).reshape(steps * n_batch, hid)
    dw_hh = np.dot(dz2.T, h_prev)                                 # sum_t dz_t^T h_{t-1}
    dw_ih = np.dot(dz2.T, x.reshape(steps * n_batch, n_in))       # (4H, I)
    dx = np.dot(dz2, w_ih).reshape(steps, n_batch, n_in)
    db = dz2.sum(axis=0)
    return dx, dh0, dc0, dw_ih, dw_hh, db


# -- LSTM whose state-to-state map is a 1-D convolution (PixelRNN) ----------------------------------
@njit(cache=True)
def _state_conv(h, kernel, anchor, z):
    """z[n, g, p] += sum_{u, t} kernel[g, u, t] h[n, u, p + t - anchor] (zero outside 0..L-1).

    h: (N, h, L); kernel: (4h, h, k); z: (N, 4h, L), accumulated in place."""
    n_batch, hid, length = h.shape
    g4, _, taps = kernel.shape
    for n in range(n_batch):
        for g in range(g4):
            for u in range(hid):
                for t in range(taps):
                    w = kernel[g, u, t]
                    shift = t - anchor
                    lo = max(0, -shift)
                    hi = min(length, length - shift)
                    for p in range(lo, hi):
                        z[n, g, p] += w * h[n, u, p + shift]


@njit(cache=True)
def conv_lstm_forward(xg, kernel, anchor, fast=False):
    """LSTM over T steps whose state is a line of L positions with h channels, the state-to-state
    map a 1-D convolution (PixelRNN's Row LSTM over rows, Diagonal BiLSTM over skewed columns):

        z_t = xg_t + kernel * h_{t-1},   tap t of the kernel reading position p + t - anchor,

    gates i, f, g, o = channel blocks of z_t, as in :func:`lstm_recurrence_forward`; h_0 = c_0 = 0.

    xg: (T, N, 4h, L) input-to-state pre-activations (biases included); kernel: (4h, h, k);
    ``fast``: rational sigmoid/tanh (float32). Returns hs, cs (T, N, h, L) and acts (T, N, 4h, L) (gate activations, for the backward).
    """
    steps, n_batch, g4, length = xg.shape
    hid = g4 // 4
    hs = np.zeros((steps, n_batch, hid, length), dtype=xg.dtype)
    cs = np.zeros((steps, n_batch, hid, length), dtype=xg.dtype)
    acts = np.empty_like(xg)
    z = np.empty((n_batch, g4, length), dtype=xg.dtype)
    for t in range(steps):
        z[:] = xg[t]
        if t > 0:
            _state_conv(hs[t - 1], kernel, anchor, z)
        for n in range(n_batch):
            for j in range(hid):
                for p in range(length):
                    ig = _sig(z[n, j, p], fast)
                    fg = _sig(z[n, hid + j, p], fast)
                    gg = _tanh(z[n, 2 * hid + j, p], fast)
                    og = _sig(z[n, 3 * hid + j, p], fast)
                    c_prev = cs[t - 1, n, j, p] if t > 0 else 0.0
                    cn = fg * c_prev + ig * gg
                    acts[t, n, j, p] = ig
                    acts[t, n, hid + j, p] = fg
                    acts[t, n, 2 * hid + j, p] = gg
                    acts[t, n, 3 * hid + j, p] = og
                    cs[t, n, j, p] = cn
                    hs[t, n, j, p] = og * _tanh(cn, fast)
    return hs, cs, acts


@njit(cache=True)
def conv_lstm_backward(dhs, acts, cs, hs, kernel, anchor, fast=False):
    """Backward through time of :func:`conv_lstm_forward`.

    dhs: (T, N, h, L) gradients reaching the outputs; acts, cs, hs: from the forward;
    kernel: (4h, h, k); ``fast`` as in the forward. Returns dxg (T, N, 4h, L) and dkernel
    (4h, h, k).
    """
    steps, n_batch, hid, length = dhs.shape
    g4, _, taps = kernel.shape
    dz = np.empty_like(acts)
    dkernel = np.zeros_like(kernel)
    dh_rec = np.zeros((n_batch, hid, length), dtype=dhs.dtype)     # kernel^T * dz_{t+1}
    dc = np.zeros((n_batch, hid, length), dtype=dhs.dtype)
    for t in range(steps - 1, -1, -1):
        for n in range(n_batch):
            for j in range(hid):
                for p in range(length):
                    ig = acts[t, n, j, p]
                    fg = acts[t, n, hid + j, p]
                    gg = acts[t, n, 2 * hid + j, p]
                    og = acts[t, n, 3 * hid + j, p]
                    tc = _tanh(cs[t, n, j, p], fast)
                    c_prev = cs[t - 1, n, j, p] if t > 0 else 0.0
                    dh = dhs[t, n, j, p] + dh_rec[n, j, p]
                    dct = dc[n, j, p] + dh * og * (1.0 - tc * tc)
                    dz[t, n, j, p] = dct * gg * ig * (1.0 - ig)
                    dz[t, n, hid + j, p] = dct * c_prev * fg * (1.0 - fg)
                    dz[t, n, 2 * hid + j, p] = dct * ig * (1.0 - gg * gg)
                    dz[t, n, 3 * hid + j, p] = dh * tc * og * (1.0 - og)
                    dc[n, j, p] = dct * fg
        dh_rec[:] = 0.0
        if t > 0:
            # z_t = xg_t + kernel * h_{t-1}: dh_{t-1} += kernel^T * dz_t, dkernel += dz_t h_{t-1}
            for n in range(n_batch):
                for g in range(g4):
                    for u in range(hid):
                        for tap in range(taps):
                            shift = tap - anchor
                            lo = max(0, -shift)
                            hi = min(length, length - shift)
                            w = kernel[g, u, tap]
                            acc = 0.0
                            for p in range(lo, hi):
                                d = dz[t, n, g, p]
                                dh_rec[n, u, p + shift] += w * d
                                acc += d * hs[t - 1, n, u, p + shift]
                            dkernel[g, u, tap] += acc
    return dz, dkernel
