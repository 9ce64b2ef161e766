"""Pictures as PNG: image grids (Pillow) and plots (matplotlib, Agg, no global pyplot state).

Every function writes atomically (a temporary file in the destination directory, then
``os.replace``), creates the parent directories and returns the path as a ``str``.

Images are NumPy arrays (or anything with a ``.numpy()`` method, e.g. a Tensor) shaped
(N, H, W), (N, 1, H, W) or (N, 3, H, W), float with values in [0, 1] (clipped; NaN shows as 0).
uint8 images are read as 0..255. Pillow and matplotlib are imported inside the functions, so
importing :mod:`tinygen` or :mod:`tinygen.train` does not load them.
"""
from __future__ import annotations

import json
import math
import operator
import os

import numpy as np

from ._fileio import atomic_write

__all__ = ["make_grid", "save_image_grid", "save_reconstructions", "save_interpolations",
           "plot_loss_curves", "plot_scatter_2d", "plot_density_2d"]

# JSON-lines keys that are bookkeeping or throughput, not curves to plot
_NOT_CURVES = frozenset({"step", "epoch", "time", "seconds", "images_per_s", "kind", "phase"})


def _array(x) -> np.ndarray:
    """A NumPy array from an array-like or a Tensor (GPU tensors are copied to the host)."""
    if hasattr(x, "numpy"):
        if str(getattr(x, "device", "cpu")) != "cpu" and hasattr(x, "cpu"):
            x = x.cpu()
        x = x.detach().numpy() if hasattr(x, "detach") else x.numpy()
    return np.asarray(x)


def _int(value, name, minimum):
    try:
        v = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v}")
    return v


def _as_nhwc(images, name="images") -> np.ndarray:
    """(N, H, W) / (N, 1, H, W) / (N, 3, H, W) -> float64 (N, H, W, C) clipped to [0, 1]."""
    x = _array(images)
    shape = x.shape
    if x.ndim == 3:
        x = x[..., None]                                   # (N, H, W) -> (N, H, W, 1)
    elif x.ndim == 4 and x.shape[1] in (1, 3):
        x = x.transpose(0, 2, 3, 1)                        # (N, C, H, W) -> (N, H, W, C)
    else:
        raise ValueError(f"{name} must have shape (N, H, W), (N, 1, H, W) or (N, 3, H, W), got "
                         f"{shape}")
    if 0 in x.shape:
        raise ValueError(f"{name} must hold at least one non-empty image, got shape {shape}")
    if x.dtype == np.uint8:
        x = x / 255.0
    elif not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise ValueError(f"{name} must be numeric, got dtype {x.dtype} (shape {shape})")
    x = x.astype(np.float64)
    return np.clip(np.nan_to_num(x, nan=0.0), 0.0, 1.0)


def _grid(x, nrow, padding, pad_value) -> np.ndarray:
    """Tile (N, H, W, C) floats in [0, 1] into uint8 (H', W') or (H', W', 3)."""
    n, h, w, c = x.shape
    nrow = int(math.ceil(math.sqrt(n))) if nrow is None else _int(nrow, "nrow", 1)
    padding = _int(padding, "padding", 0)
    ncol = min(nrow, n)                                    # as torchvision: no empty columns
    nrows = int(math.ceil(n / ncol))
    pad = float(np.clip(np.nan_to_num(float(pad_value)), 0.0, 1.0))
    grid = np.full((padding + nrows * (h + padding), padding + ncol * (w + padding), c), pad)
    for i in range(n):
        r, col = divmod(i, ncol)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top:top + h, left:left + w] = x[i]
    out = np.round(grid * 255.0).astype(np.uint8)
    return out[..., 0] if c == 1 else out


def make_grid(images, nrow=None, padding=2, pad_value=1.0) -> np.ndarray:
    """Tile ``images`` into one picture.

    images: (N, H, W), (N, 1, H, W) or (N, 3, H, W), values in [0, 1] (clipped).
    nrow: images per row (default ceil(sqrt(N)); at most N columns are made).
    padding: pixels of ``pad_value`` (in [0, 1]) between the tiles and around the border.
    Returns uint8 (H', W') for gray images or (H', W', 3) for RGB, with
    H' = padding + rows * (H + padding), W' = padding + cols * (W + padding); tile i sits in
    row i // cols, column i % cols; empty slots of the last row are ``pad_value``.
    """
    return _grid(_as_nhwc(images), nrow, padding, pad_value)


