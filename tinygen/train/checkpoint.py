"""Checkpoint files: one pickled dict of plain Python values and NumPy arrays.

A checkpoint is written atomically -- to a temporary file in the same directory, flushed and
fsynced, then moved over the destination with ``os.replace`` -- so an interrupted write never
leaves a half-written file where a good one was. Load only checkpoints you trust (pickle).
"""
from __future__ import annotations

import os
import pickle

import numpy as np

from .. import backend
from .._fileio import atomic_write  # noqa: F401  (re-exported)
from ..tensor import Tensor

FORMAT = "tinygen-checkpoint"
VERSION = 1


def to_numpy_tree(value):
    """Tensors and device arrays anywhere in nested dicts/lists/tuples -> NumPy arrays."""
    if isinstance(value, Tensor):
        return np.array(backend.to_numpy(value.data))
    if isinstance(value, dict):
        return type(value)((k, to_numpy_tree(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(to_numpy_tree(v) for v in value)
    if hasattr(value, "__cuda_array_interface__"):
        return backend.to_numpy(value)
    return value


def save_checkpoint(path, payload: dict) -> str:
    """Write ``payload`` (a dict; Tensors are converted to NumPy) atomically to ``path``."""
    record = {"format": FORMAT, "version": VERSION, **to_numpy_tree(payload)}
    with atomic_write(path) as f:
        pickle.dump(record, f, protocol=pickle.HIGHEST_PROTOCOL)
    return os.fspath(path)


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; clear errors for anything else."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        with open(path, "rb") as f:
            record = pickle.load(f)
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as e:
        raise ValueError(f"checkpoint {path!r} is not a readable tinygen checkpoint ({e})") from e
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path!r} is not a tinygen checkpoint")
    if record.get("version") != VERSION:
        raise ValueError(f"checkpoint {path!r} has format version {record.get('version')}, "
                         f"this tinygen reads version {VERSION}")
    return record
