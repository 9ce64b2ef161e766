"""Recurrent modules: ``LSTMCell`` and ``LSTM`` with PyTorch's constructors, parameter names,
shapes and initialization (every weight and bias U(-1/sqrt(H), 1/sqrt(H))), so that the arrays of
a ``torch.nn.LSTM`` state dict load with :meth:`Module.load_state_dict`.

The gate layout (i, f, g, o) and the equations are those of :mod:`tinygen.functional.lstm`.
"""
from __future__ import annotations

import math
import numbers

from .. import functional as F
from ..functional.lstm import lstm, lstm_cell
from ..tensor import empty, zeros
from . import init
from .module import Module, Parameter

__all__ = ["LSTMCell", "LSTM", "RNNCell", "RNN", "GRUCell", "GRU"]


def _positive(name, arg, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}: {arg} must be a positive int, got {value!r}")
    return int(value)


def _reset_uniform(self, generator=None):
    """PyTorch's initialization of recurrent layers: every parameter U(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / math.sqrt(self.hidden_size)
    for p in self.parameters():
        init.uniform_(p, -bound, bound, generator=generator)


def _cell_weights(module, rows, input_size, bias, dtype, device):
    """A cell's ``weight_ih`` (rows, I), ``weight_hh`` (rows, H), ``bias_ih``, ``bias_hh``
    (rows,) (uninitialized; rows = gates * H)."""
    h = module.hidden_size
    module.weight_ih = Parameter(empty(rows, input_size, dtype=dtype, device=device))
    module.weight_hh = Parameter(empty(rows, h, dtype=dtype, device=device))
    for name in ("bias_ih", "bias_hh"):
        module.register_parameter(name, Parameter(empty(rows, dtype=dtype, device=device))
                                  if bias else None)


def _time_major(module, input):
    """Check a sequence ``input`` of a recurrent ``module`` and make it (T, N, I): returns it,
    whether it was unbatched (T, I), and the shape the initial state must have."""
    i = module.input_size
    if input.ndim not in (2, 3) or input.shape[-1] != i:
        raise ValueError(f"{type(module).__name__}: input must have shape (T, N, {i}) "
                         f"((N, T, {i}) with batch_first, or unbatched (T, {i})), got "
                         f"{tuple(input.shape)}")
    unbatched = input.ndim == 2
    if unbatched:
        input = input.unsqueeze(1)                                       # (T, 1, I)
    elif module.batch_first:
        input = input.transpose(0, 1)                                    # (N, T, I) -> (T, N, I)
    layers, h = module.num_layers, module.hidden_size
    want = (layers, h) if unbatched else (layers, input.shape[1], h)
    return input, unbatched, want


class LSTMCell(Module):
    """One LSTM step: ``(h', c') = cell(x, (h, c))`` with x (N, I) or (I,), h, c (N, H) or (H,).

    Parameters ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih``, ``bias_hh`` (4H,).
    """

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__()
        self.input_size = _positive("LSTMCell", "input_size", input_size)
        self.hidden_size = h = _positive("LSTMCell", "hidden_size", hidden_size)
        self.bias = bool(bias)
        _cell_weights(self, 4 * h, input_size, bias, dtype, device)
        self.reset_parameters()

    reset_parameters = _reset_uniform

    def forward(self, input, hx=None):
        unbatched = input.ndim == 1
        if input.ndim not in (1, 2) or input.shape[-1] != self.input_size:
            raise ValueError(f"LSTMCell: input must have shape (N, {self.input_size}) or "
                             f"({self.input_size},), got {tuple(input.shape)}")
        if unbatched:
            input = input.unsqueeze(0)
            if hx is not None:
                hx = (hx[0].unsqueeze(0), hx[1].unsqueeze(0))
        h, c = lstm_cell(input, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return (h.squeeze(0), c.squeeze(0)) if unbatched else (h, c)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class LSTM(Module):
    """A stack of ``num_layers`` LSTM layers over whole sequences (``torch.nn.LSTM``).

    ``output, (h_n, c_n) = lstm(input, hx)`` with input (T, N, I) ((N, T, I) when
    ``batch_first``, (T, I) unbatched), hx = (h_0, c_0) each (num_layers, N, H) or None (zeros).
    output: (T, N, H) (or batch first), h_n and c_n: (num_layers, N, H). Layer k's parameters are
    ``weight_ih_l{k}`` (4H, I or H), ``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}``,
    ``bias_hh_l{k}``. ``dropout`` applies to the outputs of every layer but the last (training
    mode only). Each layer is one fused forward kernel call and one backward-through-time call
    (:func:`tinygen.functional.lstm`; first derivatives only). Not supported:
    ``bidirectional=True``, ``proj_size``.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__()
        self.input_size = _positive("LSTM", "input_size", input_size)
        self.hidden_size = h = _positive("LSTM", "hidden_size", hidden_size)
        self.num_layers = _positive("LSTM", "num_layers", num_layers)
        if bidirectional or proj_size:
            raise ValueError("LSTM: bidirectional=True and proj_size > 0 are not supported")
        if not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"LSTM: dropout must be in [0, 1], got {dropout}")
        self.bias, self.batch_first, self.dropout = bool(bias), bool(batch_first), float(dropout)
        self.bidirectional, self.proj_size = False, 0
        for k in range(self.num_layers):
            n_in = input_size if k == 0 else h
            self.register_parameter(f"weight_ih_l{k}",
                                    Parameter(empty(4 * h, n_in, dtype=dtype, device=device)))
            self.register_parameter(f"weight_hh_l{k}",
                                    Parameter(empty(4 * h, h, dtype=dtype, device=device)))
            if bias:
                self.register_parameter(f"bias_ih_l{k}",
                                        Parameter(empty(4 * h, dtype=dtype, device=device)))
                self.register_parameter(f"bias_hh_l{k}",
                                        Parameter(empty(4 * h, dtype=dtype, device=device)))
        self.reset_parameters()

    reset_parameters = _reset_uniform

    def layer_parameters(self, k):
        """(weight_ih, weight_hh, bias_ih, bias_hh) of layer ``k`` (biases None without bias)."""
        return (getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}"),
                getattr(self, f"bias_ih_l{k}", None), getattr(self, f"bias_hh_l{k}", None))

    def forward(self, input, hx=None):
        input, unbatched, want = _time_major(self, input)
        n_batch, h = input.shape[1], self.hidden_size
        if hx is None:
            h0 = c0 = zeros(self.num_layers, n_batch, h, dtype=input.dtype, device=input.device)
        else:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise ValueError("LSTM: hx must be a pair (h_0, c_0) or None")
            h0, c0 = hx
            for name, t in (("h_0", h0), ("c_0", c0)):
                if tuple(t.shape) != want:
                    raise ValueError(f"LSTM: {name} must have shape {want} for input of shape "
                                     f"{tuple(input.shape)}, got {tuple(t.shape)}")
            if unbatched:
                h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)               # (L, 1, H)
        out, hs, cs = input, [], []
        for k in range(self.num_layers):
            if k > 0 and self.dropout > 0:
                out = F.dropout(out, self.dropout, self.training)
            out, (hk, ck) = lstm(out, (h0[k], c0[k]), *self.layer_parameters(k))
            hs.append(hk)
            cs.append(ck)
        h_n, c_n = F.stack(hs), F.stack(cs)                              # (L, N, H)
        if unbatched:
            return out.squeeze(1), (h_n.squeeze(1), c_n.squeeze(1))
        if self.batch_first:
            out = out.transpose(0, 1)
        return out, (h_n, c_n)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        return s + ("" if self.bias else ", bias=False")


