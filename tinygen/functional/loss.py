"""Losses, built from the differentiable ops (so their gradients -- and second derivatives --
come from the ops' own backward formulas). The exceptions are Functions of their own, whose
backward is again written with differentiable ops: ``binary_cross_entropy`` (its clamped logs
need PyTorch's finite gradient formula at p = 0 and p = 1) and the elementwise part of
``binary_cross_entropy_with_logits`` on NumPy arrays (a fused Numba kernel, one pass forward and
one backward instead of about seventeen).

Every loss takes ``reduction="mean" | "sum" | "none"``: ``"none"`` returns the per-element (or, for
``kl_normal_standard``, per-row) values, ``"mean"`` their average and ``"sum"`` their total.
"""
from __future__ import annotations

import math

import numpy as np

from .. import kernels
from ..autograd import Function
from ..tensor import Tensor
from ._util import check_tensor
from .elementwise import abs, clamp, exp, log, log1p, maximum, softplus
from .reduction import log_softmax

__all__ = ["mse_loss", "l1_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
           "cross_entropy", "nll_loss", "gaussian_nll", "kl_normal_standard"]

_LOG_2PI = math.log(2.0 * math.pi)


def _reduce(loss: Tensor, reduction: str, name: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _same_shape(name, input, target, target_name="target"):
    check_tensor(input, "input")
    if not isinstance(target, Tensor):
        target = Tensor._wrap(input._xp.asarray(target, dtype=input.dtype))
    if input.shape != target.shape:
        raise ValueError(f"{name}: input has shape {tuple(input.shape)} but {target_name} has "
                         f"shape {tuple(target.shape)}; they must match")
    return input, target


def mse_loss(input, target, reduction="mean") -> Tensor:
    """Squared error (input - target)^2."""
    input, target = _same_shape("mse_loss", input, target)
    d = input - target
    return _reduce(d * d, reduction, "mse_loss")


def l1_loss(input, target, reduction="mean") -> Tensor:
    """Absolute error |input - target| (gradient 0 where they are equal, as PyTorch)."""
    input, target = _same_shape("l1_loss", input, target)
    return _reduce(abs(input - target), reduction, "l1_loss")


class BinaryCrossEntropy(Function):
    """-[t log p + (1 - t) log(1 - p)] with each log clamped at -100 (PyTorch's forward).

    dL/dp = (p - t) / max(p (1 - p), 1e-12): PyTorch's formula, the exact derivative wherever
    p (1 - p) > 1e-12 and finite at p = 0 or 1 (the clamped logs alone would give 0 * inf = nan
    there, e.g. for a float32 sigmoid that saturates). dL/dt = log(1 - p) - log(p), clamped.
    """

    def forward(self, p, t):
        with np.errstate(divide="ignore"):
            log_p = np.maximum(np.log(p), -100.0)
            log_q = np.maximum(np.log1p(-p), -100.0)
        return (t - 1) * log_q - t * log_p

    def backward(self, g):
        p = self.saved_input(0)
        gp = gt = None
        with np.errstate(divide="ignore"):
            if self.needs_input_grad[0]:
                gp = g * (p - self.saved_input(1)) / maximum(p * (1.0 - p), 1e-12)
            if self.needs_input_grad[1]:
                gt = g * (clamp(log1p(-p), min=-100.0) - clamp(log(p), min=-100.0))
        return gp, gt


def binary_cross_entropy(input, target, weight=None, reduction="mean") -> Tensor:
    """-[t log p + (1 - t) log(1 - p)] for probabilities ``input`` = p in [0, 1].

    As in PyTorch, each log is clamped at -100 so that p = 0 or 1 gives a finite loss, and the
    gradient there is finite too: (p - t) / max(p (1 - p), 1e-12).
    """
    input, target = _same_shape("binary_cross_entropy", input, target)
    p = input.array
    if p.size and (float(p.min()) < 0.0 or float(p.max()) > 1.0):
        raise ValueError(f"binary_cross_entropy: input must hold probabilities in [0, 1], got "
                         f"values in [{float(p.min())}, {float(p.max())}]; use "
                         f"binary_cross_entropy_with_logits for logits")
    loss = BinaryCrossEntropy.apply(input, target)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "binary_cross_entropy")


class BCEWithLogits(Function):
    """loss = t softplus(-x) + (1 - t) softplus(x) elementwise, fused (NumPy arrays of one
    float dtype); d/dx = sigmoid(x) - t, d/dt = softplus(-x) - softplus(x) = -x."""

    def forward(self, x, t):
        return kernels.for_arrays("losses", x, t).bce_with_logits_forward(x, t)

    def backward(self, g):
        x, t = self.saved_input(0), self.saved_input(1)
        gx = gt = None
        if self.needs_input_grad[0]:
            gx = BCEWithLogitsGrad.apply(x, t, g)
        if self.needs_input_grad[1]:
            gt = -x * g
        return gx, gt


