"""tinygen.plots: exact grid layout, PNG files read back, plots, errors, atomic writes."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import tinygen
from tinygen import plots as img

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _read(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.mode, np.asarray(im)


def _png(path, min_size=100):
    """A plot: a real PNG, at least min_size pixels each way, not one flat colour."""
    assert isinstance(path, str) and os.path.getsize(path) > 1000
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    mode, a = _read(path)
    assert a.shape[0] > min_size and a.shape[1] > min_size
    assert a.reshape(-1, a.shape[-1] if a.ndim == 3 else 1).std(axis=0).max() > 0
    return a


def _only(directory, *names):
    """The directory holds exactly these files: no temporary file left behind."""
    assert sorted(os.listdir(directory)) == sorted(names)


# -- make_grid -----------------------------------------------------------------------------------
def test_grid_layout_is_exact():
    x = np.stack([np.full((2, 3), v) for v in (0.0, 0.5, 1.0)])        # (3, 2, 3)
    g = img.make_grid(x, nrow=2, padding=1, pad_value=0.2)
    assert g.dtype == np.uint8 and g.shape == (1 + 2 * 3, 1 + 2 * 4)
    pad = round(0.2 * 255)
    assert g[0].tolist() == [pad] * 9                     # top border
    assert g[:, 0].tolist() == [pad] * 7                  # left border
    assert g[3].tolist() == [pad] * 9                     # between the rows
    assert g[:, 4].tolist() == [pad] * 7                  # between the columns
    assert (g[1:3, 1:4] == 0).all()                       # tile 0 at row 0, col 0
    assert (g[1:3, 5:8] == 128).all()                     # tile 1 (0.5 -> 127.5 -> 128)
    assert (g[4:6, 1:4] == 255).all()                     # tile 2 starts the second row
    assert (g[4:6, 5:8] == pad).all()                     # empty slot: padding colour


def test_grid_pixels_keep_their_positions():
    x = np.arange(2 * 2 * 3).reshape(2, 2, 3) / 11.0                   # distinct pixels
    g = img.make_grid(x, nrow=1, padding=2)
    assert g.shape == (2 + 2 * 4, 2 + 5)
    np.testing.assert_array_equal(g[2:4, 2:5], np.round(x[0] * 255))
    np.testing.assert_array_equal(g[6:8, 2:5], np.round(x[1] * 255))   # nrow=1: a column


def test_grid_default_nrow_and_wide_nrow():
    x = np.zeros((5, 1, 2, 2))
    assert img.make_grid(x, padding=0).shape == (2 * 2, 3 * 2)        # ceil(sqrt(5)) = 3
    assert img.make_grid(x[:4], padding=0).shape == (4, 4)
    assert img.make_grid(x[:1], padding=1).shape == (4, 4)
    assert img.make_grid(x, nrow=10, padding=0).shape == (2, 10)     # at most N columns
    assert img.make_grid(x, nrow=np.int64(5), padding=0).shape == (2, 10)


def test_grid_rgb_vs_gray():
    rgb = np.zeros((2, 3, 2, 2))
    rgb[0, 1] = 1.0                                               # tile 0 pure green
    rgb[1, 0] = 1.0                                               # tile 1 pure red
    g = img.make_grid(rgb, nrow=2, padding=1, pad_value=0.0)
    assert g.shape == (4, 7, 3) and g.dtype == np.uint8
    assert g[1, 1].tolist() == [0, 255, 0] and g[2, 2].tolist() == [0, 255, 0]
    assert g[1, 4].tolist() == [255, 0, 0]
    assert g[0, 0].tolist() == [0, 0, 0] and g[1, 3].tolist() == [0, 0, 0]   # padding
    gray3 = img.make_grid(np.zeros((2, 2, 2)), padding=0)            # (N, H, W)
    gray4 = img.make_grid(np.zeros((2, 1, 2, 2)), padding=0)         # (N, 1, H, W)
    assert gray3.shape == gray4.shape == (2, 4)


def test_grid_clipping_nan_uint8_and_tensors():
    assert (img.make_grid(np.full((4, 1, 5, 5), 2.0), padding=0) == 255).all()
    assert (img.make_grid(np.full((1, 2, 2), -1.0), padding=0) == 0).all()
    assert (img.make_grid(np.array([[[np.nan, np.inf]]]), padding=0) == [[0, 255]]).all()
    assert img.make_grid(np.zeros((1, 1, 1)), padding=1, pad_value=3.0)[0, 0] == 255  # no wrap
    u8 = img.make_grid(np.array([[[0, 128, 255]]], np.uint8), padding=0)
    assert u8.tolist() == [[0, 128, 255]]                           # uint8 read as 0..255
    t = img.make_grid(tinygen.ones(2, 1, 3, 3), padding=0)          # a Tensor works too
    assert t.shape == (3, 6) and (t == 255).all()
    b = img.make_grid(np.array([[[True, False]]]), padding=0)
    assert b.tolist() == [[255, 0]]


@pytest.mark.parametrize("bad", [np.zeros((5, 5)), np.zeros((2, 2, 5, 5)), np.zeros((0, 5, 5)),
                                 np.zeros((2, 3, 0, 5)), np.zeros((1, 1, 1, 2, 2))])
def test_bad_image_shapes(bad):
    with pytest.raises(ValueError, match=r"images must .*" + str(bad.shape).replace("(", r"\(")
                       .replace(")", r"\)")):
        img.make_grid(bad)


@pytest.mark.parametrize("kwargs,name", [({"nrow": 0}, "nrow"), ({"nrow": 1.5}, "nrow"),
                                         ({"padding": -1}, "padding")])
def test_bad_grid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        img.make_grid(np.zeros((2, 2, 2)), **kwargs)


# -- saved grids ---------------------------------------------------------------------------------
def test_save_image_grid_reads_back(tmp_path):
    x = np.zeros((4, 1, 28, 28), np.float32)
    x[3] = 1.0
    x[0, 0, 0, 0] = 0.5
    path = img.save_image_grid(x, tmp_path / "sub" / "deeper" / "g.png", nrow=2, padding=2,
                               scale=2)
    assert path == str(tmp_path / "sub" / "deeper" / "g.png")
    mode, a = _read(path)
    assert mode == "L" and a.shape == (2 * (2 + 2 * 30), 2 * (2 + 2 * 30))
    assert (a[2 * 32:2 * 60, 2 * 32:2 * 60] == 255).all()       # tile 3, upsampled
    assert (a[4:4 + 2, 4:4 + 2] == 128).all()                   # one pixel -> a 2x2 block
    assert (a[6:60, 4:60] == 0).all() and (a[4:60, 6:60] == 0).all()   # rest of tile 0
    assert (a[:4] == 255).all() and (a[60:64] == 255).all()      # padding: white, upsampled
    assert (a[:, 60:64] == 255).all()
    _only(tmp_path / "sub" / "deeper", "g.png")


def test_save_image_grid_rgb_and_overwrite(tmp_path):
    x = np.zeros((2, 3, 4, 4))
    x[:, 2] = 1.0                                                # blue
    path = tmp_path / "rgb.png"
    path.write_bytes(b"old")
    img.save_image_grid(x, path, padding=0)
    mode, a = _read(path)
    assert mode == "RGB" and a.shape == (4, 8, 3) and a[0, 0].tolist() == [0, 0, 255]
    _only(tmp_path, "rgb.png")


@pytest.mark.parametrize("scale", [0, 1.5, "2"])
def test_bad_scale(tmp_path, scale):
    with pytest.raises(ValueError, match="scale"):
        img.save_image_grid(np.zeros((1, 2, 2)), tmp_path / "x.png", scale=scale)
    _only(tmp_path)


def test_reconstructions_alternate_rows(tmp_path):
    orig = np.zeros((3, 1, 4, 4))
    rec = np.ones((3, 1, 4, 4))
    path = img.save_reconstructions(orig, rec, tmp_path / "r.png", per_row=2)
    mode, a = _read(path)
    # rows: [o0 o1], [r0 r1], [o2 blank], [r2 blank]; tiles 4x4 with padding 2
    assert a.shape == (2 + 4 * 6, 2 + 2 * 6)
    tile = lambda r, c: a[2 + 6 * r:6 + 6 * r, 2 + 6 * c:6 + 6 * c]  # noqa: E731
    assert (tile(0, 0) == 0).all() and (tile(0, 1) == 0).all()
    assert (tile(1, 0) == 255).all() and (tile(1, 1) == 255).all()
    assert (tile(2, 0) == 0).all() and (tile(3, 0) == 255).all()
    assert (tile(2, 1) == 255).all()                                  # blank fill
    with pytest.raises(ValueError, match=r"same shape.*\(3, 1, 4, 4\) and \(2, 1, 4, 4\)"):
        img.save_reconstructions(orig, rec[:2], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="reconstructions must have shape"):
        img.save_reconstructions(orig, np.ones((3, 2, 4, 4)), tmp_path / "bad.png")
    _only(tmp_path, "r.png")


def test_reconstructions_default_width_and_positional_scale(tmp_path):
    orig, rec = np.zeros((20, 1, 28, 28)), np.ones((20, 28, 28))    # (N,1,H,W) vs (N,H,W)
    _, a = _read(img.save_reconstructions(orig, rec, tmp_path / "r.png", 2))  # scale=2
    assert a.shape == (2 * (2 + 4 * 30), 2 * (2 + 10 * 30))          # 10 per row, 4 rows
    _, b = _read(img.save_reconstructions(orig[:3], rec[:3], tmp_path / "s.png"))
    assert b.shape == (2 + 2 * 30, 2 + 3 * 30)                        # fewer than 10: 3 wide


def test_interpolation_rows(tmp_path):
    rows = np.linspace(0, 1, 10).reshape(1, 10, 1, 1, 1) * np.ones((2, 10, 1, 5, 5))
    mode, a = _read(img.save_interpolations(rows, tmp_path / "i.png"))
    assert mode == "L" and a.shape == (2 + 2 * 7, 2 + 10 * 7)
    assert a[2, 2] == 0 and a[2, 2 + 9 * 7] == 255 and a[9, 2 + 9 * 7] == 255
    assert a[2, 2 + 7] == round(255 / 9)
    _, b = _read(img.save_interpolations(rows[:, :, 0], tmp_path / "j.png", scale=3))
    assert b.shape == (3 * a.shape[0], 3 * a.shape[1])                # (R, steps, H, W)
    np.testing.assert_array_equal(b[::3, ::3], a)
    mode, c = _read(img.save_interpolations(np.ones((3, 4, 3, 2, 2)), tmp_path / "k.png"))
    assert mode == "RGB" and c.shape == (2 + 3 * 4, 2 + 4 * 4, 3)
    for bad in (np.zeros((2, 5, 5)), np.zeros((2, 3, 2, 5, 5)), np.zeros((0, 3, 5, 5))):
        with pytest.raises(ValueError, match=r"rows must have shape.*got \(" + str(bad.shape[0])):
            img.save_interpolations(bad, tmp_path / "x.png")
    _only(tmp_path, "i.png", "j.png", "k.png")


# -- plots ---------------------------------------------------------------------------------------
def _metrics_file(path, lines):
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def test_loss_curves_from_dict_list_records_and_jsonl(tmp_path):
    _png(img.plot_loss_curves({"a": [3.0, 2.0, 1.0], "b": [(1, 0.5), (5, 0.25)]},
                              tmp_path / "d.png", title="t"))
    _png(img.plot_loss_curves([3.0, 2.0, 1.5, 1.2], tmp_path / "l.png"))
    _png(img.plot_loss_curves({"a": np.linspace(1, 0.1, 200)}, tmp_path / "n.png"))
    recs = [{"kind": "train", "phase": "ae", "epoch": 1, "step": s, "loss": 1.0 / s,
             "images_per_s": 100.0, "time": 0.1 * s} for s in range(1, 50)]
    recs += [{"kind": "val", "phase": "ae", "step": 49, "epoch": 1, "mse": 0.01, "bpd": 1.5}]
    metrics = _metrics_file(tmp_path / "m.jsonl", recs)
    series = img._read_history(str(metrics))
    assert set(series) == {"train loss", "val mse", "val bpd"}   # bookkeeping keys skipped
    assert series["val mse"][0].tolist() == [49] and series["val mse"][1].tolist() == [0.01]
    np.testing.assert_array_equal(series["train loss"][0], np.arange(1, 50))
    assert set(img._read_history(metrics)) == set(series)        # a pathlib.Path too
    assert set(img._read_history(recs)) == set(series)           # records (Trainer.history)
    _png(img.plot_loss_curves(str(metrics), tmp_path / "m.png"))
    _png(img.plot_loss_curves(recs, tmp_path / "r.png"))
    _only(tmp_path, "d.png", "l.png", "n.png", "m.jsonl", "m.png", "r.png")


def test_loss_curves_name_phases_and_skip_a_cut_off_line(tmp_path):
    recs = [{"kind": "train", "phase": p, "step": s, "loss": 1.0} for p, s in
            (("layer1", 1), ("layer1", 2), ("finetune", 3))]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"kind": "train", "st')
    series = img._read_history(path)
    assert set(series) == {"layer1 train loss", "finetune train loss"}
    assert series["layer1 train loss"][0].tolist() == [1, 2]
    _png(img.plot_loss_curves(path, tmp_path / "p.png"))
    path.write_text('{"step": 1, "loss": 1}\nnot json\n{"step": 2, "loss": 1}\n')
    with pytest.raises(ValueError, match=r"line 2"):
        img.plot_loss_curves(path, tmp_path / "bad.png")
    path.write_text('[1, 2]\n')
    with pytest.raises(ValueError, match=r"line 1: expected a JSON object"):
        img.plot_loss_curves(path, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_loss_curves_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"history\['a'\].*\(2, 3\)"):
        img.plot_loss_curves({"a": np.zeros((2, 3))}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"history\['a'\]"):
        img.plot_loss_curves({"a": [1.0, (1, 2)]}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="history must be"):
        img.plot_loss_curves(3.0, tmp_path / "bad.png")
    with pytest.raises(FileNotFoundError):
        img.plot_loss_curves(tmp_path / "missing.jsonl", tmp_path / "bad.png")
    _only(tmp_path)


def test_log_scale_rule():
    assert img._log_scale([1000.0, 1.0, 5.0])
    assert not img._log_scale([100.0, 1.0])                      # exactly 100x: linear
    assert not img._log_scale([1000.0, 0.0])                     # a zero: linear
    assert not img._log_scale([1000.0, -1.0])
    assert img._log_scale([1000.0, 1.0, np.nan, np.inf])         # non-finite ignored
    assert not img._log_scale([])


def test_scatter(tmp_path):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(300, 2))
    _png(img.plot_scatter_2d(pts, tmp_path / "a.png", labels=rng.integers(0, 3, 300),
                             reference=rng.normal(size=(100, 2)), title="samples"))
    _png(img.plot_scatter_2d(pts, tmp_path / "b.png", labels=rng.normal(size=300)))
    _png(img.plot_scatter_2d(tinygen.tensor(pts), tmp_path / "c.png"))
    with pytest.raises(ValueError, match=r"points must have shape \(N, 2\), got \(5, 3\)"):
        img.plot_scatter_2d(np.zeros((5, 3)), tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"reference must have shape \(N, 2\), got \(4,\)"):
        img.plot_scatter_2d(pts, tmp_path / "x.png", reference=np.zeros(4))
    with pytest.raises(ValueError, match=r"labels must have shape \(300,\), got \(3,\)"):
        img.plot_scatter_2d(pts, tmp_path / "x.png", labels=np.zeros(3))
    _only(tmp_path, "a.png", "b.png", "c.png")


def test_density(tmp_path):
    seen = []

    def log_density(grid):
        seen.append((grid.shape, grid.dtype))
        return -0.5 * (grid ** 2).sum(axis=1)

    _png(img.plot_density_2d(log_density, tmp_path / "p.png", resolution=50, title="N(0, I)"))
    assert seen == [((2500, 2), np.float64)]                       # one call, (K, 2)
    _png(img.plot_density_2d(lambda g: tinygen.tensor(-(g ** 2).sum(1)), tmp_path / "t.png",
                             bounds=(0, 1, -2, 2), resolution=20))
    _only(tmp_path, "p.png", "t.png")


def test_density_grid_orientation_and_values():
    # a bump at (x, y) = (3, -3): row index follows y, column index follows x
    d, relative = img._density_grid(lambda g: -((g - [3.0, -3.0]) ** 2).sum(1), (-4, 4, -4, 4),
                                    9)
    assert d.shape == (9, 9) and not relative
    assert np.unravel_index(d.argmax(), d.shape) == (1, 7)           # ys[1] = -3, xs[7] = 3
    assert d.max() == pytest.approx(1.0)                             # exp(0): not rescaled
    d, _ = img._density_grid(lambda g: np.log(0.25) + 0 * g[:, 0], (0, 1, 0, 1), 3)
    np.testing.assert_allclose(d, 0.25)                              # exp(log p) itself
    d, relative = img._density_grid(lambda g: 1000.0 - (g ** 2).sum(1), (-1, 1, -1, 1), 3)
    assert relative and d.max() == 1.0 and np.isfinite(d).all()     # overflow: p / max p
    logp = np.array([0.0, np.nan, -np.inf, np.inf])
    d, _ = img._density_grid(lambda g: logp, (0, 1, 0, 1), 2)
    assert d.ravel().tolist() == [1.0, 0.0, 0.0, 1.0]


def test_density_errors(tmp_path):
    fn = lambda g: np.zeros(len(g))  # noqa: E731
    with pytest.raises(ValueError, match=r"must return shape \(100,\).*got \(3,\)"):
        img.plot_density_2d(lambda g: np.zeros(3), tmp_path / "x.png", resolution=10)
    with pytest.raises(ValueError, match="bounds"):
        img.plot_density_2d(fn, tmp_path / "x.png", bounds=(1, 0, 0, 1))
    with pytest.raises(ValueError, match="bounds"):
        img.plot_density_2d(fn, tmp_path / "x.png", bounds=(0, 1))
    with pytest.raises(ValueError, match="resolution"):
        img.plot_density_2d(fn, tmp_path / "x.png", resolution=1)
    with pytest.raises(ValueError, match="no usable value"):
        img.plot_density_2d(lambda g: np.full(len(g), np.nan), tmp_path / "x.png", resolution=4)
    _only(tmp_path)


# -- atomic writes and imports -------------------------------------------------------------------
def test_failed_write_leaves_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "g.png"
    target.write_bytes(b"previous")

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        img.save_image_grid(np.zeros((1, 2, 2)), target)
    assert target.read_bytes() == b"previous"
    _only(tmp_path, "g.png")

    from matplotlib.figure import Figure

    def broken_savefig(self, fp, *args, **kwargs):
        fp.write(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        img.plot_loss_curves({"a": [1.0, 2.0]}, target)
    assert target.read_bytes() == b"previous"
    _only(tmp_path, "g.png")


def test_lazy_imports_and_no_pyplot(tmp_path):
    code = ("import sys, tinygen.plots as img\n"
            "assert 'matplotlib' not in sys.modules and 'PIL' not in sys.modules\n"
            f"img.plot_loss_curves({{'a': [1, 2]}}, {str(tmp_path / 'a.png')!r})\n"
            "assert 'matplotlib.pyplot' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    _png(str(tmp_path / "a.png"))
