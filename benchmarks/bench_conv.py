"""Convolution kernels against PyTorch (CPU), in the same run.

For each layer of the convolutional autoencoder of Fleuret's lecture on autoencoders (d=8,
batch 100, float32) -- five convolutions and five transposed convolutions -- it times the forward
and the forward+backward (input, weight and bias gradients) of tinygen and of PyTorch and prints
milliseconds, GFLOP/s, the fraction of the machine's float32 matmul peak (a 2048x2048 NumPy matmul
measured in the same run) and the ratio tinygen / PyTorch (<= 1.0: tinygen at least as fast).
With ``--step`` it also times one full training step of the autoencoder (forward, MSE, backward,
Adam) in both libraries and reports the peak memory of each (measured in separate child
processes, as the peak resident set size).

    python benchmarks/bench_conv.py [--repeat N] [--batch 100] [--step] [--json PATH]
                                    [--baseline OLD_CONV_KERNELS.py]

Every timing alternates the libraries call by call (medians of interleaved rounds), and the load
average is printed with the table. ``--baseline`` adds an earlier version of
kernels/cpu/conv.py to the rounds (per-layer "before" columns). With ``--step`` the step is also
timed with both libraries in this process, steps alternating.

OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset for this process (see bench_engine.py).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (interleaved, load_average, load_baseline,  # noqa: E402
                     reexec_without_openblas_env, threads_from_env, using_kernels)

# (kind, C_in, C_out, kernel, stride, input spatial size)
LAYERS = [
    ("conv", 1, 32, 5, 1, 28),
    ("conv", 32, 32, 5, 1, 24),
    ("conv", 32, 32, 4, 2, 20),
    ("conv", 32, 32, 3, 2, 9),
    ("conv", 32, 8, 4, 1, 4),
    ("convT", 8, 32, 4, 1, 1),
    ("convT", 32, 32, 3, 2, 4),
    ("convT", 32, 32, 4, 2, 9),
    ("convT", 32, 32, 5, 1, 20),
    ("convT", 32, 1, 5, 1, 24),
]


def layer_flops(kind, cin, cout, k, s, size, batch):
    """Multiply-adds x 2 of the forward pass."""
    if kind == "conv":
        out = (size - k) // s + 1
        return 2.0 * batch * cout * out * out * cin * k * k
    return 2.0 * batch * cin * size * size * cout * k * k  # every input pixel spreads a kernel


def matmul_peak_gflops(repeat=10, clock=None):
    """GFLOP/s of a 2048^2 float32 NumPy matmul (median; ``clock`` as in ``interleaved``: with
    process_time, the CPU time of all threads, comparable with --cpu-time layer rates)."""
    import numpy as np
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    b = a.copy()
    ms = interleaved({"matmul": lambda: a @ b}, repeat, warmup=2, clock=clock)["matmul"]
    return 2 * 2048 ** 3 / (ms * 1e-3) / 1e9


def bench_layers(batch, repeat, baseline=None, clock=None):
    import numpy as np
    import torch
    import tinygen
    from tinygen import functional as F

    torch.set_num_threads(threads_from_env())
    rng = np.random.default_rng(0)
    rows = []
    for kind, cin, cout, k, s, size in LAYERS:
        x = rng.standard_normal((batch, cin, size, size), dtype=np.float32)
        wshape = (cout, cin, k, k) if kind == "conv" else (cin, cout, k, k)
        w = (rng.standard_normal(wshape, dtype=np.float32) * 0.1).astype(np.float32)
        b = np.zeros(cout, np.float32)
        tx = tinygen.tensor(x, requires_grad=True)
        tw = tinygen.tensor(w, requires_grad=True)
        tb = tinygen.tensor(b, requires_grad=True)
        px = torch.tensor(x, requires_grad=True)
        pw = torch.tensor(w, requires_grad=True)
        pb = torch.tensor(b, requires_grad=True)
        tg_op = (lambda: F.conv2d(tx, tw, tb, stride=s)) if kind == "conv" else \
            (lambda: F.conv_transpose2d(tx, tw, tb, stride=s))
        pt_op = (lambda: torch.nn.functional.conv2d(px, pw, pb, stride=s)) if kind == "conv" \
            else (lambda: torch.nn.functional.conv_transpose2d(px, pw, pb, stride=s))
        gy = tg_op().array
        tgy, pgy = tinygen.tensor(np.ones_like(gy)), torch.ones(gy.shape)

        def tg_fb():
            tx.grad = tw.grad = tb.grad = None
            tg_op().backward(tgy)

        def pt_fb():
            px.grad = pw.grad = pb.grad = None
            pt_op().backward(pgy)

        def tg_f():
            with tinygen.no_grad():
                tg_op()

        def pt_f():
            with torch.no_grad():
                pt_op()

        # tinygen and PyTorch alternate call by call (a changing machine load hits both alike)
        f_runs, fb_runs = {"tinygen": tg_f, "torch": pt_f}, {"tinygen": tg_fb, "torch": pt_fb}
        if baseline is not None:
            f_runs["baseline"], fb_runs["baseline"] = (using_kernels("conv", baseline, tg_f),
                                                  using_kernels("conv", baseline, tg_fb))
        fwd = interleaved(f_runs, repeat, warmup=3, clock=clock)
        fb = interleaved(fb_runs, repeat, warmup=3, clock=clock)
        t_f, p_f, t_fb, p_fb = fwd["tinygen"], fwd["torch"], fb["tinygen"], fb["torch"]
        flops = layer_flops(kind, cin, cout, k, s, size, batch)
        out_size = gy.shape[-1]
        rows.append({"layer": f"{kind} {cin}->{cout} k{k} s{s} {size}->{out_size}",
                     "gflop_fwd": flops / 1e9,
                     "tinygen_fwd_ms": t_f, "torch_fwd_ms": p_f,
                     "tinygen_fwdbwd_ms": t_fb, "torch_fwdbwd_ms": p_fb,
                     **({"baseline_fwd_ms": fwd["baseline"], "baseline_fwdbwd_ms": fb["baseline"]}
                        if baseline is not None else {})})
    return rows


_BUILD_STEP = r"""
def build_step(lib, batch):
  import os
  import numpy as np
  rng = np.random.default_rng(0)
  x_np = rng.random((batch, 1, 28, 28), dtype=np.float32)
  if lib == "torch":
      import torch
      value = os.environ.get("OPENBLAS_NUM_THREADS", "").strip()
      torch.set_num_threads(int(value) if value.isdigit() else (os.cpu_count() or 1))
      nn, F, optim, tensor = torch.nn, torch.nn.functional, torch.optim, torch.tensor
  else:
      import tinygen as torch_like
      from tinygen import nn, functional as F, optim
      tensor = torch_like.tensor
  enc = nn.Sequential(nn.Conv2d(1, 32, 5), nn.ReLU(), nn.Conv2d(32, 32, 5), nn.ReLU(),
                      nn.Conv2d(32, 32, 4, stride=2), nn.ReLU(), nn.Conv2d(32, 32, 3, stride=2),
                      nn.ReLU(), nn.Conv2d(32, 8, 4))
  dec = nn.Sequential(nn.ConvTranspose2d(8, 32, 4), nn.ReLU(),
                      nn.ConvTranspose2d(32, 32, 3, stride=2), nn.ReLU(),
                      nn.ConvTranspose2d(32, 32, 4, stride=2), nn.ReLU(),
                      nn.ConvTranspose2d(32, 32, 5), nn.ReLU(), nn.ConvTranspose2d(32, 1, 5))
  params = list(enc.parameters()) + list(dec.parameters())
  opt = optim.Adam(params, lr=1e-3)
  x = tensor(x_np)
  def step():
      opt.zero_grad()
      loss = F.mse_loss(dec(enc(x)), x)
      loss.backward()
      opt.step()
  return step
