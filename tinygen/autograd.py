"""Reverse-mode automatic differentiation: grad mode, the ``Function`` base class and the engine.

The graph
---------
Every differentiable primitive is a subclass of :class:`Function` with two methods side by side:

* ``forward(self, *arrays, **params) -> array | tuple[array, ...]`` computes on backing arrays
  (NumPy or CuPy) and may stash whatever the backward needs on ``self``;
* ``backward(self, *grad_outputs: Tensor | None) -> tuple[Tensor | None, ...]`` gets one gradient
  per output and returns one gradient per positional input, **written with differentiable Tensor
  ops**, so that running it with grad mode on (``create_graph=True``) records a graph of the
  backward pass itself: second derivatives for free.

``Function.apply(*tensors, **params)`` runs the forward and, when grad mode is on and an input
requires a gradient, links the output tensor(s) to the function (``tensor.grad_fn``). A forward
that returns a tuple of arrays gives a tuple of tensors (as Chainer's ``FunctionNode``): an LSTM
returns its hidden states and its last cell state, a coupling layer ``y`` and ``log|det J|``. Its
backward is called once, after every output's gradient is complete, with ``None`` for an output
that no gradient reached; outputs listed in ``non_differentiable`` (indices, counts) never require
grad.

The engine (:func:`backward_from`) sorts the graph topologically, calls each backward once with the
sum of the gradients that reached its output, and then -- in one place, for every op -- undoes
broadcasting (sums a gradient down to its input's shape) and checks that the gradient has exactly its
input's shape and dtype. Leaf tensors accumulate into ``.grad``.

In-place changes are tracked by a version counter shared between a tensor and its views; a backward
that needs a tensor whose version changed since the forward raises a clear error.
"""
from __future__ import annotations

import contextlib
import functools
import weakref

__all__ = ["Function", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled",
           "grad", "backward_from"]

_state = {"grad_enabled": True}


def is_grad_enabled() -> bool:
    """Whether operations are currently recorded for differentiation."""
    return _state["grad_enabled"]


class set_grad_enabled(contextlib.ContextDecorator):
    """Switch gradient recording on or off.

    As in PyTorch, a plain call ``tinygen.set_grad_enabled(False)`` switches the mode at once;
    as a context manager or decorator the previous mode comes back on exit.
    """

    def __init__(self, mode: bool):
        self.mode = bool(mode)
        self.prev = []
        if type(self) is set_grad_enabled:  # switch now; undone by __enter__/__call__ below
            self._called_prev = _state["grad_enabled"]
            _state["grad_enabled"] = self.mode

    def __call__(self, func):
        # used as a decorator: the switch made by __init__ must not outlive the decoration
        _state["grad_enabled"] = self.__dict__.pop("_called_prev", _state["grad_enabled"])
        return super().__call__(func)

    def __enter__(self):
        self.prev.append(self.__dict__.pop("_called_prev", _state["grad_enabled"]))
        _state["grad_enabled"] = self.mode
        return self

    def __exit__(self, *exc):
        _state["grad_enabled"] = self.prev.pop()
        return False


class _FixedGradMode(set_grad_enabled):
    """Base of ``no_grad``/``enable_grad``: ``with x():``, ``@x()`` and, as in PyTorch, ``@x``."""

    mode_value = False

    def __new__(cls, func=None):
        if callable(func):  # used as ``@no_grad`` without parentheses
            @functools.wraps(func)
            def wrapper(*args, **kwargs):
                with cls():
                    return func(*args, **kwargs)
            return wrapper
        return super().__new__(cls)

    def __init__(self, func=None):
        super().__init__(self.mode_value)


class no_grad(_FixedGradMode):
    """Disable gradient recording: ``with tinygen.no_grad(): ...`` or ``@tinygen.no_grad()``.

    Like PyTorch, the bare decorator form ``@tinygen.no_grad`` works as well.
    """

    mode_value = False


