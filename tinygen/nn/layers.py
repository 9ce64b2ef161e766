"""Layers and containers: Linear, Sequential, ModuleList/Dict, activations, Flatten/Unflatten,
Dropout, BatchNorm1d/2d and the loss modules. Forward passes call :mod:`tinygen.functional`."""
from __future__ import annotations

import math
import numbers
from collections import OrderedDict

from .. import functional as F
from ..tensor import Tensor, as_tensor, empty, ones, tensor, zeros
from . import init
from .module import Module, Parameter

__all__ = ["Identity", "Linear", "Sequential", "ModuleList", "ModuleDict", "ReLU", "LeakyReLU",
           "Sigmoid", "Tanh", "Softplus", "ELU", "Softmax", "LogSoftmax", "Flatten", "Unflatten",
           "Dropout", "BatchNorm1d", "BatchNorm2d", "MSELoss", "L1Loss", "BCELoss",
           "BCEWithLogitsLoss", "CrossEntropyLoss", "NLLLoss", "GaussianNLLLoss"]


def _check_size(layer, name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{layer}: {name} must be a non-negative int, got {value!r}")


class Identity(Module):
    """Returns its input (arguments are accepted and ignored, as in PyTorch)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """y = x W^T + b with W: (out_features, in_features) and b: (out_features,).

    PyTorch's default initialization: ``kaiming_uniform_(W, a=sqrt(5))``, i.e.
    U(-1/sqrt(in_features), 1/sqrt(in_features)), and b from the same interval. Parameters are
    float32 (the default dtype) unless ``dtype`` says otherwise.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None,
                 dtype=None):
        super().__init__()
        _check_size("Linear", "in_features", in_features)
        _check_size("Linear", "out_features", out_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(empty(out_features, in_features, dtype=dtype, device=device))
        self.register_parameter("bias", Parameter(empty(out_features, dtype=dtype, device=device))
                                if bias else None)
        self.reset_parameters()

    def reset_parameters(self, generator=None):
        """PyTorch's default initialization (``generator``: a tinygen.Generator or None)."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=generator)
        if self.bias is not None:
            fan_in = self.in_features
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self.bias, -bound, bound, generator=generator)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


# -- containers ---------------------------------------------------------------------------------
class _ListLike(Module):
    """Shared code of Sequential and ModuleList: children named "0", "1", ... in order."""

    def _index(self, index: int) -> int:
        n = len(self._modules)
        if not isinstance(index, numbers.Integral) or isinstance(index, bool):
            raise TypeError(f"{type(self).__name__} indices must be ints or slices, got "
                            f"{type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"index {index} is out of range for {type(self).__name__} of "
                             f"length {n}")
        return int(index) % n

    def _renumber(self, modules):
        self._modules.clear()
        for i, m in enumerate(modules):
            self.add_module(str(i), m)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ModuleList(list(self._modules.values())[index])
        return list(self._modules.values())[self._index(index)]

    def __setitem__(self, index, module):
        key = list(self._modules)[self._index(index)]
        self.add_module(key, module)

    def __delitem__(self, index):
        mods = list(self._modules.values())
        if isinstance(index, slice):
            del mods[index]
        else:
            del mods[self._index(index)]
        self._renumber(mods)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        """Add ``module`` at the end."""
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules):
        """Append every module of an iterable."""
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module) -> None:
        """Insert ``module`` before position ``index``."""
        mods = list(self._modules.values())
        mods.insert(index, module)
        self._renumber(mods)


class Sequential(_ListLike):
    """Modules applied in order: ``Sequential(m1, m2, ...)`` or ``Sequential(OrderedDict)``
    (then the children keep those names). Supports indexing, slicing, ``len``, iteration and
    ``append``."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(OrderedDict(list(self._modules.items())[index]))
        return super().__getitem__(index)

    def forward(self, input):
        for m in self._modules.values():
            input = m(input)
        return input


class ModuleList(_ListLike):
    """A list of modules, registered so that their parameters are found (no ``forward``)."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)


class ModuleDict(Module):
    """A dict of modules (insertion ordered), registered so that their parameters are found."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __delitem__(self, key):
        del self._modules[key]

    def __contains__(self, key):
        return key in self._modules

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        """The names."""
        return self._modules.keys()

    def values(self):
        """The modules."""
        return self._modules.values()

    def items(self):
        """(name, module) pairs."""
        return self._modules.items()

    def pop(self, key):
        """Remove and return the module named ``key``."""
        return self._modules.pop(key)

    def update(self, modules) -> None:
        """Add modules from a mapping or an iterable of (name, module) pairs."""
        items = modules.items() if hasattr(modules, "items") else modules
        for key, m in items:
            self.add_module(key, m)


# -- activations ------------------------------------------------------------------------------
class ReLU(Module):
    """max(x, 0). ``inplace`` is accepted for PyTorch compatibility and ignored."""

    def __init__(self, inplace: bool = False):
        super().__init__()

    def forward(self, input):
        return F.relu(input)


class LeakyReLU(Module):
    """x for x >= 0, ``negative_slope * x`` otherwise."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, input):
        return F.leaky_relu(input, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Module):
    """1 / (1 + exp(-x))."""

    def forward(self, input):
        return F.sigmoid(input)


class Tanh(Module):
    """tanh(x)."""

    def forward(self, input):
        return F.tanh(input)


class Softplus(Module):
    """log(1 + exp(beta x)) / beta; x itself where beta x > threshold."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, input):
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class ELU(Module):
    """x for x > 0, alpha (exp(x) - 1) otherwise."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha = alpha

    def forward(self, input):
        return F.elu(input, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}"


class Softmax(Module):
    """exp(x) / sum(exp(x)) along ``dim`` (required: PyTorch's implicit choice is deprecated)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return F.softmax(input, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """log(softmax(x)) along ``dim``, computed stably."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return F.log_softmax(input, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


# -- reshaping, regularization ------------------------------------------------------------------
class Flatten(Module):
    """Merge axes ``start_dim..end_dim`` (by default all but the batch axis)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):
        return F.flatten(input, self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Split axis ``dim`` into ``unflattened_size`` (one entry may be -1)."""

    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, input):
        return F.unflatten(input, self.dim, self.unflattened_size)

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class Dropout(Module):
    """In training, zero each element with probability ``p`` and scale the rest by 1/(1-p);
    the identity in evaluation. ``generator`` (a tinygen.Generator) makes the masks
    reproducible independently of the default generator."""

    def __init__(self, p: float = 0.5, inplace: bool = False, generator=None):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be a probability in [0, 1], got {p!r}")
        self.p, self.generator = float(p), generator

    def forward(self, input):
        return F.dropout(input, self.p, self.training, generator=self.generator)

    def extra_repr(self):
        return f"p={self.p}, inplace=False"


class Dropout2d(Dropout):
    """Channel dropout (PyTorch's ``nn.Dropout2d``): in training, zero each whole channel of an
    (N, C, H, W) input with probability ``p`` and scale the rest by 1/(1-p).

    As PyTorch does today, axis 1 is the channel axis whatever the rank: a 3-D input is read as
    (N, C, L) and a 2-D input (N, C) gets plain dropout (PyTorch warns about both)."""

    def forward(self, input):
        if input.ndim < 2:
            raise ValueError(f"Dropout2d: input must have a batch and a channel axis, got shape "
                             f"{tuple(input.shape)}")
        if not self.training or self.p == 0.0:
            return input
        from ..tensor import ones
        mask_shape = input.shape[:2] + (1,) * (input.ndim - 2)           # one draw per channel
        mask = F.dropout(ones(mask_shape, dtype=input.dtype, device=input.device), self.p, True,
                         generator=self.generator)
        return input * mask


class _BatchNorm(Module):
    """Shared code of BatchNorm1d/2d; subclasses set the accepted input ranks."""

    _ranks = (2, 3, 4)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum=0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None, *, bias: bool = True):
        super().__init__()
        name = type(self).__name__
        _check_size(name, "num_features", num_features)
        if eps <= 0:
            raise ValueError(f"{name}: eps must be positive, got {eps}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{name}: momentum must be in [0, 1] or None, got {momentum}")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.register_parameter("weight", Parameter(ones(num_features, dtype=dtype,
                                                         device=device)) if affine else None)
        self.register_parameter("bias", Parameter(zeros(num_features, dtype=dtype, device=device))
                                if affine and bias else None)
        for name, make in (("running_mean", zeros), ("running_var", ones)):
            self.register_buffer(name, make(num_features, dtype=dtype, device=device)
                                 if track_running_stats else None)
        self.register_buffer("num_batches_tracked",
                             tensor(0, device=device) if track_running_stats else None)

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batches tracked."""
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1.0)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Reset the running statistics and the affine parameters (weight 1, bias 0)."""
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def forward(self, input):
        name = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: input must be a Tensor, got {type(input).__name__}")
        if input.ndim not in self._ranks:
            want = " or ".join(f"{r}-D" for r in self._ranks)
            raise ValueError(f"{name}: expected {want} input, got shape {tuple(input.shape)}")
        if input.shape[1] != self.num_features:
            raise ValueError(f"{name}({self.num_features}): input of shape "
                             f"{tuple(input.shape)} has {input.shape[1]} channels (axis 1)")
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked.item())
        # batch statistics in training (and always without running statistics); the running
        # statistics are updated in training and used in evaluation
        return F.batch_norm(input, self.running_mean, self.running_var, self.weight, self.bias,
                            training=self.training or self.running_mean is None,
                            momentum=momentum, eps=self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalization over (N, C) or (N, C, L): per channel C,
    y = (x - mean) / sqrt(var + eps) * weight + bias.

    Training uses the batch's mean and biased variance and updates the running statistics
    (running = (1 - momentum) running + momentum batch, with the unbiased variance; momentum=None
    gives the cumulative average over ``num_batches_tracked`` batches); evaluation uses the
    running statistics.
    """

    _ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalization over (N, C, H, W), per channel C (see :class:`BatchNorm1d`)."""

    _ranks = (4,)


# -- losses -------------------------------------------------------------------------------------
class _Loss(Module):
    """Shared code of the loss modules: ``reduction`` is "mean", "sum" or "none"."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"{type(self).__name__}: reduction must be 'mean', 'sum' or 'none', "
                             f"got {reduction!r}")
        self.reduction = reduction

    def _register_optional(self, name, value):
        """A class-weight tensor is a buffer (it follows ``to()`` and is in the state dict, as
        in PyTorch)."""
        self.register_buffer(name, None if value is None else as_tensor(value))

    def extra_repr(self):
        return f"reduction={self.reduction!r}" if self.reduction != "mean" else ""


class MSELoss(_Loss):
    """Mean (or sum) of (input - target)^2."""

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """Mean (or sum) of |input - target|."""

    def forward(self, input, target):
        return F.l1_loss(input, target, reduction=self.reduction)


class BCELoss(_Loss):
    """Binary cross-entropy of probabilities ``input`` against ``target`` (logs clamped at
    -100 as in PyTorch); ``weight`` rescales each element's loss."""

    def __init__(self, weight=None, reduction: str = "mean"):
        super().__init__(reduction)
        self._register_optional("weight", weight)

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits (sigmoid folded in, stable for any logit);
    ``pos_weight`` weighs the positive term."""

    def __init__(self, weight=None, reduction: str = "mean", pos_weight=None):
        super().__init__(reduction)
        self._register_optional("weight", weight)
        self._register_optional("pos_weight", pos_weight)

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.weight, self.reduction,
                                                  self.pos_weight)


class CrossEntropyLoss(_Loss):
    """Cross-entropy of logits (N, C, ...) against class indices or class probabilities."""

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0):
        super().__init__(reduction)
        self._register_optional("weight", weight)
        self.ignore_index = ignore_index
        self.label_smoothing = float(label_smoothing)

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.weight, self.ignore_index, self.reduction,
                               self.label_smoothing)


class NLLLoss(_Loss):
    """Negative log-likelihood of class indices given log-probabilities (N, C, ...)."""

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__(reduction)
        self._register_optional("weight", weight)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return F.nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class GaussianNLLLoss(_Loss):
    """PyTorch's ``GaussianNLLLoss``: ``forward(input, target, var)`` with the *variance*
    ``var`` (same shape as ``input``, or one size-1 / missing last axis for a shared variance,
    or a float):

        loss = 0.5 * (log(max(var, eps)) + (input - target)^2 / max(var, eps))
               (+ 0.5 * log(2 pi) when ``full``)

    As in PyTorch the clamp at ``eps`` does not block the gradient. For a learned
    log-variance (the lecture's parametrization) use :func:`tinygen.functional.gaussian_nll`.
    """

    def __init__(self, *, full: bool = False, eps: float = 1e-6, reduction: str = "mean"):
        super().__init__(reduction)
        self.full, self.eps = full, eps

    def forward(self, input, target, var):
        if not isinstance(var, Tensor):
            if isinstance(var, numbers.Real) and var < 0:
                raise ValueError("GaussianNLLLoss: var has negative entry/entries")
            var = Tensor._wrap(input._xp.full(input.shape, float(var), dtype=input.dtype))
        elif bool((var.array < 0).any()):
            raise ValueError("GaussianNLLLoss: var has negative entry/entries")
        if var.shape != input.shape:
            if var.shape == input.shape[:-1]:
                var = var.unsqueeze(-1)
            elif var.ndim != input.ndim or sum(
                    v for i, v in zip(input.shape, var.shape) if i != v) != 1:
                raise ValueError(f"GaussianNLLLoss: var has shape {tuple(var.shape)}, which does "
                                 f"not fit input of shape {tuple(input.shape)} (same shape, or "
                                 f"one axis of size 1, or the last axis missing)")
        xp = var._xp
        # max(var, eps) in value, identity in gradient (PyTorch clamps a clone under no_grad)
        var = var + Tensor._wrap(xp.maximum(var.array, self.eps) - var.array)
        d = input - target
        loss = 0.5 * (F.log(var) + d * d / var)
        if self.full:
            loss = loss + 0.5 * math.log(2 * math.pi)
        if self.reduction == "mean":
            return loss.mean()
        return loss.sum() if self.reduction == "sum" else loss

    def extra_repr(self):  # the settings that differ from the defaults
        parts = (["full=True"] if self.full else []) + \
            ([f"eps={self.eps}"] if self.eps != 1e-6 else []) + \
            ([f"reduction={self.reduction!r}"] if self.reduction != "mean" else [])
        return ", ".join(parts)
