"""Multi-head attention (Vaswani et al. 2017), PyTorch's ``nn.MultiheadAttention``:

    head_h = softmax(Q W_q^h (K W_k^h)^T / sqrt(d) + mask) V W_v^h,    d = embed_dim / num_heads
    output = concat(head_1, ..., head_H) W_o^T + b_o

with the same parameter names (``in_proj_weight`` (3E, E), ``in_proj_bias``, ``out_proj``), so
PyTorch state dicts load, and the same mask conventions (in ``attn_mask`` and
``key_padding_mask`` a True entry is *not* attended to; float masks are added to the scores);
and the Transformer's encoder layer and encoder stack built on it.
"""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..tensor import Tensor, empty
from . import init
from .layers import Linear
from .module import Module, Parameter

__all__ = ["MultiheadAttention", "TransformerEncoderLayer", "TransformerEncoder"]


def _additive(mask, dtype, name):
    """A boolean mask (True = blocked) as 0 / -inf in ``dtype``; a float mask as it is."""
    if mask.dtype == np.bool_:
        xp = mask._xp
        return Tensor._wrap(xp.where(mask.array, -math.inf, 0.0).astype(dtype))
    if mask.dtype.kind != "f":
        raise TypeError(f"MultiheadAttention: {name} must be bool or floating, got {mask.dtype}")
    return mask.to(dtype)


class MultiheadAttention(Module):
    """Attention with ``num_heads`` heads over ``embed_dim`` features.

    Inputs are (L, N, E) or, with ``batch_first=True``, (N, L, E); unbatched (L, E) also works.
    ``forward`` returns ``(output, weights)``; ``weights`` (N, L, S) are averaged over the heads
    unless ``average_attn_weights=False`` ((N, H, L, S)), and None when ``need_weights=False``.
    ``is_causal=True`` without an ``attn_mask`` builds the causal mask (PyTorch requires the mask
    as well). Key/value dimensions other than ``embed_dim`` (kdim, vdim), ``add_bias_kv`` and
    ``add_zero_attn`` are not supported.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim=None, vdim=None,
                 batch_first: bool = False, device=None, dtype=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim={embed_dim} must be divisible by "
                             f"num_heads={num_heads}")
        if add_bias_kv or add_zero_attn or kdim not in (None, embed_dim) or \
                vdim not in (None, embed_dim):
            raise ValueError("MultiheadAttention: kdim/vdim other than embed_dim, add_bias_kv and "
                             "add_zero_attn are not supported")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.dropout, self.batch_first = float(dropout), batch_first
        self.in_proj_weight = Parameter(empty(3 * embed_dim, embed_dim, dtype=dtype,
                                              device=device))
        self.register_parameter("in_proj_bias", Parameter(empty(3 * embed_dim, dtype=dtype,
                                                                device=device)) if bias else None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's: Xavier-uniform input projection, zero biases (out_proj's weight keeps
        Linear's initialization)."""
        init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def forward(self, query, key, value, key_padding_mask=None, need_weights: bool = True,
                attn_mask=None, average_attn_weights: bool = True, is_causal: bool = False):
        unbatched = query.ndim == 2
        if unbatched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        # now (L, N, E) and (S, N, E)
        big_l, n, e = query.shape
        big_s = key.shape[0]
        if e != self.embed_dim or key.shape[1:] != (n, e) or value.shape != key.shape:
            raise ValueError(f"MultiheadAttention: query {tuple(query.shape)}, key "
                             f"{tuple(key.shape)} and value {tuple(value.shape)} (as (L, N, E)) "
                             f"do not fit embed_dim={self.embed_dim}")
        h, d = self.num_heads, self.head_dim
        w_q, w_k, w_v = F.chunk(self.in_proj_weight, 3, 0)
        b_q = b_k = b_v = None
        if self.in_proj_bias is not None:
            b_q, b_k, b_v = F.chunk(self.in_proj_bias, 3, 0)

        def heads(x, w, b, length):   # (length, N, E) -> (N, H, length, d)
            return F.linear(x, w, b).reshape(length, n, h, d).permute(1, 2, 0, 3)

        q, k, v = heads(query, w_q, b_q, big_l), heads(key, w_k, b_k, big_s), \
            heads(value, w_v, b_v, big_s)
        scores = F.matmul(q, k.mT) * (1.0 / math.sqrt(d))                   # (N, H, L, S)
        if attn_mask is None and is_causal:
            attn_mask = Tensor._wrap(~query._xp.tri(big_l, big_s, 0, dtype=bool))
        if attn_mask is not None:
            m = _additive(attn_mask, scores.dtype, "attn_mask")
            if m.ndim == 3:                                                  # (N*H, L, S)
                m = m.reshape(n, h, big_l, big_s)
            scores = scores + m
        if key_padding_mask is not None:
            m = _additive(key_padding_mask, scores.dtype, "key_padding_mask")  # (N, S)
            scores = scores + m.reshape(n, 1, 1, big_s)
        weights = F.softmax(scores, -1)
        if self.training and self.dropout > 0.0:   # the returned weights are the dropped ones,
            weights = F.dropout(weights, self.dropout, True)     # as PyTorch returns them
        out = F.matmul(weights, v).permute(2, 0, 1, 3).reshape(big_l, n, e)     # (L, N, E)
        out = self.out_proj(out)
        if unbatched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        if average_attn_weights:
            weights = weights.mean(1)
        if unbatched:
            weights = weights.squeeze(0)
        return out, weights

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"dropout={self.dropout}, batch_first={self.batch_first}")


