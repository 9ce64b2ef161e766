"""``Module`` and ``Parameter``: the containers models are built from (no gradient code here)."""
from __future__ import annotations

from collections import OrderedDict, namedtuple
from collections.abc import Mapping

import numpy as np

from .. import backend
from ..autograd import no_grad
from ..tensor import Tensor

__all__ = ["Parameter", "Module"]


class Parameter(Tensor):
    """A leaf tensor that a :class:`Module` registers as trainable.

    ``Parameter(data, requires_grad=True)``: ``data`` is a Tensor (its memory is shared, as in
    PyTorch) or anything :func:`tinygen.tensor` accepts (copied; Python floats give float32).
    """

    __slots__ = ()

    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            array = np.empty(0, dtype=backend.get_default_dtype())
        elif isinstance(data, Tensor):
            array = data.array
        else:
            from ..tensor import tensor
            array = tensor(data).array
        p = object.__new__(cls)
        p.array, p.grad, p.requires_grad = array, None, False
        p._ctx, p._vbox, p._retains_grad, p._out_index = None, [0], False, 0
        if requires_grad:
            p.requires_grad_(True)
        return p

    def __init__(self, data=None, requires_grad=True):  # everything happens in __new__
        pass

    def __reduce_ex__(self, protocol):  # pickle / deepcopy: a fresh leaf, same values and device
        return (_rebuild_parameter, (type(self), backend.to_numpy(self.array), self.requires_grad,
                                     self.device))

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


def _rebuild_parameter(cls, array, requires_grad, device):
    from ..tensor import tensor
    return cls(tensor(array, device=device), requires_grad)


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])
IncompatibleKeys.__doc__ = "What :meth:`Module.load_state_dict` did not match (lists of names)."


def _check_name(kind: str, name) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{kind} name should be a str, got {type(name).__name__}")
    if not name or "." in name:
        raise KeyError(f"{kind} name must be non-empty and contain no '.', got {name!r}")


