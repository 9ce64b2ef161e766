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


def interleaved(runners, repeat, warmup=2, clock=None):
    """Median milliseconds per runner (a dict name -> callable), one call of each per round with
    the order rotating, so that a machine whose load changes during the run affects them alike.
    ``clock``: the timer (default ``time.perf_counter``, wall time; ``time.process_time`` gives
    the CPU time of all the process's threads, the work done, which other processes on a shared
    machine barely change -- meaningful as a speed comparison with one thread per library)."""
    clock = clock or time.perf_counter
    for _ in range(warmup):
        for r in runners.values():
            r()
    times = {k: [] for k in runners}
    keys = list(runners)
    for rep in range(repeat):
        for k in keys[rep % len(keys):] + keys[:rep % len(keys)]:
            t0 = clock()
            runners[k]()
            times[k].append(clock() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def threads_from_env():
    """The thread count a benchmark gives every library: OPENBLAS_NUM_THREADS if set, else
    the number of cores (tinygen's kernels follow the same variable, see kernels/cpu/_threads)."""
    value = os.environ.get("OPENBLAS_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else (os.cpu_count() or 1)


def load_baseline(path, family):
    """A CPU kernel module of ``family`` ("conv", "lstm") from a file, e.g. an earlier version
    (``git show REV:kernels/cpu/conv.py > before.py``), to time against the current kernels."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"tinygen.kernels.cpu._{family}_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def using_kernels(family, module, fn):
    """``fn`` made to run with ``module`` as the CPU kernels of ``family`` (None: current)."""
    from tinygen import kernels

    def run():
        saved = kernels.for_device(family, "cpu")
        kernels._modules[(family, "cpu")] = module or saved
        try:
            return fn()
        finally:
            kernels._modules[(family, "cpu")] = saved
    return run


def load_average():
    """The 1-, 5- and 15-minute load averages as a string ("n/a" where /proc is missing)."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


def bench_arguments(doc: str, repeat: int, json_default: str, baseline: bool = False):
    """The common command line of a benchmark (--repeat, --json, --keep-openblas-env; with
    ``baseline`` also --baseline FILE, an earlier kernel module timed as "before", and
    --cpu-time), after the OpenBLAS environment re-exec; prints a note when the variables
    were unset."""
    import argparse

    reexec_without_openblas_env()
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=repeat)
    parser.add_argument("--json", default=json_default)
    parser.add_argument("--keep-openblas-env", action="store_true",
                        help="keep OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE as the environment sets them")
    if baseline:
        parser.add_argument("--baseline", default="",
                            help="an earlier kernel module file, timed as 'before' in the rounds")
        parser.add_argument("--cpu-time", action="store_true",
                            help="CPU time of the process instead of wall time (with one thread "
                                 "per library: the work done, robust to other load)")
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
