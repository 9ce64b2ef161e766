"""Datasets and mini-batch loading with PyTorch's names (``torch.utils.data``).

``DataLoader(dataset, batch_size, shuffle, drop_last, generator)`` yields batches collated into
Tensors. A dataset is anything with ``__len__`` and ``__getitem__`` (a :class:`Dataset`
subclass), a :class:`TensorDataset`, or one of tinygen's own datasets (``images``/``labels``
arrays, e.g. :func:`tinygen.data.load_mnist`), which yields ``(images, labels)`` batches.
:class:`TensorDataset` and tinygen's datasets are indexed one whole batch at a time (one
fancy-indexing per array), others item by item and collated with :func:`default_collate`.

Differences from PyTorch: ``num_workers`` is accepted and ignored (batches are made in the
calling process), ``pin_memory`` does nothing, and shuffling draws from a tinygen
:class:`~tinygen.Generator` (``tinygen.manual_seed`` or ``generator=``), so orders are
reproducible but not PyTorch's.
"""
from __future__ import annotations

import bisect
import math
import numbers

import numpy as np

from .. import backend
from ..random import _resolve as _resolve_generator
from ..tensor import Tensor, tensor

__all__ = ["Dataset", "TensorDataset", "Subset", "ConcatDataset", "random_split", "Sampler",
           "SequentialSampler", "RandomSampler", "BatchSampler", "DataLoader", "default_collate"]


class Dataset:
    """Base class of map-style datasets: subclasses define ``__getitem__`` and ``__len__``."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __add__(self, other):
        return ConcatDataset([self, other])


class TensorDataset(Dataset):
    """Samples are slices along axis 0 of ``tensors`` (Tensors or arrays of the same length):
    ``dataset[i] == tuple(t[i] for t in tensors)``."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: needs at least one tensor")
        n = len(tensors[0])
        for i, t in enumerate(tensors):
            if len(t) != n:
                raise ValueError(f"TensorDataset: tensors must share their first dimension; "
                                 f"tensors[0] has shape {tuple(tensors[0].shape)}, tensors[{i}] "
                                 f"has {tuple(t.shape)}")
        self.tensors = tuple(tensors)

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self):
        return len(self.tensors[0])

    def _get_batch(self, indices):
        """One batch by fancy indexing (no per-item collation)."""
        out = []
        for t in self.tensors:
            if isinstance(t, Tensor):
                out.append(Tensor._wrap(t.array[backend.to_device(indices, t.device)]))
            else:
                out.append(_collate_leaf(np.asarray(t)[indices], batched=True))
        return tuple(out)


class _ArraysDataset(Dataset):
    """tinygen's own datasets (``images``, ``labels`` arrays) seen as ``(image, label)`` pairs."""

    def __init__(self, source):
        self.source = source
        self._inner = TensorDataset(source.images, source.labels)

    def __getitem__(self, index):
        return self._inner[index]

    def __len__(self):
        return len(self._inner)

    def _get_batch(self, indices):
        return self._inner._get_batch(indices)


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)

    def __getitem__(self, index):
        if isinstance(index, list):
            return self.dataset[[self.indices[i] for i in index]]
        return self.dataset[self.indices[index]]

    def __len__(self):
        return len(self.indices)


