"""The gradient-check harness every differentiable op goes through, and hypothesis strategies.

Usage
-----
::

    y = check_op(fn, [a, b], reference=ref, torch_fn=tfn)

* ``fn(*tensors) -> Tensor`` -- the tinygen op under test, one tinygen Tensor per entry of
  ``inputs``. Anything that is not a differentiable input (integer targets, axes, flags) is closed
  over by the callables.
* ``inputs`` -- NumPy arrays; the harness works on float64 copies (and float32 casts for the
  float32 checks), so the caller's arrays are never touched.
* ``reference(*arrays) -> array`` -- the same computation in NumPy float64, naive where that is the
  point (a loop for a convolution, a closed form for a loss).
* ``torch_fn(*torch_tensors) -> torch.Tensor`` -- the PyTorch op, an oracle used only when torch is
  installed (``harness.torch`` is None otherwise).

Checks, in order (the first failure raises ``AssertionError`` naming the check):

1. forward: a Tensor of float64 for float64 inputs, of the reference's shape, equal to the reference
   to ``ref_rtol`` (relative) / ``ref_atol`` (times the output's magnitude);
2. first order, against float64 central differences (step ``fd_eps``):

   * the directional derivative: ``<grad_x <u, f>, v>`` (``u`` a random output cotangent, ``v`` a
     random direction over all differentiated inputs) against
     ``<u, f(x + eps v) - f(x - eps v)> / (2 eps)``, relative error <= ``fd_rtol`` plus a floor
     for the rounding noise of the finite difference;
   * the full Jacobian, entry by entry, when the differentiated inputs hold at most
     ``full_jacobian_max`` elements (and the output too -- with a larger output, the Jacobian
     contracted with ``u``, i.e. the whole gradient, is compared instead);
3. second order through ``create_graph=True``: the gradient of ``<w, grad_x <u, f>>`` (``w``
   random), contracted with ``v``, against central differences of the first-order gradient.
   ``second_order="zero"`` is for piecewise-linear ops (relu, abs, max, shape ops, ...): the
   double backward must run and give exactly zero, and the finite difference must be ~0 as well.
   ``second_order=False`` skips the check;
4. the op mutates none of the arrays it was given: the tensors' data are compared with copies after
   the forward, the backward, the double backward and the float32 run;
5. every gradient has exactly its input's shape and dtype, in float64 and in float32;
6. when torch is installed and ``torch_fn`` is given: forward and gradients (same ``u``) against
   PyTorch to ``torch_rtol64`` in float64 and ``torch_rtol32`` in float32 (relative, with an
   absolute floor of the same size times the output's / gradient's magnitude), and the double
   backward in float64 unless ``torch_second_order=False`` or ``second_order=False``;
7. the float32 forward and gradients against the float64 ones, loosely (``f32_rtol``/``f32_atol``
   for the output, ``f32_grad_rtol`` for the gradients; both relative to the magnitude).

``wrt`` lists the indices of the inputs to differentiate (default: all); the others are passed as
tensors that do not require grad. ``check_op`` returns the float64 output as a NumPy array.

Lower-level helpers: :func:`numeric_jacobian`, :func:`numeric_grad` (central differences),
:func:`directional_check`, :func:`assert_close`, :func:`sum_to_shape`.

Strategies (all sizes small, so that the suite stays fast): :func:`shapes`, :func:`arrays`
(optionally kept ``gap`` away from kinks: ``away_from=0.0`` or ``away_from=(-1.0, 0.5)``),
:func:`broadcastable_pair`, :func:`broadcastable_shapes`, :func:`axes`, :func:`distinct_arrays`
(no ties, for max/min), :func:`grid_arrays` (values on a grid: two grids with different offsets
never tie, one small grid ties often).
"""
from __future__ import annotations

import numbers
import os

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygen

try:
    import torch
except ImportError:  # pragma: no cover - the torch-free CI leg
    torch = None

#: The device every op under test runs on: ``"cpu"``, or ``"cuda"`` when the run sets
#: ``TINYGEN_TEST_DEVICE=cuda-emu`` (the stand-in cupy and the CPU emulator of the .cu kernels,
#: ``make test-gpu-emu``) or ``TINYGEN_TEST_DEVICE=cuda`` (a real GPU). The reference, the finite
#: differences and the PyTorch oracle stay on the host; on "cuda" the op's float64 results are
#: thereby checked against CPU float64 results.
DEVICE = "cuda" if os.environ.get("TINYGEN_TEST_DEVICE", "cpu") in ("cuda", "cuda-emu") else "cpu"


