"""Engine overhead against PyTorch (CPU), in the same run.

Measures forward + backward of
  * a small elementwise op:  (a * b).sum().backward()        a, b: (32, 32) float32
  * a small matmul:          (a @ b).sum().backward()        a: (32, 64), b: (64, 32)
  * one training step of a small MLP (784-128-10, ReLU, batch 64, cross-entropy, Adam):
    zero_grad, forward, loss, backward, step
and prints milliseconds (median of many repeats after warm-up) and the ratio tinygen / PyTorch
(ratio <= 1.0 means tinygen is at least as fast).

    python benchmarks/bench_engine.py [--repeat N] [--json PATH] [--keep-openblas-env]

By default the benchmark unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE together for its own
process (they make NumPy's OpenBLAS pick a slow kernel on these CPUs) and says so; tests and CI
keep them. Both libraries use the machine's cores (PyTorch's intra-op threads = os.cpu_count()).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import reexec_without_openblas_env, timeit  # noqa: E402

def bench_tinygen(repeat):
    import numpy as np
    import tinygen
    from tinygen import functional as F, nn

    rng = np.random.default_rng(0)
    res = {}
    a = tinygen.tensor(rng.standard_normal((32, 32), dtype=np.float32), requires_grad=True)
    b = tinygen.tensor(rng.standard_normal((32, 32), dtype=np.float32), requires_grad=True)

    def elementwise():
        a.grad = b.grad = None
        (a * b).sum().backward()
    res["elementwise_fwd_bwd"] = timeit(elementwise, repeat)

    a2 = tinygen.tensor(rng.standard_normal((32, 64), dtype=np.float32), requires_grad=True)
    b2 = tinygen.tensor(rng.standard_normal((64, 32), dtype=np.float32), requires_grad=True)

    def matmul():
        a2.grad = b2.grad = None
        (a2 @ b2).sum().backward()
    res["matmul_fwd_bwd"] = timeit(matmul, repeat)

    tinygen.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = tinygen.optim.Adam(model.parameters(), lr=1e-3)
    x = tinygen.tensor(rng.random((64, 784), dtype=np.float32))
    y = tinygen.tensor(rng.integers(0, 10, 64))

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    res["mlp_train_step"] = timeit(step, repeat)
    return res


def bench_torch(repeat):
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    g = torch.Generator().manual_seed(0)
    res = {}
    a = torch.randn(32, 32, generator=g, requires_grad=True)
    b = torch.randn(32, 32, generator=g, requires_grad=True)

    def elementwise():
        a.grad = b.grad = None
        (a * b).sum().backward()
    res["elementwise_fwd_bwd"] = timeit(elementwise, repeat)

    a2 = torch.randn(32, 64, generator=g, requires_grad=True)
    b2 = torch.randn(64, 32, generator=g, requires_grad=True)

    def matmul():
        a2.grad = b2.grad = None
        (a2 @ b2).sum().backward()
    res["matmul_fwd_bwd"] = timeit(matmul, repeat)

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(64, 784, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    res["mlp_train_step"] = timeit(step, repeat)
    return res, torch.__version__


def main():
    reexec_without_openblas_env()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--json", default="benchmarks/out/engine.json")
    parser.add_argument("--keep-openblas-env", action="store_true",
                        help="keep OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE as the environment sets them")
    args = parser.parse_args()
    if os.environ.get("TINYGEN_BENCH_UNSET_OPENBLAS"):
        print("note: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for this process")

    ours = bench_tinygen(args.repeat)
    try:
        theirs, torch_version = bench_torch(args.repeat)
    except ImportError:
        theirs, torch_version = {}, None
        print("PyTorch is not installed: tinygen timings only")

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, torch {torch_version}")
    print(f"{'case':<22}{'tinygen ms':>12}{'torch ms':>12}{'ratio':>8}")
    rows = []
    for name, ms in ours.items():
        t = theirs.get(name)
        ratio = ms / t if t else None
        rows.append({"case": name, "tinygen_ms": ms, "torch_ms": t, "ratio": ratio})
        print(f"{name:<22}{ms:>12.4f}{(t if t else float('nan')):>12.4f}"
              f"{(ratio if ratio else float('nan')):>8.2f}")
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "torch": torch_version, "cores": os.cpu_count(),
                       "openblas_env_unset": bool(os.environ.get("TINYGEN_BENCH_UNSET_OPENBLAS"))},
                      f, indent=2)


if __name__ == "__main__":
    main()
