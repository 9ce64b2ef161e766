"""CPU convolution kernels: im2col / col2im in Numba, GEMM through BLAS (NumPy ``matmul``).

Arrays only (NCHW, C-contiguous). The geometry of every call is a pair of
:class:`tinygen.kernels.geometry.AxisGeometry` (height, width); see that module for the exact
index relations. Three drivers cover the whole convolution family:

* :func:`conv2d_forward`      y = conv(x, w)            (also: the input gradient of a transposed conv)
* :func:`conv2d_transpose_forward`  x = conv^T(y, w)    (also: the input gradient of a conv)
* :func:`conv2d_weight`       dw from x and dL/dy       (shared by conv and transposed conv)

The batch is processed in chunks of at most :data:`_THREAD_CHUNK_BYTES` of workspace (unfolded
input + GEMM product; :data:`_CHUNK_BYTES` caps both) instead of materializing
``N * C*kh*kw * OH*OW`` elements at once. The chunks run on all cores at once, each a
single-threaded copy kernel + GEMM + copy kernel sequence (``_threads.run_pieces``); the
weight gradient keeps one partial product per chunk and sums them in chunk order, so every
result is the same whichever thread ran which chunk.
"""
from __future__ import annotations

import threading
import types

import numpy as np
from numba import njit

from ..geometry import AxisGeometry
from ._threads import run_pieces

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_transpose_forward", "conv2d_weight"]

# Workspace budget of one batch chunk in bytes. Measured on the conv autoencoder's training step
# (batch 100, 2 vCPUs, steps of the variants interleaved in one process): 4 MB chunks (cache-
# resident) were ~5% faster than 64 MB in quiet periods of the VM but 30-40% slower in its
# frequent contended periods (each chunk is one 2-thread BLAS call; fewer, larger calls suffer
# less); 64 MB (the whole batch of the largest layer in one GEMM) gave the best median.
_CHUNK_BYTES = 64 << 20
# Workspace of one chunk when the chunks run on all cores (``_threads.run_pieces``): small
# enough to stay in a core's L2 cache (2 MB per core on the development VM). CPU time of one
# forward+backward of the conv autoencoder's 32->32 k5 layer on 24x24 (batch 100, one thread,
# two sweeps in one process): 1 MB 88-96 ms, 2 MB 91-92, 4 MB 95-109, 6 MB 96-117, 16 MB
# 105-116, 64 MB (the whole batch) 127-135; the transposed 20->24 layer alike (2 MB 83-87,
# 64 MB 127-133).
_THREAD_CHUNK_BYTES = 2 << 20


def _border(geom, height, width):
    """Zeros needed (top, bottom, left, right) around an input of ``height`` x ``width`` so that
    every position a window reads lies inside."""
    def axis(a, size):
        last = (a.size_out - 1) * a.stride + a.dilation * (a.kernel - 1) - a.pad_lo
        return max(a.pad_lo, 0), max(0, last - size + 1)

    return axis(geom[0], height) + axis(geom[1], width)


def padded_input(x, geom):
    """``x`` inside the zero border its windows read, and the offsets of x's origin in it.

    Returns ``(xp, off_h, off_w)``, xp C-contiguous, such that the convolution input position
    (r, s) -- r = y*stride + i*dilation - pad_lo, negative or past the end in the padding -- is
    xp[n, c, r + off_h, s + off_w] for every position any window reads. No copy when no border
    is needed.
    """
    n_batch, n_chan, height, width = x.shape
    top, bottom, left, right = _border(geom, height, width)
    if top == bottom == left == right == 0:
        return np.ascontiguousarray(x), 0, 0
    xp = np.zeros((n_batch, n_chan, height + top + bottom, width + left + right), dtype=x.dtype)
    xp[:, :, top:top + height, left:left + width] = x
    return xp, top, left


