"""The data of a run: a training set, a seeded validation split and (when available) a test set,
for MNIST (IDX files or the embedded digits) and the generated 2-D toy sets. Models read their
data through these functions; the trainer and the command line only pass the options on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .mnist import (DataSource, Dataset, load_mnist_splits, resolve_data_source,
                    train_val_split)
from .toy import TOY_DATASETS

__all__ = ["RunData", "load_mnist_data", "load_toy_data"]


@dataclass
class RunData:
    """The data of a run: training set, validation split (model selection) and, when the user
    named a directory holding it, the MNIST test set. Each is a
    :class:`tinygen.data.Dataset` or None."""
    train: object
    val: Optional[object] = None
    test: Optional[object] = None

    @property
    def heldout(self):
        """The set final numbers are reported on: test if present, else validation."""
        return self.test if self.test is not None else self.val


def load_mnist_data(data_dir=None, val_fraction=0.1, seed=0):
    """RunData for MNIST from ``data_dir`` (a directory, or a :class:`DataSource` to use as it
    is, e.g. the one a checkpoint recorded): by :func:`~tinygen.data.resolve_data_source`,
    ``data_dir`` if given, else ``$TINYGEN_DATA``, else the embedded 5,000 digits; the
    directory's training files if it has them, else the embedded digits; a seeded validation
    split; the test set when the directory holds it. Returns ``(RunData, description dict)``;
    the description records the source used (``data_source``: "--data", "TINYGEN_DATA" or
    "embedded") and the directory."""
    source = data_dir if isinstance(data_dir, DataSource) else resolve_data_source(data_dir)
    train, test, desc = load_mnist_splits(source)
    val = None
    if val_fraction > 0:
        train, val = train_val_split(train, val_fraction=val_fraction, seed=seed)
    desc.update({"train_size": len(train), "val_size": 0 if val is None else len(val),
                 "test_size": 0 if test is None else len(test), "val_fraction": val_fraction,
                 "split_seed": seed})
    return RunData(train, val, test), desc


def load_toy_data(dataset="moons", n_train=2000, n_test=2000, val_fraction=0.1, seed=0):
    """RunData for a generated 2-D toy set (``tinygen.data.TOY_DATASETS``): ``n_train`` points
    (a seeded ``val_fraction`` of them held out for model selection) and an independent test
    sample of ``n_test`` points drawn with another seed. Points are float32 (N, 2) in the
    Datasets' ``images`` field, labels are zeros. Returns ``(RunData, description dict)``."""
    if dataset not in TOY_DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(sorted(TOY_DATASETS))}, got "
                         f"{dataset!r}")
    if n_train < 2 or n_test < 1:
        raise ValueError(f"n_train must be >= 2 and n_test >= 1, got {n_train} and {n_test}")
    make = TOY_DATASETS[dataset]
    points = make(n_train, seed=seed)
    n_val = int(round(val_fraction * n_train))
    order = np.random.default_rng([seed, 7919]).permutation(n_train)
    zeros = np.zeros(n_train, np.int64)
    train = Dataset(points[order[n_val:]], zeros[n_val:], f"{dataset}-train")
    val = Dataset(points[order[:n_val]], zeros[:n_val], f"{dataset}-val") if n_val else None
    test_points = make(n_test, seed=seed + 1_000_003)
    test = Dataset(test_points, np.zeros(n_test, np.int64), f"{dataset}-test")
    desc = {"data_dir": None, "train": f"generated 2-D toy set {dataset!r}",
            "train_size": len(train), "val_size": 0 if val is None else len(val),
            "test_size": n_test, "val_fraction": val_fraction, "split_seed": seed}
    return RunData(train, val, test), desc
