"""Exponential moving average of a module's weights (Polyak averaging), as diffusion models and
GANs use for sampling:

    shadow <- d_t * shadow + (1 - d_t) * theta        after every optimizer step,
    d_t = min(decay, (1 + t) / (10 + t))              (with ``warmup``: early averages are not
                                                       dominated by the random initialization)

The shadow weights are buffers of this module, so they are saved in the owner's state dict (and
in checkpoints), move with ``.to(device)``, and are never trained. Use it from a training
phase's ``after_step`` hook and swap the averaged weights in for evaluation or sampling::

    self.ema = nn.EMA(self.net, decay=0.999)          # in the model's __init__
    Phase(..., after_step=lambda step: self.ema.update())
    with self.ema.applied():                          # self.net now holds the averages
        samples = self.sample(...)
"""
from __future__ import annotations

import contextlib

import numpy as np

from ..tensor import Tensor
from .module import Module

__all__ = ["EMA"]


class EMA(Module):
    """Moving averages of ``module``'s parameters (see the module docstring).

    ``decay`` in [0, 1): the weight of the past; ``warmup``: use the smaller decay
    (1 + t) / (10 + t) over the first updates. The tracked module is not a submodule (its
    parameters stay its owner's); ``num_updates`` counts the updates (a buffer, checkpointed).
    """

    def __init__(self, module: Module, decay: float = 0.999, warmup: bool = True):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"EMA: module must be a tinygen.nn.Module, got "
                            f"{type(module).__name__}")
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"EMA: decay must be in [0, 1), got {decay}")
        self.decay, self.warmup = float(decay), bool(warmup)
        object.__setattr__(self, "_tracked", module)      # not registered as a child
        self._param_names = [name for name, _ in module.named_parameters()]
        for i, (_, p) in enumerate(module.named_parameters()):
            self.register_buffer(f"shadow_{i}", Tensor._wrap(p.array.copy()))
        self.register_buffer("num_updates", Tensor._wrap(np.zeros((), dtype=np.int64)))

    def _pairs(self):
        params = dict(self._tracked.named_parameters())
        if list(params) != self._param_names:
            raise RuntimeError("EMA: the tracked module's parameters changed since the EMA was "
                               "made")
        for i, name in enumerate(self._param_names):
            yield self._buffers[f"shadow_{i}"], params[name]

    def current_decay(self) -> float:
        """The decay the next :meth:`update` uses."""
        t = int(self.num_updates.array)
        return min(self.decay, (1.0 + t) / (10.0 + t)) if self.warmup else self.decay

    def update(self) -> None:
        """shadow <- d shadow + (1 - d) theta for every parameter (no gradients involved)."""
        d = self.current_decay()
        for shadow, p in self._pairs():
            s = shadow.array
            s *= d
            s += (1.0 - d) * p.array.astype(s.dtype, copy=False)
        self.num_updates.array[...] = int(self.num_updates.array) + 1

    def copy_to(self, module: Module | None = None) -> None:
        """Write the averages into ``module``'s parameters (default: the tracked module)."""
        target = dict((module or self._tracked).named_parameters())
        for i, name in enumerate(self._param_names):
            target[name].array[...] = self._buffers[f"shadow_{i}"].array

    @contextlib.contextmanager
    def applied(self):
        """Within the block the tracked module holds the averaged weights; its own weights come
        back afterwards (also on an exception)."""
        saved = [p.array.copy() for _, p in self._pairs()]
        self.copy_to()
        try:
            yield self._tracked
        finally:
            for (_, p), data in zip(self._pairs(), saved):
                p.array[...] = data

    def extra_repr(self) -> str:
        return f"decay={self.decay}, warmup={self.warmup}, tensors={len(self._param_names)}"