class enable_grad(_FixedGradMode):
    """Enable gradient recording inside a ``no_grad`` region (also a decorator, bare or called)."""

    mode_value = True


class Function:
    """Base class of every differentiable primitive (see the module docstring).

    Subclasses set ``is_view = True`` when the output's data may alias the first input's memory;
    the two tensors then share one version counter.
    """

    is_view = False

    # Attributes set by ``apply`` on functions that are part of a graph.
    inputs: tuple = ()
    needs_input_grad: tuple = ()
    n_outputs = 1                 # set by ``apply`` when the forward returns a tuple
    non_differentiable: tuple = ()  # indices of outputs that never require grad
    _versions: tuple = ()
    _output_refs: tuple = ()
    _output_versions: tuple = ()
    freed = False

    def forward(self, *arrays, **params):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, *grad_outputs):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params):
        """Run the forward on ``inputs`` (Tensors) and link the result into the graph."""
        fn = cls()
        raw = fn.forward(*[t.array for t in inputs], **params)
        multi = type(raw) is tuple
        outs = tuple(Tensor._wrap(a) for a in raw) if multi else (Tensor._wrap(raw),)
        if cls.is_view:
            outs[0]._vbox = inputs[0]._vbox
        if _state["grad_enabled"]:
            for t in inputs:
                if t.requires_grad:
                    fn.inputs = inputs
                    fn.needs_input_grad = tuple(t.requires_grad for t in inputs)
                    fn._versions = tuple(t._vbox[0] for t in inputs)
                    fn._output_refs = tuple(weakref.ref(o) for o in outs)
                    fn._output_versions = tuple(o._vbox[0] for o in outs)
                    if multi:
                        fn.n_outputs = len(outs)
                    for i, o in enumerate(outs):
                        if i in fn.non_differentiable:
                            continue
                        o.requires_grad = True
                        o._ctx = fn
                        o._out_index = i
                    break
        return outs if multi else outs[0]

    # -- access to what the forward saw, with the in-place check -------------------------------
    def saved_input(self, i: int):
        """Input ``i`` as it was in the forward; raises if it was modified in place since."""
        t = self.inputs[i]
        if t._vbox[0] != self._versions[i]:
            raise RuntimeError(
                f"one of the tensors needed to compute the gradient of {type(self).__name__} "
                f"(input {i}, shape {tuple(t.shape)}) was modified by an in-place operation after "
                f"the forward (version {self._versions[i]} -> {t._vbox[0]}); use an out-of-place "
                f"op or .clone() before modifying it")
        return t

    def saved_output(self, i: int = 0):
        """Output ``i`` of the forward; raises if it was modified in place since."""
        out = self._output_refs[i]() if i < len(self._output_refs) else None
        if out is None:  # pragma: no cover - the output is alive whenever its grad is needed
            raise RuntimeError(f"the output of {type(self).__name__} is no longer alive")
        if out._vbox[0] != self._output_versions[i]:
            raise RuntimeError(
                f"the output of {type(self).__name__} (shape {tuple(out.shape)}) is needed to "
                f"compute its gradient but was modified by an in-place operation after the forward")
        return out

    def _release(self):
        """Drop everything the backward needed (``retain_graph=False``)."""
        self.__dict__.clear()
        self.freed = True

    def __repr__(self):
        return f"<{type(self).__name__}Backward>"


def _topological_order(roots):
    """Tensors reachable from ``roots`` through grad-requiring edges, consumers before producers,
    and for each function with several outputs ``id(fn) -> [how many of its outputs are in the
    order, gradient per output]`` (counted during the same walk)."""
    order, seen, pending = [], set(), {}
    for root in roots:
        if id(root) in seen:
            continue
        seen.add(id(root))
        stack = [(root, iter(_parents(root)))]
        while stack:
            node, it = stack[-1]
            for parent in it:
                if parent.requires_grad and id(parent) not in seen:
                    seen.add(id(parent))
                    stack.append((parent, iter(_parents(parent))))
                    break
            else:
                stack.pop()
                order.append(node)
                fn = node._ctx
                if fn is not None and fn.n_outputs > 1:
                    entry = pending.setdefault(id(fn), [0, [None] * fn.n_outputs])
                    entry[0] += 1
    order.reverse()
    return order, pending


