"""Keep freed array memory inside the process (glibc's malloc) instead of unmapping it.

glibc serves every allocation above its mmap threshold (128 KiB, adapting upward) with a fresh
``mmap`` and unmaps it again on free. A training step allocates and frees tens of megabytes of
activations, gradients and kernel workspaces, so each step touched thousands of fresh pages:
measured on the conv autoencoder step (batch 100), 17,000 minor page faults per step, about 40%
of its time. Raising the mmap threshold to its maximum (32 MiB on 64-bit) and keeping freed memory
in the heap (trim threshold, top pad) brings that to a handful of faults per step -- the same
idea as PyTorch's caching allocator, at the cost of the process keeping its peak heap.

Importing tinygen leaves malloc alone: a library should not change its host process's
allocator. The trainer (:class:`tinygen.train.Trainer`) applies the tuning when it starts
training, where it was measured to matter, and the benchmarks call :func:`tune_malloc`
themselves; a user's own training loop may call ``tinygen._memory.tune_malloc()`` too. Linux
with glibc only; set TINYGEN_MALLOC_TUNING=0 to leave malloc alone everywhere.
"""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3   # glibc's <malloc.h>
MMAP_THRESHOLD = 32 << 20       # glibc's upper limit on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 256 << 20      # give memory back to the OS only above this much free heap
TOP_PAD = 64 << 20              # grow the heap in large steps

applied = False


def tune_malloc() -> bool:
    """Apply the settings above; returns whether glibc accepted them."""
    global applied
    if applied or os.environ.get("TINYGEN_MALLOC_TUNING", "1") == "0" or \
            not sys.platform.startswith("linux"):
        return applied
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):   # not glibc (or no symbol): nothing to do
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    applied = all(mallopt(param, value) == 1 for param, value in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (M_TOP_PAD, TOP_PAD)))
    return applied
