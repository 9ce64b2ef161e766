"""Output-size rules of the convolution family (issue 3), as hypothesis properties.

Fleuret's lecture on autoencoders and generative models ("Transposed convolutions"): with an input
of size W, a kernel of size w, a stride s and padding 0, dilation 1,

* a convolution maps W to (W - w) div s + 1,
* a transposed convolution maps W to (W - 1) s + w,
* composing the two with the same w, s gives back W iff W = w + s q for some integer q >= 0.

Then PyTorch's general formulas (padding, dilation, output_padding), ``padding="same"``, and the
``output_size -> output_padding`` rule of
:func:`tinygen.kernels.geometry.transposed_output_padding`.
Every size is checked three ways where it can be: the geometry functions, the shape of an actual
op's output, and a brute-force count (window positions / scatter targets) written here; PyTorch's
shapes join in when torch is installed.
"""
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import tinygen
from tinygen import functional as F
from tinygen.kernels import geometry

from harness import torch

small = st.integers(1, 9)
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def _t(shape, fill=None):
    rng = np.random.default_rng(0)
    return tinygen.tensor(rng.standard_normal(shape) if fill is None else np.full(shape, fill))


# -- brute-force references (independent of the formulas) ----------------------------------------
def _count_windows(size, kernel, stride, pad_lo, pad_hi, dilation):
    """Number of window starts o*stride (o = 0, 1, ...) whose last tap stays in the padded input."""
    padded = size + pad_lo + pad_hi
    n = 0
    while n * stride + dilation * (kernel - 1) <= padded - 1:
        n += 1
    return n


def _scatter_extent(size, kernel, stride, padding, output_padding, dilation):
    """Length of a transposed conv's output by scattering: the uncropped output spans every
    target i*stride + k*dilation, output_padding extends it on the right, then ``padding`` is
    cropped from each end."""
    targets = {i * stride + k * dilation for i in range(size) for k in range(kernel)}
    return max(targets) + 1 + output_padding - 2 * padding


# -- the lecture's rules (padding 0, dilation 1) -------------------------------------------------
@given(w=small, s=st.integers(1, 5), extra=st.integers(0, 12))
def test_lecture_conv_size(w, s, extra):
    W = w + extra  # the kernel fits
    expected = (W - w) // s + 1
    assert geometry.conv_output_size(W, w, s) == expected
    assert _count_windows(W, w, s, 0, 0, 1) == expected
    (axis,) = geometry.conv_geometry("conv1d", (W,), (w,), s, 0, 1)
    assert (axis.size_in, axis.size_out, axis.pad_lo) == (W, expected, 0)
    y = F.conv1d(_t((1, 1, W)), _t((1, 1, w)), stride=s)
    assert y.shape == (1, 1, expected)


@given(w=small, s=st.integers(1, 5), W=st.integers(1, 9))
def test_lecture_transposed_size(w, s, W):
    expected = (W - 1) * s + w
    assert geometry.conv_transpose_output_size(W, w, s) == expected
    assert _scatter_extent(W, w, s, 0, 0, 1) == expected
    (axis,) = geometry.conv_transpose_geometry("conv_transpose1d", (W,), (w,), s, 0, 0, 1)
    assert (axis.size_out, axis.size_in) == (W, expected)
    y = F.conv_transpose1d(_t((1, 1, W)), _t((1, 1, w)), stride=s)
    assert y.shape == (1, 1, expected)


@given(w=small, s=st.integers(1, 5), extra=st.integers(0, 15))
def test_lecture_composition_keeps_size_iff_w_plus_sq(w, s, extra):
    W = w + extra
    x = _t((1, 2, W))
    k1, k2 = _t((3, 2, w)), _t((3, 2, w))
    back = F.conv_transpose1d(F.conv1d(x, k1, stride=s), k2, stride=s)
    keeps = back.shape[-1] == W
    assert keeps == any(W == w + s * q for q in range(W + 1))
    assert keeps == ((W - w) % s == 0)
    # otherwise the strided conv ignored the last (W - w) mod s samples: the map is smaller
    assert back.shape[-1] == W - (W - w) % s
    if torch is not None:
        tb = torch.nn.functional.conv_transpose1d(
            torch.nn.functional.conv1d(torch.zeros(1, 2, W), torch.zeros(3, 2, w), stride=s),
            torch.zeros(3, 2, w), stride=s)
        assert tuple(tb.shape) == back.shape


