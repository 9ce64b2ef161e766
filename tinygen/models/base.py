"""What every model of :mod:`tinygen.models` provides (the registry is :mod:`.registry`).

A model is a :class:`tinygen.nn.Module` with

* ``model_name``/``description`` (class attributes; ``tinygen list`` prints them),
* ``Config``, a dataclass of its options (each field becomes a ``--option`` of ``tinygen
  train``), and ``train_defaults`` (epochs, lr, batch size that suit it),
* ``phases(data)``: the :class:`tinygen.models.phases.Phase` list the trainer runs,
* ``evaluate(dataset)``: metrics on a held-out set (floats, lower is better for the selection
  metric ``select``),
* ``finish(data)``: work after training (e.g. fitting the latent Gaussian used for sampling),
* ``sample(n, rng)`` (or ``can_sample = False``) and ``pictures(out_dir, dataset, rng)``,
* optionally ``load_data(data_dir, val_fraction, seed)`` (default: MNIST, see
  :func:`tinygen.data.load_mnist_data`; the toy 2-D and text models override it),
  ``extra_metrics(data, split, dataset)`` (baselines reported beside ``evaluate``) and
  ``save_samples(n, rng, path)`` (default: a PNG grid of ``sample(n, rng)``),
* ``scored_samples``: for a model that draws MNIST digits, how many of its samples the scoring
  classifier judges after training and in ``tinygen eval`` (:meth:`sample_quality`: class
  entropy, classifier Fréchet distance; the shipped classifier unless the model's
  ``classifier`` option names another or ``none``).
"""
from __future__ import annotations

from typing import ClassVar, Optional

import numpy as np

from .. import nn
from ..autograd import no_grad
from ..data.runs import RunData, load_mnist_data
from ..tensor import tensor
from .registry import register  # noqa: F401  (models register through base)

class GenerativeModel(nn.Module):
    """Base class of the models (see the module docstring for the protocol)."""
    model_name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type] = None
    train_defaults: ClassVar[dict] = {}
    select: ClassVar[Optional[str]] = None    # validation metric to minimize for best.ckpt
    can_sample: ClassVar[bool] = True
    eval_batch_size: ClassVar[int] = 500
    data_help: ClassVar[Optional[str]] = None  # what --data names, if not MNIST IDX files
    # samples scored by :meth:`sample_quality` (0: none -- not an image model, or one whose
    # evaluate() scores its own samples, as the GANs and DDPM do)
    scored_samples: ClassVar[int] = 0
    # the scoring classifier of a model whose Config has no ``classifier`` option
    # (:meth:`use_classifier`; "": the shipped one)
    _classifier_option: str = ""

    def __init__(self, config):
        super().__init__()
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}, got "
                            f"{type(config).__name__}")
        self.config = config

    @property
    def device(self) -> str:
        return next(iter(self.parameters())).device

    def as_tensor(self, array):
        """A NumPy batch as a Tensor on the model's device (float32)."""
        return tensor(np.ascontiguousarray(array, dtype=np.float32), device=self.device)

    def batched(self, fn, *arrays):
        """Apply ``fn`` to Tensor batches of ``arrays`` without gradients; yields NumPy results
        with their batch sizes."""
        n = len(arrays[0])
        with no_grad():
            for start in range(0, n, self.eval_batch_size):
                parts = [a[start:start + self.eval_batch_size] for a in arrays]
                yield fn(*parts), len(parts[0])

    def phases(self, data: RunData) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def evaluate(self, dataset) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_data(self, data: RunData) -> None:
        """Called before any training: raise ValueError for options that cannot work with
        ``data`` (e.g. a latent size beyond what a baseline can fit). Default: nothing."""

    def finish(self, data: RunData) -> None:
        """Called once after training (default: nothing)."""

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        raise ValueError(f"model {self.model_name!r} does not generate samples")

    def pictures(self, out_dir: str, dataset, rng: np.random.Generator) -> list:
        return []

    def load_data(self, data_dir=None, val_fraction=0.1, seed=0):
        """The run's data as ``(RunData, description dict)``; default: MNIST (the IDX files in
        ``data_dir`` or the embedded 5,000 digits, a seeded validation split, the test set when
        ``data_dir`` holds it)."""
        return load_mnist_data(data_dir, val_fraction, seed)

    def extra_metrics(self, data: RunData, split: str, dataset) -> dict:
        """Metrics reported beside :meth:`evaluate` on ``dataset`` (the ``split`` set), e.g.
        a baseline fitted on ``data.train``. The keys are reported as given, so they should
        name the split (``pca_test_mse``). Default: none."""
        return {}

    @property
    def classifier_option(self) -> str:
        """Which scoring classifier judges this model's samples (see
        :func:`tinygen.models.scoring.classifier_path`): the ``classifier`` option of models
        that have one (GANs, cvae, DDPM score during training), else what
        :meth:`use_classifier` set, else ``""`` (the shipped classifier)."""
        return getattr(self.config, "classifier", self._classifier_option)

    def use_classifier(self, option: str) -> None:
        """Judge samples with the classifier ``option`` names from now on (``tinygen eval
        --classifier``): a checkpoint path, ``""`` for the shipped one, ``"none"``."""
        if hasattr(self.config, "classifier"):
            self.config.classifier = option
        else:
            self._classifier_option = option

    def scoring_classifier(self):
        """The scoring classifier that :attr:`classifier_option` names, on the model's device
        (loaded once per process; None for ``"none"``): the one every model's sample scores
        go through."""
        from .scoring import resolve_classifier
        return resolve_classifier(self.classifier_option, self.device)

    def use_scored_samples(self, n: int) -> None:
        """Score ``n`` samples at evaluation from now on (``tinygen eval --samples``): the
        ``eval_samples`` option of models that score in evaluate() (GANs, DDPM), else
        :attr:`scored_samples`. A model that draws no images refuses (ValueError)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"--samples must be an integer >= 2, got {n!r}")
        if hasattr(self.config, "eval_samples"):
            self.config.eval_samples = n
        elif self.scored_samples:
            self.scored_samples = n
        else:
            raise ValueError(f"--samples: model {self.model_name!r} has no samples that the "
                             f"scoring classifier judges")

    def sample_quality(self, dataset) -> dict:
        """The scoring classifier's judgement of ``scored_samples`` samples against the images
        of ``dataset`` (:func:`tinygen.models.scoring.score_samples`: ``class_entropy``,
        ``fid_classifier``, ...); {} for a model that does not score samples this way."""
        if not self.scored_samples or not self.can_sample:
            return {}
        from .scoring import score_samples
        clf = self.scoring_classifier()
        if clf is None:
            return {}
        samples = np.clip(self.sample(self.scored_samples, np.random.default_rng(2)), 0.0, 1.0)
        return {**score_samples(clf, samples, dataset.images), "scored_samples": len(samples)}

    def save_samples(self, n: int, rng: np.random.Generator, path: str) -> str:
        """Draw ``n`` samples and save them at ``path`` (default: a PNG image grid)."""
        from .. import plots as images
        return images.save_image_grid(self.sample(n, rng), path, nrow=int(np.ceil(np.sqrt(n))),
                                      scale=2)
