"""Data-only files: NumPy arrays and JSON metadata in one checksummed ``.npz`` archive.

Checkpoints (:mod:`tinygen.checkpoint`) and ``tinygen.save``/``tinygen.load`` use this
module. Loading a file never runs code from it: there is no pickle, the arrays are read with
``allow_pickle=False`` and only plain numeric dtypes are accepted, everything else is JSON.

The file is an ordinary uncompressed ZIP archive (``numpy.load`` opens it as an ``.npz``)::

    tinygen.json          {"format": "tinygen-arrays", "version": 2, "sha256": HEX,
                           "arrays": [NAME, ...]}
    meta.json             the caller's metadata (JSON, UTF-8)
    arrays/NAME.npy       one ``.npy`` file per array, in the order listed above

``sha256`` is the SHA-256 of the payload: for ``meta.json`` and then each array member in the
listed order, the member's name, a NUL byte, its length as 8 little-endian bytes and its bytes.
:func:`load_arrays` verifies the format, the version, the list of members and the checksum
before it parses any array, so a truncated file, flipped bits or a foreign archive is refused
with a one-line :class:`CheckpointError` naming the file. Files are written atomically
(:func:`tinygen._fileio.atomic_write`) with a fixed ZIP timestamp, so equal contents give
byte-identical files.

:func:`save_tree` / :func:`load_tree` store a nested structure of dicts, lists, tuples, strings,
numbers, booleans, None, NumPy arrays and NumPy scalars (a model's ``state_dict``, an
optimizer's state, RNG states) on top of that: the arrays become members, the rest a JSON
skeleton in ``meta.json`` in which an array is ``{"$array": NAME}`` (a NumPy scalar
``{"$scalar": NAME}``), a tuple ``{"$tuple": [...]}``, a dict whose keys are not all strings (or
that has a key starting with ``$``) ``{"$dict": [[KEY, VALUE], ...]}`` and a non-finite float
``{"$float": "nan" | "inf" | "-inf"}``; every other dict, list and scalar is written as itself.

This module imports only the standard library and NumPy, so every layer can use it.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import zipfile

import numpy as np

from ._fileio import atomic_write

__all__ = ["CheckpointError", "save_arrays", "load_arrays", "save_tree", "load_tree",
           "FORMAT", "VERSION"]

FORMAT = "tinygen-arrays"
VERSION = 2              # version 1 was a pickle (tinygen <= 0.1.0 checkpoints); refused
HEADER = "tinygen.json"
META = "meta.json"
_ARRAY_DIR = "arrays/"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")
# dtype kinds an array may have: bool, signed, unsigned, float, complex (no objects, no records)
_KINDS = "biufc"
_ZIP_MAGIC = b"PK\x03\x04"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class CheckpointError(ValueError):
    """A file that is not a valid tinygen data file (its message names the file, one line)."""


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _error(path, problem) -> CheckpointError:
    return CheckpointError(f"{path}: {_one_line(problem)}")


# -- the container -----------------------------------------------------------------------------
def _check_name(name):
    if not isinstance(name, str) or len(name) > 200 or not _NAME.match(name) or \
            any(part in (".", "..") for part in name.split("/")):
        raise ValueError(f"save_arrays: array name {name!r} must be a non-empty string of "
                         f"letters, digits, '_', '-', '.' and '/' separators (at most 200)")


def _member_digest(members) -> str:
    h = hashlib.sha256()
    for name, data in members:
        h.update(name.encode("utf-8") + b"\0" + len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _npy_bytes(name, array) -> bytes:
    if not isinstance(array, np.ndarray):
        raise TypeError(f"save_arrays: array {name!r} must be a numpy.ndarray, got "
                        f"{type(array).__name__}")
    if array.dtype.kind not in _KINDS:
        raise TypeError(f"save_arrays: array {name!r} has dtype {array.dtype}; only bool, "
                        f"integer, float and complex arrays can be saved")
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=False)
    return buf.getvalue()


def save_arrays(path, arrays: dict, meta) -> str:
    """Write ``arrays`` (name -> ``numpy.ndarray`` of a bool/int/float/complex dtype) and
    ``meta`` (anything ``json.dumps`` accepts, without NaN or infinities) to ``path``,
    atomically. Returns the path."""
    path = os.fspath(path)
    if not isinstance(arrays, dict):
        raise TypeError(f"save_arrays: arrays must be a dict name -> ndarray, got "
                        f"{type(arrays).__name__}")
    for name in arrays:
        _check_name(name)
    try:
        meta_bytes = json.dumps(meta, allow_nan=False, ensure_ascii=False,
                                separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise TypeError(f"save_arrays: meta is not plain JSON ({e})") from None
    members = [(META, meta_bytes)]
    members += [(_ARRAY_DIR + name + ".npy", _npy_bytes(name, a)) for name, a in arrays.items()]
    header = {"format": FORMAT, "version": VERSION, "sha256": _member_digest(members),
              "arrays": list(arrays)}
    members.insert(0, (HEADER, json.dumps(header, indent=1).encode("utf-8")))
    with atomic_write(path) as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
            for name, data in members:
                info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
                info.external_attr = 0o644 << 16
                z.writestr(info, data)
    return path


def _read_file(path) -> bytes:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist")
    if os.path.isdir(path):
        raise _error(path, "is a directory, not a tinygen file")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise _error(path, f"cannot be read ({e.strerror or e})") from None


def _read_members(path, data):
    """The archive's members as ``{name: bytes}``, refusing anything tinygen does not write."""
    if data[:1] == b"\x80" or data[:1] == b"(":
        raise _error(path, "is an old pickle-format tinygen checkpoint; it is refused because "
                           "loading pickle can run arbitrary code (retrain, or re-save it with "
                           "a trusted tinygen 0.1 and tinygen.serialization)")
    if data[:4] != _ZIP_MAGIC:
        first = data[:4].hex() or "(none)"
        raise _error(path, f"is not a tinygen file (it starts with bytes {first}, a tinygen "
                           f"file is a ZIP archive starting with 504b0304)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = z.infolist()
            names = [i.filename for i in infos]
            if len(set(names)) != len(names):
                raise _error(path, "has duplicate archive members")
            for info in infos:
                if info.compress_type != zipfile.ZIP_STORED or info.file_size > len(data):
                    raise _error(path, f"member {info.filename!r} is compressed or larger than "
                                       f"the file; tinygen writes only stored members")
            return {i.filename: z.read(i) for i in infos}
    except CheckpointError:
        raise
    except Exception as e:   # zipfile raises many types for damaged archives; all mean one thing
        raise _error(path, f"is a damaged archive ({type(e).__name__}: {e}); the file is "
                           f"truncated or corrupted") from None


def _json(path, member, data):
    try:
        return json.loads(data.decode("utf-8"), parse_constant=lambda c: _raise_constant(c))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _error(path, f"{member} is not valid JSON ({e})") from None


def _raise_constant(c):
    raise ValueError(f"non-standard JSON constant {c}")


def load_arrays(path):
    """Read a file written by :func:`save_arrays`; returns ``(arrays, meta)``.

    Raises ``FileNotFoundError`` for a missing file and :class:`CheckpointError` (a ValueError
    whose one-line message names the file) for anything else that is not such a file: another
    format, an old pickle checkpoint, a truncated or corrupted archive (checksum), a newer
    format version, an array of an object dtype.
    """
    path = os.fspath(path)
    members = _read_members(path, _read_file(path))
    if HEADER not in members:
        raise _error(path, f"is a ZIP archive but not a tinygen file (no {HEADER})")
    header = _json(path, HEADER, members[HEADER])
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _error(path, f"is not a tinygen file ({HEADER} does not say format {FORMAT!r})")
    if header.get("version") != VERSION:
        raise _error(path, f"has format version {header.get('version')!r}; this tinygen reads "
                           f"version {VERSION}")
    names = header.get("arrays")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or \
            not isinstance(header.get("sha256"), str):
        raise _error(path, f"{HEADER} is malformed (needs a list 'arrays' and a 'sha256')")
    wanted = [META] + [_ARRAY_DIR + n + ".npy" for n in names]
    if sorted(wanted + [HEADER]) != sorted(members):
        missing = sorted(set(wanted) - set(members))
        extra = sorted(set(members) - set(wanted) - {HEADER})
        raise _error(path, f"archive members do not match {HEADER}: missing {missing}, "
                           f"unexpected {extra}")
    payload = [(name, members[name]) for name in wanted]
    if _member_digest(payload) != header["sha256"]:
        raise _error(path, "checksum mismatch: the file is corrupted (SHA-256 of the payload "
                           "differs from the one recorded when it was written)")
    meta = _json(path, META, members[META])
    arrays = {}
    for name in names:
        try:
            array = np.lib.format.read_array(io.BytesIO(members[_ARRAY_DIR + name + ".npy"]),
                                             allow_pickle=False)
        except Exception as e:   # the checksum matched, so this is a crafted file
            raise _error(path, f"array {name!r} cannot be read ({type(e).__name__}: {e})") \
                from None
        if array.dtype.kind not in _KINDS:
            raise _error(path, f"array {name!r} has dtype {array.dtype}; only bool, integer, "
                               f"float and complex arrays are accepted")
        arrays[name] = array
    return arrays, meta


# -- nested structures ---------------------------------------------------------------------------
def _encode(value, arrays, where):
    if isinstance(value, np.ndarray):
        name = f"a{len(arrays)}"
        arrays[name] = value
        return {"$array": name}
    if isinstance(value, np.generic):
        name = f"a{len(arrays)}"
        arrays[name] = np.asarray(value)
        return {"$scalar": name}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: _encode(v, arrays, f"{where}[{k!r}]") for k, v in value.items()}
        items = []
        for k, v in value.items():
            if not (k is None or isinstance(k, (bool, int, float, str, tuple))):
                raise TypeError(f"save_tree: {where} has a key of type {type(k).__name__}; "
                                f"keys must be strings, numbers, booleans, None or tuples")
            items.append([_encode(k, arrays, f"{where} key"),
                          _encode(v, arrays, f"{where}[{k!r}]")])
        return {"$dict": items}
    raise TypeError(f"save_tree: {where} is a {type(value).__name__}; only dicts, lists, tuples, "
                    f"strings, numbers, booleans, None and NumPy arrays can be saved")


