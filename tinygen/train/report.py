"""``tinygen report``: one markdown table of finished runs, across every model family.

Each run directory (written by :func:`tinygen.train.run.train_model`) holds ``config.json``
(model, options, training settings, data description) and ``results.json`` (test/validation
metrics, training seconds); an ``eval.json`` beside them (``tinygen eval RUN/model.ckpt --out
RUN/eval.json``, e.g. with a newer tinygen that reports more) adds its metrics and wins where
both have one. A row gives the model, the command that reproduces the run (the
options that differ from the model's defaults), the training data, the headline test metrics in
the family's unit, the wall time, the machine, and a reference (PyTorch on the same recipe where
it was measured, else the paper).

Writing over an existing report keeps everything after the line :data:`NOTES_MARKER`, so
hand-written reading notes can follow the generated table.
"""
from __future__ import annotations

import json
import os
from dataclasses import fields

__all__ = ["find_runs", "read_run", "render", "write_report", "NOTES_MARKER", "REFERENCES",
           "SAME_RECIPE"]

NOTES_MARKER = "<!-- notes below this line are kept when the table is regenerated -->"

# headline metrics, in this order: (results key, ``{split}`` standing for "test" or "val";
# column label; format). Baselines fitted beside a model name the split inside their key.
HEADLINE = [
    ("{split}_mse", "MSE", "{:.4f}"),
    ("{split}_nll_nats", "NLL (nats)", "{:.2f}"),
    ("{split}_elbo_nats", "ELBO (nats)", "{:.2f}"),
    ("{split}_bits_per_dim", "bits/dim", "{:.3f}"),
    ("{split}_bits_per_char", "bits/char", "{:.3f}"),
    ("{split}_error", "error", "{:.2%}"),
    ("{split}_scratch_error", "same MLP from scratch: error", "{:.2%}"),
    ("{split}_class_entropy", "class entropy", "{:.3f}"),
    ("{split}_fid_classifier", "Fréchet (classifier)", "{:.1f}"),
    ("{split}_label_accuracy", "label accuracy", "{:.1%}"),
    ("{split}_cond_accuracy", "label accuracy", "{:.1%}"),
    ("{split}_frechet_2d", "Fréchet 2-D", "{:.3f}"),
    ("{split}_vb_bits_per_dim", "VB bits/dim", "{:.3f}"),
    ("{split}_simple_loss", "simple loss", "{:.4f}"),
    ("pca_{split}_mse", "PCA (same d): MSE", "{:.4f}"),
]

# what each model is compared with: a PyTorch run of the same recipe, measured by us (shown
# only beside a run of that recipe: the model's defaults, evaluation-only options aside), and
# the papers or the goal of the issue that asked for the model
SAME_RECIPE = {
    "conv-ae": "PyTorch, same recipe: test MSE 0.0206",
    "vae": "PyTorch, same recipe: 99.30 nats (k = 1000)",
}
REFERENCES = {
    "vae": "IWAE paper, 1 layer: 86.76",
    "realnvp": "Real NVP paper (dequantized MNIST): 1.06 bits/dim",
    "pixelrnn-row": "PixelRNN paper (static binarization): Row LSTM 80.54 nats",
    "pixelrnn-diag": "PixelRNN paper: Diagonal BiLSTM (7 layers) 79.20 nats",
    "m1m2": "Kingma et al. 2014, 100 labels: 3.33% error",
    "m1": "Kingma et al. 2014 (M1 + TSVM, 100 labels): 11.82% error",
    "classifier": "goal: >= 97% test accuracy",
    "dcgan": "goal: class entropy >= 2.2 (log 10 = 2.30)",
    "ddpm": "goal: Fréchet (classifier) < 50; real vs real 5.6",
    "char-rnn": "",
}
# options that change how a run is evaluated, not what it trains
EVALUATION_OPTIONS = {"iw_samples", "classifier", "eval_samples", "vb_images", "vb_timesteps"}


def find_runs(paths, skipped=None) -> list:
    """Run directories among ``paths``: each path that holds ``results.json``, else its
    immediate subdirectories that do (sorted). A path with no finished run is an error when it
    is the only one; among several (``runs/*`` with a run still training) it is left out and
    appended to ``skipped`` when a list is given."""
    paths = [os.fspath(p) for p in paths]
    runs, empty = [], []
    for path in paths:
        if not os.path.isdir(path):
            raise ValueError(f"report: {path!r} is not a directory")
        if os.path.exists(os.path.join(path, "results.json")):
            runs.append(path)
            continue
        subs = sorted(os.path.join(path, d) for d in os.listdir(path)
                      if os.path.exists(os.path.join(path, d, "results.json")))
        if not subs:
            empty.append(path)
        runs.extend(subs)
    if not runs:
        raise ValueError(f"report: {empty[0]!r} holds no finished run (no results.json in it or "
                         f"in its subdirectories)")
    if skipped is not None:
        skipped.extend(empty)
    return runs


