"""Shared benchmark plumbing: the OpenBLAS environment re-exec and a median timer."""
from __future__ import annotations

import os
import statistics
import sys
import time

_ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def reexec_without_openblas_env():
    """Re-run this script with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (both together),
    unless ``--keep-openblas-env`` is given; the child sees TINYGEN_BENCH_UNSET_OPENBLAS=1."""
    if any(v in os.environ for v in _ENV_VARS) and "--keep-openblas-env" not in sys.argv:
        env = {k: v for k, v in os.environ.items() if k not in _ENV_VARS}
        env["TINYGEN_BENCH_UNSET_OPENBLAS"] = "1"
        os.execve(sys.executable, [sys.executable] + sys.argv, env)


def timeit(fn, repeat: int, warmup: int = 20) -> float:
    """Median wall time of ``fn()`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3
