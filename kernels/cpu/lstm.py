"""CPU LSTM kernels (Numba): a whole sequence forward and backward through time in one call each.

Gate layout as in PyTorch: the 4H pre-activations of a step are the blocks i, f, g, o (input,
forget, cell candidate, output gate), each of width H:

    z_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh                   (N, 4H)
    i = sigma(z_i), f = sigma(z_f), g = tanh(z_g), o = sigma(z_o)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

Each step of the forward is one GEMM [W_hh | W_ih] [h_{t-1}; x_t], (4H, H + I) x (H + I, N)
(:func:`lstm_sequence_forward`; :func:`lstm_recurrence_forward` takes the input projections
precomputed and multiplies by W_hh alone), plus one elementwise pass over the gates (bias,
sigmoid/tanh, cell update). The whole time loop of a batch slice is one Numba call.

Backward through time (:func:`lstm_recurrence_backward`), t = T-1 ... 0, with dh, dc the
gradients reaching h_t, c_t:

    dc  = dc_{t+1 -> t} + dh * o * (1 - tanh(c_t)^2)
    dz_i = dc * g * i (1 - i),   dz_f = dc * c_{t-1} * f (1 - f),
    dz_g = dc * i * (1 - g^2),   dz_o = dh * tanh(c_t) * o (1 - o)
    dh_{t-1} += W_hh^T dz_t,     dc_{t-1} = dc * f

and afterwards, as single GEMMs over all steps ((4H, T N) x (T N, .)): dW_hh = sum_t dz_t
h_{t-1}^T, dW_ih = sum_t dz_t x_t^T, dx = dz^T W_ih, db = sum dz (:func:`lstm_sequence_backward`).

Layout: inside, the gates are gate-major -- each step's (4H, N) block contiguous, the batch
along the rows -- so that the per-step GEMMs are (4H, H) x (H, N) and (H, 4H) x (4H, N), the
shapes OpenBLAS runs fastest (one thread, N 32, H 256: 93-98 GFLOP/s against 77-81 for the
batch-major (N, H) x (H, 4H)), and every elementwise loop runs along the batch with unit
stride in float32 arithmetic (vectorized; the rational sigmoid/tanh of :func:`_tanh32`). The
arrays callers see keep their layouts: hs, cs (T, N, H) C-contiguous, dz (T, N, 4H); acts is
returned as the (T, N, 4H) view of the gate-major (T, 4H, N) array (it only goes back into
the backward).

The samples of a batch never interact, so the recurrence kernels split the batch into one
slice per idle core and run each slice's whole time loop on its own thread with a
single-threaded BLAS (``_threads.run_pieces``): no synchronization per step, where a 2-thread
BLAS call per step would wait for its slower thread T times.

Arrays only, one floating dtype (float32 or float64) per call; the sequence functions accept
any strides (they copy into their layouts where needed) and never modify their inputs.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._threads import idle_cores, one_blas_thread, run_pieces

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


@njit(cache=True, inline="always")
def _tanh32(x):
    """:func:`_tanh_rational` evaluated in float32 arithmetic: the same coefficients rounded to
    float32, so that nothing is promoted to float64 and the gate loops vectorize (8 or 16 lanes).
    Max abs error 3.3e-7 over [-10, 10] (measured; float32's spacing at 1 is 1.2e-7)."""
    lim = np.float32(7.90531110763549805)
    x = min(max(x, -lim), lim)
    x2 = x * x
    p = np.float32(-2.76076847742355e-16)
    p = p * x2 + np.float32(2.00018790482477e-13)
    p = p * x2 + np.float32(-8.60467152213735e-11)
    p = p * x2 + np.float32(5.12229709037114e-08)
    p = p * x2 + np.float32(1.48572235717979e-05)
    p = p * x2 + np.float32(6.37261928875436e-04)
    p = p * x2 + np.float32(4.89352455891786e-03)
    q = np.float32(1.19825839466702e-06)
    q = q * x2 + np.float32(1.18534705686654e-04)
    q = q * x2 + np.float32(2.26843463243900e-03)
    q = q * x2 + np.float32(4.89352518554385e-03)
    return x * p / q


@njit(cache=True, inline="always")
def _sig32(x):
    """sigma(x) = 1/2 + tanh(x/2)/2 in float32 arithmetic (:func:`_tanh32`)."""
    half = np.float32(0.5)
    return half + half * _tanh32(half * x)


# The sequence kernels work gate-major (see the module docstring). They are compiled with
# error_model="numpy": no ZeroDivisionError branch in the rational tanh's division, which would
# keep the loops from vectorizing.

@njit(cache=True, nogil=True, inline="always")
def _transpose(g, b, to_batch):
    """b[k, j] = g[j, k] (``to_batch``) or g[j, k] = b[k, j]: g (H, n) gate-major, b (n, H) rows
    of a batch-major array. Eight rows of b at a time, each walked along j: 0.3 ns an element
    where one row at a time took 0.8 (to b) and 1.6 (to g)."""
    hid, n = g.shape
    k0 = 0
    while k0 + 8 <= n:
        rows = (b[k0], b[k0 + 1], b[k0 + 2], b[k0 + 3], b[k0 + 4], b[k0 + 5], b[k0 + 6],
                b[k0 + 7])
        for j in range(hid):
            gj = g[j]
            if to_batch:
                for q in range(8):
                    rows[q][j] = gj[k0 + q]
            else:
                for q in range(8):
                    gj[k0 + q] = rows[q][j]
        k0 += 8
    for k in range(k0, n):
        r = b[k]
        for j in range(hid):
            if to_batch:
                r[j] = g[j, k]
            else:
                g[j, k] = r[j]


@njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")
def _forward_slice(acts, add_acts, b, w, x, h0, c, hs, cs, lo, fast):
    """The time loop of the forward for the batch columns lo .. lo+n.

    acts: (T, 4H, N), on exit the gate activations i, f, g, o (columns lo .. lo+n); on entry
    added to the pre-activations if ``add_acts`` (given input projections), else not read;
    b: (4H,) the summed biases; w: (4H, H + I) = [W_hh | W_ih]; x: (T, N, I) the inputs (I may
    be 0); h0, c: (H, n) this slice's initial state, transposed (c updated in place to c_T);
    hs, cs: (T, N, H) outputs (rows lo .. lo+n written). ``fast``: float32 rational
    sigmoid/tanh (:func:`_tanh32`), else libm.

    Each step is one GEMM [W_hh | W_ih] [h_{t-1}; x_t]: the input projection rides along in
    the recurrent product ((4H, H + I) x (H + I, n)) instead of a separate batched GEMM whose
    (T, 4H, N) result goes through memory (one thread, T 64, N 32, I 32, H 256: forward 16.8
    ms against 18.2)."""
    steps, h4, _ = acts.shape
    hid, n = h0.shape
    n_in = x.shape[2]
    z = np.empty((h4, n), dtype=acts.dtype)
    hx = np.empty((hid + n_in, n), dtype=acts.dtype)   # [h_{t-1}; x_t], gate-major
    for j in range(hid):
        for k in range(n):
            hx[j, k] = h0[j, k]
    for t in range(steps):
        if n_in > 0:
            _transpose(hx[hid:], x[t, lo:lo + n], False)
        np.dot(w, hx, z)                                # one GEMM per step
        a = acts[t]
        if add_acts:
            for r in range(h4):
                ar = a[r, lo:lo + n]
                zr = z[r]
                for k in range(n):
                    zr[k] += ar[k]
        for r in range(h4):                             # the four nonlinearities
            ar = a[r, lo:lo + n]        # a unit-stride view indexed from 0: with a[r, lo + k]
                                        # (an index Numba must check for < 0) or a row of a
                                        # 2-D slice (stride unknown) the loop does not vectorize
            zr = z[r]
            br = b[r]
            cell = 2 * hid <= r < 3 * hid
            if fast and cell:
                for k in range(n):
                    ar[k] = _tanh32(zr[k] + br)
            elif fast:
                for k in range(n):
                    ar[k] = _sig32(zr[k] + br)
            elif cell:
                for k in range(n):
                    ar[k] = math.tanh(zr[k] + br)
            else:
                for k in range(n):
                    ar[k] = _sigmoid(zr[k] + br)
        for j in range(hid):                            # c_t = f c_{t-1} + i g; h_t = o tanh(c_t)
            ai = a[j, lo:lo + n]
            af = a[hid + j, lo:lo + n]
            ag = a[2 * hid + j, lo:lo + n]
            ao = a[3 * hid + j, lo:lo + n]
            cj = c[j]
            hj = hx[j]
            if fast:
                for k in range(n):
                    cn = af[k] * cj[k] + ai[k] * ag[k]
                    cj[k] = cn
                    hj[k] = ao[k] * _tanh32(cn)
            else:
                for k in range(n):
                    cn = af[k] * cj[k] + ai[k] * ag[k]
                    cj[k] = cn
                    hj[k] = ao[k] * math.tanh(cn)
        _transpose(hx[:hid], hs[t, lo:lo + n], True)    # into the (T, N, H) outputs
        _transpose(c, cs[t, lo:lo + n], True)


@njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")
def _backward_slice(dhs, acts, cs, c0, w_hh_t, dh, dc, dz, lo, fast):
    """The time loop of the backward for the batch columns lo .. lo+n.

    dhs: (T, N, H) gradients reaching h_1..h_T; acts: (T, 4H, N) gate activations; cs:
    (T, N, H); c0: (N, H); w_hh_t: (H, 4H) = W_hh^T; dh: (H, n) zeros on entry, on exit the
    gradient reaching h_0 (transposed); dc: (H, n) on entry the gradient reaching c_T, on exit
    the one reaching c_0 (transposed); dz: (4H, T, N) output, gate-major over all steps (columns
    lo .. lo+n), so that the weight and input gradients are single GEMMs over (4H, T N)."""
    steps, h4, _ = acts.shape
    hid, n = dc.shape
    one = np.float32(1.0)                               # exact in either dtype: no promotion
    g = np.empty((h4, n), dtype=acts.dtype)             # dz_t, gate-major
    c_t = np.empty((hid, n), dtype=acts.dtype)
    c_p = np.empty((hid, n), dtype=acts.dtype)
    dh_out = np.empty((hid, n), dtype=acts.dtype)
    _transpose(c_t, cs[steps - 1, lo:lo + n], False)
    for t in range(steps - 1, -1, -1):
        _transpose(c_p, cs[t - 1, lo:lo + n] if t > 0 else c0[lo:lo + n], False)  # c_{t-1}
        _transpose(dh_out, dhs[t, lo:lo + n], False)                             # dL/dh_t
        a = acts[t]
        for j in range(hid):
            ai = a[j, lo:lo + n]        # unit-stride views (see _forward_slice)
            af = a[hid + j, lo:lo + n]
            ag = a[2 * hid + j, lo:lo + n]
            ao = a[3 * hid + j, lo:lo + n]
            gi = g[j]
            gf = g[hid + j]
            gg = g[2 * hid + j]
            go = g[3 * hid + j]
            ctj = c_t[j]
            cpj = c_p[j]
            dhj = dh_out[j]
            drj = dh[j]
            dcj = dc[j]
            for k in range(n):
                ig = ai[k]
                fg = af[k]
                cg = ag[k]
                og = ao[k]
                tck = _tanh32(ctj[k]) if fast else math.tanh(ctj[k])   # recomputed
                d = dhj[k] + drj[k]
                dct = dcj[k] + d * og * (one - tck * tck)
                gi[k] = dct * cg * ig * (one - ig)
                gf[k] = dct * cpj[k] * fg * (one - fg)
                gg[k] = dct * ig * (one - cg * cg)
                go[k] = d * tck * og * (one - og)
                dcj[k] = dct * fg
        np.dot(w_hh_t, g, dh)                           # dz_t W_hh: one GEMM per step
        for r in range(h4):                             # into the (4H, T, N) output
            dzr = dz[r, t, lo:lo + n]
            gr = g[r]
            for k in range(n):
                dzr[k] = gr[k]
        c_t, c_p = c_p, c_t


# Samples per batch slice below which the recurrence is not split across cores: a slice's
# per-step GEMM (4H, H) x (H, rows) gets inefficient with very few rows.
_MIN_SLICE_ROWS = 8


def _batch_slices(n_batch):
    """Contiguous [start, stop) batch ranges, one per idle core (fewer for small batches or
    a loaded machine, see ``_threads.idle_cores``). The samples of a batch are independent
    through the whole recurrence, so each slice runs its own time loop with no
    synchronization (``_threads.run_pieces``)."""
    parts = max(1, min(idle_cores(), n_batch // _MIN_SLICE_ROWS))
    bounds = [n_batch * k // parts for k in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _run_forward(acts, add_acts, b, w, x, h0, c0, fast):
    """The recurrence (see :func:`_forward_slice`) into ``acts`` (T, 4H, N); returns hs, cs
    (T, N, H)."""
    steps, h4, n_batch = acts.shape
    hs = np.empty((steps, n_batch, h4 // 4), dtype=acts.dtype)
    cs = np.empty_like(hs)

    def piece(bounds):
        a, z = bounds
        _forward_slice(acts, add_acts, b, w, x, h0[a:z].T.copy(), c0[a:z].T.copy(), hs, cs, a,
                       bool(fast))

    with one_blas_thread():
        run_pieces(piece, _batch_slices(n_batch))
    return hs, cs


def lstm_recurrence_forward(xg, h0, c0, w_hh_t, fast=False):
    """The recurrence over a whole sequence, input projections given.

    xg: (T, N, 4H) input projections W_ih x_t + b_ih + b_hh; h0, c0: (N, H);
    w_hh_t: (H, 4H), the transpose of weight_hh; ``fast``: rational sigmoid/tanh in float32
    arithmetic (for float32, see :func:`_tanh32`) instead of libm.
    Returns hs (T, N, H) (the outputs h_1..h_T), cs (T, N, H) (c_1..c_T) and acts (T, N, 4H)
    (the gate activations i, f, g, o after their nonlinearities, for the backward; a view of a
    gate-major (T, 4H, N) array). Slices of the batch run on all cores (see
    :func:`_batch_slices`); the result does not depend on the split.
    """
    steps, n_batch, h4 = xg.shape
    acts = xg.transpose(0, 2, 1).copy()                         # (T, 4H, N), never the caller's
    hs, cs = _run_forward(acts, True, np.zeros(h4, dtype=xg.dtype),
                          np.ascontiguousarray(w_hh_t.T), np.empty((steps, n_batch, 0), xg.dtype),
                          h0, c0, fast)
    return hs, cs, acts.transpose(0, 2, 1)


def _run_backward(dhs, dc_last, acts, cs, c0, w_hh, fast):
    """BPTT on the forward's arrays; returns dz gate-major (4H, T, N), dh0 and dc0 (N, H)."""
    steps, n_batch, hid = dhs.shape
    acts = np.ascontiguousarray(acts.transpose(0, 2, 1))        # (T, 4H, N): no copy for ours
    dhs, cs, c0 = (np.ascontiguousarray(v) for v in (dhs, cs, c0))
    w_hh_t = np.ascontiguousarray(w_hh.T)                       # (H, 4H)
    dz = np.empty((4 * hid, steps, n_batch), dtype=dhs.dtype)
    dh0 = np.empty((n_batch, hid), dtype=dhs.dtype)
    dc0 = np.empty((n_batch, hid), dtype=dhs.dtype)

    def piece(bounds):
        a, z = bounds
        dh = np.zeros((hid, z - a), dtype=dhs.dtype)
        dc = dc_last[a:z].T.copy()
        _backward_slice(dhs, acts, cs, c0, w_hh_t, dh, dc, dz, a, bool(fast))
        dh0[a:z] = dh.T
        dc0[a:z] = dc.T

    with one_blas_thread():
        run_pieces(piece, _batch_slices(n_batch))
    return dz, dh0, dc0


def lstm_recurrence_backward(dhs, dc_last, acts, cs, c0, w_hh, fast=False):
    """Backward through time of :func:`lstm_recurrence_forward`.

    dhs: (T, N, H) gradients reaching the outputs h_1..h_T; dc_last: (N, H) the gradient
    reaching c_T; acts, cs: as returned by the forward; c0: (N, H); w_hh: (4H, H); ``fast`` as
    in the forward (tanh(c_t) is recomputed with the same function). Returns dz (T, N, 4H) (the
    gradient of the pre-activations, i.e. of xg), dh0 and dc0 (N, H). Batch slices on all
    cores, as in the forward.
    """
    dz, dh0, dc0 = _run_backward(dhs, dc_last, acts, cs, c0, w_hh, fast)
    return np.ascontiguousarray(dz.transpose(1, 2, 0)), dh0, dc0


def lstm_sequence_forward(x, h0, c0, w_ih, w_hh, b):
    """Whole-sequence LSTM forward, one kernel call; each step one GEMM [W_hh | W_ih] [h; x_t]
    (the input projection is not hoisted out of the loop as a separate GEMM: inside the
    step's product it costs less than its own pass through memory, see :func:`_forward_slice`).

    x: (T, N, I); h0, c0: (N, H); w_ih: (4H, I); w_hh: (4H, H); b: (4H,) (b_ih + b_hh).
    Returns hs, cs (T, N, H) and acts (T, N, 4H) (see :func:`lstm_recurrence_forward`).
    """
    steps, n_batch, _ = x.shape
    acts = np.empty((steps, w_hh.shape[0], n_batch), dtype=x.dtype)      # (T, 4H, N)
    hs, cs = _run_forward(acts, False, np.ascontiguousarray(b), np.concatenate((w_hh, w_ih), 1),
                          np.ascontiguousarray(x), h0, c0, x.dtype == np.float32)
    return hs, cs, acts.transpose(0, 2, 1)


def lstm_sequence_backward(dhs, dc_last, x, h0, c0, w_ih, w_hh, hs, cs, acts):
    """Gradients of a whole-sequence LSTM (see :func:`lstm_sequence_forward`).

    Returns dx (T, N, I), dh0, dc0 (N, H), dw_ih (4H, I), dw_hh (4H, H), db (4H,) where db is
    the gradient of each of b_ih and b_hh. The weight and input gradients are single GEMMs over
    all steps ((4H, T N) x (T N, .)), outside the time loop.
    """
    steps, n_batch, n_in = x.shape
    hid = h0.shape[1]
    dz, dh0, dc0 = _run_backward(dhs, dc_last, acts, cs, c0, w_hh, dhs.dtype == np.float32)
    dz2 = dz.reshape(4 * hid, steps * n_batch)                  # (4H, T N), gate-major
    dw_hh = np.matmul(dz2[:, :n_batch], h0)                     # dz_1 h_0^T ...
    if steps > 1:                                               # ... + sum_{t>1} dz_t h_{t-1}^T
        dw_hh += np.matmul(dz2[:, n_batch:], hs[:-1].reshape(-1, hid))
    dw_ih = np.matmul(dz2, x.reshape(steps * n_batch, n_in))    # (4H, I)
    dx = np.matmul(dz2.T, w_ih).reshape(steps, n_batch, n_in)
    db = dz2.sum(axis=1)
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
