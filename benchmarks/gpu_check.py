"""The GPU check: run on a machine with a GPU the moment one is available (``make gpu-check``).

    python benchmarks/gpu_check.py OUT_DIR [--budget-s 450] [--skip-tests] [--tiny]

In one run, under ~8 minutes on an H200:

1. benchmarks against the library kernels in the same run, timed with CUDA events after warm-up,
   the median of many calls, inputs rotated so that caches do not flatter:
   * tinygen's tiled SGEMM (and the naive rung) vs cuBLAS at 4096^3 float32 (target: >= 50%);
   * the fused coupling op (forward + backward) vs the same formulas composed in PyTorch;
   * the block reductions (sum, logsumexp, softmax) vs PyTorch;
   * each conv layer of the lecture's autoencoder, the conv-AE training step and the LSTM
     sequence vs PyTorch + cuDNN (``benchmarks/bench_cuda_conv.py``);
2. the op and CUDA kernel tests on real CuPy (``TINYGEN_TEST_DEVICE=cuda``: every op of the
   harness on device "cuda", the kernel families against the CPU kernels), time-boxed;
3. compute-sanitizer (memcheck, racecheck) over one small case of every kernel, when it is on
   PATH, in the time left.

Writes ``OUT_DIR/gpu_check.json`` and ``OUT_DIR/gpu_check.md`` (the tables), and the test logs.
Needs no mlxtend and no ``../shared``: every input is generated; and no installation: without an
installed tinygen, ``tinygen.kernels`` is mapped to this checkout's ``kernels/`` by hand (the GPU
machine has no network for ``pip install``; run it with that machine's python). ``--tiny`` runs
everything at toy sizes on the CPU emulator of tests/cuda_emu when there is no GPU (to check this
script; its times measure the emulator, and the output says so).
"""
from __future__ import annotations

import argparse
import importlib.abc
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ROTATE = 3


class _KernelsFromCheckout(importlib.abc.MetaPathFinder):
    """``tinygen.kernels`` from this checkout's ``kernels/`` folder when tinygen is not installed
    (the GPU machine has no network, so no ``pip install``): the package-dir mapping of
    pyproject.toml done by hand. Submodules are found through the package's ``__path__``."""

    def find_spec(self, name, path=None, target=None):
        if name != "tinygen.kernels":
            return None
        folder = os.path.join(ROOT, "kernels")
        return importlib.util.spec_from_file_location(
            name, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder])


