"""CUDA convolution kernels: im2col / col2im in CUDA C (``conv.cu``), GEMMs in cuBLAS (CuPy).

The same three drivers as :mod:`tinygen.kernels.cpu.conv`, with the same signatures, on device
arrays (NCHW; any strides, made C-contiguous here):

* :func:`conv2d_forward`            y = conv(x, w)          (also: the input gradient of conv^T)
* :func:`conv2d_transpose_forward`  x = conv^T(y, w)        (also: the input gradient of conv)
* :func:`conv2d_weight`             dw from x and dL/dy     (shared by conv and conv^T)

The geometry of each call is a pair of :class:`tinygen.kernels.geometry.AxisGeometry` (height,
width). The adjoint structure is the CPU path's im2col one:

    conv:    cols = im2col(x)                (C*kh*kw, N, P)       P = OH*OW
             y_g  = w_g @ cols_g             (Og, Cg*kh*kw) @ (Cg*kh*kw, N*P), per group g
    conv^T:  cols_g = w_g^T @ y_g            (Cg*kh*kw, Og) @ (Og, N*P)
             x = col2im(cols)                a gather: deterministic, no atomics
    weight:  dw_g = gy_g @ cols_g^T          (Og, N*P) @ (N*P, Cg*kh*kw)

where y_g and gy_g are the channel-major (O, N, P) copies of (N, O, P) arrays made by the
``swap_leading_axes`` kernel. The batch is processed in chunks of at most
:data:`WORKSPACE_BYTES` of workspace.

:data:`ALGORITHM` ``"direct"`` selects the naive rung of the ladder instead: one kernel per
operation, a thread per output element looping over the window (``conv2d_direct``,
``conv2d_transpose_direct``, ``conv2d_weight_direct`` in ``conv.cu``), no GEMM and no workspace.
"""
from __future__ import annotations

import numpy as np

from . import _grid, _runtime
from ._grid import i32 as _i32

__all__ = ["conv2d_forward", "conv2d_transpose_forward", "conv2d_weight", "im2col", "col2im"]

_SOURCE = "conv.cu"

# Workspace (unfolded input + GEMM product) of one batch chunk, in bytes. The conv autoencoder's
# largest layer at batch 100 (32 channels, 5x5 kernel, 20x20 output, float32) needs about 130 MB:
# one chunk on a GPU, so one GEMM per group and layer.
WORKSPACE_BYTES = 512 << 20

#: ``"im2col"`` (im2col / col2im kernels around cuBLAS GEMMs, the default) or ``"direct"`` (the
#: naive one-kernel loops); benchmarks/bench_cuda_conv.py times both.
ALGORITHM = "im2col"


def _use_direct():
    if ALGORITHM not in ("im2col", "direct"):
        raise ValueError(f"kernels.cuda.conv.ALGORITHM must be 'im2col' or 'direct', got "
                         f"{ALGORITHM!r}")
    return ALGORITHM == "direct"


def _direct_args(x_shape, geom, n_out, groups):
    """The scalar arguments of the direct kernels: x's (N, C, H, W), the geometry, O, groups."""
    return _i32(*x_shape) + _geom_args(geom) + _i32(n_out, groups)


def _geom_args(geom):
    """The scalar geometry arguments of im2col/col2im: kh, kw, sh, sw, ph, pw, dh, dw, oh, ow."""
    gh, gw = geom
    return _i32(gh.kernel, gw.kernel, gh.stride, gw.stride, gh.pad_lo, gw.pad_lo, gh.dilation,
                gw.dilation, gh.size_out, gw.size_out)


def im2col(x, geom, cols):
    """cols[(c*kh + i)*kw + j, n, oy*OW + ox] = x[n, c, oy*sh + i*dh - ph, ox*sw + j*dw - pw]
    (0 outside x). x: (N, C, H, W) C-contiguous; cols (out): (C*kh*kw, N, OH*OW) C-contiguous."""
    n_batch, n_chan, height, width = x.shape
    _grid.launch(_SOURCE, "im2col", x.dtype, cols.size,
                 (x, cols) + _i32(n_batch, n_chan, height, width) + _geom_args(geom))


def col2im(cols, geom, x):
    """The adjoint of :func:`im2col`: x[n, c, r, s] = the sum of the cols entries that read
    x[n, c, r, s] (as a gather: deterministic). cols: (C*kh*kw, N, OH*OW); x (out): (N, C, H, W)."""
    n_batch, n_chan, height, width = x.shape
    _grid.launch(_SOURCE, "col2im", x.dtype, x.size,
                 (cols, x) + _i32(n_batch, n_chan, height, width) + _geom_args(geom))


