"""Pooling and resampling of images: ``max_pool2d``, ``avg_pool2d``, ``adaptive_avg_pool2d`` and
``interpolate`` (nearest, nearest-exact, linear, bilinear, trilinear, area), and their 1-D
forms ``max_pool1d``, ``avg_pool1d``, ``adaptive_avg_pool1d``, with PyTorch's arguments and output
sizes.

All are built from differentiable primitives, so gradients of every order come from the engine:

* max pooling picks, per window, the position of the first maximum (as PyTorch) with the raw
  arrays, then ``gather``\\ s the values: the gradient goes to that one position;
* average pooling sums ``kernel_size`` strided slices of the (zero-)padded input;
* adaptive average pooling and interpolation are separable linear maps, one small matrix per
  spatial axis: ``out = A_h @ x @ A_w^T`` with ``A`` of shape (out, in).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..kernels import geometry
from ..tensor import Tensor
from ._util import check_tensor
from .indexing import gather
from .linalg import matmul
from .shape import pad

__all__ = ["max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "interpolate", "max_pool1d",
           "avg_pool1d", "adaptive_avg_pool1d"]


def _pair(name, arg, value):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (int(value), int(value))
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, numbers.Integral) for v in value):
        raise ValueError(f"{name}: {arg} must be an int or a pair of ints, got {value!r}")
    return tuple(int(v) for v in value)


def _image(name, x):
    """(x as 4-D, whether a batch axis was added): accepts (N, C, H, W) and (C, H, W)."""
    x = check_tensor(x, "input")
    if x.ndim == 3:
        return x.unsqueeze(0), True
    if x.ndim != 4:
        raise ValueError(f"{name}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape "
                         f"{tuple(x.shape)}")
    return x, False


def _pool_geometry(name, x, kernel_size, stride, padding, dilation, ceil_mode):
    """Per spatial axis: (kernel, stride, pad, dilation, out size, extra right padding)."""
    k = _pair(name, "kernel_size", kernel_size)
    s = k if stride is None or (not isinstance(stride, numbers.Integral) and len(stride) == 0) \
        else _pair(name, "stride", stride)
    p = _pair(name, "padding", padding)
    d = _pair(name, "dilation", dilation)
    axes = []
    for size, ki, si, pi, di in zip(x.shape[2:], k, s, p, d):
        if ki <= 0 or si <= 0 or di <= 0 or pi < 0:
            raise ValueError(f"{name}: kernel_size {k}, stride {s} and dilation {d} must be "
                             f"positive and padding {p} non-negative")
        if pi > ki // 2:
            raise ValueError(f"{name}: padding {p} must be at most half of kernel_size {k}")
        extent = di * (ki - 1) + 1
        if ceil_mode:
            out = -(-(size + 2 * pi - extent) // si) + 1
            if (out - 1) * si >= size + pi:  # the last window must start inside the input
                out -= 1
        else:
            out = geometry.conv_output_size(size, ki, si, pi, di)
        if out <= 0:
            raise ValueError(f"{name}: input of shape {tuple(x.shape)} is too small for "
                             f"kernel_size {k} (dilation {d}, padding {p})")
        extra = max((out - 1) * si + extent - (size + 2 * pi), 0)
        axes.append((ki, si, pi, di, out, extra))
    return axes


def _windows(a, axes):
    """The kernel offsets' strided slices of the padded image ``a`` (Tensor or array), each of
    shape (N, C, out_h, out_w), in row-major kernel order."""
    (kh, sh, _, dh, oh, _), (kw, sw, _, dw, ow, _) = axes
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + (oh - 1) * sh + 1, sh)
            cols = slice(j * dw, j * dw + (ow - 1) * sw + 1, sw)
            yield a[:, :, rows, cols]


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Maximum over each ``kernel_size`` window (padding counts as -inf).

    With ``return_indices=True`` also returns, per output, the flat position ``h * W + w`` of the
    chosen input element (PyTorch's indices, for ``max_unpool2d``).
    """
    x, added = _image("max_pool2d", input)
    if x.dtype.kind != "f":
        raise TypeError(f"max_pool2d: input must be floating point, got dtype {x.dtype}")
    axes = _pool_geometry("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
    (kh, sh, ph, dh, oh, eh), (kw, sw, pw, dw, ow, ew) = axes
    padded = pad(x, (pw, pw + ew, ph, ph + eh), value=-math.inf)
    n, c, hp, wp = padded.shape
    xp = x._xp
    cand = xp.stack(list(_windows(padded.array, axes)))    # (kh*kw, N, C, oh, ow)
    best = cand.argmax(axis=0)                            # kernel offset of the first maximum
    ki, kj = best // kw, best % kw
    rows = xp.arange(oh).reshape(oh, 1) * sh + ki * dh    # padded coordinates, (N, C, oh, ow)
    cols = xp.arange(ow).reshape(1, ow) * sw + kj * dw
    flat = (rows * wp + cols).reshape(n, c, oh * ow)
    out = gather(padded.reshape(n, c, hp * wp), 2, Tensor._wrap(flat)).reshape(n, c, oh, ow)
    if added:
        out = out.squeeze(0)
    if not return_indices:
        return out
    w = x.shape[3]
    indices = Tensor._wrap(((rows - ph) * w + (cols - pw)).astype(np.int64))
    return out, (indices.squeeze(0) if added else indices)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """Mean over each ``kernel_size`` window of the zero-padded input.

    The divisor is the window's size clipped to the padded input (``count_include_pad=True``) or
    to the input itself (``False``), or ``divisor_override``.
    """
    x, added = _image("avg_pool2d", input)
    if x.dtype.kind != "f":
        raise TypeError(f"avg_pool2d: input must be floating point, got dtype {x.dtype}")
    axes = _pool_geometry("avg_pool2d", x, kernel_size, stride, padding, 1, ceil_mode)
    (kh, sh, ph, _, oh, eh), (kw, sw, pw, _, ow, ew) = axes
    padded = pad(x, (pw, pw + ew, ph, ph + eh))
    total = None
    for window in _windows(padded, axes):
        total = window if total is None else total + window
    if divisor_override is not None:
        if divisor_override == 0:
            raise ValueError("avg_pool2d: divisor_override must not be 0")
        out = total * (1.0 / divisor_override)
    else:
        xp = x._xp
        h, w = x.shape[2:]
        inside = xp.zeros((1, 1, h + 2 * ph + eh, w + 2 * pw + ew), dtype=x.dtype)
        if count_include_pad:
            inside[..., :h + 2 * ph, :w + 2 * pw] = 1
        else:
            inside[..., ph:ph + h, pw:pw + w] = 1
        count = sum(_windows(inside, axes))               # (1, 1, oh, ow)
        out = total / Tensor._wrap(count)
    return out.squeeze(0) if added else out


def _adaptive_matrix(xp, n_in, n_out, dtype):
    """(n_out, n_in): row i averages input positions floor(i n_in / n_out) .. ceil((i+1) n_in /
    n_out) - 1, PyTorch's adaptive windows."""
    a = np.zeros((n_out, n_in))
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        a[i, lo:hi] = 1.0 / (hi - lo)
    return Tensor._wrap(xp.asarray(a.astype(dtype)))


def adaptive_avg_pool2d(input, output_size) -> Tensor:
    """Average pooling to a fixed ``output_size`` (an int, or a pair whose None entries keep the
    input's size), with PyTorch's window boundaries."""
    x, added = _image("adaptive_avg_pool2d", input)
    if x.dtype.kind != "f":
        raise TypeError(f"adaptive_avg_pool2d: input must be floating point, got dtype {x.dtype}")
    if isinstance(output_size, numbers.Integral) or output_size is None:
        output_size = (output_size, output_size)
    oh, ow = (x.shape[2 + i] if o is None else int(o) for i, o in enumerate(output_size))
    if oh <= 0 or ow <= 0:
        raise ValueError(f"adaptive_avg_pool2d: output_size must be positive, got {output_size}")
    a_h = _adaptive_matrix(x._xp, x.shape[2], oh, x.dtype)
    a_w = _adaptive_matrix(x._xp, x.shape[3], ow, x.dtype)
    out = matmul(matmul(a_h, x), a_w.mT)                 # (N, C, oh, ow)
    return out.squeeze(0) if added else out


# -- interpolation ------------------------------------------------------------------------------
def _interp_matrix(mode, n_in, n_out, scale, align_corners):
    """(n_out, n_in) float64 weights of one axis (PyTorch's source-index rules).

    ``scale`` is 1 / scale_factor when a scale factor was given, else None (n_in / n_out).
    """
    m = np.zeros((n_out, n_in))
    dst = np.arange(n_out)
    if mode in ("nearest", "nearest-exact"):
        # PyTorch computes the source index in float32
        s = np.float32(scale if scale is not None else n_in / n_out)
        offset = np.float32(0.5 if mode == "nearest-exact" else 0.0)
        src = np.floor((dst.astype(np.float32) + offset) * s).astype(np.int64)
        m[dst, np.minimum(src, n_in - 1)] = 1.0
        return m
    if align_corners:
        s = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        src = dst * s
    else:
        s = scale if scale is not None else n_in / n_out
        src = np.maximum((dst + 0.5) * s - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    np.add.at(m, (dst, i0), 1.0 - lam)
    np.add.at(m, (dst, i1), lam)
    return m


_MODES = {"nearest": (1, 2, 3), "nearest-exact": (1, 2, 3), "linear": (1,), "bilinear": (2,),
          "trilinear": (3,), "area": (1, 2, 3)}


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False) -> Tensor:
    """Resample the spatial axes of an (N, C, L) / (N, C, H, W) / (N, C, D, H, W) input.

    ``mode``: ``"nearest"`` (PyTorch's legacy rule ``src = floor(dst * scale)``),
    ``"nearest-exact"``, ``"linear"`` / ``"bilinear"`` / ``"trilinear"`` (3-, 4-, 5-D input),
    with ``align_corners`` as in PyTorch, or ``"area"`` (adaptive average pooling). Give exactly
    one of ``size`` and ``scale_factor``; the output size is ``floor(in * scale_factor)``.
    """
    x = check_tensor(input, "input")
    if mode not in _MODES:
        raise ValueError(f"interpolate: mode must be one of {sorted(_MODES)}, got {mode!r}")
    n_sp = x.ndim - 2
    if n_sp not in _MODES[mode]:
        raise ValueError(f"interpolate: mode={mode!r} does not take a {x.ndim}-D input "
                         f"(shape {tuple(x.shape)})")
    if x.dtype.kind != "f":
        raise TypeError(f"interpolate: input must be floating point, got dtype {x.dtype}")
    if antialias:
        raise ValueError("interpolate: antialias=True is not supported")
    if align_corners is not None and (mode.startswith("nearest") or mode == "area"):
        raise ValueError("interpolate: align_corners only applies to linear modes")
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor")
    in_sizes = x.shape[2:]
    if size is not None:
        sizes = (size,) * n_sp if isinstance(size, numbers.Integral) else tuple(size)
        if len(sizes) != n_sp:
            raise ValueError(f"interpolate: size {size} must have {n_sp} entries for input "
                             f"shape {tuple(x.shape)}")
        out_sizes, scales = tuple(int(s) for s in sizes), (None,) * n_sp
    else:
        factors = (scale_factor,) * n_sp if isinstance(scale_factor, numbers.Real) \
            else tuple(scale_factor)
        if len(factors) != n_sp:
            raise ValueError(f"interpolate: scale_factor {scale_factor} must have {n_sp} entries "
                             f"for input shape {tuple(x.shape)}")
        out_sizes = tuple(int(math.floor(n * float(f))) for n, f in zip(in_sizes, factors))
        scales = (None,) * n_sp if recompute_scale_factor else \
            tuple(1.0 / float(f) for f in factors)
    if any(s <= 0 for s in out_sizes):
        raise ValueError(f"interpolate: output size {out_sizes} must be positive")
    out = x
    for k, (n_in, n_out, scale) in enumerate(zip(in_sizes, out_sizes, scales)):
        if n_in == n_out and scale in (None, 1.0):
            continue
        if mode == "area":
            m = _adaptive_matrix(x._xp, n_in, n_out, x.dtype)
        else:
            m = _interp_matrix(mode, n_in, n_out, scale, bool(align_corners))
            m = Tensor._wrap(x._xp.asarray(m.astype(x.dtype)))   # (n_out, n_in)
        axis = 2 + k
        moved = out.transpose(axis, -1)                          # the resampled axis last
        out = matmul(moved, m.mT).transpose(axis, -1)
    return out


# -- 1-D forms: the 2-D ops on a height-1 image -------------------------------------------------
def _as_2d(name, x):
    """(N, C, L) or (C, L) -> (N, C, 1, L) or (C, 1, L)."""
    x = check_tensor(x, "input")
    if x.ndim not in (2, 3):
        raise ValueError(f"{name}: expected a 2-D (C, L) or 3-D (N, C, L) input, got shape "
                         f"{tuple(x.shape)}")
    return x.unsqueeze(-2)


def _first(name, arg, value):
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"{name}: {arg} must be an int or a 1-tuple, got {value!r}")
        value = value[0]
    return value


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Maximum over each window of ``kernel_size`` along the last axis."""
    one = (lambda a, v: (1, _first("max_pool1d", a, v)))
    out = max_pool2d(_as_2d("max_pool1d", input), one("kernel_size", kernel_size),
                     None if stride is None else one("stride", stride),
                     (0, _first("max_pool1d", "padding", padding)), one("dilation", dilation),
                     ceil_mode, return_indices)
    if return_indices:
        return out[0].squeeze(-2), out[1].squeeze(-2)
    return out.squeeze(-2)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    """Mean over each window of ``kernel_size`` along the last axis."""
    one = (lambda a, v: (1, _first("avg_pool1d", a, v)))
    return avg_pool2d(_as_2d("avg_pool1d", input), one("kernel_size", kernel_size),
                      None if stride is None else one("stride", stride),
                      (0, _first("avg_pool1d", "padding", padding)), ceil_mode,
                      count_include_pad).squeeze(-2)


def adaptive_avg_pool1d(input, output_size) -> Tensor:
    """Average pooling of the last axis to ``output_size`` positions."""
    return adaptive_avg_pool2d(_as_2d("adaptive_avg_pool1d", input),
                               (1, _first("adaptive_avg_pool1d", "output_size",
                                          output_size))).squeeze(-2)
