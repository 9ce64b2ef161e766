"""tinygen.train.images: exact grid layout, PNG files read back, plots, errors, atomic writes."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import tinygen
from tinygen.train import images as img


def test_grid_layout_is_exact():
    x = np.stack([np.full((2, 3), v) for v in (0.0, 0.5, 1.0)])        # (3, 2, 3)
    g = img.make_grid(x, nrow=2, padding=1, pad_value=0.2)
    assert g.dtype == np.uint8 and g.shape == (1 + 2 * 3, 1 + 2 * 4)
    pad = round(0.2 * 255)
    assert g[0].tolist() == [pad] * 9                     # top border
    assert (g[1:3, 1:4] == 0).all()                       # tile 0 at row 0, col 0
    assert (g[1:3, 5:8] == 128).all()                     # tile 1 (0.5 -> 127.5 -> 128)
    assert (g[4:6, 1:4] == 255).all()                     # tile 2 starts the second row
    assert (g[4:6, 5:8] == pad).all()                     # empty slot: padding colour


def test_grid_channels_and_clipping():
    gray = img.make_grid(np.full((4, 1, 5, 5), 2.0), padding=0)   # (N, 1, H, W), clipped
    assert gray.shape == (10, 10) and (gray == 255).all()
    rgb = np.zeros((1, 3, 4, 4))
    rgb[0, 1] = 1.0                                               # pure green
    g = img.make_grid(rgb, padding=0)
    assert g.shape == (4, 4, 3) and g[0, 0].tolist() == [0, 255, 0]
    neg = img.make_grid(np.full((1, 2, 2), -1.0), padding=0)
    assert (neg == 0).all()
    t = img.make_grid(tinygen.ones(2, 1, 3, 3), padding=0)       # a Tensor works too
    assert t.shape == (3, 6)


def test_save_image_grid_reads_back(tmp_path):
    x = np.zeros((4, 1, 28, 28), np.float32)
    x[3] = 1.0
    path = img.save_image_grid(x, tmp_path / "sub" / "g.png", nrow=2, padding=2, scale=2)
    with Image.open(path) as im:
        a = np.asarray(im)
    assert a.shape == (2 * (2 + 2 * 30), 2 * (2 + 2 * 30))
    assert (a[2 * 32:2 * 60, 2 * 32:2 * 60] == 255).all()       # tile 3, upsampled
    assert (a[4:56, 4:56] == 0).all()                           # tile 0
    assert sorted(os.listdir(tmp_path / "sub")) == ["g.png"]     # no temporary file left


def test_reconstructions_alternate_rows(tmp_path):
    orig = np.zeros((3, 1, 4, 4))
    rec = np.ones((3, 1, 4, 4))
    path = img.save_reconstructions(orig, rec, tmp_path / "r.png", per_row=2)
    with Image.open(path) as im:
        a = np.asarray(im)
    # rows: [o0 o1], [r0 r1], [o2 blank], [r2 blank]; tiles 4x4 with padding 2
    assert a.shape == (2 + 4 * 6, 2 + 2 * 6)
    tile = lambda r, c: a[2 + 6 * r:6 + 6 * r, 2 + 6 * c:6 + 6 * c]  # noqa: E731
    assert (tile(0, 1) == 0).all() and (tile(1, 1) == 255).all()
    assert (tile(2, 0) == 0).all() and (tile(3, 0) == 255).all()
    with pytest.raises(ValueError, match="same shape"):
        img.save_reconstructions(orig, rec[:2], tmp_path / "bad.png")


def test_interpolation_rows(tmp_path):
    rows = np.linspace(0, 1, 10).reshape(1, 10, 1, 1, 1) * np.ones((2, 10, 1, 5, 5))
    with Image.open(img.save_interpolations(rows, tmp_path / "i.png")) as im:
        a = np.asarray(im)
    assert a.shape == (2 + 2 * 7, 2 + 10 * 7)
    assert a[2, 2] == 0 and a[2, 2 + 9 * 7] == 255
    with pytest.raises(ValueError, match=r"rows must have shape"):
        img.save_interpolations(np.zeros((2, 5, 5)), tmp_path / "x.png")


@pytest.mark.parametrize("bad", [np.zeros((5, 5)), np.zeros((2, 2, 5, 5)), np.zeros((0, 5, 5))])
def test_bad_image_shapes(bad):
    with pytest.raises(ValueError, match="images"):
        img.make_grid(bad)


def _png(path):
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
        return np.asarray(im)


def test_loss_curves_from_dict_list_and_jsonl(tmp_path):
    _png(img.plot_loss_curves({"a": [3.0, 2.0, 1.0], "b": [(1, 0.5), (5, 0.25)]},
                              tmp_path / "d.png", title="t"))
    metrics = tmp_path / "m.jsonl"
    recs = [{"kind": "train", "step": s, "loss": 1.0 / s, "images_per_s": 100.0}
            for s in range(1, 50)] + [{"kind": "val", "step": 49, "epoch": 1, "mse": 0.01}]
    metrics.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    series = img._read_history(str(metrics))
    assert set(series) == {"train loss", "val mse"}               # images_per_s, step skipped
    assert series["val mse"][0].tolist() == [49]
    _png(img.plot_loss_curves(str(metrics), tmp_path / "m.png"))
    with pytest.raises(ValueError, match="history"):
        img.plot_loss_curves({"a": np.zeros((2, 3))}, tmp_path / "bad.png")


def test_scatter_and_density(tmp_path):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(300, 2))
    _png(img.plot_scatter_2d(pts, tmp_path / "s.png", labels=rng.integers(0, 3, 300),
                             reference=rng.normal(size=(100, 2))))
    seen = []

    def log_density(grid):
        seen.append(grid.shape)
        return -0.5 * (grid ** 2).sum(axis=1)

    _png(img.plot_density_2d(log_density, tmp_path / "p.png", resolution=50))
    assert seen == [(2500, 2)]
    with pytest.raises(ValueError, match=r"points must have shape \(N, 2\)"):
        img.plot_scatter_2d(np.zeros((5, 3)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="labels must have shape"):
        img.plot_scatter_2d(pts, tmp_path / "x.png", labels=np.zeros(3))
    with pytest.raises(ValueError, match="must return shape"):
        img.plot_density_2d(lambda g: np.zeros(3), tmp_path / "x.png", resolution=10)
    assert not (tmp_path / "x.png").exists()