class BCEWithLogitsGrad(Function):
    """g (sigmoid(x) - t), fused; its own backward (for second derivatives) is composed:
    d/dx = g sigmoid(x) (1 - sigmoid(x)), d/dt = -g, d/dg = sigmoid(x) - t."""

    def forward(self, x, t, g):
        return kernels.for_arrays("losses", x, t, g).bce_with_logits_grad(x, t, g)

    def backward(self, h):
        from .elementwise import sigmoid
        x, t, g = self.saved_input(0), self.saved_input(1), self.saved_input(2)
        s = sigmoid(x)
        return h * g * s * (1.0 - s), -(h * g), h * (s - t)


def _fusable(*tensors):
    """The fused kernels take one floating dtype (float32 or float64) for all their arrays."""
    dtype = tensors[0].dtype
    return dtype.kind == "f" and dtype.itemsize in (4, 8) and all(t.dtype == dtype
                                                                  for t in tensors)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",
                                     pos_weight=None) -> Tensor:
    """Binary cross-entropy on logits x, stable and accurate for any x:

        loss = pos_weight t softplus(-x) + (1 - t) softplus(x)
             = -[pos_weight t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))]

    (the same function as (1 - t) x + (1 + (pos_weight - 1) t) softplus(-x), written so that
    nothing cancels: the loss and its gradient (1 - t) sigmoid(x) - pos_weight t sigmoid(-x) keep
    their relative accuracy even where they are tiny, e.g. x = -50 with t = 0).
    """
    input, target = _same_shape("binary_cross_entropy_with_logits", input, target)
    if pos_weight is None and _fusable(input, target):
        loss = BCEWithLogits.apply(input, target)
        if weight is not None:
            loss = loss * weight
        return _reduce(loss, reduction, "binary_cross_entropy_with_logits")
    neg_log_p = softplus(-input, threshold=math.inf)  # log(1 + e^-x) = -log sigmoid(x)
    neg_log_q = softplus(input, threshold=math.inf)  # log(1 + e^x) = -log(1 - sigmoid(x))
    pos = target if pos_weight is None else pos_weight * target
    loss = pos * neg_log_p + (1.0 - target) * neg_log_q
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "binary_cross_entropy_with_logits")


