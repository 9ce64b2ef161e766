"""char-rnn: an LSTM language model on characters (Karpathy's char-rnn; the autoregressive view
of Patrini's lecture on unsupervised learning and generative models and Kurmi's lecture on
autoencoders and autoregressive models: p(x) = prod_t p(x_t | x_<t)).

A text is a sequence of characters x_1 ... x_n from a fixed alphabet (here: tab, newline and the
95 printable ASCII characters; any other character is read as ``?``). The model reads one
character per step,

    e_t = E[x_t]                              (embedding, E: V x d)
    (h_t, c_t) = LSTM(e_t, (h_{t-1}, c_{t-1}))    (``layers`` stacked LSTM layers)
    p(x_{t+1} | x_<=t) = softmax(W h_t + b)

and is trained by maximum likelihood (cross-entropy, teacher forcing) on windows of
``seq_len + 1`` characters cut from the text. Held-out text is scored in **bits per character**,
-1/T sum_t log2 p(x_{t+1} | x_<=t) over the windows of the validation and test parts (each
window read from a zero state).

Sampling starts from a prompt and draws one character at a time from softmax(logits / tau): the
temperature tau < 1 sharpens the distribution (safer, more repetitive text), tau > 1 flattens it.

Data: ``--data FILE`` names any text file; without it the model trains on the text of the
Python documentation's topics that ships with CPython (``pydoc_data/topics.py``: 79 help
topics, about 465,000 characters of English prose about Python, used by ``help()``). The text is
split in order: the first (1 - 2 v) for training, then v for validation and v for test
(v = ``--val-fraction``).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from .. import functional as F
from .. import nn
from ..autograd import no_grad
from ..tensor import empty, tensor
from .phases import Phase
from .base import GenerativeModel, RunData, register

__all__ = ["CharRNN", "CharRNNConfig", "ALPHABET", "encode", "decode", "default_text"]

ALPHABET = "\t\n" + "".join(chr(c) for c in range(32, 127))     # V = 97 characters
_UNKNOWN = ALPHABET.index("?")
_CODE = np.full(128, _UNKNOWN, np.int64)
_CODE[[ord(ch) for ch in ALPHABET]] = np.arange(len(ALPHABET))


def encode(text: str) -> np.ndarray:
    """Characters -> int64 ids into :data:`ALPHABET` (other characters -> ``?``)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    out = np.full(codes.shape, _UNKNOWN, np.int64)
    ascii_ = codes < 128
    out[ascii_] = _CODE[codes[ascii_]]
    return out


def decode(ids) -> str:
    """int ids -> the string."""
    return "".join(ALPHABET[int(i)] for i in np.asarray(ids).reshape(-1))


def default_text() -> tuple:
    """The embedded default corpus: ``(text, description)``, the Python documentation topics
    shipped with CPython (``pydoc_data.topics``)."""
    from pydoc_data import topics
    text = "\n".join(topics.topics[k] for k in sorted(topics.topics))
    return text, f"pydoc_data.topics of Python (CPython's help() topics, {topics.__file__})"


@dataclass
class CharRNNConfig:
    seq_len: int = 64            # characters per training window (truncated BPTT length)
    embed: int = 32              # d, size of the character embedding
    hidden: int = 256            # H, LSTM state size per layer
    layers: int = 2              # stacked LSTM layers
    dropout: float = 0.0         # dropout between LSTM layers (training only)
    prompt: str = "The "         # text the samples start from
    temperature: float = 0.8     # tau: sampling from softmax(logits / tau)
    sample_length: int = 500     # characters drawn per sample after the prompt
    clip_grad_norm: float = 0.0  # rescale the gradients to this 2-norm before each step (0: off,
    #                              the default, which reproduces the recorded runs; 5 is usual)