class Module:
    """Base class of every layer and model (PyTorch's ``nn.Module`` API).

    Assigning a :class:`Parameter` or a ``Module`` as an attribute registers it; so does
    :meth:`register_buffer` for a non-trainable tensor. ``parameters()``, ``state_dict()``,
    ``to()``, ``train()`` and the rest then walk the tree. Subclasses call
    ``super().__init__()`` first and define :meth:`forward`; calling the module calls it.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration ------------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() is called")
        params, modules, buffers = self._parameters, self._modules, self._buffers
        if isinstance(value, Parameter):
            self.__dict__.pop(name, None)
            modules.pop(name, None)
            buffers.pop(name, None)
            self._non_persistent.discard(name)
            params[name] = value
        elif isinstance(value, Module):
            self.__dict__.pop(name, None)
            params.pop(name, None)
            buffers.pop(name, None)
            self._non_persistent.discard(name)
            modules[name] = value
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} to buffer {name!r} "
                                f"(a Tensor or None is required)")
            buffers[name] = value
        elif name in params or name in modules:
            if value is not None:
                kind = "parameter" if name in params else "module"
                raise TypeError(f"cannot assign {type(value).__name__} to {kind} {name!r} "
                                f"(a {'Parameter' if kind == 'parameter' else 'Module'} or None "
                                f"is required)")
            (params if name in params else modules)[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        d = self.__dict__
        for key in ("_parameters", "_modules", "_buffers"):
            if key in d and name in d[key]:
                return d[key][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for key in ("_parameters", "_buffers", "_modules"):
            if name in self.__dict__[key]:
                del self.__dict__[key][name]
                self._non_persistent.discard(name)
                return
        object.__delattr__(self, name)

    def _check_new_name(self, kind, name, own):
        _check_name(kind, name)
        if name in self.__dict__ or (hasattr(type(self), name)) or \
                any(name in d for d in (self._parameters, self._buffers, self._modules)
                    if d is not own):
            raise KeyError(f"attribute {name!r} already exists on {type(self).__name__}")

    def register_parameter(self, name: str, param) -> None:
        """Register ``param`` (a :class:`Parameter` or None) under ``name``."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None, got "
                            f"{type(param).__name__}")
        self._check_new_name("parameter", name, self._parameters)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """Register a non-trainable tensor (running statistics, ...) under ``name``; it moves
        with :meth:`to` and is saved in the state dict unless ``persistent=False``."""
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: {name!r} must be a Tensor or None, got "
                            f"{type(tensor).__name__}")
        self._check_new_name("buffer", name, self._buffers)
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def add_module(self, name: str, module) -> None:
        """Register ``module`` (a Module or None) as a child under ``name``."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module, got {type(module).__name__}")
        self._check_new_name("module", name, self._modules)
        self._modules[name] = module

    register_module = add_module

    # -- traversal ---------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix: str = ""):
        """(dotted name, module) for this module (name ``prefix``) and every descendant, each
        module once."""
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self):
        """This module and every descendant, each once."""
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        """(name, module) for the direct children, each once."""
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        """The direct children, each once."""
        for _, m in self.named_children():
            yield m

    def _named_members(self, attr, prefix, recurse):
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, m in mods:
            for name, t in getattr(m, attr).items():
                if t is None or id(t) in seen:
                    continue
                seen.add(id(t))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), t

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        """(dotted name, Parameter) pairs; a parameter shared by several modules appears once,
        under the first name it is found by."""
        yield from self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse: bool = True):
        """Every parameter (of the descendants too unless ``recurse=False``), each once."""
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True):
        """(dotted name, buffer) pairs, each buffer once (non-persistent ones included)."""
        yield from self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse: bool = True):
        """Every buffer, each once."""
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # -- modes and gradients -----------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Set training mode (Dropout, BatchNorm behave differently) on this module and,
        through their own ``train``, on all its children."""
        if not isinstance(mode, bool):
            raise ValueError(f"train: mode must be a bool, got {mode!r}")
        object.__setattr__(self, "training", mode)
        for m in self.children():
            m.train(mode)
        return self

    def eval(self) -> "Module":
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (or set it to zeros with ``set_to_none=False``)."""
        from .utils import zero_grads_
        zero_grads_(self.parameters(), set_to_none)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        """Switch gradient recording on or off for every parameter (freezing a sub-network)."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def apply(self, fn) -> "Module":
        """Call ``fn(module)`` on every child (depth first) and then on this module."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # -- calling -------------------------------------------------------------------------------
    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        """The computation; subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self, prefix: str = "", keep_vars: bool = False) -> "OrderedDict":
        """Parameters and persistent buffers by dotted name, as detached tensors sharing memory
        (``keep_vars=True``: the tensors themselves). Copy them (``.clone()``) to keep a
        snapshot. As in PyTorch, a module registered under two names appears under both."""
        return OrderedDict((name, t if keep_vars else t.detach())
                           for name, t in self._state_tensors(prefix))

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy values (Tensors or arrays) into this module's parameters and buffers, in place
        (the tensor objects stay the same; their version counters are bumped).

        With ``strict=True`` missing and unexpected keys are errors; a shape mismatch always
        is. Nothing is copied when an error is raised. Returns ``(missing_keys,
        unexpected_keys)``.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict: expected a mapping of names to tensors, got "
                            f"{type(state_dict).__name__}")
        own = OrderedDict(self._state_tensors())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched = []
        for k, target in own.items():
            if k in state_dict:
                shape = tuple(np.shape(state_dict[k]) if not hasattr(state_dict[k], "shape")
                              else state_dict[k].shape)
                if shape != tuple(target.shape):
                    mismatched.append(f"{k}: expected shape {tuple(target.shape)}, got {shape}")
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if mismatched:
            problems.append("shape mismatch for " + "; ".join(mismatched))
        if problems:
            raise RuntimeError(f"error(s) loading state_dict into {type(self).__name__}: " +
                               " | ".join(problems))
        with no_grad():
            for k, target in own.items():
                if k in state_dict:
                    value = state_dict[k]
                    value = backend.to_numpy(value.array if isinstance(value, Tensor) else value)
                    target.copy_(backend.to_device(np.asarray(value), target.device))
        return IncompatibleKeys(missing, unexpected)

    def _state_tensors(self, prefix: str = ""):
        """(name, tensor) for the state dict: own parameters, own persistent buffers, then each
        child's, recursively (PyTorch's order)."""
        for name, p in self._parameters.items():
            if p is not None:
                yield prefix + name, p
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent:
                yield prefix + name, b
        for name, m in self._modules.items():
            if m is not None:
                yield from m._state_tensors(f"{prefix}{name}.")

    def to(self, *args, dtype=None, device=None) -> "Module":
        """``to(dtype)``, ``to(device)`` or both: convert every parameter and buffer (and
        gradient) in place -- each tensor gets a new array, the Parameter objects stay the
        same, so optimizers built on them keep working. Integer buffers keep their dtype."""
        for a in args:
            if isinstance(a, str) and (a == "cpu" or a.startswith("cuda")):
                device = a
            else:
                dtype = a
        if dtype is not None:
            try:
                dtype = np.dtype(dtype)
            except TypeError:
                raise TypeError(f"Module.to: {dtype!r} is neither a device ('cpu', 'cuda') nor "
                                f"a dtype") from None
            if dtype.kind != "f":
                raise TypeError(f"Module.to: dtype must be a floating dtype, got {dtype}")
        device = backend.normalize_device(device) if device is not None else None

        def convert(data):
            if dtype is not None and data.dtype.kind == "f":
                data = data.astype(dtype, copy=False)
            if device is not None:
                data = backend.to_device(data, device)
            return data

        for t in self._all_tensors():
            data = convert(t.array)
            if data is not t.array:
                t.array = data
                t._vbox[0] += 1
            if t.grad is not None:
                g = convert(t.grad.array)
                if g is not t.grad.array:
                    t.grad = Tensor._wrap(g)
        return self

    def _all_tensors(self):
        seen = set()
        for m in self.modules():
            for d in (m._parameters, m._buffers):
                for t in d.values():
                    if t is not None and id(t) not in seen:
                        seen.add(id(t))
                        yield t

    def float(self) -> "Module":
        """``to(float32)``."""
        return self.to(np.float32)

    def double(self) -> "Module":
        """``to(float64)``."""
        return self.to(np.float64)

    def cpu(self) -> "Module":
        """``to("cpu")``."""
        return self.to("cpu")

    def cuda(self) -> "Module":
        """``to("cuda")`` (needs CuPy and a GPU)."""
        return self.to("cuda")

    # -- printing ------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The text inside this module's parentheses in its repr (subclasses override)."""
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        lines = extra.split("\n") if extra else []
        for name, m in self._modules.items():
            lines.append(f"({name}): " + repr(m).replace("\n", "\n  "))
        if not self._modules and len(lines) <= 1:
            return f"{type(self).__name__}({extra})"
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"