# -- PyTorch's general formulas --------------------------------------------------------------------
@st.composite
def conv_axis(draw):
    """(size, kernel, stride, padding, dilation) of one conv axis whose kernel fits."""
    k, s, p, d = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(0, 3)), \
        draw(st.integers(1, 3))
    extent = d * (k - 1) + 1
    size = draw(st.integers(max(1, extent - 2 * p), max(1, extent - 2 * p) + 9))
    return size, k, s, p, d


@given(axis=conv_axis())
def test_conv_general_size(axis):
    size, k, s, p, d = axis
    expected = (size + 2 * p - d * (k - 1) - 1) // s + 1
    assert expected == _count_windows(size, k, s, p, p, d)
    assert geometry.conv_output_size(size, k, s, p, d) == expected
    (g,) = geometry.conv_geometry("conv1d", (size,), (k,), s, p, d)
    assert (g.size_in, g.kernel, g.stride, g.dilation, g.pad_lo, g.size_out) == \
        (size, k, s, d, p, expected)
    assert g.extent == d * (k - 1) + 1
    assert F.conv1d(_t((1, 1, size)), _t((2, 1, k)), stride=s, padding=p,
                    dilation=d).shape == (1, 2, expected)
    if torch is not None:
        ty = torch.nn.functional.conv1d(torch.zeros(1, 1, size), torch.zeros(2, 1, k),
                                        stride=s, padding=p, dilation=d)
        assert tuple(ty.shape) == (1, 2, expected)


@given(a=conv_axis(), b=conv_axis())
def test_conv2d_sizes_per_axis(a, b):
    (h, kh, sh, ph, dh), (w, kw, sw, pw, dw) = a, b
    y = F.conv2d(_t((1, 1, h, w)), _t((1, 1, kh, kw)), stride=(sh, sw), padding=(ph, pw),
                 dilation=(dh, dw))
    assert y.shape == (1, 1, _count_windows(h, kh, sh, ph, ph, dh),
                       _count_windows(w, kw, sw, pw, pw, dw))
    if torch is not None:
        ty = torch.nn.functional.conv2d(torch.zeros(1, 1, h, w), torch.zeros(1, 1, kh, kw),
                                        stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw))
        assert tuple(ty.shape) == y.shape


