"""LSTM ops with PyTorch's gate layout (van den Oord et al. 2016 use the same cell in PixelRNN).

Weights as in ``torch.nn.LSTM``: ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih`` and
``bias_hh`` (4H,), the 4H rows in the gate order i, f, g, o:

    z = W_ih x + b_ih + W_hh h + b_hh
    i = sigma(z_i), f = sigma(z_f), g = tanh(z_g), o = sigma(z_o)
    c' = f * c + i * g,      h' = o * tanh(c')

Three primitives:

* ``LSTMCellFn(z, c)``: one step from the pre-activations (the affine part is the differentiable
  ``linear``); its backward is written with differentiable ops, so double backward works.
* ``LSTMSequenceFn(x, h0, c0, W_ih, W_hh, b_ih, b_hh)``: a whole sequence as one fused kernel
  call (``lstm_sequence_forward`` of the ``lstm`` kernel family, input projections hoisted out of
  the time loop as one GEMM) and one backward-through-time kernel call.
* ``LSTMRecurrenceFn(xg, h0, c0, W_hh)``: the same recurrence when the input projections ``xg``
  are computed by something else (PixelRNN's masked convolutions).
* ``ConvLSTMRecurrenceFn(xg, K)``: the recurrence of PixelRNN's Row LSTM / Diagonal BiLSTM, whose
  state is a line of L positions with h channels and whose state-to-state map is a 1-D
  convolution K (4h, h, k) over that line (the same numbers as ``LSTMRecurrenceFn`` with the
  banded (4hL, hL) matrix of K, without the multiplications by its zeros).

The sequence ops' backward is the BPTT kernel, not made of differentiable ops: **double backward
through** :func:`lstm` **and** :func:`lstm_recurrence` **is not supported** and raises a
``RuntimeError`` when attempted (``create_graph=True``); use :func:`lstm_cell` step by step for
higher derivatives. The sequence ops have two outputs, the states (T, N, H) and the last cell
state c_T (N, H). Kernels come from the ``lstm`` family of :mod:`tinygen.kernels`, chosen by the
arrays' device.
"""
from __future__ import annotations

import numpy as np

from .. import kernels
from ..autograd import Function, is_grad_enabled
from ..backend import get_array_module
from ..tensor import Tensor
from ._util import check_tensor
from .linalg import linear
from .shape import cat

__all__ = ["lstm_cell", "lstm", "lstm_recurrence", "conv_lstm_recurrence"]


class LSTMCellFn(Function):
    """(z (N, 4H), c (N, H)) -> (h', c'), each (N, H)."""

    def forward(self, z, c):
        xp = get_array_module(z)
        return kernels.for_arrays("lstm", z, c).lstm_cell_forward(xp.ascontiguousarray(z),
                                                                  xp.ascontiguousarray(c))

    def backward(self, gh, gc):
        z, c = self.saved_input(0), self.saved_input(1)
        hid = c.shape[-1]
        if gh is None:          # only c' was used
            gh = c.detach() * 0.0
        if gc is None:          # only h' was used
            gc = c.detach() * 0.0
        i = z[:, :hid].sigmoid()
        f = z[:, hid:2 * hid].sigmoid()
        gg = z[:, 2 * hid:3 * hid].tanh()
        o = z[:, 3 * hid:].sigmoid()
        tc = (f * c + i * gg).tanh()                       # tanh(c')
        dc = gc + gh * o * (1.0 - tc * tc)                 # total gradient reaching c'
        dz = cat([dc * gg * i * (1.0 - i),                 # dz_i
                  dc * c * f * (1.0 - f),                  # dz_f
                  dc * i * (1.0 - gg * gg),                # dz_g
                  gh * tc * o * (1.0 - o)], dim=1)         # dz_o
        return dz, dc * f


def _no_double_backward(name):
    if is_grad_enabled():
        raise RuntimeError(
            f"{name}: double backward (create_graph=True) through the fused LSTM sequence "
            f"kernel is not supported; its backward is the BPTT kernel. Use "
            f"tinygen.functional.lstm_cell step by step if you need higher derivatives")


def _zeros_if_none(g, shape, like):
    xp = get_array_module(like)
    return xp.zeros(shape, dtype=like.dtype) if g is None else xp.ascontiguousarray(g.array)


