"""LSTM sequence forward + backward: the fused kernels against PyTorch (CPU) and against the same
LSTM composed from generic tinygen ops, in the same run.

For each size (T steps, batch N, input I, hidden H), one single-layer LSTM over the whole
sequence, float32, then the backward of sum(output * u) + sum(h_T) + sum(c_T) into the input,
the initial state and all four parameters:

  * ``fused``    tinygen.functional.lstm: one forward kernel call (input projections hoisted as
                 one GEMM) and one backward-through-time kernel call;
  * ``composed`` the same equations written step by step with generic tinygen ops (linear,
                 slicing, sigmoid, tanh, mul, add, stack): what an engine without the fused op
                 would run;
  * ``torch``    torch.nn.LSTM (functional_call with the same weights).

The three variants are timed interleaved (one call of each per round, the order rotating), so
that a machine whose load changes during the run affects them alike; the table shows medians
in milliseconds and the ratios fused / torch (goal <= 1.0) and composed / fused (goal >= 2).

    python benchmarks/bench_lstm.py [--repeat N] [--json PATH] [--keep-openblas-env]
                                    [--baseline OLD_LSTM_KERNELS.py]

``--baseline`` adds an earlier version of kernels/cpu/lstm.py to the interleaved rounds (a
"before" line under each size). The load average is printed with the table.

By default the benchmark unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE together for its own
process (see benchmarks/_common.py) and says so. Both libraries run with the same number of
threads: ``OPENBLAS_NUM_THREADS`` if set, else 1 (``torch.set_num_threads`` the same, and tinygen's
kernel threads, see kernels/cpu/_threads.py). One thread
is the default because on the shared 2-core development machine a 2-thread OpenBLAS collapsed
under load from other processes: 64 GEMMs (32, 256) x (256, 1024) took 2.3 s with 2 threads and
0.03 s with 1 (measured side by side, NumPy and Numba alike).
"""
from __future__ import annotations

import os
import platform
import sys
import time

THREADS = int(os.environ.setdefault("OPENBLAS_NUM_THREADS", "1"))   # before NumPy loads

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (bench_arguments, interleaved, load_average, load_baseline,  # noqa: E402
                     using_kernels, write_json)

SIZES = [  # (T, N, I, H)
    (32, 16, 32, 64),
    (64, 32, 32, 256),      # the char-rnn default layer (embedding 32, hidden 256)
    (100, 16, 128, 128),
    (50, 64, 256, 256),
    (50, 32, 64, 256),      # a char-rnn-sized layer (64 -> 256, batch 32, 50 steps)
]


