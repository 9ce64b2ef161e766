"""WaveNet generation: the naive generator (the network recomputed on the last r tokens for each
new token) against Fast WaveNet (Paine et al. 2016: per-layer queues, O(layers) per token), in
the same run, on randomly initialized networks (speed does not depend on training).

For each configuration (vocabulary, channels, layers per stack, stacks -> receptive field r) both
generators draw ``--length`` tokens for ``--batch`` sequences from the same one-token prompt with
the same seed; the table shows the wall time of each, the speed-up naive / fast (the issue's
goal: >= 10x at 1,000 characters) and whether the two drew identical tokens.

    python benchmarks/bench_wavenet_generation.py [--length N] [--batch B] [--json PATH]

Threads: ``OPENBLAS_NUM_THREADS`` if set, else 1 (a 2-thread OpenBLAS collapses under load on the
shared development machine; see bench_lstm.py).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

THREADS = int(os.environ.setdefault("OPENBLAS_NUM_THREADS", "1"))   # before NumPy loads

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import reexec_without_openblas_env, write_json  # noqa: E402

CONFIGS = [  # name, vocabulary, channels (R = D), skip channels, layers per stack, stacks
    ("text default", 97, 64, 128, 6, 2),
    ("text, r = 1024", 97, 64, 128, 10, 1),
    ("mnist, R = 32", 3, 32, 64, 10, 1),
]


def main():
    reexec_without_openblas_env()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--json", default="")
    args = parser.parse_args()

    import numpy as np

    import tinygen
    from tinygen.models.wavenet import (WaveNetConfig, WaveNetNet, generate_fast,
                                        generate_naive)

    print(f"WaveNet generation, {args.length} tokens x batch {args.batch}, float32, "
          f"OPENBLAS_NUM_THREADS={THREADS}")
    print(f"{'configuration':<16} {'r':>5} {'naive s':>9} {'fast s':>8} {'speed-up':>9} same")
    rows = []
    for name, vocab, ch, skip, layers, stacks in CONFIGS:
        tinygen.manual_seed(0)
        net = WaveNetNet(vocab, vocab, WaveNetConfig(ch, ch, skip, 2, layers, stacks))
        prompt = np.zeros((args.batch, 1), np.int64)
        times, outs = {}, {}
        for label, fn in (("naive", generate_naive), ("fast", generate_fast)):
            t0 = time.perf_counter()
            outs[label] = fn(net, prompt, args.length, np.random.default_rng(1))
            times[label] = time.perf_counter() - t0
        same = bool(np.array_equal(outs["naive"], outs["fast"]))
        ratio = times["naive"] / times["fast"]
        print(f"{name:<16} {net.receptive_field:>5} {times['naive']:>9.2f} {times['fast']:>8.2f}"
              f" {ratio:>8.1f}x {same}")
        rows.append({"config": name, "receptive_field": net.receptive_field,
                     "naive_s": times["naive"], "fast_s": times["fast"], "speedup": ratio,
                     "identical": same, "length": args.length, "batch": args.batch})
    if args.json:
        write_json(args.json, rows, None)


if __name__ == "__main__":
    main()