@st.composite
def transposed_axis(draw):
    """(size, kernel, stride, padding, output_padding, dilation) with a positive output."""
    size, k, s, d = draw(st.integers(1, 7)), draw(st.integers(1, 4)), draw(st.integers(1, 4)), \
        draw(st.integers(1, 3))
    op = draw(st.integers(0, max(s, d) - 1))
    full = (size - 1) * s + d * (k - 1) + 1 + op
    p = draw(st.integers(0, min(3, (full - 1) // 2)))
    return size, k, s, p, op, d


@given(axis=transposed_axis())
def test_conv_transpose_general_size(axis):
    size, k, s, p, op, d = axis
    expected = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
    assert expected >= 1
    assert expected == _scatter_extent(size, k, s, p, op, d)
    assert geometry.conv_transpose_output_size(size, k, s, p, op, d) == expected
    (g,) = geometry.conv_transpose_geometry("conv_transpose1d", (size,), (k,), s, p, op, d)
    assert (g.size_out, g.kernel, g.stride, g.dilation, g.pad_lo, g.size_in) == \
        (size, k, s, d, p, expected)
    # the conv with the same arguments maps the output back to `size` iff output_padding < stride
    assert geometry.conv_output_size(expected, k, s, p, d) == size + op // s
    y = F.conv_transpose1d(_t((1, 2, size)), _t((2, 3, k)), stride=s, padding=p,
                           output_padding=op, dilation=d)
    assert y.shape == (1, 3, expected)
    if torch is not None:
        ty = torch.nn.functional.conv_transpose1d(torch.zeros(1, 2, size), torch.zeros(2, 3, k),
                                                  stride=s, padding=p, output_padding=op,
                                                  dilation=d)
        assert tuple(ty.shape) == y.shape


@given(size=st.integers(1, 5), k=st.integers(1, 4), s=st.integers(1, 3), d=st.integers(1, 3),
       p=st.integers(0, 8), data=st.data())
def test_conv_transpose_non_positive_output_raises(size, k, s, d, p, data):
    op = data.draw(st.integers(0, max(s, d) - 1))
    out = _scatter_extent(size, k, s, p, op, d)
    x, w = _t((1, 1, size)), _t((1, 1, k))
    if out >= 1:
        assert F.conv_transpose1d(x, w, stride=s, padding=p, output_padding=op,
                                  dilation=d).shape == (1, 1, out)
    else:
        with pytest.raises(ValueError, match=rf"output would have size {out} on axis 0 "
                                             rf"\(input spatial shape \({size},\)"):
            F.conv_transpose1d(x, w, stride=s, padding=p, output_padding=op, dilation=d)
        with pytest.raises(ValueError, match="must be positive"):
            geometry.conv_transpose_geometry("conv_transpose1d", (size,), (k,), s, p, op, d)


@given(a=transposed_axis(), b=transposed_axis())
def test_conv_transpose2d_sizes_per_axis(a, b):
    (h, kh, sh, ph, oph, dh), (w, kw, sw, pw, opw, dw) = a, b
    y = F.conv_transpose2d(_t((1, 1, h, w)), _t((1, 2, kh, kw)), stride=(sh, sw),
                           padding=(ph, pw), output_padding=(oph, opw), dilation=(dh, dw))
    assert y.shape == (1, 2, _scatter_extent(h, kh, sh, ph, oph, dh),
                       _scatter_extent(w, kw, sw, pw, opw, dw))
    if torch is not None:
        ty = torch.nn.functional.conv_transpose2d(
            torch.zeros(1, 1, h, w), torch.zeros(1, 2, kh, kw), stride=(sh, sw),
            padding=(ph, pw), output_padding=(oph, opw), dilation=(dh, dw))
        assert tuple(ty.shape) == y.shape


# -- padding="same" / "valid" ----------------------------------------------------------------------
@given(size=st.integers(1, 9), k=st.integers(1, 5), d=st.integers(1, 3))
def test_same_padding_keeps_size_with_asymmetric_split(size, k, d):
    total = d * (k - 1)
    (g,) = geometry.conv_geometry("conv1d", (size,), (k,), 1, "same", d)
    assert g.size_out == size
    # PyTorch's split: the extra zero (odd total) goes on the right
    assert g.pad_lo == total // 2
    assert g.pad_lo + (total - total // 2) == total
    rng = np.random.default_rng(size * 100 + k * 10 + d)
    x, w = rng.standard_normal((1, 2, size)), rng.standard_normal((3, 2, k))
    y = F.conv1d(tinygen.tensor(x), tinygen.tensor(w), padding="same", dilation=d).numpy()
    assert y.shape == (1, 3, size)
    # the same as padding x explicitly, lo zeros left and hi zeros right, then a valid conv
    xp = np.pad(x, ((0, 0), (0, 0), (total // 2, total - total // 2)))
    yp = F.conv1d(tinygen.tensor(xp), tinygen.tensor(w), padding="valid", dilation=d).numpy()
    np.testing.assert_allclose(y, yp, rtol=1e-12, atol=1e-12)
    if total % 2 == 1:  # the split matters: the mirrored split gives a different answer
        xm = np.pad(x, ((0, 0), (0, 0), (total - total // 2, total // 2)))
        ym = F.conv1d(tinygen.tensor(xm), tinygen.tensor(w), dilation=d).numpy()
        assert ym.shape == y.shape
        if np.any(y) or np.any(ym):  # (every tap can fall in the padding: size 1, d = 3)
            assert not np.allclose(ym, y)
    if torch is not None:
        ty = torch.nn.functional.conv1d(torch.tensor(x), torch.tensor(w), padding="same",
                                        dilation=d)
        np.testing.assert_allclose(y, ty.numpy(), rtol=1e-10, atol=1e-12)


@given(h=st.integers(1, 7), w=st.integers(1, 7), kh=st.integers(1, 4), kw=st.integers(1, 4),
       dh=st.integers(1, 2), dw=st.integers(1, 2))
def test_same_padding_2d(h, w, kh, kw, dh, dw):
    rng = np.random.default_rng(h + 10 * w)
    x, k = rng.standard_normal((2, 1, h, w)), rng.standard_normal((1, 1, kh, kw))
    y = F.conv2d(tinygen.tensor(x), tinygen.tensor(k), padding="same", dilation=(dh, dw)).numpy()
    assert y.shape == (2, 1, h, w)
    th, tw = dh * (kh - 1), dw * (kw - 1)
    xp = np.pad(x, ((0, 0), (0, 0), (th // 2, th - th // 2), (tw // 2, tw - tw // 2)))
    yp = F.conv2d(tinygen.tensor(xp), tinygen.tensor(k), dilation=(dh, dw)).numpy()
    np.testing.assert_allclose(y, yp, rtol=1e-12, atol=1e-12)
    if torch is not None:
        ty = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(k), padding="same",
                                        dilation=(dh, dw))
        np.testing.assert_allclose(y, ty.numpy(), rtol=1e-10, atol=1e-12)


def test_same_split_is_asymmetric_for_even_kernels():
    """Even kernel, total padding 1: the zero goes on the right, so the first output reads x[0]
    as its first tap (a left zero would shift the whole output by one)."""
    x = tinygen.tensor(np.array([[[1.0, 2.0, 3.0, 4.0]]]))
    w = tinygen.tensor(np.array([[[1.0, 10.0]]]))
    y = F.conv1d(x, w, padding="same").numpy()[0, 0]
    expected = [1 + 20, 2 + 30, 3 + 40, 4 + 0]  # y[o] = x[o] + 10 x[o+1]
    np.testing.assert_array_equal(y, expected)


@given(axis=conv_axis())
def test_valid_padding_is_zero_padding(axis):
    size, k, s, _, d = axis
    assume(size >= d * (k - 1) + 1)
    (g,) = geometry.conv_geometry("conv1d", (size,), (k,), s, "valid", d)
    (g0,) = geometry.conv_geometry("conv1d", (size,), (k,), s, 0, d)
    assert g == g0


# -- output_size -> output_padding -----------------------------------------------------------------
@given(size=st.integers(1, 7), k=st.integers(1, 4), s=st.integers(1, 4), p=st.integers(0, 2),
       d=st.integers(1, 3), data=st.data())
def test_transposed_output_padding_rule(size, k, s, p, d, data):
    lo = (size - 1) * s - 2 * p + d * (k - 1) + 1
    assume(lo >= 1)
    target = data.draw(st.integers(lo, lo + s - 1))
    (op,) = geometry.transposed_output_padding("ConvTranspose1d", (size,), (target,), (k,), s, p,
                                               d)
    assert op == target - lo and 0 <= op < s
    # the full (N, C, L) form is accepted as well
    assert geometry.transposed_output_padding("ConvTranspose1d", (size,), (1, 1, target), (k,),
                                              s, p, d) == (op,)
    y = F.conv_transpose1d(_t((1, 1, size)), _t((1, 1, k)), stride=s, padding=p,
                           output_padding=op, dilation=d)
    assert y.shape[-1] == target
    if torch is not None:
        m = torch.nn.ConvTranspose1d(1, 1, k, stride=s, padding=p, dilation=d)
        assert m(torch.zeros(1, 1, size), output_size=[target]).shape[-1] == target
    for bad in (lo - 1, lo + s):
        with pytest.raises(ValueError, match=rf"output_size \({bad},\).*between {lo} and "
                                             rf"{lo + s - 1}.*\({size},\)"):
            geometry.transposed_output_padding("ConvTranspose1d", (size,), (bad,), (k,), s, p, d)
        if torch is not None and bad >= 1:
            with pytest.raises((ValueError, RuntimeError)):
                m(torch.zeros(1, 1, size), output_size=[bad])


@given(h=st.integers(1, 5), w=st.integers(1, 5), sh=st.integers(1, 3), sw=st.integers(1, 3),
       data=st.data())
def test_transposed_output_padding_2d_per_axis(h, w, sh, sw, data):
    lo_h, lo_w = (h - 1) * sh + 3, (w - 1) * sw + 2  # kernel (3, 2), padding 0
    th = data.draw(st.integers(lo_h, lo_h + sh - 1))
    tw = data.draw(st.integers(lo_w, lo_w + sw - 1))
    ops = geometry.transposed_output_padding("ConvTranspose2d", (h, w), (th, tw), (3, 2),
                                             (sh, sw), 0, 1)
    assert ops == (th - lo_h, tw - lo_w)
    y = F.conv_transpose2d(_t((1, 1, h, w)), _t((1, 1, 3, 2)), stride=(sh, sw),
                           output_padding=ops)
    assert y.shape[2:] == (th, tw)


def test_transposed_output_padding_wrong_length():
    with pytest.raises(ValueError, match=r"output_size must have 2 or 4 entries, got \(5,\)"):
        geometry.transposed_output_padding("ConvTranspose2d", (3, 3), (5,), (2, 2), 2, 0, 1)