def use_checkout():
    """Import tinygen from this checkout, installed or not (before anything imports it)."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    if not any(isinstance(f, _KernelsFromCheckout) for f in sys.meta_path):
        sys.meta_path.insert(0, _KernelsFromCheckout())


# Runs pytest in a child process with the same import rule.
_PYTEST_CHILD = ("import sys; sys.path.insert(0, {here!r}); import gpu_check; "
                 "gpu_check.use_checkout(); import pytest; sys.exit(pytest.main(sys.argv[1:]))")


def _cupy(tiny):
    """Real CuPy with a GPU; with ``tiny`` and no GPU, the stand-in of tests/cuda_emu."""
    from tinygen.kernels.cuda import _runtime
    try:
        return _runtime.get_cupy()
    except RuntimeError:
        if not tiny:
            raise
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from cuda_emu import fake_cupy
    _runtime._cupy, _runtime._cupy_error = fake_cupy, None
    return fake_cupy


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


# -- 1. tests on the GPU ---------------------------------------------------------------------------
def _pytest(args, env, timeout, log_path):
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", _PYTEST_CHILD.format(here=HERE), "-q",
                               "-p", "no:cacheprovider", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout)
        out, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) \
            else (exc.stdout or "")
        out, rc = out + f"\n[gpu_check] stopped after {timeout} s\n", "timeout"
    with open(log_path, "w") as f:
        f.write(out)
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error|errors)",
                                                 out[-2000:])}
    return {"returncode": rc, "seconds": round(time.perf_counter() - t0, 1), "counts": counts,
            "log": os.path.basename(log_path)}


def run_tests(out_dir, timeout):
    env = dict(os.environ, TINYGEN_TEST_DEVICE="cuda", HYPOTHESIS_PROFILE="ci")
    pattern = r"test_(ops_.*|cuda_(?!emu).*|conv|lstm|coupling|losses|tensor_data)\.py$"
    files = sorted(f"tests/{f}" for f in os.listdir(os.path.join(ROOT, "tests"))
                   if re.match(pattern, f))   # the files of `make test-gpu-emu`
    return _pytest(files, env, timeout, os.path.join(out_dir, "tests_cuda.log"))


# The kernel tests compute-sanitizer runs: "forward and float32" picks one small case of every
# kernel (test_cuda_conv/test_cuda_lstm: test_every_kernel_once_forward_float32).
SANITIZED_TESTS = [f"tests/{f}" for f in ("test_cuda_kernels.py", "test_cuda_conv.py",
                                          "test_cuda_lstm.py")
                   if os.path.exists(os.path.join(ROOT, "tests", f))]


def run_compute_sanitizer(out_dir, timeout):
    tool = shutil.which("compute-sanitizer")
    if tool is None:
        return {"skipped": "compute-sanitizer is not on PATH"}
    results = {}
    env = dict(os.environ, HYPOTHESIS_PROFILE="ci")
    for check in ("memcheck", "racecheck"):
        log = os.path.join(out_dir, f"compute_sanitizer_{check}.log")
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                [tool, "--tool", check, "--error-exitcode", "99", sys.executable, "-c",
                 _PYTEST_CHILD.format(here=HERE), "-q", "-p", "no:cacheprovider", "-k",
                 "forward and float32", *SANITIZED_TESTS], cwd=ROOT, env=env,
                capture_output=True, text=True, timeout=timeout)
            text, rc = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired:
            text, rc = f"stopped after {timeout} s", "timeout"
        with open(log, "w") as f:
            f.write(text)
        summary = re.findall(r"ERROR SUMMARY: (\d+) error", text)
        results[check] = {"returncode": rc, "errors": int(summary[-1]) if summary else None,
                          "seconds": round(time.perf_counter() - t0, 1),
                          "log": os.path.basename(log)}
    return results


# -- 3. benchmarks ---------------------------------------------------------------------------------
def _timers(cp, torch):
    sys.path.insert(0, HERE)
    import bench_cuda_conv as b
    gpu_time, clock = b._gpu_timer(cp)
    torch_time = b._torch_timer(torch) if torch is not None else None
    return gpu_time, torch_time, clock


def bench_sgemm(cp, torch, size, repeat):
    """Own tiled/naive SGEMM vs cuBLAS (cupy.matmul) and torch.matmul, float32 size^3."""
    from tinygen.kernels.cuda import matmul
    gpu_time, torch_time, clock = _timers(cp, torch)
    rng = cp.random
    a = [rng.standard_normal((size, size)).astype(cp.float32) for _ in range(ROTATE)]
    b = [rng.standard_normal((size, size)).astype(cp.float32) for _ in range(ROTATE)]
    ref = cp.matmul(a[0], b[0])
    flops = 2.0 * size ** 3
    row = {"size": size, "clock": clock}
    for kernel, reps in (("library", repeat), ("tiled", repeat), ("naive", max(2, repeat // 5))):
        err = float(cp.abs(matmul.matmul(a[0], b[0], kernel) - ref).max())
        ms = gpu_time(lambda i: matmul.matmul(a[i % ROTATE], b[i % ROTATE], kernel), reps)
        row[kernel] = {"ms": ms, "tflops": flops / ms / 1e9, "max_abs_err_vs_cublas": err}
    if torch is not None:
        ta = [torch.randn(size, size, device="cuda") for _ in range(ROTATE)]
        tb = [torch.randn(size, size, device="cuda") for _ in range(ROTATE)]
        ms = torch_time(lambda i: torch.matmul(ta[i % ROTATE], tb[i % ROTATE]), repeat)
        row["torch"] = {"ms": ms, "tflops": flops / ms / 1e9,
                        "tf32": bool(torch.backends.cuda.matmul.allow_tf32)}
    row["tiled_vs_cublas"] = row["library"]["ms"] / row["tiled"]["ms"]
    return row


def bench_coupling(cp, torch, shapes, repeat):
    """Fused coupling forward + backward vs the formulas composed in PyTorch (autograd)."""
    from tinygen.kernels.cuda import coupling
    gpu_time, torch_time, clock = _timers(cp, torch)
    rows = []
    for n, d in shapes:
        rnd = cp.random
        xs = [rnd.standard_normal((n, d)).astype(cp.float32) for _ in range(ROTATE)]
        s = (0.1 * rnd.standard_normal((n, d)).astype(cp.float32))
        t = rnd.standard_normal((n, d)).astype(cp.float32)
        g = rnd.standard_normal((n, d)).astype(cp.float32)
        gl = rnd.standard_normal((n,)).astype(cp.float32)
        b = (cp.arange(d) % 2).astype(cp.float32)

        def ours(i):
            y, logdet, e = coupling.coupling_forward(xs[i % ROTATE], s, t, b)
            gx, gs, gt = coupling.coupling_backward(g, xs[i % ROTATE], e, b)
            gs += coupling.coupling_logdet_backward(gl, b, (n, d))
        row = {"shape": [n, d], "tinygen_ms": gpu_time(ours, repeat), "clock": clock}
        if torch is not None:
            txs = [torch.randn(n, d, device="cuda", requires_grad=True) for _ in range(ROTATE)]
            ts = (0.1 * torch.randn(n, d, device="cuda")).requires_grad_()
            tt = torch.randn(n, d, device="cuda", requires_grad=True)
            tg, tgl = torch.randn(n, d, device="cuda"), torch.randn(n, device="cuda")
            tb = (torch.arange(d, device="cuda") % 2).float()

            def composed(i):
                x = txs[i % ROTATE]
                y = tb * x + (1 - tb) * (x * torch.exp(ts) + tt)
                logdet = ((1 - tb) * ts).sum(1)
                torch.autograd.backward([y, logdet], [tg, tgl])
            row["torch_ms"] = torch_time(composed, repeat)
            row["ratio"] = row["tinygen_ms"] / row["torch_ms"]
        rows.append(row)
    return rows


def bench_reductions(cp, torch, shape, repeat):
    from tinygen.kernels.cuda import reduce
    gpu_time, torch_time, clock = _timers(cp, torch)
    xs = [cp.random.standard_normal(shape).astype(cp.float32) for _ in range(ROTATE)]
    rows = []
    torch_ops = {"reduce_sum": lambda x: x.sum(1), "reduce_sum_naive": lambda x: x.sum(1),
                 "logsumexp": lambda x: torch.logsumexp(x, 1),
                 "softmax": lambda x: torch.softmax(x, 1)}
    txs = [torch.randn(*shape, device="cuda") for _ in range(ROTATE)] if torch else None
    for op, fn in torch_ops.items():
        kernel = getattr(reduce, op)
        row = {"op": op, "shape": list(shape), "clock": clock,
               "tinygen_ms": gpu_time(lambda i: kernel(xs[i % ROTATE], 1), repeat)}
        if torch is not None:
            row["torch_ms"] = torch_time(lambda i: fn(txs[i % ROTATE]), repeat)
            row["ratio"] = row["tinygen_ms"] / row["torch_ms"]
        rows.append(row)
    return rows


def bench_conv_and_lstm(tiny):
    sys.path.insert(0, HERE)
    import bench_cuda_conv
    result = bench_cuda_conv.run(tiny=tiny)
    return result, bench_cuda_conv.markdown(result)


# -- report ----------------------------------------------------------------------------------------
def _f(v, digits=3):
    return "-" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def markdown(result):
    lines = [f"# GPU check ({result['when']})", "",
             f"Device: {result['device']}; CuPy {result['cupy']}; PyTorch {result['torch']}; "
             f"total {result['seconds']:.0f} s.", ""]
    if result.get("emulated"):
        lines += ["**No GPU ran: the CPU emulator of tests/cuda_emu stood in (--tiny); the "
                  "times below measure the emulator.**", ""]
    tests = result.get("tests")
    if tests:
        lines += ["| tests on device cuda | passed | failed | skipped | seconds | return code |",
                  "|---|---|---|---|---|---|",
                  f"| ops + kernel families | {tests['counts'].get('passed', 0)} | "
                  f"{tests['counts'].get('failed', 0)} | {tests['counts'].get('skipped', 0)} | "
                  f"{tests['seconds']} | {tests['returncode']} |", ""]
    san = result.get("compute_sanitizer")
    if san:
        if "skipped" in san:
            lines += [f"compute-sanitizer: {san['skipped']}", ""]
        else:
            lines += ["| compute-sanitizer | errors | return code |", "|---|---|---|"]
            lines += [f"| {k} | {_f(v['errors'])} | {v['returncode']} |" for k, v in san.items()]
            lines.append("")
    g = result.get("sgemm")
    if g:
        lines += [f"| SGEMM {g['size']}^3 float32 | ms | TFLOP/s |", "|---|---|---|"]
        for k in ("library", "tiled", "naive", "torch"):
            if k in g:
                name = {"library": "cuBLAS (cupy.matmul)", "tiled": "tinygen tiled",
                        "naive": "tinygen naive", "torch": "torch.matmul"}[k]
                lines.append(f"| {name} | {_f(g[k]['ms'])} | {_f(g[k]['tflops'], 2)} |")
        lines += ["", f"Own tiled SGEMM reaches {100 * g['tiled_vs_cublas']:.0f}% of cuBLAS "
                  "(target >= 50%).", ""]
    if result.get("coupling"):
        lines += ["| coupling fwd+bwd (N, D) | fused ms | composed torch ms | ratio |",
                  "|---|---|---|---|"]
        lines += [f"| {tuple(r['shape'])} | {_f(r['tinygen_ms'])} | {_f(r.get('torch_ms'))} | "
                  f"{_f(r.get('ratio'))} |" for r in result["coupling"]]
        lines.append("")
    if result.get("reductions"):
        lines += ["| reduction over axis 1 | shape | tinygen ms | torch ms | ratio |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['op']} | {tuple(r['shape'])} | {_f(r['tinygen_ms'])} | "
                  f"{_f(r.get('torch_ms'))} | {_f(r.get('ratio'))} |"
                  for r in result["reductions"]]
        lines.append("")
    if result.get("conv_lstm_markdown"):
        lines += [result["conv_lstm_markdown"]]
    for name, err in result.get("errors", {}).items():
        lines += [f"**{name} failed:** `{err}`", ""]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="time for the whole run; the tests get what the benchmarks leave")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--tiny", action="store_true",
                        help="toy sizes; the CPU emulator stands in when there is no GPU")
    args = parser.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    t0 = time.perf_counter()
    use_checkout()
    cp = _cupy(args.tiny)
    torch = _torch_cuda()
    emulated = bool(getattr(cp, "EMULATED", False))
    if emulated:
        device = "CPU emulator (no GPU)"
    else:
        device = cp.cuda.runtime.getDeviceProperties(0)["name"]
        device = device.decode() if isinstance(device, bytes) else str(device)
    result = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": device,
              "emulated": emulated, "cupy": getattr(cp, "__version__", "?"),
              "torch": None if torch is None else
              f"{torch.__version__} (cuDNN {torch.backends.cudnn.version()})",
              "python": platform.python_version(), "errors": {}}

    def step(name, fn):
        try:
            return fn()
        except Exception as exc:  # one failing part must not lose the others' numbers
            result["errors"][name] = f"{type(exc).__name__}: {exc}"[:500]
            return None

    sizes = dict(sgemm=(256, 3), coupling=[(8, 64)], reductions=(16, 300), repeat=3) \
        if args.tiny else dict(sgemm=(4096, 20), coupling=[(256, 784), (4096, 3072)],
                               reductions=(4096, 4096), repeat=50)
    result["sgemm"] = step("sgemm", lambda: bench_sgemm(cp, torch, *sizes["sgemm"]))
    result["coupling"] = step("coupling", lambda: bench_coupling(cp, torch, sizes["coupling"],
                                                                 sizes["repeat"]))
    result["reductions"] = step("reductions", lambda: bench_reductions(
        cp, torch, sizes["reductions"], sizes["repeat"]))
    conv = step("conv_lstm", lambda: bench_conv_and_lstm(args.tiny))
    if conv:
        result["conv_lstm"], result["conv_lstm_markdown"] = conv
    if not args.skip_tests and not emulated:
        # the tests first (all but two minutes of what is left), then compute-sanitizer
        left = args.budget_s - (time.perf_counter() - t0)
        result["tests"] = step("tests", lambda: run_tests(args.out_dir,
                                                           timeout=max(60, left - 120)))
        left = args.budget_s - (time.perf_counter() - t0)
        result["compute_sanitizer"] = step("compute_sanitizer", lambda: run_compute_sanitizer(
            args.out_dir, timeout=max(30, left / 2)))
    result["seconds"] = time.perf_counter() - t0
    table = markdown(result)
    with open(os.path.join(args.out_dir, "gpu_check.json"), "w") as f:
        json.dump(result, f, indent=2, default=lambda o: None if isinstance(o, float) and
                  math.isnan(o) else str(o))
    with open(os.path.join(args.out_dir, "gpu_check.md"), "w") as f:
        f.write(table)
    print(table)
    return 0 if not result["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
