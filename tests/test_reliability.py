"""Reliability: files never run code, damaged files give one-line errors, runs are never
destroyed, resume is exact and refuses conflicting settings, every user mistake is caught before
any work starts (issue: safe runs and checkpoints)."""
import gzip
import io
import json
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinygen import serialization
from tinygen._fileio import TMP_PREFIX, atomic_write, clean_stale_temporaries
from tinygen.data import (load_mnist_splits, read_idx, resolve_data_source, write_idx)
from tinygen.serialization import CheckpointError, load_arrays, save_arrays
from tinygen.checkpoint import load_checkpoint, save_checkpoint

FUZZ = settings(max_examples=int(os.environ.get("TG_FUZZ_EXAMPLES", 60)), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _one_line_error_naming(exc, path):
    msg = str(exc)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg


class _Payload:
    """A pickle whose loading creates a marker file (what an attacker's file would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_pickle_payload(path, marker):
    with open(path, "wb") as f:
        pickle.dump({"format": "tinygen-checkpoint", "version": 1, "x": _Payload(marker)}, f,
                    protocol=pickle.HIGHEST_PROTOCOL)
    return path


# -- 1. the file format: data only, versioned, checksummed ----------------------------------------
def test_pickle_checkpoint_is_refused_without_running_its_payload(tmp_path):
    marker = tmp_path / "marker"
    path = write_pickle_payload(tmp_path / "evil.ckpt", marker)
    with pytest.raises(CheckpointError, match="old pickle-format") as e:
        load_checkpoint(path)
    _one_line_error_naming(e.value, path)
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Payload(marker)))   # the payload is real: unpickling runs it
    assert marker.exists()


def _sample_payload():
    return {"model": "m", "state_dict": {"enc.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
                                         "enc.bias": np.zeros(3, np.float64)},
            "optimizer": {"state": {0: {"step": 7, "exp_avg": np.full(3, 0.5)}},
                          "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0]}]},
            "rng": {"numpy": {"bit_generator": "PCG64",
                              "state": {"state": 2 ** 127 + 12345, "inc": 2 ** 64 + 1}}},
            "best": {"ae": float("inf")}, "seed": -1, "none": None, "flag": True,
            "scalar": np.float32(2.5), "$odd key": "x", "text": "naïve"}


def _assert_same(a, b):
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b or (a != a and b != b)


def test_checkpoint_round_trip_is_exact_and_the_file_is_an_npz(tmp_path):
    payload = _sample_payload()
    path = save_checkpoint(tmp_path / "a.ckpt", payload)
    _assert_same(load_checkpoint(path), payload)
    with np.load(path, allow_pickle=False) as npz:   # an ordinary .npz archive
        assert sorted(k for k in npz.files if k.startswith("arrays/")) == \
            ["arrays/a0", "arrays/a1", "arrays/a2", "arrays/a3"]
        np.testing.assert_array_equal(npz["arrays/a0"], payload["state_dict"]["enc.weight"])
    with zipfile.ZipFile(path) as z:
        header = json.loads(z.read("tinygen.json"))
    assert header["format"] == "tinygen-arrays" and header["version"] == 2
    assert len(header["sha256"]) == 64
    # same contents -> byte-identical file (fixed timestamps)
    again = save_checkpoint(tmp_path / "b.ckpt", payload)
    assert open(path, "rb").read() == open(again, "rb").read()


def test_save_refuses_what_json_and_npy_cannot_hold_exactly(tmp_path):
    with pytest.raises(TypeError, match=r"\['x'\] is a object"):
        save_checkpoint(tmp_path / "a.ckpt", {"x": object()})
    with pytest.raises(TypeError, match="dtype object"):
        save_arrays(tmp_path / "a.npz", {"x": np.array([None])}, {})
    with pytest.raises(ValueError, match="array name"):
        save_arrays(tmp_path / "a.npz", {"../x": np.zeros(1)}, {})
    assert os.listdir(tmp_path) == []


def test_flipping_100_bytes_is_detected_by_the_checksum(tmp_path):
    path = save_checkpoint(tmp_path / "a.ckpt", {"w": np.random.default_rng(0).normal(size=5000)})
    raw = bytearray(open(path, "rb").read())
    start = len(raw) // 2 - 50                 # inside the weights' array member
    raw[start:start + 100] = bytes(b ^ 0xFF for b in raw[start:start + 100])
    open(path, "wb").write(bytes(raw))
    with pytest.raises(CheckpointError, match="checksum mismatch|damaged archive") as e:
        load_checkpoint(path)
    _one_line_error_naming(e.value, path)


def _rewrite_members(path, change):
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    change(members)
    with zipfile.ZipFile(path, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)


def _rehash(members):
    header = json.loads(members["tinygen.json"])
    order = ["meta.json"] + [f"arrays/{n}.npy" for n in header["arrays"]]
    header["sha256"] = serialization._member_digest([(n, members[n]) for n in order])
    members["tinygen.json"] = json.dumps(header).encode()


@pytest.mark.parametrize("change,msg", [
    (lambda m: m.pop("meta.json"), "missing \\['meta.json'\\]"),
    (lambda m: m.update({"extra.py": b"print(1)"}), "unexpected \\['extra.py'\\]"),
    (lambda m: m.update({"tinygen.json": b"{"}), "tinygen.json is not valid JSON"),
    (lambda m: m.update({"tinygen.json": b'{"format": "zip"}'}), "is not a tinygen file"),
    (lambda m: (m.update({"meta.json": b'{"kind": "checkpoint", "tree": {"$array": "zz"}}'}),
                _rehash(m)), "refers to array 'zz'"),
    (lambda m: (m.update({"meta.json": b'{"kind": "checkpoint", "tree": {"$eval": "1"}}'}),
                _rehash(m)), "unknown entry '\\$eval'"),
    (lambda m: (m.update({"meta.json": b'{"kind": "checkpoint", "tree": [{"$array": "a0"}]}'}),
                _rehash(m)), "holds a list"),
    (lambda m: (m.update({"meta.json": b'{"tree": 1}'}), _rehash(m)), "no saved structure"),
])
def test_crafted_archives_give_one_line_errors(tmp_path, change, msg):
    path = save_checkpoint(tmp_path / "a.ckpt", {"w": np.ones(3)})
    _rewrite_members(path, change)
    with pytest.raises(CheckpointError, match=msg) as e:
        load_checkpoint(path)
    _one_line_error_naming(e.value, path)


def test_object_arrays_are_refused_even_with_a_valid_checksum(tmp_path):
    path = save_checkpoint(tmp_path / "a.ckpt", {"w": np.ones(3)})

    def plant(members):
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.array([_Payload(tmp_path / "marker")], dtype=object),
                                  allow_pickle=True)
        members["arrays/a0.npy"] = buf.getvalue()
        _rehash(members)
    _rewrite_members(path, plant)
    with pytest.raises(CheckpointError, match="array 'a0' cannot be read") as e:
        load_checkpoint(path)
    _one_line_error_naming(e.value, path)
    assert not (tmp_path / "marker").exists()


def test_load_errors_for_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.ckpt")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


_GOOD = {}


def _good_checkpoint_bytes():
    if not _GOOD:
        buf_path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"tg-fuzz-{os.getpid()}.ckpt")
        save_checkpoint(buf_path, _sample_payload())
        _GOOD["bytes"] = open(buf_path, "rb").read()
        os.unlink(buf_path)
    return _GOOD["bytes"]


def _load_or_project_error(path):
    """Either the intact payload comes back, or a one-line CheckpointError naming the file."""
    try:
        back = load_checkpoint(path)
    except CheckpointError as e:
        _one_line_error_naming(e, path)
        return None
    _assert_same(back, _sample_payload())   # a flip that missed the payload (e.g. a ZIP date)
    return back


@FUZZ
@given(data=st.binary(max_size=600))
def test_fuzz_checkpoint_loader_random_bytes(tmp_path, data):
    path = tmp_path / "r.ckpt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    _one_line_error_naming(e.value, path)


@FUZZ
@given(data=st.data())
def test_fuzz_checkpoint_loader_truncations_and_bit_flips(tmp_path, data):
    raw = bytearray(_good_checkpoint_bytes())
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[:data.draw(st.integers(0, len(raw) - 1), label="keep")]
    else:
        for pos in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=100),
                             label="positions"):
            raw[pos] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    path = tmp_path / "f.ckpt"
    path.write_bytes(bytes(raw))
    _load_or_project_error(path)


# -- IDX files: bounded decompression, fuzzing --------------------------------------------------
def test_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    # a header declaring 8 bytes followed by 64 MiB of zeros: compresses to ~64 KB
    path = tmp_path / "bomb-idx1-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x08\x01" + struct.pack(">I", 8))
        chunk = bytes(1 << 20)
        for _ in range(64):
            f.write(chunk)
    assert os.path.getsize(path) < 200_000
    import tinygen.data.idx as idx
    reads = []
    real = idx._read_at_most
    idx._read_at_most = lambda f, n: reads.append(n) or real(f, n)
    try:
        with pytest.raises(ValueError, match="unexpected trailing bytes") as e:
            read_idx(path)
    finally:
        idx._read_at_most = real
    _one_line_error_naming(e.value, path)
    assert max(reads) == 9        # the declared 8 bytes plus one: nothing more was inflated


def _good_idx(tmp_path, gz):
    path = tmp_path / ("a-idx3-ubyte" + (".gz" if gz else ""))
    write_idx(path, np.arange(2 * 5 * 3, dtype=np.uint8).reshape(2, 5, 3))
    return path


@FUZZ
@given(data=st.data())
def test_fuzz_idx_loader(tmp_path, data):
    gz = data.draw(st.booleans(), label="gz")
    good = _good_idx(tmp_path, gz)
    raw = bytearray(good.read_bytes())
    how = data.draw(st.sampled_from(["random", "truncate", "flip"]), label="how")
    if how == "random":
        raw = bytearray(data.draw(st.binary(max_size=300), label="bytes"))
    elif how == "truncate":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1), label="keep")]
    else:
        for pos in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=20),
                             label="positions"):
            raw[pos] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    path = tmp_path / ("f-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(bytes(raw))
    try:
        out = read_idx(path)
    except ValueError as e:
        assert type(e) is ValueError
        _one_line_error_naming(e, path)
        return
    assert isinstance(out, np.ndarray)     # a flip in a value byte (or a gzip header field)


# -- atomic writes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = save_checkpoint(tmp_path / "a.ckpt", {"w": np.ones(2)})
        with atomic_write(tmp_path / "b.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    for p in (path, tmp_path / "b.txt"):
        assert os.stat(p).st_mode & 0o777 == 0o666 & ~umask


def test_failed_write_keeps_the_old_file_and_names_the_path(tmp_path):
    path = save_checkpoint(tmp_path / "a.ckpt", {"w": np.ones(2)})
    before = open(path, "rb").read()

    class Full(OSError):
        pass
    with pytest.raises(OSError) as e:
        with atomic_write(path) as f:
            f.write(b"partial")
            raise OSError(28, "No space left on device")
    assert e.value.filename == str(path) and e.value.strerror == "No space left on device"
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["a.ckpt"]
    with pytest.raises(IsADirectoryError) as e:
        save_checkpoint(tmp_path, {"w": 1})
    assert e.value.filename == str(tmp_path)


def test_stale_temporaries_are_recognized_and_cleaned(tmp_path):
    (tmp_path / (TMP_PREFIX + "abc-last.ckpt")).write_bytes(b"half")
    (tmp_path / "keep.txt").write_text("mine")
    assert clean_stale_temporaries(tmp_path) == [str(tmp_path / (TMP_PREFIX + "abc-last.ckpt"))]
    assert os.listdir(tmp_path) == ["keep.txt"]


# -- 4. data precedence: --data > TINYGEN_DATA > embedded, one rule for both -----------------------
def _mnist_dir(d, prefix, n=20):
    d.mkdir(exist_ok=True)
    rng = np.random.default_rng(len(prefix) + n)
    write_idx(d / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28), np.uint8))
    write_idx(d / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    return d


def test_data_precedence_is_flag_then_environment_then_embedded(tmp_path, monkeypatch):
    test_only = _mnist_dir(tmp_path / "testonly", "t10k", n=13)
    env_dir = _mnist_dir(_mnist_dir(tmp_path / "env", "train", n=30), "t10k", n=11)
    monkeypatch.setenv("TINYGEN_DATA", str(env_dir))
    # --data wins over the environment, and its missing training files fall back to the
    # embedded digits, never to the environment's directory
    train, test, desc = load_mnist_splits(resolve_data_source(test_only))
    assert len(train) == 5000 and len(test) == 13
    assert desc["data_source"] == "--data" and desc["data_dir"] == str(test_only)
    assert desc["train"].startswith("embedded")
    # the environment alone
    train, test, desc = load_mnist_splits(resolve_data_source(None))
    assert (len(train), len(test), desc["data_source"]) == (30, 11, "TINYGEN_DATA")
    # the same test-only directory works the same way through the environment
    monkeypatch.setenv("TINYGEN_DATA", str(test_only))
    train, test, desc = load_mnist_splits(resolve_data_source(None))
    assert (len(train), len(test), desc["data_source"]) == (5000, 13, "TINYGEN_DATA")
    monkeypatch.delenv("TINYGEN_DATA")
    train, test, desc = load_mnist_splits(resolve_data_source(None))
    assert (len(train), test, desc["data_source"]) == (5000, None, "embedded")


def test_data_source_errors_name_the_setting(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("TINYGEN_DATA", str(tmp_path / "file"))
    with pytest.raises(NotADirectoryError, match="TINYGEN_DATA .*file: is a file, not a dir"):
        resolve_data_source(None)
    with pytest.raises(FileNotFoundError, match="--data .*nope: no such directory"):
        resolve_data_source(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="--data .*empty: no MNIST files"):
        load_mnist_splits(resolve_data_source(tmp_path / "empty"))
