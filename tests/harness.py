"""The gradient-check harness every differentiable op goes through.

    check_op(fn, inputs, reference=..., torch_fn=...)

``fn`` takes tinygen Tensors (one per entry of ``inputs``, float64 NumPy arrays) and returns a
Tensor; ``reference`` does the same computation on NumPy float64 arrays (naive where that is the
point); ``torch_fn`` on torch tensors. Non-tensor arguments are closed over by the callables.
The harness checks, for the inputs listed in ``wrt`` (default: all):

1. forward against the float64 reference;
2. first order: the gradient of <u, f(x)> (u a random cotangent) against float64 central
   differences along a random direction (relative error <= ``fd_rtol``), and element by element
   (the full gradient, i.e. the Jacobian contracted with u) when the inputs are small;
3. second order through ``create_graph=True``: the gradient of <w, grad_x <u, f>> against central
   differences of the first-order gradient along a random direction;
4. that ``fn`` does not mutate its inputs;
5. that gradients have exactly their input's shape and dtype, in float64 and in float32;
6. when torch is installed: forward and gradients against PyTorch, to ``torch_rtol64`` in float64
   and ``torch_rtol32`` in float32;
7. the float32 forward against the float64 reference, loosely.

Helpers :func:`directional_check` and :func:`numeric_grad` are exposed for tests that need them.
Strategies for hypothesis: :func:`shapes`, :func:`arrays`, :func:`broadcastable_pair`.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygen

try:
    import torch
except ImportError:  # pragma: no cover - the torch-free CI leg
    torch = None

__all__ = ["check_op", "numeric_grad", "directional_check", "shapes", "arrays",
           "broadcastable_pair", "torch"]


# -- hypothesis strategies -----------------------------------------------------------------------
def shapes(min_dims=0, max_dims=3, min_side=1, max_side=4):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


def arrays(shape, low=-3.0, high=3.0, away_from=None, gap=1e-3):
    """float64 arrays with elements in [low, high]; ``away_from`` (a number) keeps every element
    at least ``gap`` from it (for kinks such as |x| at 0)."""
    elements = st.floats(low, high, allow_nan=False, allow_infinity=False)
    if away_from is not None:
        elements = elements.filter(lambda v: abs(v - away_from) >= gap)
    return hnp.arrays(np.float64, shape, elements=elements)


def broadcastable_pair(max_dims=3, max_side=4):
    """Two shapes that broadcast together (either may have fewer axes)."""
    return hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=max_dims,
                                             min_side=1, max_side=max_side).map(
        lambda r: r.input_shapes)


# -- numerics ----------------------------------------------------------------------------------------
def _scalarize(fn, arrays_, u):
    """<u, fn(arrays)> computed with grad mode off, in float64."""
    with tinygen.no_grad():
        out = fn(*[tinygen.tensor(a) for a in arrays_])
    return float(np.sum(np.asarray(out.numpy(), dtype=np.float64) * u))


def numeric_grad(fn, arrays_, u, index, eps=1e-6):
    """Central-difference gradient of <u, fn(arrays)> with respect to arrays[index]."""
    base = [a.copy() for a in arrays_]
    grad = np.zeros_like(base[index])
    flat = base[index].reshape(-1)
    gflat = grad.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + eps
        plus = _scalarize(fn, base, u)
        flat[k] = old - eps
        minus = _scalarize(fn, base, u)
        flat[k] = old
        gflat[k] = (plus - minus) / (2 * eps)
    return grad


def _close(a, b, rtol, atol, what):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    err = np.abs(a - b)
    bound = atol + rtol * np.maximum(np.abs(a), np.abs(b))
    if not np.all(err <= bound):
        worst = np.unravel_index(np.argmax(err - bound), err.shape) if err.ndim else ()
        raise AssertionError(f"{what}: max error {err.max():.3e} (rtol {rtol}, atol {atol}); "
                             f"at {worst}: {a[worst] if a.ndim else a} vs "
                             f"{b[worst] if b.ndim else b}")


def directional_check(analytic_dot, numeric_dot, rtol, what, atol=0.0):
    """|analytic - numeric| <= rtol * max(|analytic|, |numeric|) + atol, where ``atol`` covers
    the rounding noise of the finite differences."""
    err = abs(analytic_dot - numeric_dot)
    bound = rtol * max(abs(analytic_dot), abs(numeric_dot)) + atol
    assert err <= bound, (f"{what}: analytic {analytic_dot!r} vs numeric {numeric_dot!r} "
                          f"(error {err:.3e} > {bound:.3e} = rtol {rtol} * magnitude + atol "
                          f"{atol:.1e})")


# -- the harness -------------------------------------------------------------------------------------
def check_op(fn, inputs, *, reference=None, torch_fn=None, wrt=None, ref_rtol=1e-10,
             ref_atol=1e-12, fd_eps=1e-6, fd_rtol=1e-6, second_order=True, so_rtol=1e-5,
             full_gradient_max=60, torch_rtol64=1e-10, torch_rtol32=1e-5, float32=True,
             f32_rtol=1e-4, f32_atol=1e-5, seed=0):
    """Run every check of the module docstring; raises AssertionError on the first failure.

    ``wrt``: indices of the inputs to differentiate (others are passed as tensors that do not
    require grad). Returns the float64 output array.
    """
    rng = np.random.default_rng(seed)
    inputs = [np.array(a, dtype=np.float64) for a in inputs]
    wrt = list(range(len(inputs))) if wrt is None else list(wrt)
    originals = [a.copy() for a in inputs]

    # float64 forward and first-order gradients
    tensors = [tinygen.tensor(a, requires_grad=(i in wrt)) for i, a in enumerate(inputs)]
    out = fn(*tensors)
    assert isinstance(out, tinygen.Tensor), f"op returned {type(out).__name__}"
    assert out.dtype == np.float64, f"float64 inputs gave a {out.dtype} output"
    y = out.numpy().copy()
    for a, o in zip(inputs, originals):  # 4. no mutation by the forward
        np.testing.assert_array_equal(a, o, err_msg="the forward mutated an input")
    if reference is not None:  # 1.
        ref = np.asarray(reference(*[a.copy() for a in inputs]), dtype=np.float64)
        assert ref.shape == y.shape, f"output shape {y.shape} != reference shape {ref.shape}"
        _close(y, ref, ref_rtol, ref_atol * max(1.0, float(np.abs(ref).max(initial=0))),
               "forward vs float64 reference")
    if not wrt:
        return y
    u = rng.standard_normal(y.shape)
    grads = tinygen.grad(out, [tensors[i] for i in wrt], grad_outputs=tinygen.tensor(u),
                         allow_unused=True)
    grads = [np.zeros_like(inputs[i]) if g is None else g for i, g in zip(wrt, grads)]
    for i, g in zip(wrt, grads):  # 5.
        if isinstance(g, tinygen.Tensor):
            assert g.shape == inputs[i].shape, f"grad {i} shape {g.shape} != {inputs[i].shape}"
            assert g.dtype == np.float64, f"grad {i} dtype {g.dtype} != float64"
    grads = [g.numpy() if isinstance(g, tinygen.Tensor) else g for g in grads]
    for a, o in zip(inputs, originals):
        np.testing.assert_array_equal(a, o, err_msg="the backward mutated an input")

    # 2. directional derivative against central differences
    vs = {i: rng.standard_normal(inputs[i].shape) for i in wrt}
    analytic = sum(float(np.sum(g * vs[i])) for i, g in zip(wrt, grads))

    def shifted(t):
        return [a + t * vs[i] if i in vs else a for i, a in enumerate(inputs)]
    numeric = (_scalarize(fn, shifted(fd_eps), u) - _scalarize(fn, shifted(-fd_eps), u)) / \
        (2 * fd_eps)
    # rounding noise of the central difference: ~1e-16 * sum|u*y| / eps, with a 100x margin
    noise = 1e-8 * (1.0 + float(np.sum(np.abs(u * y))))
    directional_check(analytic, numeric, fd_rtol, "directional derivative", noise)
    # ... and element by element when the inputs are small
    if sum(inputs[i].size for i in wrt) <= full_gradient_max:
        for i, g in zip(wrt, grads):
            num = numeric_grad(fn, inputs, u, i, fd_eps)
            _close(g, num, 100 * fd_rtol, 1e-7 * (1.0 + float(np.abs(num).max(initial=0))),
                   f"gradient of input {i} vs central differences")

    # 3. second order: d/dx <w, grad_x <u, f>>
    if second_order:
        ws = {i: rng.standard_normal(inputs[i].shape) for i in wrt}

        def first_order_dot(arrays_):
            ts = [tinygen.tensor(a, requires_grad=(i in wrt)) for i, a in enumerate(arrays_)]
            gs = tinygen.grad(fn(*ts), [ts[i] for i in wrt], grad_outputs=tinygen.tensor(u),
                              allow_unused=True)
            return sum(float(np.sum(g.numpy() * ws[i])) for i, g in zip(wrt, gs)
                       if g is not None)

        ts = [tinygen.tensor(a, requires_grad=(i in wrt)) for i, a in enumerate(inputs)]
        gs = tinygen.grad(fn(*ts), [ts[i] for i in wrt], grad_outputs=tinygen.tensor(u),
                          create_graph=True, allow_unused=True)
        s = None
        for i, g in zip(wrt, gs):
            if g is not None and g.requires_grad:
                term = (g * tinygen.tensor(ws[i])).sum()
                s = term if s is None else s + term
        if s is None:  # the first-order gradient does not depend on the inputs (linear op)
            analytic2 = 0.0
        else:
            hs = tinygen.grad(s, [ts[i] for i in wrt], allow_unused=True)
            analytic2 = sum(float(np.sum(h.numpy() * vs[i])) for i, h in zip(wrt, hs)
                            if h is not None)
        numeric2 = (first_order_dot(shifted(fd_eps)) - first_order_dot(shifted(-fd_eps))) / \
            (2 * fd_eps)
        noise2 = 1e-8 * (1.0 + sum(float(np.sum(np.abs(g * ws[i])))
                                   for i, g in zip(wrt, grads)))
        directional_check(analytic2, numeric2, so_rtol, "second-order directional derivative",
                          noise2)

    # 6. PyTorch oracle
    if torch is not None and torch_fn is not None:
        for dtype, rtol in ((np.float64, torch_rtol64), (np.float32, torch_rtol32)):
            tts = [torch.tensor(a.astype(dtype), requires_grad=(i in wrt))
                   for i, a in enumerate(inputs)]
            tout = torch_fn(*tts)
            ours_ts = [tinygen.tensor(a.astype(dtype), requires_grad=(i in wrt))
                       for i, a in enumerate(inputs)]
            ours = fn(*ours_ts)
            scale = 1.0 + float(np.abs(y).max(initial=0))
            atol = rtol * scale
            _close(ours.numpy(), tout.detach().numpy(), rtol, atol, f"forward vs torch ({dtype.__name__})")
            uu = u.astype(dtype)
            tgrads = torch.autograd.grad(tout, [tts[i] for i in wrt],
                                         grad_outputs=torch.tensor(uu), allow_unused=True)
            ograds = tinygen.grad(ours, [ours_ts[i] for i in wrt], grad_outputs=tinygen.tensor(uu),
                                  allow_unused=True)
            for k, (tg, og) in enumerate(zip(tgrads, ograds)):
                i = wrt[k]
                tgn = np.zeros_like(inputs[i], dtype=dtype) if tg is None else tg.numpy()
                ogn = np.zeros_like(inputs[i], dtype=dtype) if og is None else og.numpy()
                gscale = 1.0 + float(np.abs(tgn).max(initial=0))
                _close(ogn, tgn, rtol, rtol * gscale,
                       f"gradient of input {i} vs torch ({dtype.__name__})")

    # 5 and 7 in float32
    if float32:
        ts32 = [tinygen.tensor(a.astype(np.float32), requires_grad=(i in wrt))
                for i, a in enumerate(inputs)]
        out32 = fn(*ts32)
        assert out32.dtype == np.float32, f"float32 inputs gave a {out32.dtype} output"
        _close(out32.numpy(), y, f32_rtol, f32_atol * (1.0 + float(np.abs(y).max(initial=0))),
               "float32 forward vs float64")
        gs32 = tinygen.grad(out32, [ts32[i] for i in wrt],
                            grad_outputs=tinygen.tensor(u.astype(np.float32)), allow_unused=True)
        for i, g in zip(wrt, gs32):
            if g is not None:
                assert g.dtype == np.float32, f"float32 grad {i} has dtype {g.dtype}"
                assert g.shape == inputs[i].shape, f"float32 grad {i} has shape {g.shape}"
    return y
