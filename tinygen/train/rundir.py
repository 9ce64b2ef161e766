"""The run directory's rules: a run is never destroyed, a resumed run continues its own files.

* A new run into a directory that already holds a run (any of :data:`RUN_FILES`) is refused,
  naming ``--resume`` and ``--overwrite``; with ``overwrite`` the earlier run's files are
  removed first, so nothing of it (a stale ``best.ckpt``) can leak into the new run.
* A resumed run keeps the directory's files; a ``best.ckpt`` that belongs to another run (its
  ``run_id`` differs from the resumed checkpoint's) or lies beyond the resumed step is removed,
  with a note, because it could otherwise become the new run's ``model.ckpt``.
* Temporary files a killed writer left (``.tinygen-tmp-*``) are removed at every start.
* ``--out`` must be a directory that can be created and written: a file, a path under a file,
  a read-only place are refused before any work, in one line naming the path and the cause.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
import uuid

from .._fileio import TMP_PREFIX, clean_stale_temporaries
from ..checkpoint import CheckpointError, load_checkpoint

RUN_FILES = ("config.json", "metrics.jsonl", "last.ckpt", "best.ckpt", "model.ckpt",
             "results.json")


class RunDirectoryError(ValueError):
    """The output directory cannot be used as asked (one-line message)."""


def new_run_id() -> str:
    """A fresh identifier, saved in every checkpoint of a run (``extra["run_id"]``)."""
    return uuid.uuid4().hex


def check_writable_directory(out, option="--out") -> str:
    """Create ``out`` if needed and check that files can be written in it; an ``OSError``
    whose filename is the path concerned otherwise (``out`` a file, under a file, read-only,
    full). Returns ``out``."""
    out = os.fspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise NotADirectoryError(errno.ENOTDIR, f"{option} is a file, not a directory", out)
    os.makedirs(out, exist_ok=True)
    try:
        fd, probe = tempfile.mkstemp(prefix=TMP_PREFIX + "probe-", dir=out)
    except OSError as e:
        raise type(e)(e.errno, f"{option} is not writable ({e.strerror})", out) from None
    os.close(fd)
    os.unlink(probe)
    return out


def existing_run_files(out) -> list:
    """The files of :data:`RUN_FILES` present in ``out``."""
    return [name for name in RUN_FILES if os.path.exists(os.path.join(out, name))]


def prepare_run_directory(out, *, resume=None, resume_checkpoint=None, overwrite=False) -> list:
    """Make ``out`` ready for a run; returns notes to print (what was removed and why).

    ``resume`` is the path of the checkpoint a resumed run starts from and
    ``resume_checkpoint`` its loaded contents (both None for a new run). Raises
    :class:`RunDirectoryError` when the run would replace another run's files and
    ``overwrite`` is false, ``OSError`` (with the path) when ``out`` cannot be written.
    """
    out = check_writable_directory(out)
    notes = [f"removed a temporary file left by an interrupted run: {p}"
             for p in clean_stale_temporaries(out)]
    present = existing_run_files(out)
    same_run = resume_checkpoint is not None and _same_run(out, resume, resume_checkpoint)
    if present and not same_run:
        if not overwrite:
            last = os.path.join(out, "last.ckpt")
            if resume_checkpoint is None:
                raise RunDirectoryError(
                    f"--out {out} already holds a run ({', '.join(present)}); continue it with "
                    f"--resume {last}, choose another --out, or pass --overwrite to replace it")
            raise RunDirectoryError(
                f"--out {out} holds another run ({', '.join(present)}) than the checkpoint "
                f"--resume {resume} comes from; choose another --out, or pass --overwrite to "
                f"replace it")
        for name in present:
            os.unlink(os.path.join(out, name))
        notes.append(f"--overwrite: removed the earlier run's {', '.join(present)} in {out}")
        return notes
    best = os.path.join(out, "best.ckpt")
    if same_run and os.path.exists(best):
        reason = _stale_best_reason(best, resume_checkpoint)
        if reason:
            os.unlink(best)
            notes.append(f"removed {best}: {reason}")
    return notes


def _same_run(out, resume, ckpt) -> bool:
    """Whether the run files in ``out`` belong to the run of checkpoint ``ckpt``."""
    last = os.path.join(out, "last.ckpt")
    if resume is not None and os.path.exists(last) and os.path.samefile(resume, last):
        return True
    run_id = (ckpt.get("extra") or {}).get("run_id")
    if run_id is None:
        return False
    try:
        with open(os.path.join(out, "config.json")) as f:
            return json.load(f).get("run_id") == run_id
    except (OSError, ValueError, AttributeError):
        return False


def _stale_best_reason(best_path, ckpt):
    try:
        best = load_checkpoint(best_path)
    except (CheckpointError, OSError) as e:
        return f"it is not a usable checkpoint ({e})"
    run_id = (ckpt.get("extra") or {}).get("run_id")
    best_id = (best.get("extra") or {}).get("run_id") if isinstance(best.get("extra"), dict) \
        else None
    if run_id is None or best_id != run_id:
        return "it belongs to another run than the resumed checkpoint"
    step = (best.get("trainer") or {}).get("step", 0)
    if step > (ckpt.get("trainer") or {}).get("step", 0):
        return "it was written after the step the run resumes from"
    return None
