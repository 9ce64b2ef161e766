"""WaveNet (van den Oord et al. 2016, "WaveNet: A Generative Model for Raw Audio"): an
autoregressive model built from causal dilated convolutions, here over characters and over
binarized MNIST read as a 784-step sequence. Kurmi's lecture on autoencoders and autoregressive
models shows WaveNet for audio beside char-rnn for text; both factorize

    p(x) = prod_t p(x_t | x_1, ..., x_{t-1})                                          (1)

but WaveNet computes every conditional of a sequence in one parallel pass of convolutions
instead of a recurrence.

The network (one pass over ids x_1..x_T gives logits for x_2..x_{T+1}):

    h^0_t = E[x_t]                                   (embedding, E: V_in x R)
    for layer l = 1..L with dilation d_l and kernel size k:
        a_t = sum_{i=0}^{k-1} W_l[:, :, i] h^{l-1}_{t-(k-1-i) d_l} + b_l           (causal, dilated)
        z_t = tanh(a^f_t) * sigmoid(a^g_t)           (gated unit; a = [a^f; a^g], D + D channels)
        h^l_t = h^{l-1}_t + V^res_l z_t              (residual 1x1 convolution, D -> R)
        s^l_t = V^skip_l z_t                         (skip 1x1 convolution, D -> S)
    logits_t = U_2 relu(U_1 relu(sum_l s^l_t))      (two 1x1 convolutions, S -> S -> V_out)
    p(x_{t+1} | x_<=t) = softmax(logits_t)

Sequences are kept channel-last, (N, T, C), so a 1x1 convolution is a ``Linear`` layer and the
dilated convolution is k matrix products with time-shifted inputs (:class:`CausalConv1d`).
"Causal" means the convolution at t reads h at t, t - d, ..., t - (k-1) d only: the input is
padded with (k-1) d zeros on the left (before each layer) and no output ever sees a later input.
Dilations double within a stack, 1, 2, 4, ..., 2^(n-1), and the stack repeats, so the
**receptive field** (the number of inputs x_{t-r+1..t} that the logits at t depend on) is

    r = 1 + (k - 1) * sum_l d_l          (= 1 + stacks * (2^n - 1) for k = 2)          (2)

Generation draws one token at a time. The naive way recomputes the whole network on the last r
tokens for every new token (O(r) per step per layer). Fast WaveNet (Paine et al. 2016, "Fast
Wavenet Generation Algorithm") notices that the dilated convolution of layer l at time t only
needs the layer's inputs at t - j d_l (j = 1..k-1), all computed at earlier steps: each layer
keeps a queue of its last (k-1) d_l inputs, so a step costs O(1) per layer. Before the first
token the queues hold zeros, exactly the zero padding of the training pass, so both generators
define the same distribution and, fed the same random numbers, draw the same tokens.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass

import numpy as np

from .. import functional as F
from .. import nn
from ..autograd import no_grad
from ..backend import to_numpy
from ..data import dynamic_binarize, static_binarize
from ..tensor import Tensor, empty, tensor
from .base import GenerativeModel, register
from .phases import Phase

__all__ = ["WaveNet", "WaveNetModelConfig", "WaveNetConfig", "WaveNetNet", "GatedResidualLayer", "CausalConv1d",
           "receptive_field", "FastGenerator", "generate_naive", "generate_fast",
           "draw_categorical"]


@dataclass
class WaveNetConfig:
    residual_channels: int = 64    # R: channels of the residual stream h^l
    dilation_channels: int = 64    # D: channels of each gated unit z (the conv gives 2 D)
    skip_channels: int = 128       # S: channels of the skip connections and the output head
    kernel_size: int = 2           # k: taps of each dilated convolution
    dilation_layers: int = 6       # n: layers per stack, dilations 1, 2, ..., 2^(n-1)
    stacks: int = 2                # the stack of n layers repeats this many times


def receptive_field(kernel_size: int, dilations) -> int:
    """Equation (2): how many inputs the output at one position depends on."""
    return 1 + (kernel_size - 1) * int(sum(dilations))


def draw_categorical(logits, rng, temperature=1.0):
    """One draw per row of ``logits`` (N, V) (NumPy, any float dtype) from
    softmax(logits / temperature), by inverse CDF with one ``rng.random`` number per row, so that
    two callers with equal logits and equal generator states draw equal tokens. -> (N,) int64."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    u = rng.random((len(p), 1))
    return np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), p.shape[1] - 1).astype(np.int64)


