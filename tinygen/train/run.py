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
import sys
from dataclasses import asdict

import numpy as np

from .. import random as tg_random
from ..checkpoint import atomic_write, check_model_checkpoint, load_checkpoint, save_checkpoint
from ..models.registry import build_model, get_model_class, model_from_checkpoint  # noqa: F401
from .loop import TrainConfig, Trainer


def _prefixed(prefix, metrics):
    return {f"{prefix}_{k}": v for k, v in metrics.items()}


def final_metrics(model, data) -> dict:
    """Metrics of ``model`` on the validation and test sets (:meth:`evaluate`), with the
    model's baselines (:meth:`extra_metrics`, e.g. PCA at the same d for the autoencoders) and,
    on the held-out split (the test set if there is one), the scoring classifier's judgement
    of its samples (:meth:`sample_quality`)."""
    out = {}
    for split, ds in (("val", data.val), ("test", data.test)):
        if ds is None:
            continue
        model.eval()
        out.update(_prefixed(split, model.evaluate(ds)))
        out.update(model.extra_metrics(data, split, ds))
        if ds is data.heldout:
            out.update(_prefixed(split, model.sample_quality(ds)))
    return out


# settings that fix the data a run sees (split, order): a resumed run keeps its checkpoint's
DATA_SETTINGS = ("seed", "batch_size", "val_fraction")


def _flag(name) -> str:
    return "--" + name.replace("_", "-")


def _recorded_data(ckpt):
    """The data argument a checkpoint's run was trained with: the :class:`DataSource` it
    recorded (MNIST), else the path it recorded (a text file, or None)."""
    from ..data import DataSource

    desc = (ckpt.get("extra") or {}).get("data") or {}
    if "data_source" in desc:
        return DataSource(desc.get("data_dir"), desc["data_source"])
    return desc.get("data_dir")


def _same_path(a, b) -> bool:
    return a is not None and b is not None and os.path.abspath(a) == os.path.abspath(b)


def resume_conflicts(ckpt, train_config, options, data_dir, given=None) -> list:
    """The settings the user gave that differ from the checkpoint a run resumes: data
    settings (:data:`DATA_SETTINGS`, ``--data``) and model options. ``given`` names the
    TrainConfig fields set explicitly (None: all are compared)."""
    conflicts = []
    saved = ckpt["train_config"]
    for key in DATA_SETTINGS:
        if (given is None or key in given) and key in saved and \
                getattr(train_config, key) != saved[key]:
            conflicts.append(f"{_flag(key)} {getattr(train_config, key)} (checkpoint: "
                             f"{saved[key]})")
    if data_dir:
        recorded = _recorded_data(ckpt)
        directory = getattr(recorded, "directory", recorded)
        if not _same_path(data_dir, directory):
            conflicts.append(f"--data {data_dir} (checkpoint: "
                             f"{directory or 'the embedded digits'})")
    for key, value in (options or {}).items():
        if key in ckpt["model_config"] and ckpt["model_config"][key] != value:
            conflicts.append(f"{_flag(key)} {value} (checkpoint: {ckpt['model_config'][key]})")
    return conflicts


def check_run_data(model, data, train_config):
    """Mistakes that would otherwise show only after training: no training data left by
    ``--val-fraction``, the model's own check (``model.check_data``, e.g. a latent size
    beyond what PCA can fit) and a ``--classifier`` checkpoint that does not load."""
    if data.train is None or len(data.train) == 0:
        raise ValueError(f"--val-fraction {train_config.val_fraction} leaves no training data "
                         f"(the training set has "
                         f"{0 if data.train is None else len(data.train)} items)")
    if train_config.val_fraction > 0 and (data.val is None or len(data.val) == 0):
        raise ValueError(f"--val-fraction {train_config.val_fraction} leaves an empty validation "
                         f"split; use a larger fraction or 0 (no model selection)")
    model.check_data(data)
    if model.scored_samples or hasattr(model.config, "classifier"):
        check_classifier(model)


def check_classifier(model):
    """Load the scoring classifier ``model`` will use now, not after training or evaluation:
    a checkpoint that does not load is one ValueError naming ``--classifier``."""
    try:
        model.scoring_classifier()
    except (ValueError, OSError) as e:
        raise ValueError(f"--classifier: {' '.join(str(e).split())}") from None


