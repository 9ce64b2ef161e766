"""docs/extending.md, example 3: the user's own .cu kernel behind the seam, run on the emulated
GPU (make test-gpu-emu) or a real one; the op and its gradients through the harness, and the
benchmark line."""
import numpy as np
import pytest

from harness import DEVICE, check_op

from test_extending import load_example

pytestmark = pytest.mark.skipif(
    DEVICE != "cuda", reason="example 3 runs on a CUDA device: the emulated one of "
                             "`make test-gpu-emu` (TINYGEN_TEST_DEVICE=cuda-emu) or a real GPU")


def test_cuda_kernel_runs_the_op_on_the_device():
    ex = load_example("cpu_kernel")
    load_example("cuda_kernel")                     # registers the "axpby" family for cuda
    rng = np.random.default_rng(2)
    x, z = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    check_op(lambda x, z: ex.axpby(x, z, 1.5, -2.0), [x, z],
             reference=lambda x, z: 1.5 * x - 2.0 * z, second_order="zero")


def test_benchmark_line_runs():
    times = load_example("cuda_kernel").benchmark(n=4096, repeat=2)
    assert set(times) == {"fused", "composed"} and all(t > 0 for t in times.values())
