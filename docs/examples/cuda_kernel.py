"""The CUDA twin of the "axpby" family (docs/examples/cpu_kernel.py): the kernel in axpby.cu,
launched through tinygen's CUDA runtime (compiled once per process with NVRTC; on the test
suite's emulated device, with g++), registered behind the same seam. The op of cpu_kernel.py
then runs on either device unchanged."""
import pathlib
import types

import numpy as np

from tinygen import kernels
from tinygen.kernels.cuda import _runtime

CU_FILE = str(pathlib.Path(__file__).resolve().with_name("axpby.cu"))
THREADS = 256


def axpby_cuda(x, z, alpha, beta):
    """The family's API on device arrays: a new array out."""
    cp = _runtime.cupy()
    xc, zc = cp.ascontiguousarray(x), cp.ascontiguousarray(z)
    out = cp.empty_like(xc)
    scalar = x.dtype.type                    # exact scalar types: a Python float would be a double
    n = int(x.size)
    _runtime.launch(CU_FILE, _runtime.variant("axpby", x.dtype),
                    _runtime.blocks_for(n, THREADS), THREADS,
                    (xc, zc, scalar(alpha), scalar(beta), out, np.int64(n)))
    return out


kernels.register("axpby", "cuda", types.SimpleNamespace(axpby=axpby_cuda))


def benchmark(n=1 << 22, repeat=50):
    """Seconds per call of the fused kernel and of the composed ops (two scalings and an add:
    three passes and two temporaries) on the same device arrays, median of ``repeat``."""
    import time

    cp = _runtime.cupy()
    x = cp.asarray(np.random.default_rng(0).standard_normal(n).astype(np.float32))
    z = cp.asarray(np.random.default_rng(1).standard_normal(n).astype(np.float32))

    def timed(fn):
        fn()                                           # compile / warm up
        times = []
        for _ in range(repeat):
            cp.cuda.runtime.deviceSynchronize()
            t0 = time.perf_counter()
            fn()
            cp.cuda.runtime.deviceSynchronize()
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    return {"fused": timed(lambda: axpby_cuda(x, z, 2.0, -1.0)),
            "composed": timed(lambda: 2.0 * x + (-1.0) * z)}