class CausalConv1d(nn.Module):
    """A causal dilated 1-D convolution on channel-last sequences: x (N, T, C_in) ->
    (N, T, C_out) with out_t = sum_i W[:, :, i] x_{t - (k-1-i) d} + b (zero before the start).

    The weight has ``nn.Conv1d``'s layout and initialization (C_out, C_in, k), and the result
    equals ``F.conv1d(F.pad(x, ((k-1) d, 0)), W, b, dilation=d)`` on (N, C, T) (the tests check
    it); it is computed as k matrix products with time-shifted copies of x, which on these
    shapes (few channels, long sequences) runs several times faster than the im2col kernel."""

    def __init__(self, in_channels, out_channels, kernel_size, dilation=1):
        super().__init__()
        self.kernel_size, self.dilation = kernel_size, dilation
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation)

    def forward(self, x):
        length = x.shape[1]
        w, out = self.conv.weight, self.conv.bias
        for i in range(self.kernel_size):
            shift = (self.kernel_size - 1 - i) * self.dilation
            if shift >= length:
                continue                                          # reads only the zero padding
            xi = x if shift == 0 else F.pad(x, (0, 0, shift, 0))[:, :length]   # x_{t - shift}
            out = out + F.linear(xi, w[:, :, i])
        return out


class GatedResidualLayer(nn.Module):
    """One WaveNet layer: h (N, T, R) -> (h + V^res z, V^skip z) with
    z = tanh(a^f) * sigmoid(a^g) and a = the causal dilated convolution of h."""

    def __init__(self, residual_channels, dilation_channels, skip_channels, kernel_size,
                 dilation):
        super().__init__()
        self.dilation, self.kernel_size = dilation, kernel_size
        self.causal = CausalConv1d(residual_channels, 2 * dilation_channels, kernel_size,
                                   dilation)
        self.residual = nn.Linear(dilation_channels, residual_channels)     # 1x1 convolutions
        self.skip = nn.Linear(dilation_channels, skip_channels)

    @staticmethod
    def gate(a):
        """z = tanh(a^f) * sigmoid(a^g) for a = [a^f; a^g] on the last (channel) axis."""
        filt, gate = a.chunk(2, dim=-1)
        return filt.tanh() * gate.sigmoid()

    def forward(self, h):
        z = self.gate(self.causal(h))
        return h + self.residual(z), self.skip(z)


class WaveNetNet(nn.Module):
    """The network of the module docstring: ids (N, T) int64 in [0, n_in) -> logits
    (N, T, n_out), the logits at t being those of the token after x_t."""

    def __init__(self, n_in: int, n_out: int, config: WaveNetConfig | None = None):
        super().__init__()
        c = self.config = config or WaveNetConfig()
        for name in ("residual_channels", "dilation_channels", "skip_channels", "kernel_size",
                     "dilation_layers", "stacks"):
            if getattr(c, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(c, name)}")
        if n_in < 1 or n_out < 2:
            raise ValueError(f"WaveNetNet needs n_in >= 1 and n_out >= 2 tokens, got n_in={n_in}"
                             f", n_out={n_out}")
        self.n_in, self.n_out = n_in, n_out
        self.dilations = [2 ** i for _ in range(c.stacks) for i in range(c.dilation_layers)]
        self.embedding = nn.Parameter(empty(n_in, c.residual_channels))     # E (V_in, R)
        nn.init.normal_(self.embedding, 0.0, 1.0)
        self.layers = nn.ModuleList([
            GatedResidualLayer(c.residual_channels, c.dilation_channels, c.skip_channels,
                               c.kernel_size, d) for d in self.dilations])
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(c.skip_channels, c.skip_channels),
                                  nn.ReLU(), nn.Linear(c.skip_channels, n_out))

    @property
    def receptive_field(self) -> int:
        return receptive_field(self.config.kernel_size, self.dilations)

    def _check_ids(self, ids):
        data = ids.array if isinstance(ids, Tensor) else np.asarray(ids)
        if data.ndim != 2 or data.dtype.kind not in "iu":
            raise ValueError(f"WaveNet: ids must be an (N, T) integer array, got shape "
                             f"{tuple(data.shape)} and dtype {data.dtype}")
        if data.size and (int(data.min()) < 0 or int(data.max()) >= self.n_in):
            raise ValueError(f"WaveNet: ids must lie in [0, {self.n_in - 1}], got "
                             f"[{int(data.min())}, {int(data.max())}]")
        return ids if isinstance(ids, Tensor) else tensor(data.astype(np.int64),
                                                          device=self.embedding.device)

    def forward(self, ids):
        ids = self._check_ids(ids)
        h = self.embedding[ids]                                   # (N, T, R)
        skips = None
        for layer in self.layers:
            h, s = layer(h)
            skips = s if skips is None else skips + s             # (N, T, S)
        return self.head(skips)                                   # (N, T, V_out)

    def nll(self, inputs, targets, reduction="none"):
        """-log p(targets_t | inputs_<=t) in nats: inputs (N, T) and targets (N, T) int ->
        (N, T) (``reduction="none"``), or their mean/sum."""
        logits = self(inputs)                                     # (N, T, V)
        n, t, v = logits.shape
        targets = targets if isinstance(targets, Tensor) else \
            tensor(np.asarray(targets, np.int64), device=logits.device)
        out = F.cross_entropy(logits.reshape(n * t, v), targets.reshape(n * t),
                              reduction=reduction)
        return out.reshape(n, t) if reduction == "none" else out


