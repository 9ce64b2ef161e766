"""A stand-in for the ``cupy`` module, for tests only: NumPy underneath, CuPy's rules on top.

``tests/conftest.py`` puts this module into ``sys.modules["cupy"]`` (and :data:`cupyx` into
``sys.modules["cupyx"]``) when the run asks for it (``TINYGEN_TEST_DEVICE=cuda-emu``, set by
``make test-gpu-emu``), before tinygen is imported. A user's ``device="cuda"`` can never reach it.

What it keeps from CuPy, so that engine bugs show on a CPU-only machine:

* :class:`ndarray` wraps a NumPy array and refuses silent conversion to NumPy (``np.asarray(x)``
  raises ``TypeError`` as CuPy does; ``x.get()`` / :func:`asnumpy` copy explicitly); mixing it
  with a NumPy array in an operation raises ``TypeError`` (CuPy: "Unsupported type");
* reductions and indexing return 0-d device arrays, not NumPy scalars;
* :func:`empty` returns NaN-poisoned memory (a GPU's ``empty`` is garbage, never zeros);
* ``matmul`` is NumPy's (standing in for cuBLAS);
* :class:`RawModule` / :class:`RawKernel` compile the ``.cu`` text with g++ and launch the kernels
  on the CPU emulator (:mod:`cuda_emu`) with CuPy's convention ``k(grid, block, args)`` and exact
  argument types;
* ``cuda.runtime.getDeviceCount()`` is 1.

Everything else of NumPy's array API is forwarded (module functions, ufuncs, array methods).
"""
from __future__ import annotations

import sys
import types

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

import cuda_emu

EMULATED = True     # lets tests and the report header tell the stand-in from real CuPy
__version__ = "0.0-emulated"

_HOST_OK = {"asarray", "array", "asanyarray", "ascontiguousarray", "asfortranarray"}


def _refuse_host(name):
    raise TypeError(f"cupy.{name}: Unsupported type <class 'numpy.ndarray'> (a NumPy array "
                    "mixed with device arrays; move it with cupy.asarray first)")


def _unwrap(x, name="op", host_ok=False):
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, np.ndarray) and x.ndim > 0 and not host_ok:
        _refuse_host(name)
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, name, host_ok) for v in x)
    return x


class _RandomSource:
    """A NumPy Generator/RandomState whose draws are device arrays (``cupy.random.default_rng``)."""

    def __init__(self, source):
        self._source = source

    def __getattr__(self, name):
        attr = getattr(self._source, name)
        return _wrap_function(attr, f"random.{name}") if callable(attr) else attr