def _window(geom, off_h, off_w):
    """The window geometry the im2col kernels take: (kh, kw, sh, sw, dh, dw, row0, col0, oh, ow),
    row0/col0 the padded-plane position of window (0, 0)'s first element."""
    gh, gw = geom
    return (gh.kernel, gw.kernel, gh.stride, gw.stride, gh.dilation, gw.dilation,
            off_h - gh.pad_lo, off_w - gw.pad_lo, gh.size_out, gw.size_out)


# The kernels below index flattened arrays with unsigned (uint64) offsets: Numba adds a
# negative-index wraparound test to every signed subscript, which keeps LLVM from vectorizing
# the inner loops (measured 3x slower on the width unfold). Every offset is non-negative by
# construction; differences that may go negative are tested in signed arithmetic first.
_U = np.uint64


@njit(cache=True, nogil=True)
def _one_window(img, cols, n_batch, n_chan, plane, win, wp, scatter):
    """im2col (cols = the windows of img) or, with ``scatter``, col2im's accumulation (img +=)
    when every sample has one window (1x1 output; the 4x4 -> 1x1 layers). img, cols: the flat
    padded image (N, C, Hp, Wp) and columns (C*kh*kw, N). The general loops copy one element
    per innermost loop there (2.8 ns an element); here eight samples at a time, each column
    row touched eight elements at a time (0.6 ns an element)."""
    kh, kw, sh, sw, dh, dw, row0, col0, oh, ow = win
    nb, nc = _U(n_batch), _U(n_chan)
    for n0 in range(0, n_batch, 8):
        n1 = min(n0 + 8, n_batch)
        for c in range(nc):
            for i in range(kh):
                for j in range(kw):
                    r = ((c * _U(kh) + _U(i)) * _U(kw) + _U(j)) * nb
                    off = c * plane + _U((i * dh + row0) * wp + j * dw + col0)
                    for n in range(_U(n0), _U(n1)):
                        if scatter:
                            img[n * nc * plane + off] += cols[r + n]
                        else:
                            cols[r + n] = img[n * nc * plane + off]


@njit(cache=True, nogil=True)
def im2col(xp, win, cols):
    """Gather windows into columns, the batch folded into the column index.

    xp: padded input (N, C, Hp, Wp), C-contiguous (see :func:`padded_input`); win: see
    :func:`_window`; cols (out): (C*kh*kw, N, oh*ow) with
    cols[(c*kh + i)*kw + j, n, y*ow + x] = xp[n, c, y*sh + i*dh + row0, x*sw + j*dw + col0].
    """
    if not xp.flags.c_contiguous or not cols.flags.c_contiguous:
        raise ValueError("arrays must be C-contiguous")
    kh, kw, sh, sw, dh, dw, row0, col0, oh, ow = win
    n_batch, n_chan, hp, wp = xp.shape
    src = xp.ravel()
    dst = cols.ravel()
    plane, wpu, owu, swu = _U(hp * wp), _U(wp), _U(ow), _U(sw)
    if oh == 1 and ow == 1:
        _one_window(src, dst, n_batch, n_chan, plane, win, wp, False)
        return
    d = _U(0)
    for c in range(_U(n_chan)):
        for i in range(kh):
            for j in range(kw):
                start = _U((i * dh + row0) * wp + j * dw + col0)
                for n in range(_U(n_batch)):
                    base = (n * _U(n_chan) + c) * plane + start
                    for y in range(_U(oh)):
                        s = base + y * _U(sh) * wpu
                        if sw == 1:
                            for x in range(owu):
                                dst[d + x] = src[s + x]
                        else:
                            for x in range(owu):
                                dst[d + x] = src[s + x * swu]
                        d += owu