# -- generation ---------------------------------------------------------------------------------
def generate_naive(net: WaveNetNet, prompt, length, rng, temperature=1.0):
    """Draw ``length`` tokens after ``prompt`` (N, P) int, recomputing the network on the last
    ``receptive_field`` tokens for every new one. -> (N, P + length) int64."""
    ids = np.array(prompt, dtype=np.int64, ndmin=2)
    if ids.shape[1] < 1:
        raise ValueError("generate_naive: the prompt needs at least one token")
    r = net.receptive_field
    out = [ids]
    seq = ids
    with no_grad():
        for _ in range(length):
            window = seq[:, -r:]                                  # (N, <= r)
            logits = net(window).cpu().numpy()[:, -1]                   # (N, V)
            nxt = draw_categorical(logits, rng, temperature)
            out.append(nxt[:, None])
            seq = np.concatenate([window, nxt[:, None]], axis=1)
    return np.concatenate(out, axis=1)


class FastGenerator:
    """Fast WaveNet generation: per layer a queue (ring buffer) of its last (k-1) d inputs.

    ``push(ids)`` feeds one token per sequence (N,) and returns the logits (N, V) of the next
    one; every layer reads its k taps from the queue and the current input, then stores the
    current input where the oldest one was. O(layers) work per token.

    Generation needs no gradients, so a step runs on the parameters' arrays directly (NumPy or
    CuPy, the weights laid out once for the step's products): the autograd engine's per-op
    overhead would otherwise be most of the cost of the few small products a token needs. The
    tests check its logits against :meth:`WaveNetNet.forward` at every step."""

    def __init__(self, net: WaveNetNet, batch: int):
        self.net, self.t = net, 0
        self.embedding = net.embedding.array                        # (V_in, R)
        xp = self.xp = net.embedding._xp
        self.layers = []
        for layer in net.layers:
            w = layer.causal.conv.weight.array                      # (2D, R, k)
            k, d = layer.kernel_size, layer.dilation
            taps = [xp.ascontiguousarray(w[:, :, i].T) for i in range(k)]   # each (R, 2D)
            queue = xp.zeros((batch, (k - 1) * d, net.config.residual_channels),
                             dtype=w.dtype)                        # (N, (k-1) d, R)
            self.layers.append((taps, layer.causal.conv.bias.array, layer.residual.weight.array.T,
                                layer.residual.bias.array, layer.skip.weight.array.T,
                                layer.skip.bias.array, d, k, queue))
        u1, u2 = net.head[1], net.head[3]
        self.head = (u1.weight.array.T, u1.bias.array, u2.weight.array.T, u2.bias.array)

    def push(self, ids):
        xp = self.xp
        ids = self.net._check_ids(np.asarray(ids, np.int64).reshape(-1, 1)).array[:, 0]
        h = self.embedding[ids]                                    # (N, R)
        skips = 0.0
        for taps, b, w_res, b_res, w_skip, b_skip, d, k, queue in self.layers:
            a = b + h @ taps[k - 1]                                # tap k-1 reads x_t
            size = queue.shape[1]
            for j in range(1, k):                                  # tap k-1-j reads x_{t - j d}
                a = a + queue[:, (self.t - j * d) % size] @ taps[k - 1 - j]
            if size:
                queue[:, self.t % size] = h                        # the oldest input leaves
            f, g = xp.split(a, 2, axis=1)
            z = xp.tanh(f) / (1.0 + xp.exp(-g))                    # tanh(a^f) * sigmoid(a^g)
            skips = skips + (z @ w_skip + b_skip)
            h = h + (z @ w_res + b_res)
        u1, c1, u2, c2 = self.head
        hidden = xp.maximum(xp.maximum(skips, 0) @ u1 + c1, 0)
        self.t += 1
        return to_numpy(hidden @ u2 + c2)                          # (N, V)


