"""The ``Optimizer`` base class: parameter groups, per-parameter state, state dicts."""
from __future__ import annotations

import copy

from .. import backend
from ..autograd import no_grad
from ..tensor import Tensor

__all__ = ["Optimizer"]


class Optimizer:
    """Base class (PyTorch's ``torch.optim.Optimizer`` API).

    ``params`` is an iterable of Parameters or of dicts ``{"params": [...], **overrides}``;
    ``defaults`` fills what a group does not set. Subclasses implement :meth:`_update`, called
    under ``no_grad`` once per parameter that has a gradient, on backing arrays: they change the
    parameter's array in place, and the base class bumps its version counter so that a graph
    built before the step refuses to backpropagate through the stale value.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state = {}  # id(param) -> dict
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError("params must be an iterable of Parameters or dicts, got a Tensor")
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group: dict) -> None:
        group = dict(group)
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__}: can only optimize Tensors, got "
                                f"{type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"{type(self).__name__}: can't optimize a non-leaf Tensor")
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in existing for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        group["params"] = params
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group: dict) -> None:
        """Validate hyperparameters (subclasses extend)."""
        if group["lr"] < 0:
            raise ValueError(f"{type(self).__name__}: invalid learning rate {group['lr']}")

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad = Tensor._wrap(p._xp.zeros_like(p.grad.data))

    @no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            from ..autograd import enable_grad
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.setdefault(id(p), {})
                self._update(p.data, p.grad.data, state, group)
                p._vbox[0] += 1
        return loss

    def _update(self, param, grad, state, group):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- state dicts ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}``, with
        parameters numbered in group order; arrays are copied (on the CPU)."""
        index, groups = {}, []
        for g in self.param_groups:
            ids = []
            for p in g["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": ids})
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                if id(p) in self.state:
                    state[index[id(p)]] = {k: (backend.to_numpy(v).copy()
                                               if hasattr(v, "shape") else copy.deepcopy(v))
                                           for k, v in self.state[id(p)].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters and per-parameter state saved by :meth:`state_dict` into an
        optimizer built over parameters of the same shapes, in the same order."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(groups)} parameter groups, the "
                             f"optimizer has {len(self.param_groups)}")
        for i, (saved, own) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(own["params"]):
                raise ValueError(f"parameter group {i}: loaded state dict has "
                                 f"{len(saved['params'])} parameters, the optimizer has "
                                 f"{len(own['params'])}")
        new_state = {}
        for saved, own in zip(groups, self.param_groups):
            for idx, p in zip(saved["params"], own["params"]):
                if idx not in state_dict["state"]:
                    continue
                entry = {}
                for k, v in state_dict["state"][idx].items():
                    if hasattr(v, "shape") and tuple(v.shape) not in ((), tuple(p.shape)):
                        raise ValueError(f"state {k!r} of parameter {idx} has shape "
                                         f"{tuple(v.shape)}, the parameter {tuple(p.shape)}")
                    if isinstance(v, Tensor):
                        v = v.data
                    entry[k] = (backend.to_device(backend.to_numpy(v), p.device)
                                .astype(p.dtype, copy=True) if hasattr(v, "shape") and
                                v.shape != () else copy.deepcopy(v))
                new_state[id(p)] = entry
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