class TransformerEncoderLayer(Module):
    """One encoder layer of the Transformer (Vaswani et al. 2017), PyTorch's parameter names:

        post-norm (default):  x = norm1(x + SA(x));        x = norm2(x + FF(x))
        norm_first=True:      x = x + SA(norm1(x));        x = x + FF(norm2(x))

    with SA the self-attention (``self_attn``, followed by ``dropout1``) and
    FF(x) = linear2(dropout(activation(linear1(x)))) followed by ``dropout2``. ``activation`` is
    ``"relu"``, ``"gelu"`` or a callable.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation="relu", layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        from .layers import Dropout
        from .normalization import LayerNorm
        kw = {"device": device, "dtype": dtype}
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                            batch_first=batch_first, **kw)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, **kw)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, **kw)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.dropout1, self.dropout2 = Dropout(dropout), Dropout(dropout)
        if activation in ("relu", "gelu"):
            self.activation = F.relu if activation == "relu" else F.gelu
        elif callable(activation):
            self.activation = activation
        else:
            raise ValueError(f"TransformerEncoderLayer: activation must be 'relu', 'gelu' or a "
                             f"callable, got {activation!r}")

    def _self_attention(self, x, mask, key_padding_mask, is_causal):
        x = self.self_attn(x, x, x, attn_mask=mask, key_padding_mask=key_padding_mask,
                           need_weights=False, is_causal=is_causal)[0]
        return self.dropout1(x)

    def _feed_forward(self, x):
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal: bool = False):
        x = src
        if self.norm_first:
            x = x + self._self_attention(self.norm1(x), src_mask, src_key_padding_mask,
                                         is_causal)
            return x + self._feed_forward(self.norm2(x))
        x = self.norm1(x + self._self_attention(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(x + self._feed_forward(x))


class TransformerEncoder(Module):
    """``num_layers`` copies of ``encoder_layer`` (independent parameters, ``layers.0`` ...)
    applied in turn, then ``norm`` if given."""

    def __init__(self, encoder_layer, num_layers: int, norm=None, enable_nested_tensor=True,
                 mask_check=True):
        super().__init__()
        import copy
        from .layers import ModuleList
        self.layers = ModuleList([copy.deepcopy(encoder_layer) for _ in range(num_layers)])
        self.num_layers, self.norm = num_layers, norm

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask,
                      is_causal=bool(is_causal))
        return self.norm(x) if self.norm is not None else x
