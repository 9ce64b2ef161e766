"""The installed layout: kernels/ is tinygen.kernels, never a top-level ``kernels`` module."""
import importlib.util
import pathlib

import pytest

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


def test_every_subpackage_is_listed_in_pyproject():
    """A package directory missing from pyproject's explicit list would be absent from the
    installed wheel (the editable install used by the tests would not notice)."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    root = pathlib.Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {".".join(("tinygen",) + p.parent.relative_to(root / "tinygen").parts).rstrip(".")
             for p in (root / "tinygen").rglob("__init__.py")}
    found |= {".".join(("tinygen", "kernels") + p.parent.relative_to(root / "kernels").parts)
              for p in (root / "kernels").rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)


def test_the_shipped_classifier_is_package_data():
    """The scoring classifier's weights travel with a wheel: their directory is a listed
    package whose package-data pattern matches the file that scoring loads."""
    tomllib = pytest.importorskip("tomllib")
    from tinygen.models import scoring
    root = pathlib.Path(__file__).resolve().parents[1]
    tool = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "tinygen.models.weights" in tool["packages"]
    path = pathlib.Path(scoring.SHIPPED_CLASSIFIER)
    assert path.is_file() and path.parent == root / "tinygen" / "models" / "weights"
    assert any(path.match(pattern) for pattern in tool["package-data"]["tinygen.models.weights"])
