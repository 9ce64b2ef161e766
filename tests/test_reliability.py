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
    return {"model": "m",
            "state_dict": {"enc.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
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


# -- the command line: runs are never destroyed, mistakes are one-line errors ---------------------
from tinygen.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def small_mnist(tmp_path_factory):
    """Train (120) and test (30) synthetic digits in MNIST's IDX format."""
    d = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(1)
    for prefix, n in (("train", 120), ("t10k", 30)):
        write_idx(d / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28),
                                                                     dtype=np.uint8))
        write_idx(d / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    return d


FAST = ["--hidden", "16", "--batch-size", "40", "--no-progress"]


def cli(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def train(out, data, capsys, *extra, epochs=1, model="mlp-ae"):
    return cli(["train", model, "--data", data, "--epochs", epochs, "--out", out, *FAST, *extra],
               capsys)


def _snapshot(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def _error_line(err):
    lines = [ln for ln in err.splitlines() if ln.startswith("tinygen: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


def test_cli_never_runs_a_pickle_payload(tmp_path, capsys, small_mnist):
    marker = tmp_path / "marker"
    evil = write_pickle_payload(tmp_path / "evil.ckpt", marker)
    for argv in (["eval", evil], ["sample", evil, "--out", tmp_path / "s.png"],
                 ["train", "mlp-ae", "--data", small_mnist, "--resume", evil,
                  "--out", tmp_path / "r", "--no-progress"],
                 ["train", "cvae", "--data", small_mnist, "--classifier", evil,
                  "--out", tmp_path / "c", "--no-progress"]):
        code, _, err = cli(argv, capsys)
        assert code == 2, argv
        assert "old pickle-format" in _error_line(err) and str(evil) in err
        assert not marker.exists(), argv
    assert not (tmp_path / "r").exists() and not (tmp_path / "c").exists()


def test_a_second_run_never_destroys_the_first(tmp_path, capsys, small_mnist):
    out = tmp_path / "run"
    code, _, err = train(out, small_mnist, capsys, epochs=2)
    assert code == 0, err
    before = _snapshot(out)
    assert {"best.ckpt", "last.ckpt", "model.ckpt", "metrics.jsonl"} <= set(before)
    code, _, err = train(out, small_mnist, capsys, "--lr", "0.5")
    line = _error_line(err)
    assert code == 2 and "already holds a run" in line
    assert f"--resume {out / 'last.ckpt'}" in line and "--overwrite" in line
    assert _snapshot(out) == before                    # byte-identical
    # --overwrite replaces it, and no file of the first run survives into the second
    # (--val-fraction 0: the new run writes no best.ckpt, so a stale one would show)
    code, _, err = train(out, small_mnist, capsys, "--overwrite", "--val-fraction", "0")
    assert code == 0, err
    assert "--overwrite: removed the earlier run's" in err
    assert not (out / "best.ckpt").exists()
    model = load_checkpoint(out / "model.ckpt")
    last = load_checkpoint(out / "last.ckpt")
    weights = [k for k in last["state_dict"] if not k.startswith("code_")]  # finish() fits codes
    assert weights
    for k in weights:
        np.testing.assert_array_equal(model["state_dict"][k], last["state_dict"][k])
    assert model["extra"]["run_id"] == json.loads((out / "config.json").read_text())["run_id"]


def test_stale_best_checkpoint_never_becomes_the_model(tmp_path, capsys, small_mnist):
    a, b = tmp_path / "a", tmp_path / "b"
    assert train(a, small_mnist, capsys, epochs=1)[0] == 0
    assert train(b, small_mnist, capsys, "--seed", "5", epochs=1)[0] == 0
    (b / "best.ckpt").write_bytes((a / "best.ckpt").read_bytes())   # another run's best
    code, _, err = train(b, small_mnist, capsys, "--resume", b / "last.ckpt", epochs=2)
    assert code == 0, err
    assert "best.ckpt: it belongs to another run" in err
    model = load_checkpoint(b / "model.ckpt")
    foreign = load_checkpoint(a / "best.ckpt")
    assert model["extra"]["run_id"] != foreign["extra"]["run_id"]
    assert not all(np.array_equal(model["state_dict"][k], v)
                   for k, v in foreign["state_dict"].items())


def test_data_precedence_through_the_cli(tmp_path, capsys, small_mnist, monkeypatch):
    test_only = _mnist_dir(tmp_path / "testonly", "t10k", n=20)
    monkeypatch.setenv("TINYGEN_DATA", str(small_mnist))
    code, _, err = train(tmp_path / "run", test_only, capsys, "--val-fraction", "0.02")
    assert code == 0, err
    data = json.loads((tmp_path / "run" / "config.json").read_text())["data"]
    assert data["data_source"] == "--data" and data["data_dir"] == str(test_only)
    assert data["train"].startswith("embedded") and data["train_size"] == 4900
    assert data["test_size"] == 20
    # the same directory through the environment follows the same rule
    monkeypatch.setenv("TINYGEN_DATA", str(test_only))
    code, _, err = cli(["train", "mlp-ae", "--epochs", 1, "--val-fraction", "0.02",
                        "--out", tmp_path / "env", *FAST], capsys)
    assert code == 0, err
    data = json.loads((tmp_path / "env" / "config.json").read_text())["data"]
    assert (data["data_source"], data["test_size"], data["train_size"]) == \
        ("TINYGEN_DATA", 20, 4900)


def test_resume_keeps_the_checkpoint_settings_and_refuses_conflicts(tmp_path, capsys,
                                                                    small_mnist, monkeypatch):
    out = tmp_path / "run"
    code, _, err = train(out, small_mnist, capsys, "--seed", "3", "--val-fraction", "0.25",
                         "--latent-dim", "4")
    assert code == 0, err
    before = _snapshot(out)
    code, _, err = train(out, small_mnist, capsys, "--resume", out / "last.ckpt", "--seed", "4",
                         "--val-fraction", "0.2", "--batch-size", "7", "--latent-dim", "5",
                         epochs=2)
    line = _error_line(err)
    assert code == 2
    for part in ("--seed 4 (checkpoint: 3)", "--val-fraction 0.2 (checkpoint: 0.25)",
                 "--batch-size 7 (checkpoint: 40)", "--latent-dim 5 (checkpoint: 4)"):
        assert part in line, line
    assert _snapshot(out) == before
    other = _mnist_dir(_mnist_dir(tmp_path / "other", "train", n=50), "t10k", n=10)
    code, _, err = train(out, other, capsys, "--resume", out / "last.ckpt", epochs=2)
    assert code == 2 and f"--data {other} (checkpoint: {small_mnist})" in _error_line(err)
    # without the flags (and with TINYGEN_DATA pointing elsewhere) the checkpoint's data wins
    monkeypatch.setenv("TINYGEN_DATA", str(other))
    code, _, err = cli(["train", "mlp-ae", "--resume", out / "last.ckpt", "--epochs", 2,
                        "--out", out, "--no-progress"], capsys)
    assert code == 0, err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train_config"]["seed"] == 3 and cfg["train_config"]["val_fraction"] == 0.25
    assert cfg["train_config"]["batch_size"] == 40 and cfg["model_config"]["latent_dim"] == 4
    assert cfg["data"]["data_dir"] == str(small_mnist) and cfg["data"]["train_size"] == 90


def test_torn_metrics_record_and_stale_temporaries_on_resume(tmp_path, capsys, small_mnist):
    out = tmp_path / "run"
    assert train(out, small_mnist, capsys, "--log-every", "1")[0] == 0
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "st')                  # a record cut short by a kill
    stale = out / (TMP_PREFIX + "x1y2-last.ckpt")          # a checkpoint write cut short
    stale.write_bytes(b"half a checkpoint")
    code, _, err = train(out, small_mnist, capsys, "--resume", out / "last.ckpt", epochs=2)
    assert code == 0, err
    assert f"dropped 1 incomplete record(s) from {out / 'metrics.jsonl'}" in err
    assert f"removed a temporary file left by an interrupted run: {stale}" in err
    assert not [n for n in os.listdir(out) if n.startswith(TMP_PREFIX)]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2]


def _comparable(metrics_path):
    drop = {"images_per_s", "seconds"}
    return [{k: v for k, v in json.loads(line).items() if k not in drop}
            for line in open(metrics_path)]


def test_kill_9_mid_epoch_then_resume_repeats_the_uninterrupted_run(tmp_path, small_mnist):
    import signal
    import subprocess
    import sys
    import time

    # 12 short epochs: the kill, soon after the first last.ckpt, must land before the end even
    # on a fast idle machine (with 4 epochs a quiet run finished within the 50 ms below)
    def command(out, *extra):
        return [sys.executable, "-m", "tinygen", "train", "mlp-ae", "--data", str(small_mnist),
                "--epochs", "12", "--out", str(out), "--hidden", "16", "--batch-size", "10",
                "--log-every", "1", "--no-progress", "--classifier", "none", *extra]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    subprocess.run(command(whole), check=True, capture_output=True, env=env, timeout=600)
    log = open(tmp_path / "cut.log", "w")
    proc = subprocess.Popen(command(cut), stdout=log, stderr=log, env=env)
    deadline = time.time() + 300
    while not (cut / "last.ckpt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.02)                                       # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    assert (cut / "last.ckpt").exists(), (tmp_path / "cut.log").read_text()
    assert not (cut / "model.ckpt").exists()               # it was killed before the end
    subprocess.run(command(cut, "--resume", str(cut / "last.ckpt")), check=True,
                   capture_output=True, env=env, timeout=600)
    a, b = load_checkpoint(whole / "model.ckpt"), load_checkpoint(cut / "model.ckpt")
    for k, v in a["state_dict"].items():
        np.testing.assert_array_equal(b["state_dict"][k], v)
    assert _comparable(whole / "metrics.jsonl") == _comparable(cut / "metrics.jsonl")
    assert not [n for n in os.listdir(cut) if n.startswith(TMP_PREFIX)]


# -- 7. file-system errors: one line naming the path and the cause --------------------------------
def test_out_that_cannot_be_a_run_directory(tmp_path, capsys, small_mnist):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out, cause in ((a_file, "is a file, not a directory"),
                       (a_file / "sub", "Not a directory")):
        code, _, err = train(out, small_mnist, capsys)
        line = _error_line(err)
        assert code == 2 and str(out if cause.startswith("is") else a_file / "sub") in line
        assert cause in line, line
    code, _, err = cli(["sample", tmp_path / "nope.ckpt", "--out", tmp_path], capsys)
    assert code == 2 and f"{tmp_path}: --out is a directory" in _error_line(err)


def _tmpfs(path, size):
    """Mount a tmpfs of ``size`` at ``path`` (root only); False when that is not possible."""
    import subprocess
    path.mkdir()
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def _umount(path):
    import subprocess
    subprocess.run(["umount", str(path)], capture_output=True)


def test_read_only_out_is_refused_before_any_work(tmp_path, capsys, small_mnist, monkeypatch):
    ro = tmp_path / "ro"
    mounted = _tmpfs(ro, "1m")
    try:
        if mounted:
            import subprocess
            subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        else:   # not root: a directory without write permission does it
            ro.chmod(0o555)
        code, _, err = train(ro / "run", small_mnist, capsys)
        line = _error_line(err)
        assert code == 2 and str(ro / "run") in line
        assert "Read-only file system" in line or "Permission denied" in line, line
    finally:
        if mounted:
            _umount(ro)
        else:
            ro.chmod(0o755)


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, capsys,
                                                                     small_mnist, monkeypatch):
    disk = tmp_path / "disk"
    mounted = _tmpfs(disk, "2m")
    try:
        out = disk / "run"
        code, _, err = train(out, small_mnist, capsys)
        assert code == 0, err
        before = (out / "last.ckpt").read_bytes()
        if mounted:      # fill the disk but for a few pages: small records fit, a checkpoint not
            free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
            with open(disk / "filler", "wb") as f:
                f.write(bytes(max(free - 24 * 1024, 0)))
        else:            # not root: the checkpoint's write fails as on a full disk
            real_fsync = os.fsync

            def fsync(fd):
                if os.readlink(f"/proc/self/fd/{fd}").endswith("last.ckpt"):
                    raise OSError(28, "No space left on device")
                return real_fsync(fd)
            monkeypatch.setattr(os, "fsync", fsync)
        code, _, err = train(out, small_mnist, capsys, "--resume", out / "last.ckpt", epochs=2)
        line = _error_line(err)
        assert code == 2 and "No space left on device" in line and str(out) in line, line
        assert (out / "last.ckpt").read_bytes() == before
        assert load_checkpoint(out / "last.ckpt")["trainer"]["epoch"] == 1
        assert not [n for n in os.listdir(out) if n.startswith(TMP_PREFIX)]
    finally:
        if mounted:
            _umount(disk)


# -- 8. crafted or mismatched checkpoints ---------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_mnist):
    out = tmp_path_factory.mktemp("trained") / "run"
    code = main(["train", "mlp-ae", "--data", str(small_mnist), "--epochs", "1", "--out",
                 str(out), *FAST])
    assert code == 0
    return out


def _crafted(ckpt_path, tmp_path, change):
    record = load_checkpoint(ckpt_path)
    change(record)
    return save_checkpoint(tmp_path / "crafted.ckpt", record)


@pytest.mark.parametrize("change,msg", [
    (lambda r: r.pop("state_dict"), "not a model checkpoint: missing state_dict"),
    (lambda r: r.update(model_config=[1]), "entry 'model_config' must be a dict, found list"),
    (lambda r: r.update(model="nope"), "cannot rebuild its model (unknown model 'nope'"),
    (lambda r: r["model_config"].update(latent_dim="x"), "cannot rebuild its model"),
    (lambda r: r["state_dict"].update({"decoder.0.weight": 3}), "must be an array, found int"),
    (lambda r: r["state_dict"].popitem(), "its weights do not fit model 'mlp-ae'"),
    (lambda r: r["state_dict"].update({k: np.zeros((2, 2), np.float32)
                                       for k in list(r["state_dict"])[:1]}),
     "its weights do not fit model 'mlp-ae'"),
    (lambda r: [v.fill(np.nan) for v in list(r["state_dict"].values())[:1]], "NaN or infinite"),
])
def test_crafted_checkpoints_give_one_line_errors(tmp_path, capsys, trained, change, msg):
    path = _crafted(trained / "model.ckpt", tmp_path, change)
    for argv in (["eval", path], ["sample", path, "--out", tmp_path / "s.png"]):
        code, _, err = cli(argv, capsys)
        line = _error_line(err)
        assert code == 2 and str(path) in line and msg in line, line


def test_resume_from_a_crafted_checkpoint(tmp_path, capsys, trained, small_mnist):
    path = _crafted(trained / "last.ckpt", tmp_path, lambda r: r["trainer"].update(step=-3))
    code, _, err = train(tmp_path / "r", small_mnist, capsys, "--resume", path, epochs=2)
    assert code == 2 and "trainer entry 'step' must be an int >= 0" in _error_line(err)
    path = _crafted(trained / "last.ckpt", tmp_path, lambda r: r.pop("rng"))
    code, _, err = train(tmp_path / "r", small_mnist, capsys, "--resume", path, epochs=2)
    assert code == 2 and "missing rng" in _error_line(err)
    assert not (tmp_path / "r").exists()


# -- 9. every option is checked before any work ---------------------------------------------------
@pytest.mark.parametrize("extra,msg", [
    (["--epochs", "0"], "epochs must be >= 1"),
    (["--val-fraction", "0.999"], "leaves no training data"),
    (["--val-fraction", "0.001"], "leaves an empty validation split"),
    (["--latent-dim", "500"], "--latent-dim 500 is beyond what the PCA baseline can fit on 110"),
])
def test_mistakes_are_found_before_any_file_is_written(tmp_path, capsys, small_mnist, extra, msg):
    out = tmp_path / "run"
    code, _, err = cli(["train", "linear-ae", "--data", small_mnist, "--out", out,
                        "--no-progress", *extra], capsys)
    assert code == 2 and msg in _error_line(err)
    assert not out.exists()


def test_classifier_is_checked_before_training(tmp_path, capsys, small_mnist, trained):
    for path, msg in ((tmp_path / "nope.ckpt", "does not exist"),
                      (trained / "model.ckpt", "not of the 'classifier' model")):
        code, _, err = cli(["train", "cvae", "--data", small_mnist, "--classifier", path,
                            "--out", tmp_path / "run", "--no-progress"], capsys)
        line = _error_line(err)
        assert code == 2 and line.startswith("tinygen: error: --classifier:") and msg in line
        assert not (tmp_path / "run").exists()


def test_eval_without_a_held_out_set_explains(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TINYGEN_DATA", raising=False)
    out = tmp_path / "run"
    code, _, err = cli(["train", "mlp-ae", "--epochs", "1", "--val-fraction", "0", "--out", out,
                        *FAST], capsys)
    assert code == 0, err
    code, _, err = cli(["eval", out / "model.ckpt"], capsys)
    line = _error_line(err)
    assert code == 2 and "nothing to evaluate on" in line and "--data DIR" in line


# -- 10. the smaller items -----------------------------------------------------------------------
def test_negative_numbers_reach_the_range_checks(tmp_path, capsys):
    for flag, value, msg in (("--lr", "-1e-3", "lr must be a finite number > 0, got -0.001"),
                             ("--seed", "-1", "seed must be >= 0, got -1")):
        code, _, err = cli(["train", "mlp-ae", flag, value, "--out", tmp_path / "r"], capsys)
        assert code == 2 and msg in _error_line(err)
    assert not (tmp_path / "r").exists()


def test_tinygen_data_naming_a_file(tmp_path, capsys, monkeypatch):
    (tmp_path / "f").write_text("x")
    monkeypatch.setenv("TINYGEN_DATA", str(tmp_path / "f"))
    code, _, err = cli(["train", "mlp-ae", "--out", tmp_path / "r", "--no-progress"], capsys)
    assert code == 2 and f"TINYGEN_DATA {tmp_path / 'f'}: is a file" in _error_line(err)


def test_interrupt_before_the_first_epoch_names_no_missing_checkpoint(tmp_path, capsys,
                                                                      small_mnist, monkeypatch):
    from tinygen.train import loop

    def interrupted(self, resume=None):
        raise KeyboardInterrupt
    monkeypatch.setattr(loop.Trainer, "fit", interrupted)
    code, _, err = train(tmp_path / "r", small_mnist, capsys)
    assert code == 130 and "no checkpoint was written" in err and "last.ckpt" not in err


def test_run_files_respect_the_umask(tmp_path, capsys, small_mnist):
    old = os.umask(0o027)
    try:
        assert train(tmp_path / "r", small_mnist, capsys)[0] == 0
    finally:
        os.umask(old)
    for name in ("config.json", "last.ckpt", "model.ckpt", "results.json", "samples.png"):
        assert os.stat(tmp_path / "r" / name).st_mode & 0o777 == 0o640, name


def test_char_rnn_help_describes_its_own_data(capsys):
    with pytest.raises(SystemExit):
        main(["train", "char-rnn", "--help"])
    out = capsys.readouterr().out
    assert "--data FILE" in out and "text file" in out and "MNIST" not in out


def test_diverging_loss_warns(tmp_path, capsys, small_mnist):
    # a linear decoder's loss is unbounded: at lr 1e6 it grows by ~1e26 without reaching inf
    code, _, err = cli(["train", "linear-ae", "--data", small_mnist, "--lr", "1e6", "--epochs",
                        2, "--out", tmp_path / "r", "--no-progress"], capsys)
    assert code == 0, err
    assert err.count("warning: the train loss grew from") == 1 and "smaller --lr" in err
    code, _, err = cli(["train", "linear-ae", "--data", small_mnist, "--epochs", 2,
                        "--out", tmp_path / "ok", "--no-progress"], capsys)
    assert code == 0 and "warning" not in err


# -- 11. library: .numpy() and the dtype rule ----------------------------------------------------
def test_numpy_refuses_a_tensor_that_requires_grad_like_pytorch():
    import tinygen

    w = tinygen.tensor([1.0, 2.0], requires_grad=True)
    for t in (w, w * 2):
        with pytest.raises(RuntimeError, match=r"requires grad\. Use tensor\.detach\(\)\.numpy"):
            t.numpy()
    view = w.detach().numpy()
    assert view.flags.writeable and np.shares_memory(view, w.array)   # PyTorch shares it too
    with tinygen.no_grad():
        np.testing.assert_array_equal((w * 2).numpy(), [2.0, 4.0])
    (w * w).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [2.0, 4.0])


def test_linear_and_conv2d_share_one_dtype_rule():
    import tinygen
    from tinygen import nn

    lin, conv = nn.Linear(4, 2), nn.Conv2d(1, 1, 3)
    for dtype in (np.int64, np.float64):
        for layer, shape in ((lin, (2, 4)), (conv, (1, 1, 4, 4))):
            x = tinygen.tensor(np.ones(shape, dtype))
            with pytest.raises(TypeError, match="must have the same floating dtype"):
                layer(x)
    assert lin(tinygen.ones(2, 4)).dtype == np.float32
    assert conv(tinygen.ones(1, 1, 4, 4)).dtype == np.float32