def _class_last(x: Tensor) -> Tensor:
    """(N, C, d1, ...) -> (N * d1 * ..., C); (N, C) unchanged."""
    if x.ndim == 2:
        return x
    perm = (0,) + tuple(range(2, x.ndim)) + (1,)
    return x.permute(perm).reshape(-1, x.shape[1])


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean") -> Tensor:
    """Negative log-likelihood of integer class targets given log-probabilities.

    ``input`` is (N, C) or (N, C, d1, ...); ``target`` holds class indices of shape (N,) or
    (N, d1, ...). With ``weight`` (C,), "mean" divides by the total weight of the counted targets
    (PyTorch's convention); targets equal to ``ignore_index`` count for nothing.
    """
    input = check_tensor(input, "input")
    if not isinstance(target, Tensor):
        target = Tensor._wrap(input._xp.asarray(target))
    if input.ndim < 1:
        raise ValueError("nll_loss: input must have a class axis")
    out_shape = tuple(target.shape)  # the shape of the unreduced loss
    if input.ndim == 1:  # a single sample (C,) with a 0-d target
        input, target = input.reshape(1, -1), target.reshape(1)
    if target.dtype.kind not in "iu":
        raise TypeError(f"nll_loss: target must hold integer class indices, got dtype "
                        f"{target.dtype}")
    expected = (input.shape[0],) + tuple(input.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(f"nll_loss: target has shape {tuple(target.shape)}, expected {expected} "
                         f"for input of shape {tuple(input.shape)}")
    c = input.shape[1]
    t = target.array.reshape(-1)
    valid = t != ignore_index
    tv = t[valid]
    if tv.size and (int(tv.min()) < 0 or int(tv.max()) >= c):
        raise ValueError(f"nll_loss: target holds class indices outside [0, {c - 1}] "
                         f"(min {int(tv.min())}, max {int(tv.max())})")
    xp = input._xp
    safe_t = xp.where(valid, t, 0)
    logp = _class_last(input)  # (M, C)
    picked = logp[xp.arange(logp.shape[0]), safe_t]  # (M,)
    w = valid.astype(input.dtype)
    if weight is not None:
        w = (w * check_tensor(weight, "weight").array[safe_t]).astype(input.dtype, copy=False)
    w_t = Tensor._wrap(w)
    loss = -picked * w_t
    if reduction == "none":
        return loss.reshape(out_shape)
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / float(w.sum())
    raise ValueError(f"nll_loss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0) -> Tensor:
    """Cross-entropy between logits ``input`` (N, C, ...) and integer class targets, or class
    probabilities of the same shape as ``input``: nll_loss(log_softmax(input, 1), target).

    ``label_smoothing`` = e (Szegedy et al. 2016, as PyTorch) mixes the target with the uniform
    distribution over the C classes: (1 - e) * loss + e * mean over classes of -w_c log p_c
    (class-index targets; for "mean", normalized like the nll term), or the probability target
    t replaced by (1 - e) t + e / C.
    """
    input = check_tensor(input, "input")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got "
                         f"{label_smoothing}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got "
                         f"{reduction!r}")
    if input.ndim < 1:
        raise ValueError("cross_entropy: input must have a class axis")
    class_dim = 1 if input.ndim >= 2 else 0
    logp = log_softmax(input, class_dim)
    tgt = target.array if isinstance(target, Tensor) else np.asarray(target)
    if tgt.dtype.kind == "f":  # probability targets
        if tuple(tgt.shape) != tuple(input.shape):
            raise ValueError(f"cross_entropy: probability target has shape {tuple(tgt.shape)}, "
                             f"expected the input's shape {tuple(input.shape)}")
        target = target if isinstance(target, Tensor) else Tensor._wrap(tgt)
        if label_smoothing:
            target = target * (1.0 - label_smoothing) + label_smoothing / input.shape[class_dim]
        terms = target * logp
        if weight is not None:
            wshape = (-1,) + (1,) * (input.ndim - class_dim - 1)
            terms = terms * check_tensor(weight, "weight").reshape(wshape)
        loss = -terms.sum(class_dim)
        return _reduce(loss, reduction, "cross_entropy")
    nll = nll_loss(logp, target, weight=weight, ignore_index=ignore_index, reduction=reduction)
    if not label_smoothing:
        return nll
    # the uniform part: -sum_c w_c log p_c per sample, 0 at ignored targets
    wshape = (-1,) + (1,) * (input.ndim - class_dim - 1)
    w = None if weight is None else check_tensor(weight, "weight").reshape(wshape).to(logp.dtype)
    smooth = -(logp if w is None else logp * w).sum(class_dim)
    keep = Tensor._wrap(tgt != ignore_index)
    smooth = smooth * keep.to(smooth.dtype)
    if reduction == "mean":
        if weight is None:
            denom = keep.sum()
        else:
            wv = check_tensor(weight, "weight").array
            denom = Tensor._wrap(wv[tgt[tgt != ignore_index]].sum().astype(logp.dtype))
        smooth = smooth.sum() / denom
    elif reduction == "sum":
        smooth = smooth.sum()
    return nll * (1.0 - label_smoothing) + smooth * (label_smoothing / input.shape[class_dim])


def gaussian_nll(input, target, logvar, reduction="mean") -> Tensor:
    """Negative log-density of ``target`` under N(input, exp(logvar)), per element:

        0.5 * (log(2 pi) + logvar + (target - input)^2 / exp(logvar))

    ``input`` is the predicted mean and ``logvar`` a learned per-element log-variance (the
    lecture's ``log_g_x_given_z`` is minus this summed over the last axis; note that the lecture's
    code adds the -0.5 log(2 pi) constant once per sample instead of once per dimension).
    """
    input, target = _same_shape("gaussian_nll", input, target)
    check_tensor(logvar, "logvar")
    if logvar.shape != input.shape:
        raise ValueError(f"gaussian_nll: logvar has shape {tuple(logvar.shape)} but input has "
                         f"{tuple(input.shape)}; they must match")
    d = target - input
    loss = 0.5 * (logvar + d * d * exp(-logvar) + _LOG_2PI)
    return _reduce(loss, reduction, "gaussian_nll")


def kl_normal_standard(mu, logvar, reduction="mean") -> Tensor:
    """KL( N(mu, exp(logvar)) || N(0, I) ) summed over the last axis:

        -0.5 * sum(1 + logvar - mu^2 - exp(logvar))

    ``reduction`` then applies over the remaining (batch) axes.
    """
    mu, logvar = check_tensor(mu, "mu"), check_tensor(logvar, "logvar")
    if mu.shape != logvar.shape:
        raise ValueError(f"kl_normal_standard: mu has shape {tuple(mu.shape)} but logvar has "
                         f"{tuple(logvar.shape)}; they must match")
    kl = -0.5 * (1.0 + logvar - mu * mu - exp(logvar)).sum(-1)
    return _reduce(kl, reduction, "kl_normal_standard")

