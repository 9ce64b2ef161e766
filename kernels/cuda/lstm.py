"""CUDA LSTM kernels: fused gate kernels (``lstm.cu``) around cuBLAS GEMMs (CuPy).

The same functions as :mod:`tinygen.kernels.cpu.lstm`, with the same signatures and results, on
device arrays. Gate layout and equations: see that module and ``lstm.cu``. Per time step:

* forward: one GEMM ``h_{t-1} W_hh^T`` (N, 4H) and one fused kernel (gates, c_t, h_t);
* backward through time: one fused kernel (gate gradients dz_t, dc_{t-1}) and one GEMM
  ``dz_t W_hh`` (the gradient reaching h_{t-1});

or, with :data:`RECURRENCE` ``"sequence"`` (the default, for the sizes :func:`_whole_sequence`
admits), the whole time loop in one launch each way, one block per sample doing its own
matrix-vector products: two Python-side launches per step are expected to cost more than the
step's arithmetic at char-rnn's sizes (an estimate; the benchmark measures both on a GPU). The
input projections and the weight gradients are single GEMMs over all steps, as on the CPU.
PixelRNN's convolutional LSTM fuses its 1-D state convolution into the gate kernels (one launch
per step each way) and sums the state kernel's gradient in one launch after the loop.

``fast`` is accepted for the CPU kernels' signature and ignored: the GPU kernels use the CUDA
math library's tanh/exp in both precisions (float32 ``tanhf``/``expf`` are accurate to a few
ulp, the CPU's rational tanh to 2.4e-7 absolute).
"""
from __future__ import annotations

from . import _grid, _runtime
from ._grid import i32 as _i32

__all__ = ["lstm_cell_forward", "lstm_recurrence_forward", "lstm_recurrence_backward",
           "lstm_sequence_forward", "lstm_sequence_backward", "conv_lstm_forward",
           "conv_lstm_backward"]

_SOURCE = "lstm.cu"

#: How :func:`lstm_recurrence_forward` / :func:`lstm_recurrence_backward` run the time loop:
#: ``"sequence"`` (one launch each way, kernels ``lstm_seq_*``, where :func:`_whole_sequence`
#: admits the sizes, else per step) or ``"step"`` (a cuBLAS GEMM and a fused gate kernel per step,
#: kernels ``lstm_step_*``). Both give the same results; benchmarks/bench_cuda_conv.py times both.
RECURRENCE = "sequence"
MAX_SEQUENCE_HIDDEN = 512      # H bound of the whole-sequence kernels (see _whole_sequence)
_KERNEL_MAX_HIDDEN = 1024      # TG_LSTM_MAX_HID of lstm.cu: their shared memory holds H values
MAX_SEQUENCE_WORK = 1 << 25    # N * H^2 bound of the whole-sequence kernels
SEQUENCE_THREADS = 256         # threads per block of the whole-sequence kernels (at most)


def _launch(name, dtype, total, args):
    _grid.launch(_SOURCE, name, dtype, total, args)


def _whole_sequence(n_batch, hid):
    """Whether the recurrence runs as one launch per direction (see :data:`RECURRENCE`).

    Each block of the whole-sequence kernels reads all of W_hh (16 H^2 bytes in float32) from L2
    once per step; a step of the per-step path costs a cuBLAS GEMM plus an estimated ~30 us of
    Python and launch overhead. At ~100 bytes per clock per SM (an estimate, not a measurement:
    no GPU was at hand) the block's read takes ~6 us at H = 256, ~23 us at H = 512 and ~90 us
    at H = 1024, and once the N blocks outnumber the SMs they share L2 bandwidth. Hence the bounds
    H <= :data:`MAX_SEQUENCE_HIDDEN` and N H^2 <= :data:`MAX_SEQUENCE_WORK`, to be replaced by
    the crossover benchmarks/bench_cuda_conv.py measures on a GPU.
    """
    if RECURRENCE not in ("sequence", "step"):
        raise ValueError(f"kernels.cuda.lstm.RECURRENCE must be 'sequence' or 'step', got "
                         f"{RECURRENCE!r}")
    return (RECURRENCE == "sequence" and hid <= min(MAX_SEQUENCE_HIDDEN, _KERNEL_MAX_HIDDEN) and
            n_batch * hid * hid <= MAX_SEQUENCE_WORK)


