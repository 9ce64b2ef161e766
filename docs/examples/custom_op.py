"""A custom differentiable op: y = a * tanh(x / a), the "soft clamp" flows use to bound their
log-scales (|y| < a, y ~= x near 0).

A Function computes its forward on arrays (NumPy or CuPy: use the inputs' array module) and
writes its backward with differentiable Tensor ops, so second derivatives work too:

    dy/dx = 1 - tanh(x / a)^2
"""
import numpy as np

import tinygen
from tinygen.autograd import Function
from tinygen.backend import get_array_module


class SoftClampFn(Function):
    def forward(self, x, a):
        self.a = a                                    # a plain float: a parameter, not an input
        xp = get_array_module(x)                      # numpy on the CPU, cupy on a GPU
        return a * xp.tanh(x / a)

    def backward(self, grad_output):
        (x,) = (self.saved_input(0),)                 # the input as the forward saw it
        t = (x / self.a).tanh()                       # Tensor ops: differentiable again
        return grad_output * (1.0 - t * t)


def soft_clamp(x, a=1.0):
    """a * tanh(x / a), differentiable to any order."""
    if not a > 0:
        raise ValueError(f"soft_clamp: a must be > 0, got {a}")
    return SoftClampFn.apply(x, a=float(a))


if __name__ == "__main__":
    x = tinygen.tensor(np.linspace(-3, 3, 7), requires_grad=True)
    y = soft_clamp(x, a=2.0)
    y.sum().backward()
    print(y.detach().numpy().round(3), x.grad.numpy().round(3))
