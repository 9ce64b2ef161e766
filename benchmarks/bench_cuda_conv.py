"""CUDA convolution and LSTM kernels against PyTorch + cuDNN, on the GPU, in the same run.

Entries (importable, for ``benchmarks/gpu_check.py``; each returns JSON-ready dicts):

* :func:`conv_layers`   each convolution of the lecture's convolutional autoencoder (Fleuret's
  lecture on autoencoders: five convolutions, five transposed convolutions, d = 8, C = 32,
  batch 100, float32): forward, and forward + backward (input, weight and bias gradients);
* :func:`conv_ae_step`  one whole training step of that autoencoder (forward, MSE, backward, Adam);
* :func:`lstm_sequences` one LSTM layer over a sequence, forward + backward through time, against
  ``torch.nn.LSTM`` (cuDNN);
* :func:`run` all three, :func:`markdown` the table of a :func:`run` result.

    python benchmarks/bench_cuda_conv.py [--tiny] [--repeat N] [--json PATH] [--markdown PATH]

Timing as in DESIGN.md: CUDA events around each call after warm-up, the median of ``repeat``
calls, inputs rotated over :data:`ROTATE` copies so that the caches do not flatter. Ratios are
tinygen / PyTorch (<= 1.5 is the issue's target for the conv-AE step and the LSTM).

``--tiny`` shrinks every size so that the whole file runs in seconds under the CPU emulator of
``tests/cuda_emu`` (``TINYGEN_TEST_DEVICE=cuda-emu``): there the times measure the emulator, not a
GPU, and PyTorch columns are empty unless PyTorch sees a GPU. The output says which.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

ROTATE = 4   # distinct input copies cycled through by the timed calls

# (kind, C_in, C_out, kernel, stride, input size) of the conv autoencoder with C channels, code d
def ae_layers(c=32, d=8):
    return [("conv", 1, c, 5, 1, 28), ("conv", c, c, 5, 1, 24), ("conv", c, c, 4, 2, 20),
            ("conv", c, c, 3, 2, 9), ("conv", c, d, 4, 1, 4),
            ("convT", d, c, 4, 1, 1), ("convT", c, c, 3, 2, 4), ("convT", c, c, 4, 2, 9),
            ("convT", c, c, 5, 1, 20), ("convT", c, 1, 5, 1, 24)]


LSTM_SIZES = [  # (T, N, I, H): those of benchmarks/bench_lstm.py, then larger H and N
    (32, 16, 32, 64),
    (64, 32, 32, 256),      # the char-rnn default layer (embedding 32, hidden 256)
    (100, 16, 128, 128),
    (50, 64, 256, 256),
    (32, 32, 256, 512),     # where the whole-sequence and per-step recurrences may cross over
    (32, 16, 256, 1024),
    (32, 512, 128, 256),
]
TINY_LSTM_SIZES = [(3, 2, 4, 8)]


# -- timing ----------------------------------------------------------------------------------------
def _cupy():
    from tinygen.kernels.cuda import _runtime
    return _runtime.get_cupy()


def _gpu_timer(cp):
    """``time_ms(fn, repeat, warmup)``: median milliseconds by CUDA events (by the wall clock where
    events fail), and a label saying which clock, and whether the device is the emulator."""
    try:
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        end.record()
        end.synchronize()
        cp.cuda.get_elapsed_time(start, end)
        events = True
    except Exception:
        events = False

    def time_ms(fn, repeat, warmup=None):
        warmup = min(3, repeat) if warmup is None else warmup
        for i in range(warmup):
            fn(i)
        times = []
        for i in range(repeat):
            if events:
                start.record()
                fn(i)
                end.record()
                end.synchronize()
                times.append(cp.cuda.get_elapsed_time(start, end))
            else:
                t0 = time.perf_counter()
                fn(i)
                cp.cuda.runtime.deviceSynchronize()
                times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    if getattr(cp, "EMULATED", False):
        return time_ms, "CPU emulator of tests/cuda_emu: no GPU ran, times measure the emulator"
    return time_ms, "CUDA events" if events else "wall clock after synchronization"


def _torch_cuda():
    """PyTorch when it sees a GPU, else None (then the torch columns stay empty)."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _torch_timer(torch):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def time_ms(fn, repeat, warmup=None):
        warmup = min(3, repeat) if warmup is None else warmup
        for i in range(warmup):
            fn(i)
        torch.cuda.synchronize()
        times = []
        for i in range(repeat):
            start.record()
            fn(i)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return statistics.median(times)

    return time_ms


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


