"""Test data that no user has to download: a small MNIST-format directory of synthetic digits."""
import numpy as np

from tinygen.data import write_idx


def write_synthetic_mnist(directory, sizes=(("train", 240), ("t10k", 60))):
    """Gzipped IDX files ``<prefix>-images/labels`` in ``directory``: for each label a Gaussian
    blob at a label-dependent place (learnable, class-separable), seeded; returns the directory."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:28, 0:28]
    for prefix, n in sizes:
        labels = rng.integers(0, 10, n).astype(np.uint8)
        cy = 6 + 2 * (labels // 2)[:, None, None] + rng.normal(0, 0.5, (n, 1, 1))
        cx = 6 + 3 * (labels % 5)[:, None, None] + rng.normal(0, 0.5, (n, 1, 1))
        img = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 12.5)
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", (img * 255).astype(np.uint8))
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return directory
