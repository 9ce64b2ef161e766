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
from numba import njit

from ..geometry import AxisGeometry

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


@njit(cache=True)
def im2col(x, kh, kw, sh, sw, dh, dw, ph, pw, oh, ow, cols):
    """Unfold windows of ``x`` into columns, the batch folded into the column index.

    x: (N, C, H, W); cols (out): (C*kh*kw, N, oh*ow) with
    cols[(c*kh + i)*kw + j, n, y*ow + x'] = x[n, c, y*sh + i*dh - ph, x'*sw + j*dw - pw]
    (0 where the index falls outside the input).
    """
    n_batch, n_chan, height, width = x.shape
    for c in range(n_chan):
        for i in range(kh):
            ylo, yhi = _valid_range(oh, sh, i * dh - ph, height)
            for j in range(kw):
                row = (c * kh + i) * kw + j
                xlo, xhi = _valid_range(ow, sw, j * dw - pw, width)
                win0 = j * dw - pw
                for n in range(n_batch):
                    for y in range(oh):
                        base = y * ow
                        if y < ylo or y >= yhi:
                            for xo in range(ow):
                                cols[row, n, base + xo] = 0
                            continue
                        hin = y * sh + i * dh - ph
                        for xo in range(xlo):
                            cols[row, n, base + xo] = 0
                        for xo in range(xlo, xhi):
                            cols[row, n, base + xo] = x[n, c, hin, xo * sw + win0]
                        for xo in range(xhi, ow):
                            cols[row, n, base + xo] = 0


@njit(cache=True)
def col2im(cols, kh, kw, sh, sw, dh, dw, ph, pw, oh, ow, out):
    """Fold columns back, summing overlapping windows (the adjoint of :func:`im2col`).

    cols: (C*kh*kw, N, oh*ow); out (overwritten): (N, C, H, W). Sums run in a fixed order, so
    the result is deterministic.
    """
    n_batch, n_chan, height, width = out.shape
    out[...] = 0
    for c in range(n_chan):
        for i in range(kh):
            ylo, yhi = _valid_range(oh, sh, i * dh - ph, height)
            for j in range(kw):
                row = (c * kh + i) * kw + j
                xlo, xhi = _valid_range(ow, sw, j * dw - pw, width)
                win0 = j * dw - pw
                for n in range(n_batch):
                    for y in range(ylo, yhi):
                        hin = y * sh + i * dh - ph
                        base = y * ow
                        for xo in range(xlo, xhi):
                            out[n, c, hin, xo * sw + win0] += cols[row, n, base + xo]


@njit(cache=True)
def batch_to_channels(y, out):
    """(N, C, P) -> (C, N, P): the batch folded next to the pixels for batched GEMMs."""
    n_batch, n_chan, p = y.shape
    for c in range(n_chan):
        for n in range(n_batch):
            out[c, n, :] = y[n, c, :]


@njit(cache=True)
def channels_to_batch(y, out):
    """(C, N, P) -> (N, C, P), the inverse of :func:`batch_to_channels`."""
    n_chan, n_batch, p = y.shape
    for n in range(n_batch):
        for c in range(n_chan):
            out[n, c, :] = y[c, n, :]


@njit(cache=True)
def unfold_rows(x, kw, sw, dw, pw, ph, rows, ow, out):
    """Unfold only along the width (row-shift layout for convolutions with vertical stride 1).

    x: (N, C, H, W); out: (N, C, kw, rows, ow) with
    out[n, c, j, h, o] = x[n, c, h - ph, o*sw + j*dw - pw]  (0 outside the input).
    Kernel row i of output row y is then the contiguous column range starting at (y + i*dh)*ow
    of out[n] viewed as (C*kw, rows*ow).
    """
    n_batch, n_chan, height, width = x.shape
    for n in range(n_batch):
        for c in range(n_chan):
            for j in range(kw):
                xlo, xhi = _valid_range(ow, sw, j * dw - pw, width)
                win0 = j * dw - pw
                for h in range(rows):
                    hin = h - ph
                    if hin < 0 or hin >= height:
                        for o in range(ow):
                            out[n, c, j, h, o] = 0
                        continue
                    for o in range(xlo):
                        out[n, c, j, h, o] = 0
                    if sw == 1:
                        for o in range(xlo, xhi):
                            out[n, c, j, h, o] = x[n, c, hin, o + win0]
                    else:
                        for o in range(xlo, xhi):
                            out[n, c, j, h, o] = x[n, c, hin, o * sw + win0]
                    for o in range(xhi, ow):
                        out[n, c, j, h, o] = 0


