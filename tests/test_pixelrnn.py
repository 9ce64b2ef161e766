"""Masked convolutions and PixelRNN (issue 7): pixelrnn-row (Row LSTM) and pixelrnn-diag
(Diagonal BiLSTM).

* the masks A and B, also with colour-channel groups;
* causality by perturbation: the output at a pixel does not change when that pixel or any later
  one (raster order) changes -- for a stack of masked convolutions and for both models -- while
  later outputs do change (the Diagonal BiLSTM sees the whole past);
* skew/unskew round trip; the banded state-to-state matrix equals the 1-D convolution it encodes;
* the likelihood is exact: on 2 x 3 binary images the probabilities of all 64 images sum to 1;
  sampling pixel by pixel draws from that distribution (frequencies vs probabilities);
* completion keeps the given rows; the 256-way softmax variant; short training beats the
  independent-pixel baseline; errors.
"""
import itertools

import numpy as np
import pytest

import tinygen
from tinygen import functional as F
from tinygen import nn
from tinygen.data import Dataset
from tinygen.models import MODELS
from tinygen.models.pixelrnn import (DiagonalBiLSTMPixelRNN, PixelRNNConfig, RowLSTMPixelRNN,
                                     banded_state_weight, skew, unskew)
from tinygen.nn.masked_conv import conv_mask

SMALL = dict(layers=2, hidden=3, features=4, out_hidden=4)


def _raster_before(h, w):
    """before[p, q] = pixel q comes strictly before pixel p in raster order (flat indices)."""
    idx = np.arange(h * w)
    return idx[None, :] < idx[:, None]


