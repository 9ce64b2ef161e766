"""Pictures as PNG: image grids (Pillow) and plots (matplotlib, Agg, no global pyplot state).

Every function writes atomically (temporary file, then ``os.replace``), creates the parent
directory and returns the path. Images are NumPy arrays (or Tensors) with values in [0, 1]
(clipped), shaped (N, H, W), (N, 1, H, W) or (N, 3, H, W).
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from .._fileio import atomic_write


def _array(x):
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x)


def _as_nhwc(images, name="images"):
    x = _array(images).astype(np.float64)
    if x.ndim == 3:
        x = x[..., None]                                   # (N, H, W) -> (N, H, W, 1)
    elif x.ndim == 4 and x.shape[1] in (1, 3):
        x = x.transpose(0, 2, 3, 1)                        # (N, C, H, W) -> (N, H, W, C)
    else:
        raise ValueError(f"{name} must have shape (N, H, W), (N, 1, H, W) or (N, 3, H, W), got "
                         f"{x.shape}")
    if len(x) == 0:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    return np.clip(np.nan_to_num(x, nan=0.0), 0.0, 1.0)


def make_grid(images, nrow=None, padding=2, pad_value=1.0) -> np.ndarray:
    """Tile images into one picture: uint8 (H', W') for gray, (H', W', 3) for RGB.

    ``nrow`` images per row (default ceil(sqrt(N))); ``padding`` pixels of ``pad_value``
    between and around the tiles.
    """
    x = _as_nhwc(images)
    n, h, w, c = x.shape
    if nrow is None:
        nrow = int(math.ceil(math.sqrt(n)))
    if nrow < 1 or padding < 0:
        raise ValueError(f"nrow must be >= 1 and padding >= 0, got nrow={nrow}, "
                         f"padding={padding}")
    nrows = int(math.ceil(n / nrow))
    grid = np.full((padding + nrows * (h + padding), padding + nrow * (w + padding), c),
                   float(pad_value))
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top:top + h, left:left + w] = x[i]
    out = np.round(grid * 255.0).astype(np.uint8)
    return out[..., 0] if c == 1 else out


def _save_array(pixels, path, scale=1):
    from PIL import Image

    if int(scale) < 1:
        raise ValueError(f"scale must be an integer >= 1, got {scale}")
    if scale > 1:
        pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)   # nearest upsampling
    with atomic_write(path) as f:
        Image.fromarray(pixels).save(f, format="PNG")
    return os.fspath(path)


def save_image_grid(images, path, nrow=None, padding=2, scale=1) -> str:
    """Save images as one PNG grid (``scale``: integer nearest-neighbour upsampling)."""
    return _save_array(make_grid(images, nrow=nrow, padding=padding), path, scale)


def save_reconstructions(originals, reconstructions, path, per_row=10, scale=1) -> str:
    """Originals and their reconstructions as alternating rows: a row of up to ``per_row``
    originals, then the row of their reconstructions, and so on."""
    a, b = _as_nhwc(originals, "originals"), _as_nhwc(reconstructions, "reconstructions")
    if a.shape != b.shape:
        raise ValueError(f"originals and reconstructions must have the same shape, got "
                         f"{a.shape} and {b.shape}")
    tiles = []
    for start in range(0, len(a), per_row):
        chunk_a, chunk_b = a[start:start + per_row], b[start:start + per_row]
        fill = per_row - len(chunk_a)   # pad a short last row with blank tiles
        blank = np.ones((fill,) + a.shape[1:])
        tiles += [chunk_a, blank, chunk_b, blank]
    x = np.concatenate(tiles).transpose(0, 3, 1, 2)        # back to (N, C, H, W)
    return save_image_grid(x, path, nrow=per_row, scale=scale)


def save_interpolations(rows, path, scale=1) -> str:
    """Rows of images, (R, steps, C, H, W) or (R, steps, H, W): one picture row each."""
    x = _array(rows)
    if x.ndim not in (4, 5):
        raise ValueError(f"rows must have shape (R, steps, C, H, W) or (R, steps, H, W), got "
                         f"{x.shape}")
    r, steps = x.shape[:2]
    return save_image_grid(x.reshape((r * steps,) + x.shape[2:]), path, nrow=steps, scale=scale)


def _figure(size=(6.0, 4.0)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save_figure(fig, path):
    with atomic_write(path) as f:
        fig.savefig(f, format="png", bbox_inches="tight")
    return os.fspath(path)


def _read_history(history):
    """Normalize to {name: (steps array, values array)}."""
    if isinstance(history, (str, os.PathLike)):
        series = {}
        with open(history) as f:
            for line in f:
                if not line.strip():
                    continue
                rec = json.loads(line)
                kind = rec.get("kind", "")
                for k, v in rec.items():
                    if k in ("step", "epoch", "time", "seconds", "images_per_s", "kind",
                             "phase") or isinstance(v, bool) or not isinstance(v, (int, float)):
                        continue
                    name = f"{kind} {k}".strip()
                    series.setdefault(name, ([], []))
                    series[name][0].append(rec.get("step", len(series[name][0])))
                    series[name][1].append(v)
        return {k: (np.asarray(s), np.asarray(v, dtype=float)) for k, (s, v) in series.items()}
    if not isinstance(history, dict):
        raise ValueError(f"history must be a dict or a JSON-lines path, got "
                         f"{type(history).__name__}")
    out = {}
    for name, values in history.items():
        arr = np.asarray(values, dtype=float)
        if arr.ndim == 2 and arr.shape[1] == 2:
            out[name] = (arr[:, 0], arr[:, 1])
        elif arr.ndim == 1:
            out[name] = (np.arange(1, len(arr) + 1), arr)
        else:
            raise ValueError(f"history[{name!r}] must be a list of values or of (step, value) "
                             f"pairs, got shape {arr.shape}")
    return out


def plot_loss_curves(history, path, title=None) -> str:
    """Line plot of every series in ``history``: a dict name -> values or (step, value) pairs,
    or the path of a metrics JSON-lines file (one line per numeric key and record kind, against
    "step"). Log scale when all values are positive and span more than 100x."""
    series = _read_history(history)
    fig, ax = _figure()
    finite = [v[np.isfinite(v)] for _, v in series.values()]
    values = np.concatenate(finite) if finite else np.zeros(0)
    for name, (steps, vals) in sorted(series.items()):
        ax.plot(steps, vals, label=name, marker="o" if len(vals) < 30 else None, markersize=3)
    if values.size and values.min() > 0 and values.max() / values.min() > 100:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    ax.set_title(title or "training curves")
    return _save_figure(fig, path)


def _points(points, name):
    p = _array(points).astype(np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2), got {p.shape}")
    return p


def plot_scatter_2d(points, path, labels=None, title=None, reference=None) -> str:
    """Scatter plot of 2-D ``points`` (N, 2), coloured by ``labels`` (N,) if given, over
    faint ``reference`` points (M, 2) (e.g. the data behind model samples)."""
    p = _points(points, "points")
    fig, ax = _figure((5.0, 5.0))
    if reference is not None:
        r = _points(reference, "reference")
        ax.scatter(r[:, 0], r[:, 1], s=3, c="0.75", alpha=0.5, label="reference")
    if labels is not None:
        labels = _array(labels)
        if labels.shape != (len(p),):
            raise ValueError(f"labels must have shape ({len(p)},), got {labels.shape}")
        ax.scatter(p[:, 0], p[:, 1], s=4, c=labels, cmap="tab10")
    else:
        ax.scatter(p[:, 0], p[:, 1], s=4, c="C0", label="points")
    ax.set_aspect("equal")
    ax.set_title(title or "")
    return _save_figure(fig, path)


def plot_density_2d(log_density_fn, path, bounds=(-4, 4, -4, 4), resolution=200,
                    title=None) -> str:
    """exp(log p) on a ``resolution`` x ``resolution`` grid over ``bounds`` = (x0, x1, y0, y1);
    ``log_density_fn`` maps an array (K, 2) to log densities (K,)."""
    x0, x1, y0, y1 = bounds
    if not (x1 > x0 and y1 > y0) or resolution < 2:
        raise ValueError(f"bounds must be (x0, x1, y0, y1) with x1 > x0, y1 > y0 and "
                         f"resolution >= 2, got {bounds}, {resolution}")
    xs, ys = np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution)
    gx, gy = np.meshgrid(xs, ys)
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)                  # (K, 2)
    logp = _array(log_density_fn(grid)).astype(np.float64).reshape(-1)
    if logp.shape != (len(grid),):
        raise ValueError(f"log_density_fn must return shape ({len(grid)},), got {logp.shape}")
    density = np.exp(logp - np.nanmax(logp)).reshape(resolution, resolution)
    fig, ax = _figure((5.0, 5.0))
    ax.imshow(density, origin="lower", extent=(x0, x1, y0, y1), cmap="viridis", aspect="equal")
    ax.set_title(title or "density")
    return _save_figure(fig, path)
