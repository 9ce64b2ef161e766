"""tinygen.data: IDX files (and malformed ones), MNIST directories, the embedded digits, the
split, pixel transforms, toy sets, the batch iterator."""
import gzip
import os
import pathlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygen.data import (TOY_DATASETS, BatchIterator, Dataset, dequantize, dynamic_binarize,
                          load_embedded_mnist, load_mnist, make_moons, read_idx,
                          static_binarize, train_val_split, write_idx)

SHARED_MNIST = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


# -- IDX ------------------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(0, 5), min_size=1, max_size=4),
       dtype=st.sampled_from(["uint8", "int8", "int16", "int32", "float32", "float64"]),
       gz=st.booleans(), seed=st.integers(0, 2**16))
def test_idx_round_trip(tmp_path_factory, shape, dtype, gz, seed):
    rng = np.random.default_rng(seed)
    a = (rng.normal(size=shape) * 100).astype(dtype)
    path = tmp_path_factory.mktemp("idx") / ("a.idx.gz" if gz else "a.idx")
    write_idx(path, a)
    b = read_idx(path)
    assert b.dtype == a.dtype and b.shape == a.shape
    np.testing.assert_array_equal(a, b)


def test_idx_header_is_big_endian(tmp_path):
    write_idx(tmp_path / "x", np.array([[1, 2, 3]], np.int16))
    raw = (tmp_path / "x").read_bytes()
    assert raw == bytes([0, 0, 0x0B, 2]) + struct.pack(">II", 1, 3) + struct.pack(">3h", 1, 2, 3)


