"""The demo job: an MLP classifier on two interleaved half-moons, trained with tinygen.

It exercises the whole engine -- tensors, autograd, ``nn.Linear``, cross-entropy, Adam --
on data generated in code, prints a line per epoch and the final held-out accuracy.
"""
from __future__ import annotations

import time


import tinygen
from tinygen import nn
from tinygen import functional as F
from tinygen.data import BatchIterator, make_moons


def run_demo(epochs: int = 30, seed: int = 0, batch_size: int = 64, verbose: bool = True):
    """Train and evaluate; returns ``{"test_accuracy": ..., "final_loss": ..., "seconds": ...}``."""
    tinygen.manual_seed(seed)
    x_train, y_train = make_moons(2000, noise=0.15, seed=seed)
    x_test, y_test = make_moons(1000, noise=0.15, seed=seed + 10_000)

    model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                          nn.Linear(64, 2))
    optimizer = tinygen.optim.Adam(model.parameters(), lr=1e-2)
    if verbose:
        print(f"two moons: {len(x_train)} training / {len(x_test)} test points")
        print(model)
    batches = BatchIterator(x_train, y_train, batch_size=batch_size, shuffle=True, seed=seed)
    start = time.perf_counter()
    loss_value = float("nan")
    for epoch in range(1, epochs + 1):
        total, count = 0.0, 0
        for x_batch, y_batch in batches:
            xb, yb = tinygen.tensor(x_batch), tinygen.tensor(y_batch)
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(x_batch)
            count += len(x_batch)
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
