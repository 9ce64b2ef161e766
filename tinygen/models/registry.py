"""The model registry: names -> classes (``tinygen list`` prints them), building a model from its
options and rebuilding one from a checkpoint. It sits in the models layer so that the trainer,
the command line and the scoring code (which loads a classifier checkpoint) all reach it
without importing each other.
"""
from __future__ import annotations

import difflib
from dataclasses import MISSING, fields

from ..checkpoint import CheckpointError, check_model_checkpoint, load_checkpoint

__all__ = ["MODELS", "register", "get_model_class", "build_model", "model_from_checkpoint",
           "model_with_weights", "option_types", "parse_settings"]

MODELS: dict = {}


def register(cls):
    """Class decorator: make a model available by its ``model_name``."""
    if cls.model_name in MODELS:
        raise ValueError(f"model name {cls.model_name!r} registered twice")
    MODELS[cls.model_name] = cls
    return cls


def get_model_class(name: str):
    """The model class registered as ``name``; a ValueError suggesting close names if none."""
    if name not in MODELS:
        close = difflib.get_close_matches(name, MODELS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} Available: {', '.join(sorted(MODELS))} "
                         f"(`tinygen list` describes them).")
    return MODELS[name]


def build_model(name: str, options: dict | None = None):
    """Instantiate model ``name`` with config ``options`` (unknown keys are errors)."""
    cls = get_model_class(name)
    known = {f.name for f in fields(cls.Config)}
    unknown = sorted(set(options or {}) - known)
    if unknown:
        raise ValueError(f"model {name!r} has no option(s) {', '.join(unknown)}; its options "
                         f"are: {', '.join(sorted(known)) or 'none'}")
    return cls(cls.Config(**(options or {})))


def option_types(cls) -> dict:
    """Option name -> the Python type a value of it is read as (the type of its default; str
    without one), for model class ``cls``: ``tinygen train``'s options and ``--set`` agree."""
    return {f.name: type(f.default) if f.default not in (MISSING, None) else str
            for f in fields(cls.Config)}


def parse_settings(name: str, pairs) -> dict:
    """``KEY=VALUE`` strings (``tinygen eval/sample --set``) as typed options of model
    ``name``: each KEY an option (dashes or underscores), each VALUE read as its type (bools:
    true/false/1/0). A ValueError names the setting that is wrong."""
    kinds = option_types(get_model_class(name))
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in kinds:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE with KEY one of the options "
                             f"of model {name!r} ({', '.join(sorted(kinds))})")
        kind = kinds[key]
        try:
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(text)
                out[key] = text.lower() in ("true", "1")
            else:
                out[key] = kind(text)
        except ValueError:
            what = {bool: "true or false", int: "an integer", float: "a number"}.get(
                kind, f"a {kind.__name__}")
            raise ValueError(f"--set {pair!r}: {key} takes {what}, got {text!r}") from None
    return out


def model_from_checkpoint(path, device="cpu", settings=None):
    """Rebuild the model stored in checkpoint ``path`` (weights and buffers loaded). A file
    that is not a usable model checkpoint (see :func:`tinygen.checkpoint.check_model_checkpoint`;
    an unknown model, options or weights that do not fit it) raises ``CheckpointError``
    naming the file. ``settings`` (``KEY=VALUE`` strings, :func:`parse_settings`) replace
    options of the stored configuration first, e.g. a sampler setting for evaluation; the
    returned record then holds them, typed, as ``ckpt["settings"]``. An option that changes
    the network's shape shows as weights that do not fit."""
    ckpt = check_model_checkpoint(load_checkpoint(path), path)
    if settings:
        ckpt["settings"] = parse_settings(ckpt["model"], settings)
        ckpt["model_config"] = {**ckpt["model_config"], **ckpt["settings"]}
    model = model_with_weights(ckpt, path)
    if device != "cpu":
        model.to(device=device)
    model.eval()
    return model, ckpt


def model_with_weights(ckpt: dict, path):
    """The model a checked checkpoint ``ckpt`` (read from ``path``) describes, with its
    weights; CheckpointError naming ``path`` when they do not fit."""
    try:
        model = build_model(ckpt["model"], ckpt["model_config"])
    except Exception as e:   # crafted options can fail anywhere in a constructor
        raise CheckpointError(f"{path}: cannot rebuild its model ({_one_line(e)})") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: its weights do not fit model {ckpt['model']!r} "
                              f"({_one_line(e)})") from None
    return model


def _one_line(e) -> str:
    return " ".join(str(e).strip("'\"").split())