class LSTMRecurrenceFn(Function):
    """(xg (T, N, 4H), h0, c0 (N, H), W_hh (4H, H)) -> (h_1..h_T (T, N, H), c_T (N, H))."""

    def forward(self, xg, h0, c0, w_hh):
        xp = get_array_module(xg)
        self.k = kernels.for_arrays("lstm", xg, h0, c0, w_hh)
        hs, cs, acts = self.k.lstm_recurrence_forward(
            xp.ascontiguousarray(xg), xp.ascontiguousarray(h0), xp.ascontiguousarray(c0),
            xp.ascontiguousarray(w_hh.T), xg.dtype == np.float32)
        self.hs, self.cs, self.acts = hs, cs, acts
        return hs, cs[-1]

    def backward(self, g_hs, g_c):
        _no_double_backward("lstm_recurrence")
        xg, h0, c0, w_hh = (self.saved_input(k).array for k in range(4))
        xp = get_array_module(xg)
        steps, n_batch, hid = self.hs.shape
        dz, dh0, dc0 = self.k.lstm_recurrence_backward(
            _zeros_if_none(g_hs, self.hs.shape, xg), _zeros_if_none(g_c, c0.shape, xg),
            self.acts, self.cs, xp.ascontiguousarray(c0), xp.ascontiguousarray(w_hh),
            xg.dtype == np.float32)
        dw_hh = None
        if self.needs_input_grad[3]:
            h_prev = xp.concatenate((h0[None], self.hs[:-1]), axis=0)     # (T, N, H)
            dw_hh = Tensor._wrap(dz.reshape(-1, 4 * hid).T @ h_prev.reshape(-1, hid))
        return Tensor._wrap(dz), Tensor._wrap(dh0), Tensor._wrap(dc0), dw_hh