def _flatten_parameters(self):
    """PyTorch's cuDNN weight-compaction call; tinygen keeps no separate copy: a no-op."""


LSTM.flatten_parameters = _flatten_parameters


# -- Elman RNN and GRU, composed from generic ops (no fused kernel) ---------------------------------
def _rnn_step(x_proj, h, w_hh, b_hh, nonlinearity):
    """One Elman step: h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh); ``x_proj`` holds the input
    term (N, H), hoisted out of the time loop."""
    pre = x_proj + F.linear(h, w_hh, b_hh)
    return F.tanh(pre) if nonlinearity == "tanh" else F.relu(pre)


def _gru_step(x_proj, h, w_hh, b_hh, _):
    """One GRU step (gates in PyTorch's order r, z, n; ``x_proj`` = x W_ih^T + b_ih, (N, 3H)):

        r = sigmoid(x_r + h W_hr^T + b_hr)
        z = sigmoid(x_z + h W_hz^T + b_hz)
        n = tanh(x_n + r * (h W_hn^T + b_hn))
        h' = (1 - z) * n + z * h
    """
    hidden = h.shape[-1]
    h_proj = F.linear(h, w_hh, b_hh)                                     # (N, 3H)
    x_r, x_z, x_n = x_proj.split(hidden, -1)
    h_r, h_z, h_n = h_proj.split(hidden, -1)
    r = F.sigmoid(x_r + h_r)
    z = F.sigmoid(x_z + h_z)
    n = F.tanh(x_n + r * h_n)
    return n + z * (h - n)                                               # (1 - z) n + z h


