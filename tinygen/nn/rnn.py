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

__all__ = ["LSTMCell", "LSTM"]


def _positive(name, arg, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}: {arg} must be a positive int, got {value!r}")
    return int(value)


class LSTMCell(Module):
    """One LSTM step: ``(h', c') = cell(x, (h, c))`` with x (N, I) or (I,), h, c (N, H) or (H,).

    Parameters ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih``, ``bias_hh`` (4H,).
    """

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__()
        self.input_size = _positive("LSTMCell", "input_size", input_size)
        self.hidden_size = h = _positive("LSTMCell", "hidden_size", hidden_size)
        self.bias = bool(bias)
        self.weight_ih = Parameter(empty(4 * h, input_size, dtype=dtype, device=device))
        self.weight_hh = Parameter(empty(4 * h, h, dtype=dtype, device=device))
        self.register_parameter("bias_ih", Parameter(empty(4 * h, dtype=dtype, device=device))
                                if bias else None)
        self.register_parameter("bias_hh", Parameter(empty(4 * h, dtype=dtype, device=device))
                                if bias else None)
        self.reset_parameters()

    def reset_parameters(self, generator=None):
        """PyTorch's initialization: every parameter U(-1/sqrt(H), 1/sqrt(H))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound, generator=generator)

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

    def reset_parameters(self, generator=None):
        """PyTorch's initialization: every parameter U(-1/sqrt(H), 1/sqrt(H))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound, generator=generator)

    def layer_parameters(self, k):
        """(weight_ih, weight_hh, bias_ih, bias_hh) of layer ``k`` (biases None without bias)."""
        return (getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}"),
                getattr(self, f"bias_ih_l{k}", None), getattr(self, f"bias_hh_l{k}", None))

    def forward(self, input, hx=None):
        if input.ndim not in (2, 3) or input.shape[-1] != self.input_size:
            raise ValueError(f"LSTM: input must have shape (T, N, {self.input_size}) "
                             f"((N, T, {self.input_size}) with batch_first, or unbatched "
                             f"(T, {self.input_size})), got {tuple(input.shape)}")
        unbatched = input.ndim == 2
        if unbatched:
            input = input.unsqueeze(1)                                   # (T, 1, I)
        elif self.batch_first:
            input = input.transpose(0, 1)                                # (N, T, I) -> (T, N, I)
        n_batch, h = input.shape[1], self.hidden_size
        want = (self.num_layers, h) if unbatched else (self.num_layers, n_batch, h)
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
