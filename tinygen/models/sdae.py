"""Stacked denoising autoencoder (Vincent et al., 2010; Fleuret's lecture on autoencoders and
generative models).

"Vincent et al. build deep MLPs whose layers are initialized successively as encoders trained
within a noisy autoencoder. A final classifying layer is added and the full structure can be
fine-tuned."

Greedy layer-wise pretraining, for k = 1..L with h_0 = x and the layers below k frozen:

    h~_{k-1} = mask(h_{k-1})                       (masking noise: a fraction nu of units -> 0)
    h_k      = sigmoid(W_k h~_{k-1} + b_k)          (the layer being trained: the encoder)
    h^_{k-1} = sigmoid(W'_k h_k + b'_k)             (a decoder used only in pretraining)
    loss_k   = || h_{k-1} - h^_{k-1} ||^2           (reconstruct the clean input)

then fine-tuning of every W_k with a softmax classifier on h_L (cross-entropy on the labels).
The baseline is the same MLP (784-h-...-h-10, sigmoid units) trained from random
initialization for the same number of epochs; both test errors are reported side by side
(``error`` and ``scratch_error``). No model selection on either: both report their last epoch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import functional as F
from .. import nn
from ..autograd import no_grad
from .phases import Phase
from .base import GenerativeModel, register
from .autoencoders import PIXELS, corrupt_array


@dataclass
class SDAEConfig:
    layers: int = 3             # L, hidden layers
    hidden: int = 500           # units per hidden layer
    masking: float = 0.25       # nu, fraction of input units zeroed during pretraining
    pretrain_epochs: int = 10   # epochs of denoising pretraining per layer (fine-tuning: --epochs)


class _MLP(nn.Module):
    """784 -> h -> ... -> h (sigmoid units) -> 10 logits."""

    def __init__(self, layers, hidden):
        super().__init__()
        sizes = [PIXELS] + [hidden] * layers
        self.hidden = nn.ModuleList([nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])
        self.classifier = nn.Linear(hidden, 10)

    def features(self, x, depth=None):
        """h_depth for images x (N, 1, 28, 28) -> (N, hidden) (depth None: all layers)."""
        h = x.reshape(x.shape[0], PIXELS)
        for layer in list(self.hidden)[:depth]:
            h = F.sigmoid(layer(h))
        return h

    def forward(self, x):
        return self.classifier(self.features(x))


@register
class StackedDenoisingAutoencoder(GenerativeModel):
    model_name = "sdae"
    description = ("stacked denoising autoencoder: greedy denoising pretraining, softmax "
                   "fine-tuning, vs the same MLP from scratch")
    Config = SDAEConfig
    train_defaults = {"epochs": 30, "lr": 1e-3, "batch_size": 100}
    can_sample = False

    def __init__(self, config=None):
        super().__init__(config or SDAEConfig())
        c = self.config
        if c.layers < 1 or c.hidden < 1:
            raise ValueError(f"layers and hidden must be >= 1, got {c.layers} and {c.hidden}")
        if not 0 <= c.masking < 1:
            raise ValueError(f"masking must be in [0, 1), got {c.masking}")
        self.net = _MLP(c.layers, c.hidden)
        sizes = [PIXELS] + [c.hidden] * c.layers
        # W'_k: decoders used only to pretrain layer k (reconstruct h_{k-1} from h_k)
        self.pretrain_decoders = nn.ModuleList([nn.Linear(b, a)
                                                for a, b in zip(sizes[:-1], sizes[1:])])
        self.scratch = _MLP(c.layers, c.hidden)

    def pretrain_loss(self, k):
        """loss_k = || h_{k-1} - sigmoid(W'_k sigmoid(W_k mask(h_{k-1}) + b_k) + b'_k) ||^2."""
        def loss(batch, rng):
            with no_grad():
                clean = self.net.features(batch[0], depth=k)                  # h_{k-1}, frozen
            noisy = self.as_tensor(corrupt_array(clean.cpu().numpy(), "masking",
                                                 self.config.masking, rng))
            code = F.sigmoid(self.net.hidden[k](noisy))
            rec = F.sigmoid(self.pretrain_decoders[k](code))
            mse = F.mse_loss(rec, clean)
            return mse, {"mse": float(mse)}
        return loss

    def _classifier_loss(self, net):
        def loss(batch, rng):
            ce = F.cross_entropy(net(batch[0]), batch[1])
            return ce, {}
        return loss

    def phases(self, data):
        val = data.val
        # each classifier phase reports its own network's validation error
        ev_scratch = (lambda: {"scratch_error": self._error(self.scratch, val)}) \
            if val is not None else None
        ev_sdae = (lambda: {"error": self._error(self.net, val)}) if val is not None else None
        pre = [Phase(f"pretrain{k + 1}",
                     (lambda k=k: list(self.net.hidden[k].parameters()) +
                      list(self.pretrain_decoders[k].parameters())),
                     self.pretrain_loss(k), epochs=self.config.pretrain_epochs)
               for k in range(self.config.layers)]
        return ([Phase("scratch", self.scratch.parameters, self._classifier_loss(self.scratch),
                       evaluate=ev_scratch)]
                + pre
                + [Phase("finetune", self.net.parameters, self._classifier_loss(self.net),
                         evaluate=ev_sdae)])

    def _error(self, net, dataset):
        """Fraction of ``dataset`` that ``net`` misclassifies."""
        logits = np.concatenate([out for out, _ in self.batched(
            lambda x: net(self.as_tensor(x)).cpu().numpy(), dataset.images)])   # (N, 10)
        return float(np.mean(logits.argmax(axis=1) != dataset.labels))

    def evaluate(self, dataset):
        """``error`` (fine-tuned SDAE) and ``scratch_error`` (same MLP from scratch): the
        fraction of misclassified digits."""
        return {"error": self._error(self.net, dataset),
                "scratch_error": self._error(self.scratch, dataset)}
