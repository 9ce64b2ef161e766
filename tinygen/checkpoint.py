"""Checkpoint files: a dict of plain values and arrays in tinygen's data-only file format.

A checkpoint is a :func:`tinygen.serialization.save_tree` file of kind ``"checkpoint"``: the
arrays (weights, optimizer moments) in an ``.npz`` archive read with ``allow_pickle=False``, the
rest (configs, counters, RNG states) as JSON, a format version and a SHA-256 checksum of the
payload verified on load. Loading one never runs code from it. It is written atomically -- to a
temporary file in the same directory, flushed and fsynced, then moved over the destination with
``os.replace`` -- so an interrupted write never leaves a half-written file where a good one was.
"""
from __future__ import annotations

import os

import numpy as np

from . import backend
from ._fileio import atomic_write  # noqa: F401  (re-exported)
from .serialization import CheckpointError, load_tree, save_tree
from .tensor import Tensor

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "check_model_checkpoint",
           "to_numpy_tree", "atomic_write"]

KIND = "checkpoint"


def to_numpy_tree(value):
    """Tensors and device arrays anywhere in nested dicts/lists/tuples -> NumPy arrays."""
    if isinstance(value, Tensor):
        return np.array(backend.to_numpy(value.array))
    if isinstance(value, dict):
        return type(value)((k, to_numpy_tree(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(to_numpy_tree(v) for v in value)
    if hasattr(value, "__cuda_array_interface__"):
        return backend.to_numpy(value)
    return value


def save_checkpoint(path, payload: dict) -> str:
    """Write ``payload`` (a dict; Tensors are converted to NumPy) atomically to ``path``."""
    if not isinstance(payload, dict):
        raise TypeError(f"save_checkpoint: payload must be a dict, got {type(payload).__name__}")
    return save_tree(path, to_numpy_tree(payload), kind=KIND)


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`.

    ``FileNotFoundError`` for a missing file, :class:`CheckpointError` (a ValueError with a
    one-line message naming the file) for anything that is not an intact checkpoint.
    """
    path = os.fspath(path)
    record = load_tree(path, kind=KIND)
    if not isinstance(record, dict):
        raise CheckpointError(f"{path}: a checkpoint holds a dict, this file holds a "
                              f"{type(record).__name__}")
    return record


# the entries of a model checkpoint (Trainer.checkpoint_payload) and their types
_MODEL_FIELDS = {"model": str, "model_config": dict, "state_dict": dict}
_RESUME_FIELDS = {"train_config": dict, "trainer": dict, "rng": dict}


def check_model_checkpoint(record: dict, path, resume: bool = False) -> dict:
    """Check that ``record`` (from :func:`load_checkpoint`) is a model checkpoint: the entries
    a model is rebuilt from (and, with ``resume``, those training continues from) are present
    with the right types, and every weight is a finite number. Returns ``record``; raises
    :class:`CheckpointError` naming the file and the problem otherwise."""
    path = os.fspath(path)
    wanted = {**_MODEL_FIELDS, **(_RESUME_FIELDS if resume else {})}
    missing = sorted(k for k in wanted if k not in record)
    if missing:
        raise CheckpointError(f"{path}: not a model checkpoint: missing {', '.join(missing)}")
    for key, kind in wanted.items():
        if not isinstance(record[key], kind):
            raise CheckpointError(f"{path}: entry {key!r} must be a {kind.__name__}, found "
                                  f"{type(record[key]).__name__}")
    for name, value in record["state_dict"].items():
        if not isinstance(value, np.ndarray):
            raise CheckpointError(f"{path}: state_dict entry {name!r} must be an array, found "
                                  f"{type(value).__name__}")
        if value.dtype.kind in "fc":
            bad = int(value.size - np.count_nonzero(np.isfinite(value)))
            if bad:
                raise CheckpointError(f"{path}: state_dict entry {name!r} has {bad} NaN or "
                                      f"infinite values; the weights are unusable")
    if resume:
        trainer = record["trainer"]
        for key in ("phase", "epoch", "step"):
            if not isinstance(trainer.get(key), int) or isinstance(trainer.get(key), bool) \
                    or trainer[key] < 0:
                raise CheckpointError(f"{path}: trainer entry {key!r} must be an int >= 0, "
                                      f"found {trainer.get(key)!r}")
        for key in ("seed", "batch_size"):
            if not isinstance(record["train_config"].get(key), int):
                raise CheckpointError(f"{path}: train_config entry {key!r} must be an int, "
                                      f"found {record['train_config'].get(key)!r}")
    return record
