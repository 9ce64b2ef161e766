"""The training loop shared by every model.

A model hands the :class:`Trainer` a list of :class:`Phase` objects (most models have one; the
stacked denoising autoencoder has one per pretrained layer, then fine-tuning, then its
from-scratch baseline). For each phase the trainer runs ``epochs`` passes over the shuffled
training set with Adam, and after every epoch

* evaluates the model on the validation split (the phase's ``evaluate``),
* appends JSON lines to ``metrics.jsonl`` (train records every ``log_every`` steps and at the
  end of each epoch, one validation record per epoch),
* writes ``last.ckpt`` (model, optimizer, RNG states, phase, epoch, step, config) atomically, and
  ``best.ckpt`` when the phase's selection metric improved.

``resume`` restarts from such a checkpoint at the next epoch with every state restored, so a run
interrupted and resumed produces the same loss curve as an uninterrupted one (on the CPU; the
metrics file is cut back to the checkpoint's step first). A loss that is NaN or infinite stops
training with :class:`TrainingDiverged`, naming the step and the last good checkpoint.

A phase normally gives a ``loss`` and the trainer does ``prepare -> zero_grad -> backward ->
clip -> step -> after_step`` with the phase's optimizer (Adam by default, AdamW or SGD) and its
learning-rate schedule (see :class:`tinygen.models.phases.Phase`). A phase that needs its own update (a GAN: a discriminator step, then a generator step,
each with its own Adam) gives ``optimizers`` (name -> :class:`OptimizerSpec`) and ``step``
instead; the trainer builds the optimizers, calls ``step(batch, rng, optimizers)`` once per
batch and saves every optimizer's state in the checkpoints.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import numpy as np

from .. import _memory
from .. import random as tg_random
from ..autograd import no_grad
from ..nn.utils import clip_grad_norm_
from ..optim import SGD, Adam, AdamW
from ..tensor import tensor
from ..checkpoint import (CheckpointError, atomic_write, check_model_checkpoint,
                          load_checkpoint, save_checkpoint)
from ..models.phases import OptimizerSpec, Phase  # noqa: F401  (re-exported)


def make_optimizer(kind, params, lr, **options):
    """The optimizer ``kind`` ("adam", "adamw" or "sgd") over ``params``."""
    cls = {"adam": Adam, "adamw": AdamW, "sgd": SGD}[kind]
    return cls(params, lr=lr, **options)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training was stopped."""


