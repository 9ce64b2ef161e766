"""Shared benchmark plumbing: the OpenBLAS environment re-exec and a median timer."""
from __future__ import annotations

import os
import statistics
import sys
import time

_ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

# Freed arrays stay in the heap for every benchmark, as they do in tinygen's trainer (importing
# tinygen alone leaves malloc alone; see tinygen/_memory.py). PyTorch keeps its own cache.
import tinygen._memory  # noqa: E402

tinygen._memory.tune_malloc()


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


def interleaved(runners, repeat, warmup=2):
    """Median milliseconds per runner (a dict name -> callable), one call of each per round with
    the order rotating, so that a machine whose load changes during the run affects them alike."""
    for _ in range(warmup):
        for r in runners.values():
            r()
    times = {k: [] for k in runners}
    keys = list(runners)
    for rep in range(repeat):
        for k in keys[rep % len(keys):] + keys[:rep % len(keys)]:
            t0 = time.perf_counter()
            runners[k]()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def load_average():
    """The 1-, 5- and 15-minute load averages as a string ("n/a" where /proc is missing)."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


def bench_arguments(doc: str, repeat: int, json_default: str):
    """The common command line of a benchmark (--repeat, --json, --keep-openblas-env), after
    the OpenBLAS environment re-exec; prints a note when the variables were unset."""
    import argparse

    reexec_without_openblas_env()
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=repeat)
    parser.add_argument("--json", default=json_default)
    parser.add_argument("--keep-openblas-env", action="store_true",
                        help="keep OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE as the environment sets them")
    args = parser.parse_args()
    if os.environ.get("TINYGEN_BENCH_UNSET_OPENBLAS"):
        print("note: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for this process")
    return args


def torch_or_nothing(bench_torch, repeat):
    """``bench_torch(repeat)`` -> (results, torch version), or ({}, None) without PyTorch."""
    try:
        return bench_torch(repeat)
    except ImportError:
        print("PyTorch is not installed: tinygen timings only")
        return {}, None


def write_json(path, rows, torch_version):
    """The rows of a benchmark, with the machine's facts, as JSON at ``path`` (if given)."""
    import json

    if not path:
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump({"rows": rows, "torch": torch_version, "cores": os.cpu_count(),
                   "openblas_env_unset": bool(os.environ.get("TINYGEN_BENCH_UNSET_OPENBLAS"))},
                  f, indent=2)