def _wrap(x):
    if isinstance(x, np.ndarray):
        return ndarray._from(x)
    if isinstance(x, (np.random.Generator, np.random.RandomState)):
        return _RandomSource(x)
    if isinstance(x, np.generic):
        return ndarray._from(np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _wrap_function(fn, name):
    host_ok = name in _HOST_OK

    def wrapped(*args, **kwargs):
        host = [a for a in args if isinstance(a, np.ndarray)]
        args = _unwrap(args, name, host_ok)
        kwargs = {k: _unwrap(v, name, host_ok) for k, v in kwargs.items()}
        out = fn(*args, **kwargs)
        if isinstance(out, np.ndarray) and any(np.shares_memory(out, h) for h in host):
            out = out.copy()        # device memory is never a host array's memory
        return _wrap(out)
    wrapped.__name__ = name
    wrapped.__doc__ = getattr(fn, "__doc__", None)
    return wrapped


class _Data:
    def __init__(self, a):
        self.ptr = a.__array_interface__["data"][0]


class ndarray(NDArrayOperatorsMixin):
    """A device array (NumPy underneath) with CuPy's conversion rules."""

    __slots__ = ("_a",)
    __array_priority__ = 100

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        self._a = np.empty(shape, dtype, order=order)
        _poison(self._a)

    @classmethod
    def _from(cls, a: np.ndarray) -> "ndarray":
        obj = cls.__new__(cls)
        obj._a = a
        return obj

    # -- CuPy's conversion rules --
    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                        "`.get()` to construct a NumPy array explicitly.")

    def get(self, stream=None, order="C", out=None):
        if out is not None:
            out[...] = self._a
            return out
        return np.array(self._a, order=order, copy=True)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        name = ufunc.__name__
        inputs = _unwrap(inputs, name)
        if "out" in kwargs:
            kwargs["out"] = tuple(_unwrap_out(o, name) for o in kwargs["out"])
        result = getattr(ufunc, method)(*inputs, **kwargs)
        if "out" in kwargs and method != "at":
            outs = kwargs["out"]
            return _rewrap_out(result, outs)
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        name = func.__name__
        args = _unwrap(args, name)
        kwargs = {k: _unwrap(v, name) for k, v in kwargs.items()}
        return _wrap(func(*args, **kwargs))

    # -- the array protocol CuPy has --
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    data = property(lambda self: _Data(self._a))
    device = property(lambda self: cuda.Device(0))
    T = property(lambda self: ndarray._from(self._a.T))
    base = property(lambda self: None if self._a.base is None else _wrap(self._a.base))

    @property
    def real(self):
        return _wrap(self._a.real)

    def __getattr__(self, name):
        if name.startswith("__"):   # no __array_interface__ / __array_struct__: no silent copy
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            return _wrap_function(attr, f"ndarray.{name}")
        return _wrap(attr)

    def __getitem__(self, index):
        return _wrap(self._a[_unwrap(index, "getitem", host_ok=True)])

    def __setitem__(self, index, value):
        self._a[_unwrap(index, "setitem", host_ok=True)] = _unwrap(value, "setitem",
                                                                     host_ok=True)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(v) for v in self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __index__(self):
        return self._a.__index__()

    def __bool__(self):
        return bool(self._a)

    def __complex__(self):
        return complex(self._a)

    def __repr__(self):
        return repr(self._a).replace("array(", "array(", 1)

    def __str__(self):
        return str(self._a)

    def __format__(self, spec):
        return format(self._a, spec) if self._a.ndim == 0 else str(self._a)

    def __copy__(self):
        return ndarray._from(self._a.copy())

    def __deepcopy__(self, memo):
        return ndarray._from(self._a.copy())

    def __reduce__(self):
        raise TypeError("device arrays are not pickled; use .get()")

    __hash__ = None


def _unwrap_out(o, name):
    if isinstance(o, ndarray):
        return o._a
    if isinstance(o, np.ndarray):
        _refuse_host(name)
    return o


def _rewrap_out(result, outs):
    if isinstance(result, tuple):
        return tuple(_rewrap_out(r, (o,)) for r, o in zip(result, outs))
    for o in outs:
        if isinstance(o, np.ndarray) and result is o:
            return ndarray._from(o)
    return _wrap(result)


def _poison(a: np.ndarray) -> None:
    if a.dtype.kind == "f":
        a.fill(np.nan)
    elif a.dtype.kind in "iu":
        a.fill(np.iinfo(a.dtype).max)


# -- module functions ------------------------------------------------------------------------------
def asnumpy(a, stream=None, order="C", out=None):
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return np.asarray(a, order=order)


def get_array_module(*args):
    return sys.modules[__name__]


def empty(shape, dtype=float, order="C"):
    a = np.empty(shape, dtype, order=order)
    _poison(a)
    return ndarray._from(a)


def empty_like(prototype, dtype=None, order="K", subok=None, shape=None):
    a = np.empty_like(_unwrap(prototype), dtype=dtype, order=order, shape=shape)
    _poison(a)
    return ndarray._from(a)


class _Ufunc:
    """A NumPy ufunc that refuses host arrays (``cupy.exp(numpy_array)`` is a TypeError)."""

    def __init__(self, ufunc):
        self._ufunc = ufunc
        self.__name__ = ufunc.__name__

    def __call__(self, *args, **kwargs):
        if not any(isinstance(a, ndarray) for a in args) and \
                not any(isinstance(o, ndarray) for o in _as_tuple(kwargs.get("out"))):
            _unwrap(args, self.__name__)        # host arrays: refused; scalars: computed here
            return _wrap(self._ufunc(*args, **kwargs))
        return self._ufunc(*args, **kwargs)     # -> ndarray.__array_ufunc__

    def __getattr__(self, name):                # reduce, accumulate, at, nin, ...
        attr = getattr(self._ufunc, name)
        return _wrap_function(attr, f"{self.__name__}.{name}") if callable(attr) else attr


