"""Mini-batches over NumPy arrays."""
from __future__ import annotations

import numpy as np


class BatchIterator:
    """Iterate over aligned arrays (sharing axis 0) in mini-batches.

    With ``shuffle`` the order of epoch e is a permutation drawn from ``(seed, e)`` only, so a
    run restarted at epoch e (``load_state_dict``) sees exactly the batches it would have seen.
    Each full pass increments :attr:`epoch`. Batches are tuples of arrays (one per input).
    """

    def __init__(self, *arrays, batch_size, shuffle=False, seed=0, drop_last=False):
        if not arrays:
            raise ValueError("BatchIterator needs at least one array")
        n = len(arrays[0])
        for i, a in enumerate(arrays):
            if len(a) != n:
                raise ValueError(f"BatchIterator: arrays must share their first dimension; array "
                                 f"0 has shape {np.shape(arrays[0])}, array {i} has "
                                 f"{np.shape(a)}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.arrays = arrays
        self.n = n
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def __len__(self):
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def order(self, epoch) -> np.ndarray:
        """The sample order of ``epoch``."""
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def __iter__(self):
        order = self.order(self.epoch)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield tuple(a[idx] for a in self.arrays)
        self.epoch += 1

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.seed = int(state["epoch"]), state["seed"]