def _save_pixels(pixels, path, scale=1) -> str:
    from PIL import Image

    scale = _int(scale, "scale", 1)
    if scale > 1:
        pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)   # nearest upsampling
    image = Image.fromarray(np.ascontiguousarray(pixels))
    with atomic_write(path) as f:
        image.save(f, format="PNG")
    return os.fspath(path)


def save_image_grid(images, path, nrow=None, padding=2, scale=1) -> str:
    """Save ``images`` (N, H, W), (N, 1, H, W) or (N, 3, H, W) as one PNG grid.

    The layout is :func:`make_grid`'s (white padding); ``scale`` is an integer nearest-neighbour
    upsampling factor of the whole picture (2 makes 28x28 digits readable). Gray images give an
    8-bit gray PNG ("L"), RGB images an "RGB" PNG. Returns ``path``.
    """
    return _save_pixels(make_grid(images, nrow=nrow, padding=padding), path, scale)


def save_reconstructions(originals, reconstructions, path, scale=1, per_row=10) -> str:
    """Originals and their reconstructions as alternating rows of a PNG grid.

    originals, reconstructions: the same shape, (N, H, W), (N, 1, H, W) or (N, 3, H, W).
    Row 0 holds originals 0..per_row-1, row 1 their reconstructions, row 2 the next originals,
    and so on; the last pair of rows is filled up with blank (white) tiles. With N < per_row the
    picture is N tiles wide. Returns ``path``.
    """
    a, b = _as_nhwc(originals, "originals"), _as_nhwc(reconstructions, "reconstructions")
    if a.shape != b.shape:
        raise ValueError(f"originals and reconstructions must have the same shape, got "
                         f"{_array(originals).shape} and {_array(reconstructions).shape}")
    per_row = min(_int(per_row, "per_row", 1), len(a))
    tiles = []
    for start in range(0, len(a), per_row):
        chunk_a, chunk_b = a[start:start + per_row], b[start:start + per_row]
        blank = np.ones((per_row - len(chunk_a),) + a.shape[1:])     # fill a short last row
        tiles += [chunk_a, blank, chunk_b, blank]
    return _save_pixels(_grid(np.concatenate(tiles), per_row, 2, 1.0), path, scale)


def save_interpolations(rows, path, scale=1) -> str:
    """Save ``rows`` (R, steps, C, H, W) with C in {1, 3}, or (R, steps, H, W), as a PNG grid
    of R rows of ``steps`` images each (e.g. decoded latent interpolations). Returns ``path``.
    """
    x = _array(rows)
    if not (x.ndim == 4 or (x.ndim == 5 and x.shape[2] in (1, 3))) or 0 in x.shape:
        raise ValueError(f"rows must have shape (R, steps, C, H, W) with C in (1, 3) or "
                         f"(R, steps, H, W), non-empty, got {x.shape}")
    r, steps = x.shape[:2]
    flat = _as_nhwc(x.reshape((r * steps,) + x.shape[2:]), "rows")
    return _save_pixels(_grid(flat, steps, 2, 1.0), path, scale)


