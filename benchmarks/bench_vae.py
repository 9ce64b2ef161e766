"""The MLP VAE recipe in PyTorch and in tinygen, in one run: training time, test ELBO and the
importance-weighted NLL, and the ratio of the training times.

Recipe (issue 5, DESIGN.md's reference numbers): VAE 784-400-20 (ReLU), Bernoulli decoder,
dynamic binarization, Adam lr 1e-3, batch 100, N epochs on all 5,000 embedded MNIST digits; test
ELBO and importance-weighted NLL (k samples) on the 10,000 MNIST test images of --data DIR,
binarized once with a fixed seed. Both libraries see the same batches, the same binarizations
and the same noise eps; each is timed over its training loop only. The PyTorch model's weights
are then loaded into a tinygen model, so both are evaluated by the same code.

    python benchmarks/bench_vae.py --data ../shared/data/mnist --epochs 100 --k 1000
    python benchmarks/bench_vae.py --steps 300     # interleaved per-step timing only

Like the other benchmarks it unsets OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for its own process
(and says so). ``--threads N`` (default 1) gives both libraries N threads (PyTorch's
intra-op threads, OpenBLAS's threads via OPENBLAS_NUM_THREADS, set before NumPy loads): on this
2-core VM, when anything else runs, 2-thread BLAS calls of either library collapse (seen: 100
PyTorch epochs taking > 4 minutes instead of ~18 s), so the default compares one thread each.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import reexec_without_openblas_env  # noqa: E402

HIDDEN, LATENT, PIXELS = 400, 20, 784


def batches(n, batch_size, seed, epoch):
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def noise_stream(train, batch_size, seed, epochs):
    """Per step: (indices, binarized batch (B, 784) float32, eps (B, 20) float32), shared by both
    libraries."""
    rng = np.random.default_rng([seed, 99])
    flat = train.reshape(len(train), PIXELS)
    for epoch in range(epochs):
        for idx in batches(len(train), batch_size, seed, epoch):
            x = (rng.random((len(idx), PIXELS)) < flat[idx]).astype(np.float32)
            yield x, rng.standard_normal((len(idx), LATENT)).astype(np.float32)


class TorchStep:
    def __init__(self, lr, seed):
        import torch
        from torch import nn
        torch.manual_seed(seed)
        torch.set_num_threads(int(os.environ.get("OPENBLAS_NUM_THREADS", "1")))
        self.torch = torch
        self.fc1, self.fc21, self.fc22 = nn.Linear(PIXELS, HIDDEN), nn.Linear(HIDDEN, LATENT), \
            nn.Linear(HIDDEN, LATENT)
        self.fc3, self.fc4 = nn.Linear(LATENT, HIDDEN), nn.Linear(HIDDEN, PIXELS)
        self.modules = [self.fc1, self.fc21, self.fc22, self.fc3, self.fc4]
        self.opt = torch.optim.Adam([p for m in self.modules for p in m.parameters()], lr=lr)

    def __call__(self, x, eps):
        torch, F = self.torch, self.torch.nn.functional
        x, eps = torch.from_numpy(x), torch.from_numpy(eps)
        h = F.relu(self.fc1(x))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.exp(0.5 * logvar) * eps
        logits = self.fc4(F.relu(self.fc3(z)))
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
        kl = -0.5 * torch.sum(1 + logvar - mu ** 2 - logvar.exp()) / len(x)
        loss = rec + kl
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def state(self):
        names = ["encoder.0", "fc_mu", "fc_logvar", "decoder.0", "decoder.2"]
        out = {}
        for name, m in zip(names, self.modules):
            out[f"{name}.weight"] = m.weight.detach().numpy().copy()
            out[f"{name}.bias"] = m.bias.detach().numpy().copy()
        return out


class TinygenStep:
    def __init__(self, lr, seed):
        import tinygen
        from tinygen.models.vae import MLPVAE, VAEConfig
        tinygen.manual_seed(seed)
        self.tg = tinygen
        self.model = MLPVAE(VAEConfig(hidden=HIDDEN, latent_dim=LATENT, iw_samples=0))
        self.opt = tinygen.optim.Adam(self.model.parameters(), lr=lr)
        self.rng = _FixedNoise()

    def __call__(self, x, eps):
        m = self.model
        self.rng.eps = eps
        xt = self.tg.tensor(x)
        log_px, kl = m.elbo_terms(xt, None, self.rng)           # the model's own objective
        loss = -log_px.mean() + kl.mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return float(loss)


class _FixedNoise:
    """Stands in for the trainer's generator: hands out the shared eps."""
    eps = None

    def standard_normal(self, shape):
        assert tuple(shape) == self.eps.shape
        return self.eps


