"""Where the time of each conv-autoencoder layer goes, kernel by kernel.

Every Numba copy kernel and every BLAS product that ``tinygen.kernels.cpu.conv`` calls is wrapped
by a timer (the module's functions and its ``np.matmul``/``np.dot`` are replaced for the run), then
each layer of the lecture's conv autoencoder (the layers of bench_conv.py) runs forward + backward
``--repeat`` times; the table shows, per layer, the median milliseconds per forward+backward of
each kernel (summed over the threads that ran it, so with threaded chunks the parts can add up
to more than the wall time) and the rest ("engine": bias add/sum, the tinygen autograd,
allocation; negative when the kernels ran on two threads at once).

    python benchmarks/profile_conv.py [--repeat N] [--batch 100]

OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset for this process (see _common.py).
"""
from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import reexec_without_openblas_env  # noqa: E402
from bench_conv import LAYERS  # noqa: E402


class _TimedNumpy:
    """A stand-in for the ``np`` module of the conv kernels that times matmul and dot."""

    def __init__(self, np, clock):
        self._np, self._clock = np, clock

    def __getattr__(self, name):
        attr = getattr(self._np, name)
        if name in ("matmul", "dot"):
            return self._clock("GEMM", attr)
        return attr


def instrument(module, names):
    """Replace ``module.<name>`` for each name by a timed wrapper; returns (totals, restore)."""
    totals = collections.defaultdict(float)
    saved = {}

    def clock(label, fn):
        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                totals[label] += time.perf_counter() - t0
        return timed

    for name in names:
        if hasattr(module, name):
            saved[name] = getattr(module, name)
            setattr(module, name, clock(name, saved[name]))
    saved["np"] = module.np
    module.np = _TimedNumpy(module.np, clock)

    def restore():
        for name, fn in saved.items():
            setattr(module, name, fn)
    return totals, restore


def main():
    reexec_without_openblas_env()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--keep-openblas-env", action="store_true")
    args = parser.parse_args()
    import numpy as np
    import tinygen
    from tinygen import functional as F
    from tinygen.kernels.cpu import conv as cpu_conv

    kernel_names = [n for n in dir(cpu_conv) if hasattr(getattr(cpu_conv, n), "py_func")] + \
        ["padded_input"]
    with open("/proc/loadavg") as f:
        print("load average:", f.read().split()[:3])
    rng = np.random.default_rng(0)
    for kind, cin, cout, k, s, size in LAYERS:
        x = rng.standard_normal((args.batch, cin, size, size), dtype=np.float32)
        wshape = (cout, cin, k, k) if kind == "conv" else (cin, cout, k, k)
        tx = tinygen.tensor(x, requires_grad=True)
        tw = tinygen.tensor(rng.standard_normal(wshape, dtype=np.float32) * 0.1,
                            requires_grad=True)
        tb = tinygen.tensor(np.zeros(cout, np.float32), requires_grad=True)
        op = (lambda: F.conv2d(tx, tw, tb, stride=s)) if kind == "conv" else \
            (lambda: F.conv_transpose2d(tx, tw, tb, stride=s))
        gy = tinygen.tensor(np.ones_like(op().array))

        def fb():
            tx.grad = tw.grad = tb.grad = None
            op().backward(gy)

        for _ in range(3):
            fb()
        per_kernel = collections.defaultdict(list)
        walls = []
        for _ in range(args.repeat):
            totals, restore = instrument(cpu_conv, kernel_names)
            t0 = time.perf_counter()
            try:
                fb()
            finally:
                restore()
            walls.append(time.perf_counter() - t0)
            for name, v in totals.items():
                per_kernel[name].append(v)
            for name in set(kernel_names + ["GEMM"]) - set(totals):
                per_kernel[name].append(0.0)
        wall = statistics.median(walls) * 1e3
        parts = {n: statistics.median(v) * 1e3 for n, v in per_kernel.items()
                 if max(v) > 0}
        engine = wall - sum(parts.values())
        desc = ", ".join(f"{n} {v:.2f}" for n, v in sorted(parts.items(), key=lambda p: -p[1]))
        print(f"{kind} {cin}->{cout} k{k} s{s} {size}: f+b {wall:.2f} ms = {desc}, "
              f"engine {engine:.2f}", flush=True)


if __name__ == "__main__":
    main()