def _load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"report: cannot read {path}: {e}") from None


def _changed_options(config) -> dict:
    """The options of a run that differ from its model's defaults (model and training options,
    in that order): name -> value."""
    from ..models.registry import get_model_class
    from .loop import TrainConfig

    try:
        cls = get_model_class(config.get("model", "?"))
        defaults = {f.name: f.default for f in fields(cls.Config)}
        train_defaults = {**TrainConfig().__dict__, **cls.train_defaults}
    except ValueError:
        defaults, train_defaults = {}, TrainConfig().__dict__
    changed = {key: value for key, value in config.get("model_config", {}).items()
               if key in defaults and defaults[key] != value}
    for key in ("epochs", "batch_size", "lr", "seed", "val_fraction", "device"):
        value = config.get("train_config", {}).get(key)
        if value is not None and value != train_defaults.get(key):
            changed[key] = value
    return changed


def _command(config) -> str:
    """The ``tinygen train`` command of a run: the options that differ from the defaults
    (a flag as ``--name`` or ``--no-name``)."""
    parts = [f"tinygen train {config.get('model', '?')}"]
    for key, value in _changed_options(config).items():
        flag = key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            parts.append(f"--{flag} {value}")
    data = config.get("data", {})
    if data.get("data_dir"):
        parts.append(f"--data {data['data_dir']}")
    return " ".join(parts)


def _reference(config) -> str:
    """The reference column: the PyTorch run of the same recipe (only for a run of that
    recipe) and the paper or goal."""
    name = config.get("model", "")
    texts = [REFERENCES.get(name, "")]
    same = SAME_RECIPE.get(name)
    if same and not set(_changed_options(config)) - EVALUATION_OPTIONS:
        texts.insert(0, same)
    return "; ".join(t for t in texts if t)


def read_run(run_dir) -> dict:
    """One row of the report from a run directory."""
    config = _load_json(os.path.join(run_dir, "config.json"))
    results = _load_json(os.path.join(run_dir, "results.json"))
    evaluated = os.path.join(run_dir, "eval.json")
    if os.path.exists(evaluated):
        results = {**results, **_load_json(evaluated)}
    split = "test" if any(k.startswith("test_") for k in results) else "val"
    metrics = []
    for key, label, fmt in HEADLINE:
        value = results.get(key.format(split=split))
        if isinstance(value, (int, float)):
            metrics.append(f"{label} {fmt.format(value)}")
    data = config.get("data", {})
    train = data.get("train", "?")
    sizes = f"{data.get('train_size', '?')} train / {data.get(f'{split}_size', '?')} {split}"
    seconds = results.get("train_seconds")
    machine = config.get("machine") or {}
    command = _command(config)
    if isinstance(results.get("settings"), dict) and results["settings"]:
        command += "; evaluated with " + " ".join(
            f"--set {k.replace('_', '-')}={v}" for k, v in results["settings"].items())
    return {
        "model": config.get("model", "?"),
        "command": command,
        "data": f"{train} ({sizes})",
        "metrics": ", ".join(metrics) or "-",
        "split": split,
        "time": "-" if seconds is None else f"{seconds / 60:.1f} min",
        "machine": machine.get("summary", "-") if isinstance(machine, dict) else str(machine),
        "reference": _reference(config),
        "dir": os.fspath(run_dir),
    }


def render(rows) -> str:
    """The markdown table of ``rows`` (from :func:`read_run`)."""
    head = ("| model | command | training data | metrics (split) | training time | machine | "
            "reference |")
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [r["model"], f"`{r['command']}`", r["data"], f"{r['metrics']} ({r['split']})",
                 r["time"], r["machine"], r["reference"] or "-"]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(paths, out=None, title="Results", skipped=None) -> str:
    """Render the runs under ``paths``; write them to ``out`` (keeping the notes after
    :data:`NOTES_MARKER` of an existing file) or return the markdown when ``out`` is None.
    Paths without a finished run are appended to ``skipped`` (see :func:`find_runs`)."""
    from .._fileio import atomic_write

    rows = [read_run(r) for r in find_runs(paths, skipped)]
    text = (f"# {title}\n\nGenerated by `tinygen report` from {len(rows)} run"
            f"{'s' if len(rows) != 1 else ''}; every number is that run's `results.json` (or its "
            f"`eval.json`, written by `tinygen eval RUN/model.ckpt --out RUN/eval.json`).\n\n"
            + render(rows))
    if out is None:
        return text
    notes = ""
    if os.path.exists(out):
        with open(out) as f:
            old = f.read()
        if NOTES_MARKER in old:
            notes = old[old.index(NOTES_MARKER) + len(NOTES_MARKER):]
    with atomic_write(out, "w") as f:
        f.write(text + "\n" + NOTES_MARKER + notes)
    return text
