"""The IDX file format of MNIST (http://yann.lecun.com/exdb/mnist/), gzipped or not.

Header: two zero bytes, a type byte, a byte with the number of dimensions n, then n dimension
sizes as big-endian uint32; then the values, big-endian, in C order.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

from .._fileio import atomic_write

# type byte -> big-endian dtype
IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


_CHUNK = 1 << 24   # decompress in 16 MiB pieces: memory grows with the data actually there


def _open(path, mode):
    return gzip.open(path, mode) if os.fspath(path).endswith(".gz") else open(path, mode)


def _read_at_most(f, n) -> bytes:
    """Up to ``n`` bytes of ``f`` (fewer at the end of the stream), read in bounded pieces so
    that a header declaring a huge size over a short stream allocates only what is there."""
    parts, left = [], n
    while left > 0:
        part = f.read(min(left, _CHUNK))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def read_idx(path) -> np.ndarray:
    """The array stored in IDX file ``path`` (``.gz``: gzipped), in native byte order.

    Raises ValueError naming the file for a bad magic number, an unknown type, a truncated
    payload, trailing bytes or a damaged gzip stream. A gzipped file is decompressed only up
    to the size its header declares (plus one byte to detect trailing data), so a small file
    that inflates to gigabytes is refused without inflating it.
    """
    path = os.fspath(path)
    try:
        with _open(path, "rb") as f:
            head = _read_at_most(f, 4)
            if len(head) < 4:
                raise ValueError(f"{path}: not an IDX file: {len(head)} bytes, shorter than the "
                                 f"4-byte magic number")
            zero0, zero1, code, ndim = head
            if zero0 or zero1:
                raise ValueError(f"{path}: not an IDX file: magic number {head.hex()} does not "
                                 f"start with two zero bytes")
            if code not in IDX_TYPES:
                raise ValueError(f"{path}: unknown IDX type code 0x{code:02x} (known: "
                                 f"{', '.join(f'0x{c:02x}' for c in IDX_TYPES)})")
            if ndim < 1:
                raise ValueError(f"{path}: IDX header declares {ndim} dimensions")
            sizes = _read_at_most(f, 4 * ndim)
            if len(sizes) < 4 * ndim:
                raise ValueError(f"{path}: truncated IDX header: {4 + len(sizes)} bytes, the "
                                 f"{ndim} dimension sizes need {4 + 4 * ndim}")
            dims = struct.unpack(f">{ndim}I", sizes)
            dtype = IDX_TYPES[code]
            expected = int(np.prod(dims, dtype=object)) * dtype.itemsize
            if not path.endswith(".gz"):   # the size on disk tells at once
                got = os.path.getsize(path) - 4 - 4 * ndim
                if got != expected:
                    _size_error(path, dims, dtype, expected, got)
            raw = _read_at_most(f, expected + 1)
    except (OSError, EOFError, zlib.error) as e:   # gzip: truncated or damaged stream
        raise ValueError(f"{path}: cannot read the IDX file "
                         f"({' '.join(str(getattr(e, 'strerror', None) or e).split())})") from None
    if len(raw) != expected:
        _size_error(path, dims, dtype, expected, len(raw), at_least=len(raw) > expected)
    data = np.frombuffer(raw, dtype=dtype).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def _size_error(path, dims, dtype, expected, got, at_least=False):
    if got < expected:
        raise ValueError(f"{path}: truncated IDX file: shape {dims} of {dtype.name} needs "
                         f"{expected} data bytes, found {got}")
    count = "unexpected trailing bytes" if at_least else f"{got - expected} unexpected " \
                                                           f"trailing bytes"
    raise ValueError(f"{path}: {count} after the {expected} data bytes of shape {dims}")


def write_idx(path, array) -> str:
    """Write ``array`` (uint8, int8, int16, int32, float32 or float64) as an IDX file
    (gzipped if ``path`` ends with .gz), atomically."""
    array = np.asarray(array)
    code = {np.dtype(t).newbyteorder("="): c for c, t in IDX_TYPES.items()}.get(
        array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"write_idx: dtype {array.dtype} has no IDX type code")
    if array.ndim < 1 or array.ndim > 255:
        raise ValueError(f"write_idx: arrays need 1..255 dimensions, got shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body = np.ascontiguousarray(array, dtype=IDX_TYPES[code]).tobytes()
    with atomic_write(path) as f:
        if os.fspath(path).endswith(".gz"):
            with gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
                gz.write(header + body)
        else:
            f.write(header + body)
    return os.fspath(path)
