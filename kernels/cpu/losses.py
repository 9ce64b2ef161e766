"""Fused loss kernels (Numba): the arithmetic of a loss in one pass over the elements instead of
a chain of NumPy temporaries. Seam API (the same in :mod:`tinygen.kernels.cuda.losses`): arrays
of one shape and one floating dtype in, a new array of that shape out; the formulas are those of
:mod:`tinygen.functional.loss`.

The transcendental parts (exp, log1p) are left to NumPy's vectorized ufuncs: without Intel's
SVML, Numba calls the scalar libm functions, which measured ~15x slower than NumPy's SIMD loops
on float32 (4.6 ms against 0.3 ms for 78,400 elements).
"""
from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["bce_with_logits_forward", "bce_with_logits_grad"]


def exp_neg_abs(x):
    """e = exp(-|x|) with NumPy's SIMD ufuncs, one buffer (x flat, contiguous)."""
    e = np.abs(x)
    np.negative(e, out=e)
    np.exp(e, out=e)
    return e


@njit(cache=True, error_model="numpy")
def _bce_combine(x, t, log1p_e, out):
    for i in range(np.uint64(x.size)):
        xi, ti = x[i], t[i]
        pos = xi if xi > 0 else xi - xi                 # max(x, 0) in x's dtype
        neg = pos - xi                                  # max(-x, 0)
        out[i] = log1p_e[i] + ti * neg + (1 - ti) * pos


def bce_with_logits_forward(x, t):
    """Elementwise loss (x's shape) = t softplus(-x) + (1 - t) softplus(x) for logits x and targets t (flat, length n):

        with l = log1p(exp(-|x|)):  softplus(x) = max(x, 0) + l,  softplus(-x) = max(-x, 0) + l
        out = l + t max(-x, 0) + (1 - t) max(x, 0)

    Nothing cancels (each term is >= 0), so tiny losses keep their relative accuracy.
    """
    xc, tc = _flat(x), _flat(t)
    out = np.empty_like(xc)
    e = exp_neg_abs(xc)
    np.log1p(e, out=e)
    _bce_combine(xc, tc, e, out)
    return out.reshape(x.shape)


@njit(cache=True, error_model="numpy")
def _bce_grad(x, t, e, g, out):
    for i in range(np.uint64(x.size)):
        xi, ti, ei = x[i], t[i], e[i]
        big = 1 / (1 + ei)                              # sigmoid(|x|)
        small = ei * big                                # sigmoid(-|x|)
        s_pos = big if xi >= 0 else small               # sigmoid(x)
        s_neg = small if xi >= 0 else big               # sigmoid(-x)
        out[i] = g[i] * ((1 - ti) * s_pos - ti * s_neg)


def bce_with_logits_grad(x, t, g):
    """g (sigmoid(x) - t), the gradient of the loss above with respect to x times the
    incoming gradient, written (1 - t) sigmoid(x) - t sigmoid(-x) so that nothing cancels
    (x = 50, t = 1 gives -sigmoid(-50), not 0); both sigmoids come from e = exp(-|x|), which
    cannot overflow."""
    xc, tc = _flat(x), _flat(t)
    gc = _flat(np.broadcast_to(g, x.shape))
    out = np.empty_like(xc)
    _bce_grad(xc, tc, exp_neg_abs(xc), gc, out)
    return out.reshape(x.shape)


def _flat(a):
    return np.ascontiguousarray(a).reshape(-1)
