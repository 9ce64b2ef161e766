"""Matrix products: ``matmul`` and ``linear``."""
from __future__ import annotations

import numpy as np

from .. import kernels
from ..autograd import Function
from ..tensor import Tensor
from ._util import binary_operands, check_tensor

__all__ = ["matmul", "linear"]


class MatMul(Function):
    """Batched a @ b for a, b with at least 2 axes (batch axes broadcast).

    dL/da = g @ b^T,  dL/db = a^T @ g  (the engine sums away broadcast batch axes).
    """

    def forward(self, a, b):
        # NumPy's matmul on the CPU; on a GPU cuBLAS, or the own SGEMM when selected
        # (kernels/cuda/matmul.py: TINYGEN_CUDA_MATMUL=tiled)
        return kernels.for_arrays("matmul", a, b).matmul(a, b)

    def backward(self, g):
        a, b = self.saved_input(0), self.saved_input(1)
        ga = g @ b.mT if self.needs_input_grad[0] else None
        gb = None
        if self.needs_input_grad[1]:
            if b.ndim == 2 and a.ndim > 2:  # fold a's batch axes into one GEMM
                k, m = b.shape
                gb = a.reshape(-1, k).mT @ g.reshape(-1, m)
            else:
                gb = a.mT @ g
        return ga, gb


def matmul(a, b) -> Tensor:
    """Matrix product with NumPy/PyTorch semantics (1-D operands are promoted and squeezed)."""
    a, b = binary_operands(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both operands need at least one axis, got shapes "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    ka = a.shape[-1]
    kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if ka != kb:
        raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not align "
                         f"({ka} != {kb})")
    if a.ndim >= 2 and b.ndim >= 2:
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(f"matmul: batch axes of shapes {tuple(a.shape)} and "
                             f"{tuple(b.shape)} do not broadcast") from None
        return MatMul.apply(a, b)
    a2 = a.reshape(1, ka) if a.ndim == 1 else a
    b2 = b.reshape(kb, 1) if b.ndim == 1 else b
    out = MatMul.apply(a2, b2)  # (..., n or 1, m or 1)
    shape = out.shape
    if b.ndim == 1:
        shape = shape[:-1]
    if a.ndim == 1:  # the promoted row axis is now last (b 1-D) or second to last
        shape = shape[:-1] if b.ndim == 1 else shape[:-2] + shape[-1:]
    return out.reshape(shape)


class Linear(Function):
    """y = x W^T + b for x of shape (..., in), W (out, in), b (out,).

    dL/dx = g W,  dL/dW = g^T x (batch axes folded),  dL/db = sum of g over the batch axes.
    """

    def forward(self, x, w, b=None):
        x2 = x.reshape(-1, x.shape[-1])  # (N, in), N = product of the batch axes
        y = x2 @ w.T
        if b is not None:
            y += b
        return y.reshape(x.shape[:-1] + (w.shape[0],))

    def backward(self, g):
        x, w = self.saved_input(0), self.saved_input(1)
        g2 = g.reshape(-1, g.shape[-1])  # (N, out)
        gx = g @ w if self.needs_input_grad[0] else None
        gw = g2.mT @ x.reshape(-1, x.shape[-1]) if self.needs_input_grad[1] else None
        if len(self.needs_input_grad) == 3:
            return gx, gw, (g2.sum(0) if self.needs_input_grad[2] else None)
        return gx, gw


def linear(x, weight, bias=None) -> Tensor:
    """Affine map ``x @ weight.T + bias`` (``weight`` is ``(out_features, in_features)``)."""
    x, weight = check_tensor(x, "input"), check_tensor(weight, "weight")
    if weight.ndim != 2 or x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {tuple(x.shape)} does not match weight of "
                         f"shape {tuple(weight.shape)} (need input.shape[-1] == weight.shape[1])")
    # one dtype rule with conv2d (and PyTorch): no silent promotion of the input
    if x.dtype.kind != "f" or weight.dtype != x.dtype:
        raise TypeError(f"linear: input and weight must have the same floating dtype, got "
                        f"{x.dtype} and {weight.dtype} (cast the input, e.g. "
                        f"x.to(tinygen.{weight.dtype}))")
    if bias is None:
        return Linear.apply(x, weight)
    check_tensor(bias, "bias")
    if bias.dtype != x.dtype:
        raise TypeError(f"linear: bias has dtype {bias.dtype} but input and weight have "
                        f"{x.dtype}")
    if bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias has shape {tuple(bias.shape)}, expected "
                         f"({weight.shape[0]},) for weight of shape {tuple(weight.shape)}")
    return Linear.apply(x, weight, bias)