# -- convolution layers ----------------------------------------------------------------------------
def _layer_closures(lib, op, xs, w, b, stride):
    """``fwd(i)`` and ``fwd_bwd(i)`` of one layer in ``lib`` (tinygen or torch: the same API),
    on device ``cuda``, the input rotating over ``xs``."""
    tx = [lib.tensor(x, device="cuda", requires_grad=True) for x in xs]
    tw = lib.tensor(w, device="cuda", requires_grad=True)
    tb = lib.tensor(b, device="cuda", requires_grad=True)

    def fwd(i):
        with lib.no_grad():
            op(tx[i % ROTATE], tw, tb, stride=stride)

    def fwd_bwd(i):
        x = tx[i % ROTATE]
        x.grad = tw.grad = tb.grad = None
        op(x, tw, tb, stride=stride).sum().backward()

    return fwd, fwd_bwd


def conv_layers(batch=100, repeat=50, channels=32, latent=8):
    """Forward and forward+backward of each conv-AE layer, tinygen (CUDA) vs PyTorch (cuDNN).

    tinygen runs both rungs of ``kernels.cuda.conv.ALGORITHM``: im2col + cuBLAS (the default,
    ``tinygen_*`` columns) and the naive direct kernels (``direct_*``)."""
    import numpy as np
    import tinygen
    from tinygen import functional as F
    from tinygen.kernels.cuda import conv as cuda_conv

    cp = _cupy()
    time_ms, clock = _gpu_timer(cp)
    torch = _torch_cuda()
    rng = np.random.default_rng(0)
    rows = []
    for kind, cin, cout, k, s, size in ae_layers(channels, latent):
        xs = [rng.standard_normal((batch, cin, size, size), dtype=np.float32)
              for _ in range(ROTATE)]
        wshape = (cout, cin, k, k) if kind == "conv" else (cin, cout, k, k)
        w = (rng.standard_normal(wshape, dtype=np.float32) * 0.1).astype(np.float32)
        b = np.zeros(cout, np.float32)
        fwd, fb = _layer_closures(tinygen, F.conv2d if kind == "conv" else F.conv_transpose2d,
                                  xs, w, b, s)
        out_size = (size - k) // s + 1 if kind == "conv" else (size - 1) * s + k
        row = {"layer": f"{kind} {cin}->{cout} k{k} s{s} {size}->{out_size}"}
        default = cuda_conv.ALGORITHM
        try:
            for algorithm, prefix in (("im2col", "tinygen"), ("direct", "direct")):
                cuda_conv.ALGORITHM = algorithm
                row[prefix + "_fwd_ms"] = time_ms(fwd, repeat)
                row[prefix + "_fwdbwd_ms"] = time_ms(fb, repeat)
        finally:
            cuda_conv.ALGORITHM = default
        if torch is not None:
            tf = torch.nn.functional
            fwd, fb = _layer_closures(torch, tf.conv2d if kind == "conv" else tf.conv_transpose2d,
                                      xs, w, b, s)
            ptime = _torch_timer(torch)
            row["torch_fwd_ms"], row["torch_fwdbwd_ms"] = ptime(fwd, repeat), ptime(fb, repeat)
        row["fwd_ratio"] = _ratio(row["tinygen_fwd_ms"], row.get("torch_fwd_ms"))
        row["fwdbwd_ratio"] = _ratio(row["tinygen_fwdbwd_ms"], row.get("torch_fwdbwd_ms"))
        rows.append(row)
    return {"rows": rows, "clock": clock, "batch": batch}