def machine_description(device="cpu") -> dict:
    """Where a run trained (recorded in config.json; ``tinygen report`` shows ``summary``)."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    cores = os.cpu_count() or 0
    # the thread limit the CPU kernels and BLAS follow (the first one set, as kernels/cpu does)
    threads = next((os.environ[v].strip() for v in ("TINYGEN_NUM_THREADS", "OMP_NUM_THREADS",
                                                     "OPENBLAS_NUM_THREADS")
                    if os.environ.get(v, "").strip()), None)
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    summary = (f"{cores}-core {cpu}" + (f", {threads} thread{'s' if threads != '1' else ''}"
                                        if threads else "")
               + ("" if device == "cpu" else f", {device}"))
    return {"summary": summary, "cpu": cpu, "cores": cores, "threads": threads,
            "load_average_at_start": load, "device": device,
            "python": platform.python_version(), "numpy": np.__version__}


def code_description() -> dict:
    """Which code trained a run (recorded in config.json): the tinygen version and, when the
    package is imported from a git checkout, its commit and whether files differed from it.
    Read with ``git`` when it is installed; nothing else is run."""
    import subprocess

    from .. import __version__

    out = {"tinygen": __version__}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        def git(*args):
            return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        out["git_commit"] = git("rev-parse", "HEAD")
        out["git_dirty"] = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        pass                                   # not a checkout, or no git: the version only
    return out


def train_model(name, train_config: TrainConfig, options=None, data_dir=None, resume=None,
                pictures=True, overwrite=False, given=None, classifier=None):
    """Train model ``name``; returns the results dict (also written to results.json).

    Everything is checked before any file is written: the settings, the resumed checkpoint,
    the data, the output directory. The run directory's rules (:mod:`tinygen.train.rundir`):
    a directory holding another run is refused unless ``overwrite``. A resumed run keeps the
    checkpoint's model options and data settings (:data:`DATA_SETTINGS` and the data
    source); a setting the user gave (``given``: names of TrainConfig fields set explicitly,
    None: all) that differs is refused with the list of conflicts. ``classifier`` (a path or
    ``"none"``) replaces the scoring classifier that judges the samples after training.
    """
    from .rundir import new_run_id, prepare_run_directory

    train_config.validate()
    get_model_class(name)
    ckpt, run_id = None, new_run_id()
    if resume is not None:
        ckpt = check_model_checkpoint(load_checkpoint(resume), resume, resume=True)
        if ckpt["model"] != name:
            raise ValueError(f"--resume: {resume} is a checkpoint of {ckpt['model']!r}, not "
                             f"{name!r}")
        conflicts = resume_conflicts(ckpt, train_config, options, data_dir, given)
        if conflicts:
            raise ValueError(f"--resume {resume}: a resumed run keeps its checkpoint's data and "
                             f"model settings; these options differ from it: "
                             f"{'; '.join(conflicts)} (leave them out, or start a new run)")
        for key in DATA_SETTINGS:
            if key in ckpt["train_config"]:
                setattr(train_config, key, ckpt["train_config"][key])
        options = dict(ckpt["model_config"])
        data_dir = _recorded_data(ckpt)
        run_id = (ckpt.get("extra") or {}).get("run_id") or run_id
    tg_random.manual_seed(train_config.seed)
    model = build_model(name, options)
    if classifier is not None:
        model.use_classifier(classifier)
    if train_config.device != "cpu":
        model.to(device=train_config.device)
    data, desc = model.load_data(data_dir, train_config.val_fraction, train_config.seed)
    check_run_data(model, data, train_config)
    out = train_config.out
    for note in prepare_run_directory(out, resume=resume, resume_checkpoint=ckpt,
                                      overwrite=overwrite):
        print(f"tinygen: {note}", file=sys.stderr)
    with atomic_write(os.path.join(out, "config.json"), "w") as f:
        json.dump({"model": name, "run_id": run_id, "model_config": asdict(model.config),
                   "train_config": asdict(train_config), "data": desc,
                   "machine": machine_description(train_config.device),
                   "code": code_description()}, f, indent=2)
    trainer = Trainer(model, model.phases(data), (data.train.images, data.train.labels),
                      train_config, extra={"data": desc, "run_id": run_id})
    trainer.fit(resume=resume)
    seconds = trainer.train_seconds()      # every part of a resumed run, not only this one
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


def evaluate_checkpoint(path, data_dir=None, device="cpu", classifier=None,
                        samples=None, scores_only=False, settings=None) -> dict:
    """Metrics of a checkpoint on the MNIST test set of ``data_dir``, else of $TINYGEN_DATA,
    else of the data the checkpoint was trained with; without a test set, on its validation
    split (the same seeded split as in training). ``classifier`` (a checkpoint path or
    ``"none"``) replaces the scoring classifier the model would use, ``samples`` the number
    of samples it judges; ``scores_only`` reports only the classifier's judgement of the samples
    (:meth:`sample_quality`), skipping the model's own metrics (an importance-weighted NLL can
    take many minutes); ``settings`` (``KEY=VALUE`` strings, see
    :func:`tinygen.models.registry.parse_settings`) change options of the stored model first
    (e.g. ``eta=1`` for a DDPM's sampler)."""
    from ..data import ENV_VAR

    model, ckpt = model_from_checkpoint(path, device, settings)
    overrides = ckpt.get("settings")
    if scores_only and not model.scored_samples:
        raise ValueError(f"--scores-only: model {ckpt['model']!r} has no separate sample scores "
                         f"(GANs and DDPM score their samples in their evaluation; leave "
                         f"--scores-only out)")
    if classifier is not None:
        model.use_classifier(classifier)
        check_classifier(model)
    if samples is not None:
        model.use_scored_samples(samples)
    desc = (ckpt.get("extra") or {}).get("data") or {}
    source = data_dir or (None if os.environ.get(ENV_VAR) else _recorded_data(ckpt))
    data, _ = model.load_data(source, desc.get("val_fraction", 0.1), desc.get("split_seed", 0))
    if data.test is not None:
        data.val = None        # report on the test set only
    if data.heldout is None:
        raise ValueError(f"{path}: nothing to evaluate on: the run used --val-fraction 0 and "
                         f"no test set is available; pass --data DIR with the MNIST test files "
                         f"(t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz])")
    if scores_only:
        split = "test" if data.test is not None else "val"
        model.eval()
        metrics = _prefixed(split, model.sample_quality(data.heldout))
    else:
        metrics = final_metrics(model, data)
    return {"checkpoint": os.fspath(path), "model": ckpt["model"],
            "split": "test" if data.test is not None else "validation",
            "size": len(data.heldout), **({"settings": overrides} if overrides else {}),
            **metrics}


def sample_checkpoint(path, n=64, out=None, seed=0, device="cpu", settings=None) -> str:
    """Draw ``n`` samples from a checkpoint's model and save them (a PNG grid for image
    models; see :meth:`GenerativeModel.save_samples`)."""
    if n < 1:
        raise ValueError(f"-n must be >= 1, got {n}")
    if out is not None and os.path.isdir(out):
        raise IsADirectoryError(21, "--out is a directory; name a .png file", os.fspath(out))
    model, ckpt = model_from_checkpoint(path, device, settings)
    if not model.can_sample:
        raise ValueError(f"model {ckpt['model']!r} is a classifier and does not generate samples")
    out = out or os.path.join(os.path.dirname(os.path.abspath(path)), "samples.png")
    return model.save_samples(n, np.random.default_rng(seed), out)


def export_checkpoint(path, out, device="cpu") -> dict:
    """Write a weights-only copy of checkpoint ``path`` to ``out``: the model's name, options
    and weights (what :func:`tinygen.models.registry.model_from_checkpoint` rebuilds it from),
    without optimizer state, random-number state or trainer position -- about a third of a
    training checkpoint's size, for sharing and for package data (the shipped scoring
    classifier is such a file). The weights are checked to rebuild the model first. An existing
    ``out`` is never replaced (FileExistsError). Returns the written record's ``extra``."""
    if os.path.lexists(out):
        raise FileExistsError(17, "exists; tinygen export never replaces a file, choose another "
                              "name", os.fspath(out))
    _, ckpt = model_from_checkpoint(path, device)
    extra = {**(ckpt.get("extra") or {}), "exported_from": os.path.basename(os.fspath(path)),
             "final": bool(ckpt.get("final", False))}
    save_checkpoint(out, {"model": ckpt["model"], "model_config": ckpt["model_config"],
                          "state_dict": ckpt["state_dict"], "extra": extra})
    return extra


EVAL_KEYS = ("checkpoint", "model", "split", "size")


def write_eval_json(result: dict, out) -> str:
    """Write ``tinygen eval``'s ``result`` as JSON to ``out`` (``tinygen report`` reads a run's
    ``eval.json`` beside its ``results.json``). A file that exists is replaced only when it is
    itself an earlier ``tinygen eval`` result; anything else there is refused
    (FileExistsError), so no other file is lost."""
    out = os.fspath(out)
    if os.path.lexists(out):
        try:
            with open(out) as f:
                old = json.load(f)
            earlier = isinstance(old, dict) and all(k in old for k in EVAL_KEYS)
        except (OSError, ValueError):
            earlier = False
        if not earlier:
            raise FileExistsError(17, "exists and is not an earlier tinygen eval result; "
                                  "choose another --out", out)
    with atomic_write(out, "w") as f:
        json.dump(result, f, indent=2)
    return out