def _tensor(data, **kwargs):
    """A tensor on :data:`DEVICE` (host data are copied there)."""
    return tinygen.tensor(data, device=DEVICE, **kwargs)


def _host(t):
    """A tensor's data as a NumPy array (copied from the device when needed)."""
    return tinygen.backend.to_numpy(t.array)


__all__ = ["DEVICE", "check_op", "numeric_grad", "numeric_jacobian", "directional_check",
           "assert_close",
           "sum_to_shape", "shapes", "arrays", "broadcastable_pair", "broadcastable_shapes", "axes",
           "distinct_arrays", "grid_arrays", "torch"]


# -- hypothesis strategies -------------------------------------------------------------------------
def shapes(min_dims=0, max_dims=3, min_side=1, max_side=4):
    """Array shapes (at most 4**3 = 64 elements by default)."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


def arrays(shape, low=-3.0, high=3.0, away_from=None, gap=1e-3):
    """float64 arrays of ``shape`` (a tuple or a shape strategy) with elements in [low, high].

    ``away_from`` -- a number or a sequence of numbers (more than ``2 * gap`` apart) -- keeps
    every element at least ``gap`` from each of them: the kinks of |x|, relu, clamp's bounds,
    softplus' threshold. Elements that fall inside a gap are pushed to its edge (not filtered
    out, which would make hypothesis give up on many examples), so edges are well exercised.
    """
    elements = st.floats(low, high, allow_nan=False, allow_infinity=False)
    if away_from is not None:
        points = (away_from,) if isinstance(away_from, numbers.Real) else tuple(away_from)

        def push(v):
            for p in points:
                if abs(v - p) < gap:
                    v = p - 1.000001 * gap if v < p else p + 1.000001 * gap
            return v
        elements = elements.map(push)
    return hnp.arrays(np.float64, shape, elements=elements)


def broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4):
    """``num_shapes`` shapes that broadcast together (any may have fewer axes, or size-1 axes)."""
    return hnp.mutually_broadcastable_shapes(num_shapes=num_shapes, min_dims=0, max_dims=max_dims,
                                             min_side=1, max_side=max_side).map(
        lambda r: r.input_shapes)


def broadcastable_pair(max_dims=3, max_side=4):
    """Two shapes that broadcast together."""
    return broadcastable_shapes(2, max_dims, max_side)


@st.composite
def axes(draw, ndim, allow_none=True, allow_tuple=True):
    """A ``dim`` argument for a tensor with ``ndim`` axes: None (all axes), one axis or a tuple of
    distinct axes, each possibly negative. A 0-d tensor gets None."""
    if ndim == 0:
        return None
    kinds = ["int"] + (["none"] if allow_none else []) + (["tuple"] if allow_tuple else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    picked = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(a - ndim if draw(st.booleans()) else a for a in picked)


@st.composite
def distinct_arrays(draw, shape, spacing=0.37, low=-3.0):
    """float64 arrays of ``shape`` whose elements are all distinct, at least ``spacing`` apart."""
    n = int(np.prod(shape))
    perm = draw(st.permutations(list(range(n))))
    return (np.array(perm, dtype=np.float64) * spacing + low).reshape(shape)


def grid_arrays(shape, step=0.25, offset=0.0, low=-12, high=12):
    """float64 arrays with elements ``k * step + offset`` for integers k in [low, high].

    Two such arrays with offsets that differ by d (0 < d < step) never tie (they stay at least
    min(d, step - d) apart); one array with a small range ties often.
    """
    return hnp.arrays(np.int64, shape, elements=st.integers(low, high)).map(
        lambda k: k * step + offset)


# -- numerics --------------------------------------------------------------------------------------
def _forward64(fn, arrays_):
    """fn on fresh float64 tensors with grad mode off, as a float64 array."""
    with tinygen.no_grad():
        out = fn(*[_tensor(a) for a in arrays_])
    return np.asarray(_host(out), dtype=np.float64)


def numeric_jacobian(fn, arrays_, wrt, eps=1e-6):
    """Central-difference Jacobian of ``fn`` with respect to ``arrays_[i] for i in wrt``.

    Returns an array of shape ``(output size, total size of the wrt inputs)``; columns follow
    ``wrt`` and, within an input, C order.
    """
    base = [np.array(a, dtype=np.float64) for a in arrays_]
    cols = []
    for i in wrt:
        flat = base[i].reshape(-1)  # a view: base[i] is a fresh contiguous array
        for k in range(flat.size):
            old = flat[k]
            flat[k] = old + eps
            plus = _forward64(fn, base)
            flat[k] = old - eps
            minus = _forward64(fn, base)
            flat[k] = old
            cols.append(((plus - minus) / (2 * eps)).reshape(-1))
    return np.stack(cols, axis=1)


def numeric_grad(fn, arrays_, u, index, eps=1e-6):
    """Central-difference gradient of ``<u, fn(arrays)>`` with respect to ``arrays_[index]``."""
    jac = numeric_jacobian(fn, arrays_, [index], eps)
    return (np.asarray(u, dtype=np.float64).reshape(-1) @ jac).reshape(np.shape(arrays_[index]))


def assert_close(actual, expected, rtol, atol, what):
    """Elementwise ``|actual - expected| <= atol + rtol * max(|actual|, |expected|)``; NaNs and
    infinities must sit at the same places (and infinities have the same sign)."""
    a, b = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    assert np.array_equal(nan_a, nan_b), f"{what}: NaN at different places:\n{a}\nvs\n{b}"
    inf = np.isinf(a) | np.isinf(b)
    assert np.array_equal(a[inf], b[inf]), f"{what}: infinities differ:\n{a}\nvs\n{b}"
    ok = nan_a | inf
    a, b = np.where(ok, 0.0, a), np.where(ok, 0.0, b)
    err = np.abs(a - b)
    bound = atol + rtol * np.maximum(np.abs(a), np.abs(b))
    if not np.all(err <= bound):
        worst = np.unravel_index(np.argmax(err - bound), err.shape) if err.ndim else ()
        raise AssertionError(f"{what}: max error {err.max():.3e} (rtol {rtol:g}, atol "
                             f"{atol:.2e}); at index {worst}: {a[worst]!r} vs {b[worst]!r}")


def directional_check(analytic_dot, numeric_dot, rtol, what, atol=0.0):
    """|analytic - numeric| <= rtol * max(|analytic|, |numeric|) + atol, where ``atol`` covers
    the rounding noise of the finite differences."""
    err = abs(analytic_dot - numeric_dot)
    bound = rtol * max(abs(analytic_dot), abs(numeric_dot)) + atol
    assert err <= bound, (f"{what}: analytic {analytic_dot!r} vs numeric {numeric_dot!r} "
                          f"(error {err:.3e} > {bound:.3e} = rtol {rtol:g} * magnitude + atol "
                          f"{atol:.1e})")


def sum_to_shape(g, shape):
    """Sum a broadcast array ``g`` back down to ``shape`` (NumPy; for expected gradients)."""
    g = np.asarray(g)
    g = g.sum(axis=tuple(range(g.ndim - len(shape))))
    ones = tuple(i for i, s in enumerate(shape) if s == 1)
    return (g.sum(axis=ones, keepdims=True) if ones else g).reshape(shape)


def _magnitude(*arrays_):
    return max([float(np.max(np.abs(a), initial=0.0)) for a in arrays_] + [0.0])


# -- the harness -----------------------------------------------------------------------------------
def check_op(fn, inputs, *, reference=None, torch_fn=None, wrt=None, second_order=True,
             ref_rtol=1e-10, ref_atol=1e-12, fd_eps=1e-6, fd_rtol=1e-6, fd_atol=None,
             so_rtol=1e-5, full_jacobian_max=32, torch_rtol64=1e-10, torch_rtol32=1e-5,
             torch_second_order=True, float32=True, f32_rtol=1e-4, f32_atol=1e-5,
             f32_grad_rtol=1e-3, seed=0):
    """Run every check of the module docstring on ``fn``; return the float64 output array.

    ``second_order``: True (compare with finite differences), ``"zero"`` (piecewise-linear op:
    must be exactly zero) or False (skip). ``fd_atol``: absolute floor of the first-order checks
    (default: 1e-8 times the magnitude of the inputs and outputs, ~100x the rounding noise of a
    central difference with ``fd_eps=1e-6``). ``full_jacobian_max=0`` turns the element-by-element
    check off (for large inputs it is off anyway).
    """
    if second_order not in (True, False, "zero"):
        raise ValueError(f"second_order must be True, False or 'zero', got {second_order!r}")
    rng = np.random.default_rng(seed)
    inputs = [np.array(a, dtype=np.float64) for a in inputs]
    wrt = list(range(len(inputs))) if wrt is None else list(wrt)
    originals = [a.copy() for a in inputs]

    def leaves(dtype=np.float64, grad=True):
        return [_tensor(a.astype(dtype), requires_grad=grad and i in wrt)
                for i, a in enumerate(inputs)]

    def check_unmutated(ts, when):  # 4.
        for i, (t, o) in enumerate(zip(ts, originals)):
            np.testing.assert_array_equal(np.asarray(_host(t), dtype=np.float64),
                                          o.astype(t.dtype).astype(np.float64),
                                          err_msg=f"{when} mutated input {i}")

    # 1. float64 forward
    tensors = leaves()
    out = fn(*tensors)
    assert isinstance(out, tinygen.Tensor), f"the op returned {type(out).__name__}, not a Tensor"
    assert out.dtype == np.float64, f"float64 inputs gave a {out.dtype} output"
    y = np.array(_host(out), dtype=np.float64)
    check_unmutated(tensors, "the forward")
    if reference is not None:
        ref = np.asarray(reference(*[a.copy() for a in inputs]), dtype=np.float64)
        assert ref.shape == y.shape, f"output shape {y.shape} != reference shape {ref.shape}"
        assert_close(y, ref, ref_rtol, ref_atol * max(1.0, _magnitude(ref)),
                     "forward vs float64 reference")
    if not wrt:
        return y
    assert out.requires_grad, "the output does not require grad although its inputs do"

    # 2. first order
    u = rng.standard_normal(y.shape)
    wrt_tensors = [tensors[i] for i in wrt]
    raw = tinygen.grad(out, wrt_tensors, grad_outputs=_tensor(u), retain_graph=True,
                       allow_unused=True)
    grads = []
    for i, g in zip(wrt, raw):  # 5.
        if g is None:
            grads.append(np.zeros_like(inputs[i]))
            continue
        assert g.shape == inputs[i].shape, f"gradient {i} has shape {g.shape}, input " \
                                           f"{inputs[i].shape}"
        assert g.dtype == np.float64, f"gradient {i} has dtype {g.dtype}, input float64"
        assert not g.requires_grad, f"gradient {i} requires grad without create_graph"
        grads.append(np.array(_host(g)))
    check_unmutated(tensors, "the backward")

    vs = {i: rng.standard_normal(inputs[i].shape) for i in wrt}
    scale = 1.0 + _magnitude(y, *[inputs[i] for i in wrt])
    atol1 = 1e-8 * scale if fd_atol is None else fd_atol

    def shifted(t):
        return [a + t * vs[i] if i in vs else a for i, a in enumerate(inputs)]
    analytic = sum(float(np.sum(g * vs[i])) for i, g in zip(wrt, grads))
    numeric = float(np.sum(u * (_forward64(fn, shifted(fd_eps)) -
                                _forward64(fn, shifted(-fd_eps))))) / (2 * fd_eps)
    directional_check(analytic, numeric, fd_rtol, "first-order directional derivative",
                      atol1 * (1.0 + float(np.sum(np.abs(u)))))

    n_in = sum(inputs[i].size for i in wrt)
    if n_in <= full_jacobian_max:
        jac_num = numeric_jacobian(fn, inputs, wrt, fd_eps)
        if 0 < y.size <= full_jacobian_max:  # the whole Jacobian, one backward per output element
            rows = []
            for j in range(y.size):
                e = np.zeros(y.size)
                e[j] = 1.0
                gs = tinygen.grad(out, wrt_tensors, grad_outputs=_tensor(e.reshape(y.shape)),
                                  retain_graph=True, allow_unused=True)
                rows.append(np.concatenate([
                    (np.zeros(inputs[i].size) if g is None else _host(g).reshape(-1))
                    for i, g in zip(wrt, gs)]))
            assert_close(np.stack(rows), jac_num, fd_rtol, atol1,
                         "Jacobian vs central differences (rows: outputs, columns: inputs)")
        else:
            assert_close(np.concatenate([g.reshape(-1) for g in grads]),
                         u.reshape(-1) @ jac_num, fd_rtol, atol1 * (1.0 + float(np.sum(np.abs(u)))),
                         "gradient vs central differences")
    del out, raw

    # 3. second order: d/dx <w, grad_x <u, f>> against central differences of the gradient
    hs = None
    if second_order:
        ws = {i: rng.standard_normal(inputs[i].shape) for i in wrt}

        def first_order_dot(arrays_):
            ts = [_tensor(a, requires_grad=(i in wrt)) for i, a in enumerate(arrays_)]
            gs = tinygen.grad(fn(*ts), [ts[i] for i in wrt], grad_outputs=_tensor(u),
                              allow_unused=True)
            return sum(float(np.sum(_host(g) * ws[i])) for i, g in zip(wrt, gs)
                       if g is not None)

        ts = leaves()
        gs = tinygen.grad(fn(*ts), [ts[i] for i in wrt], grad_outputs=_tensor(u),
                          create_graph=True, allow_unused=True)
        s = None
        for i, g in zip(wrt, gs):
            if g is not None and g.requires_grad:
                term = (g * _tensor(ws[i])).sum()
                s = term if s is None else s + term
        hs = [np.zeros_like(inputs[i]) for i in wrt]
        if s is not None:
            for k, h in enumerate(tinygen.grad(s, [ts[i] for i in wrt], allow_unused=True)):
                if h is not None:
                    assert h.shape == inputs[wrt[k]].shape and h.dtype == np.float64, \
                        f"second-order gradient {wrt[k]}: shape {h.shape}, dtype {h.dtype}"
                    hs[k] = np.array(_host(h))
        check_unmutated(ts, "the double backward")
        analytic2 = sum(float(np.sum(h * vs[i])) for i, h in zip(wrt, hs))
        numeric2 = (first_order_dot(shifted(fd_eps)) - first_order_dot(shifted(-fd_eps))) / \
            (2 * fd_eps)
        noise2 = 1e-8 * (1.0 + sum(float(np.sum(np.abs(g * ws[i]))) for i, g in zip(wrt, grads)))
        if second_order == "zero":
            assert all(not np.any(h) for h in hs), \
                "second_order='zero': the double backward of a piecewise-linear op is not zero"
            assert abs(numeric2) <= noise2, \
                f"second_order='zero' but the gradient changes along v: {numeric2!r}"
        else:
            directional_check(analytic2, numeric2, so_rtol, "second-order directional derivative",
                              noise2)

    # 6. the PyTorch oracle
    if torch is not None and torch_fn is not None:
        for dtype, rtol in ((np.float64, torch_rtol64), (np.float32, torch_rtol32)):
            name = np.dtype(dtype).name
            tts = [torch.tensor(a.astype(dtype), requires_grad=(i in wrt))
                   for i, a in enumerate(inputs)]
            tout = torch_fn(*tts)
            ours_ts = leaves(dtype)
            ours = fn(*ours_ts)
            assert tuple(tout.shape) == ours.shape, \
                f"output shape {ours.shape} != torch's {tuple(tout.shape)}"
            assert_close(_host(ours), tout.detach().numpy(), rtol, rtol * (1.0 + _magnitude(y)),
                         f"forward vs torch ({name})")
            uu = u.astype(dtype)
            need2 = dtype == np.float64 and second_order and torch_second_order
            tgrads = torch.autograd.grad(tout, [tts[i] for i in wrt], grad_outputs=torch.tensor(uu),
                                         allow_unused=True, create_graph=bool(need2))
            ograds = tinygen.grad(ours, [ours_ts[i] for i in wrt],
                                  grad_outputs=_tensor(uu), allow_unused=True)
            for i, tg, og in zip(wrt, tgrads, ograds):
                tgn = np.zeros(inputs[i].shape) if tg is None else tg.detach().numpy(force=True)
                ogn = np.zeros(inputs[i].shape) if og is None else _host(og)
                assert_close(ogn, tgn, rtol, rtol * (1.0 + _magnitude(tgn)),
                             f"gradient of input {i} vs torch ({name})")
            if need2:
                terms = [(tg * torch.tensor(ws[i])).sum() for i, tg in zip(wrt, tgrads)
                         if tg is not None and tg.requires_grad]
                th = [None] * len(wrt)
                if terms:
                    th = torch.autograd.grad(sum(terms), [tts[i] for i in wrt], allow_unused=True)
                for k, (i, t2) in enumerate(zip(wrt, th)):
                    t2n = np.zeros(inputs[i].shape) if t2 is None else t2.numpy(force=True)
                    assert_close(hs[k], t2n, rtol, rtol * (1.0 + _magnitude(t2n)),
                                 f"second-order gradient of input {i} vs torch (float64)")

    # 5 and 7 in float32
    if float32:
        ts32 = leaves(np.float32)
        out32 = fn(*ts32)
        assert out32.dtype == np.float32, f"float32 inputs gave a {out32.dtype} output"
        assert_close(_host(out32), y, f32_rtol, f32_atol * (1.0 + _magnitude(y)),
                     "float32 forward vs float64")
        gs32 = tinygen.grad(out32, [ts32[i] for i in wrt],
                            grad_outputs=_tensor(u.astype(np.float32)), allow_unused=True)
        for i, g, g64 in zip(wrt, gs32, grads):
            if g is None:
                continue
            assert g.dtype == np.float32, f"float32 gradient {i} has dtype {g.dtype}"
            assert g.shape == inputs[i].shape, f"float32 gradient {i} has shape {g.shape}"
            assert_close(_host(g), g64, f32_grad_rtol, f32_grad_rtol * (1.0 + _magnitude(g64)),
                         f"float32 gradient of input {i} vs float64")
        check_unmutated(ts32, "the float32 run")
    return y
