"""Fused kernels for the elementwise part of the affine coupling layer (Dinh et al. 2016):

    y      = b * x + (1 - b) * (x * exp(s) + t)         (forward)
    logdet = sum_j (1 - b_j) * s_j                      (per sample)
    x      = b * y + (1 - b) * (y - t) * exp(-s)        (inverse)

and the backward of the forward (dL/dx, dL/ds, dL/dt from dL/dy). The mask b is binary, so each
element takes one branch: kept (b = 1: y = x) or transformed (b = 0).

exp(s) comes in as an array (the caller takes it with NumPy's vectorized exp, and the forward
keeps it for the backward): this Numba build has no SVML, so an exp inside the loop is a scalar
libm call, several times slower per element than NumPy's. Everything else -- the scale, shift,
mask and the log-det reduction, and the whole backward -- runs in these kernels: branch-free
loops (selects on the mask) that LLVM vectorizes.

The seam API (the same functions in :mod:`tinygen.kernels.cuda.coupling`): x, s, t and the
gradients are (N, ...) arrays of one floating dtype and one shape, N the batch; b is the flat
(D,) mask (D elements in one sample) of that dtype holding 0 or 1 (the wrapper in
:mod:`tinygen.functional.coupling` broadcasts the mask and checks it). Outputs are new arrays of
the inputs' shape. The Numba kernels underneath (leading underscore) work on C-contiguous (N, D)
views. A few vectorized passes per call instead of the ~10 passes (and
temporaries) of the composed ops.
"""
from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["coupling_forward", "coupling_backward", "coupling_logdet_backward",
           "coupling_inverse"]


@njit(cache=True)
def _coupling_forward(x, e, s, t, b, y, logdet):
    """Writes y (N, D) and logdet (N,) from x, e = exp(s), s, t (N, D) and the mask b (D,).

    y[i, j] = x[i, j]                       if b[j] == 1
            = x[i, j] * e[i, j] + t[i, j]   if b[j] == 0
    logdet[i] = sum_j (1 - b[j]) s[i, j]    (accumulated in float64, see masked_row_sum)

    A select, not a product with the mask, keeps y = x exactly where b = 1 even if e overflows
    there; the loop is branch-free, so LLVM vectorizes it.
    """
    n, d = x.shape
    for i in range(n):
        for j in range(d):
            v = x[i, j] * e[i, j] + t[i, j]
            y[i, j] = x[i, j] if b[j] != 0 else v
    _masked_row_sum(s, b, logdet)


@njit(cache=True, fastmath={"reassoc"})
def _masked_row_sum(s, b, out):
    """out[i] = sum_j (1 - b[j]) s[i, j] for s (N, D), b (D,), out (N,); a float64 accumulator,
    reassociation allowed (and nothing else) so that the sum vectorizes."""
    n, d = s.shape
    for i in range(n):
        acc = 0.0
        for j in range(d):
            acc += s[i, j] * (1.0 - b[j])
        out[i] = acc


@njit(cache=True)
def _coupling_backward(g, x, e, b, gx, gs, gt):
    """Writes gx, gs, gt (N, D) from g = dL/dy, x, e = exp(s) (N, D) and the mask b (D,).

    b[j] == 1:  gx = g,        gs = 0,          gt = 0
    b[j] == 0:  gx = g * e,    gs = g * e * x,  gt = g
    (the log-det's own contribution to dL/ds, dL/dlogdet * (1 - b), is added by its op.)
    Three branch-free passes, one per output: with six arrays in one loop LLVM's run-time alias
    checks give up and the loop stays scalar (measured ~1.5x slower).
    """
    n, d = x.shape
    if d == 0:
        return
    zero = b[0] - b[0]      # 0 in the arrays' dtype
    for i in range(n):
        for j in range(d):
            gx[i, j] = g[i, j] if b[j] != 0 else g[i, j] * e[i, j]
    for i in range(n):
        for j in range(d):
            gs[i, j] = zero if b[j] != 0 else g[i, j] * e[i, j] * x[i, j]
    for i in range(n):
        for j in range(d):
            gt[i, j] = zero if b[j] != 0 else g[i, j]


@njit(cache=True)
def _masked_outer(g, b, out):
    """out[i, j] = g[i] * (1 - b[j]) for g (N,), b (D,), out (N, D): the log-det's gradient
    with respect to s."""
    n, d = out.shape
    for i in range(n):
        gi = g[i]
        for j in range(d):
            out[i, j] = gi * (1 - b[j])


@njit(cache=True)
def _coupling_inverse(y, e_neg, t, b, x):
    """Writes x (N, D) from y, e_neg = exp(-s), t (N, D) and the mask b (D,):

    x[i, j] = y[i, j]                            if b[j] == 1
            = (y[i, j] - t[i, j]) * e_neg[i, j]  if b[j] == 0
    """
    n, d = y.shape
    for i in range(n):
        for j in range(d):
            v = (y[i, j] - t[i, j]) * e_neg[i, j]
            x[i, j] = y[i, j] if b[j] != 0 else v


# -- the seam API (arrays in, arrays out) ---------------------------------------------------------
def _flat(a, n):
    """(N, ...) array as a C-contiguous (N, D) array (a view when it already is contiguous)."""
    return np.ascontiguousarray(a).reshape(n, -1)


def coupling_forward(x, s, t, b):
    """(y, logdet, exp_s): y (N, ...) and logdet (N,) of the coupling, and exp(s) (N, ...) kept
    for the backward."""
    n = x.shape[0]
    e = np.exp(s)
    y = np.empty((n, b.size), dtype=x.dtype)       # (N, D), reshaped to x's shape below
    logdet = np.empty(n, dtype=x.dtype)
    _coupling_forward(_flat(x, n), _flat(e, n), _flat(s, n), _flat(t, n), b, y, logdet)
    return y.reshape(x.shape), logdet, e


def coupling_backward(g, x, exp_s, b):
    """(gx, gs, gt), each (N, ...): dL/dx, dL/ds, dL/dt from g = dL/dy (the log-det's share of
    dL/ds comes from :func:`coupling_logdet_backward`)."""
    n = x.shape[0]
    gx, gs, gt = (np.empty((n, b.size), dtype=x.dtype) for _ in range(3))
    _coupling_backward(_flat(g, n), _flat(x, n), _flat(exp_s, n), b, gx, gs, gt)
    return gx.reshape(x.shape), gs.reshape(x.shape), gt.reshape(x.shape)


def coupling_logdet_backward(g, b, shape):
    """dL/ds (``shape`` = (N, ...)) from g = dL/dlogdet (N,): g[i] * (1 - b[j])."""
    out = np.empty((shape[0], b.size), dtype=b.dtype)
    _masked_outer(np.ascontiguousarray(g, dtype=b.dtype), b, out)
    return out.reshape(shape)


def coupling_inverse(y, s, t, b):
    """x (N, ...) with coupling_forward(x, s, t, b)[0] == y."""
    n = y.shape[0]
    x = np.empty((n, b.size), dtype=y.dtype)
    _coupling_inverse(_flat(y, n), _flat(np.exp(-s), n), _flat(t, n), b, x)
    return x.reshape(y.shape)
