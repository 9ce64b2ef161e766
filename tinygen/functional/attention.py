"""Scaled dot-product attention (Vaswani et al. 2017), PyTorch's
``F.scaled_dot_product_attention``:

    attention(Q, K, V) = softmax(Q K^T * scale + mask) V,   scale = 1 / sqrt(E) by default,

for Q of shape (..., L, E), K (..., S, E), V (..., S, Ev). Composed of matmul, masked_fill and
softmax, so gradients of every order come from the engine.
"""
from __future__ import annotations

import math

import numpy as np

from ..tensor import Tensor
from ._util import check_tensor
from .indexing import masked_fill
from .dropout import dropout
from .linalg import matmul
from .reduction import softmax

__all__ = ["scaled_dot_product_attention"]


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale=None, generator=None) -> Tensor:
    """softmax(query key^T * scale + mask) value.

    ``attn_mask``: a bool tensor (True = may attend) or a float tensor added to the scores, of a
    shape that broadcasts to (..., L, S). ``is_causal=True``: position i attends to j <= i (the
    upper-left triangle, as PyTorch). ``dropout_p`` drops attention weights (always applied when
    positive, as in PyTorch: pass 0.0 in evaluation).
    """
    q, k, v = (check_tensor(t, n) for t, n in ((query, "query"), (key, "key"), (value, "value")))
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2 or q.shape[-1] != k.shape[-1] or \
            k.shape[-2] != v.shape[-2]:
        raise ValueError(f"scaled_dot_product_attention: query {tuple(q.shape)}, key "
                         f"{tuple(k.shape)} and value {tuple(v.shape)} must be (..., L, E), "
                         f"(..., S, E) and (..., S, Ev)")
    if is_causal and attn_mask is not None:
        raise ValueError("scaled_dot_product_attention: give attn_mask or is_causal, not both")
    big_l, big_s = q.shape[-2], k.shape[-2]
    s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    scores = matmul(q, k.mT) * s                                   # (..., L, S)
    if is_causal:
        allowed = Tensor._wrap(q._xp.tri(big_l, big_s, 0, dtype=bool))
        scores = masked_fill(scores, ~allowed, -math.inf)
    elif attn_mask is not None:
        attn_mask = check_tensor(attn_mask, "attn_mask")
        try:
            np.broadcast_shapes(attn_mask.shape, scores.shape)
        except ValueError:
            raise ValueError(f"scaled_dot_product_attention: attn_mask of shape "
                             f"{tuple(attn_mask.shape)} does not broadcast to the scores' shape "
                             f"{tuple(scores.shape)}") from None
        if attn_mask.dtype == np.bool_:
            blocked = Tensor._wrap(~attn_mask.array)
            if blocked.shape != scores.shape:
                scores = scores + Tensor._wrap(q._xp.zeros(np.broadcast_shapes(
                    blocked.shape, scores.shape), dtype=scores.dtype))
            scores = masked_fill(scores, blocked, -math.inf)
        else:
            scores = scores + attn_mask
    weights = softmax(scores, -1)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p, True, generator=generator)
    return matmul(weights, v)
