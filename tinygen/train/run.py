"""Whole runs: train a named model on MNIST and write everything a user looks at afterwards;
evaluate or sample from a checkpoint. The command line (:mod:`tinygen.cli`) is a thin layer over
these functions, which never parse argv.

Output directory of :func:`train_model`::

    config.json         model and training options, data description
    metrics.jsonl       train / epoch / val records (see tinygen.train.loop)
    last.ckpt           after every epoch (resume from it)
    best.ckpt           best validation epoch (model selection)
    model.ckpt          the final model (best weights, fitted sampling distribution)
    results.json        final metrics on the validation and test sets, baselines, seconds
    loss.png, reconstructions.png, interpolations.png, samples.png, ...
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict

import numpy as np

from .. import random as tg_random
from ..checkpoint import atomic_write, load_checkpoint, save_checkpoint
from ..models.registry import build_model, get_model_class, model_from_checkpoint  # noqa: F401
from .loop import TrainConfig, Trainer


def _prefixed(prefix, metrics):
    return {f"{prefix}_{k}": v for k, v in metrics.items()}


def final_metrics(model, data) -> dict:
    """Metrics of ``model`` on the validation and test sets (:meth:`evaluate`), with the
    model's baselines (:meth:`extra_metrics`, e.g. PCA at the same d for the autoencoders)."""
    out = {}
    for split, ds in (("val", data.val), ("test", data.test)):
        if ds is None:
            continue
        model.eval()
        out.update(_prefixed(split, model.evaluate(ds)))
        out.update(model.extra_metrics(data, split, ds))
    return out


def train_model(name, train_config: TrainConfig, options=None, data_dir=None, resume=None,
                pictures=True):
    """Train model ``name``; returns the results dict (also written to results.json)."""
    train_config.validate()
    cls = get_model_class(name)
    if resume is not None:   # the checkpoint's options win; say so if the user gave others
        ckpt = load_checkpoint(resume)
        if ckpt["model"] != name:
            raise ValueError(f"--resume: {resume!r} is a checkpoint of {ckpt['model']!r}, not "
                             f"{name!r}")
        options = {**ckpt["model_config"], **(options or {})}
    tg_random.manual_seed(train_config.seed)
    model = build_model(name, options)
    if train_config.device != "cpu":
        model.to(device=train_config.device)
    data, desc = model.load_data(data_dir, train_config.val_fraction, train_config.seed)
    out = train_config.out
    os.makedirs(out, exist_ok=True)
    with atomic_write(os.path.join(out, "config.json"), "w") as f:
        json.dump({"model": name, "model_config": asdict(model.config),
                   "train_config": asdict(train_config), "data": desc}, f, indent=2)
    trainer = Trainer(model, model.phases(data), (data.train.images, data.train.labels),
                      train_config, extra={"data": desc})
    t0 = time.perf_counter()
    trainer.fit(resume=resume)
    seconds = time.perf_counter() - t0
    selected = trainer.load_best()
    model.finish(data)
    payload = trainer.checkpoint_payload()
    payload["final"] = True
    save_checkpoint(os.path.join(out, "model.ckpt"), payload)
    results = {"model": name, "train_seconds": seconds,
               "selected": "best validation epoch" if selected else "last epoch",
               **final_metrics(model, data)}
    with atomic_write(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    if pictures:
        from .. import plots as images
        rng = np.random.default_rng(train_config.seed)
        results["pictures"] = model.pictures(out, data.heldout or data.train, rng)
        images.plot_loss_curves(trainer.metrics_path, os.path.join(out, "loss.png"),
                                title=f"{name} training")
    return results


def evaluate_checkpoint(path, data_dir=None, device="cpu") -> dict:
    """Metrics of a checkpoint on the MNIST test set (``data_dir`` or TINYGEN_DATA, else the
    directory it was trained with); without one, on its validation split."""
    from ..data import resolve_data_dir

    model, ckpt = model_from_checkpoint(path, device)
    desc = ckpt.get("extra", {}).get("data", {})
    directory = resolve_data_dir(data_dir) or desc.get("data_dir")
    data, _ = model.load_data(directory, desc.get("val_fraction", 0.1), desc.get("split_seed", 0))
    if data.test is not None:
        data.val = None        # report on the test set only
    metrics = final_metrics(model, data)
    return {"checkpoint": os.fspath(path), "model": ckpt["model"],
            "split": "test" if data.test is not None else "validation",
            "size": len(data.heldout), **metrics}


def sample_checkpoint(path, n=64, out=None, seed=0, device="cpu") -> str:
    """Draw ``n`` samples from a checkpoint's model and save them (a PNG grid for image
    models; see :meth:`GenerativeModel.save_samples`)."""
    model, ckpt = model_from_checkpoint(path, device)
    if not model.can_sample:
        raise ValueError(f"model {ckpt['model']!r} is a classifier and does not generate samples")
    if n < 1:
        raise ValueError(f"-n must be >= 1, got {n}")
    out = out or os.path.join(os.path.dirname(os.path.abspath(path)), "samples.png")
    return model.save_samples(n, np.random.default_rng(seed), out)
