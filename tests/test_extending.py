"""docs/extending.md: its three worked examples run (the CUDA one in tests/test_cuda_extending.py)
and the code shown in the document is the code in docs/examples/."""
import importlib.util
import pathlib
import re

import numpy as np
import pytest

from harness import DEVICE, check_op, torch

import tinygen
from tinygen import kernels

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"


def load_example(name):
    """Import docs/examples/<name>.py as a module (once per process)."""
    import sys
    key = f"tinygen_docs_example_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, DOCS / "examples" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def test_the_document_shows_the_example_files():
    text = (DOCS / "extending.md").read_text()
    blocks = re.findall(r"```(?:python|cuda)\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 6
    sources = "".join(p.read_text() for p in sorted((DOCS / "examples").iterdir())
                      if p.suffix in (".py", ".cu"))
    for block in blocks:
        if block.startswith("check_op("):              # the harness call of this test file
            continue
        assert block in sources, f"docs/extending.md shows code that no example has:\n{block}"


def test_custom_op_passes_the_harness():
    soft_clamp = load_example("custom_op").soft_clamp
    x = np.random.default_rng(0).normal(scale=2.0, size=(3, 5))
    check_op(lambda x: soft_clamp(x, 2.0), [x], reference=lambda x: 2.0 * np.tanh(x / 2.0),
             torch_fn=None if torch is None else (lambda x: 2.0 * torch.tanh(x / 2.0)))
    with pytest.raises(ValueError, match="a must be > 0"):
        soft_clamp(tinygen.tensor(x), 0.0)


def test_cpu_kernel_family_is_plugged_into_the_seam():
    ex = load_example("cpu_kernel")
    assert kernels.for_device("axpby", "cpu").axpby is ex.axpby_cpu
    rng = np.random.default_rng(1)
    x, z = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    check_op(lambda x, z: ex.axpby(x, z, 2.0, -0.5), [x, z],
             reference=lambda x, z: 2.0 * x - 0.5 * z, second_order="zero")
    with pytest.raises(ValueError, match="built-in family"):
        kernels.register("conv", "cpu", object())
    with pytest.raises(kernels.KernelNotAvailable, match="no 'no-such-family' kernels"):
        kernels.for_device("no-such-family", "cpu")
    assert DEVICE in ("cpu", "cuda")
