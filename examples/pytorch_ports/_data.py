"""The data-loading lines the ports share: tinygen's embedded MNIST digits as Tensors."""
import numpy as np

import tinygen
from tinygen.data.mnist import load_embedded_mnist, train_val_split


def mnist_tensors(limit=None, normalize=False):
    """(train_x, train_y, test_x, test_y): the 5,000 embedded digits split 90/10, images
    (N, 1, 28, 28) float32 in [0, 1] (standardized with MNIST's mean/std when ``normalize``)."""
    train, test = train_val_split(load_embedded_mnist(), val_fraction=0.1, seed=0)
    out = []
    for ds in (train, test):
        # the digits come sorted by class: a seeded shuffle, then the first ``limit``
        order = np.random.default_rng(0).permutation(len(ds))[:limit]
        x, y = ds.images[order], ds.labels[order]
        if normalize:
            x = (x - 0.1307) / 0.3081
        out += [tinygen.tensor(np.ascontiguousarray(x, dtype=np.float32)), tinygen.tensor(y)]
    return tuple(out)
