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

Arrays only: x, s, exp(+-s), t, y (and the gradients) are C-contiguous (N, D) arrays of one
floating dtype, N the batch and D the number of elements of one sample; b is a (D,) array of
that dtype holding 0 or 1 (the wrapper in :mod:`tinygen.functional.coupling` broadcasts the
mask and checks it). A few vectorized passes per call instead of the ~10 passes (and
temporaries) of the composed ops.
"""
from __future__ import annotations

from numba import njit

__all__ = ["coupling_forward", "coupling_backward", "coupling_inverse", "masked_row_sum",
           "masked_outer"]


@njit(cache=True)
def coupling_forward(x, e, s, t, b, y, logdet):
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
    masked_row_sum(s, b, logdet)


@njit(cache=True, fastmath={"reassoc"})
def masked_row_sum(s, b, out):
    """out[i] = sum_j (1 - b[j]) s[i, j] for s (N, D), b (D,), out (N,); a float64 accumulator,
    reassociation allowed (and nothing else) so that the sum vectorizes."""
    n, d = s.shape
    for i in range(n):
        acc = 0.0
        for j in range(d):
            acc += s[i, j] * (1.0 - b[j])
        out[i] = acc


@njit(cache=True)
def coupling_backward(g, x, e, b, gx, gs, gt):
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
def masked_outer(g, b, out):
    """out[i, j] = g[i] * (1 - b[j]) for g (N,), b (D,), out (N, D): the log-det's gradient
    with respect to s."""
    n, d = out.shape
    for i in range(n):
        gi = g[i]
        for j in range(d):
            out[i, j] = gi * (1 - b[j])


@njit(cache=True)
def coupling_inverse(y, e_neg, t, b, x):
    """Writes x (N, D) from y, e_neg = exp(-s), t (N, D) and the mask b (D,):

    x[i, j] = y[i, j]                            if b[j] == 1
            = (y[i, j] - t[i, j]) * e_neg[i, j]  if b[j] == 0
    """
    n, d = y.shape
    for i in range(n):
        for j in range(d):
            v = (y[i, j] - t[i, j]) * e_neg[i, j]
            x[i, j] = y[i, j] if b[j] != 0 else v