@njit(cache=True, nogil=True)
def col2im(cols, win, xp):
    """Scatter-add columns back into a zeroed padded image (the adjoint of :func:`im2col`).

    cols: (C*kh*kw, N, oh*ow); xp (out, overwritten): (N, C, Hp, Wp). Sums run in a fixed
    order, so the result is deterministic.
    """
    if not cols.flags.c_contiguous or not xp.flags.c_contiguous:
        raise ValueError("arrays must be C-contiguous")
    kh, kw, sh, sw, dh, dw, row0, col0, oh, ow = win
    n_batch, n_chan, hp, wp = xp.shape
    src = cols.ravel()
    dst = xp.ravel()
    plane, wpu, owu, swu = _U(hp * wp), _U(wp), _U(ow), _U(sw)
    xp[...] = 0
    if oh == 1 and ow == 1:
        _one_window(dst, src, n_batch, n_chan, plane, win, wp, True)
        return
    s = _U(0)
    for c in range(_U(n_chan)):
        for i in range(kh):
            for j in range(kw):
                start = _U((i * dh + row0) * wp + j * dw + col0)
                for n in range(_U(n_batch)):
                    base = (n * _U(n_chan) + c) * plane + start
                    for y in range(_U(oh)):
                        d = base + y * _U(sh) * wpu
                        if sw == 1:
                            for x in range(owu):
                                dst[d + x] += src[s + x]
                        else:
                            for x in range(owu):
                                dst[d + x * swu] += src[s + x]
                        s += owu


@njit(cache=True, nogil=True)
def batch_to_channels(y, out):
    """(N, C, P) -> (C, N, P): the batch folded next to the pixels for batched GEMMs."""
    if not y.flags.c_contiguous or not out.flags.c_contiguous:
        raise ValueError("arrays must be C-contiguous")
    n_batch, n_chan, p = y.shape
    src = y.ravel()
    dst = out.ravel()
    pu, nb, nc = _U(p), _U(n_batch), _U(n_chan)
    for c in range(nc):
        for n in range(nb):
            s = (n * nc + c) * pu
            d = (c * nb + n) * pu
            for q in range(pu):
                dst[d + q] = src[s + q]


@njit(cache=True, nogil=True)
def channels_to_batch(y, out):
    """(C, N, P) -> (N, C, P), the inverse of :func:`batch_to_channels`."""
    if not y.flags.c_contiguous or not out.flags.c_contiguous:
        raise ValueError("arrays must be C-contiguous")
    n_chan, n_batch, p = y.shape
    src = y.ravel()
    dst = out.ravel()
    pu, nb, nc = _U(p), _U(n_batch), _U(n_chan)
    for n in range(nb):
        for c in range(nc):
            s = (c * nb + n) * pu
            d = (n * nc + c) * pu
            for q in range(pu):
                dst[d + q] = src[s + q]


@njit(cache=True, nogil=True)
def unfold_rows(xp, kw, sw, dw, row0, col0, rows, ow, out):
    """Unfold only along the width (row-shift layout for convolutions with vertical stride 1),
    the batch folded next to the pixels.

    xp: padded input (N, C, Hp, Wp) (see :func:`padded_input`); out: (C, kw, N, rows, ow) with
    out[c, j, n, h, o] = xp[n, c, h + row0, o*sw + j*dw + col0].
    Viewed as (C*kw, N*rows*ow) it is the right operand of one GEMM for the whole chunk.
    """
    if not xp.flags.c_contiguous or not out.flags.c_contiguous:
        raise ValueError("arrays must be C-contiguous")
    n_batch, n_chan, hp, wp = xp.shape
    src = xp.ravel()
    dst = out.ravel()
    plane, wpu, owu, swu = _U(hp * wp), _U(wp), _U(ow), _U(sw)
    d = _U(0)
    for c in range(_U(n_chan)):
        for j in range(_U(kw)):
            start = _U(row0) * wpu + j * _U(dw) + _U(col0)
            for n in range(_U(n_batch)):
                base = (n * _U(n_chan) + c) * plane + start
                for h in range(_U(rows)):
                    s = base + h * wpu
                    if sw == 1:
                        for o in range(owu):
                            dst[d + o] = src[s + o]
                    else:
                        for o in range(owu):
                            dst[d + o] = src[s + o * swu]
                    d += owu