def _launch_per_sample(name, dtype, n_batch, hid, args):
    """One block per sample (grid-stride over the batch), threads over the hidden units."""
    if n_batch <= 0 or hid <= 0:
        return
    threads = min(SEQUENCE_THREADS, 32 * ((hid + 31) // 32))
    blocks = min(n_batch, _grid.MAX_BLOCKS)
    _runtime.launch(_SOURCE, _runtime.variant(name, dtype), (blocks,), (threads,), args)


def _check_shapes(op, **arrays):
    """Each keyword is ``name=(array, expected shape)``: a kernel given arrays of other shapes
    would read or write outside them on a GPU, so any mismatch is a ValueError naming them."""
    bad = [f"{name} {tuple(a.shape)} (expected {tuple(shape)})"
           for name, (a, shape) in arrays.items() if tuple(a.shape) != tuple(shape)]
    if bad:
        raise ValueError(f"{op}: " + ", ".join(bad))


def lstm_cell_forward(z, c_prev):
    """One LSTM step from its pre-activations.

    z: (N, 4H) pre-activations (i, f, g, o blocks); c_prev: (N, H).
    Returns (h, c) of shape (N, H) each.
    """
    cp = _runtime.cupy()
    dtype = _grid.same_dtype("lstm_cell_forward", z, c_prev)
    _check_shapes("lstm_cell_forward", z=(z, (c_prev.shape[0], 4 * c_prev.shape[-1])))
    z, c_prev = cp.ascontiguousarray(z), cp.ascontiguousarray(c_prev)
    n_batch, hid = c_prev.shape
    h = cp.empty((n_batch, hid), dtype=dtype)
    c = cp.empty((n_batch, hid), dtype=dtype)
    _launch("lstm_cell_forward", dtype, n_batch * hid, (z, c_prev, h, c) + _i32(n_batch, hid))
    return h, c


def lstm_recurrence_forward(xg, h0, c0, w_hh_t, fast=False):
    """The recurrence over a whole sequence, input projections given.

    xg: (T, N, 4H) input projections W_ih x_t + b_ih + b_hh; h0, c0: (N, H); w_hh_t: (H, 4H),
    the transpose of weight_hh; ``fast``: ignored (see the module docstring).
    Returns hs (T, N, H) (the outputs h_1..h_T), cs (T, N, H) (c_1..c_T) and acts (T, N, 4H)
    (the gate activations i, f, g, o after their nonlinearities, for the backward).
    """
    cp = _runtime.cupy()
    dtype = _grid.same_dtype("lstm_recurrence_forward", xg, h0, c0, w_hh_t)
    xg, c0 = cp.ascontiguousarray(xg), cp.ascontiguousarray(c0)
    steps, n_batch, h4 = xg.shape
    hid = h4 // 4
    _check_shapes("lstm_recurrence_forward", xg=(xg, (steps, n_batch, 4 * hid)),
                  h0=(h0, (n_batch, hid)), c0=(c0, (n_batch, hid)), w_hh_t=(w_hh_t, (hid, h4)))
    hs = cp.empty((steps, n_batch, hid), dtype=dtype)
    cs = cp.empty((steps, n_batch, hid), dtype=dtype)
    acts = cp.empty((steps, n_batch, h4), dtype=dtype)
    if _whole_sequence(n_batch, hid):
        _launch_per_sample("lstm_seq_forward", dtype, n_batch, hid,
                           (xg, cp.ascontiguousarray(h0), c0, cp.ascontiguousarray(w_hh_t), hs,
                            cs, acts) + _i32(steps, n_batch, hid))
        return hs, cs, acts
    h, c = h0, c0
    for t in range(steps):
        zh = cp.ascontiguousarray(cp.matmul(h, w_hh_t))                 # (N, 4H)
        _launch("lstm_step_forward", dtype, n_batch * hid,
                (xg[t], zh, c, acts[t], cs[t], hs[t]) + _i32(n_batch, hid))
        h, c = hs[t], cs[t]
    return hs, cs, acts


def lstm_recurrence_backward(dhs, dc_last, acts, cs, c0, w_hh, fast=False):
    """Backward through time of :func:`lstm_recurrence_forward`.

    dhs: (T, N, H) gradients reaching the outputs h_1..h_T; dc_last: (N, H) the gradient
    reaching c_T; acts, cs: as returned by the forward; c0: (N, H); w_hh: (4H, H); ``fast``:
    ignored. Returns dz (T, N, 4H) (the gradient of the pre-activations, i.e. of xg), dh0 and
    dc0 (N, H).
    """
    cp = _runtime.cupy()
    dtype = _grid.same_dtype("lstm_recurrence_backward", dhs, dc_last, acts, cs, c0, w_hh)
    dhs, acts, cs = (cp.ascontiguousarray(a) for a in (dhs, acts, cs))
    c0 = cp.ascontiguousarray(c0)
    steps, n_batch, hid = dhs.shape
    state = (n_batch, hid)
    _check_shapes("lstm_recurrence_backward", dc_last=(dc_last, state),
                  acts=(acts, (steps, n_batch, 4 * hid)), cs=(cs, dhs.shape), c0=(c0, state),
                  w_hh=(w_hh, (4 * hid, hid)))
    dz = cp.empty((steps, n_batch, 4 * hid), dtype=dtype)
    dc = cp.ascontiguousarray(dc_last).copy()                           # updated in place
    if _whole_sequence(n_batch, hid) and steps > 0:
        dh0 = cp.empty((n_batch, hid), dtype=dtype)
        _launch_per_sample("lstm_seq_backward", dtype, n_batch, hid,
                           (dhs, acts, cs, c0, cp.ascontiguousarray(w_hh), dc, dz, dh0)
                           + _i32(steps, n_batch, hid))
        return dz, dh0, dc
    dh_rec = None                                                       # dz_{t+1} W_hh (N, H)
    for t in range(steps - 1, -1, -1):
        c_prev = cs[t - 1] if t > 0 else c0
        has_rec = dh_rec is not None
        _launch("lstm_step_backward", dtype, n_batch * hid,
                (dhs[t], dh_rec if has_rec else dhs[t], acts[t], cs[t], c_prev, dc, dz[t])
                + _i32(n_batch, hid, has_rec))
        dh_rec = cp.ascontiguousarray(cp.matmul(dz[t], w_hh))           # (N, H)
    if dh_rec is None:                                                  # T = 0
        dh_rec = cp.zeros((n_batch, hid), dtype=dtype)
    return dz, dh_rec, dc


def lstm_sequence_forward(x, h0, c0, w_ih, w_hh, b):
    """Whole-sequence LSTM forward with the input projection hoisted out of the loop.

    x: (T, N, I); h0, c0: (N, H); w_ih: (4H, I); w_hh: (4H, H); b: (4H,) (b_ih + b_hh).
    Returns hs, cs (T, N, H) and acts (T, N, 4H) (see :func:`lstm_recurrence_forward`).
    """
    cp = _runtime.cupy()
    _grid.same_dtype("lstm_sequence_forward", x, h0, c0, w_ih, w_hh, b)
    steps, n_batch, n_in = x.shape
    x2 = cp.ascontiguousarray(x).reshape(steps * n_batch, n_in)        # (T N, I)
    xg = cp.matmul(x2, w_ih.T)                                          # one GEMM for all steps
    xg += b
    xg = xg.reshape(steps, n_batch, w_ih.shape[0])                      # (T, N, 4H)
    return lstm_recurrence_forward(xg, h0, c0, w_hh.T)


def lstm_sequence_backward(dhs, dc_last, x, h0, c0, w_ih, w_hh, hs, cs, acts):
    """Gradients of a whole-sequence LSTM (see :func:`lstm_sequence_forward`).

    Returns dx (T, N, I), dh0, dc0 (N, H), dw_ih (4H, I), dw_hh (4H, H), db (4H,) where db is
    the gradient of each of b_ih and b_hh.
    """
    cp = _runtime.cupy()
    steps, n_batch, n_in = x.shape
    hid = h0.shape[1]
    dz, dh0, dc0 = lstm_recurrence_backward(dhs, dc_last, acts, cs, c0, w_hh)
    dz2 = dz.reshape(steps * n_batch, 4 * hid)                          # (T N, 4H)
    h_prev = cp.concatenate((h0[None], hs[:-1]), axis=0).reshape(steps * n_batch, hid)
    dw_hh = cp.matmul(dz2.T, h_prev)                                    # sum_t dz_t^T h_{t-1}
    x2 = cp.ascontiguousarray(x).reshape(steps * n_batch, n_in)
    dw_ih = cp.matmul(dz2.T, x2)                                        # (4H, I)
    dx = cp.matmul(dz2, w_ih).reshape(steps, n_batch, n_in)
    db = dz2.sum(axis=0)
    return dx, dh0, dc0, dw_ih, dw_hh, db


# -- LSTM whose state-to-state map is a 1-D convolution (PixelRNN) ---------------------------------
def _conv_lstm_sizes(xg, kernel):
    steps, n_batch, g4, length = xg.shape
    return steps, n_batch, g4 // 4, length, kernel.shape[2]


def _check_anchor(op, anchor, taps):
    if not 0 <= anchor < taps:
        raise ValueError(f"{op}: anchor must be a tap index in [0, {taps}), got {anchor}")


def conv_lstm_forward(xg, kernel, anchor, fast=False):
    """LSTM over T steps whose state is a line of L positions with h channels, the state-to-state
    map a 1-D convolution (PixelRNN's Row LSTM and Diagonal BiLSTM), h_0 = c_0 = 0:

        z_t = xg_t + kernel * h_{t-1},   tap t of the kernel reading position p + t - anchor.

    xg: (T, N, 4h, L) input-to-state pre-activations (biases included); kernel: (4h, h, k);
    ``fast``: ignored. Returns hs, cs (T, N, h, L) and acts (T, N, 4h, L).
    """
    cp = _runtime.cupy()
    dtype = _grid.same_dtype("conv_lstm_forward", xg, kernel)
    xg, kernel = cp.ascontiguousarray(xg), cp.ascontiguousarray(kernel)
    steps, n_batch, hid, length, taps = _conv_lstm_sizes(xg, kernel)
    _check_shapes("conv_lstm_forward", xg=(xg, (steps, n_batch, 4 * hid, length)),
                  kernel=(kernel, (4 * hid, hid, taps)))
    _check_anchor("conv_lstm_forward", anchor, taps)
    hs = cp.empty((steps, n_batch, hid, length), dtype=dtype)
    cs = cp.empty((steps, n_batch, hid, length), dtype=dtype)
    acts = cp.empty(xg.shape, dtype=dtype)
    for t in range(steps):
        first = t == 0
        h_prev, c_prev = (xg[t], xg[t]) if first else (hs[t - 1], cs[t - 1])  # not read at t = 0
        _launch("conv_lstm_step_forward", dtype, n_batch * hid * length,
                (xg[t], h_prev, c_prev, kernel, acts[t], cs[t], hs[t])
                + _i32(n_batch, hid, length, taps, anchor, first))
    return hs, cs, acts


def conv_lstm_backward(dhs, acts, cs, hs, kernel, anchor, fast=False):
    """Backward through time of :func:`conv_lstm_forward`.

    dhs: (T, N, h, L) gradients reaching the outputs; acts, cs, hs: from the forward;
    kernel: (4h, h, k); ``fast``: ignored. Returns dxg (T, N, 4h, L) and dkernel (4h, h, k).
    """
    cp = _runtime.cupy()
    dtype = _grid.same_dtype("conv_lstm_backward", dhs, acts, cs, hs, kernel)
    dhs, acts, cs, hs, kernel = (cp.ascontiguousarray(a) for a in (dhs, acts, cs, hs, kernel))
    steps, n_batch, hid, length, taps = _conv_lstm_sizes(acts, kernel)
    state = (steps, n_batch, hid, length)
    _check_shapes("conv_lstm_backward", dhs=(dhs, state), cs=(cs, state), hs=(hs, state),
                  acts=(acts, (steps, n_batch, 4 * hid, length)),
                  kernel=(kernel, (4 * hid, hid, taps)))
    _check_anchor("conv_lstm_backward", anchor, taps)
    dz = cp.empty(acts.shape, dtype=dtype)
    dc = cp.zeros((n_batch, hid, length), dtype=dtype)
    for t in range(steps - 1, -1, -1):
        has_next, first = t < steps - 1, t == 0
        dz_next = dz[t + 1] if has_next else acts[t]                    # not read at t = T-1
        c_prev = cs[t - 1] if not first else cs[t]                      # not read at t = 0
        _launch("conv_lstm_step_backward", dtype, n_batch * hid * length,
                (dhs[t], dz_next, kernel, acts[t], cs[t], c_prev, dc, dz[t])
                + _i32(n_batch, hid, length, taps, anchor, has_next, first))
    dkernel = cp.empty(kernel.shape, dtype=dtype)
    _launch("conv_lstm_kernel_grad", dtype, kernel.size,
            (dz, hs, dkernel) + _i32(steps, n_batch, hid, length, taps, anchor))
    return dz, dkernel
