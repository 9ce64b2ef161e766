"""Data: MNIST (IDX files or the embedded 5,000 digits), pixel transforms, 2-D toy sets and a
batch iterator. Everything here works on NumPy arrays."""
from .idx import read_idx, write_idx  # noqa: F401
from .loader import BatchIterator  # noqa: F401
from .mnist import (ENV_VAR, DataSource, Dataset, embedded_mnist_path,  # noqa: F401
                    load_embedded_mnist, load_mnist, load_mnist_splits, resolve_data_dir,
                    resolve_data_source, train_val_split)
from .toy import (TOY_DATASETS, make_checkerboard, make_eight_gaussians, make_moons,  # noqa: F401
                  make_rings)
from .transforms import (balanced_indices, dequantize, dynamic_binarize, random_shift,  # noqa: F401
                         static_binarize)
from .runs import RunData, load_mnist_data, load_toy_data  # noqa: F401,E402