@njit(cache=True, nogil=True)
def shift_sum(z, dh, oh, h_lo, out):
    """Sum the kernel rows of a stacked product into NCHW.

    z: (G, kh, Og, N, rows, ow), its row h holding input row h + h_lo; out: (N, G*Og, oh, ow)
    with out[n, g*Og + o, y, x] = sum_i z[g, i, o, n, y + i*dh - h_lo, x] over the rows that
    exist (the input rows outside z are zero padding and contribute nothing); the terms are
    added in the order of i.
    """
    if not z.flags.c_contiguous or not out.flags.c_contiguous:
        raise ValueError("arrays must be C-contiguous")
    n_groups, kh, og, n_batch, rows, ow = z.shape
    src = z.ravel()
    dst = out.ravel()
    owu, rowsu, nbu = _U(ow), _U(rows), _U(n_batch)
    for n in range(n_batch):
        for g in range(n_groups):
            for o in range(og):
                go = g * og + o
                for y in range(oh):
                    d = _U(((n * n_groups * og + go) * oh + y) * ow)
                    first = True
                    for i in range(kh):
                        r = y + i * dh - h_lo
                        if 0 <= r < rows:
                            s = ((_U((g * kh + i) * og + o) * nbu + _U(n)) * rowsu + _U(r)) * owu
                            if first:
                                for x in range(owu):
                                    dst[d + x] = src[s + x]
                                first = False
                            else:
                                for x in range(owu):
                                    dst[d + x] += src[s + x]
                    if first:
                        for x in range(owu):
                            dst[d + x] = 0


@njit(cache=True, nogil=True)
def spread_rows(gy, kh, dh, out):
    """The adjoint of :func:`shift_sum`: each kernel row's copy of dL/dy, shifted down by i*dh.

    gy: (N, G*Og, oh, ow); out (overwritten): (G, kh, Og, N, rows, ow) with
    out[g, i, o, n, y + i*dh, x] = gy[n, g*Og + o, y, x] and zeros elsewhere.
    """
    if not gy.flags.c_contiguous or not out.flags.c_contiguous:
        raise ValueError("arrays must be C-contiguous")
    n_groups, _, og, n_batch, rows, ow = out.shape
    oh = gy.shape[2]
    src = gy.ravel()
    dst = out.ravel()
    owu = _U(ow)
    d = _U(0)
    for g in range(n_groups):
        for i in range(kh):
            for o in range(og):
                go = g * og + o
                for n in range(n_batch):
                    for r in range(rows):
                        y = r - i * dh
                        if 0 <= y < oh:
                            s = _U(((n * n_groups * og + go) * oh + y) * ow)
                            for x in range(owu):
                                dst[d + x] = src[s + x]
                        else:
                            for x in range(owu):
                                dst[d + x] = 0
                        d += owu


