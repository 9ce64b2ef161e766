"""A small MNIST classifier trained with tinygen: the judge that scores the generative models.

Patrini's lecture on unsupervised learning and generative models evaluates generators by what a
classifier makes of
their samples; :mod:`tinygen.models.scoring` uses this network for the class coverage of samples
(the histogram of predicted labels and its entropy) and for a Fréchet distance between its
penultimate features of two image sets.

Network (images (N, 1, 28, 28) in [0, 1]):

    1x28x28  Conv2d(1, C, 5, padding 2)            -> Cx28x28, ReLU
    Cx28x28  Conv2d(C, 2C, 4, stride 2, padding 1) -> 2Cx14x14, ReLU
    2Cx14x14 Conv2d(2C, 2C, 4, stride 2, padding 1) -> 2Cx7x7, ReLU
    flatten  Linear(2C*49, H), ReLU                -> H       (the penultimate features phi(x))
    Dropout, Linear(H, 10)                         -> logits

trained with the cross-entropy  - log softmax(f(x))_y  on digits shifted at random by up to
``shift`` pixels (data augmentation: 5,000 training digits are few for a CNN).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import functional as F
from .. import nn
from ..data import random_shift
from .phases import Phase
from .base import GenerativeModel, register


@dataclass
class ClassifierConfig:
    channels: int = 32      # C, channels of the first convolution (2C after it)
    hidden: int = 128       # H, width of the penultimate layer (the features of the FID)
    dropout: float = 0.3    # dropout before the last layer, training only
    shift: int = 2          # random translations of the training digits by up to this many px


@register
class MNISTClassifier(GenerativeModel):
    """The digit classifier ``classifier``: :meth:`features` gives the penultimate activations
    phi(x) (N, H), :meth:`predict` the labels. ``evaluate`` reports the error rate."""
    model_name = "classifier"
    description = "small MNIST CNN (the judge of the generators: class coverage, Fréchet distance)"
    Config = ClassifierConfig
    train_defaults = {"epochs": 30, "lr": 1e-3, "batch_size": 100}
    select = "error"
    can_sample = False

    def __init__(self, config=None):
        super().__init__(config or ClassifierConfig())
        c = self.config
        if c.channels < 1 or c.hidden < 1:
            raise ValueError(f"channels and hidden must be >= 1, got {c.channels} and {c.hidden}")
        if not 0 <= c.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {c.dropout}")
        if not 0 <= c.shift <= 8:
            raise ValueError(f"shift must be in [0, 8], got {c.shift}")
        ch = c.channels
        self.body = nn.Sequential(
            nn.Conv2d(1, ch, 5, padding=2), nn.ReLU(),                      # -> C x 28 x 28
            nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1), nn.ReLU(),       # -> 2C x 14 x 14
            nn.Conv2d(2 * ch, 2 * ch, 4, stride=2, padding=1), nn.ReLU(),   # -> 2C x 7 x 7
            nn.Flatten(),                                                   # -> 2C*49
            nn.Linear(2 * ch * 49, c.hidden), nn.ReLU())                    # -> H
        self.head = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(c.hidden, 10))

    def features(self, x):
        """phi(x): the penultimate activations (N, H) of images x (N, 1, 28, 28)."""
        return self.body(x)

    def forward(self, x):
        """Logits (N, 10)."""
        return self.head(self.body(x))

    def prepare_batch(self, arrays, rng):
        """Host side: the training digits shifted at random (augmentation), labels unchanged."""
        return (random_shift(np.asarray(arrays[0], np.float32), self.config.shift, rng),
                arrays[1])

    def training_loss(self, batch, rng):
        return F.cross_entropy(self(batch[0]), batch[1]), {}   # - mean log softmax(f(x))_y

    def phases(self, data):
        return [Phase("train", self.parameters, self.training_loss,
                      evaluate=(lambda: self.evaluate(data.val)) if data.val is not None else None,
                      select=self.select, prepare=self.prepare_batch)]

    def logits(self, images) -> np.ndarray:
        """Logits (N, 10) of NumPy images (N, 1, 28, 28), in batches, without gradients."""
        parts = [out for out, _ in self.batched(lambda x: self(self.as_tensor(x)).cpu().numpy(),
                                                images)]
        return np.concatenate(parts) if parts else np.zeros((0, 10), np.float32)

    def predict(self, images) -> np.ndarray:
        """Predicted labels (N,) int64."""
        return self.logits(images).argmax(axis=1).astype(np.int64)

    def evaluate(self, dataset):
        """``error``: the fraction of misclassified digits of ``dataset``."""
        return {"error": float(np.mean(self.predict(dataset.images) != dataset.labels))}