class _CellBase(Module):
    """Shared constructor of ``RNNCell`` and ``GRUCell`` (``gates`` blocks of H rows)."""

    gates = 1
    _step = staticmethod(_rnn_step)

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None,
                 dtype=None):
        super().__init__()
        name = type(self).__name__
        self.input_size = _positive(name, "input_size", input_size)
        self.hidden_size = h = _positive(name, "hidden_size", hidden_size)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"{name}: nonlinearity must be 'tanh' or 'relu', got "
                             f"{nonlinearity!r}")
        self.bias, self.nonlinearity = bool(bias), nonlinearity
        g = self.gates * h
        _cell_weights(self, g, input_size, bias, dtype, device)
        self.reset_parameters()

    reset_parameters = _reset_uniform

    def forward(self, input, hx=None):
        name = type(self).__name__
        if input.ndim not in (1, 2) or input.shape[-1] != self.input_size:
            raise ValueError(f"{name}: input must have shape (N, {self.input_size}) or "
                             f"({self.input_size},), got {tuple(input.shape)}")
        unbatched = input.ndim == 1
        if unbatched:
            input = input.unsqueeze(0)
            hx = None if hx is None else hx.unsqueeze(0)
        if hx is None:
            hx = zeros(input.shape[0], self.hidden_size, dtype=input.dtype, device=input.device)
        elif tuple(hx.shape) != (input.shape[0], self.hidden_size):
            raise ValueError(f"{name}: hx must have shape {(input.shape[0], self.hidden_size)}, "
                             f"got {tuple(hx.shape)}")
        h = type(self)._step(F.linear(input, self.weight_ih, self.bias_ih), hx, self.weight_hh,
                             self.bias_hh, self.nonlinearity)
        return h.squeeze(0) if unbatched else h

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class RNNCell(_CellBase):
    """One Elman step ``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)`` (or relu), PyTorch's
    ``nn.RNNCell``: x (N, I) or (I,), h (N, H) or (H,)."""


class GRUCell(_CellBase):
    """One GRU step (PyTorch's ``nn.GRUCell``, gates r, z, n; see :func:`_gru_step`)."""

    gates = 3
    _step = staticmethod(_gru_step)

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, "tanh", device, dtype)