def generate_fast(net: WaveNetNet, prompt, length, rng, temperature=1.0):
    """The same distribution and draws as :func:`generate_naive`, with per-layer queues."""
    ids = np.array(prompt, dtype=np.int64, ndmin=2)
    if ids.shape[1] < 1:
        raise ValueError("generate_fast: the prompt needs at least one token")
    gen = FastGenerator(net, len(ids))
    for t in range(ids.shape[1]):
        logits = gen.push(ids[:, t])
    out = [ids]
    for _ in range(length):
        nxt = draw_categorical(logits, rng, temperature)
        out.append(nxt[:, None])
        logits = gen.push(nxt)
    return np.concatenate(out, axis=1)


# -- the registered model -----------------------------------------------------------------------
@dataclass
class WaveNetModelConfig:
    dataset: str = "text"          # "text" (char-rnn's data and split) or "mnist" (binarized)
    seq_len: int = 64              # text: characters per window (char-rnn's 64, so numbers compare)
    residual_channels: int = 64    # R
    dilation_channels: int = 64    # D
    skip_channels: int = 128       # S
    kernel_size: int = 2           # k
    dilation_layers: int = 6       # dilations 1 .. 2^(n-1) per stack (mnist: 10 sees 1,023 pixels)
    stacks: int = 2                # repeats of the stack
    generator: str = "fast"        # "fast" (per-layer queues) or "naive" (recompute per token)
    prompt: str = "The "           # text: what samples start from
    temperature: float = 0.8       # text: sampling from softmax(logits / tau); mnist uses 1
    sample_length: int = 500       # text: characters drawn per sample
    binarize_seed: int = 0         # mnist: seed of the static binarization used for evaluation