class ConcatDataset(Dataset):
    """The samples of several datasets one after the other."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: datasets should not be an empty iterable")
        self.cumulative_sizes = np.cumsum([len(d) for d in self.datasets]).tolist()

    def __len__(self):
        return self.cumulative_sizes[-1]

    def __getitem__(self, index):
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"ConcatDataset: index {index} out of range for {len(self)} samples")
        k = bisect.bisect_right(self.cumulative_sizes, index)
        return self.datasets[k][index - (self.cumulative_sizes[k - 1] if k else 0)]


def _permutation(n, generator):
    """A random permutation of range(n) drawn from a tinygen generator (the default one when
    ``generator`` is None, so ``tinygen.manual_seed`` makes it reproducible)."""
    gen = _resolve_generator(generator)
    keys = backend.to_numpy(gen.uniform((n,), np.dtype(np.float64)))
    return np.argsort(keys, kind="stable")


def random_split(dataset, lengths, generator=None):
    """Split ``dataset`` into non-overlapping :class:`Subset` s of the given ``lengths`` (ints
    that add up to ``len(dataset)``, or fractions that add up to 1, as PyTorch)."""
    n = len(dataset)
    lengths = list(lengths)
    if lengths and all(isinstance(x, numbers.Real) and not isinstance(x, numbers.Integral)
                       for x in lengths) and math.isclose(sum(lengths), 1.0):
        sizes = [int(math.floor(n * f)) for f in lengths]
        for i in range(n - sum(sizes)):  # the remainder, round-robin as PyTorch
            sizes[i % len(sizes)] += 1
        lengths = sizes
    if sum(lengths) != n:
        raise ValueError(f"random_split: lengths {lengths} do not add up to the dataset's "
                         f"length {n}")
    order = _permutation(n, generator).tolist()
    out, start = [], 0
    for size in lengths:
        out.append(Subset(dataset, order[start:start + size]))
        start += size
    return out


class Sampler:
    """Base class: an iterable over dataset indices."""

    def __init__(self, data_source=None):
        pass


class SequentialSampler(Sampler):
    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """A fresh random order of the indices at each iteration (without replacement)."""

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None):
        if replacement or num_samples is not None:
            raise ValueError("RandomSampler: replacement and num_samples are not supported")
        self.data_source, self.generator = data_source, generator

    def __iter__(self):
        return iter(_permutation(len(self.data_source), self.generator).tolist())

    def __len__(self):
        return len(self.data_source)


class BatchSampler(Sampler):
    """Lists of ``batch_size`` indices from ``sampler`` (the last one shorter unless
    ``drop_last``)."""

    def __init__(self, sampler, batch_size, drop_last):
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or \
                batch_size < 1:
            raise ValueError(f"batch_size should be a positive integer, got {batch_size!r}")
        self.sampler, self.batch_size, self.drop_last = sampler, int(batch_size), bool(drop_last)

    def __iter__(self):
        batch = []
        for i in self.sampler:
            batch.append(i)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self):
        full, rest = divmod(len(self.sampler), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)


def _collate_leaf(batch, batched=False):
    """Numbers, arrays or Tensors (one per sample, or an already batched array) -> a Tensor."""
    if batched:
        arr = batch
    else:
        first = batch[0]
        if isinstance(first, Tensor):
            xp = first._xp
            return Tensor._wrap(xp.stack([b.array for b in batch]))
        if isinstance(first, (bool, np.bool_)):
            return tensor(batch, dtype=np.bool_)
        if isinstance(first, numbers.Integral):
            return tensor(batch, dtype=np.int64)
        if isinstance(first, numbers.Real):
            return tensor(batch, dtype=np.float64)  # Python floats are doubles, as PyTorch
        arr = np.stack([np.asarray(b) for b in batch])
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"default_collate: cannot make a tensor of dtype {arr.dtype}")
    return Tensor._wrap(np.ascontiguousarray(arr))


def default_collate(batch):
    """Stack a list of samples into a batch: Tensors, arrays and numbers become one Tensor with
    a new leading axis; tuples, lists and dicts are collated field by field; strings stay a
    list."""
    first = batch[0]
    if isinstance(first, str):
        return list(batch)
    if isinstance(first, dict):
        return {k: default_collate([b[k] for b in batch]) for k in first}
    if isinstance(first, (tuple, list)):
        if any(len(b) != len(first) for b in batch):
            raise RuntimeError("default_collate: each element in the batch should be of equal "
                               "size")
        fields = [default_collate(list(group)) for group in zip(*batch)]
        return type(first)(*fields) if hasattr(first, "_fields") else \
            (tuple(fields) if isinstance(first, tuple) else fields)
    return _collate_leaf(batch)


class DataLoader:
    """Mini-batches of ``dataset`` (PyTorch's ``DataLoader``).

    ``batch_size`` samples a batch (``None``: samples one at a time, uncollated), ``shuffle``
    draws a new order each epoch from ``generator`` (a :class:`tinygen.Generator`; the default
    generator when None), ``drop_last`` drops a last short batch. ``sampler`` / ``batch_sampler``
    and ``collate_fn`` as PyTorch. ``num_workers``, ``pin_memory``, ``timeout``,
    ``worker_init_fn``, ``prefetch_factor`` and ``persistent_workers`` are accepted and ignored:
    batches are made in this process.
    """

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None,
                 num_workers=0, collate_fn=None, pin_memory=False, drop_last=False, timeout=0,
                 worker_init_fn=None, multiprocessing_context=None, generator=None, *,
                 prefetch_factor=None, persistent_workers=False, pin_memory_device=""):
        if not hasattr(dataset, "__getitem__") and hasattr(dataset, "images") and \
                hasattr(dataset, "labels"):
            dataset = _ArraysDataset(dataset)   # tinygen.data's datasets: (images, labels)
        if not hasattr(dataset, "__len__"):
            raise TypeError(f"DataLoader: dataset must have __len__ and __getitem__ (iterable "
                            f"datasets are not supported), got {type(dataset).__name__}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("DataLoader: batch_sampler option is mutually exclusive with "
                                 "batch_size, shuffle, sampler, and drop_last")
            batch_size, drop_last = None, False
        if sampler is None:
            sampler = RandomSampler(dataset, generator=generator) if shuffle else \
                SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, bool(drop_last)
        self.sampler, self.batch_sampler, self.generator = sampler, batch_sampler, generator
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.collate_fn = collate_fn
        self._fast = collate_fn is None and hasattr(dataset, "_get_batch")
        if collate_fn is None:
            self.collate_fn = default_collate

    def __len__(self):
        return len(self.batch_sampler) if self.batch_sampler is not None else len(self.sampler)

    def __iter__(self):
        if self.batch_sampler is None:          # batch_size=None: single samples
            for i in self.sampler:
                yield self.dataset[i]
            return
        for indices in self.batch_sampler:
            if self._fast:
                yield self.dataset._get_batch(np.asarray(indices, dtype=np.int64))
            else:
                yield self.collate_fn([self.dataset[i] for i in indices])