def _parents(t):
    fn = t._ctx
    return fn.inputs if fn is not None and not fn.freed else ()


def _conform(g, inp, fn, index):
    """Undo broadcasting and fix the dtype of gradient ``g`` for input ``inp`` of ``fn``."""
    if not isinstance(g, Tensor):
        raise TypeError(f"{type(fn).__name__}.backward returned {type(g).__name__} for input "
                        f"{index}; backward must return Tensors")
    if g.shape != inp.shape:
        from .functional.shape import sum_to
        try:
            g = sum_to(g, inp.shape)
        except ValueError:
            raise RuntimeError(
                f"{type(fn).__name__}.backward returned a gradient of shape {tuple(g.shape)} for "
                f"input {index} of shape {tuple(inp.shape)}") from None
    if g.dtype != inp.dtype:
        g = g.to(inp.dtype)
    return g


def backward_from(roots, root_grads, retain_graph=False, create_graph=False, inputs=None,
                  allow_unused=False):
    """Run reverse mode from ``roots`` seeded with ``root_grads``.

    With ``inputs=None`` leaf tensors accumulate into ``.grad``; otherwise the gradients of
    ``inputs`` are returned (as a list) and nothing is accumulated.
    """
    order, pending = _topological_order(roots)
    grads = {}
    for r, g in zip(roots, root_grads):
        grads[id(r)] = grads[id(r)] + g if id(r) in grads else g
    wanted = None if inputs is None else {id(t): None for t in inputs}
    # Arrays already stored in some .grad (or held by the caller as a seed), kept alive here so
    # their ids stay unique: a leaf whose gradient is one of them gets its own copy, so that no two
    # .grad attributes (or a .grad and a caller's array) ever share memory.
    handed = {id(g.array): g.array for g in root_grads}
    # A function with several outputs runs its backward once, at the last of its outputs in
    # ``order``: every consumer of every output precedes that point, every input follows it
    # (``pending``: id(fn) -> [outputs still to visit, gradient per output]).
    prev_mode = _state["grad_enabled"]
    _state["grad_enabled"] = create_graph
    try:
        for t in order:
            g = grads.pop(id(t), None)
            fn = t._ctx
            if fn is not None and fn.n_outputs > 1:
                entry = pending[id(fn)]
                entry[0] -= 1
                if g is not None:
                    entry[1][t._out_index] = g
            elif g is None:
                continue
            if g is not None:
                if wanted is not None and id(t) in wanted:
                    wanted[id(t)] = g
                if fn is None:  # a leaf
                    if wanted is None:
                        _accumulate_leaf(t, g, create_graph, handed)
                    continue
                if t._retains_grad and wanted is None:
                    _accumulate_leaf(t, g, create_graph, handed)
            if fn.n_outputs > 1:
                if entry[0] > 0 or all(x is None for x in entry[1]):
                    continue
                out_grads = entry[1]
            else:
                out_grads = (g,)
            if fn.freed:
                raise RuntimeError(
                    "trying to backward through the graph a second time (or to access saved "
                    "tensors after they were freed); pass retain_graph=True to backward() or "
                    "grad() the first time if you need to backward through it again")
            in_grads = fn.backward(*out_grads)
            if type(in_grads) is not tuple:
                in_grads = (in_grads,)
            if len(in_grads) != len(fn.inputs):
                raise RuntimeError(f"{type(fn).__name__}.backward returned {len(in_grads)} "
                                   f"gradients for {len(fn.inputs)} inputs")
            for i, (inp, gi) in enumerate(zip(fn.inputs, in_grads)):
                if gi is None or not inp.requires_grad:
                    continue
                if not isinstance(gi, Tensor) or gi.array.shape != inp.array.shape or \
                        gi.array.dtype != inp.array.dtype:
                    gi = _conform(gi, inp, fn, i)
                key = id(inp)
                acc = grads.get(key)
                grads[key] = gi if acc is None else acc + gi
            if not retain_graph:
                fn._release()
    finally:
        _state["grad_enabled"] = prev_mode
    if wanted is None:
        return None
    result = []
    for t in inputs:
        g = wanted[id(t)]
        if g is None and not allow_unused:
            raise RuntimeError(
                f"one of the inputs (shape {tuple(t.shape)}) was not used to compute the outputs "
                f"(or does not require grad); pass allow_unused=True to get None for it")
        result.append(g)
    return result