def train(lib, train_images, epochs, batch_size, lr, seed):
    step = TorchStep(lr, seed) if lib == "torch" else TinygenStep(lr, seed)
    losses = []
    t0 = time.perf_counter()
    for x, eps in noise_stream(train_images, batch_size, seed, epochs):
        losses.append(step(x, eps))
    return step, time.perf_counter() - t0, losses


def evaluate(step, test, k):
    """Test ELBO / NLL with tinygen's evaluation code (PyTorch weights loaded into it)."""
    import tinygen
    from tinygen.data import Dataset
    from tinygen.models.vae import MLPVAE, VAEConfig
    if isinstance(step, TinygenStep):
        model = step.model
    else:
        model = MLPVAE(VAEConfig(hidden=HIDDEN, latent_dim=LATENT))
        model.load_state_dict({**model.state_dict(),
                               **{n: tinygen.tensor(a) for n, a in step.state().items()}})
    model.eval()
    return model.evaluate(Dataset(test.images, test.labels), iw_samples=k)


def interleaved_steps(train_images, n_steps, batch_size, seed):
    """Median step time of each library, steps alternating so both see the same machine."""
    torch_step, tg_step = TorchStep(1e-3, seed), TinygenStep(1e-3, seed)
    stream = noise_stream(train_images, batch_size, seed, 10_000)
    times = {"torch": [], "tinygen": []}
    for i in range(n_steps + 20):
        x, eps = next(stream)
        for name, fn in (("torch", torch_step), ("tinygen", tg_step)):
            t0 = time.perf_counter()
            fn(x, eps)
            if i >= 20:
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def _set_threads():
    """Re-run with OPENBLAS_NUM_THREADS = --threads (NumPy's BLAS reads it when it loads)."""
    n = "1"
    if "--threads" in sys.argv:
        n = sys.argv[sys.argv.index("--threads") + 1]
    if os.environ.get("OPENBLAS_NUM_THREADS") != n:
        os.environ["OPENBLAS_NUM_THREADS"] = n
        os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ))


def main():
    _set_threads()
    reexec_without_openblas_env()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="directory with the MNIST test IDX files")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--k", type=int, default=1000, help="importance samples (default 1000)")
    p.add_argument("--steps", type=int, default=0, help="only time N interleaved steps")
    p.add_argument("--lib", choices=("both", "torch", "tinygen"), default="both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the results here")
    p.add_argument("--keep-openblas-env", action="store_true")
    p.add_argument("--threads", type=int, default=1, help="threads of both libraries")
    args = p.parse_args()
    from tinygen.data import load_mnist
    if os.environ.get("TINYGEN_BENCH_UNSET_OPENBLAS"):
        print("(OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for this process)")
    print(f"threads per library: {os.environ['OPENBLAS_NUM_THREADS']}", flush=True)
    train_images = load_mnist("train", None).images                      # the 5,000 digits
    if args.steps:
        ms = interleaved_steps(train_images, args.steps, 100, args.seed)
        print(f"VAE step (batch 100), median of {args.steps} interleaved steps: tinygen "
              f"{ms['tinygen']:.2f} ms, torch {ms['torch']:.2f} ms, ratio "
              f"{ms['tinygen'] / ms['torch']:.2f}")
        return
    test = load_mnist("test", args.data) if args.data else None
    results = {}
    for lib in (("torch", "tinygen") if args.lib == "both" else (args.lib,)):
        step, seconds, losses = train(lib, train_images, args.epochs, 100, 1e-3, args.seed)
        res = {"train_seconds": seconds, "final_train_loss": float(np.mean(losses[-50:]))}
        if test is not None:
            ev = evaluate(step, test, args.k)
            res.update(test_elbo_nats=ev["elbo_nats"], test_nll_nats=ev["nll_nats"])
        results[lib] = res
        print(lib, json.dumps(res), flush=True)
    if len(results) == 2:
        ratio = results["tinygen"]["train_seconds"] / results["torch"]["train_seconds"]
        results["time_ratio"] = ratio
        print(f"training time ratio tinygen / torch: {ratio:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