# -- plots ---------------------------------------------------------------------------------------
def _figure(size=(6.0, 4.0)):
    """A matplotlib Figure on its own Agg canvas (pyplot's global state is never touched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save_figure(fig, path) -> str:
    with atomic_write(path) as f:
        fig.savefig(f, format="png", bbox_inches="tight")
    return os.fspath(path)


def _series_from_records(records) -> dict:
    """{name: (steps, values)} from metric records (dicts with "step" and numeric keys).

    A series is one numeric key of one record ``kind`` ("train loss", "val mse"); when the
    records come from more than one ``phase``, the phase is part of the name too.
    """
    phases = {r.get("phase") for r in records if r.get("phase") is not None}
    series = {}
    for rec in records:
        prefix = " ".join(str(p) for p in ((rec.get("phase") if len(phases) > 1 else None),
                                             rec.get("kind")) if p not in (None, ""))
        for k, v in rec.items():
            if k in _NOT_CURVES or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            name = f"{prefix} {k}".strip()
            steps, vals = series.setdefault(name, ([], []))
            steps.append(rec.get("step", len(steps) + 1))
            vals.append(v)
    return series


def _read_jsonl(path) -> list:
    records = []
    with open(path) as f:
        lines = f.readlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines) and not line.endswith("\n"):
                break                       # a record cut off by a crash mid-write: skip it
            raise ValueError(f"history file {os.fspath(path)!r}, line {i}: not JSON ({e})") \
                from None
        if not isinstance(rec, dict):
            raise ValueError(f"history file {os.fspath(path)!r}, line {i}: expected a JSON "
                             f"object, got {type(rec).__name__}")
        records.append(rec)
    return records


def _read_history(history) -> dict:
    """Normalize ``history`` to {name: (steps float array, values float array)}."""
    if isinstance(history, (str, os.PathLike)):
        series = _series_from_records(_read_jsonl(history))
    elif isinstance(history, dict):
        series = {}
        for name, values in history.items():
            try:
                arr = np.asarray(_array(values), dtype=float)
            except (TypeError, ValueError):
                raise ValueError(f"history[{name!r}] must be a list of values or of "
                                 f"(step, value) pairs") from None
            if arr.ndim == 2 and arr.shape[1] == 2:
                series[name] = (arr[:, 0], arr[:, 1])
            elif arr.ndim == 1:
                series[name] = (np.arange(1, len(arr) + 1), arr)
            else:
                raise ValueError(f"history[{name!r}] must be a list of values (n,) or of "
                                 f"(step, value) pairs (n, 2), got shape {arr.shape}")
    elif isinstance(history, (list, tuple)) and history and all(isinstance(r, dict)
                                                                for r in history):
        series = _series_from_records(list(history))   # e.g. Trainer.history
    elif isinstance(history, (list, tuple, np.ndarray)) or hasattr(history, "numpy"):
        return _read_history({"value": history})
    else:
        raise ValueError(f"history must be a dict name -> values, a list of values or records, "
                         f"or a JSON-lines path, got {type(history).__name__}")
    return {k: (np.asarray(s, dtype=float), np.asarray(v, dtype=float))
            for k, (s, v) in series.items()}


def _log_scale(values) -> bool:
    """True when every finite value is > 0 and they span more than a factor 100."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return bool(v.size and v.min() > 0 and v.max() > 100 * v.min())


def plot_loss_curves(history, path, title=None) -> str:
    """Line plot of training curves, one line per series; returns ``path``.

    history: a dict name -> values (n,) (plotted against 1..n) or (step, value) pairs (n, 2);
    a bare list of values; a list of record dicts (e.g. ``Trainer.history``); or the path of
    a metrics JSON-lines file, one dict per line with "step" and numeric keys. From records,
    every numeric key except step/epoch/time/seconds/images_per_s is a series, grouped by
    (phase,) kind and key ("train loss", "val mse"), so train and eval records may have
    different keys. The y axis is logarithmic when all finite values are > 0 and span more
    than 100x.
    """
    series = _read_history(history)
    fig, ax = _figure()
    values = [v for _, v in series.values()]
    for name, (steps, vals) in series.items():
        ax.plot(steps, vals, label=str(name), marker="o" if len(vals) < 30 else None,
                markersize=3)
    if values and _log_scale(np.concatenate(values)):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    ax.set_title(title or "training curves")
    return _save_figure(fig, path)


def _points(points, name) -> np.ndarray:
    p = _array(points)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2), got {p.shape}")
    return p.astype(np.float64)