def make_inputs(t, n, i, h, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    b = 1 / np.sqrt(h)
    f32 = np.float32
    return {"x": rng.standard_normal((t, n, i)).astype(f32),
            "h0": rng.standard_normal((n, h)).astype(f32) * 0.5,
            "c0": rng.standard_normal((n, h)).astype(f32) * 0.5,
            "w_ih": rng.uniform(-b, b, (4 * h, i)).astype(f32),
            "w_hh": rng.uniform(-b, b, (4 * h, h)).astype(f32),
            "b_ih": rng.uniform(-b, b, 4 * h).astype(f32),
            "b_hh": rng.uniform(-b, b, 4 * h).astype(f32),
            "u": rng.standard_normal((t, n, h)).astype(f32)}


def composed_lstm(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """The LSTM from generic ops, one step at a time (no fused kernel)."""
    from tinygen import functional as F
    hid = h.shape[1]
    outs = []
    for t in range(x.shape[0]):
        z = F.linear(x[t], w_ih, b_ih) + F.linear(h, w_hh, b_hh)     # (N, 4H)
        i, f = z[:, :hid].sigmoid(), z[:, hid:2 * hid].sigmoid()
        g, o = z[:, 2 * hid:3 * hid].tanh(), z[:, 3 * hid:].sigmoid()
        c = f * c + i * g
        h = o * c.tanh()
        outs.append(h)
    return F.stack(outs), h, c


def tinygen_runner(arrs, composed):
    import tinygen
    from tinygen import functional as F
    names = ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"]
    ts = [tinygen.tensor(arrs[k], requires_grad=True) for k in names]
    u = tinygen.tensor(arrs["u"])

    def run():
        for t in ts:
            t.grad = None
        if composed:
            out, hn, cn = composed_lstm(*ts)
        else:
            out, (hn, cn) = F.lstm(ts[0], (ts[1], ts[2]), *ts[3:])
        ((out * u).sum() + hn.sum() + cn.sum()).backward()
        return [t.grad.numpy() for t in ts]
    return run


def torch_runner(arrs):
    import torch
    t_, n, i = arrs["x"].shape
    h = arrs["h0"].shape[1]
    mod = torch.nn.LSTM(i, h)
    names = ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"]
    ts = {k: torch.tensor(arrs[k], requires_grad=True) for k in names}
    u = torch.tensor(arrs["u"])

    def run():
        for t in ts.values():
            t.grad = None
        params = {"weight_ih_l0": ts["w_ih"], "weight_hh_l0": ts["w_hh"],
                  "bias_ih_l0": ts["b_ih"], "bias_hh_l0": ts["b_hh"]}
        out, (hn, cn) = torch.func.functional_call(
            mod, params, (ts["x"], (ts["h0"][None], ts["c0"][None])))
        ((out * u).sum() + hn.sum() + cn.sum()).backward()
        return [ts[k].grad.numpy() for k in names]
    return run, torch.__version__


def main():
    import numpy as np
    args = bench_arguments(__doc__, repeat=15, json_default="benchmarks/out/lstm.json",
                           baseline=True)
    baseline = load_baseline(args.baseline, "lstm") if args.baseline else None
    try:
        import torch
        torch.set_num_threads(THREADS)
    except ImportError:
        torch = None
        print("PyTorch is not installed: tinygen timings only")
    print(f"LSTM forward+backward, float32, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, {THREADS} BLAS/torch thread(s); median of {args.repeat} "
          f"interleaved rounds (ms{', CPU time' if args.cpu_time else ''}); load average "
          f"{load_average()}")
    head = f"{'T':>4} {'N':>4} {'I':>4} {'H':>4} | {'fused':>9} {'composed':>9} {'torch':>9} |" \
           f" {'fused/torch':>11} {'composed/fused':>14}"
    print(head)
    print("-" * len(head))
    rows, version = [], None
    for (t, n, i, h) in SIZES:
        arrs = make_inputs(t, n, i, h)
        runners = {"fused": tinygen_runner(arrs, False), "composed": tinygen_runner(arrs, True)}
        if baseline is not None:
            runners["before"] = using_kernels("lstm", baseline, runners["fused"])
        if torch is not None:
            runners["torch"], version = torch_runner(arrs)
        # the three compute the same gradients (checked once, loosely: float32)
        ref = runners["fused"]()
        for k, r in runners.items():
            for a, b in zip(r(), ref):
                if not np.allclose(a, b, rtol=1e-3, atol=1e-3 * (1 + np.abs(b).max())):
                    raise SystemExit(f"{k} gradients disagree with the fused LSTM at {t, n, i, h}")
        ms = interleaved(runners, args.repeat,
                         clock=time.process_time if args.cpu_time else None)
        if baseline is not None:
            print(f"{'':19}before (--baseline): {ms['before']:9.2f} ms, fused/before "
                  f"{ms['fused'] / ms['before']:.2f}")
        row = {"T": t, "N": n, "I": i, "H": h, **{f"{k}_ms": v for k, v in ms.items()},
               "composed_over_fused": ms["composed"] / ms["fused"]}
        if "torch" in ms:
            row["fused_over_torch"] = ms["fused"] / ms["torch"]
        rows.append(row)
        tr = f"{ms['torch']:9.2f}" if "torch" in ms else f"{'-':>9}"
        ratio = f"{row['fused_over_torch']:11.2f}" if "torch" in ms else f"{'-':>11}"
        print(f"{t:4d} {n:4d} {i:4d} {h:4d} | {ms['fused']:9.2f} {ms['composed']:9.2f} {tr} | "
              f"{ratio} {row['composed_over_fused']:14.2f}", flush=True)
    print(f"load average at the end: {load_average()}")
    write_json(args.json, [{**r, "threads": THREADS} for r in rows], version)


if __name__ == "__main__":
    main()