class LSTMSequenceFn(Function):
    """(x (T, N, I), h0, c0, W_ih, W_hh, b_ih, b_hh) -> (h_1..h_T (T, N, H), c_T (N, H))."""

    def forward(self, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        xp = get_array_module(x)
        self.k = kernels.for_arrays("lstm", x, h0, c0, w_ih, w_hh)
        hs, cs, acts = self.k.lstm_sequence_forward(xp.ascontiguousarray(x), h0, c0, w_ih,
                                                    w_hh, b_ih + b_hh)
        self.hs, self.cs, self.acts = hs, cs, acts
        return hs, cs[-1]

    def backward(self, g_hs, g_c):
        _no_double_backward("lstm")
        x, h0, c0, w_ih, w_hh = (self.saved_input(k).array for k in range(5))
        xp = get_array_module(x)
        dx, dh0, dc0, dw_ih, dw_hh, db = self.k.lstm_sequence_backward(
            _zeros_if_none(g_hs, self.hs.shape, x), _zeros_if_none(g_c, c0.shape, x),
            xp.ascontiguousarray(x), xp.ascontiguousarray(h0), xp.ascontiguousarray(c0),
            xp.ascontiguousarray(w_ih), xp.ascontiguousarray(w_hh), self.hs, self.cs, self.acts)
        db = Tensor._wrap(db)
        return (Tensor._wrap(dx), Tensor._wrap(dh0), Tensor._wrap(dc0), Tensor._wrap(dw_ih),
                Tensor._wrap(dw_hh), db, db)


class ConvLSTMRecurrenceFn(Function):
    """(xg (N, 4h, A, B), K (4h, h, k)) -> hs (N, h, A, B), time along axis ``time_axis`` (2 or
    3), the line along the other spatial axis; h_0 = c_0 = 0. The kernels work in the layout
    (T, N, channels, L); inputs and gradients keep the caller's (N, C, A, B) layout, contiguous
    (so that the convolutions around it stay on their fast paths)."""

    def forward(self, xg, kernel, anchor, time_axis):
        xp = get_array_module(xg)
        self.k = kernels.for_arrays("lstm", xg, kernel)
        order = (2, 0, 1, 3) if time_axis == 2 else (3, 0, 1, 2)     # -> (T, N, 4h, L)
        hs, cs, acts = self.k.conv_lstm_forward(xp.ascontiguousarray(xg.transpose(order)),
                                                xp.ascontiguousarray(kernel), anchor,
                                                xg.dtype == np.float32)
        self.cs, self.acts, self.anchor, self.order = cs, acts, anchor, order
        self.hs = hs
        self.back = tuple(int(i) for i in np.argsort(order))       # (T, N, h, L) -> (N, h, A, B)
        return xp.ascontiguousarray(hs.transpose(self.back))

    def backward(self, g):
        _no_double_backward("conv_lstm_recurrence")
        kernel = self.saved_input(1).array
        xp = get_array_module(kernel)
        dz, dkernel = self.k.conv_lstm_backward(
            xp.ascontiguousarray(g.array.transpose(self.order)), self.acts, self.cs, self.hs,
            xp.ascontiguousarray(kernel), self.anchor, g.dtype == np.float32)
        return Tensor._wrap(xp.ascontiguousarray(dz.transpose(self.back))), Tensor._wrap(dkernel)


# -- argument checking ------------------------------------------------------------------------------
def _check_float(op, named):
    dtype, device = None, None
    for name, t in named:
        check_tensor(t, name)
        if t.dtype.kind != "f":
            raise TypeError(f"{op}: {name} must be floating point, got {t.dtype}")
        if dtype is None:
            dtype, device = t.dtype, t.device
        elif t.dtype != dtype:
            raise TypeError(f"{op}: {name} has dtype {t.dtype} but {named[0][0]} has {dtype}")
        if t.device != device:
            raise RuntimeError(f"{op}: {name} is on {t.device} but {named[0][0]} is on {device}")


def _check_weights(op, weight_ih, weight_hh, bias_ih, bias_hh, n_in=None):
    if weight_hh.ndim != 2 or weight_hh.shape[0] != 4 * weight_hh.shape[1] or \
            weight_hh.shape[1] < 1:
        raise ValueError(f"{op}: weight_hh must have shape (4H, H), got {tuple(weight_hh.shape)}")
    hid = weight_hh.shape[1]
    if weight_ih is not None:
        if weight_ih.ndim != 2 or weight_ih.shape[0] != 4 * hid or \
                (n_in is not None and weight_ih.shape[1] != n_in):
            raise ValueError(f"{op}: weight_ih must have shape (4H, I) = ({4 * hid}, "
                             f"{n_in if n_in is not None else 'I'}) for weight_hh of shape "
                             f"{tuple(weight_hh.shape)} and input size {n_in}, got "
                             f"{tuple(weight_ih.shape)}")
    for name, b in (("bias_ih", bias_ih), ("bias_hh", bias_hh)):
        if b is not None and tuple(b.shape) != (4 * hid,):
            raise ValueError(f"{op}: {name} must have shape ({4 * hid},) for hidden size {hid}, "
                             f"got {tuple(b.shape)}")
    return hid


def _state(op, hx, n_batch, hid, like):
    if hx is None:
        z = Tensor._wrap(like._xp.zeros((n_batch, hid), dtype=like.dtype))
        return z, z
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise ValueError(f"{op}: hx must be a pair (h, c) or None, got {type(hx).__name__}")
    h, c = hx
    for name, t in (("hx[0] (h)", h), ("hx[1] (c)", c)):
        check_tensor(t, name)
        if tuple(t.shape) != (n_batch, hid):
            raise ValueError(f"{op}: {name} must have shape ({n_batch}, {hid}) for a batch of "
                             f"{n_batch} and hidden size {hid}, got {tuple(t.shape)}")
    return h, c


def _bias(b, hid, like):
    return Tensor._wrap(like._xp.zeros(4 * hid, dtype=like.dtype)) if b is None else b


# -- public functions -------------------------------------------------------------------------------
def lstm_cell(input, hx, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One LSTM step (``torch.nn.LSTMCell``): input (N, I), hx = (h, c) each (N, H) or None
    (zeros). Returns ``(h', c')``, each (N, H). Differentiable to any order."""
    check_tensor(input, "input")
    if input.ndim != 2:
        raise ValueError(f"lstm_cell: input must have shape (N, I), got {tuple(input.shape)}")
    hid = _check_weights("lstm_cell", weight_ih, weight_hh, bias_ih, bias_hh, input.shape[1])
    h, c = _state("lstm_cell", hx, input.shape[0], hid, input)
    _check_float("lstm_cell", [("input", input), ("weight_ih", weight_ih),
                               ("weight_hh", weight_hh), ("h", h), ("c", c)] +
                 [(n, b) for n, b in (("bias_ih", bias_ih), ("bias_hh", bias_hh)) if b is not None])
    z = linear(input, weight_ih, bias_ih) + linear(h, weight_hh, bias_hh)    # (N, 4H)
    return LSTMCellFn.apply(z, c)                                            # (N, H) each


def lstm(input, hx, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One LSTM layer over a whole sequence, time-major: input (T, N, I), hx = (h0, c0) each
    (N, H) or None (zeros). Returns ``(output (T, N, H), (h_n, c_n))``.

    Forward and backward through time are single fused kernel calls; first derivatives only
    (``create_graph=True`` raises, see the module docstring)."""
    check_tensor(input, "input")
    if input.ndim != 3 or input.shape[0] < 1:
        raise ValueError(f"lstm: input must have shape (T, N, I) with T >= 1, got "
                         f"{tuple(input.shape)}")
    hid = _check_weights("lstm", weight_ih, weight_hh, bias_ih, bias_hh, input.shape[2])
    h0, c0 = _state("lstm", hx, input.shape[1], hid, input)
    b_ih, b_hh = _bias(bias_ih, hid, input), _bias(bias_hh, hid, input)
    _check_float("lstm", [("input", input), ("weight_ih", weight_ih), ("weight_hh", weight_hh),
                          ("h0", h0), ("c0", c0), ("bias_ih", b_ih), ("bias_hh", b_hh)])
    steps = input.shape[0]
    hs, c_n = LSTMSequenceFn.apply(input, h0, c0, weight_ih, weight_hh, b_ih, b_hh)
    return hs, (hs[steps - 1], c_n)                                # (T, N, H), ((N, H), (N, H))


def lstm_recurrence(xg, hx, weight_hh):
    """The LSTM recurrence given the input projections ``xg`` (T, N, 4H) = W_ih x_t + biases
    (computed by the caller, e.g. as a convolution). hx = (h0, c0) each (N, H) or None. Returns
    ``(output (T, N, H), (h_n, c_n))``; first derivatives only (like :func:`lstm`)."""
    check_tensor(xg, "xg")
    hid = _check_weights("lstm_recurrence", None, weight_hh, None, None)
    if xg.ndim != 3 or xg.shape[0] < 1 or xg.shape[2] != 4 * hid:
        raise ValueError(f"lstm_recurrence: xg must have shape (T, N, 4H) = (T, N, {4 * hid}) "
                         f"with T >= 1 for weight_hh of shape {tuple(weight_hh.shape)}, got "
                         f"{tuple(xg.shape)}")
    h0, c0 = _state("lstm_recurrence", hx, xg.shape[1], hid, xg)
    _check_float("lstm_recurrence", [("xg", xg), ("weight_hh", weight_hh), ("h0", h0),
                                     ("c0", c0)])
    steps = xg.shape[0]
    hs, c_n = LSTMRecurrenceFn.apply(xg, h0, c0, weight_hh)
    return hs, (hs[steps - 1], c_n)                                # (T, N, H), ((N, H), (N, H))


def conv_lstm_recurrence(xg, weight, anchor, time_axis=2):
    """PixelRNN's LSTM over the lines of a map: xg (N, 4h, A, B) input-to-state pre-activations
    (gate blocks i, f, g, o along the channels, biases included), the recurrence running along
    spatial axis ``time_axis`` (2: over rows, top to bottom, the state a row; 3: over columns,
    left to right, the state a column). ``weight`` (4h, h, k) is the state-to-state 1-D
    convolution along the line, tap t reading position p + t - ``anchor`` of the previous
    line's state (zero outside). Starts from h_0 = c_0 = 0; returns the states h (N, h, A, B).
    One fused kernel call forward and one backward through time; first derivatives only."""
    check_tensor(xg, "xg")
    check_tensor(weight, "weight")
    if weight.ndim != 3 or weight.shape[0] != 4 * weight.shape[1] or weight.shape[1] < 1:
        raise ValueError(f"conv_lstm_recurrence: weight must have shape (4h, h, k), got "
                         f"{tuple(weight.shape)}")
    if xg.ndim != 4 or xg.shape[1] != weight.shape[0]:
        raise ValueError(f"conv_lstm_recurrence: xg must have shape (N, 4h, A, B) = (N, "
                         f"{weight.shape[0]}, A, B) for weight of shape {tuple(weight.shape)}, "
                         f"got {tuple(xg.shape)}")
    if time_axis not in (2, 3):
        raise ValueError(f"conv_lstm_recurrence: time_axis must be 2 or 3, got {time_axis!r}")
    if not 0 <= int(anchor) < weight.shape[2]:
        raise ValueError(f"conv_lstm_recurrence: anchor must be a tap index in [0, "
                         f"{weight.shape[2]}), got {anchor}")
    _check_float("conv_lstm_recurrence", [("xg", xg), ("weight", weight)])
    return ConvLSTMRecurrenceFn.apply(xg, weight, anchor=int(anchor), time_axis=time_axis)
