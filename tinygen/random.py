"""Random number generation: explicit generators and one default generator.

``tinygen.manual_seed(seed)`` reseeds the default generator; every random function also takes
``generator=`` so a run can own its randomness. A generator's state can be saved and restored
(``get_state``/``set_state``), which checkpoints use so that resumed training is exact.
On the CPU a generator draws from NumPy's PCG64.
"""
from __future__ import annotations

import numpy as np

from . import backend

__all__ = ["Generator", "manual_seed", "default_generator", "seed", "get_rng_state",
           "set_rng_state"]


class Generator:
    """A seeded source of random numbers (wraps ``numpy.random.Generator(PCG64)``)."""

    def __init__(self, seed: int | None = None, device: str = "cpu"):
        self.device = backend.normalize_device(device)
        self._initial_seed = None
        self.manual_seed(seed if seed is not None else np.random.SeedSequence().entropy % 2**63)

    def manual_seed(self, seed: int) -> "Generator":
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")
        self._initial_seed = int(seed)
        self._np = np.random.Generator(np.random.PCG64(int(seed) % 2**128))
        self._cupy = None
        return self

    def initial_seed(self) -> int:
        return self._initial_seed

    def get_state(self) -> dict:
        """A picklable snapshot of the generator's state."""
        return {"seed": self._initial_seed, "numpy": self._np.bit_generator.state}

    def set_state(self, state: dict) -> None:
        self._initial_seed = state["seed"]
        self._np.bit_generator.state = state["numpy"]

    # -- draws (return backing arrays on this generator's device) ------------------------------
    def _xp_rng(self):
        if self.device == "cpu":
            return self._np
        if self._cupy is None:  # a CuPy generator seeded from this one's stream
            cp = backend.array_module("cuda")
            self._cupy = cp.random.default_rng(int(self._np.integers(2**63)))
        return self._cupy

    def normal(self, shape, dtype):
        """Standard normal draws of a floating ``dtype`` (float32 or float64)."""
        return self._xp_rng().standard_normal(shape, dtype=dtype)

    def uniform(self, shape, dtype, low=0.0, high=1.0):
        """Uniform draws on ``[low, high)`` of a floating ``dtype``."""
        out = self._xp_rng().random(shape, dtype=dtype)
        if low != 0.0 or high != 1.0:
            out = (out * (high - low) + low).astype(dtype, copy=False)
        return out

    def integers(self, low, high, shape, dtype=np.int64):
        return self._xp_rng().integers(low, high, size=shape, dtype=dtype)

    def permutation(self, n):
        return self._xp_rng().permutation(n)

    def __repr__(self):
        return f"Generator(seed={self._initial_seed}, device={self.device!r})"


default_generator = Generator(0)


def manual_seed(seed: int) -> Generator:
    """Reseed the default generator (as ``torch.manual_seed``); returns it."""
    return default_generator.manual_seed(seed)


seed = manual_seed


def get_rng_state() -> dict:
    """State of the default generator."""
    return default_generator.get_state()


def set_rng_state(state: dict) -> None:
    """Restore the default generator from :func:`get_rng_state`."""
    default_generator.set_state(state)


def _resolve(generator):
    if generator is None:
        return default_generator
    if not isinstance(generator, Generator):
        raise TypeError(f"generator must be a tinygen.Generator, got {type(generator).__name__}")
    return generator
