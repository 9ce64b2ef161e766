"""The ``Optimizer`` base class: parameter groups, per-parameter state, state dicts."""
from __future__ import annotations

import copy
from collections import defaultdict

from .. import backend
from ..autograd import enable_grad, no_grad
from ..nn.utils import zero_grads_
from ..tensor import Tensor

__all__ = ["Optimizer"]


class Optimizer:
    """Base class (PyTorch's ``torch.optim.Optimizer`` API).

    ``params`` is an iterable of Parameters, of ``(name, Parameter)`` pairs
    (``model.named_parameters()``) or of dicts ``{"params": [...], **overrides}`` (parameter
    groups); ``defaults`` fills what a group does not set. ``state[p]`` is the dict of
    per-parameter state (momentum buffers, moment estimates, step counts).

    Subclasses implement :meth:`_update`, called under ``no_grad`` once per parameter that has a
    gradient, on backing arrays (NumPy or CuPy): it changes the parameter's array in place, and
    :meth:`step` then bumps the parameter's version counter, so that a graph built before the
    step refuses to backpropagate through the stale value.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state = defaultdict(dict)
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError(f"{type(self).__name__}: params must be an iterable of Parameters or "
                            f"dicts, got a single Tensor (wrap it in a list)")
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if isinstance(groups[0], tuple):  # model.named_parameters(), as PyTorch accepts
            groups = [{"params": [p for _, p in groups],
                       "param_names": [n for n, _ in groups]}]
        elif not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group ``{"params": [...], **hyperparameters}``; missing hyperparameters take the
        optimizer's defaults."""
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"{name}: a parameter group must be a dict, got "
                            f"{type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"{name}: a parameter group needs a 'params' entry")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, (set, frozenset)):
            raise TypeError(f"{name}: parameters must be given in an ordered collection (a "
                            f"set's order changes between runs); use a list")
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"{name}: can't optimize a non-leaf Tensor (shape "
                                 f"{tuple(p.shape)})")
            if not backend.is_floating(p.dtype):
                raise TypeError(f"{name}: can only optimize floating point Tensors, got dtype "
                                f"{p.dtype}")
        ids = [id(p) for p in params]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{name}: a parameter appears more than once in one group (it "
                             f"would be updated twice per step)")
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if any(i in existing for i in ids):
            raise ValueError(f"{name}: some parameters appear in more than one parameter group")
        group["params"] = params
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group: dict) -> None:
        """Validate a group's hyperparameters (subclasses extend it)."""
        if not group["lr"] >= 0:
            raise ValueError(f"{type(self).__name__}: invalid learning rate {group['lr']} "
                             f"(must be >= 0)")

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (or set it to zeros with ``set_to_none=False``)."""
        zero_grads_((p for g in self.param_groups for p in g["params"]), set_to_none)

    def step(self, closure=None):
        """One update of every parameter that has a gradient. ``closure`` (optional)
        re-evaluates the model and returns the loss; it runs with grad mode on, first."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        state, update = self.state, self._update
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    g = p.grad
                    if g is None:
                        continue
                    if g.array.shape != p.array.shape:  # the fused kernels do not bounds-check
                        raise RuntimeError(f"{type(self).__name__}.step: a parameter of shape "
                                           f"{tuple(p.shape)} has a gradient of shape "
                                           f"{tuple(g.shape)}")
                    update(p.array, g.array, state[p], group)
                    p._vbox[0] += 1
        return loss

    def _update(self, param, grad, state: dict, group: dict) -> None:  # pragma: no cover
        """Update the array ``param`` in place from the array ``grad`` (subclasses)."""
        raise NotImplementedError

    # -- state dicts ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """PyTorch's format: ``{"state": {index: {...}}, "param_groups": [{..., "params":
        [indices]}]}``, parameters numbered in group order. Arrays are copied to NumPy and every
        other value deep-copied, so later steps leave the returned dict unchanged."""
        index, groups = {}, []
        for g in self.param_groups:
            ids = []
            for p in g["params"]:
                index[id(p)] = len(index)
                ids.append(index[id(p)])
            groups.append({**copy.deepcopy({k: v for k, v in g.items() if k != "params"}),
                           "params": ids})
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                if self.state.get(p):
                    state[index[id(p)]] = {k: _copy_value(v) for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters and per-parameter state saved by :meth:`state_dict` into an
        optimizer over parameters of the same shapes, in the same order. State values may be
        NumPy arrays or Tensors; arrays are copied and cast to their parameter's dtype and
        device."""
        name = type(self).__name__
        if not isinstance(state_dict, dict) or "state" not in state_dict or \
                "param_groups" not in state_dict:
            raise ValueError(f"{name}.load_state_dict: expected a dict with 'state' and "
                             f"'param_groups' entries (from Optimizer.state_dict())")
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: the state dict has {len(groups)} parameter "
                             f"groups, the optimizer has {len(self.param_groups)}")
        for i, (saved, own) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(own["params"]):
                raise ValueError(f"{name}.load_state_dict: parameter group {i} has "
                                 f"{len(saved['params'])} parameters in the state dict, "
                                 f"{len(own['params'])} in the optimizer")
        new_state = defaultdict(dict)
        for saved, own in zip(groups, self.param_groups):
            for idx, p in zip(saved["params"], own["params"]):
                if idx not in state_dict["state"]:
                    continue
                entry = {}
                for k, v in state_dict["state"][idx].items():
                    if isinstance(v, Tensor):
                        v = v.array
                    if hasattr(v, "shape") and tuple(v.shape) != ():
                        if tuple(v.shape) != tuple(p.shape):
                            raise ValueError(
                                f"{name}.load_state_dict: state {k!r} of parameter {idx} has "
                                f"shape {tuple(v.shape)}, but the parameter has shape "
                                f"{tuple(p.shape)}")
                        # a fresh array with the parameter's dtype, device and memory layout
                        # (the fused kernels update flat views of C-contiguous state in place)
                        buf = p._xp.empty_like(p.array)
                        buf[...] = backend.to_device(backend.to_numpy(v), p.device)
                        v = buf
                    else:
                        v = copy.deepcopy(v)
                    entry[k] = v
                new_state[p] = entry
        for saved, own in zip(groups, self.param_groups):
            for k, v in saved.items():
                if k != "params":
                    own[k] = copy.deepcopy(v)
        self.state = new_state

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(k for k in g if k != "params"):
                lines.append(f"    {k}: {g[k]}")
        return "\n".join(lines) + "\n)"


def _copy_value(v):
    """A copy of a state value that later in-place updates cannot reach."""
    if isinstance(v, Tensor):
        v = v.array
    if hasattr(v, "shape") and hasattr(v, "dtype"):
        return backend.to_numpy(v).copy()
    return copy.deepcopy(v)