def plot_scatter_2d(points, path, labels=None, title=None, reference=None) -> str:
    """Scatter plot of 2-D points; returns ``path``.

    points: (N, 2). labels: optional (N,) colours -- integer classes (up to 20 distinct values)
    get one colour and a legend entry each, other values a continuous colour map with a colour
    bar. reference: optional (M, 2) points drawn faintly in gray behind (e.g. the real data
    behind model samples).
    """
    p = _points(points, "points")
    r = None if reference is None else _points(reference, "reference")
    if labels is not None:
        labels = _array(labels)
        if labels.shape != (len(p),):
            raise ValueError(f"labels must have shape ({len(p)},), got {labels.shape}")
    fig, ax = _figure((5.0, 5.0))
    legend = False
    if r is not None:
        ax.scatter(r[:, 0], r[:, 1], s=3, c="0.7", alpha=0.4, label="reference", zorder=1)
        legend = True
    if labels is None:
        ax.scatter(p[:, 0], p[:, 1], s=4, c="C0", label="points", zorder=2)
    else:
        classes = np.unique(labels)
        discrete = (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_
                    or not np.issubdtype(labels.dtype, np.number)) and len(classes) <= 20
        if discrete:
            for i, cls in enumerate(classes):
                m = labels == cls
                ax.scatter(p[m, 0], p[m, 1], s=4, color=f"C{i % 10}", label=str(cls), zorder=2)
            legend = True
        else:
            sc = ax.scatter(p[:, 0], p[:, 1], s=4, c=labels.astype(float), cmap="viridis",
                            zorder=2)
            fig.colorbar(sc, ax=ax, shrink=0.8)
    if legend:
        ax.legend(fontsize=8, markerscale=3)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title or "")
    return _save_figure(fig, path)


def _density_grid(log_density_fn, bounds, resolution):
    """(density (res, res) with row i at y = ys[i] and column j at x = xs[j], is_relative)."""
    try:
        x0, x1, y0, y1 = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be four numbers (x0, x1, y0, y1), got {bounds!r}") \
            from None
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"bounds (x0, x1, y0, y1) need x1 > x0 and y1 > y0, got {bounds!r}")
    res = _int(resolution, "resolution", 2)
    xs, ys = np.linspace(x0, x1, res), np.linspace(y0, y1, res)
    gx, gy = np.meshgrid(xs, ys)                                       # (res, res): [y, x]
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)                  # (K, 2), K = res**2
    logp = _array(log_density_fn(grid)).astype(np.float64)
    if logp.shape not in ((len(grid),), (len(grid), 1)):
        raise ValueError(f"log_density_fn must return shape ({len(grid)},) for input "
                         f"({len(grid)}, 2), got {logp.shape}")
    logp = logp.reshape(-1)
    finite, posinf = np.isfinite(logp), np.isposinf(logp)
    if not (finite.any() or posinf.any()):
        raise ValueError("log_density_fn returned no usable value (all NaN or -inf)")
    top = logp[finite].max() if finite.any() else 0.0
    relative = bool(top > 700.0)              # exp would overflow: show p / max p instead
    density = np.zeros_like(logp)             # NaN and -inf: density 0
    density[finite] = np.exp(logp[finite] - (top if relative else 0.0))
    density[posinf] = density.max() if finite.any() else 1.0
    return density.reshape(res, res), relative


def plot_density_2d(log_density_fn, path, bounds=(-4, 4, -4, 4), resolution=200,
                    title=None) -> str:
    """Image of the density exp(log p(x)) on a ``resolution`` x ``resolution`` grid; returns
    ``path``.

    log_density_fn: maps a float64 array (K, 2) of points (x, y), K = resolution**2, to their
    log densities (K,) (a Tensor result is fine); it is called once. bounds: (x0, x1, y0, y1).
    NaN / -inf log densities show as 0; +inf as the largest finite density. If some
    log p > 700 the image shows p / max p.
    """
    density, relative = _density_grid(log_density_fn, bounds, resolution)
    x0, x1, y0, y1 = (float(b) for b in bounds)
    fig, ax = _figure((5.5, 5.0))
    im = ax.imshow(density, origin="lower", extent=(x0, x1, y0, y1), cmap="viridis",
                   aspect="equal", interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8, label="p(x) / max p" if relative else "p(x)")
    ax.set_title(title or "density")
    return _save_figure(fig, path)
