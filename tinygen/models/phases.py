"""A model's training, declared as data: the :class:`Phase` list that ``model.phases(data)``
returns and :class:`tinygen.train.Trainer` runs. Models build phases; they never import the
trainer (layers point down: models -> train is the trainer's import, not the model's).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

__all__ = ["Phase", "OptimizerSpec", "OPTIMIZERS", "constant_lr", "warmup_cosine"]


OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass
class OptimizerSpec:
    """One named optimizer of a phase with its own ``step``."""
    parameters: Callable[[], list]                # the parameters it updates
    lr: Optional[float] = None                    # None: the phase's lr, else TrainConfig.lr
    betas: tuple = (0.9, 0.999)                   # Adam (beta1, beta2); DCGAN uses (0.5, 0.999)
    kind: str = "adam"                            # one of OPTIMIZERS
    weight_decay: float = 0.0                     # L2 (adam, sgd) or decoupled (adamw) decay
    momentum: float = 0.0                         # sgd only

    def __post_init__(self):
        _check_kind(self.kind)


def _check_kind(kind):
    if kind not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {kind!r}")


def constant_lr(step: int, total: int) -> float:
    """The learning-rate factor 1 at every step."""
    return 1.0


def warmup_cosine(warmup_steps: int = 0, final_factor: float = 0.0):
    """A learning-rate factor schedule: linear warm-up from 0 over ``warmup_steps``, then a
    cosine decay to ``final_factor`` at the phase's last step (Loshchilov & Hutter's SGDR
    without restarts). Returns ``factor(step, total)``, step counted from 0 within the phase."""
    import math

    def factor(step: int, total: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(total - warmup_steps, 1)
        progress = min((step - warmup_steps) / span, 1.0)
        return final_factor + (1.0 - final_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


@dataclass
class Phase:
    """One stage of training.

    ``loss(batch, rng)`` gets the batch as a tuple of Tensors (images, labels) on the training
    device and the trainer's NumPy generator (for noise and binarization; its state is saved in
    checkpoints) and returns ``(loss, stats)`` with ``stats`` a dict of floats to log.
    ``evaluate()`` returns validation metrics (floats); ``select`` names the one to minimize
    for ``best.ckpt`` (None: keep the last).

    Alternatively ``step(batch, rng, optimizers)`` does the whole update itself with the
    optimizers built from ``optimizers`` (a dict name -> :class:`OptimizerSpec`; ``step`` gets
    a dict name -> Adam) and returns the stats to log, which must hold ``loss`` (a float); every
    value is checked to be finite. ``parameters`` and ``loss`` are then unused (may be None).
    ``after_epoch(epoch, out_dir)`` (optional) runs after each epoch's evaluation, without
    gradients and in evaluation mode, e.g. to save a sample grid in the run's directory;
    ``epoch`` counts from 1.

    Hooks of a phase with a ``loss`` (all optional):

    * ``prepare(arrays, rng) -> arrays``: host-side data preparation of the batch's NumPy arrays
      (binarizing, shifting, one-hot labels) before they become tensors on the device;
    * ``optimizer`` (``"adam"``, ``"adamw"``, ``"sgd"``) and ``optimizer_options`` (betas,
      weight_decay, momentum, ...: keyword arguments of that optimizer);
    * ``clip_grad_norm``: rescale the gradients to this total 2-norm before each step (the norm
      before clipping is logged as ``grad_norm``);
    * ``lr_schedule(step, total) -> factor``: the learning rate is ``lr * factor`` at the
      phase's ``step``-th update out of ``total`` (e.g. :func:`warmup_cosine`);
    * ``after_step(step)``: called after every optimizer step without gradients (e.g. an
      exponential moving average of the weights, :class:`tinygen.nn.EMA`); ``step`` counts the
      run's updates from 1.
    """
    name: str
    parameters: Optional[Callable[[], list]] = None
    loss: Optional[Callable] = None
    epochs: Optional[int] = None      # None: TrainConfig.epochs
    lr: Optional[float] = None        # None: TrainConfig.lr
    evaluate: Optional[Callable[[], dict]] = None
    select: Optional[str] = None
    step: Optional[Callable] = None                   # step(batch, rng, optimizers) -> stats
    optimizers: Optional[dict] = None                 # name -> OptimizerSpec, with ``step``
    after_epoch: Optional[Callable[[int, str], None]] = None
    prepare: Optional[Callable] = None                # prepare(arrays, rng) -> arrays
    optimizer: str = "adam"                           # one of OPTIMIZERS
    optimizer_options: dict = field(default_factory=dict)
    clip_grad_norm: Optional[float] = None
    lr_schedule: Optional[Callable[[int, int], float]] = None   # (step, total) -> lr factor
    after_step: Optional[Callable[[int], None]] = None

    def __post_init__(self):
        if self.step is None:
            if self.loss is None or self.parameters is None:
                raise ValueError(f"phase {self.name!r}: give parameters and loss, or step and "
                                 f"optimizers")
        elif not self.optimizers:
            raise ValueError(f"phase {self.name!r}: a step needs optimizers (name -> "
                             f"OptimizerSpec), got {self.optimizers!r}")
        _check_kind(self.optimizer)
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ValueError(f"phase {self.name!r}: clip_grad_norm must be > 0, got "
                             f"{self.clip_grad_norm}")