# -- masks -----------------------------------------------------------------------------------------
def test_conv_mask_patterns():
    a = conv_mask("A", 1, 1, (3, 3))[0, 0]
    b = conv_mask("B", 1, 1, (3, 3))[0, 0]
    np.testing.assert_array_equal(a, [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(b, [[1, 1, 1], [1, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(conv_mask("B", 2, 2, (1, 3))[:, :, 0], np.ones((2, 2, 1)) *
                                  np.array([1, 1, 0]))
    # colour groups R, G, B at the center tap: A sees earlier groups, B also its own
    a3 = conv_mask("A", 6, 3, (3, 3), data_channels=3)[:, :, 1, 1]      # (6, 3)
    b3 = conv_mask("B", 6, 6, (3, 3), data_channels=3)[:, :, 1, 1]      # (6, 6)
    np.testing.assert_array_equal(a3, [[0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0], [1, 1, 0],
                                       [1, 1, 0]])
    np.testing.assert_array_equal(b3, np.kron(np.tril(np.ones((3, 3))), np.ones((2, 2))))
    with pytest.raises(ValueError, match="odd kernel"):
        conv_mask("A", 1, 1, (2, 3))
    with pytest.raises(ValueError, match="mask_type"):
        nn.MaskedConv2d("C", 1, 1, 3)
    with pytest.raises(ValueError, match="divisible by data_channels"):
        nn.MaskedConv2d("B", 4, 5, 3, data_channels=3)


def _dependence(fn, x):
    """dep[p, q]: output at pixel p changes when input pixel q is changed (all channels)."""
    h, w = x.shape[2], x.shape[3]
    with tinygen.no_grad():
        base = fn(tinygen.tensor(x.astype(np.float32))).numpy()
        dep = np.zeros((h * w, h * w), bool)
        for q in range(h * w):
            xq = x.copy()
            xq[:, :, q // w, q % w] = 1.0 - xq[:, :, q // w, q % w] + 0.7
            diff = np.abs(fn(tinygen.tensor(xq.astype(np.float32))).numpy() - base)        # (N, C, H, W)
            dep[:, q] = diff.max(axis=(0, 1)).reshape(-1) > 1e-9 * (1 + np.abs(base).max())
    return dep


def test_masked_conv_stack_is_causal():
    tinygen.manual_seed(1)
    layers = nn.Sequential(nn.MaskedConv2d("A", 1, 4, 5), nn.Tanh(),
                           nn.MaskedConv2d("B", 4, 4, 3), nn.Tanh(),
                           nn.MaskedConv2d("B", 4, 2, (1, 3)))
    x = np.random.default_rng(0).random((2, 1, 5, 6))
    dep = _dependence(layers, x)
    before = _raster_before(5, 6)
    assert not np.any(dep & ~before), "an output depends on its own pixel or a later one"
    # mask B without mask A would see the pixel itself: the check can fail
    leaky = nn.MaskedConv2d("B", 1, 1, 3)
    assert np.any(_dependence(leaky, x) & ~before)
    # and the output does depend on the previous pixel in the row
    assert all(dep[p, p - 1] for p in range(1, 30) if p % 6)


# -- skew / unskew / banded ------------------------------------------------------------------------
def test_skew_unskew_round_trip_and_layout():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    s = skew(tinygen.tensor(x))
    assert s.shape == (2, 3, 4, 8)
    for i in range(4):
        np.testing.assert_array_equal(s.numpy()[:, :, i, i:i + 5], x[:, :, i])   # (i, j) -> i + j
        assert not np.any(np.delete(s.numpy()[:, :, i], np.arange(i, i + 5), axis=-1))
    np.testing.assert_array_equal(unskew(s, 5).numpy(), x)
    y = np.random.default_rng(1).standard_normal((1, 2, 3, 9))    # unskew(skew(.)) on W = 7
    np.testing.assert_array_equal(unskew(skew(unskew(tinygen.tensor(y), 7)), 7).numpy(),
                                  unskew(tinygen.tensor(y), 7).numpy())
    with pytest.raises(ValueError, match="unskew"):
        unskew(s, 4)


@pytest.mark.parametrize("taps,anchor", [(3, 1), (2, 1), (5, 2)])
def test_banded_state_weight_is_the_convolution(taps, anchor):
    rng = np.random.default_rng(taps)
    hid, length, n = 2, 6, 3
    k = rng.standard_normal((4 * hid, hid, taps))
    h = rng.standard_normal((n, hid, length))
    w = banded_state_weight(tinygen.tensor(k), length, anchor).numpy()
    assert w.shape == (4 * hid * length, hid * length)
    got = (h.reshape(n, -1) @ w.T).reshape(n, 4 * hid, length)
    hp = np.pad(h, ((0, 0), (0, 0), (anchor, taps - 1 - anchor)))
    want = F.conv1d(tinygen.tensor(hp), tinygen.tensor(k)).numpy()  # tap t reads p + t - anchor
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# -- the models ------------------------------------------------------------------------------------
def _small(cls, **kw):
    tinygen.manual_seed(3)
    m = cls(PixelRNNConfig(**{**SMALL, **kw}))
    with tinygen.no_grad():      # larger state weights, so that long-range effects are visible
        for layer in m.lstm_layers:
            for name, p in layer.named_parameters():
                if name.startswith("state_to_state"):
                    p.mul_(3.0)
    return m


@pytest.mark.parametrize("cls", [RowLSTMPixelRNN, DiagonalBiLSTMPixelRNN])
def test_models_are_causal(cls):
    m = _small(cls)
    h, w = 5, 6
    x = (np.random.default_rng(0).random((2, 1, h, w)) < 0.5).astype(np.float64)
    before = _raster_before(h, w)
    logits_dep = _dependence(m, x)
    assert not np.any(logits_dep & ~before), f"{cls.model_name}: output sees its pixel or later"
    dep = _dependence(m.features, x)         # before the pointwise ReLU head, which may cut links
    assert not np.any(dep & ~before), f"{cls.model_name}: features see the pixel or later ones"
    assert all(dep[p, p - 1] for p in range(1, h * w) if p % w)
    if cls is DiagonalBiLSTMPixelRNN:
        # the whole past, including the pixels right of the current one in the rows above
        # (the shifted right-to-left stream), except one: the last pixel (i-1, W-1) of the row
        # above reaches (i, j) only through the mask-A convolution (radius r = 3), since no
        # feature of row i-1 depends on it
        expected = before.copy()
        for i in range(1, h):
            for j in range(w - 1 - 3):
                expected[i * w + j, (i - 1) * w + w - 1] = False
        np.testing.assert_array_equal(dep, expected)
    else:
        # the Row LSTM's triangle: (i-1, j+1) but not (i-1, j+3) in a 2-layer, k=3 stack...
        assert dep[2 * w + 1, 1 * w + 2]
        # ...and nothing from far right of the row above through one state step per row
        assert not dep[1 * w + 0, 0 * w + 5]


def _all_binary_images(h, w):
    return np.array(list(itertools.product([0.0, 1.0], repeat=h * w)),
                    np.float32).reshape(-1, 1, h, w)


@pytest.mark.parametrize("cls", [RowLSTMPixelRNN, DiagonalBiLSTMPixelRNN])
def test_likelihood_is_exact_and_sampling_follows_it(cls):
    m = _small(cls)
    images = _all_binary_images(2, 3)                                    # all 64 images
    with tinygen.no_grad():
        nll = m.nll(images, reduction="none").numpy().astype(np.float64)
    p = np.exp(-nll)
    assert abs(p.sum() - 1.0) < 1e-5, f"probabilities of all 2x3 images sum to {p.sum()}"
    ev = m.evaluate(Dataset(images, np.zeros(len(images), np.int64), "all"))
    assert abs(ev["nll_nats"] - nll.mean()) < 1e-4
    assert abs(ev["bits_per_dim"] - nll.mean() / (6 * np.log(2))) < 1e-6
    m.image_shape = (1, 2, 3)
    draws = m.sample(4000, np.random.default_rng(0))
    assert draws.shape == (4000, 1, 2, 3) and set(np.unique(draws)) <= {0.0, 1.0}
    codes = (draws.reshape(4000, 6) @ (2 ** np.arange(5, -1, -1))).astype(int)
    freq = np.bincount(codes, minlength=64) / 4000
    assert np.abs(freq - p).max() < 4 * np.sqrt(p.max() / 4000) + 1e-3


def test_completion_keeps_the_given_rows_and_softmax_variant():
    m = _small(RowLSTMPixelRNN)
    x = (np.random.default_rng(0).random((3, 1, 4, 5)) < 0.5).astype(np.float32)
    out = m.complete(x, 2, np.random.default_rng(1))
    np.testing.assert_array_equal(out[:, :, :2], x[:, :, :2])
    assert set(np.unique(out)) <= {0.0, 1.0}
    s = _small(DiagonalBiLSTMPixelRNN, output="softmax256")
    img = np.random.default_rng(2).random((2, 1, 3, 3)).astype(np.float32)
    with tinygen.no_grad():
        logits = s(s.as_tensor(img))
        assert logits.shape == (2, 256, 3, 3)
        nll = s.nll(s.targets(img), "none").numpy()
    lp = logits.numpy() - np.log(np.exp(logits.numpy()).sum(axis=1, keepdims=True))
    t = s.targets(img)[:, 0]
    want = -np.take_along_axis(lp, t[:, None], axis=1).reshape(2, -1).sum(1)
    np.testing.assert_allclose(nll, want, rtol=1e-5)
    s.image_shape = (1, 2, 2)
    draws = s.sample(3, np.random.default_rng(0))
    assert draws.shape == (3, 1, 2, 2) and np.all((draws >= 0) & (draws <= 1))
    np.testing.assert_allclose(draws * 255, np.round(draws * 255), atol=1e-4)


def test_short_training_beats_independent_pixels():
    """60 Adam steps on 32 real digits (cropped to 10 x 10): the autoregressive NLL on those
    digits goes well below that of the best independent-pixel model fitted to them."""
    from tinygen.data import load_mnist, static_binarize
    imgs = static_binarize(load_mnist("train", None).images[:32, :, 9:19, 9:19], 0)
    q = np.clip(imgs.mean(axis=0), 1e-3, 1 - 1e-3)
    baseline = -np.mean(np.sum(imgs * np.log(q) + (1 - imgs) * np.log(1 - q), axis=(1, 2, 3)))
    tinygen.manual_seed(0)
    m = RowLSTMPixelRNN(PixelRNNConfig(layers=1, hidden=4, features=8, out_hidden=8))
    opt = tinygen.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(60):
        loss = m.nll(imgs)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with tinygen.no_grad():
        final = float(m.nll(imgs))
    assert final < 0.8 * baseline, f"NLL {final:.1f} vs independent pixels {baseline:.1f}"


def test_registry_pictures_and_errors(tmp_path):
    assert MODELS["pixelrnn-row"] is RowLSTMPixelRNN
    assert MODELS["pixelrnn-diag"] is DiagonalBiLSTMPixelRNN
    m = _small(DiagonalBiLSTMPixelRNN)
    m.image_shape = (1, 4, 4)
    ds = Dataset(np.random.default_rng(0).random((10, 1, 4, 4)).astype(np.float32),
                 np.zeros(10, np.int64), "tiny")
    paths = m.pictures(str(tmp_path), ds, np.random.default_rng(0))
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["samples.png", "completions.png"]
    assert all((tmp_path / name).stat().st_size > 0 for name in ("samples.png",
                                                                 "completions.png"))
    with pytest.raises(ValueError, match="output must be"):
        RowLSTMPixelRNN(PixelRNNConfig(output="gauss"))
    with pytest.raises(ValueError, match="must be odd"):
        RowLSTMPixelRNN(PixelRNNConfig(row_kernel=2))
    with pytest.raises(ValueError, match="hidden must be >= 1"):
        DiagonalBiLSTMPixelRNN(PixelRNNConfig(hidden=0))