class _RNNBase(Module):
    """A stack of ``num_layers`` recurrent layers over whole sequences, written with generic ops:
    the input projections of a layer are one matmul over all time steps, then a loop over time.

    ``output, h_n = rnn(input, h_0)`` with input (T, N, I) ((N, T, I) when ``batch_first``,
    (T, I) unbatched), h_0 (num_layers, N, H) or None (zeros); output (T, N, H), h_n
    (num_layers, N, H). Parameter names and shapes as PyTorch (``weight_ih_l{k}``
    (gates*H, I or H), ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``), so its state dicts
    load. ``bidirectional=True`` is not supported.
    """

    gates = 1
    _step = staticmethod(_rnn_step)

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        self.input_size = _positive(name, "input_size", input_size)
        self.hidden_size = h = _positive(name, "hidden_size", hidden_size)
        self.num_layers = _positive(name, "num_layers", num_layers)
        if bidirectional:
            raise ValueError(f"{name}: bidirectional=True is not supported")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"{name}: nonlinearity must be 'tanh' or 'relu', got "
                             f"{nonlinearity!r}")
        if not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"{name}: dropout must be in [0, 1], got {dropout}")
        self.nonlinearity, self.bias = nonlinearity, bool(bias)
        self.batch_first, self.dropout, self.bidirectional = bool(batch_first), float(dropout), False
        g = self.gates * h
        for k in range(self.num_layers):
            n_in = input_size if k == 0 else h
            self.register_parameter(f"weight_ih_l{k}",
                                    Parameter(empty(g, n_in, dtype=dtype, device=device)))
            self.register_parameter(f"weight_hh_l{k}",
                                    Parameter(empty(g, h, dtype=dtype, device=device)))
            if bias:
                self.register_parameter(f"bias_ih_l{k}",
                                        Parameter(empty(g, dtype=dtype, device=device)))
                self.register_parameter(f"bias_hh_l{k}",
                                        Parameter(empty(g, dtype=dtype, device=device)))
        self.reset_parameters()

    reset_parameters = _reset_uniform
    layer_parameters = LSTM.layer_parameters
    flatten_parameters = _flatten_parameters

    def forward(self, input, hx=None):
        name = type(self).__name__
        input, unbatched, want = _time_major(self, input)
        n_batch, h = input.shape[1], self.hidden_size
        if hx is None:
            hx = zeros(self.num_layers, n_batch, h, dtype=input.dtype, device=input.device)
        elif tuple(hx.shape) != want:
            raise ValueError(f"{name}: h_0 must have shape {want} for input of shape "
                             f"{tuple(input.shape)}, got {tuple(hx.shape)}")
        elif unbatched:
            hx = hx.unsqueeze(1)                                         # (L, 1, H)
        out, finals = input, []
        for k in range(self.num_layers):
            if k > 0 and self.dropout > 0:
                out = F.dropout(out, self.dropout, self.training)
            w_ih, w_hh, b_ih, b_hh = self.layer_parameters(k)
            x_proj = F.linear(out, w_ih, b_ih)                           # (T, N, gates*H)
            hk, steps = hx[k], []
            for t in range(input.shape[0]):
                hk = type(self)._step(x_proj[t], hk, w_hh, b_hh, self.nonlinearity)
                steps.append(hk)
            out = F.stack(steps)                                         # (T, N, H)
            finals.append(hk)
        h_n = F.stack(finals)                                            # (L, N, H)
        if unbatched:
            return out.squeeze(1), h_n.squeeze(1)
        if self.batch_first:
            out = out.transpose(0, 1)
        return out, h_n

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        return s + ("" if self.bias else ", bias=False")


class RNN(_RNNBase):
    """Elman RNN (PyTorch's ``nn.RNN``): h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)
    (``nonlinearity="relu"`` for relu), stacked ``num_layers`` deep."""


class GRU(_RNNBase):
    """Gated recurrent unit (PyTorch's ``nn.GRU``; Cho et al. 2014), stacked ``num_layers`` deep;
    gates r, z, n as in :func:`_gru_step`."""

    gates = 3
    _step = staticmethod(_gru_step)

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        super().__init__(input_size, hidden_size, num_layers, "tanh", bias, batch_first,
                         dropout, bidirectional, device, dtype)