def _decode(node, arrays, path, used):
    if isinstance(node, list):
        return [_decode(v, arrays, path, used) for v in node]
    if not isinstance(node, dict):
        return node
    tags = [k for k in node if k.startswith("$")]
    if not tags:
        return {k: _decode(v, arrays, path, used) for k, v in node.items()}
    if len(node) != 1:
        raise _error(path, f"malformed structure: tagged entry {sorted(node)} has extra keys")
    tag, body = tags[0], node[tags[0]]
    if tag in ("$array", "$scalar"):
        if not isinstance(body, str) or body not in arrays:
            raise _error(path, f"malformed structure: it refers to array {body!r}, which the "
                               f"file does not hold")
        used.add(body)
        return arrays[body] if tag == "$array" else arrays[body][()]
    if tag == "$tuple" and isinstance(body, list):
        return tuple(_decode(v, arrays, path, used) for v in body)
    if tag == "$float" and body in ("nan", "inf", "-inf"):
        return float(body)
    if tag == "$dict" and isinstance(body, list) and \
            all(isinstance(p, list) and len(p) == 2 for p in body):
        out = {}
        for k, v in body:
            key = _decode(k, arrays, path, used)
            try:
                hash(key)
            except TypeError:
                raise _error(path, f"malformed structure: a dict key is a "
                                   f"{type(key).__name__}") from None
            out[key] = _decode(v, arrays, path, used)
        return out
    raise _error(path, f"malformed structure: unknown entry {tag!r} or a malformed body")


