"""Atomic file writes: write a temporary file beside the destination, then ``os.replace``.

The temporary file is named ``.tinygen-tmp-*`` so that the temporaries a killed process left
behind can be recognized and removed (:func:`clean_stale_temporaries`); the finished file gets
the mode a plain ``open(path, "w")`` would give it (0666 minus the umask).
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager

TMP_PREFIX = ".tinygen-tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def os_error_line(e: OSError, path=None) -> str:
    """One line naming the path and the cause of ``e``, e.g. ``runs/x/last.ckpt: No space left
    on device``."""
    where = e.filename if e.filename is not None else path
    cause = e.strerror or str(e) or type(e).__name__
    return f"{os.fspath(where)}: {cause}" if where is not None else cause


@contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was, so a reader
    never sees a half-written file. An ``OSError`` (disk full, read-only directory, ``path``
    a directory) is raised again with ``filename`` set to the path concerned.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        if os.path.isdir(path):
            raise IsADirectoryError(21, "is a directory", path)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix="-" + os.path.basename(path),
                                   dir=directory)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        if e.filename is None or e.filename == tmp:
            raise type(e)(e.errno, e.strerror or str(e), path) from e
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def clean_stale_temporaries(directory) -> list:
    """Remove the ``.tinygen-tmp-*`` files in ``directory`` (left by a killed writer); returns
    their paths."""
    removed = []
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for name in sorted(names):
        full = os.path.join(directory, name)
        if name.startswith(TMP_PREFIX) and os.path.isfile(full):
            os.unlink(full)
            removed.append(full)
    return removed