def _swap_leading_axes(src, dst):
    """dst (B, A, P) = src (A, B, P) with the two leading axes swapped (both C-contiguous)."""
    a, b = src.shape[:2]
    p = src.size // max(1, a * b)
    _grid.launch(_SOURCE, "swap_leading_axes", src.dtype, src.size,
                 (src, dst, np.int32(a), np.int32(b), np.int64(p)))


class _Plan:
    """The sizes of one call: batch N, channels C (input) and O (output), kernel taps kk = kh*kw,
    output pixels P = OH*OW, per-group channels Cg and Og, and the batch chunks (n0, nb) whose
    workspace (unfolded input (C*kk, nb, P) + GEMM product (O, nb, P)) fits WORKSPACE_BYTES."""

    def __init__(self, n_batch, n_chan, n_out, geom, groups, itemsize):
        gh, gw = geom
        self.n_batch, self.n_chan, self.n_out, self.groups = n_batch, n_chan, n_out, groups
        self.kk = gh.kernel * gw.kernel
        self.p = gh.size_out * gw.size_out
        self.cg, self.og = n_chan // groups, n_out // groups
        per_sample = (n_chan * self.kk + n_out) * self.p * itemsize
        self.step = int(max(1, min(n_batch, WORKSPACE_BYTES // max(1, per_sample))))

    def chunks(self):
        for n0 in range(0, self.n_batch, self.step):
            yield n0, min(self.step, self.n_batch - n0)

    def buffer(self, cp, channels, dtype):
        """A flat workspace for ``channels`` x (one chunk) x P elements."""
        return cp.empty(channels * self.step * self.p, dtype=dtype)

    def view(self, buf, channels, nb):
        """The (channels, nb, P) start of a :meth:`buffer`."""
        return buf[:channels * nb * self.p].reshape(channels, nb, self.p)


def _check_shapes(op, geom, groups, x_shape, w_shape, y_shape):
    """The shapes a call implies must agree with each other and with the geometry: a kernel given
    the wrong ones would read or write outside the arrays on a GPU.

    x: (N, C, H, W), w: (O, C/groups, kh, kw), y: (N, O, OH, OW), with (H, W), (kh, kw) and
    (OH, OW) the geometry's size_in, kernel and size_out."""
    gh, gw = geom
    n_batch, n_out = y_shape[:2] if len(y_shape) == 4 else (None, None)
    ok = (len(x_shape) == 4 and len(w_shape) == 4 and len(y_shape) == 4 and groups >= 1 and
          x_shape[0] == n_batch and tuple(x_shape[2:]) == (gh.size_in, gw.size_in) and
          w_shape[0] == n_out and n_out % groups == 0 and w_shape[1] * groups == x_shape[1] and
          tuple(w_shape[2:]) == (gh.kernel, gw.kernel) and
          tuple(y_shape[2:]) == (gh.size_out, gw.size_out))
    if not ok:
        raise ValueError(f"{op}: shapes x {tuple(x_shape)}, w {tuple(w_shape)}, y "
                         f"{tuple(y_shape)} do not fit the geometry (in {gh.size_in}x{gw.size_in}"
                         f", kernel {gh.kernel}x{gw.kernel}, out {gh.size_out}x{gw.size_out}) "
                         f"with groups={groups}")


def conv2d_forward(x, w, geom, groups):
    """y = conv(x, w).  x: (N, C, H, W), w: (O, C/groups, kh, kw) -> y: (N, O, OH, OW)."""
    cp = _runtime.cupy()
    dtype = _grid.same_dtype("conv2d_forward", x, w)
    _check_shapes("conv2d_forward", geom, groups, x.shape, w.shape,
                  (x.shape[0], w.shape[0], geom[0].size_out, geom[1].size_out))
    x, w = cp.ascontiguousarray(x), cp.ascontiguousarray(w)
    y = cp.empty((x.shape[0], w.shape[0], geom[0].size_out, geom[1].size_out), dtype=dtype)
    if _use_direct():
        _grid.launch(_SOURCE, "conv2d_direct", dtype, y.size,
                     (x, w, y) + _direct_args(x.shape, geom, w.shape[0], groups))
        return y
    pl = _Plan(x.shape[0], x.shape[1], w.shape[0], geom, groups, x.itemsize)
    w_mat = w.reshape(groups, pl.og, pl.cg * pl.kk)                      # (G, Og, Cg*kk)
    cols_buf = pl.buffer(cp, pl.n_chan * pl.kk, dtype)
    for n0, nb in pl.chunks():
        cols = pl.view(cols_buf, pl.n_chan * pl.kk, nb)                  # (C*kk, nb, P)
        im2col(x[n0:n0 + nb], geom, cols)
        # (G, Og, Cg*kk) @ (G, Cg*kk, nb*P) -> (G, Og, nb*P) = (O, nb, P)
        prod = cp.matmul(w_mat, cols.reshape(groups, pl.cg * pl.kk, nb * pl.p))
        _swap_leading_axes(cp.ascontiguousarray(prod).reshape(pl.n_out, nb, pl.p),
                           y[n0:n0 + nb])
    return y


def conv2d_transpose_forward(y, w, geom, groups):
    """x = conv^T(y, w), the adjoint of :func:`conv2d_forward` in its first argument.

    y: (N, O, OH, OW) with OH, OW the geometry's ``size_out``; w: (O, C/groups, kh, kw)
    -> x: (N, C, H, W) with H, W the geometry's ``size_in``.
    """
    cp = _runtime.cupy()
    dtype = _grid.same_dtype("conv2d_transpose_forward", y, w)
    _check_shapes("conv2d_transpose_forward", geom, groups,
                  (y.shape[0], w.shape[1] * groups, geom[0].size_in, geom[1].size_in), w.shape,
                  y.shape)
    y, w = cp.ascontiguousarray(y), cp.ascontiguousarray(w)
    x = cp.empty((y.shape[0], w.shape[1] * groups, geom[0].size_in, geom[1].size_in),
                 dtype=dtype)
    if _use_direct():
        _grid.launch(_SOURCE, "conv2d_transpose_direct", dtype, x.size,
                     (y, w, x) + _direct_args(x.shape, geom, y.shape[1], groups))
        return x
    pl = _Plan(y.shape[0], w.shape[1] * groups, y.shape[1], geom, groups, y.itemsize)
    w_t = w.reshape(groups, pl.og, pl.cg * pl.kk).transpose(0, 2, 1)    # (G, Cg*kk, Og)
    yc_buf = pl.buffer(cp, pl.n_out, dtype)
    for n0, nb in pl.chunks():
        yc = pl.view(yc_buf, pl.n_out, nb)
        _swap_leading_axes(y[n0:n0 + nb], yc)                            # (nb, O, P) -> (O, nb, P)
        # (G, Cg*kk, Og) @ (G, Og, nb*P) -> (G, Cg*kk, nb*P) = (C*kk, nb, P)
        cols = cp.ascontiguousarray(cp.matmul(w_t, yc.reshape(groups, pl.og, nb * pl.p)))
        col2im(cols.reshape(pl.n_chan * pl.kk, nb, pl.p), geom, x[n0:n0 + nb])
    return x


def conv2d_weight(x, gy, geom, groups, weight_shape):
    """dL/dw of y = conv(x, w) given gy = dL/dy.

    x: (N, C, H, W), gy: (N, O, OH, OW) -> (O, C/groups, kh, kw) (``weight_shape``).
    """
    cp = _runtime.cupy()
    dtype = _grid.same_dtype("conv2d_weight", x, gy)
    _check_shapes("conv2d_weight", geom, groups, x.shape, tuple(weight_shape), gy.shape)
    x, gy = cp.ascontiguousarray(x), cp.ascontiguousarray(gy)
    if _use_direct():
        dw = cp.empty(tuple(weight_shape), dtype=dtype)
        _grid.launch(_SOURCE, "conv2d_weight_direct", dtype, dw.size,
                     (x, gy, dw) + _direct_args(x.shape, geom, gy.shape[1], groups))
        return dw
    pl = _Plan(x.shape[0], x.shape[1], gy.shape[1], geom, groups, x.itemsize)
    dw = None                                                            # (G, Og, Cg*kk)
    cols_buf = pl.buffer(cp, pl.n_chan * pl.kk, dtype)
    gc_buf = pl.buffer(cp, pl.n_out, dtype)
    for n0, nb in pl.chunks():
        cols = pl.view(cols_buf, pl.n_chan * pl.kk, nb)                  # (C*kk, nb, P)
        im2col(x[n0:n0 + nb], geom, cols)
        gc = pl.view(gc_buf, pl.n_out, nb)
        _swap_leading_axes(gy[n0:n0 + nb], gc)                           # (nb, O, P) -> (O, nb, P)
        # dw_g += gy_g (Og, nb*P) @ cols_g^T (nb*P, Cg*kk)
        part = cp.matmul(gc.reshape(groups, pl.og, nb * pl.p),
                         cols.reshape(groups, pl.cg * pl.kk, nb * pl.p).transpose(0, 2, 1))
        dw = part if dw is None else dw + part
    return dw.reshape(tuple(weight_shape))