def _accumulate_leaf(t, g, create_graph, handed):
    data = g.array
    if id(data) in handed or data.base is not None:
        # already some .grad, the caller's seed, or a view of something: a copy of its own
        # (a differentiable clone when the graph of the gradient is being recorded)
        if create_graph:
            from .functional import clone
            g = clone(g)
        else:
            g = Tensor._wrap(data.copy())
    elif not create_graph:
        g = Tensor._wrap(data)
    handed[id(g.array)] = g.array
    if t.grad is None:
        t.grad = g
    else:
        t.grad = t.grad + g if create_graph else Tensor._wrap(t.grad.array + g.array)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False):
    """Gradients of ``outputs`` with respect to ``inputs`` (PyTorch's ``torch.autograd.grad``).

    Returns a tuple with one entry per input (``None`` for an unused input when
    ``allow_unused=True``). ``retain_graph`` defaults to ``create_graph``. Nothing is accumulated
    into ``.grad``.
    """
    single_in = isinstance(inputs, Tensor)
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    inputs = [inputs] if single_in else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs]
    else:
        grad_outputs = list(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"grad: got {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"grad: inputs[{i}] is {type(t).__name__}, not a Tensor")
        if not t.requires_grad:
            raise RuntimeError(f"grad: inputs[{i}] (shape {tuple(t.shape)}) does not require grad")
    seeds = [_seed_grad(o, g, f"grad_outputs[{i}]") for i, (o, g) in
             enumerate(zip(outputs, grad_outputs))]
    if retain_graph is None:
        retain_graph = create_graph
    result = backward_from(outputs, seeds, retain_graph=retain_graph, create_graph=create_graph,
                           inputs=inputs, allow_unused=allow_unused)
    if not create_graph:
        result = [None if g is None else g.detach() for g in result]
    return tuple(result)


def _seed_grad(output, g, name):
    """Check or make the gradient that seeds reverse mode at ``output``."""
    if not isinstance(output, Tensor):
        raise TypeError(f"backward: expected a Tensor, got {type(output).__name__}")
    if not output.requires_grad:
        raise RuntimeError(f"element of shape {tuple(output.shape)} does not require grad and "
                           f"has no grad_fn; nothing to differentiate")
    if g is None:
        if output.array.size != 1:
            raise RuntimeError(
                f"grad can be implicitly created only for scalar outputs; the output has shape "
                f"{tuple(output.shape)}, so pass {name} (e.g. ones_like(output))")
        xp = output._xp
        return Tensor._wrap(xp.ones(output.shape, dtype=output.dtype))
    if not isinstance(g, Tensor):
        from .tensor import tensor as _tensor
        g = _tensor(g, dtype=output.dtype, device=output.device)
    if g.shape != output.shape:
        raise ValueError(f"{name} has shape {tuple(g.shape)} but the output has shape "
                         f"{tuple(output.shape)}")
    if g.dtype != output.dtype:
        g = g.to(output.dtype)
    return g


from .tensor import Tensor  # noqa: E402  (Tensor and Function refer to each other)
