"""The installed layout: kernels/ is tinygen.kernels, never a top-level ``kernels`` module."""
import importlib.util
import pathlib

import tinygen
import tinygen.kernels


def test_kernels_installed_as_subpackage():
    root = pathlib.Path(__file__).resolve().parents[1]
    assert pathlib.Path(tinygen.kernels.__file__).resolve().parent == root / "kernels"
    assert importlib.util.find_spec("kernels") is None


def test_version_and_public_api():
    for name in ("tensor", "Tensor", "grad", "no_grad", "manual_seed", "Generator", "zeros",
                 "randn", "nn", "optim", "functional"):
        assert hasattr(tinygen, name), name
    assert tinygen.__version__