# -- the whole conv-AE training step ---------------------------------------------------------------
def _conv_ae(nn, c, d):
    """The lecture's conv autoencoder as one Sequential, in tinygen.nn or torch.nn."""
    layers = []
    for idx, (kind, cin, cout, k, s, _) in enumerate(ae_layers(c, d)):
        layers.append((nn.Conv2d if kind == "conv" else nn.ConvTranspose2d)(cin, cout, k,
                                                                             stride=s))
        if idx not in (4, 9):               # no ReLU on the code or on the output
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def conv_ae_step(batch=100, repeat=50, channels=32, latent=8):
    """Median time of one training step (forward, MSE, backward, Adam lr 1e-3), both libraries."""
    import numpy as np
    import tinygen
    from tinygen import functional as F, nn, optim

    cp = _cupy()
    time_ms, clock = _gpu_timer(cp)
    rng = np.random.default_rng(0)
    xs = [rng.random((batch, 1, 28, 28), dtype=np.float32) for _ in range(ROTATE)]
    tinygen.manual_seed(0)
    model = _conv_ae(nn, channels, latent).to("cuda")
    opt = optim.Adam(model.parameters(), lr=1e-3)
    tx = [tinygen.tensor(x, device="cuda") for x in xs]

    def tg_step(i):
        x = tx[i % ROTATE]
        opt.zero_grad()
        F.mse_loss(model(x), x).backward()
        opt.step()

    out = {"batch": batch, "clock": clock, "tinygen_step_ms": time_ms(tg_step, repeat)}
    torch = _torch_cuda()
    if torch is not None:
        torch.manual_seed(0)
        pmodel = _conv_ae(torch.nn, channels, latent).cuda()
        popt = torch.optim.Adam(pmodel.parameters(), lr=1e-3)
        px = [torch.tensor(x, device="cuda") for x in xs]

        def pt_step(i):
            x = px[i % ROTATE]
            popt.zero_grad()
            torch.nn.functional.mse_loss(pmodel(x), x).backward()
            popt.step()

        out["torch_step_ms"] = _torch_timer(torch)(pt_step, repeat)
    out["ratio"] = _ratio(out["tinygen_step_ms"], out.get("torch_step_ms"))
    return out


# -- LSTM ------------------------------------------------------------------------------------------
def lstm_sequences(sizes=None, repeat=20):
    """Forward + backward of one LSTM layer over a sequence (loss sum(out * u)), tinygen's fused
    CUDA kernels vs torch.nn.LSTM (cuDNN), float32. tinygen runs both ways of the recurrence
    (``kernels.cuda.lstm.RECURRENCE``), the whole-sequence kernels forced for every size up to
    their limit H <= 1024 (``tinygen_whole_sequence_ms``) and a GEMM + gate kernel per step
    (``tinygen_per_step_ms``); ``default`` names the one the defaults pick for the size and
    ``tinygen_fwdbwd_ms`` (compared with PyTorch) is its time."""
    import numpy as np
    import tinygen
    from tinygen import functional as F
    from tinygen.kernels.cuda import lstm as cuda_lstm

    cp = _cupy()
    time_ms, clock = _gpu_timer(cp)
    torch = _torch_cuda()
    rows = []
    for t, n, i, h in sizes or LSTM_SIZES:
        rng = np.random.default_rng(0)
        bound = 1 / np.sqrt(h)
        xs = [rng.standard_normal((t, n, i)).astype(np.float32) for _ in range(ROTATE)]
        u = rng.standard_normal((t, n, h)).astype(np.float32)
        params = {"w_ih": rng.uniform(-bound, bound, (4 * h, i)),
                  "w_hh": rng.uniform(-bound, bound, (4 * h, h)),
                  "b_ih": rng.uniform(-bound, bound, 4 * h),
                  "b_hh": rng.uniform(-bound, bound, 4 * h)}
        params = {k: v.astype(np.float32) for k, v in params.items()}
        tp = {k: tinygen.tensor(v, device="cuda", requires_grad=True) for k, v in params.items()}
        tx = [tinygen.tensor(x, device="cuda", requires_grad=True) for x in xs]
        tu = tinygen.tensor(u, device="cuda")

        def tg_fb(k):
            x = tx[k % ROTATE]
            out, _ = F.lstm(x, None, tp["w_ih"], tp["w_hh"], tp["b_ih"], tp["b_hh"])
            (out * tu).sum().backward()

        row = {"size": f"T={t} N={n} I={i} H={h}",
               "default": "sequence" if cuda_lstm._whole_sequence(n, h) else "step"}
        saved = (cuda_lstm.RECURRENCE, cuda_lstm.MAX_SEQUENCE_HIDDEN, cuda_lstm.MAX_SEQUENCE_WORK)
        try:
            cuda_lstm.MAX_SEQUENCE_HIDDEN, cuda_lstm.MAX_SEQUENCE_WORK = 1024, float("inf")
            for mode, key in (("sequence", "tinygen_whole_sequence_ms"),
                              ("step", "tinygen_per_step_ms")):
                cuda_lstm.RECURRENCE = mode
                row[key] = time_ms(tg_fb, repeat) if h <= 1024 or mode == "step" else None
        finally:
            cuda_lstm.RECURRENCE, cuda_lstm.MAX_SEQUENCE_HIDDEN, cuda_lstm.MAX_SEQUENCE_WORK = saved
        row["tinygen_fwdbwd_ms"] = row["tinygen_whole_sequence_ms" if row["default"] == "sequence"
                                       else "tinygen_per_step_ms"]
        if torch is not None:
            lstm = torch.nn.LSTM(i, h).cuda()
            with torch.no_grad():
                for name, key in (("weight_ih_l0", "w_ih"), ("weight_hh_l0", "w_hh"),
                                  ("bias_ih_l0", "b_ih"), ("bias_hh_l0", "b_hh")):
                    getattr(lstm, name).copy_(torch.from_numpy(params[key]))
            px = [torch.tensor(x, device="cuda", requires_grad=True) for x in xs]
            pu = torch.tensor(u, device="cuda")

            def pt_fb(k):
                out, _ = lstm(px[k % ROTATE])
                (out * pu).sum().backward()

            row["torch_fwdbwd_ms"] = _torch_timer(torch)(pt_fb, repeat)
        row["ratio"] = _ratio(row["tinygen_fwdbwd_ms"], row.get("torch_fwdbwd_ms"))
        rows.append(row)
    return {"rows": rows, "clock": clock}