@register
class CharRNN(GenerativeModel):
    """Character-level LSTM language model (see the module docstring)."""
    model_name = "char-rnn"
    description = "character-level LSTM language model (any text file or Python's docs), bits/char"
    data_help = "a UTF-8 text file to train on (default: CPython's pydoc topics)"
    Config = CharRNNConfig
    select = "bits_per_char"
    train_defaults = {"epochs": 5, "lr": 2e-3, "batch_size": 32}
    eval_batch_size = 256

    def __init__(self, config=None):
        super().__init__(config or CharRNNConfig())
        c = self.config
        for name in ("seq_len", "embed", "hidden", "layers", "sample_length"):
            if getattr(c, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(c, name)}")
        if not c.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {c.temperature}")
        if not c.clip_grad_norm >= 0:
            raise ValueError(f"clip_grad_norm must be >= 0 (0: off), got {c.clip_grad_norm}")
        vocab = len(ALPHABET)
        self.embedding = nn.Parameter(empty(vocab, c.embed))          # E (V, d), N(0, 1)
        nn.init.normal_(self.embedding, 0.0, 1.0)
        self.lstm = nn.LSTM(c.embed, c.hidden, num_layers=c.layers, batch_first=True,
                            dropout=c.dropout)
        self.decoder = nn.Linear(c.hidden, vocab)

    def forward(self, ids, hx=None):
        """Logits of the next character: ids (N, T) int64 -> ((N, T, V), (h, c)) with the
        LSTM state (each (layers, N, H)) to continue from."""
        e = self.embedding[ids]                                   # (N, T, d)
        h, state = self.lstm(e, hx)                               # (N, T, H)
        return self.decoder(h), state                             # (N, T, V)

    def nll_per_char(self, windows):
        """Mean -log p(x_{t+1} | x_<=t) in nats over windows (N, T+1) int64 (a Tensor)."""
        logits, _ = self(windows[:, :-1])                          # (N, T, V)
        n, t, v = logits.shape
        return F.cross_entropy(logits.reshape(n * t, v), windows[:, 1:].reshape(n * t))

    # -- data and training ---------------------------------------------------------------------
    def load_data(self, data_dir=None, val_fraction=0.1, seed=0):
        """Windows of ``seq_len + 1`` characters: ``data_dir`` is a text file (else the embedded
        Python documentation text); train / validation / test are consecutive parts of it."""
        from ..data import Dataset
        if data_dir is not None and os.path.isdir(data_dir):
            raise ValueError(f"char-rnn reads a text file (--data FILE), got the directory "
                             f"{data_dir!r}")
        if data_dir is not None:
            with open(data_dir, encoding="utf-8", errors="replace") as f:
                text, source = f.read(), f"text file {os.path.abspath(data_dir)}"
        else:
            text, source = default_text()
        ids = encode(text)
        win = self.config.seq_len + 1
        n_held = int(round(val_fraction * len(ids)))
        cut = len(ids) - 2 * n_held
        if cut < 2 * win or (n_held and n_held < win):
            raise ValueError(f"the text has {len(ids)} characters: too short for windows of "
                             f"{win} with val_fraction {val_fraction}")

        def windows(part, name):
            n = len(part) // win
            w = part[:n * win].reshape(n, win)                    # (N, T+1)
            return Dataset(w, np.zeros(n, np.int64), name)

        train = windows(ids[:cut], "text-train")
        val = windows(ids[cut:cut + n_held], "text-val") if n_held else None
        test = windows(ids[cut + n_held:], "text-test") if n_held else None
        desc = {"data_dir": None if data_dir is None else os.path.abspath(data_dir),
                "train": source, "characters": int(len(ids)), "train_size": len(train),
                "val_size": 0 if val is None else len(val),
                "test_size": 0 if test is None else len(test), "val_fraction": val_fraction,
                "split_seed": seed}
        return RunData(train, val, test), desc

    def training_loss(self, batch, rng):
        return self.nll_per_char(batch[0]), {}

    def phases(self, data):
        clip = self.config.clip_grad_norm or None     # the trainer's clipping hook
        return [Phase("train", self.parameters, self.training_loss,
                      evaluate=(lambda: self.evaluate(data.val)) if data.val is not None else None,
                      select=self.select, clip_grad_norm=clip)]

    def evaluate(self, dataset):
        """``bits_per_char`` (and ``nats_per_char``) on the windows of ``dataset``."""
        total, count = 0.0, 0
        for value, n in self.batched(lambda w: float(self.nll_per_char(tensor(w, device=self.device))),
                                     dataset.images):
            total, count = total + value * n, count + n
        nats = total / max(count, 1)
        return {"bits_per_char": nats / math.log(2), "nats_per_char": nats}

    # -- generation ----------------------------------------------------------------------------
    def generate(self, prompt, length, rng, temperature=None, n=1):
        """``n`` continuations of ``prompt`` with ``length`` characters each, drawn one at a
        time from softmax(logits / temperature). Returns a list of strings (prompt included)."""
        tau = self.config.temperature if temperature is None else float(temperature)
        if not tau > 0:
            raise ValueError(f"temperature must be > 0, got {tau}")
        prompt = prompt or "\n"
        ids = np.repeat(encode(prompt)[None], n, axis=0)            # (n, P)
        out = [ids]
        with no_grad():
            logits, state = self(tensor(ids))
            last = logits.cpu().numpy()[:, -1].astype(np.float64)          # (n, V)
            for _ in range(length):
                z = last / tau
                p = np.exp(z - z.max(axis=1, keepdims=True))
                p /= p.sum(axis=1, keepdims=True)
                u = rng.random((n, 1))
                nxt = np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), len(ALPHABET) - 1)
                out.append(nxt[:, None])
                logits, state = self(tensor(nxt[:, None].astype(np.int64)), state)
                last = logits.cpu().numpy()[:, -1].astype(np.float64)
        ids = np.concatenate(out, axis=1)
        return [decode(row) for row in ids]

    def sample(self, n, rng):
        """``n`` samples of ``sample_length`` characters from ``prompt`` (a list of strings)."""
        return self.generate(self.config.prompt, self.config.sample_length, rng, n=n)

    def save_samples(self, n, rng, path):
        """Write ``n`` samples to a text file: ``path``, or beside it with the suffix ``.txt``
        when it names an image (``samples.png`` -> ``samples.txt``)."""
        root, ext = os.path.splitext(os.fspath(path))
        if ext.lower() != ".txt":
            path = root + ".txt"
        texts = self.sample(n, rng)
        with open(path, "w", encoding="utf-8") as f:
            for k, t in enumerate(texts):
                f.write(f"--- sample {k + 1} (temperature {self.config.temperature}) ---\n{t}\n\n")
        return path

    def pictures(self, out_dir, dataset, rng):
        """samples.txt: four samples from the prompt (no images for a text model)."""
        return [self.save_samples(4, rng, os.path.join(out_dir, "samples.txt"))]
