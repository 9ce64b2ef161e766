"""CPU convolution kernels: im2col / col2im in Numba, GEMM through BLAS (NumPy ``matmul``).

Arrays only (NCHW, C-contiguous). The geometry of every call is a pair of
:class:`tinygen.kernels.geometry.AxisGeometry` (height, width); see that module for the exact
index relations. Three drivers cover the whole convolution family:

* :func:`conv2d_forward`      y = conv(x, w)            (also: the input gradient of a transposed conv)
* :func:`conv2d_transpose_forward`  x = conv^T(y, w)    (also: the input gradient of a conv)
* :func:`conv2d_weight`       dw from x and dL/dy       (shared by conv and transposed conv)

The batch is processed in chunks so that the im2col buffer stays small (cache-resident) instead
of materializing ``N * C*kh*kw * OH*OW`` elements at once.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_transpose_forward", "conv2d_weight"]

# Target size of one im2col chunk in bytes (a few MB: stays in the last-level cache).
_CHUNK_BYTES = 4 << 20


@njit(cache=True, inline="always")
def _valid_range(n_out, stride, offset, size):
    """[lo, hi) of output positions o with 0 <= o*stride + offset < size."""
    lo = 0
    if offset < 0:
        lo = (-offset + stride - 1) // stride
    hi = 0
    if size - 1 - offset >= 0:
        hi = (size - 1 - offset) // stride + 1
    if hi > n_out:
        hi = n_out
    if lo > hi:
        lo = hi
    return lo, hi


@njit(cache=True, parallel=True)
def im2col(x, kh, kw, sh, sw, dh, dw, ph, pw, oh, ow, cols):
    """Unfold windows of ``x`` into columns.

    x: (N, C, H, W); cols (out): (N, C*kh*kw, oh*ow) with
    cols[n, (c*kh + i)*kw + j, y*ow + x'] = x[n, c, y*sh + i*dh - ph, x'*sw + j*dw - pw]
    (0 where the index falls outside the input).
    """
    n_batch, n_chan, height, width = x.shape
    for nc in prange(n_batch * n_chan):
        n = nc // n_chan
        c = nc % n_chan
        for i in range(kh):
            ylo, yhi = _valid_range(oh, sh, i * dh - ph, height)
            for j in range(kw):
                row = (c * kh + i) * kw + j
                xlo, xhi = _valid_range(ow, sw, j * dw - pw, width)
                for y in range(oh):
                    base = y * ow
                    if y < ylo or y >= yhi:
                        for xo in range(ow):
                            cols[n, row, base + xo] = 0
                        continue
                    hin = y * sh + i * dh - ph
                    for xo in range(xlo):
                        cols[n, row, base + xo] = 0
                    win0 = j * dw - pw
                    for xo in range(xlo, xhi):
                        cols[n, row, base + xo] = x[n, c, hin, xo * sw + win0]
                    for xo in range(xhi, ow):
                        cols[n, row, base + xo] = 0


@njit(cache=True, parallel=True)
def col2im(cols, kh, kw, sh, sw, dh, dw, ph, pw, oh, ow, out):
    """Fold columns back, summing overlapping windows (the adjoint of :func:`im2col`).

    cols: (N, C*kh*kw, oh*ow); out (overwritten): (N, C, H, W). Each (n, c) plane is summed by one
    thread in a fixed order, so the result is deterministic.
    """
    n_batch, n_chan, height, width = out.shape
    for nc in prange(n_batch * n_chan):
        n = nc // n_chan
        c = nc % n_chan
        for yy in range(height):
            for xx in range(width):
                out[n, c, yy, xx] = 0
        for i in range(kh):
            ylo, yhi = _valid_range(oh, sh, i * dh - ph, height)
            for j in range(kw):
                row = (c * kh + i) * kw + j
                xlo, xhi = _valid_range(ow, sw, j * dw - pw, width)
                win0 = j * dw - pw
                for y in range(ylo, yhi):
                    hin = y * sh + i * dh - ph
                    base = y * ow
                    for xo in range(xlo, xhi):
                        out[n, c, hin, xo * sw + win0] += cols[n, row, base + xo]


def _args(geom):
    gh, gw = geom
    return (gh.kernel, gw.kernel, gh.stride, gw.stride, gh.dilation, gw.dilation,
            gh.pad_lo, gw.pad_lo, gh.size_out, gw.size_out)


def _chunk(n_batch, per_sample_elems, itemsize):
    return int(max(1, min(n_batch, _CHUNK_BYTES // max(1, per_sample_elems * itemsize))))


def conv2d_forward(x, w, geom, groups):
    """y = conv(x, w).  x: (N, C, H, W), w: (O, C/groups, kh, kw) -> y: (N, O, OH, OW)."""
    n_batch, n_chan = x.shape[:2]
    n_out = w.shape[0]
    gh, gw = geom
    oh, ow = gh.size_out, gw.size_out
    kk = gh.kernel * gw.kernel
    cg, og = n_chan // groups, n_out // groups
    x = np.ascontiguousarray(x)
    w_mat = np.ascontiguousarray(w).reshape(groups, og, cg * kk)  # (G, Og, Cg*kh*kw)
    y = np.empty((n_batch, n_out, oh * ow), dtype=x.dtype)
    step = _chunk(n_batch, n_chan * kk * oh * ow, x.itemsize)
    cols = np.empty((step, n_chan * kk, oh * ow), dtype=x.dtype)
    for n0 in range(0, n_batch, step):
        nb = min(step, n_batch - n0)
        c = cols[:nb]
        im2col(x[n0:n0 + nb], *_args(geom), c)
        # (nb, G, Cg*kk, P) -> (nb, G, Og, P): one GEMM per sample and group
        np.matmul(w_mat, c.reshape(nb, groups, cg * kk, oh * ow),
                  out=y[n0:n0 + nb].reshape(nb, groups, og, oh * ow))
    return y.reshape(n_batch, n_out, oh, ow)


def conv2d_transpose_forward(y, w, geom, groups):
    """x = conv^T(y, w), the adjoint of :func:`conv2d_forward` in its first argument.

    y: (N, O, OH, OW) with OH, OW the geometry's ``size_out``; w: (O, C/groups, kh, kw)
    -> x: (N, C, H, W) with H, W the geometry's ``size_in``.
    """
    n_batch, n_out = y.shape[:2]
    gh, gw = geom
    cg = w.shape[1]
    n_chan = cg * groups
    og = n_out // groups
    kk = gh.kernel * gw.kernel
    p = gh.size_out * gw.size_out
    y = np.ascontiguousarray(y)
    # w^T per group: (G, Cg*kk, Og)
    wt = np.ascontiguousarray(
        np.ascontiguousarray(w).reshape(groups, og, cg * kk).transpose(0, 2, 1))
    x = np.empty((n_batch, n_chan, gh.size_in, gw.size_in), dtype=y.dtype)
    step = _chunk(n_batch, n_chan * kk * p, y.itemsize)
    cols = np.empty((step, n_chan * kk, p), dtype=y.dtype)
    for n0 in range(0, n_batch, step):
        nb = min(step, n_batch - n0)
        c = cols[:nb]
        np.matmul(wt, y[n0:n0 + nb].reshape(nb, groups, og, p),
                  out=c.reshape(nb, groups, cg * kk, p))
        col2im(c, *_args(geom), x[n0:n0 + nb])
    return x


def conv2d_weight(x, gy, geom, groups, weight_shape):
    """dL/dw of y = conv(x, w) given gy = dL/dy.

    x: (N, C, H, W), gy: (N, O, OH, OW) -> (O, C/groups, kh, kw).
    """
    n_batch, n_chan = x.shape[:2]
    n_out = gy.shape[1]
    gh, gw = geom
    kk = gh.kernel * gw.kernel
    p = gh.size_out * gw.size_out
    cg, og = n_chan // groups, n_out // groups
    x = np.ascontiguousarray(x)
    gy = np.ascontiguousarray(gy).reshape(n_batch, groups, og, p)
    dtype = np.result_type(x.dtype, gy.dtype)
    dw = np.zeros((groups, og, cg * kk), dtype=dtype)
    step = _chunk(n_batch, n_chan * kk * p, x.itemsize)
    cols = np.empty((step, n_chan * kk, p), dtype=x.dtype)
    for n0 in range(0, n_batch, step):
        nb = min(step, n_batch - n0)
        c = cols[:nb]
        im2col(x[n0:n0 + nb], *_args(geom), c)
        c4 = c.reshape(nb, groups, cg * kk, p)
        for s in range(nb):  # dw_g += gy_g (Og, P) @ cols_g^T (P, Cg*kk)
            dw += np.matmul(gy[n0 + s], c4[s].transpose(0, 2, 1))
    return dw.reshape(weight_shape)
