"""PixelRNN (van den Oord, Kalchbrenner, Kavukcuoglu 2016, "Pixel Recurrent Neural Networks"):
an autoregressive model with an exact likelihood, on binarized MNIST.

The image x (n x n pixels, raster order row by row) is factorized as

    p(x) = prod_{i=1}^{n^2} p(x_i | x_1, ..., x_{i-1})                          (1)

and every conditional is computed by one network pass over the whole image, made causal so that
the output at pixel i never sees pixels i, i+1, ...:

* a 7 x 7 convolution with **mask A** on the image (the center pixel excluded),
* ``layers`` LSTM layers whose input-to-state convolutions use **mask B** (see
  :mod:`tinygen.nn.masked_conv`), each with a residual connection
  (x <- x + 1x1conv(h), features 2h -> h -> 2h as in the paper's section 3.2),
* ReLU, 1 x 1 convolution, ReLU, 1 x 1 convolution to one logit per pixel (binary data:
  p(x_i = 1 | x_<i) = sigmoid(logit_i)) or 256 logits per pixel (``output="softmax256"``:
  a 256-way softmax over the 8-bit gray value, the paper's discrete distribution).

The negative log-likelihood -log p(x) is the sum over pixels of the binary (or 256-way)
cross-entropy: exact, no bound. It is reported in nats per image (``nll_nats``) and in
bits per dimension (``bits_per_dim`` = nll / (n^2 ln 2)).

Two LSTM layers (the paper's section 3.1), both computing the gates as in the LSTM of
:mod:`tinygen.functional.lstm`, [o, f, i, g] = sigma(K^ss * h_{prev} + K^is * x):

* **Row LSTM** (``pixelrnn-row``): the recurrence runs over rows, top to bottom; the state of a
  row is h_i (h channels x n columns). K^is is a 1 x k convolution with mask B over the row itself
  (the pixels left of the current one and the current one), computed for the whole image at once;
  K^ss is a 1-D convolution of width k over the previous row's state h_{i-1}. The receptive field
  is a triangle above the pixel.
* **Diagonal BiLSTM** (``pixelrnn-diag``): the input map is *skewed* (row i shifted right by i,
  n x (2n - 1)), so that the diagonals become columns; the recurrence runs over the columns, left
  to right, K^is is 1 x 1 (mask B) and K^ss a 2 x 1 column convolution (rows i-1 and i of the
  previous column, i.e. the pixels above and left). A second direction runs on the mirrored
  image; its output is *shifted down one row* before the two are added, so that it never sees the
  current row's right part. The receptive field is every earlier pixel except one: the last
  pixel (i-1, n-1) of the row above, which only the first layer's 7 x 7 mask-A convolution
  reaches (for j >= n-4), since no feature of row i-1 depends on it (the tests check this).

In both, the state of a step is a whole line (a row of the image, or a column of the skewed
map): L positions with h channels, and K^ss is a 1-D convolution along it. Each layer's recurrence
is one fused kernel call forward and one backward through time
(:func:`tinygen.functional.conv_lstm_recurrence`). It equals the plain LSTM recurrence over
hidden vectors of size h L whose weight_hh is the banded (4 h L, h L) matrix of the convolution
(:func:`banded_state_weight`, used by the tests as the reference), without its zeros.

Sampling draws pixel by pixel in raster order (n^2 network passes, each on the rows drawn so far:
the output of row i depends on rows <= i only). Completion fixes the top rows of real images and
draws the rest.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from .. import functional as F
from .. import nn
from ..autograd import no_grad
from ..data import dynamic_binarize, static_binarize
from ..functional.lstm import conv_lstm_recurrence
from ..nn.masked_conv import MaskedConv2d
from ..tensor import Tensor, tensor
from .phases import Phase
from .base import GenerativeModel, register

__all__ = ["PixelRNNConfig", "PixelRNN", "RowLSTMPixelRNN", "DiagonalBiLSTMPixelRNN",
           "RowLSTMLayer", "DiagonalBiLSTMLayer", "skew", "unskew", "banded_state_weight"]


# -- geometry helpers -------------------------------------------------------------------------------
def skew(x):
    """(N, C, H, W) -> (N, C, H, W + H - 1): row i shifted right by i (zeros elsewhere), so that
    pixel (i, j) lands in column i + j."""
    height, width = x.shape[2], x.shape[3]
    rows = [F.pad(x[:, :, i:i + 1, :], (i, height - 1 - i)) for i in range(height)]
    return F.cat(rows, dim=2)


def unskew(y, width):
    """The inverse of :func:`skew`: (N, C, H, width + H - 1) -> (N, C, H, width)."""
    height = y.shape[2]
    if y.shape[3] != width + height - 1:
        raise ValueError(f"unskew: a skewed map of height {height} and width {width} has "
                         f"{width + height - 1} columns, got shape {tuple(y.shape)}")
    return F.cat([y[:, :, i:i + 1, i:i + width] for i in range(height)], dim=2)


def banded_state_weight(kernel, length, anchor):
    """The state-to-state convolution as the (4h L, h L) weight_hh of one LSTM step.

    ``kernel`` (4h, h, k): a 1-D convolution over a line of ``length`` positions, tap t reading
    position p + t - anchor (zero outside). Output row g L + p (channel g = gate * h + unit, as
    the gate blocks i, f, g, o of the LSTM), column u L + q (state channel u at position q):

        W[g L + p, u L + q] = kernel[g, u, q - p + anchor]   if 0 <= q - p + anchor < k.
    """
    g4, hid, taps = kernel.shape
    sel = np.zeros((taps, length, length), dtype=kernel.dtype)       # sel[t, p, q]
    for t in range(taps):
        for p in range(length):
            q = p + t - anchor
            if 0 <= q < length:
                sel[t, p, q] = 1.0
    w = kernel.reshape(g4 * hid, taps) @ tensor(sel.reshape(taps, length * length))
    w = w.reshape(g4, hid, length, length).permute(0, 2, 1, 3)        # (4h, L, h, L) [g, p, u, q]
    return w.reshape(g4 * length, hid * length)


def _state_kernel(hidden, taps):
    """A state-to-state kernel (4h, h, taps), PyTorch's conv initialization bound."""
    w = nn.Parameter(tensor(np.zeros((4 * hidden, hidden, taps), np.float32)))
    bound = 1.0 / math.sqrt(hidden * taps)
    nn.init.uniform_(w, -bound, bound)
    return w