def _as_tuple(v):
    return v if isinstance(v, tuple) else (() if v is None else (v,))


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    attr = getattr(np, name)
    if isinstance(attr, (type, np.dtype)) or not callable(attr):
        return attr
    if isinstance(attr, np.ufunc):
        fn = _Ufunc(attr)
        globals()[name] = fn
        return fn
    fn = _wrap_function(attr, name)
    globals()[name] = fn
    return fn


def _namespace(name, source, extra=None):
    mod = types.ModuleType(f"{__name__}.{name}")

    def getattr_(attr):
        value = getattr(source, attr)
        return _wrap_function(value, f"{name}.{attr}") if callable(value) else value
    mod.__getattr__ = getattr_
    for k, v in (extra or {}).items():
        setattr(mod, k, v)
    return mod


random = _namespace("random", np.random)
linalg = _namespace("linalg", np.linalg)
fft = _namespace("fft", np.fft)


# -- kernels on the emulator -----------------------------------------------------------------------
def _kernel_arg(a):
    return a._a if isinstance(a, ndarray) else None


class RawModule:
    """``cupy.RawModule(code=..., options=...)``: compiled by g++ for the CPU emulator."""

    def __init__(self, code=None, *, path=None, options=(), backend="nvrtc",
                 translate_cucomplex=False, enable_cooperative_groups=False,
                 name_expressions=None, jitify=False):
        if code is None:
            raise NotImplementedError("the stand-in compiles code=... only")
        self._module = cuda_emu.EmuModule(code, options, unwrap=_kernel_arg)

    def get_function(self, name):
        return self._module.get_function(name)


class RawKernel:
    """``cupy.RawKernel(code, name, options=...)``."""

    def __init__(self, code, name, options=(), **_):
        self._kernel = cuda_emu.EmuModule(code, options, unwrap=_kernel_arg).get_function(name)

    def __call__(self, grid, block, args, **kwargs):
        return self._kernel(grid, block, args, **kwargs)


# -- cupy.cuda -------------------------------------------------------------------------------------
class _Device:
    def __init__(self, device=0):
        self.id = int(device)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def use(self):
        return self

    def synchronize(self):
        pass

    def __repr__(self):
        return f"<CUDA Device {self.id} (emulated)>"


class _Event:
    def __init__(self, *args, **kwargs):
        import time
        self._time = time.perf_counter
        self._t = None

    def record(self, stream=None):
        self._t = self._time()

    def synchronize(self):
        pass


class _Stream:
    null = None

    def __init__(self, *args, **kwargs):
        pass

    def synchronize(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_Stream.null = _Stream()


def _get_elapsed_time(start, end):
    return (end._t - start._t) * 1000.0


_runtime_ns = types.SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 0,
                                    deviceSynchronize=lambda: None,
                                    getDeviceProperties=lambda i: {"name": b"CPU emulator"})
cuda = types.ModuleType(f"{__name__}.cuda")
cuda.runtime = _runtime_ns
cuda.Device = _Device
cuda.Event = _Event
cuda.Stream = _Stream
cuda.get_elapsed_time = _get_elapsed_time
cuda.is_available = lambda: True


def _scatter_add(a, slices, value):
    np.add.at(_unwrap(a), _unwrap(slices, "scatter_add", True), _unwrap(value, "scatter_add"))


def _special():
    import scipy.special
    return _namespace("scipy.special", scipy.special)


cupyx = types.ModuleType("cupyx")
cupyx.scatter_add = _scatter_add
cupyx.scipy = types.ModuleType("cupyx.scipy")
cupyx.scipy.special = _special()


def install() -> None:
    """Make ``import cupy`` / ``import cupyx`` give the stand-ins (tests only)."""
    this = sys.modules[__name__]
    sys.modules["cupy"] = this
    sys.modules["cupy.cuda"] = cuda
    sys.modules["cupy.random"] = random
    sys.modules["cupy.linalg"] = linalg
    sys.modules["cupy.fft"] = fft
    sys.modules["cupyx"] = cupyx
    sys.modules["cupyx.scipy"] = cupyx.scipy
    sys.modules["cupyx.scipy.special"] = cupyx.scipy.special