def _chunk(n_batch, per_sample_elems, itemsize, budget=None):
    """Samples per chunk: as many as fit ``budget`` bytes (at most :data:`_CHUNK_BYTES`)."""
    budget = _CHUNK_BYTES if budget is None else min(budget, _CHUNK_BYTES)
    return int(max(1, min(n_batch, budget // max(1, per_sample_elems * itemsize))))


def _workspaces(n_batch, step):
    """Where a driver's chunks keep their workspaces: per thread when the batch makes several
    chunks (they may run on several threads), else a plain namespace (a thread-local object
    and its attribute lookups cost ~3 us a call, measurable on the 0.2-ms kernels of the
    smallest layers)."""
    return threading.local() if n_batch > step else types.SimpleNamespace()


def _sum_in_order(partial):
    """partial[0] + partial[1] + ... in that order (a per-chunk result summed the same way
    whichever thread computed which chunk)."""
    if len(partial) == 1:
        return partial[0]
    total = partial[0].copy()
    for k in range(1, len(partial)):
        total += partial[k]
    return total
_POOL = None


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
    multiplies all kernel rows at once by the unfolded chunk of the batch, and
    :func:`shift_sum` adds the kernel rows, each shifted by its row offset, into the NCHW output.
    """
    n_batch, n_chan = x.shape[:2]
    n_out = w.shape[0]
    gh, gw = geom
    kh, kw = gh.kernel, gw.kernel
    oh, ow = gh.size_out, gw.size_out
    cg, og = n_chan // groups, n_out // groups
    xp, off_h, off_w = padded_input(x, geom)
    # Input rows (in padded coordinates: h + row0) the outputs read are h = 0 .. oh-1 +
    # dh*(kh-1); only those holding data (not zero padding, which adds nothing) go through
    # the GEMM: h in [h_lo, h_lo + rows).
    row0, col0 = off_h - gh.pad_lo, off_w - gw.pad_lo
    h_lo = max(0, off_h - row0)
    rows = max(0, min(oh + gh.dilation * (kh - 1), off_h + gh.size_in - row0) - h_lo)
    ws = _stacked_weight(np.ascontiguousarray(w), groups, kh, kw)   # (G, kh*Og, Cg*kw)
    y = np.empty((n_batch, n_out, oh, ow), dtype=x.dtype)
    per_sample = (n_chan * kw + groups * kh * og) * rows * ow
    step = _chunk(n_batch, per_sample, x.itemsize, _THREAD_CHUNK_BYTES)
    buffers = _workspaces(n_batch, step)

    def chunk(n0):
        nb = min(step, n_batch - n0)
        if not hasattr(buffers, "xu"):
            buffers.xu = np.empty(n_chan * kw * step * rows * ow, dtype=x.dtype)
            buffers.z = np.empty(groups * kh * og * step * rows * ow, dtype=x.dtype)
        xu = buffers.xu[:n_chan * kw * nb * rows * ow].reshape(n_chan, kw, nb, rows, ow)
        unfold_rows(xp[n0:n0 + nb], kw, gw.stride, gw.dilation, row0 + h_lo, col0, rows, ow,
                    xu)
        z = buffers.z[:groups * kh * og * nb * rows * ow].reshape(groups, kh, og, nb, rows, ow)
        # (G, kh*Og, Cg*kw) @ (G, Cg*kw, nb*rows*ow) -> (G, kh*Og, nb*rows*ow)
        np.matmul(ws, xu.reshape(groups, cg * kw, nb * rows * ow),
                  out=z.reshape(groups, kh * og, nb * rows * ow))
        shift_sum(z, gh.dilation, oh, h_lo, y[n0:n0 + nb])

    run_pieces(chunk, range(0, n_batch, step))
    return y


def _conv_im2col(x, w, geom, groups):
    """Convolution by im2col and one GEMM per group over a chunk of the batch (any stride)."""
    n_batch, n_chan = x.shape[:2]
    n_out = w.shape[0]
    gh, gw = geom
    p = gh.size_out * gw.size_out
    kk = gh.kernel * gw.kernel
    cg, og = n_chan // groups, n_out // groups
    xp, off_h, off_w = padded_input(x, geom)
    win = _window(geom, off_h, off_w)
    w_mat = np.ascontiguousarray(w).reshape(groups, og, cg * kk)  # (G, Og, Cg*kh*kw)
    y = np.empty((n_batch, n_out, p), dtype=x.dtype)
    step = _chunk(n_batch, (n_chan * kk + n_out) * p, x.itemsize, _THREAD_CHUNK_BYTES)
    buffers = _workspaces(n_batch, step)

    def chunk(n0):
        nb = min(step, n_batch - n0)
        if not hasattr(buffers, "cols"):
            buffers.cols = np.empty(n_chan * kk * step * p, dtype=x.dtype)
            buffers.prod = np.empty(n_out * step * p, dtype=x.dtype)
        c = buffers.cols[:n_chan * kk * nb * p].reshape(n_chan * kk, nb, p)
        im2col(xp[n0:n0 + nb], win, c)
        yc = buffers.prod[:n_out * nb * p].reshape(n_out, nb, p)
        # (G, Og, Cg*kk) @ (G, Cg*kk, nb*P) -> (G, Og, nb*P)
        np.matmul(w_mat, c.reshape(groups, cg * kk, nb * p),
                  out=yc.reshape(groups, og, nb * p))
        channels_to_batch(yc, y[n0:n0 + nb])

    run_pieces(chunk, range(0, n_batch, step))
    return y.reshape(n_batch, n_out, gh.size_out, gw.size_out)


def _use_rows(geom, n_chan, groups):
    """Row-shift path: vertical stride 1 and per-sample GEMMs big enough to keep BLAS efficient
    (inner dimension C/groups * kw >= 32 and >= 64 columns); otherwise im2col with the batch
    folded into one GEMM (choices measured on the conv autoencoder's layers)."""
    gh, gw = geom
    rows = gh.size_out + gh.dilation * (gh.kernel - 1)
    return gh.stride == 1 and (n_chan // groups) * gw.kernel >= 32 and rows * gw.size_out >= 64


def conv2d_forward(x, w, geom, groups):
    """y = conv(x, w).  x: (N, C, H, W), w: (O, C/groups, kh, kw) -> y: (N, O, OH, OW)."""
    if _use_rows(geom, x.shape[1], groups):
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
    if all(a.stride == 1 for a in geom) and rows_cost <= col2im_cost and \
            _use_rows(geom, n_out, groups):
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
    height, width = gh.size_in, gw.size_in
    x = np.empty((n_batch, n_chan, height, width), dtype=y.dtype)
    top, bottom, left, right = _border(geom, height, width)
    hp, wp = height + top + bottom, width + left + right
    win = _window(geom, top, left)
    step = _chunk(n_batch, (n_chan * kk + n_out) * p, y.itemsize, _THREAD_CHUNK_BYTES)
    buffers = _workspaces(n_batch, step)

    def chunk(n0):
        nb = min(step, n_batch - n0)
        if not hasattr(buffers, "cols"):
            buffers.cols = np.empty(n_chan * kk * step * p, dtype=y.dtype)
            buffers.yt = np.empty(n_out * step * p, dtype=y.dtype)
            buffers.xp = np.empty((step, n_chan, hp, wp), dtype=y.dtype)
        yc = buffers.yt[:n_out * nb * p].reshape(n_out, nb, p)
        batch_to_channels(y[n0:n0 + nb], yc)
        c = buffers.cols[:n_chan * kk * nb * p].reshape(n_chan * kk, nb, p)
        np.matmul(wt, yc.reshape(groups, og, nb * p), out=c.reshape(groups, cg * kk, nb * p))
        xp = buffers.xp[:nb]
        col2im(c, win, xp)
        x[n0:n0 + nb] = xp[:, :, top:top + height, left:left + width]

    run_pieces(chunk, range(0, n_batch, step))
    return x


def _weight_rows(x, gy, geom, groups, weight_shape):
    """dL/dw for vertical stride 1, one GEMM per group and chunk of the batch.

    With xu the width-unfolded input (:func:`unfold_rows`) and G the kernel-row-shifted copies
    of dL/dy (:func:`spread_rows`), all kernel rows come out of one product:
    dws (kh*Og, Cg*kw) = G (kh*Og, nb*rows*ow) @ xu^T (nb*rows*ow, Cg*kw).
    """
    n_batch, n_chan = x.shape[:2]
    n_out = gy.shape[1]
    gh, gw = geom
    kh, kw, dh = gh.kernel, gw.kernel, gh.dilation
    oh, ow = gh.size_out, gw.size_out
    rows = oh + dh * (kh - 1)
    cg, og = n_chan // groups, n_out // groups
    xp, off_h, off_w = padded_input(x, geom)
    row0, col0 = off_h - gh.pad_lo, off_w - gw.pad_lo
    gy = np.ascontiguousarray(gy)
    dtype = np.result_type(x.dtype, gy.dtype)
    per_sample = (n_chan * kw + groups * kh * og) * rows * ow
    step = _chunk(n_batch, per_sample, x.itemsize, _THREAD_CHUNK_BYTES)
    starts = range(0, n_batch, step)
    # one partial product per chunk, summed in chunk order afterwards (deterministic whichever
    # thread computed which chunk); dws[g, i*Og + o, c*kw + j]
    partial = np.empty((len(starts), groups, kh * og, cg * kw), dtype=dtype)
    buffers = _workspaces(n_batch, step)

    def chunk(n0):
        nb = min(step, n_batch - n0)
        if not hasattr(buffers, "xu"):
            buffers.xu = np.empty(n_chan * kw * step * rows * ow, dtype=x.dtype)
            buffers.sp = np.empty(groups * kh * og * step * rows * ow, dtype=gy.dtype)
        xu = buffers.xu[:n_chan * kw * nb * rows * ow].reshape(n_chan, kw, nb, rows, ow)
        unfold_rows(xp[n0:n0 + nb], kw, gw.stride, gw.dilation, row0, col0, rows, ow, xu)
        sp = buffers.sp[:groups * kh * og * nb * rows * ow].reshape(groups, kh, og, nb, rows, ow)
        spread_rows(gy[n0:n0 + nb], kh, dh, sp)
        # (G, kh*Og, nb*rows*ow) @ (G, nb*rows*ow, Cg*kw) -> (G, kh*Og, Cg*kw)
        np.matmul(sp.reshape(groups, kh * og, nb * rows * ow),
                  xu.reshape(groups, cg * kw, nb * rows * ow).transpose(0, 2, 1),
                  out=partial[n0 // step])

    run_pieces(chunk, starts)
    dws = _sum_in_order(partial)
    # dws[g, i, o, c, j] -> dw[g*Og + o, c, i, j]
    return np.ascontiguousarray(
        dws.reshape(groups, kh, og, cg, kw).transpose(0, 2, 3, 1, 4)).reshape(weight_shape)


def conv2d_weight(x, gy, geom, groups, weight_shape):
    """dL/dw of y = conv(x, w) given gy = dL/dy.

    x: (N, C, H, W), gy: (N, O, OH, OW) -> (O, C/groups, kh, kw).
    """
    if _use_rows(geom, x.shape[1], groups):
        return _weight_rows(x, gy, geom, groups, weight_shape)
    n_batch, n_chan = x.shape[:2]
    n_out = gy.shape[1]
    gh, gw = geom
    kk = gh.kernel * gw.kernel
    p = gh.size_out * gw.size_out
    cg, og = n_chan // groups, n_out // groups
    xp, off_h, off_w = padded_input(x, geom)
    win = _window(geom, off_h, off_w)
    gy = np.ascontiguousarray(gy).reshape(n_batch, n_out, p)
    dtype = np.result_type(x.dtype, gy.dtype)
    step = _chunk(n_batch, (n_chan * kk + n_out) * p, x.itemsize, _THREAD_CHUNK_BYTES)
    starts = range(0, n_batch, step)
    partial = np.empty((len(starts), groups, og, cg * kk), dtype=dtype)   # one per chunk
    buffers = _workspaces(n_batch, step)

    def chunk(n0):
        nb = min(step, n_batch - n0)
        if not hasattr(buffers, "cols"):
            buffers.cols = np.empty(n_chan * kk * step * p, dtype=x.dtype)
            buffers.gt = np.empty(n_out * step * p, dtype=gy.dtype)
        c = buffers.cols[:n_chan * kk * nb * p].reshape(n_chan * kk, nb, p)
        im2col(xp[n0:n0 + nb], win, c)
        gc = buffers.gt[:n_out * nb * p].reshape(n_out, nb, p)
        batch_to_channels(gy[n0:n0 + nb], gc)
        # gy_g (Og, nb*P) @ cols_g^T (nb*P, Cg*kk)
        np.matmul(gc.reshape(groups, og, nb * p),
                  c.reshape(groups, cg * kk, nb * p).transpose(0, 2, 1), out=partial[n0 // step])

    run_pieces(chunk, starts)
    return _sum_in_order(partial).reshape(weight_shape)
