"""Differentiable operations (PyTorch's ``torch`` + ``torch.nn.functional`` names).

One :class:`~tinygen.autograd.Function` per primitive, forward and backward side by side, in:

* :mod:`.elementwise` -- arithmetic, unary math, activations, comparisons
* :mod:`.reduction`   -- sum, mean, var, max/min, logsumexp, softmax, log_softmax
* :mod:`.shape`       -- reshape, permute, broadcast, indexing, cat/stack/split, pad, flip
* :mod:`.linalg`      -- matmul, linear
* :mod:`.dropout`     -- dropout
* :mod:`.loss`        -- the losses
* :mod:`.conv`        -- conv1d/conv2d and their transposes
* :mod:`.lstm`        -- LSTM cell and whole-sequence LSTM (fused kernels)
* :mod:`.coupling`    -- the affine coupling of Real NVP (fused kernel)
* :mod:`.pointwise`, :mod:`.activation` -- sin/cos/erf, logs and powers, rounding; SiLU, GELU, ...
* :mod:`.indexing`    -- gather/scatter, masked_fill, one_hot, cumsum/cumprod, tril/triu
* :mod:`.normalization` -- batch_norm, layer_norm, group_norm, normalize
* :mod:`.pooling`, :mod:`.padding`, :mod:`.attention`, :mod:`.einsum`
* :mod:`.utility`     -- repeat, roll, sort/topk, diag/diagonal, meshgrid, var_mean, // and %
"""
from .activation import *  # noqa: F401,F403
from .activation import __all__ as _act
from .attention import *  # noqa: F401,F403
from .attention import __all__ as _att
from .conv import *  # noqa: F401,F403
from .conv import __all__ as _c
from .einsum import *  # noqa: F401,F403
from .einsum import __all__ as _es
from .indexing import *  # noqa: F401,F403
from .indexing import __all__ as _ix
from .normalization import *  # noqa: F401,F403
from .normalization import __all__ as _nm
from .pointwise import *  # noqa: F401,F403
from .pointwise import __all__ as _pw
from .pooling import *  # noqa: F401,F403
from .pooling import __all__ as _pl
from .utility import *  # noqa: F401,F403
from .utility import __all__ as _ut
from .coupling import *  # noqa: F401,F403
from .dropout import dropout  # noqa: F401
from .coupling import __all__ as _cp
from .elementwise import *  # noqa: F401,F403
from .elementwise import __all__ as _e
from .linalg import *  # noqa: F401,F403
from .linalg import __all__ as _l
from .loss import *  # noqa: F401,F403
from .loss import __all__ as _o
from .lstm import *  # noqa: F401,F403
from .lstm import __all__ as _lstm
from .reduction import *  # noqa: F401,F403
from .reduction import __all__ as _r
from .shape import *  # noqa: F401,F403
from .shape import __all__ as _s
from .shape import _index_arrays, _split_mixed_index  # noqa: F401  (Tensor.__setitem__)

__all__ = _c + _cp + _e + _l + _o + _r + _s + _lstm + ["dropout"]
__all__ += _act + _att + _es + _ix + _nm + _pw + _pl + _ut