@register
class WaveNet(GenerativeModel):
    """WaveNet over characters (bits/char on char-rnn's split) or over binarized MNIST read in
    raster order (exact NLL in nats, beside pixelrnn-row). For MNIST the sequence starts with a
    start token (id 2), so that every one of the 784 pixels is predicted."""
    model_name = "wavenet"
    description = ("WaveNet: causal dilated convolutions, gated units, fast generation; text "
                   "(bits/char) or binarized MNIST as a 784-step sequence (NLL)")
    Config = WaveNetModelConfig
    train_defaults = {"epochs": 10, "lr": 2e-3, "batch_size": 32}
    eval_batch_size = 100
    START = 2                                        # mnist: the start token (pixels are 0/1)

    def __init__(self, config=None):
        super().__init__(config or WaveNetModelConfig())
        c = self.config
        if c.dataset not in ("text", "mnist"):
            raise ValueError(f"dataset must be 'text' or 'mnist', got {c.dataset!r}")
        if c.generator not in ("fast", "naive"):
            raise ValueError(f"generator must be 'fast' or 'naive', got {c.generator!r}")
        if c.seq_len < 1 or c.sample_length < 0 or not c.temperature > 0:
            raise ValueError(f"seq_len must be >= 1, sample_length >= 0 and temperature > 0, got "
                             f"{c.seq_len}, {c.sample_length}, {c.temperature}")
        # mnist: samples scored after training (drawn token by token by the fast generator)
        self.scored_samples = 1000 if c.dataset == "mnist" else 0
        from .charrnn import ALPHABET
        n_in, n_out = (len(ALPHABET), len(ALPHABET)) if c.dataset == "text" else (3, 2)
        self.net = WaveNetNet(n_in, n_out, WaveNetConfig(
            c.residual_channels, c.dilation_channels, c.skip_channels, c.kernel_size,
            c.dilation_layers, c.stacks))
        print(f"wavenet: receptive field {self.net.receptive_field} tokens "
              f"({len(self.net.dilations)} layers, dilations {self.net.dilations})",
              file=sys.stderr)

    @property
    def select(self):
        return "bits_per_char" if self.config.dataset == "text" else "nll_nats"

    # -- data ----------------------------------------------------------------------------------
    def load_data(self, data_dir=None, val_fraction=0.1, seed=0):
        """text: char-rnn's windows of ``seq_len + 1`` characters and its consecutive split
        (the same code); mnist: the MNIST digits of every image model."""
        if self.config.dataset == "text":
            from .charrnn import CharRNN
            return CharRNN.load_data(self, data_dir, val_fraction, seed)
        data, desc = super().load_data(data_dir, val_fraction, seed)
        desc["binarization"] = f"train dynamic, evaluation static (seed {self.config.binarize_seed})"
        return data, desc

    def sequences(self, pixels):
        """mnist: binary images (N, 1, 28, 28) -> token ids (N, 785): the start token, then the
        pixels in raster order."""
        flat = np.asarray(pixels).reshape(len(pixels), -1).astype(np.int64)     # (N, 784)
        return np.concatenate([np.full((len(flat), 1), self.START, np.int64), flat], axis=1)

    def prepare(self, arrays, rng):
        """Host side: mnist images binarized afresh (dynamic binarization) and made sequences."""
        if self.config.dataset == "text":
            return arrays
        return (self.sequences(dynamic_binarize(arrays[0], rng)), arrays[1])

    def nll(self, seqs, reduction="mean"):
        """-log p of every token after the first of ``seqs`` (N, T+1), in nats per token
        (``mean``) or per sequence (``none``: (N,))."""
        per_token = self.net.nll(seqs[:, :-1], seqs[:, 1:], reduction="none")    # (N, T)
        return per_token.mean() if reduction == "mean" else per_token.sum(dim=1)

    def training_loss(self, batch, rng):
        return self.nll(batch[0]), {}

    def phases(self, data):
        return [Phase("train", self.parameters, self.training_loss,
                      evaluate=(lambda: self.evaluate(data.val)) if data.val is not None else None,
                      select=self.select, prepare=self.prepare)]

    def evaluate(self, dataset):
        """text: ``bits_per_char``/``nats_per_char`` over the windows (each read from zeros, as
        char-rnn); mnist: exact ``nll_nats`` per image on the statically binarized images and
        ``bits_per_dim``."""
        if self.config.dataset == "text":
            total, count = 0.0, 0
            for value, n in self.batched(
                    lambda w: float(self.nll(tensor(w, device=self.device))), dataset.images):
                total, count = total + value * n, count + n
            nats = total / max(count, 1)
            return {"bits_per_char": nats / math.log(2), "nats_per_char": nats}
        seqs = self.sequences(static_binarize(dataset.images, self.config.binarize_seed))
        total = sum(float(np.sum(part, dtype=np.float64)) for part, _ in
                    self.batched(lambda s: self.nll(tensor(s, device=self.device),
                                                    "none").cpu().numpy(), seqs))
        nll = total / len(seqs)
        return {"nll_nats": nll, "bits_per_dim": nll / (784 * math.log(2))}

    # -- generation ----------------------------------------------------------------------------
    def generate(self, prompt_ids, length, rng, temperature=1.0):
        """``length`` tokens after ``prompt_ids`` (N, P) with the configured generator."""
        fn = generate_fast if self.config.generator == "fast" else generate_naive
        self.eval()
        return fn(self.net, prompt_ids, length, rng, temperature)

    def sample(self, n, rng):
        """text: ``n`` strings of ``sample_length`` characters after ``prompt``; mnist: ``n``
        binary images (n, 1, 28, 28), pixel by pixel."""
        c = self.config
        if c.dataset == "text":
            from .charrnn import decode, encode
            prompt = np.repeat(encode(c.prompt or "\n")[None], n, axis=0)
            ids = self.generate(prompt, c.sample_length, rng, c.temperature)
            return [decode(row) for row in ids]
        ids = self.generate(np.full((n, 1), self.START, np.int64), 784, rng)
        return ids[:, 1:].reshape(n, 1, 28, 28).astype(np.float32)

    def save_samples(self, n, rng, path):
        """text: a .txt file of samples (char-rnn's format); mnist: a PNG grid."""
        if self.config.dataset == "text":
            from .charrnn import CharRNN
            return CharRNN.save_samples(self, n, rng, path)
        return super().save_samples(n, rng, path)

    def pictures(self, out_dir, dataset, rng):
        """text: samples.txt (4 samples); mnist: samples.png (36 samples)."""
        if self.config.dataset == "text":
            return [self.save_samples(4, rng, os.path.join(out_dir, "samples.txt"))]
        return [self.save_samples(36, rng, os.path.join(out_dir, "samples.png"))]
