"""The IDX file format of MNIST (http://yann.lecun.com/exdb/mnist/), gzipped or not.

Header: two zero bytes, a type byte, a byte with the number of dimensions n, then n dimension
sizes as big-endian uint32; then the values, big-endian, in C order.
"""
from __future__ import annotations

import gzip
import os
import struct

import numpy as np

from .._fileio import atomic_write

# type byte -> big-endian dtype
IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _open(path, mode):
    return gzip.open(path, mode) if os.fspath(path).endswith(".gz") else open(path, mode)


def read_idx(path) -> np.ndarray:
    """The array stored in IDX file ``path`` (``.gz``: gzipped), in native byte order.

    Raises ValueError naming the file for a bad magic number, an unknown type, a truncated
    payload or trailing bytes.
    """
    path = os.fspath(path)
    try:
        with _open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:   # gzip: truncated stream / not gzip
        raise ValueError(f"{path}: cannot read the IDX file ({e})") from e
    if len(raw) < 4:
        raise ValueError(f"{path}: not an IDX file: {len(raw)} bytes, shorter than the 4-byte "
                         f"magic number")
    zero0, zero1, code, ndim = raw[:4]
    if zero0 or zero1:
        raise ValueError(f"{path}: not an IDX file: magic number {raw[:4].hex()} does not "
                         f"start with two zero bytes")
    if code not in IDX_TYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02x} (known: "
                         f"{', '.join(f'0x{c:02x}' for c in IDX_TYPES)})")
    if ndim < 1:
        raise ValueError(f"{path}: IDX header declares {ndim} dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header: {len(raw)} bytes, the {ndim} "
                         f"dimension sizes need {header}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = IDX_TYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got < expected:
        raise ValueError(f"{path}: truncated IDX file: shape {dims} of {dtype.name} needs "
                         f"{expected} data bytes, found {got}")
    if got > expected:
        raise ValueError(f"{path}: {got - expected} unexpected trailing bytes after the "
                         f"{expected} data bytes of shape {dims}")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


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
