"""The fused affine coupling op against the same computation composed from generic tinygen ops,
in the same run (and PyTorch's composed version as a reference when it is installed).

    y = b * x + (1 - b) * (x * exp(s) + t),   logdet = sum((1 - b) * s) per sample

Cases (float32, shapes of the realnvp model and of a fully connected flow):
  * checker28  x (64, 1, 28, 28), checkerboard mask (1, 28, 28)
  * channel14  x (64, 4, 14, 14), channel mask (4, 1, 1)
  * fc784      x (256, 784), random half mask (784,)
For each: the forward alone (grad mode off) and forward + backward (gradients of x, s, t from
given cotangents of y and logdet, through ``tinygen.grad``). Prints median milliseconds and the
speed-up composed / fused (goal >= 2x for forward + backward).

    python benchmarks/bench_coupling.py [--repeat N] [--json PATH] [--keep-openblas-env]

Like the other benchmarks it unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for its own process
(no matmul is involved here, so this changes nothing measurable) and says so.
"""
from __future__ import annotations

import os
import platform
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import bench_arguments, timeit, torch_or_nothing, write_json  # noqa: E402


def cases():
    rng = np.random.default_rng(0)
    i, j = np.mgrid[0:28, 0:28]
    half = np.zeros(784, np.float32)
    half[rng.permutation(784)[:392]] = 1
    channel = np.zeros((4, 1, 1), np.float32)
    channel[:2] = 1
    return {"checker28": ((64, 1, 28, 28), ((i + j) % 2 == 0).astype(np.float32)[None]),
            "channel14": ((64, 4, 14, 14), channel),
            "fc784": ((256, 784), half)}


def arrays(shape, seed):
    rng = np.random.default_rng(seed)
    x, t, gy = (rng.standard_normal(shape, dtype=np.float32) for _ in range(3))
    s = 0.5 * rng.standard_normal(shape, dtype=np.float32)
    return x, s, t, gy, rng.standard_normal(shape[0], dtype=np.float32)


def bench_tinygen(repeat):
    import tinygen
    from tinygen import functional as F

    res = {}
    for name, (shape, mask) in cases().items():
        x, s, t, gy, gl = arrays(shape, 1)
        ts = [tinygen.tensor(a, requires_grad=True) for a in (x, s, t)]
        gy_t, gl_t = tinygen.tensor(gy), tinygen.tensor(gl)
        for label, op in (("fused", F.affine_coupling), ("composed", F.affine_coupling_composed)):
            def forward(op=op):
                with tinygen.no_grad():
                    op(*ts, mask)

            def forward_backward(op=op):
                y, ld = op(*ts, mask)
                tinygen.grad([y, ld], ts, grad_outputs=[gy_t, gl_t])
            res[(name, "forward", label)] = timeit(forward, repeat)
            res[(name, "fwd+bwd", label)] = timeit(forward_backward, repeat)
    return res


def bench_torch(repeat):
    import torch
    torch.set_num_threads(1)   # single-threaded like the fused kernel (and elementwise work)
    res = {}
    for name, (shape, mask) in cases().items():
        x, s, t, gy, gl = arrays(shape, 1)
        ts = [torch.tensor(a, requires_grad=True) for a in (x, s, t)]
        b = torch.tensor(np.broadcast_to(mask, shape[1:]).copy())
        gy_t, gl_t = torch.tensor(gy), torch.tensor(gl)

        def op():
            xx, ss, tt = ts
            y = b * xx + (1 - b) * (xx * ss.exp() + tt)
            return y, ((1 - b) * ss).reshape(shape[0], -1).sum(1)

        def forward():
            with torch.no_grad():
                op()

        def forward_backward():
            y, ld = op()
            torch.autograd.grad([y, ld], ts, grad_outputs=[gy_t, gl_t])
        res[(name, "forward")] = timeit(forward, repeat)
        res[(name, "fwd+bwd")] = timeit(forward_backward, repeat)
    return res, torch.__version__


def main():
    args = bench_arguments(__doc__, repeat=200, json_default="benchmarks/out/coupling.json")
    ours = bench_tinygen(args.repeat)
    theirs, torch_version = torch_or_nothing(bench_torch, args.repeat)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, torch {torch_version}")
    print(f"{'case':<11}{'pass':<9}{'fused ms':>10}{'composed ms':>13}{'speed-up':>10}"
          f"{'torch ms':>10}{'fused/torch':>13}")
    rows = []
    for name in cases():
        for kind in ("forward", "fwd+bwd"):
            fused, composed = ours[(name, kind, "fused")], ours[(name, kind, "composed")]
            tms = theirs.get((name, kind))
            rows.append({"case": name, "pass": kind, "fused_ms": fused, "composed_ms": composed,
                         "speedup": composed / fused, "torch_ms": tms,
                         "fused_over_torch": fused / tms if tms else None})
            print(f"{name:<11}{kind:<9}{fused:>10.3f}{composed:>13.3f}{composed / fused:>9.2f}x"
                  f"{(tms if tms else float('nan')):>10.3f}"
                  f"{(fused / tms if tms else float('nan')):>13.2f}")
    write_json(args.json, rows, torch_version)


if __name__ == "__main__":
    main()