# -- all of it -------------------------------------------------------------------------------------
def run(tiny=False, repeat=None):
    """Every entry; ``tiny``: sizes for the CPU emulator (batch 2, 4 channels, one small LSTM)."""
    if tiny:
        repeat = repeat or 2
        kw = dict(batch=2, channels=4, latent=2, repeat=repeat)
        return {"tiny": True, "conv_layers": conv_layers(**kw), "conv_ae_step": conv_ae_step(**kw),
                "lstm": lstm_sequences(TINY_LSTM_SIZES, repeat)}
    return {"tiny": False, "conv_layers": conv_layers(repeat=repeat or 50),
            "conv_ae_step": conv_ae_step(repeat=repeat or 50),
            "lstm": lstm_sequences(LSTM_SIZES, repeat or 20)}


def _fmt(v):
    return "-" if v is None else f"{v:.3f}"


def markdown(result) -> str:
    """A markdown table of :func:`run`'s result (ms; ratio = tinygen's default / PyTorch)."""
    tiny = " (tiny sizes)" if result["tiny"] else ""
    lines = [f"Timing: {result['conv_layers']['clock']}{tiny}",
             "", "| conv-AE layer | fwd ms | direct | torch | ratio | fwd+bwd ms | direct | "
             "torch | ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["conv_layers"]["rows"]:
        lines.append(f"| {r['layer']} | {_fmt(r['tinygen_fwd_ms'])} | "
                     f"{_fmt(r['direct_fwd_ms'])} | {_fmt(r.get('torch_fwd_ms'))} "
                     f"| {_fmt(r['fwd_ratio'])} | {_fmt(r['tinygen_fwdbwd_ms'])} | "
                     f"{_fmt(r['direct_fwdbwd_ms'])} | "
                     f"{_fmt(r.get('torch_fwdbwd_ms'))} | {_fmt(r['fwdbwd_ratio'])} |")
    s = result["conv_ae_step"]
    lines += ["", "| conv-AE training step | tinygen ms | torch ms | ratio |", "|---|---|---|---|",
              f"| batch {s['batch']} | {_fmt(s['tinygen_step_ms'])} | "
              f"{_fmt(s.get('torch_step_ms'))} "
              f"| {_fmt(s['ratio'])} |",
              "", "| LSTM fwd+bwd | whole sequence ms | per step ms | default | "
              "torch (cuDNN) ms | ratio |", "|---|---|---|---|---|---|"]
    for r in result["lstm"]["rows"]:
        lines.append(f"| {r['size']} | {_fmt(r['tinygen_whole_sequence_ms'])} | "
                     f"{_fmt(r['tinygen_per_step_ms'])} | {r['default']} | "
                     f"{_fmt(r.get('torch_fwdbwd_ms'))} | {_fmt(r['ratio'])} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="emulator-sized run (seconds)")
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--json", default=None, help="write the result as JSON here")
    parser.add_argument("--markdown", default=None, help="write the markdown table here")
    args = parser.parse_args(argv)
    result = run(tiny=args.tiny, repeat=args.repeat)
    table = markdown(result)
    print(table)
    for path, text in ((args.json, json.dumps(result, indent=2)), (args.markdown, table)):
        if path:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
