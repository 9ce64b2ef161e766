"""tinygen: a small deep-learning engine for generative models, from scratch on NumPy/CuPy.

The top level re-exports the tensor API (``tinygen.tensor``, factories, ``grad``, ``no_grad``,
``manual_seed``) and the ops of :mod:`tinygen.functional` that PyTorch keeps at ``torch.*``.
"""
import numpy as _np

from . import backend  # noqa: E402
from .autograd import Function, enable_grad, grad, is_grad_enabled, no_grad, set_grad_enabled
from .backend import cuda_available, get_default_dtype, set_default_dtype
from .random import Generator, get_rng_state, manual_seed, set_rng_state
from .tensor import (Tensor, arange, as_tensor, bool_, empty, empty_like, eye, float32, float64,
                     from_numpy, full, full_like, int32, int64, linspace, ones, ones_like, rand,
                     rand_like, randint, randn, randn_like, tensor, uint8, zeros, zeros_like)
from . import functional
from .functional import (abs, all, any, argmax, argmin, cat, chunk, clamp, clone, concatenate,
                         eq, exp, expand, flatten, flip, ge, gt, isfinite, isnan, le, log, log1p,
                         log_softmax, logsumexp, lt, matmul, max, maximum, mean, min, minimum, ne,
                         pad, permute, reshape, sigmoid, sign, softmax, split, sqrt, square,
                         squeeze, stack, std, sum, tanh, transpose, unsqueeze, var, where)
from .functional import (ceil, cos, cumprod, cumsum, einsum, erf, exp2, floor, gather,
                         index_select, isclose, isinf, lerp, log2, log10, logaddexp, masked_fill,
                         round, rsqrt, scatter, scatter_add, sin, tril, triu, trunc)
from .functional import logcumsumexp, prod
from .functional import acos, asin, atan, atan2, cosh, expm1, reciprocal, sinh, tan
from .functional import (argsort, diag, diagonal, div, floor_divide, logical_not, meshgrid,
                         remainder, repeat_interleave, roll, sort, std_mean, topk, unflatten,
                         var_mean)
from .functional import amax, amin  # noqa: E402
from .tensor import Size, device  # noqa: E402
from . import backends, cuda, utils  # noqa: E402
from .saveload import load, save  # noqa: E402
from . import nn, optim

# PyTorch's dtype aliases (``tinygen.float`` is float32, ``tinygen.long`` int64, ...)
float = float32  # noqa: A001
double = float64
long = int64
int = int32  # noqa: A001
bool = bool_  # noqa: A001
float16 = half = _np.dtype(_np.float16)
int16 = short = _np.dtype(_np.int16)
int8 = _np.dtype(_np.int8)

__version__ = "0.1.0"