@dataclass
class TrainConfig:
    """Settings of a training run that are not part of any model."""
    epochs: int = 10            # passes over the training set (per phase unless a phase sets its own)
    batch_size: int = 100       # images per Adam step
    lr: float = 1e-3            # Adam learning rate
    seed: int = 0               # seeds parameters, shuffling, noise and the validation split
    device: str = "cpu"         # "cpu" or "cuda"
    out: str = "runs/model"     # output directory: checkpoints, metrics, pictures
    log_every: int = 10         # steps between train records in metrics.jsonl
    progress: bool = True       # show a tqdm progress bar
    val_fraction: float = 0.1   # share of the training data held out for model selection

    def validate(self):
        """Raise one ValueError listing every setting out of range (before any work starts)."""
        problems = []
        for name, low in (("epochs", 1), ("batch_size", 1), ("log_every", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                problems.append(f"{name} must be an int, got {value!r}")
            elif value < low:
                problems.append(f"{name} must be >= {low}, got {value}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            problems.append(f"lr must be a finite number > 0, got {self.lr}")
        if not (isinstance(self.val_fraction, (int, float)) and
                0.0 <= self.val_fraction < 1.0):
            problems.append(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.device not in ("cpu", "cuda"):
            problems.append(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass
class _State:
    phase: int = 0          # index of the phase in progress
    epoch: int = 0          # epochs completed in that phase
    step: int = 0           # optimizer steps over the whole run
    best: dict = field(default_factory=dict)   # phase name -> best selection value
    seconds: float = 0.0    # wall time of fit() up to this state, summed over resumed parts


class Trainer:
    """Runs the phases of ``model`` on ``train_arrays`` (a tuple of arrays sharing axis 0).

    ``model`` is a :class:`tinygen.nn.Module` with ``model_name`` and ``config`` attributes (the
    models of :mod:`tinygen.models`); ``phases`` its list of :class:`Phase`.
    """

    def __init__(self, model, phases, train_arrays, config: TrainConfig, *, extra=None):
        config.validate()
        self.model = model
        self.phases = list(phases)
        if not self.phases:
            raise ValueError("a model must define at least one training phase")
        self.train_arrays = tuple(train_arrays)
        self.config = config
        self.extra = dict(extra or {})     # saved with every checkpoint (e.g. data description)
        self.out = config.out
        self.metrics_path = os.path.join(self.out, "metrics.jsonl")
        self.last_path = os.path.join(self.out, "last.ckpt")
        self.best_path = os.path.join(self.out, "best.ckpt")
        self.rng = np.random.default_rng([config.seed, 1])
        self.state = _State()
        self.optimizer = None      # the phase's Adam (phases with a loss)
        self.optimizers = None     # name -> Adam (phases with their own step)
        self.history = []          # the records written to metrics.jsonl in this process
        self._clock = None         # (perf_counter at the start of fit, state.seconds then)

    # -- checkpoints -----------------------------------------------------------------------------
    def train_seconds(self) -> float:
        """Wall time spent in :meth:`fit` over the whole run: the parts before a ``--resume``
        (recorded in the checkpoint it resumed from) plus the current one."""
        if self._clock is None:
            return self.state.seconds
        start, before = self._clock
        return before + time.perf_counter() - start

    def checkpoint_payload(self) -> dict:
        return {
            "model": self.model.model_name,
            "model_config": asdict(self.model.config),
            "train_config": asdict(self.config),
            "state_dict": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "optimizers": ({k: o.state_dict() for k, o in self.optimizers.items()}
                           if self.optimizers is not None else None),
            "trainer": {**asdict(self.state), "seconds": self.train_seconds()},
            "rng": {"tinygen": tg_random.get_rng_state(), "numpy": self.rng.bit_generator.state},
            "extra": self.extra,
        }

    def _restore(self, path):
        ckpt = check_model_checkpoint(load_checkpoint(path), path, resume=True)
        if ckpt["model"] != self.model.model_name:
            raise ValueError(f"--resume: checkpoint {path!r} holds model {ckpt['model']!r}, not "
                             f"{self.model.model_name!r}")
        if ckpt["model_config"] != asdict(self.model.config):
            raise ValueError(f"--resume: checkpoint {path!r} was trained with model options "
                             f"{ckpt['model_config']}, not {asdict(self.model.config)}")
        try:
            self.model.load_state_dict(ckpt["state_dict"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path}: its weights do not fit model "
                                  f"{self.model.model_name!r} ({' '.join(str(e).split())})") \
                from None
        # the data order depends on the seed and the batch size: the checkpoint's win (epochs,
        # lr and the output directory may change, e.g. to train longer)
        saved = ckpt["train_config"]
        self.config.seed, self.config.batch_size = saved["seed"], saved["batch_size"]
        self.state = _State(**ckpt["trainer"])
        tg_random.set_rng_state(ckpt["rng"]["tinygen"])
        self.rng.bit_generator.state = ckpt["rng"]["numpy"]
        return ckpt

    def _truncate_metrics(self, step):
        """Keep only the records up to ``step`` (a resumed run rewrites what came after)."""
        if not os.path.exists(self.metrics_path):
            return
        kept, torn = [], 0
        with open(self.metrics_path) as f:
            for line in f:
                try:
                    record = json.loads(line)
                    keep = record["step"] <= step
                except (ValueError, KeyError, TypeError):   # a record cut short (kill, disk full)
                    torn += 1
                    continue
                if keep:
                    kept.append(line if line.endswith("\n") else line + "\n")
        if torn:
            print(f"tinygen: dropped {torn} incomplete record(s) from {self.metrics_path}",
                  file=sys.stderr)
        with atomic_write(self.metrics_path, "w") as f:
            f.writelines(kept)

    def log(self, record: dict):
        """Append one record (a dict with at least ``kind`` and ``step``) to metrics.jsonl."""
        self.history.append(record)
        os.makedirs(self.out, exist_ok=True)
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    # -- the loop --------------------------------------------------------------------------------
    def fit(self, resume=None):
        """Train every phase (from ``resume``, a checkpoint path, if given). Returns the list of
        validation records."""
        from ..data import BatchIterator

        _memory.tune_malloc()   # freed activations stay in the heap (see tinygen/_memory.py)
        os.makedirs(self.out, exist_ok=True)
        ckpt = None
        if resume is not None:
            ckpt = self._restore(resume)
            self._truncate_metrics(self.state.step)
        elif os.path.exists(self.metrics_path):
            os.remove(self.metrics_path)
        self._clock = (time.perf_counter(), self.state.seconds)
        device = self.config.device
        for index, phase in enumerate(self.phases):
            if index < self.state.phase:
                continue
            epochs = self.config.epochs if phase.epochs is None else phase.epochs
            lr = self.config.lr if phase.lr is None else phase.lr
            resuming = ckpt is not None and index == self.state.phase
            if phase.step is None:
                params = list(phase.parameters())
                self.optimizer = make_optimizer(phase.optimizer, params, lr,
                                                **phase.optimizer_options)
                self.optimizers = None
                if resuming and ckpt["optimizer"] is not None:
                    self.optimizer.load_state_dict(ckpt["optimizer"])
            else:
                params = None
                self.optimizer = None
                self.optimizers = {k: make_optimizer(spec.kind, list(spec.parameters()),
                                                     lr if spec.lr is None else spec.lr,
                                                     **_spec_options(spec))
                                   for k, spec in phase.optimizers.items()}
                saved = ckpt.get("optimizers") if resuming else None
                if saved is not None:
                    if set(saved) != set(self.optimizers):
                        raise ValueError(f"--resume: the checkpoint has optimizers "
                                         f"{sorted(saved)}, phase {phase.name!r} has "
                                         f"{sorted(self.optimizers)}")
                    for k, opt in self.optimizers.items():
                        opt.load_state_dict(saved[k])
            ckpt = None
            batches = BatchIterator(*self.train_arrays, batch_size=self.config.batch_size,
                                    shuffle=True, seed=self.config.seed * 1000 + index)
            batches.epoch = self.state.epoch
            self._base_lr, self._total_steps = lr, epochs * len(batches)
            self._first_loss, self._warned_growth = None, False
            while self.state.epoch < epochs:
                self._run_epoch(phase, epochs, batches, params, device)
                self.state.epoch += 1
                self._end_of_epoch(phase)
            if index + 1 < len(self.phases):   # the last phase stays "in progress", so a
                self.state.phase, self.state.epoch = index + 1, 0   # resume can extend it
                save_checkpoint(self.last_path, self.checkpoint_payload())
        self.state.seconds, self._clock = self.train_seconds(), None
        return [r for r in self.history if r["kind"] == "val"]

    def _run_epoch(self, phase, epochs, batches, params, device):
        from tqdm.auto import tqdm

        self.model.train()
        label = f"{phase.name} {self.state.epoch + 1}/{epochs}" if len(self.phases) > 1 else \
            f"epoch {self.state.epoch + 1}/{epochs}"
        bar = tqdm(batches, desc=label, leave=False, disable=not self.config.progress,
                   dynamic_ncols=True)
        total, count, seen, t_epoch = 0.0, 0, 0, time.perf_counter()
        window = []
        for index, batch in enumerate(bar):
            t0 = time.perf_counter()
            if phase.prepare is not None:      # host-side data preparation, before the device
                batch = tuple(phase.prepare(batch, self.rng))
            batch_t = tuple(tensor(a, device=device) for a in batch)
            if phase.step is None:
                loss, stats = phase.loss(batch_t, self.rng)
                value = float(loss)
                self._check_finite(phase, "loss", value)
                self.optimizer.zero_grad()
                loss.backward()
                if phase.clip_grad_norm is not None:
                    stats = {**stats, "grad_norm": float(clip_grad_norm_(params,
                                                                         phase.clip_grad_norm))}
                if phase.lr_schedule is not None:
                    step_in_phase = self.state.epoch * len(batches) + index
                    factor = phase.lr_schedule(step_in_phase, self._total_steps)
                    for group in self.optimizer.param_groups:
                        group["lr"] = self._base_lr * factor
                self.optimizer.step()
                if phase.after_step is not None:
                    with no_grad():
                        phase.after_step(self.state.step + 1)
            else:
                stats = dict(phase.step(batch_t, self.rng, self.optimizers))
                if "loss" not in stats:
                    raise ValueError(f"phase {phase.name!r}: step() must return stats with a "
                                     f"'loss' entry, got keys {sorted(stats)}")
                for k, v in stats.items():
                    self._check_finite(phase, k, float(v))
                value = float(stats.pop("loss"))
            if self._first_loss is None:
                self._first_loss = value
            self.state.step += 1
            n = len(batch[0])
            total, count, seen = total + value * n, count + n, seen + n
            dt = time.perf_counter() - t0
            window.append((value, n, dt))
            bar.set_postfix(loss=f"{value:.4f}", img_s=f"{n / dt:.0f}")
            if self.state.step % self.config.log_every == 0:
                vals, ns, dts = zip(*window)
                rec = {"kind": "train", "phase": phase.name, "epoch": self.state.epoch + 1,
                       "step": self.state.step, "loss": float(np.average(vals, weights=ns)),
                       "images_per_s": sum(ns) / sum(dts)}
                rec.update({k: float(v) for k, v in stats.items()})
                self.log(rec)
                window = []
        bar.close()
        seconds = time.perf_counter() - t_epoch
        self._epoch_summary = {"kind": "epoch", "phase": phase.name, "epoch": self.state.epoch + 1,
                               "step": self.state.step, "loss": total / max(count, 1),
                               "images_per_s": seen / seconds, "seconds": seconds}

    def _check_finite(self, phase, what, value):
        if not math.isfinite(value):
            where = (f"the last good checkpoint is {self.last_path}"
                     if os.path.exists(self.last_path) else "no checkpoint was written yet")
            raise TrainingDiverged(
                f"training stopped: the {phase.name} {what} is {value} at step "
                f"{self.state.step + 1} (epoch {self.state.epoch + 1}); {where}. Try a "
                f"smaller --lr.")

    def _end_of_epoch(self, phase):
        summary = self._epoch_summary
        self._warn_if_loss_grew(phase, summary["loss"])
        self.log(summary)
        line = (f"[{phase.name}] epoch {summary['epoch']}: loss {summary['loss']:.5f}, "
                f"{summary['images_per_s']:.0f} img/s")
        improved = False
        if phase.evaluate is not None:
            self.model.eval()
            with no_grad():
                metrics = {k: float(v) for k, v in phase.evaluate().items()}
            self.model.train()
            self.log({"kind": "val", "phase": phase.name, "epoch": summary["epoch"],
                      "step": self.state.step, **metrics})
            line += ", " + ", ".join(f"val {k} {v:.5f}" for k, v in metrics.items())
            if phase.select is not None:
                value = metrics[phase.select]
                best = self.state.best.get(phase.name)
                if best is None or value < best:
                    self.state.best[phase.name] = value
                    improved = True
        if phase.after_epoch is not None:
            self.model.eval()
            with no_grad():
                phase.after_epoch(summary["epoch"], self.out)
            self.model.train()
        print(line, flush=True)
        payload = self.checkpoint_payload()
        save_checkpoint(self.last_path, payload)
        if improved:
            save_checkpoint(self.best_path, payload)

    def _warn_if_loss_grew(self, phase, loss):
        """Warn (once per phase) when the epoch's mean loss is more than 1000 times the
        phase's first-step loss: training is diverging without reaching NaN (e.g. --lr 1e6)."""
        first = self._first_loss
        if self._warned_growth or first is None or not first > 0 or not loss > 1e3 * first:
            return
        self._warned_growth = True
        print(f"tinygen: warning: the {phase.name} loss grew from {first:.4g} (first step) to "
              f"{loss:.4g} (epoch {self.state.epoch} mean); training is diverging, try a smaller "
              f"--lr", file=sys.stderr, flush=True)

    def load_best(self):
        """Load the best validation checkpoint's weights into the model (model selection);
        returns False when there is none (no validation split)."""
        if not os.path.exists(self.best_path):
            return False
        best = load_checkpoint(self.best_path)
        run_id = self.extra.get("run_id")
        if run_id is not None and (best.get("extra") or {}).get("run_id") != run_id:
            return False       # a best.ckpt of another run: never mix it into this one
        self.model.load_state_dict(best["state_dict"])
        return True


def _spec_options(spec) -> dict:
    """Keyword arguments of the optimizer an :class:`OptimizerSpec` describes."""
    if spec.kind == "sgd":
        return {"momentum": spec.momentum, "weight_decay": spec.weight_decay}
    return {"betas": tuple(spec.betas), "weight_decay": spec.weight_decay}
