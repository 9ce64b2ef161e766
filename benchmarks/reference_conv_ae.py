"""The conv-ae recipe in PyTorch and in tinygen, on the same data, for the results table.

Recipe (Fleuret's lecture on autoencoders and generative models): its convolutional
autoencoder, d=8, MSE, Adam lr 1e-3, batch 100, N epochs on the embedded 5,000 MNIST digits
(the same seeded split as `tinygen train`, or all 5,000 with --val-fraction 0), test MSE on
the 10,000 MNIST test images of --data DIR, and PCA at the same d. Both libraries see the same
batches in the same order; each is timed over its training loop only.

    python benchmarks/reference_conv_ae.py --data ../shared/data/mnist --epochs 25 [--lib torch|tinygen|both]

Like the other benchmarks it unsets OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for its own process
(and says so), so that NumPy's BLAS runs at the machine's speed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import reexec_without_openblas_env  # noqa: E402


def batches(n, batch_size, seed, epoch):
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def run_torch(train, test, epochs, batch_size, lr, seed, d):
    import torch
    from torch import nn
    torch.manual_seed(seed)
    torch.set_num_threads(os.cpu_count() or 1)
    c = 32
    model = nn.Sequential(
        nn.Conv2d(1, c, 5), nn.ReLU(), nn.Conv2d(c, c, 5), nn.ReLU(),
        nn.Conv2d(c, c, 4, stride=2), nn.ReLU(), nn.Conv2d(c, c, 3, stride=2), nn.ReLU(),
        nn.Conv2d(c, d, 4),
        nn.ConvTranspose2d(d, c, 4), nn.ReLU(), nn.ConvTranspose2d(c, c, 3, stride=2), nn.ReLU(),
        nn.ConvTranspose2d(c, c, 4, stride=2), nn.ReLU(), nn.ConvTranspose2d(c, c, 5), nn.ReLU(),
        nn.ConvTranspose2d(c, 1, 5))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x_all = torch.from_numpy(train)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        for idx in batches(len(train), batch_size, seed, epoch):
            x = x_all[idx]
            loss = nn.functional.mse_loss(model(x), x)
            opt.zero_grad()
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        err = sum(float(((model(torch.from_numpy(test[i:i + 500])) -
                          torch.from_numpy(test[i:i + 500])) ** 2).sum())
                  for i in range(0, len(test), 500)) / test.size
    return {"test_mse": err, "train_seconds": seconds}


def run_tinygen(train, test, epochs, batch_size, lr, seed, d):
    import tinygen
    from tinygen import functional as F
    from tinygen.models import ConvAutoencoder
    tinygen.manual_seed(seed)
    model = ConvAutoencoder(ConvAutoencoder.Config(latent_dim=d))
    opt = tinygen.optim.Adam(model.parameters(), lr=lr)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        for idx in batches(len(train), batch_size, seed, epoch):
            x = tinygen.tensor(train[idx])
            loss = F.mse_loss(model(x), x)
            opt.zero_grad()
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - t0
    from tinygen.data import Dataset
    err = model.evaluate(Dataset(test, np.zeros(len(test), np.int64), "test"))["mse"]
    return {"test_mse": err, "train_seconds": seconds}


def main():
    reexec_without_openblas_env()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="directory with the MNIST t10k IDX files")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latent-dim", type=int, default=8)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--lib", choices=("torch", "tinygen", "both"), default="both")
    p.add_argument("--json", default="benchmarks/out/reference_conv_ae.json")
    args = p.parse_args()
    if os.environ.get("TINYGEN_BENCH_UNSET_OPENBLAS"):
        print("note: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for this process")
    from tinygen.data import load_mnist, train_val_split
    from tinygen.models import PCA
    train = load_mnist("train", None)
    if args.val_fraction > 0:
        train, _ = train_val_split(train, val_fraction=args.val_fraction, seed=args.seed)
    test = load_mnist("test", args.data)
    xtr, xte = train.images, test.images
    result = {"recipe": vars(args), "train_size": len(xtr), "test_size": len(xte),
              "pca_test_mse": PCA.fit(xtr, args.latent_dim).mse(xte)}
    print(f"train {len(xtr)} embedded digits, test {len(xte)}; PCA d={args.latent_dim}: "
          f"test MSE {result['pca_test_mse']:.4f}", flush=True)
    libs = ("torch", "tinygen") if args.lib == "both" else (args.lib,)
    for lib in libs:
        fn = run_torch if lib == "torch" else run_tinygen
        r = fn(xtr, xte, args.epochs, args.batch_size, args.lr, args.seed, args.latent_dim)
        result[lib] = r
        print(f"{lib}: test MSE {r['test_mse']:.4f}, training {r['train_seconds']:.1f} s",
              flush=True)
    if len(libs) == 2:
        result["time_ratio"] = result["tinygen"]["train_seconds"] / result["torch"]["train_seconds"]
        print(f"training time ratio tinygen/torch: {result['time_ratio']:.2f}")
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