def save_tree(path, tree, kind: str = "tree") -> str:
    """Write ``tree`` (nested dicts/lists/tuples of strings, numbers, booleans, None, NumPy
    arrays and scalars) to ``path`` with :func:`save_arrays`. ``kind`` names what the file holds
    (e.g. ``"checkpoint"``); :func:`load_tree` can insist on it. Returns the path."""
    arrays = {}
    skeleton = _encode(tree, arrays, "the value")
    return save_arrays(path, arrays, {"kind": kind, "tree": skeleton})


def load_tree(path, kind: str | None = None):
    """The structure written by :func:`save_tree` (arrays as NumPy arrays). With ``kind``,
    a file of another kind is refused. Errors as :func:`load_arrays`."""
    path = os.fspath(path)
    arrays, meta = load_arrays(path)
    if not isinstance(meta, dict) or "tree" not in meta or not isinstance(meta.get("kind"), str):
        raise _error(path, "is a tinygen array file but holds no saved structure (no 'kind' and "
                           "'tree' in meta.json)")
    if kind is not None and meta["kind"] != kind:
        raise _error(path, f"holds a {meta['kind']!r}, not a {kind!r}")
    used = set()
    try:
        tree = _decode(meta["tree"], arrays, path, used)
    except RecursionError:
        raise _error(path, "malformed structure: nested too deeply") from None
    if used != set(arrays):
        raise _error(path, f"malformed structure: arrays {sorted(set(arrays) - used)} are not "
                           f"referenced")
    return tree