# -- the LSTM layers --------------------------------------------------------------------------------
class RowLSTMLayer(nn.Module):
    """Row LSTM with a residual connection: features (N, F, H, W) -> (N, F, H, W)."""

    def __init__(self, features, hidden, kernel=3):
        super().__init__()
        self.hidden, self.kernel = hidden, kernel
        # K^is: 1 x k over the current row, mask B (left pixels and the current one); its bias
        # is the LSTM's bias
        self.input_to_state = MaskedConv2d("B", features, 4 * hidden, (1, kernel))
        self.state_to_state = _state_kernel(hidden, kernel)     # K^ss (4h, h, k) over row i-1
        self.output = nn.Conv2d(hidden, features, 1)            # residual branch h -> 2h

    def forward(self, x):
        xg = self.input_to_state(x)                                       # (N, 4h, H, W)
        h = conv_lstm_recurrence(xg, self.state_to_state, self.kernel // 2, time_axis=2)
        return x + self.output(h)                                         # h: (N, h, H, W)


class DiagonalBiLSTMLayer(nn.Module):
    """Diagonal BiLSTM with a residual connection: features (N, F, H, W) -> (N, F, H, W)."""

    def __init__(self, features, hidden):
        super().__init__()
        self.hidden = hidden
        self.input_to_state = MaskedConv2d("B", features, 4 * hidden, 1)          # left to right
        self.input_to_state_rev = MaskedConv2d("B", features, 4 * hidden, 1)      # right to left
        self.state_to_state = _state_kernel(hidden, 2)       # K^ss 2 x 1: rows i-1, i
        self.state_to_state_rev = _state_kernel(hidden, 2)
        self.output = nn.Conv2d(hidden, features, 1)

    def _direction(self, x, conv, kernel):
        width = x.shape[3]
        xg = conv(skew(x))                                       # (N, 4h, H, W+H-1)
        # over the columns; taps: rows i-1 and i of the previous column
        h = conv_lstm_recurrence(xg, kernel, 1, time_axis=3)     # (N, h, H, W+H-1)
        return unskew(h, width)                                  # (N, h, H, W)

    def forward(self, x):
        height = x.shape[2]
        left = self._direction(x, self.input_to_state, self.state_to_state)
        right = self._direction(x.flip(3), self.input_to_state_rev,
                                self.state_to_state_rev).flip(3)
        right = F.pad(right, (0, 0, 1, 0))[:, :, :height]    # shifted down one row: causal
        return x + self.output(left + right)


# -- the models -------------------------------------------------------------------------------------
@dataclass
class PixelRNNConfig:
    layers: int = 2              # number of LSTM layers (the paper: up to 12 on MNIST)
    hidden: int = 16             # h: LSTM state channels per pixel
    features: int = 32           # 2h in the paper: channels of the residual stream
    first_kernel: int = 7        # size of the mask-A input convolution
    row_kernel: int = 3          # Row LSTM: width k of K^is and K^ss (pixelrnn-diag ignores it)
    out_hidden: int = 32         # channels between the two output 1 x 1 convolutions
    output: str = "bernoulli"    # "bernoulli" (binarized pixels) or "softmax256" (8-bit gray)
    binarize: str = "dynamic"    # training data: "dynamic" (fresh Bernoulli draws per batch)
                                 # or "static" (one seeded draw); evaluation is always static
    binarize_seed: int = 0       # seed of the static binarization (train when static, val, test)


class PixelRNN(GenerativeModel):
    """Shared network trunk, likelihood, sampling and pictures (see the module docstring);
    subclasses pick the LSTM layer (:meth:`make_layer`)."""
    Config = PixelRNNConfig
    select = "nll_nats"
    train_defaults = {"epochs": 10, "lr": 1e-3, "batch_size": 32}
    eval_batch_size = 250
    scored_samples = 100               # drawn pixel by pixel: 784 passes of the network
    image_shape = (1, 28, 28)

    def __init__(self, config=None):
        super().__init__(config or PixelRNNConfig())
        c = self.config
        for name in ("layers", "hidden", "features", "first_kernel", "row_kernel", "out_hidden"):
            if getattr(c, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(c, name)}")
        if c.output not in ("bernoulli", "softmax256"):
            raise ValueError(f"output must be 'bernoulli' or 'softmax256', got {c.output!r}")
        if c.binarize not in ("dynamic", "static"):
            raise ValueError(f"binarize must be 'dynamic' or 'static', got {c.binarize!r}")
        if c.first_kernel % 2 == 0 or c.row_kernel % 2 == 0:
            raise ValueError(f"first_kernel and row_kernel must be odd, got {c.first_kernel} "
                             f"and {c.row_kernel}")
        self.levels = 256 if c.output == "softmax256" else 2
        self.input_conv = MaskedConv2d("A", 1, c.features, c.first_kernel)
        self.lstm_layers = nn.ModuleList([self.make_layer() for _ in range(c.layers)])
        self.head = nn.Sequential(nn.ReLU(), MaskedConv2d("B", c.features, c.out_hidden, 1),
                                  nn.ReLU(), MaskedConv2d("B", c.out_hidden,
                                                          1 if self.levels == 2 else 256, 1))

    def make_layer(self):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- the conditionals ----------------------------------------------------------------------
    def features(self, x):
        """The residual stream after the LSTM layers: x (N, 1, H, W) -> (N, features, H, W);
        at pixel i it depends on the pixels before i only."""
        h = self.input_conv(x)
        for layer in self.lstm_layers:
            h = layer(h)
        return h

    def forward(self, x):
        """Logits of p(x_i | x_<i) for every pixel: x (N, 1, H, W) with values in [0, 1] ->
        (N, 1, H, W) (bernoulli) or (N, 256, H, W) (softmax256)."""
        return self.head(self.features(x))

    def targets(self, images):
        """The discrete pixel values the likelihood is of: {0, 1} float32 (bernoulli) or
        0..255 int64 (softmax256); ``images`` in [0, 1]."""
        if self.levels == 2:
            return images.astype(np.float32)
        return np.round(np.asarray(images) * 255.0).astype(np.int64)

    def inputs(self, values):
        """Network input for discrete pixel values (bernoulli: as is; 8-bit: v / 255)."""
        return values.astype(np.float32) if self.levels == 2 else \
            (values / 255.0).astype(np.float32)

    def nll(self, values, reduction="mean"):
        """-log p(x) in nats per image (exact): ``values`` (N, 1, H, W) discrete pixel values
        (see :meth:`targets`) as a NumPy array or a Tensor on the model's device.
        ``reduction="none"`` gives the (N,) values."""
        if not isinstance(values, Tensor):
            values = tensor(np.asarray(values), device=self.device)
        if self.levels == 2:                       # the network's input (as :meth:`inputs`)
            x_in = values.to(np.float32)
        else:
            x_in = (values.to(np.float64) / 255.0).to(np.float32)
        logits = self(x_in)
        n_batch = values.shape[0]
        if self.levels == 2:
            # -log p = sum_i BCE(sigmoid(logit_i), x_i)
            per_pixel = F.binary_cross_entropy_with_logits(logits, values.to(logits.dtype),
                                                           reduction="none")
        else:
            # -log p = sum_i -log softmax(logits_i)[x_i]
            per_pixel = F.cross_entropy(logits, values[:, 0].long(), reduction="none")
        per_image = per_pixel.reshape(n_batch, -1).sum(dim=1)                # (N,)
        return per_image if reduction == "none" else per_image.mean()

    # -- data and training ---------------------------------------------------------------------
    def load_data(self, data_dir=None, val_fraction=0.1, seed=0):
        """MNIST as for every model; with ``binarize="static"`` the training images are
        binarized once (seeded) here. Validation and test sets are binarized statically in
        :meth:`evaluate`."""
        data, desc = super().load_data(data_dir, val_fraction, seed)
        if self.config.binarize == "static" and self.levels == 2:
            data.train.images = static_binarize(data.train.images, self.config.binarize_seed)
        desc["binarization"] = (f"train {self.config.binarize}, evaluation static (seed "
                                f"{self.config.binarize_seed})") if self.levels == 2 else "8-bit"
        return data, desc

    def prepare_batch(self, arrays, rng):
        """Host side: the discrete training values (:meth:`targets`) of a fresh binarization
        (idempotent on already binary, static images); 8-bit models quantize the pixels."""
        x = arrays[0]
        if self.levels == 2:
            x = dynamic_binarize(x, rng)
        return (self.targets(x),) + tuple(arrays[1:])

    def training_loss(self, batch, rng):
        return self.nll(batch[0]), {}

    def phases(self, data):
        return [Phase("train", self.parameters, self.training_loss,
                      evaluate=(lambda: self.evaluate(data.val)) if data.val is not None else None,
                      select=self.select, prepare=self.prepare_batch)]

    def eval_values(self, images):
        """The evaluation data: static binarization (bernoulli) or 8-bit values."""
        if self.levels == 2:
            return static_binarize(images, self.config.binarize_seed)
        return self.targets(images)

    def evaluate(self, dataset):
        """``nll_nats``: exact -log p(x) per image in nats on ``dataset`` (statically binarized
        with ``binarize_seed``); ``bits_per_dim``: the same per pixel in bits."""
        values = self.eval_values(dataset.images)
        total = 0.0
        for part, n in self.batched(lambda v: self.nll(v, "none").cpu().numpy(), values):
            total += float(np.sum(part, dtype=np.float64))
        nll = total / len(values)
        return {"nll_nats": nll, "bits_per_dim": nll / (np.prod(values.shape[1:]) * math.log(2))}

    # -- generation ----------------------------------------------------------------------------
    def _draw(self, values, row, col, rng):
        """Draw pixel (row, col) of every image of ``values`` (N, 1, H, W) given the pixels
        before it (in place). The network only sees rows 0..row (enough: causal)."""
        x = self.as_tensor(self.inputs(values[:, :, :row + 1]))
        logits = self(x).cpu().numpy()[:, :, row, col].astype(np.float64)       # (N, 1) or (N, 256)
        if self.levels == 2:
            p = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            values[:, 0, row, col] = rng.random(len(values)) < p
        else:
            z = logits - logits.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            u = rng.random((len(values), 1))
            values[:, 0, row, col] = np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), 255)

    def complete(self, values, first_row, rng):
        """Draw every pixel from row ``first_row`` on, pixel by pixel, given the rows above:
        values (N, 1, H, W) discrete (a copy is returned)."""
        values = np.array(values, dtype=np.float32 if self.levels == 2 else np.int64)
        values[:, :, first_row:] = 0
        with no_grad():
            for row in range(first_row, values.shape[2]):
                for col in range(values.shape[3]):
                    self._draw(values, row, col, rng)
        return values

    def sample(self, n, rng):
        """n images (n, 1, 28, 28) in [0, 1], drawn pixel by pixel from (1)."""
        values = self.complete(np.zeros((n,) + self.image_shape), 0, rng)
        return self.inputs(values)

    def pictures(self, out_dir, dataset, rng):
        """samples.png (36 samples) and completions.png: for 8 held-out images, the original,
        the top half given, and three completions of the bottom half."""
        from .. import plots as img

        paths = [img.save_image_grid(self.sample(36, rng), os.path.join(out_dir, "samples.png"),
                                     nrow=6, scale=2)]
        pick = rng.choice(len(dataset), size=8, replace=False)
        values = self.eval_values(dataset.images[pick])
        half = self.image_shape[1] // 2
        given = values.copy()
        given[:, :, half:] = 0
        rows = [self.inputs(values), self.inputs(given)]
        rows += [self.inputs(self.complete(values, half, rng)) for _ in range(3)]
        grid = np.stack(rows, axis=1).reshape(-1, *self.image_shape)       # (8 * 5, 1, 28, 28)
        paths.append(img.save_image_grid(grid, os.path.join(out_dir, "completions.png"),
                                         nrow=len(rows), scale=2))
        return paths


@register
class RowLSTMPixelRNN(PixelRNN):
    """PixelRNN with Row LSTM layers."""
    model_name = "pixelrnn-row"
    description = "PixelRNN, Row LSTM layers (masked convs, exact NLL), binarized MNIST"

    def make_layer(self):
        return RowLSTMLayer(self.config.features, self.config.hidden, self.config.row_kernel)


@register
class DiagonalBiLSTMPixelRNN(PixelRNN):
    """PixelRNN with Diagonal BiLSTM layers."""
    model_name = "pixelrnn-diag"
    description = "PixelRNN, Diagonal BiLSTM layers (skewed maps, exact NLL), binarized MNIST"

    def make_layer(self):
        return DiagonalBiLSTMLayer(self.config.features, self.config.hidden)