def _raw(tmp_path, data, name="f.idx"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("data,msg", [
    (b"\x00", "shorter than the 4-byte magic"),
    (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "does not start with two zero bytes"),
    (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "unknown IDX type code 0x07"),
    (b"\x00\x00\x08\x00", "declares 0 dimensions"),
    (b"\x00\x00\x08\x02" + struct.pack(">I", 1), "truncated IDX header"),
    (b"\x00\x00\x08\x01" + struct.pack(">I", 4) + b"\x01\x02", "truncated IDX file.*needs 4.*found 2"),
    (b"\x00\x00\x08\x01" + struct.pack(">I", 1) + b"\x01\x02", "1 unexpected trailing bytes"),
])
def test_malformed_idx_files_are_refused(tmp_path, data, msg):
    path = _raw(tmp_path, data)
    with pytest.raises(ValueError, match=msg) as e:
        read_idx(path)
    assert str(path) in str(e.value)


def test_truncated_gzip_is_refused(tmp_path):
    write_idx(tmp_path / "a.gz", np.zeros((50, 28, 28), np.uint8))
    raw = (tmp_path / "a.gz").read_bytes()
    (tmp_path / "b.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="b.gz"):
        read_idx(tmp_path / "b.gz")


# -- MNIST directories ----------------------------------------------------------------------------
def _mnist_dir(d, prefix="t10k", n=7, gz=True, images=None, labels=None):
    ext = ".gz" if gz else ""
    images = np.arange(n * 784, dtype=np.int64).reshape(n, 28, 28).astype(np.uint8) \
        if images is None else images
    labels = (np.arange(n) % 10).astype(np.uint8) if labels is None else labels
    write_idx(d / f"{prefix}-images-idx3-ubyte{ext}", images)
    write_idx(d / f"{prefix}-labels-idx1-ubyte{ext}", labels)
    return d


@pytest.mark.parametrize("gz", [True, False])
def test_test_only_directory_serves_test_and_explains_train(tmp_path, gz):
    _mnist_dir(tmp_path, gz=gz)
    ds = load_mnist("test", tmp_path)
    assert ds.images.shape == (7, 1, 28, 28) and ds.images.dtype == np.float32
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == list(range(7))
    np.testing.assert_allclose(ds.images[0, 0, 0, :3], np.array([0, 1, 2]) / 255.0)
    with pytest.raises(FileNotFoundError, match="no MNIST train files.*train-images-idx3-ubyte"):
        load_mnist("train", tmp_path)


def test_environment_variable_names_the_directory(tmp_path, monkeypatch):
    _mnist_dir(tmp_path)
    monkeypatch.setenv("TINYGEN_DATA", str(tmp_path))
    assert len(load_mnist("test")) == 7
    monkeypatch.delenv("TINYGEN_DATA")
    with pytest.raises(FileNotFoundError, match="--data DIR"):
        load_mnist("test")


def test_mnist_content_is_validated(tmp_path):
    _mnist_dir(tmp_path, labels=np.arange(6, dtype=np.uint8))
    with pytest.raises(ValueError, match="7 images but 6 labels"):
        load_mnist("test", tmp_path)
    _mnist_dir(tmp_path, images=np.zeros((7, 28, 27), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(N, 28, 28\)"):
        load_mnist("test", tmp_path)
    _mnist_dir(tmp_path, labels=np.full(7, 12, np.uint8))
    with pytest.raises(ValueError, match="labels must be 0..9"):
        load_mnist("test", tmp_path)
    with pytest.raises(ValueError, match="split must be"):
        load_mnist("valid", tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist("test", tmp_path / "nowhere")


@pytest.mark.skipif(not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").exists(),
                    reason="the real MNIST test files are not on this machine")
def test_real_mnist_test_set():
    ds = load_mnist("test", SHARED_MNIST)
    assert ds.images.shape == (10000, 1, 28, 28)
    assert ds.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert 0.12 < ds.images.mean() < 0.14


# -- the embedded digits and the split ------------------------------------------------------------
def test_embedded_digits():
    ds = load_embedded_mnist()
    assert ds.images.shape == (5000, 1, 28, 28) and ds.images.dtype == np.float32
    assert ds.images.min() == 0.0 and ds.images.max() == 1.0
    assert np.bincount(ds.labels).tolist() == [500] * 10
    assert 0.12 < ds.images.mean() < 0.14       # MNIST's mean intensity
    ds.images[:] = 0                            # a copy: the cache is not affected
    assert load_embedded_mnist().images.max() == 1.0


def test_split_is_fixed_stratified_and_disjoint():
    ds = load_embedded_mnist()
    train, val = train_val_split(ds, val_fraction=0.1, seed=0)
    again, val2 = train_val_split(ds, val_fraction=0.1, seed=0)
    np.testing.assert_array_equal(val.images, val2.images)
    assert len(train) == 4500 and len(val) == 500
    assert np.bincount(val.labels).tolist() == [50] * 10
    other = train_val_split(ds, val_fraction=0.1, seed=1)[1]
    assert not np.array_equal(other.images, val.images)
    # disjoint and complete: every image appears exactly once
    key = lambda d: {img.tobytes() for img in d.images}  # noqa: E731
    assert not key(train) & key(val)
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(ds, val_fraction=1.0)


def test_dataset_checks_lengths():
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        Dataset(np.zeros((3, 1, 28, 28), np.float32), np.zeros(2, np.int64))


# -- transforms -----------------------------------------------------------------------------------
def test_binarizations():
    x = np.random.default_rng(0).random((200, 1, 28, 28)).astype(np.float32)
    d1 = dynamic_binarize(x, np.random.default_rng(1))
    d2 = dynamic_binarize(x, np.random.default_rng(2))
    assert set(np.unique(d1).tolist()) == {0.0, 1.0} and d1.dtype == np.float32
    assert not np.array_equal(d1, d2)
    assert abs(d1.mean() - x.mean()) < 0.01
    s1, s2 = static_binarize(x, seed=3), static_binarize(x, seed=3)
    np.testing.assert_array_equal(s1, s2)
    assert not np.array_equal(s1, static_binarize(x, seed=4))
    assert np.all(dynamic_binarize(np.ones(5), np.random.default_rng(0)) == 1)
    assert np.all(dynamic_binarize(np.zeros(5), np.random.default_rng(0)) == 0)


def test_dequantize_stays_in_the_pixel_bin():
    x = np.arange(256, dtype=np.float32) / 255.0
    y = dequantize(np.repeat(x[None], 50, 0), np.random.default_rng(0))
    assert y.dtype == np.float32 and y.min() >= 0 and y.max() < 1
    bins = np.floor(y * 256)
    np.testing.assert_array_equal(bins, np.repeat(np.arange(256)[None], 50, 0))


# -- toy sets -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(TOY_DATASETS))
def test_toy_sets(name):
    make = TOY_DATASETS[name]
    a, b, c = make(500, seed=1), make(500, seed=1), make(500, seed=2)
    assert a.shape == (500, 2) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_toy_geometry():
    x, y = make_moons(1000, noise=0.0, seed=0)
    assert np.bincount(y).tolist() == [500, 500]
    np.testing.assert_allclose(np.hypot(*x[y == 0].T), 1.0, atol=1e-6)
    r = np.hypot(*TOY_DATASETS["rings"](3000, seed=0).T)
    assert all(np.any(np.abs(r - k) < 0.2) for k in (1, 2, 3))
    g = TOY_DATASETS["8gaussians"](4000, seed=0)
    angles = np.round(np.degrees(np.arctan2(g[:, 1], g[:, 0])) / 45) % 8
    assert np.bincount(angles.astype(int), minlength=8).min() > 350
    cb = TOY_DATASETS["checkerboard"](4000, seed=0)
    cells = np.floor(cb + 2).astype(int)          # 4x4 cells of size 1 over [-2, 2]^2
    assert np.all(cells.sum(axis=1) % 2 == 0)
    with pytest.raises(ValueError, match="n must be >= 1"):
        make_moons(0)


# -- batches --------------------------------------------------------------------------------------
def test_batch_iterator_covers_every_row_once_per_epoch():
    x, y = np.arange(23) * 10, np.arange(23)
    it = BatchIterator(x, y, batch_size=5, shuffle=True, seed=0)
    assert len(it) == 5
    epochs = []
    for _ in range(2):
        batches = list(it)
        assert [len(b[0]) for b in batches] == [5, 5, 5, 5, 3]
        rows = np.concatenate([b[1] for b in batches])
        assert sorted(rows.tolist()) == list(range(23))
        np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), rows * 10)
        epochs.append(rows)
    assert not np.array_equal(epochs[0], epochs[1]) and it.epoch == 2


def test_batch_iterator_drop_last_and_order():
    it = BatchIterator(np.arange(23), batch_size=5, drop_last=True)
    assert len(it) == 4
    assert np.concatenate([b[0] for b in it]).tolist() == list(range(20))


def test_batch_iterator_resume_gives_the_same_epoch():
    a = BatchIterator(np.arange(40), batch_size=8, shuffle=True, seed=5)
    list(a)
    state = a.state_dict()
    expected = [b[0].tolist() for b in a]
    b = BatchIterator(np.arange(40), batch_size=8, shuffle=True, seed=5)
    b.load_state_dict(state)
    assert [x[0].tolist() for x in b] == expected


def test_batch_iterator_errors():
    with pytest.raises(ValueError, match=r"array 1 has \(4,\)"):
        BatchIterator(np.zeros(5), np.zeros(4), batch_size=2)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        BatchIterator(np.zeros(5), batch_size=0)
    with pytest.raises(ValueError, match="at least one array"):
        BatchIterator(batch_size=2)


def test_load_toy_data_splits_and_seeds():
    from tinygen.data import load_toy_data

    data, desc = load_toy_data("8gaussians", n_train=200, n_test=50, val_fraction=0.1, seed=3)
    assert data.train.images.shape == (180, 2) and data.val.images.shape == (20, 2)
    assert data.test.images.shape == (50, 2) and data.train.images.dtype == np.float32
    assert desc["train_size"] == 180 and desc["test_size"] == 50
    # train and validation are a partition of one sample; the test sample is a different one
    both = np.concatenate([data.train.images, data.val.images])
    assert len(np.unique(both, axis=0)) == 200
    assert not np.isin(data.test.images[:, 0], both[:, 0]).any()
    again, _ = load_toy_data("8gaussians", n_train=200, n_test=50, val_fraction=0.1, seed=3)
    np.testing.assert_array_equal(again.train.images, data.train.images)
    none_val, _ = load_toy_data("moons", n_train=10, n_test=5, val_fraction=0.0)
    assert none_val.val is None and len(none_val.train) == 10
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_toy_data("spiral")


def test_balanced_indices_interleave_the_classes():
    from tinygen.data import balanced_indices
    labels = np.repeat(np.arange(10), 5)                  # a class-ordered split
    idx = balanced_indices(labels, 20)
    np.testing.assert_array_equal(labels[idx], np.tile(np.arange(10), 2))
    np.testing.assert_array_equal(idx[:3], [0, 5, 10])   # the first image of each class first
    np.testing.assert_array_equal(balanced_indices(np.array([0, 0, 0, 1]), 4), [0, 3, 1, 2])
    np.testing.assert_array_equal(balanced_indices(np.array([2, 2]), 5), [0, 1])
