"""The demo job: an MLP classifier on two interleaved half-moons, trained with tinygen.

It exercises the whole engine -- tensors, autograd, ``nn.Linear``, cross-entropy, Adam --
on data generated in code, prints a line per epoch and the final held-out accuracy.
"""
from __future__ import annotations

import time

import numpy as np

import tinygen
from tinygen import nn
from tinygen import functional as F


def make_moons(n: int, noise: float, rng: np.random.Generator):
    """Two interleaved half circles in 2-D with Gaussian noise; labels 0/1 (float64, int64)."""
    n0 = n // 2
    t0 = rng.uniform(0.0, np.pi, n0)
    t1 = rng.uniform(0.0, np.pi, n - n0)
    upper = np.stack([np.cos(t0), np.sin(t0)], axis=1)
    lower = np.stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)
    x = np.concatenate([upper, lower]) + rng.normal(0.0, noise, (n, 2))
    y = np.concatenate([np.zeros(n0, np.int64), np.ones(n - n0, np.int64)])
    return x, y


def run_demo(epochs: int = 30, seed: int = 0, batch_size: int = 64, verbose: bool = True):
    """Train and evaluate; returns ``{"test_accuracy": ..., "final_loss": ..., "seconds": ...}``."""
    tinygen.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x_train, y_train = make_moons(2000, 0.15, rng)
    x_test, y_test = make_moons(1000, 0.15, rng)
    x_train = x_train.astype(np.float32)
    x_test = x_test.astype(np.float32)

    model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                          nn.Linear(64, 2))
    optimizer = tinygen.optim.Adam(model.parameters(), lr=1e-2)
    if verbose:
        print(f"two moons: {len(x_train)} training / {len(x_test)} test points")
        print(model)
    start = time.perf_counter()
    loss_value = float("nan")
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x_train))
        total, count = 0.0, 0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            xb, yb = tinygen.tensor(x_train[idx]), tinygen.tensor(y_train[idx])
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            count += len(idx)
        loss_value = total / count
        if verbose and (epoch == 1 or epoch % 5 == 0 or epoch == epochs):
            print(f"epoch {epoch:3d}/{epochs}  train loss {loss_value:.4f}  "
                  f"({time.perf_counter() - start:.1f} s)")
    with tinygen.no_grad():
        pred = model(tinygen.tensor(x_test)).argmax(dim=1).numpy()
    accuracy = float((pred == y_test).mean())
    seconds = time.perf_counter() - start
    if verbose:
        print(f"test accuracy {accuracy * 100:.1f}% on {len(x_test)} held-out points "
              f"(trained in {seconds:.1f} s)")
    return {"test_accuracy": accuracy, "final_loss": loss_value, "seconds": seconds}
