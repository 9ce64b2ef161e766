"""A Numba CPU kernel behind the device seam: a fused y = alpha * x + beta * z ("axpby"), as a
kernel family of its own. Ops ask ``tinygen.kernels.for_arrays(family, *arrays)`` for the
family's module on the arrays' device and never test the array type themselves; a family that
lives outside tinygen is plugged in with ``tinygen.kernels.register``."""
import types

import numpy as np
from numba import njit

import tinygen
from tinygen import kernels
from tinygen.autograd import Function


@njit(cache=True)
def _axpby(x, z, alpha, beta, out):
    """out = alpha x + beta z over flat, contiguous arrays of one dtype (one fused pass)."""
    for i in range(x.size):
        out[i] = alpha * x[i] + beta * z[i]


def axpby_cpu(x, z, alpha, beta):
    """The family's API: arrays in, a new array out (shapes equal)."""
    xc, zc = np.ascontiguousarray(x), np.ascontiguousarray(z)
    out = np.empty_like(xc)
    _axpby(xc.reshape(-1), zc.reshape(-1), x.dtype.type(alpha), x.dtype.type(beta),
           out.reshape(-1))
    return out


# the "axpby" family on the CPU (docs/examples/cuda_kernel.py registers its CUDA twin)
kernels.register("axpby", "cpu", types.SimpleNamespace(axpby=axpby_cpu))


class AxpbyFn(Function):
    def forward(self, x, z, alpha, beta):
        self.alpha, self.beta = alpha, beta
        return kernels.for_arrays("axpby", x, z).axpby(x, z, alpha, beta)

    def backward(self, g):
        return g * self.alpha, g * self.beta          # d/dx, d/dz, as differentiable ops


def axpby(x, z, alpha=1.0, beta=1.0):
    """alpha * x + beta * z through the fused kernel of the arrays' device."""
    if x.shape != z.shape or x.dtype != z.dtype:
        raise ValueError(f"axpby: x and z must have one shape and dtype, got "
                         f"{tuple(x.shape)} {x.dtype} and {tuple(z.shape)} {z.dtype}")
    return AxpbyFn.apply(x, z, alpha=float(alpha), beta=float(beta))


if __name__ == "__main__":
    x, z = tinygen.randn(3, 4), tinygen.randn(3, 4)
    print(np.abs(axpby(x, z, 2.0, -1.0).numpy() - (2 * x - z).numpy()).max())