"""

_STEP_CODE = _BUILD_STEP + r"""
import sys, time, statistics
lib, batch, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
step = build_step(lib, batch)
for _ in range(3):
    step()
times = []
for _ in range(repeat):
    t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
# peak resident memory of this process: VmHWM (ru_maxrss would include the parent's memory at
# fork time, which Linux keeps across execve)
with open("/proc/self/status") as f:
    hwm_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print(statistics.median(times) * 1e3, hwm_kb / 1024)
"""


def bench_step_interleaved(batch, repeat):
    """Median step milliseconds of both libraries in this process, steps alternating."""
    scope = {}
    exec(_BUILD_STEP, scope)
    steps = {lib: scope["build_step"](lib, batch) for lib in ("tinygen", "torch")}
    return interleaved(steps, repeat, warmup=3)


def bench_step(batch, repeat):
    out = {}
    for lib in ("tinygen", "torch"):
        res = subprocess.run([sys.executable, "-c", _STEP_CODE, lib, str(batch), str(repeat)],
                             capture_output=True, text=True, env=os.environ.copy())
        if res.returncode:
            raise RuntimeError(f"step benchmark for {lib} failed:\n{res.stderr}")
        ms, rss = (float(v) for v in res.stdout.split())
        out[lib] = {"step_ms": ms, "peak_rss_mb": rss}
    return out


def main():
    reexec_without_openblas_env()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--step", action="store_true", help="also time a full training step")
    parser.add_argument("--no-layers", action="store_true", help="skip the per-layer table")
    parser.add_argument("--json", default="benchmarks/out/conv.json")
    parser.add_argument("--keep-openblas-env", action="store_true")
    parser.add_argument("--cpu-time", action="store_true",
                        help="per-layer CPU time of the process instead of wall time (run with "
                             "OPENBLAS_NUM_THREADS=1: the work done, robust to other load)")
    parser.add_argument("--baseline", default="",
                        help="a conv kernel module file to time as 'before', interleaved")
    args = parser.parse_args()
    import torch
    if os.environ.get("TINYGEN_BENCH_UNSET_OPENBLAS"):
        print("note: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for this process")
    import time
    peak = matmul_peak_gflops(clock=time.process_time if args.cpu_time else None)
    print(f"load average: {load_average()}")
    torch.set_num_threads(threads_from_env())
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); float32 matmul peak {peak:.0f} GFLOP/s "
          f"(numpy 2048^2{', CPU time' if args.cpu_time else ''})")
    result = {"peak_gflops": peak, "batch": args.batch, "torch": torch.__version__}
    if not args.no_layers:
        baseline = load_baseline(args.baseline, "conv") if args.baseline else None
        rows = bench_layers(args.batch, args.repeat, baseline,
                            time.process_time if args.cpu_time else None)
        if args.cpu_time:
            print("per-layer times below are CPU times (all threads of this process)")
        hdr = (f"{'layer':<32}{'fwd ms':>8}{'torch':>8}{'ratio':>7}{'f+b ms':>9}{'torch':>8}"
               f"{'ratio':>7}{'GFLOP/s':>9}{'%peak':>7}")
        print(hdr)
        for r in rows:
            gfs = 3 * r["gflop_fwd"] / (r["tinygen_fwdbwd_ms"] * 1e-3)
            r["tinygen_fwdbwd_gflops"] = gfs
            r["tinygen_fwdbwd_peak_frac"] = gfs / peak
            r["torch_fwdbwd_peak_frac"] = 3 * r["gflop_fwd"] / (r["torch_fwdbwd_ms"] * 1e-3) / peak
            print(f"{r['layer']:<32}{r['tinygen_fwd_ms']:>8.2f}{r['torch_fwd_ms']:>8.2f}"
                  f"{r['tinygen_fwd_ms'] / r['torch_fwd_ms']:>7.2f}"
                  f"{r['tinygen_fwdbwd_ms']:>9.2f}{r['torch_fwdbwd_ms']:>8.2f}"
                  f"{r['tinygen_fwdbwd_ms'] / r['torch_fwdbwd_ms']:>7.2f}{gfs:>9.1f}"
                  f"{100 * gfs / peak:>6.0f}%" + (
                      f"   before: fwd {r['baseline_fwd_ms']:.2f} f+b {r['baseline_fwdbwd_ms']:.2f}"
                      f" (after/before {r['tinygen_fwdbwd_ms'] / r['baseline_fwdbwd_ms']:.2f})"
                      if "baseline_fwdbwd_ms" in r else ""))
        result["layers"] = rows
    if args.step:
        step = bench_step(args.batch, args.repeat)
        t, p = step["tinygen"], step["torch"]
        print(f"training step (batch {args.batch}): tinygen {t['step_ms']:.1f} ms, torch "
              f"{p['step_ms']:.1f} ms, ratio {t['step_ms'] / p['step_ms']:.2f}; peak RSS tinygen "
              f"{t['peak_rss_mb']:.0f} MB, torch {p['peak_rss_mb']:.0f} MB, ratio "
              f"{t['peak_rss_mb'] / p['peak_rss_mb']:.2f}")
        result["step"] = step
        both = bench_step_interleaved(args.batch, 2 * args.repeat)
        print(f"training step, both libraries in this process, steps alternating (median of "
              f"{2 * args.repeat}): tinygen {both['tinygen']:.1f} ms, torch {both['torch']:.1f} ms, "
              f"ratio {both['tinygen'] / both['torch']:.2f}")
        result["step_interleaved"] = both
    print(f"load average at the end: {load_average()}")
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
