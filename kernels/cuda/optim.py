"""CUDA optimizer updates (``optim.cu``): the API of :mod:`tinygen.kernels.cpu.optim` on device
arrays, in place on the parameter and its state buffers.

The kernels take flat contiguous arrays. A parameter that is not contiguous (rare: parameters
are allocated contiguous) is updated through a contiguous copy that is written back.
"""
from __future__ import annotations

import math

import numpy as np

from . import _grid, _runtime
from ._grid import i32 as _i32

__all__ = ["adam_step", "sgd_step"]

_SOURCE = "optim.cu"


def _flat(a, dtype):
    return _runtime.cupy().ascontiguousarray(a, dtype=dtype).reshape(-1)


def _in_place(arrays, update):
    """Run ``update`` on flat contiguous views of ``arrays`` (copies written back if needed)."""
    flats = [None if a is None else _flat(a, a.dtype) for a in arrays]
    update(*flats)
    for a, f in zip(arrays, flats):
        if a is not None and not a.flags.c_contiguous:
            a[...] = f.reshape(a.shape)


def adam_step(p, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr, beta1, beta2, eps,
              weight_decay, decoupled, amsgrad, maximize):
    """One Adam (``decoupled=False``) or AdamW step, in place on ``p`` and its state; the same
    arguments as :func:`tinygen.kernels.cpu.optim.adam_step`."""
    dtype = _grid.same_dtype("adam_step", p, exp_avg, exp_avg_sq)
    g = _flat(grad, dtype)
    n = p.size
    step_size = lr / (1.0 - beta1 ** step)
    inv_bc2_sqrt = 1.0 / math.sqrt(1.0 - beta2 ** step)

    if not (weight_decay or amsgrad or maximize):
        dt = np.dtype(dtype).type

        def plain(p_, m_, v_):
            _grid.launch(_SOURCE, "adam_update_plain", dtype, n,
                         (p_, g, m_, v_) + _i32(n) +
                         (dt(step_size), dt(beta1), dt(beta2), dt(1.0 - beta1), dt(1.0 - beta2),
                          dt(inv_bc2_sqrt), dt(eps)))
        _in_place([p, exp_avg, exp_avg_sq], plain)
        return

    def general(p_, m_, v_, vmax_):
        f = np.float64
        _grid.launch(_SOURCE, "adam_update", dtype, n,
                     (p_, g, m_, v_, vmax_ if amsgrad else v_) + _i32(n) +
                     (f(lr), f(beta1), f(beta2), f(eps), f(weight_decay)) +
                     _i32(bool(decoupled), bool(amsgrad), bool(maximize)) +
                     (f(step_size), f(inv_bc2_sqrt)))
    _in_place([p, exp_avg, exp_avg_sq, max_exp_avg_sq if amsgrad else None], general)


def sgd_step(p, grad, momentum_buffer, first, lr, momentum, dampening, weight_decay, nesterov,
             maximize):
    """One SGD step, in place on ``p`` and ``momentum_buffer``; the same arguments as
    :func:`tinygen.kernels.cpu.optim.sgd_step`."""
    dtype = _grid.same_dtype("sgd_step", p)
    g = _flat(grad, dtype)
    n = p.size
    f = np.float64

    def update(p_, buf_):
        _grid.launch(_SOURCE, "sgd_update", dtype, n,
                     (p_, g, buf_ if buf_ is not None else p_) + _i32(n) +
                     (f(lr), f(momentum), f(dampening), f(weight_decay)) +
                     _i32(bool(nesterov), bool(maximize), bool(first)))
    _in_place([p, momentum_buffer if momentum else None], update)