@njit(cache=True)
def shift_sum(z, dh, oh, out):
    """Sum the kernel rows of a stacked product into NCHW.

    z: (N, G, kh, Og, rows, ow); out: (N, G*Og, oh, ow) with
    out[n, g*Og + o, y, x] = sum_i z[n, g, i, o, y + i*dh, x].
    """
    n_batch, n_groups, kh, og, rows, ow = z.shape
    for n in range(n_batch):
        for g in range(n_groups):
            for o in range(og):
                go = g * og + o
                for y in range(oh):
                    for x in range(ow):
                        out[n, go, y, x] = z[n, g, 0, o, y, x]
                for i in range(1, kh):
                    for y in range(oh):
                        r = y + i * dh
                        for x in range(ow):
                            out[n, go, y, x] += z[n, g, i, o, r, x]


def _args(geom):
    gh, gw = geom
    return (gh.kernel, gw.kernel, gh.stride, gw.stride, gh.dilation, gw.dilation,
            gh.pad_lo, gw.pad_lo, gh.size_out, gw.size_out)


def _chunk(n_batch, per_sample_elems, itemsize):
    return int(max(1, min(n_batch, _CHUNK_BYTES // max(1, per_sample_elems * itemsize))))


def _stacked_weight(w, groups, kh, kw):
    """(O, Cg, kh, kw) -> (G, kh*Og, Cg*kw) with [g, i*Og + o, c*kw + j] = w[g*Og + o, c, i, j]."""
    n_out, cg = w.shape[:2]
    og = n_out // groups
    return np.ascontiguousarray(
        w.reshape(groups, og, cg, kh, kw).transpose(0, 3, 1, 2, 4)).reshape(groups, kh * og,
                                                                            cg * kw)


def _conv_rows(x, w, geom, groups):
    """Convolution with vertical stride 1 by the row-shift method.

    The input is unfolded along the width only (kw copies instead of kh*kw), one GEMM per group
    multiplies it by all kernel rows at once, and :func:`shift_sum` adds the kernel rows, each
    shifted by its row offset, into the NCHW output.
    """
    n_batch, n_chan = x.shape[:2]
    n_out = w.shape[0]
    gh, gw = geom
    kh, kw = gh.kernel, gw.kernel
    oh, ow = gh.size_out, gw.size_out
    rows = oh + gh.dilation * (kh - 1)  # input rows (padding included) that the outputs read
    cg, og = n_chan // groups, n_out // groups
    x = np.ascontiguousarray(x)
    ws = _stacked_weight(np.ascontiguousarray(w), groups, kh, kw)
    y = np.empty((n_batch, n_out, oh, ow), dtype=x.dtype)
    per_sample = (n_chan * kw + groups * kh * og) * rows * ow
    step = _chunk(n_batch, per_sample, x.itemsize)
    xu = np.empty((step, n_chan, kw, rows, ow), dtype=x.dtype)
    z = np.empty((step, groups, kh, og, rows, ow), dtype=x.dtype)
    for n0 in range(0, n_batch, step):
        nb = min(step, n_batch - n0)
        unfold_rows(x[n0:n0 + nb], kw, gw.stride, gw.dilation, gw.pad_lo, gh.pad_lo, rows, ow,
                    xu[:nb])
        # (G, kh*Og, Cg*kw) @ (nb, G, Cg*kw, rows*ow) -> (nb, G, kh*Og, rows*ow)
        np.matmul(ws, xu[:nb].reshape(nb, groups, cg * kw, rows * ow),
                  out=z[:nb].reshape(nb, groups, kh * og, rows * ow))
        shift_sum(z[:nb], gh.dilation, oh, y[n0:n0 + nb])
    return y


def _conv_im2col(x, w, geom, groups):
    """Convolution by im2col and one GEMM per group over a chunk of the batch (any stride)."""
    n_batch, n_chan = x.shape[:2]
    n_out = w.shape[0]
    gh, gw = geom
    p = gh.size_out * gw.size_out
    kk = gh.kernel * gw.kernel
    cg, og = n_chan // groups, n_out // groups
    x = np.ascontiguousarray(x)
    w_mat = np.ascontiguousarray(w).reshape(groups, og, cg * kk)  # (G, Og, Cg*kh*kw)
    y = np.empty((n_batch, n_out, p), dtype=x.dtype)
    step = _chunk(n_batch, (n_chan * kk + n_out) * p, x.itemsize)
    cols = np.empty(n_chan * kk * step * p, dtype=x.dtype)
    prod = np.empty(n_out * step * p, dtype=x.dtype)
    for n0 in range(0, n_batch, step):
        nb = min(step, n_batch - n0)
        c = cols[:n_chan * kk * nb * p].reshape(n_chan * kk, nb, p)
        im2col(x[n0:n0 + nb], *_args(geom), c)
        yc = prod[:n_out * nb * p].reshape(n_out, nb, p)
        # (G, Og, Cg*kk) @ (G, Cg*kk, nb*P) -> (G, Og, nb*P)
        np.matmul(w_mat, c.reshape(groups, cg * kk, nb * p),
                  out=yc.reshape(groups, og, nb * p))
        channels_to_batch(yc, y[n0:n0 + nb])
    return y.reshape(n_batch, n_out, gh.size_out, gw.size_out)


def conv2d_forward(x, w, geom, groups):
    """y = conv(x, w).  x: (N, C, H, W), w: (O, C/groups, kh, kw) -> y: (N, O, OH, OW)."""
    if geom[0].stride == 1:
        return _conv_rows(x, w, geom, groups)
    return _conv_im2col(x, w, geom, groups)


def _flipped_transposed_weight(w, groups):
    """(O, Cg, kh, kw) -> (C, Og, kh, kw) with [g*Cg + c, o, i, j] = w[g*Og + o, c, -1-i, -1-j]."""
    n_out, cg, kh, kw = w.shape
    og = n_out // groups
    wt = w.reshape(groups, og, cg, kh, kw)[:, :, :, ::-1, ::-1].transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(wt).reshape(groups * cg, og, kh, kw)


def conv2d_transpose_forward(y, w, geom, groups):
    """x = conv^T(y, w), the adjoint of :func:`conv2d_forward` in its first argument.

    y: (N, O, OH, OW) with OH, OW the geometry's ``size_out``; w: (O, C/groups, kh, kw)
    -> x: (N, C, H, W) with H, W the geometry's ``size_in``.

    With stride 1 the adjoint is itself a convolution, with the kernel flipped, its channel axes
    swapped and padding ``dilation*(k-1) - pad_lo``; it then runs on the row-shift path when that
    moves fewer elements than the col2im path (it does unless the output has few channels).
    """
    gh, gw = geom
    n_out, cg = w.shape[:2]
    n_chan = cg * groups
    rows = gh.size_in + gh.dilation * (gh.kernel - 1)
    rows_cost = (n_out * gw.kernel + gh.kernel * n_chan) * rows * gw.size_in
    col2im_cost = 2 * n_chan * gh.kernel * gw.kernel * gh.size_out * gw.size_out
    if all(a.stride == 1 for a in geom) and rows_cost <= col2im_cost:
        flipped = tuple(AxisGeometry(a.size_out, a.kernel, 1, a.dilation,
                                     a.dilation * (a.kernel - 1) - a.pad_lo, a.size_in)
                        for a in geom)
        return _conv_rows(y, _flipped_transposed_weight(np.ascontiguousarray(w), groups),
                          flipped, groups)
    return _conv_transpose_col2im(y, w, geom, groups)


def _conv_transpose_col2im(y, w, geom, groups):
    """Transposed convolution by one GEMM per group (w^T @ y) and col2im (any stride)."""
    n_batch, n_out = y.shape[:2]
    gh, gw = geom
    cg = w.shape[1]
    n_chan = cg * groups
    og = n_out // groups
    kk = gh.kernel * gw.kernel
    p = gh.size_out * gw.size_out
    y = np.ascontiguousarray(y).reshape(n_batch, n_out, p)
    # w^T per group: (G, Cg*kk, Og)
    wt = np.ascontiguousarray(
        np.ascontiguousarray(w).reshape(groups, og, cg * kk).transpose(0, 2, 1))
    x = np.empty((n_batch, n_chan, gh.size_in, gw.size_in), dtype=y.dtype)
    step = _chunk(n_batch, (n_chan * kk + n_out) * p, y.itemsize)
    cols = np.empty(n_chan * kk * step * p, dtype=y.dtype)
    yt = np.empty(n_out * step * p, dtype=y.dtype)
    for n0 in range(0, n_batch, step):
        nb = min(step, n_batch - n0)
        yc = yt[:n_out * nb * p].reshape(n_out, nb, p)
        batch_to_channels(y[n0:n0 + nb], yc)
        c = cols[:n_chan * kk * nb * p].reshape(n_chan * kk, nb, p)
        np.matmul(wt, yc.reshape(groups, og, nb * p), out=c.reshape(groups, cg * kk, nb * p))
        col2im(c, *_args(geom), x[n0:n0 + nb])
    return x


def _weight_rows(x, gy, geom, groups, weight_shape):
    """dL/dw for vertical stride 1: per-sample GEMMs of dL/dy against the width-unfolded x."""
    n_batch, n_chan = x.shape[:2]
    n_out = gy.shape[1]
    gh, gw = geom
    kh, kw, dh = gh.kernel, gw.kernel, gh.dilation
    oh, ow = gh.size_out, gw.size_out
    rows = oh + dh * (kh - 1)
    cg, og = n_chan // groups, n_out // groups
    x = np.ascontiguousarray(x)
    gy = np.ascontiguousarray(gy)
    dtype = np.result_type(x.dtype, gy.dtype)
    dws = np.zeros((groups, kh, og, cg * kw), dtype=dtype)  # dws[g, i, o, c*kw + j]
    step = _chunk(n_batch, n_chan * kw * rows * ow, x.itemsize)
    xu = np.empty((step, n_chan, kw, rows, ow), dtype=x.dtype)
    gy = gy.reshape(n_batch, groups, og, oh * ow)
    for n0 in range(0, n_batch, step):
        nb = min(step, n_batch - n0)
        unfold_rows(x[n0:n0 + nb], kw, gw.stride, gw.dilation, gw.pad_lo, gh.pad_lo, rows, ow,
                    xu[:nb])
        xu_g = xu[:nb].reshape(nb, groups, cg * kw, rows * ow)
        for i in range(kh):
            cols = xu_g[:, :, :, i * dh * ow:(i * dh + oh) * ow]  # (nb, G, Cg*kw, oh*ow)
            # sum over the chunk of gy_n (Og, oh*ow) @ cols_n^T (oh*ow, Cg*kw)
            dws[:, i] += np.matmul(gy[n0:n0 + nb], cols.transpose(0, 1, 3, 2)).sum(axis=0)
    # dws[g, i, o, c, j] -> dw[g*Og + o, c, i, j]
    return np.ascontiguousarray(
        dws.reshape(groups, kh, og, cg, kw).transpose(0, 2, 3, 1, 4)).reshape(weight_shape)


def conv2d_weight(x, gy, geom, groups, weight_shape):
    """dL/dw of y = conv(x, w) given gy = dL/dy.

    x: (N, C, H, W), gy: (N, O, OH, OW) -> (O, C/groups, kh, kw).
    """
    if geom[0].stride == 1:
        return _weight_rows(x, gy, geom, groups, weight_shape)
    n_batch, n_chan = x.shape[:2]
    n_out = gy.shape[1]
    gh, gw = geom
    kk = gh.kernel * gw.kernel
    p = gh.size_out * gw.size_out
    cg, og = n_chan // groups, n_out // groups
    x = np.ascontiguousarray(x)
    gy = np.ascontiguousarray(gy).reshape(n_batch, n_out, p)
    dtype = np.result_type(x.dtype, gy.dtype)
    dw = np.zeros((groups, og, cg * kk), dtype=dtype)
    step = _chunk(n_batch, (n_chan * kk + n_out) * p, x.itemsize)
    cols = np.empty(n_chan * kk * step * p, dtype=x.dtype)
    gt = np.empty(n_out * step * p, dtype=gy.dtype)
    for n0 in range(0, n_batch, step):
        nb = min(step, n_batch - n0)
        c = cols[:n_chan * kk * nb * p].reshape(n_chan * kk, nb, p)
        im2col(x[n0:n0 + nb], *_args(geom), c)
        gc = gt[:n_out * nb * p].reshape(n_out, nb, p)
        batch_to_channels(gy[n0:n0 + nb], gc)
        # dw_g += gy_g (Og, nb*P) @ cols_g^T (nb*P, Cg*kk)
        dw += np.matmul(gc.reshape(groups, og, nb * p),
                        c.reshape(groups, cg * kk, nb * p).transpose(0, 2, 1))
    return dw.reshape(weight_shape)
