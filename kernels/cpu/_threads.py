"""Running independent pieces of a CPU kernel on all cores, each with a single-threaded BLAS.

Used by the conv kernels (batch chunks) and the LSTM kernels (batch slices of the recurrence).
Each piece runs on its own Python thread: the Numba kernels are ``nogil`` and NumPy's matmul
releases the GIL, so the pieces run at the same time. No barrier sits inside a piece, so a
thread delayed by another process on a shared machine only delays its own pieces -- unlike a
2-thread BLAS call or a Numba ``prange`` region, which wait for their slowest thread at every
call (on the shared 2-core development VM those collapsed to several times their quiet time).

Both OpenBLAS builds in the process are set to one thread for the calls made from these
threads only (``openblas_set_num_threads_local``): NumPy's (``np.matmul``) and SciPy's (what
Numba's ``np.dot`` calls inside a kernel). Without that entry point (another BLAS) the pieces
run one after another on the calling thread.
"""
from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import threading

import numpy as np

__all__ = ["N_CORES", "run_pieces", "idle_cores", "one_blas_thread"]


def _thread_limit():
    """Threads to use: the first of TINYGEN_NUM_THREADS, OMP_NUM_THREADS, OPENBLAS_NUM_THREADS
    that is set (so that a benchmark giving every library n threads gives the kernels n too),
    at most the cores this process may run on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    for var in ("TINYGEN_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return min(cores, int(value))
    return cores


N_CORES = _thread_limit()


def _local_thread_setters():
    """``openblas_set_num_threads_local`` of each OpenBLAS shipped with NumPy and SciPy."""
    setters = []
    site = os.path.dirname(os.path.dirname(np.__file__))
    for libs in ("numpy.libs", "scipy.libs"):
        for path in sorted(glob.glob(os.path.join(site, libs, "lib*openblas*.so*"))):
            try:
                fn = ctypes.CDLL(path).openblas_set_num_threads_local
            except (OSError, AttributeError):
                continue
            fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
            setters.append(fn)
    return setters


def idle_cores():
    """Cores not busy with other work by the 1-minute load average (at least 1, at most
    :data:`N_CORES`), as GNU OpenMP's dynamic thread adjustment estimates them. For work split
    into as many long pieces as there are threads (the LSTM's batch slices), which a thread
    descheduled by another process holds up: on the loaded development VM (load 12-14 on 2
    cores) two slices were 1.4-1.7x slower than one."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return N_CORES
    return max(1, min(N_CORES, int(N_CORES + 1 - load + 0.5)))


_SETTERS = _local_thread_setters()


@contextlib.contextmanager
def one_blas_thread():
    """BLAS calls made from the calling thread inside the block run single-threaded (both
    OpenBLAS builds, this thread only). For many small dependent GEMMs (an LSTM's per-step
    products), where a multi-threaded BLAS call waits for its slowest thread at every step."""
    before = [setter(1) for setter in _SETTERS]
    try:
        yield
    finally:
        for setter, b in zip(_SETTERS, before):
            setter(b)
_POOL = None
_POOL_PID = None                   # a forked child gets a pool of its own (its parent's threads
                                   # do not exist there)
_IN_PIECE = threading.local()      # set while a thread runs pieces: no nested fan-out


def run_pieces(task, pieces):
    """``task(p)`` for every ``p`` in ``pieces``, on up to :data:`N_CORES` threads (see
    :func:`_thread_limit`) (the calling
    thread one of them), each taking the next piece when done with its last one and calling
    BLAS single-threaded. One piece, one core, or no way to set the BLAS threads: in order on
    the calling thread (BLAS keeping its own threads)."""
    global _POOL, _POOL_PID
    if len(pieces) == 1:
        task(pieces[0])
        return
    pieces = list(pieces)
    n_workers = min(len(pieces), N_CORES)
    if n_workers < 2 or not _SETTERS or getattr(_IN_PIECE, "active", False):
        for p in pieces:
            task(p)
        return
    if _POOL is None or _POOL_PID != os.getpid():
        from concurrent.futures import ThreadPoolExecutor
        _POOL = ThreadPoolExecutor(max_workers=N_CORES - 1, thread_name_prefix="tinygen-cpu")
        _POOL_PID = os.getpid()
    queue = iter(pieces)            # next() under the GIL: each piece is taken once

    def worker():
        before = [setter(1) for setter in _SETTERS]
        _IN_PIECE.active = True
        try:
            for p in queue:
                task(p)
        finally:
            _IN_PIECE.active = False
            for setter, b in zip(_SETTERS, before):
                setter(b)

    helpers = [_POOL.submit(worker) for _ in range(n_workers - 1)]
    try:
        worker()
    finally:
        for h in helpers:
            h.result()
