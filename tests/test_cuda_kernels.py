"""The CUDA kernel families losses, optim, coupling, reduce and matmul against their CPU versions.

Each test runs in float32 and float64 and in three thread orders of the emulator (forward,
reverse, seeded random; on a real GPU the hardware's order, the parameter only repeats the test):
on the stand-in cupy of tests/cuda_emu in the plain suite (the kernels' .cu files compiled by g++
and run on the CPU emulator), on real CuPy when a GPU is present. See tests/_cuda_device.py.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from _cuda_device import ORDERS, device_cupy, thread_order
from tinygen.kernels import for_arrays
from tinygen.kernels.cpu import coupling as cpu_coupling
from tinygen.kernels.cpu import losses as cpu_losses
from tinygen.kernels.cpu import matmul as cpu_matmul
from tinygen.kernels.cpu import optim as cpu_optim
from tinygen.kernels.cpu import reduce as cpu_reduce

DTYPES = (np.float32, np.float64)
# float32 kernels vs the CPU's: different but equally valid roundings (FMA contraction, summation
# order); float64 to near machine precision.
RTOL = {np.float32: 2e-5, np.float64: 1e-12}


# ThreadSanitizer runs (tests/test_cuda_emu.py) allow about 8,000 CUDA threads in one launch.
TSAN_MAX_THREADS = 8000 if os.environ.get("TINYGEN_EMU_SANITIZE") == "thread" else None


def skip_if_too_many_threads_for_tsan(threads):
    if TSAN_MAX_THREADS and threads > TSAN_MAX_THREADS:
        pytest.skip(f"{threads} CUDA threads in one launch: more than ThreadSanitizer allows "
                    "(covered by the plain emulator runs)")


@pytest.fixture(params=ORDERS)
def cp(request):
    with device_cupy() as cupy, thread_order(request.param, seed=7):
        yield cupy


def close(actual, expected, dtype, what, scale=None):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    scale = np.max(np.abs(expected), initial=1.0) if scale is None else scale
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * scale,
                               err_msg=what)


def test_the_seam_picks_the_cuda_families(cp):
    x = cp.zeros((2, 3), np.float32)
    for family in ("losses", "optim", "coupling", "reduce", "matmul"):
        assert for_arrays(family, x).__name__ == f"tinygen.kernels.cuda.{family}"
        assert for_arrays(family, np.zeros(2)).__name__ == f"tinygen.kernels.cpu.{family}"


# -- losses ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_with_logits(cp, dtype):
    from tinygen.kernels.cuda import losses
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3, 5, 7)) * 12).astype(dtype)      # |x| up to ~40: no cancellation
    x.reshape(-1)[:4] = [0.0, 50.0, -50.0, 1e-3]
    t = rng.random(x.shape).astype(dtype)
    t.reshape(-1)[:4] = [0.0, 1.0, 0.0, 1.0]
    g = rng.standard_normal(x.shape).astype(dtype)
    close(losses.bce_with_logits_forward(cp.asarray(x), cp.asarray(t)).get(),
          cpu_losses.bce_with_logits_forward(x, t), dtype, "forward")
    close(losses.bce_with_logits_grad(cp.asarray(x), cp.asarray(t), cp.asarray(g)).get(),
          cpu_losses.bce_with_logits_grad(x, t, g), dtype, "grad")
    g0 = dtype(0.25)    # a scalar incoming gradient broadcasts
    close(losses.bce_with_logits_grad(cp.asarray(x), cp.asarray(t), cp.asarray(g0)).get(),
          cpu_losses.bce_with_logits_grad(x, t, g0), dtype, "grad, broadcast g")


def test_bce_refuses_mismatched_inputs(cp):
    from tinygen.kernels.cuda import losses
    with pytest.raises(ValueError, match="same shape"):
        losses.bce_with_logits_forward(cp.zeros((2, 3), np.float32), cp.zeros((3, 2), np.float32))
    with pytest.raises(TypeError, match="same dtype"):
        losses.bce_with_logits_forward(cp.zeros(3, np.float32), cp.zeros(3, np.float64))


# -- optim ----------------------------------------------------------------------------------------
ADAM_CASES = [
    dict(weight_decay=0.0, decoupled=False, amsgrad=False, maximize=False),    # the plain kernel
    dict(weight_decay=0.1, decoupled=True, amsgrad=False, maximize=False),     # AdamW
    dict(weight_decay=0.05, decoupled=False, amsgrad=True, maximize=True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ADAM_CASES, ids=["plain", "adamw", "l2-amsgrad-maximize"])
def test_adam_step(cp, dtype, case):
    from tinygen.kernels.cuda import optim
    rng = np.random.default_rng(2)
    shape = (5, 67)
    host = [rng.standard_normal(shape).astype(dtype)] + [np.zeros(shape, dtype) for _ in range(3)]
    dev = [cp.asarray(a) for a in host]
    for step in (1, 2, 3):
        grad = rng.standard_normal(shape).astype(dtype)
        kw = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, **case)
        cpu_optim.adam_step(*host[:1], grad, *host[1:], step=step, **kw)
        optim.adam_step(dev[0], cp.asarray(grad), *dev[1:], step=step, **kw)
    for name, h, d in zip(("p", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"), host, dev):
        if name == "max_exp_avg_sq" and not case["amsgrad"]:
            continue
        close(d.get(), h, dtype, name)


SGD_CASES = [dict(momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False),
             dict(momentum=0.9, dampening=0.1, weight_decay=0.01, nesterov=False, maximize=True),
             dict(momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=True, maximize=False)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", SGD_CASES, ids=["plain", "momentum-wd-maximize", "nesterov"])
def test_sgd_step(cp, dtype, case):
    from tinygen.kernels.cuda import optim
    rng = np.random.default_rng(3)
    p = rng.standard_normal((301,)).astype(dtype)
    buf = np.zeros_like(p)
    dp, dbuf = cp.asarray(p), cp.asarray(buf)
    for first in (True, False, False):
        grad = rng.standard_normal(p.shape).astype(dtype)
        cpu_optim.sgd_step(p, grad, buf, first, lr=0.1, **case)
        optim.sgd_step(dp, cp.asarray(grad), dbuf, first, lr=0.1, **case)
    close(dp.get(), p, dtype, "p")
    if case["momentum"]:
        close(dbuf.get(), buf, dtype, "momentum buffer")


# -- coupling -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 2, 5, 7), (2, 600), (1, 1)])
def test_coupling(cp, dtype, shape):
    from tinygen.kernels.cuda import coupling
    rng = np.random.default_rng(4)
    x, s, t, g = (rng.standard_normal(shape).astype(dtype) for _ in range(4))
    s *= 0.5
    d = int(np.prod(shape[1:]))
    b = (rng.random(d) < 0.5).astype(dtype)
    b[0] = 1.0
    if d > 1:
        b[1] = 0.0
    dx, ds, dt, db, dg = map(cp.asarray, (x, s, t, b, g))
    y, logdet, exp_s = coupling.coupling_forward(dx, ds, dt, db)
    ry, rlogdet, rexp = cpu_coupling.coupling_forward(x, s, t, b)
    close(y.get(), ry, dtype, "y")
    close(logdet.get(), rlogdet, dtype, "logdet")
    close(exp_s.get(), rexp, dtype, "exp(s)")
    for name, got, want in zip(("gx", "gs", "gt"), coupling.coupling_backward(dg, dx, exp_s, db),
                               cpu_coupling.coupling_backward(g, x, rexp, b)):
        close(got.get(), want, dtype, name)
    gl = rng.standard_normal(shape[0]).astype(dtype)
    close(coupling.coupling_logdet_backward(cp.asarray(gl), db, shape).get(),
          cpu_coupling.coupling_logdet_backward(gl, b, shape), dtype, "log-det backward")
    close(coupling.coupling_inverse(cp.asarray(ry), ds, dt, db).get(),
          cpu_coupling.coupling_inverse(ry, s, t, b), dtype, "inverse")
    close(coupling.coupling_inverse(y, ds, dt, db).get(), x, dtype, "inverse of forward")


def test_coupling_refuses_a_wrong_mask(cp):
    from tinygen.kernels.cuda import coupling
    x = cp.zeros((2, 6), np.float32)
    with pytest.raises(ValueError, match="mask b"):
        coupling.coupling_forward(x, x, x, cp.zeros(5, np.float32))


# -- reduce ---------------------------------------------------------------------------------------
REDUCE_OPS = ("reduce_sum", "reduce_sum_naive", "reduce_max", "logsumexp", "softmax",
              "log_softmax")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", [((4, 37, 3), 1), ((4, 37, 3), 0), ((4, 37, 3), -1),
                                        ((2, 700), 1), ((5,), 0), ((3, 1), 1)])
def test_reductions(cp, dtype, shape, axis):
    from tinygen.kernels.cuda import reduce
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    skip_if_too_many_threads_for_tsan(x.size // shape[axis] * 256)
    for op in REDUCE_OPS:
        want = getattr(cpu_reduce, op)(x, axis)
        got = getattr(reduce, op)(cp.asarray(x), axis).get()
        scale = np.sum(np.abs(x), axis=axis).max() if op.startswith("reduce_sum") else None
        close(got, want, dtype, f"{op} over axis {axis} of {shape}", scale=scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_reductions_with_infinities_and_nan(cp, dtype):
    from tinygen.kernels.cuda import reduce
    x = np.array([[-np.inf, -np.inf, -np.inf], [1.0, np.inf, 2.0], [0.5, np.nan, 1.0],
                  [1000.0, 1000.0, -1000.0]], dtype=dtype)
    with np.errstate(invalid="ignore"):
        for op in ("reduce_max", "logsumexp"):
            np.testing.assert_array_equal(getattr(reduce, op)(cp.asarray(x), 1).get(),
                                          getattr(cpu_reduce, op)(x, 1), err_msg=op)
        sm = reduce.softmax(cp.asarray(x[3:]), 1).get()
    np.testing.assert_allclose(sm, [[0.5, 0.5, 0.0]], rtol=RTOL[dtype])


def test_reductions_refuse_bad_axes(cp):
    from tinygen.kernels.cuda import reduce
    x = cp.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="out of range"):
        reduce.reduce_sum(x, 2)
    with pytest.raises(ValueError, match="empty axis"):
        reduce.reduce_max(cp.zeros((2, 0), np.float32), 1)
    with pytest.raises(TypeError, match="float32 or float64"):
        reduce.reduce_sum(cp.zeros((2, 3), np.int64), 0)


# -- matmul ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ("tiled", "naive", "library"))
@pytest.mark.parametrize("mkn", [(70, 33, 150), (130, 9, 260), (1, 1, 1), (3, 0, 4)])
def test_matmul(cp, dtype, kernel, mkn):
    from tinygen.kernels.cuda import matmul
    m, k, n = mkn
    if kernel == "naive":
        skip_if_too_many_threads_for_tsan(-(-m // 16) * -(-n // 16) * 256)
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    want = cpu_matmul.matmul(a, b, kernel)
    got = matmul.matmul(cp.asarray(a), cp.asarray(b), kernel).get()
    close(got, want, dtype, f"{kernel} {mkn}", scale=np.abs(a).max(initial=1) *
          np.abs(b).max(initial=1) * max(k, 1))


def test_matmul_default_and_errors(cp, monkeypatch):
    from tinygen.kernels.cuda import matmul
    monkeypatch.setattr(matmul, "_default", None)
    monkeypatch.setenv("TINYGEN_CUDA_MATMUL", "tiled")
    assert matmul.default_kernel() == "tiled"
    matmul.set_default_kernel("naive")
    assert matmul.default_kernel() == "naive"
    with pytest.raises(ValueError, match="kernel must be one of"):
        matmul.set_default_kernel("fast")
    with pytest.raises(ValueError, match="2-D operands"):
        matmul.matmul(cp.zeros((2, 3, 4), np.float32), cp.zeros((4, 2), np.float32), "tiled")
    with pytest.raises(TypeError, match="one dtype"):
        matmul.matmul(cp.zeros((2, 3), np.float32), cp.zeros((3, 2), np.float64), "tiled")
