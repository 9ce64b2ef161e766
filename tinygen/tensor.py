"""The ``Tensor``: an array (NumPy or CuPy) plus what reverse mode needs, and tensor factories.

A tensor made by the user is a *leaf*; a tensor made by a differentiable op while grad mode is on
and an input requires a gradient points at the function that made it (``grad_fn``). Methods and
operators mirror PyTorch's names; each one delegates to :mod:`tinygen.functional`.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import backend
from .random import _resolve as _resolve_generator

__all__ = ["Tensor", "Size", "device", "tensor", "as_tensor", "from_numpy", "zeros", "ones",
           "full", "empty",
           "eye", "arange", "linspace", "rand", "randn", "randint", "zeros_like", "ones_like",
           "full_like", "empty_like", "rand_like", "randn_like", "float32", "float64", "int64",
           "int32", "bool_", "uint8"]

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
uint8 = np.dtype(np.uint8)
bool_ = np.dtype(np.bool_)


class Size(tuple):
    """A tensor's shape (PyTorch's ``torch.Size``): a tuple of ints."""

    __slots__ = ()

    def __repr__(self):
        return f"tinygen.Size({list(self)})"

    def numel(self) -> int:
        n = 1
        for s in self:
            n *= s
        return n


class device(str):
    """A device (PyTorch's ``torch.device``): ``device("cpu")``, ``device("cuda")``,
    ``device("cuda:0")``, ``device("cuda", 0)``; ``.type`` and ``.index`` as in PyTorch.

    It is also the string ``"cpu"`` or ``"cuda"`` (so ``t.device == "cpu"`` holds, unlike in
    PyTorch); tinygen uses one GPU, so ``cuda`` and ``cuda:0`` compare equal. Making one needs no
    GPU; moving a tensor there does.
    """

    def __new__(cls, type, index=None):
        if isinstance(type, device):
            return type
        name = str(type)
        if ":" in name:
            name, _, idx = name.partition(":")
            if index is not None or not idx.isdigit():
                raise ValueError(f"device: invalid device string {type!r}")
            index = int(idx)
        if name not in ("cpu", "cuda"):
            raise ValueError(f"device: expected 'cpu' or 'cuda', got {type!r}")
        if name == "cpu" and index not in (None, 0):
            raise ValueError(f"device: the cpu has no index {index}")
        self = super().__new__(cls, name)
        self._index = None if index is None else int(index)
        return self

    @property
    def type(self) -> str:
        return str.__str__(self)

    @property
    def index(self):
        return self._index

    def __str__(self):
        return self.type if self._index is None else f"{self.type}:{self._index}"

    def __repr__(self):
        idx = "" if self._index is None else f", index={self._index}"
        return f"device(type='{self.type}'{idx})"

    def __reduce__(self):
        return (device, (self.type, self._index))


_DEVICES = {"cpu": device("cpu"), "cuda": device("cuda", 0)}  # what Tensor.device returns


def _as_dtype(dtype):
    if dtype is None:
        return None
    try:
        return np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: cannot interpret {dtype!r} as a dtype") from None


class Tensor:
    """A multi-dimensional array that can record operations for differentiation.

    ``Tensor(data, requires_grad=False, dtype=None, device="cpu")`` is the same as
    :func:`tinygen.tensor`.

    ``t.array`` is the backing array itself: a ``numpy.ndarray`` on the CPU, a ``cupy.ndarray``
    on a GPU, shared (no copy), whatever ``requires_grad`` says. It is what a Function's forward
    receives and what kernels work on; writing into it bypasses autograd's checks.
    ``t.data`` is PyTorch's: a Tensor over the same array (see :attr:`data`).
    """

    # _out_index: which output of its grad_fn (_ctx) this tensor is (Functions may have several)
    __slots__ = ("array", "grad", "requires_grad", "_ctx", "_vbox", "_retains_grad", "_out_index",
                 "__weakref__")
    __array_ufunc__ = None  # make NumPy defer to our reflected operators (ndarray * Tensor)

    def __init__(self, data, requires_grad=False, dtype=None, device=None):
        t = tensor(data, requires_grad=requires_grad, dtype=dtype, device=device)
        self.array, self.grad, self.requires_grad = t.array, None, t.requires_grad
        self._ctx, self._vbox, self._retains_grad, self._out_index = None, [0], False, 0

    @classmethod
    def _wrap(cls, data):
        """Wrap a backing array without copying or checking (engine-internal fast path)."""
        t = object.__new__(cls)
        if type(data) is not np.ndarray and isinstance(data, np.generic):
            data = np.asarray(data)  # NumPy returns scalars from 0-d operations
        t.array = data
        t.grad = None
        t.requires_grad = False
        t._ctx = None
        t._vbox = [0]
        t._retains_grad = False
        t._out_index = 0
        return t

    # -- properties --------------------------------------------------------------------------
    @property
    def shape(self) -> Size:
        return Size(self.array.shape)

    @property
    def ndim(self) -> int:
        return self.array.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def device(self) -> device:
        """The device (``tinygen.device``; equal to the string ``"cpu"`` or ``"cuda"``)."""
        return _DEVICES[backend.device_of(self.array)]

    @property
    def is_cuda(self) -> bool:
        return backend.device_of(self.array) == "cuda"

    def is_floating_point(self) -> bool:
        return self.array.dtype.kind == "f"

    @property
    def _xp(self):
        return backend.get_array_module(self.array)

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def grad_fn(self):
        return self._ctx

    @property
    def _version(self) -> int:
        return self._vbox[0]

    @property
    def data(self) -> "Tensor":
        """PyTorch's ``.data``: a new Tensor over this one's memory (same array, dtype and device),
        with ``requires_grad=False``, no history and its *own* version counter.

        Writes through it reach this tensor (``p.data.add_(p.grad, alpha=-lr)``,
        ``w.data.normal_(0, 0.02)``) and, unlike writes through :meth:`detach`, are invisible to
        the check that a tensor saved for backward was not modified in place: that is PyTorch's
        difference between the two, and why ``.detach()`` is the safer one. A Parameter's
        ``.data`` is a plain Tensor. The backing NumPy/CuPy array itself is ``.array``.

        ``t.data = other`` rebinds this tensor to ``other``'s memory (a Tensor, or a NumPy/CuPy
        array; shape, dtype and device may change), leaving the graph, ``grad`` and the version
        counter alone. A tensor that requires grad only takes floating point data.
        """
        return Tensor._wrap(self.array)

    @data.setter
    def data(self, value):
        if isinstance(value, Tensor):
            array = value.array
        elif isinstance(value, np.ndarray) or backend.device_of_safe(value) == "cuda":
            array = value
        else:
            raise TypeError(f"data: expected a Tensor (or a NumPy/CuPy array), got "
                            f"{type(value).__name__}")
        if array.dtype.kind not in "biuf":
            raise TypeError(f"data: cannot hold an array of dtype {array.dtype}")
        if self.requires_grad and not backend.is_floating(array.dtype):
            raise RuntimeError(f"data set to a tensor that requires gradients must be floating "
                               f"point, got dtype {array.dtype}")
        self.array = array

    @property
    def T(self) -> "Tensor":
        return self.permute(*reversed(range(self.ndim)))

    @property
    def mT(self) -> "Tensor":
        return self.transpose(-2, -1)

    def size(self, dim=None):
        """The shape (PyTorch's ``size()``), or its length along ``dim``."""
        return Size(self.array.shape) if dim is None else self.array.shape[dim]

    def numel(self) -> int:
        return int(self.array.size)

    def dim(self) -> int:
        return self.array.ndim

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.array.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __hash__(self):
        return id(self)

    # -- conversion ----------------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (shares memory on the CPU; GPU tensors need ``.cpu()``).

        As in PyTorch, a tensor that requires grad refuses: writing into the shared array would
        silently change values the graph saved for backward. Use ``.detach().numpy()``."""
        if self.requires_grad:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use "
                               "tensor.detach().numpy() instead.")
        if self.device != "cpu":
            raise TypeError("numpy(): the tensor is on 'cuda'; call .cpu() first")
        return self.array

    def item(self):
        if self.array.size != 1:
            raise ValueError(f"item(): only one-element tensors can be converted to a Python "
                             f"scalar, got shape {tuple(self.shape)}")
        return self.array.reshape(()).item()

    def tolist(self):
        return backend.to_numpy(self.array).tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.array.size != 1:
            raise RuntimeError(f"the truth value of a tensor with shape {tuple(self.shape)} is "
                               f"ambiguous; use .any() or .all()")
        return bool(self.item())

    def __repr__(self):
        body = np.array2string(backend.to_numpy(self.array), separator=", ", prefix="tensor(",
                               precision=4)
        extras = []
        if self.device != "cpu":
            extras.append(f"device='{self.device}'")
        if self.dtype not in (float32, int64, bool_) or self.array.size == 0:
            extras.append(f"dtype={self.dtype}")
        if self._ctx is not None:
            extras.append(f"grad_fn={self._ctx!r}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body] + extras) + ")"

    def detach(self) -> "Tensor":
        """A tensor sharing this one's data, cut from the graph (shares the version counter)."""
        t = Tensor._wrap(self.array)
        t._vbox = self._vbox
        return t

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if not self.is_leaf and not requires_grad:
            raise RuntimeError("requires_grad_(False) is only allowed on leaf tensors; use "
                               ".detach()")
        if requires_grad and not backend.is_floating(self.dtype):
            raise RuntimeError(f"only floating point tensors can require gradients, got "
                               f"dtype {self.dtype}")
        self.requires_grad = bool(requires_grad)
        return self

    def retain_grad(self) -> None:
        """Keep ``.grad`` on this non-leaf tensor after backward."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad() on a tensor that does not require grad")
        if self._ctx is not None:
            self._retains_grad = True

    def backward(self, gradient=None, retain_graph=None, create_graph=False):
        """Accumulate the gradient of this tensor into the ``.grad`` of the leaves it depends on.

        ``gradient`` (PyTorch's name) is required unless the tensor has exactly one element;
        ``retain_graph`` defaults to ``create_graph``.
        """
        from .autograd import _seed_grad, backward_from
        seed = _seed_grad(self, gradient, "gradient")
        backward_from([self], [seed],
                      retain_graph=create_graph if retain_graph is None else retain_graph,
                      create_graph=create_graph)

    def to(self, *args, dtype=None, device=None) -> "Tensor":
        """``to(device)``, ``to(dtype)``, ``to(device, dtype)`` or keywords; differentiable."""
        for a in args:
            if isinstance(a, str) and (a == "cpu" or a.startswith("cuda")):
                device = a
            elif isinstance(a, str):
                try:
                    dtype = np.dtype(a)
                except TypeError:
                    backend.normalize_device(a)  # raises: neither a device nor a dtype
            else:
                dtype = a
        out = self
        if dtype is not None and np.dtype(dtype) != self.dtype:
            out = F.cast(out, np.dtype(dtype))
        if device is not None and backend.normalize_device(device) != out.device:
            out = F.to_device(out, backend.normalize_device(device))
        return out

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def cuda(self) -> "Tensor":
        return self.to("cuda")

    def float(self) -> "Tensor":
        return self.to(float32)

    def double(self) -> "Tensor":
        return self.to(float64)

    def long(self) -> "Tensor":
        return self.to(int64)

    def int(self) -> "Tensor":
        return self.to(int32)

    def bool(self) -> "Tensor":
        return self.to(bool_)

    def type(self, dtype=None):
        """``type()``: the dtype's name; ``type(dtype)``: this tensor converted to ``dtype``."""
        if dtype is None:
            return str(self.dtype)
        return self.to(dtype)

    def type_as(self, other: "Tensor") -> "Tensor":
        return self.to(other.dtype)

    def clone(self) -> "Tensor":
        return F.clone(self)

    # -- arithmetic -----------------------------------------------------------------------------
    def __add__(self, other): return F.add(self, other)
    def __radd__(self, other): return F.add(other, self)
    def __sub__(self, other): return F.sub(self, other)
    def __rsub__(self, other): return F.sub(other, self)
    def __mul__(self, other): return F.mul(self, other)
    def __rmul__(self, other): return F.mul(other, self)
    def __truediv__(self, other): return F.div(self, other)
    def __rtruediv__(self, other): return F.div(other, self)
    def __pow__(self, other): return F.pow(self, other)
    def __rpow__(self, other): return F.pow(other, self)
    def __matmul__(self, other): return F.matmul(self, other)
    def __rmatmul__(self, other): return F.matmul(other, self)
    def __neg__(self): return F.neg(self)
    def __pos__(self): return self
    def __abs__(self): return F.abs(self)

    # comparisons: no gradient, boolean results
    def __eq__(self, other): return F.eq(self, other)
    def __ne__(self, other): return F.ne(self, other)
    def __lt__(self, other): return F.lt(self, other)
    def __le__(self, other): return F.le(self, other)
    def __gt__(self, other): return F.gt(self, other)
    def __ge__(self, other): return F.ge(self, other)
    def __invert__(self): return F.bitwise_not(self)

    def __getitem__(self, index): return F.getitem(self, index)

    def add(self, other, alpha=1):
        """``self + alpha * other``."""
        return F.add(self, other if alpha == 1 else _scaled(other, alpha))

    def sub(self, other, alpha=1):
        """``self - alpha * other``."""
        return F.sub(self, other if alpha == 1 else _scaled(other, alpha))

    mul = __mul__
    def div(self, other, *, rounding_mode=None):
        """``self / other``; ``rounding_mode="trunc"`` / ``"floor"`` rounds the quotient."""
        return F.div(self, other, rounding_mode=rounding_mode)

    def __floordiv__(self, other): return F.floor_divide(self, other)
    def __rfloordiv__(self, other): return F.floor_divide(other, self)
    def __mod__(self, other): return F.remainder(self, other)
    def __rmod__(self, other): return F.remainder(other, self)
    def floor_divide(self, other): return F.floor_divide(self, other)
    def remainder(self, other): return F.remainder(self, other)
    matmul = __matmul__
    neg = __neg__

    def pow(self, exponent): return F.pow(self, exponent)
    def exp(self): return F.exp(self)
    def log(self): return F.log(self)
    def log1p(self): return F.log1p(self)
    def sqrt(self): return F.sqrt(self)
    def abs(self): return F.abs(self)
    def tanh(self): return F.tanh(self)
    def sigmoid(self): return F.sigmoid(self)
    def relu(self): return F.relu(self)
    def sign(self): return F.sign(self)
    def clamp(self, min=None, max=None): return F.clamp(self, min, max)
    clip = clamp
    def maximum(self, other): return F.maximum(self, other)
    def minimum(self, other): return F.minimum(self, other)
    def eq(self, other): return F.eq(self, other)
    def isfinite(self): return F.isfinite(self)
    def isnan(self): return F.isnan(self)
    def any(self, dim=None, keepdim=False): return F.any(self, dim, keepdim)
    def all(self, dim=None, keepdim=False): return F.all(self, dim, keepdim)

    # reductions (``dim``/``keepdim`` as in PyTorch; ``axis``/``keepdims`` accepted too)
    def sum(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return F.sum(self, dim if axis is None else axis, keepdim if keepdims is None else keepdims)

    def mean(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return F.mean(self, dim if axis is None else axis, keepdim if keepdims is None else keepdims)

    def var(self, dim=None, keepdim=False, *, correction=1, unbiased=None, axis=None,
            keepdims=None):
        if unbiased is not None:
            correction = 1 if unbiased else 0
        return F.var(self, dim if axis is None else axis,
                     keepdim if keepdims is None else keepdims, correction=correction)

    def std(self, dim=None, keepdim=False, *, correction=1):
        return F.var(self, dim, keepdim, correction=correction).sqrt()

    def max(self, dim=None, keepdim=False): return F.max(self, dim, keepdim)
    def min(self, dim=None, keepdim=False): return F.min(self, dim, keepdim)
    def amax(self, dim=None, keepdim=False): return F.amax(self, dim, keepdim)
    def amin(self, dim=None, keepdim=False): return F.amin(self, dim, keepdim)
    def argmax(self, dim=None, keepdim=False): return F.argmax(self, dim, keepdim)
    def argmin(self, dim=None, keepdim=False): return F.argmin(self, dim, keepdim)
    def logsumexp(self, dim=None, keepdim=False): return F.logsumexp(self, dim, keepdim)
    def softmax(self, dim): return F.softmax(self, dim)
    def log_softmax(self, dim): return F.log_softmax(self, dim)

    # shape ops
    def reshape(self, *shape): return F.reshape(self, _shape_args(shape))
    def view(self, *shape):
        """Same data, new shape, never a copy: refuses a non-contiguous tensor whose memory has
        no such view (PyTorch's ``view``; ``reshape`` copies instead)."""
        return F.view(self, _shape_args(shape))

    def view_as(self, other): return F.view(self, other.shape)
    def reshape_as(self, other): return F.reshape(self, other.shape)

    def contiguous(self) -> "Tensor":
        """This tensor when its memory is C-contiguous, else a contiguous copy."""
        return self if self.array.flags.c_contiguous else F.clone(self)

    def is_contiguous(self) -> bool:
        return bool(self.array.flags.c_contiguous)

    def narrow(self, dim, start, length):
        """The slice ``start:start + length`` along ``dim`` (a view)."""
        from .functional._util import normalize_dim
        d = normalize_dim(dim, self.ndim)
        if start < 0:
            start += self.shape[d]
        if not 0 <= start <= start + length <= self.shape[d]:
            raise IndexError(f"narrow: start {start} and length {length} do not fit axis {d} "
                             f"of shape {tuple(self.shape)}")
        return self[(slice(None),) * d + (slice(start, start + length),)]

    def t(self):
        """Transpose of a tensor with at most 2 axes."""
        if self.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, got shape "
                               f"{tuple(self.shape)}; use transpose or permute")
        return self if self.ndim < 2 else F.transpose(self, 0, 1)
    def transpose(self, dim0, dim1): return F.transpose(self, dim0, dim1)
    def permute(self, *dims): return F.permute(self, _shape_args(dims))
    def flatten(self, start_dim=0, end_dim=-1): return F.flatten(self, start_dim, end_dim)
    def squeeze(self, dim=None): return F.squeeze(self, dim)
    def unsqueeze(self, dim): return F.unsqueeze(self, dim)
    def expand(self, *shape): return F.expand(self, _shape_args(shape))
    def broadcast_to(self, shape): return F.broadcast_to(self, shape)
    def expand_as(self, other): return F.broadcast_to(self, other.shape)
    def flip(self, dims): return F.flip(self, dims)
    def split(self, split_size_or_sections, dim=0): return F.split(self, split_size_or_sections, dim)
    def chunk(self, chunks, dim=0): return F.chunk(self, chunks, dim)

    # more math, indexing and scans (tinygen.functional.pointwise, .activation, .indexing)
    def sin(self): return F.sin(self)
    def cos(self): return F.cos(self)
    def erf(self): return F.erf(self)
    def lerp(self, end, weight): return F.lerp(self, end, weight)
    def cumsum(self, dim, *, dtype=None): return F.cumsum(self, dim, dtype=dtype)
    def cumprod(self, dim, *, dtype=None): return F.cumprod(self, dim, dtype=dtype)
    def tril(self, diagonal=0): return F.tril(self, diagonal)
    def triu(self, diagonal=0): return F.triu(self, diagonal)
    def gather(self, dim, index): return F.gather(self, dim, index)
    def index_select(self, dim, index): return F.index_select(self, dim, index)
    def scatter_add(self, dim, index, src): return F.scatter_add(self, dim, index, src)
    def masked_fill(self, mask, value): return F.masked_fill(self, mask, value)

    def scatter(self, dim, index, src=None, *, value=None, reduce=None):
        return F.scatter(self, dim, index, src, value=value, reduce=reduce)

    def masked_fill_(self, mask, value):
        """In place: ``value`` where ``mask`` is true (not on tensors that are part of a graph)."""
        self._check_inplace("masked_fill_", value)
        from .autograd import no_grad
        with no_grad():
            self.array[...] = F.masked_fill(self, mask, value).array
        return self

    def tan(self): return F.tan(self)
    def asin(self): return F.asin(self)
    def acos(self): return F.acos(self)
    def atan(self): return F.atan(self)
    def atan2(self, other): return F.atan2(self, other)
    def sinh(self): return F.sinh(self)
    def cosh(self): return F.cosh(self)
    def expm1(self): return F.expm1(self)
    def reciprocal(self): return F.reciprocal(self)

    # logs, powers, rounding and tests for likelihoods and quantization
    def log2(self): return F.log2(self)
    def log10(self): return F.log10(self)
    def exp2(self): return F.exp2(self)
    def rsqrt(self): return F.rsqrt(self)
    def floor(self): return F.floor(self)
    def ceil(self): return F.ceil(self)
    def trunc(self): return F.trunc(self)
    def round(self, decimals=0): return F.round(self, decimals)
    def logaddexp(self, other): return F.logaddexp(self, other)
    def logcumsumexp(self, dim): return F.logcumsumexp(self, dim)
    def prod(self, dim=None, keepdim=False, *, dtype=None):
        return F.prod(self, dim, keepdim, dtype=dtype)

    def isinf(self): return F.isinf(self)
    def isclose(self, other, rtol=1e-5, atol=1e-8, equal_nan=False):
        return F.isclose(self, other, rtol, atol, equal_nan)

    # tensor utilities (tinygen.functional.utility)
    def repeat(self, *sizes): return F.repeat(self, *sizes)
    def roll(self, shifts, dims=None): return F.roll(self, shifts, dims)
    def diag(self, diagonal=0): return F.diag(self, diagonal)
    def diagonal(self, offset=0, dim1=0, dim2=1): return F.diagonal(self, offset, dim1, dim2)
    def logical_not(self): return F.logical_not(self)
    def unflatten(self, dim, sizes): return F.unflatten(self, dim, sizes)

    def repeat_interleave(self, repeats, dim=None, *, output_size=None):
        return F.repeat_interleave(self, repeats, dim, output_size=output_size)

    def sort(self, dim=-1, descending=False, stable=False):
        return F.sort(self, dim, descending, stable)

    def argsort(self, dim=-1, descending=False, stable=False):
        return F.argsort(self, dim, descending, stable)

    def topk(self, k, dim=-1, largest=True, sorted=True):
        return F.topk(self, k, dim, largest, sorted)

    # in-place forms of the ops above (not on tensors that are part of a graph)
    def _write_(self, name, fn, *args, other=None):
        """Overwrite this tensor's memory with ``fn`` of its detached self (and detached args)."""
        self._check_inplace(name, other)
        detached = [a.detach() if isinstance(a, Tensor) else a for a in args]
        self.array[...] = fn(self.detach(), *detached).array
        return self

    def lerp_(self, end, weight):
        """In place ``self += weight * (end - self)``: the EMA update ``ema.lerp_(p, 1 - decay)``."""
        return self._write_("lerp_", F.lerp, end, weight, other=end)

    def tril_(self, diagonal=0): return self._write_("tril_", F.tril, diagonal)
    def triu_(self, diagonal=0): return self._write_("triu_", F.triu, diagonal)
    def floor_(self): return self._write_("floor_", F.floor)
    def ceil_(self): return self._write_("ceil_", F.ceil)
    def round_(self, decimals=0): return self._write_("round_", F.round, decimals)
    def trunc_(self): return self._write_("trunc_", F.trunc)

    def scatter_(self, dim, index, src=None, *, value=None, reduce=None):
        return self._write_("scatter_", lambda t, s: F.scatter(t, dim, index, s, value=value,
                                                                reduce=reduce), src, other=src)

    def scatter_add_(self, dim, index, src):
        return self._write_("scatter_add_", lambda t, s: F.scatter_add(t, dim, index, s), src,
                            other=src)

    # -- in-place ops (refused on tensors that require grad while grad mode is on) --------------
    def _check_inplace(self, name, other=None):
        from .autograd import is_grad_enabled
        if self.requires_grad and is_grad_enabled():
            kind = "a leaf tensor that requires grad" if self._ctx is None else \
                "a tensor that is part of a graph"
            raise RuntimeError(f"{name}: in-place operation on {kind} (shape "
                               f"{tuple(self.shape)}); wrap it in tinygen.no_grad() or use the "
                               f"out-of-place form")
        if isinstance(other, Tensor) and other.requires_grad and is_grad_enabled():
            raise RuntimeError(f"{name}: in-place operations are not differentiable, and the "
                               f"operand (shape {tuple(other.shape)}) requires grad, so its "
                               f"gradient would be lost; use out-of-place ops (cat, stack, where) "
                               f"or .detach() the operand")
        if not self.array.flags.writeable:
            raise RuntimeError(f"{name}: the tensor's memory is read-only (an expanded or "
                               f"broadcast view); .clone() it first")
        self._vbox[0] += 1

    def _inplace(self, name, ufunc, other, alpha=1):
        self._check_inplace(name, other)
        other = other.array if isinstance(other, Tensor) else other
        if alpha != 1:
            other = other * alpha
        ufunc(self.array, other, out=self.array, casting="same_kind")
        return self

    def add_(self, other, alpha=1):
        return self._inplace("add_", self._xp.add, other, alpha)

    def sub_(self, other, alpha=1):
        return self._inplace("sub_", self._xp.subtract, other, alpha)

    def mul_(self, other): return self._inplace("mul_", self._xp.multiply, other)
    def div_(self, other): return self._inplace("div_", self._xp.true_divide, other)
    def _augmented(self, name, inplace, op, other):
        """``x += y`` and friends: in place, except on a tensor that is part of a graph (or with
        an operand that requires grad), where ``x`` is rebound to the out-of-place result, so that
        ``out += identity`` works in a forward as in PyTorch. The memory of ``x`` (and of any
        view of it) is then left unchanged: PyTorch would write through it."""
        from .autograd import is_grad_enabled
        graph = is_grad_enabled() and (
            (self.requires_grad and self._ctx is not None) or
            (isinstance(other, Tensor) and other.requires_grad and not self.requires_grad))
        if not graph:
            return inplace(other)
        out = op(self, other)
        if out.dtype != self.dtype:
            if out.dtype.kind == "f" and self.dtype.kind != "f":
                raise RuntimeError(f"{name}: result type {out.dtype} can't be cast to the "
                                   f"desired output type {self.dtype}")
            out = out.to(self.dtype)
        return out

    def __iadd__(self, other): return self._augmented("+=", self.add_, F.add, other)
    def __isub__(self, other): return self._augmented("-=", self.sub_, F.sub, other)
    def __imul__(self, other): return self._augmented("*=", self.mul_, F.mul, other)
    def __itruediv__(self, other): return self._augmented("/=", self.div_, F.div, other)

    # in-place forms of unary ops and PyTorch's fused updates (no_grad or plain tensors)
    def _unary_(self, name, fn, *args):
        self._check_inplace(name)
        from .autograd import no_grad
        with no_grad():
            self.array[...] = fn(self, *args).array
        return self

    def sqrt_(self): return self._unary_("sqrt_", F.sqrt)
    def exp_(self): return self._unary_("exp_", F.exp)
    def log_(self): return self._unary_("log_", F.log)
    def log1p_(self): return self._unary_("log1p_", F.log1p)
    def abs_(self): return self._unary_("abs_", F.abs)
    def neg_(self): return self._unary_("neg_", F.neg)
    def sign_(self): return self._unary_("sign_", F.sign)
    def tanh_(self): return self._unary_("tanh_", F.tanh)
    def sigmoid_(self): return self._unary_("sigmoid_", F.sigmoid)
    def relu_(self): return self._unary_("relu_", F.relu)
    def square_(self): return self._unary_("square_", F.square)
    def pow_(self, exponent): return self._unary_("pow_", F.pow, exponent)
    def reciprocal_(self): return self._unary_("reciprocal_", lambda t: 1.0 / t)

    def addcmul_(self, tensor1, tensor2, value=1):
        """``self += value * tensor1 * tensor2``."""
        self._check_inplace("addcmul_", tensor1)
        self._check_inplace("addcmul_", tensor2)
        t1 = tensor1.array if isinstance(tensor1, Tensor) else tensor1
        t2 = tensor2.array if isinstance(tensor2, Tensor) else tensor2
        self.array += (value * t1 * t2).astype(self.dtype, copy=False)
        return self

    def addcdiv_(self, tensor1, tensor2, value=1):
        """``self += value * tensor1 / tensor2``."""
        self._check_inplace("addcdiv_", tensor1)
        self._check_inplace("addcdiv_", tensor2)
        t1 = tensor1.array if isinstance(tensor1, Tensor) else tensor1
        t2 = tensor2.array if isinstance(tensor2, Tensor) else tensor2
        self.array += (value * t1 / t2).astype(self.dtype, copy=False)
        return self

    # -- new tensors with this one's dtype and device (PyTorch's ``new_*``) -----------------------
    def new_zeros(self, *size, dtype=None, device=None, requires_grad=False):
        return zeros(*size, dtype=dtype or self.dtype, device=device or self.device,
                     requires_grad=requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad=False):
        return ones(*size, dtype=dtype or self.dtype, device=device or self.device,
                    requires_grad=requires_grad)

    def new_empty(self, *size, dtype=None, device=None, requires_grad=False):
        return empty(*size, dtype=dtype or self.dtype, device=device or self.device,
                     requires_grad=requires_grad)

    def new_full(self, size, fill_value, dtype=None, device=None, requires_grad=False):
        return full(size, fill_value, dtype=dtype or self.dtype, device=device or self.device,
                    requires_grad=requires_grad)

    def new_tensor(self, data, dtype=None, device=None, requires_grad=False):
        return tensor(data, dtype=dtype or self.dtype, device=device or self.device,
                      requires_grad=requires_grad)

    def zero_(self):
        self._check_inplace("zero_")
        self.array[...] = 0
        return self

    def fill_(self, value):
        self._check_inplace("fill_", value)
        self.array[...] = value.array if isinstance(value, Tensor) else value
        return self

    def copy_(self, src):
        """Copy ``src`` (Tensor or array, broadcastable) into this tensor's memory."""
        self._check_inplace("copy_", src)
        src = src.array if isinstance(src, Tensor) else src
        if self.device == "cpu":
            src = backend.to_numpy(src)
        self.array[...] = src
        return self

    def clamp_(self, min=None, max=None):
        self._check_inplace("clamp_")
        self._xp.clip(self.array, min, max, out=self.array)
        return self

    def uniform_(self, a=0.0, b=1.0, generator=None):
        self._check_inplace("uniform_")
        gen = _resolve_generator(generator)
        self.array[...] = backend.to_device(gen.uniform(self.shape, self.dtype, a, b), self.device)
        return self

    def normal_(self, mean=0.0, std=1.0, generator=None):
        self._check_inplace("normal_")
        gen = _resolve_generator(generator)
        self.array[...] = backend.to_device(gen.normal(self.shape, self.dtype), self.device) \
            * std + mean
        return self

    def __setitem__(self, index, value):
        self._check_inplace("__setitem__", value)
        value = value.array if isinstance(value, Tensor) else value
        index = F._index_arrays(index)
        steps = F._split_mixed_index(index)  # ints before arrays, as in getitem (PyTorch's order)
        if steps is not None:
            self.array[steps[0]][steps[1]] = value
        else:
            self.array[index] = value


def _scaled(other, alpha):
    """``alpha * other`` for a Tensor or a number (``add``/``sub`` with ``alpha``)."""
    return F.mul(other, alpha) if isinstance(other, Tensor) else other * alpha


def _shape_args(shape):
    """Accept both ``f(2, 3)`` and ``f((2, 3))``."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


# -- construction --------------------------------------------------------------------------------
def _to_array(data, dtype, device):
    """A fresh backing array for ``data`` following the dtype policy of :mod:`tinygen.backend`."""
    dtype = _as_dtype(dtype)
    if isinstance(data, Tensor):
        data = data.array
    xp = backend.array_module(device)
    if isinstance(data, np.ndarray) or (backend.device_of_safe(data) == "cuda"):
        arr = data
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"tensor(): cannot make a tensor from an array of dtype {arr.dtype}")
    elif isinstance(data, np.generic):
        arr = np.asarray(data)
    else:
        arr = np.asarray(data)
        if dtype is None:
            if arr.dtype.kind == "f":
                arr = arr.astype(backend.get_default_dtype())
            elif arr.dtype.kind in "iu":
                arr = arr.astype(np.int64)
            elif arr.dtype.kind not in "b":
                raise TypeError(f"tensor(): cannot make a tensor from data of dtype {arr.dtype}")
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    if xp is np:
        return np.array(backend.to_numpy(arr), copy=True)
    return xp.array(arr, copy=True)


def tensor(data, requires_grad=False, dtype=None, device=None) -> Tensor:
    """Make a leaf tensor holding a copy of ``data`` (a number, nested list, array or Tensor).

    Floating data from Python numbers gets the default dtype (float32); NumPy arrays keep their
    dtype; Python ints become int64.
    """
    device = backend.normalize_device(device)
    t = Tensor._wrap(_to_array(data, dtype, device))
    if requires_grad:
        t.requires_grad_(True)
    return t


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like :func:`tensor` but returns ``data`` itself when it is already a suitable Tensor."""
    if isinstance(data, Tensor) and (dtype is None or np.dtype(dtype) == data.dtype) and \
            (device is None or backend.normalize_device(device) == data.device):
        return data
    return tensor(data, dtype=dtype, device=device)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with a NumPy array (no copy, dtype kept)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    return Tensor._wrap(array)


def _factory(fill, shape, dtype, device, requires_grad):
    shape = _shape_args(shape)
    device = backend.normalize_device(device)
    dtype = _as_dtype(dtype) or backend.get_default_dtype()
    for s in shape:
        if not isinstance(s, numbers.Integral) or s < 0:
            raise ValueError(f"shape must hold non-negative ints, got {shape}")
    t = Tensor._wrap(fill(backend.array_module(device), tuple(int(s) for s in shape), dtype))
    if requires_grad:
        t.requires_grad_(True)
    return t


def zeros(*shape, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _factory(lambda xp, s, d: xp.zeros(s, d), shape, dtype, device, requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _factory(lambda xp, s, d: xp.ones(s, d), shape, dtype, device, requires_grad)


def empty(*shape, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _factory(lambda xp, s, d: xp.empty(s, d), shape, dtype, device, requires_grad)


def full(shape, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    if dtype is None and isinstance(fill_value, (bool, np.bool_)):
        dtype = bool_
    elif dtype is None and isinstance(fill_value, numbers.Integral):
        dtype = int64
    return _factory(lambda xp, s, d: xp.full(s, fill_value, d), (shape,) if
                    isinstance(shape, numbers.Integral) else shape, dtype, device, requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _factory(lambda xp, s, d: xp.eye(s[0], s[1], dtype=d), (n, n if m is None else m),
                    dtype, device, requires_grad)


def rand(*shape, dtype=None, device=None, requires_grad=False, generator=None) -> Tensor:
    """Uniform samples on [0, 1)."""
    gen = _resolve_generator(generator)
    return _factory(lambda xp, s, d: backend.to_device(gen.uniform(s, _float(d, "rand")),
                                                      _dev(xp)),
                    shape, dtype, device, requires_grad)


def randn(*shape, dtype=None, device=None, requires_grad=False, generator=None) -> Tensor:
    """Standard normal samples."""
    gen = _resolve_generator(generator)
    return _factory(lambda xp, s, d: backend.to_device(gen.normal(s, _float(d, "randn")),
                                                      _dev(xp)),
                    shape, dtype, device, requires_grad)


def randint(low, high=None, size=(), dtype=int64, device=None, generator=None) -> Tensor:
    """Integers drawn uniformly from ``[low, high)`` (or ``[0, low)`` when ``high`` is None)."""
    if high is None:
        low, high = 0, low
    elif isinstance(high, (tuple, list)) and size == ():  # torch.randint(high, size)
        low, high, size = 0, low, high
    if high <= low:
        raise ValueError(f"randint: need low < high, got low={low}, high={high}")
    gen = _resolve_generator(generator)
    return _factory(lambda xp, s, d: backend.to_device(gen.integers(low, high, s, d), _dev(xp)),
                    size, dtype, device, False)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Values from ``start`` to ``end`` (exclusive) by ``step``; int64 unless a value is a float."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        is_int = all(isinstance(v, numbers.Integral) for v in (start, end, step))
        dtype = int64 if is_int else backend.get_default_dtype()
    device = backend.normalize_device(device)
    t = Tensor._wrap(backend.array_module(device).arange(start, end, step, dtype=_as_dtype(dtype)))
    if requires_grad:
        t.requires_grad_(True)
    return t


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False) -> Tensor:
    device = backend.normalize_device(device)
    dtype = _as_dtype(dtype) or backend.get_default_dtype()
    xp = backend.array_module(device)
    if dtype.kind in "biu":  # computed in float64, then truncated toward zero as PyTorch
        t = Tensor._wrap(xp.trunc(xp.linspace(start, end, steps, dtype=np.float64)).astype(dtype))
    else:
        t = Tensor._wrap(xp.linspace(start, end, steps, dtype=dtype))
    if requires_grad:
        t.requires_grad_(True)
    return t


def _like(fn, t, dtype, device, **kw):
    return fn(t.shape, dtype=dtype or t.dtype, device=device or t.device, **kw)


def zeros_like(t, dtype=None, device=None, requires_grad=False):
    return _like(zeros, t, dtype, device, requires_grad=requires_grad)


def ones_like(t, dtype=None, device=None, requires_grad=False):
    return _like(ones, t, dtype, device, requires_grad=requires_grad)


def empty_like(t, dtype=None, device=None, requires_grad=False):
    return _like(empty, t, dtype, device, requires_grad=requires_grad)


def full_like(t, fill_value, dtype=None, device=None, requires_grad=False):
    return full(t.shape, fill_value, dtype=dtype or t.dtype, device=device or t.device,
                requires_grad=requires_grad)


def rand_like(t, dtype=None, device=None, requires_grad=False, generator=None):
    return _like(rand, t, dtype, device, requires_grad=requires_grad, generator=generator)


def randn_like(t, dtype=None, device=None, requires_grad=False, generator=None):
    return _like(randn, t, dtype, device, requires_grad=requires_grad, generator=generator)


def _float(dtype, name):
    if dtype.kind != "f":
        raise TypeError(f"{name}: dtype must be floating point, got {dtype}")
    return dtype


def _dev(xp):
    return "cpu" if xp is np else "cuda"


from . import functional as F  # noqa: E402  (the ops need Tensor defined first)
