"""conv1d, conv2d, conv_transpose1d, conv_transpose2d: PyTorch semantics (issue 3).

* the worked examples of Fleuret's lecture on autoencoders and generative models, exactly;
* naive float64 loop references for all four ops (the transposed conv as its own scatter loop);
* hypothesis over batch (or none), channels, groups, spatial sizes, kernel, stride, padding (int,
  tuple, "same", "valid"), dilation, output_padding and bias, every case through
  :func:`harness.check_op` (forward vs the reference and PyTorch; first- and second-order
  gradients vs central differences and PyTorch; float32 forward and gradient dtypes);
* double backward against PyTorch, the conv / transposed-conv adjoint identity;
* the kernels' other code paths (row-shift GEMMs, batch chunks) on larger shapes;
* every argument error.

Output-size rules live in test_conv_geometry.py.
"""
import itertools

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygen
from tinygen import functional as F
from tinygen.kernels.cpu import conv as cpu_conv

from harness import DEVICE, check_op, torch

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch oracle not installed")
TF = torch.nn.functional if torch is not None else None
OPS = {(1, False): "conv1d", (2, False): "conv2d", (1, True): "conv_transpose1d",
       (2, True): "conv_transpose2d"}


# -- the lecture's worked examples -----------------------------------------------------------------
def test_lecture_conv1d_example():
    x = tinygen.tensor(np.array([[[0.0, 0, 1, 0, 0, 0, 0]]]))
    k = tinygen.tensor(np.array([[[1.0, 2, 3]]]))
    y = F.conv1d(x, k)
    assert y.shape == (1, 1, 5)
    np.testing.assert_array_equal(y.numpy(), [[[3.0, 2, 1, 0, 0]]])


def test_lecture_conv_transpose1d_example():
    x = tinygen.tensor(np.array([[[2.0, 3, 0, -1]]]))
    k = tinygen.tensor(np.array([[[1.0, 2, -1]]]))
    y = F.conv_transpose1d(x, k, tinygen.zeros(1, dtype=tinygen.float64))
    assert y.shape == (1, 1, 6)
    np.testing.assert_array_equal(y.numpy(), [[[2.0, 7, 4, -4, -2, 1]]])


# -- naive float64 references ----------------------------------------------------------------------
def _per_axis(value, nd):
    return (value,) * nd if isinstance(value, int) else tuple(value)


def conv_reference(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Direct loops:
    y[n, o, p] = b[o] + sum_{c in o's group, k} w[o, c, k] x[n, c, p*s + k*d - lo]."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    nd = w.ndim - 2
    unbatched = x.ndim == nd + 1
    if unbatched:
        x = x[None]
    n_batch, sizes = x.shape[0], x.shape[2:]
    n_out, cg, ks = w.shape[0], w.shape[1], w.shape[2:]
    s, d = _per_axis(stride, nd), _per_axis(dilation, nd)
    if padding == "valid":
        lo = hi = (0,) * nd
    elif padding == "same":  # PyTorch: the odd extra zero goes after the input
        lo = tuple(d[a] * (ks[a] - 1) // 2 for a in range(nd))
        hi = tuple(d[a] * (ks[a] - 1) - lo[a] for a in range(nd))
    else:
        lo = hi = _per_axis(padding, nd)
    out_sizes = tuple((sizes[a] + lo[a] + hi[a] - d[a] * (ks[a] - 1) - 1) // s[a] + 1
                      for a in range(nd))
    og = n_out // groups
    y = np.zeros((n_batch, n_out) + out_sizes)
    for n in range(n_batch):
        for o in range(n_out):
            g = o // og
            for p in itertools.product(*[range(m) for m in out_sizes]):
                acc = 0.0 if b is None else float(b[o])
                for c in range(cg):
                    for k in itertools.product(*[range(m) for m in ks]):
                        i = tuple(p[a] * s[a] + k[a] * d[a] - lo[a] for a in range(nd))
                        if all(0 <= i[a] < sizes[a] for a in range(nd)):
                            acc += x[(n, g * cg + c) + i] * w[(o, c) + k]
                y[(n, o) + p] = acc
    return y[0] if unbatched else y


def conv_transpose_reference(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1,
                             dilation=1):
    """Scatter loops: every input element x[n, c, i] adds w[c, o, k] x[n, c, i] at output
    position i*s + k*d - padding (kept when inside the output) of each channel o of its group."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    nd = w.ndim - 2
    unbatched = x.ndim == nd + 1
    if unbatched:
        x = x[None]
    n_batch, n_in, sizes = x.shape[0], x.shape[1], x.shape[2:]
    og, ks = w.shape[1], w.shape[2:]
    s, d = _per_axis(stride, nd), _per_axis(dilation, nd)
    p, op = _per_axis(padding, nd), _per_axis(output_padding, nd)
    out_sizes = tuple((sizes[a] - 1) * s[a] - 2 * p[a] + d[a] * (ks[a] - 1) + op[a] + 1
                      for a in range(nd))
    cg = n_in // groups
    y = np.zeros((n_batch, og * groups) + out_sizes)
    if b is not None:
        for o in range(og * groups):
            y[:, o] = b[o]
    for n in range(n_batch):
        for c in range(n_in):
            g = c // cg
            for i in itertools.product(*[range(m) for m in sizes]):
                for o in range(og):
                    for k in itertools.product(*[range(m) for m in ks]):
                        j = tuple(i[a] * s[a] + k[a] * d[a] - p[a] for a in range(nd))
                        if all(0 <= j[a] < out_sizes[a] for a in range(nd)):
                            y[(n, g * og + o) + j] += w[(c, o) + k] * x[(n, c) + i]
    return y[0] if unbatched else y


def test_references_agree_with_the_lecture():
    """The references themselves reproduce the worked examples (so they can be trusted below)."""
    np.testing.assert_array_equal(conv_reference([[[0, 0, 1, 0, 0, 0, 0]]], [[[1, 2, 3]]]),
                                  [[[3, 2, 1, 0, 0]]])
    np.testing.assert_array_equal(conv_transpose_reference([[[2, 3, 0, -1]]], [[[1, 2, -1]]]),
                                  [[[2, 7, 4, -4, -2, 1]]])


# -- drawing valid argument combinations -----------------------------------------------------------
def _arg(draw, values):
    """Per-axis values passed as an int when they agree (sometimes), else as a tuple."""
    if len(set(values)) == 1 and draw(st.booleans()):
        return values[0]
    return tuple(values)


@st.composite
def conv_cases(draw, nd, transposed):
    """(input shape, weight shape, bias?, keyword arguments) of one valid call."""
    groups = draw(st.sampled_from([1, 1, 2, 3, 4]))
    per = 4 // groups
    c_in, c_out = groups * draw(st.integers(1, per)), groups * draw(st.integers(1, per))
    batch = draw(st.sampled_from([None, 1, 2]))  # None: unbatched input
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    stride = [draw(st.integers(1, 3)) for _ in range(nd)]
    dilation = [draw(st.integers(1, 2)) for _ in range(nd)]
    extent = [dilation[a] * (kernel[a] - 1) + 1 for a in range(nd)]
    if not transposed:
        kind = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
        if kind == "same":  # any size works, stride 1 only
            stride, pads, padding = [1] * nd, [e // 2 for e in extent], "same"
        elif kind == "valid":
            pads, padding = [0] * nd, "valid"
        else:
            pads = [draw(st.integers(0, 2)) for _ in range(nd)]
            if kind == "int":
                pads = [pads[0]] * nd
            padding = pads[0] if kind == "int" else tuple(pads)
        spatial = tuple(draw(st.integers(max(1, extent[a] - 2 * pads[a]), 7))
                        for a in range(nd))
        w_shape = (c_out, c_in // groups) + kernel
        kwargs = dict(stride=_arg(draw, stride), padding=padding,
                      dilation=_arg(draw, dilation), groups=groups)
    else:
        spatial = tuple(draw(st.integers(1, 5)) for _ in range(nd))
        out_pad = [draw(st.integers(0, max(stride[a], dilation[a]) - 1)) for a in range(nd)]
        full = [(spatial[a] - 1) * stride[a] + extent[a] + out_pad[a] for a in range(nd)]
        pads = [draw(st.integers(0, min(2, (full[a] - 1) // 2))) for a in range(nd)]
        w_shape = (c_in, c_out // groups) + kernel
        kwargs = dict(stride=_arg(draw, stride), padding=_arg(draw, pads),
                      output_padding=_arg(draw, out_pad), groups=groups,
                      dilation=_arg(draw, dilation))
    x_shape = ((batch,) if batch else ()) + (c_in,) + spatial
    return x_shape, w_shape, draw(st.booleans()), kwargs


def _arrays(case, seed):
    x_shape, w_shape, bias, _ = case
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(x_shape), rng.standard_normal(w_shape)]
    if bias:
        arrays.append(rng.standard_normal(_n_out(case)))
    return arrays


def _n_out(case):
    """Output channels: weight (C_out, C_in/g, ...) for a conv, (C_in, C_out/g, ...) transposed."""
    _, w_shape, _, kwargs = case
    transposed = "output_padding" in kwargs  # conv_cases always passes it to transposed convs
    return w_shape[1] * kwargs.get("groups", 1) if transposed else w_shape[0]


def _callables(nd, transposed, kwargs):
    name = OPS[nd, transposed]
    ours, theirs = getattr(F, name), getattr(TF, name) if TF is not None else None
    reference = conv_transpose_reference if transposed else conv_reference

    def fn(x, w, b=None):
        return ours(x, w, b, **kwargs)

    def ref(x, w, b=None):
        return reference(x, w, b, **kwargs)

    def torch_fn(x, w, b=None):
        return theirs(x, w, b, **kwargs)
    return fn, ref, (torch_fn if theirs is not None else None)


# -- forward and gradients, every argument together ------------------------------------------------
@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "transposed"])
@given(data=st.data())
def test_against_reference_torch_and_finite_differences(nd, transposed, data):
    case = data.draw(conv_cases(nd, transposed), label="case")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    fn, ref, torch_fn = _callables(nd, transposed, case[3])
    arrays = _arrays(case, seed)
    y = check_op(fn, arrays, reference=ref, torch_fn=torch_fn)
    x_shape = case[0]
    assert y.ndim == len(x_shape) and y.shape[-nd - 1] == _n_out(case)
    _check_exact_derivatives(fn, ref, arrays, seed)


def _check_exact_derivatives(fn, ref, arrays, seed):
    """A convolution is linear in x, in w and in b separately, so its derivatives are evaluations
    of the naive reference, exact up to rounding (finite differences only resolve ~1e-7):

        <grad_x <u, f>, dx> = <u, f(dx, w)>,   <grad_w <u, f>, dw> = <u, f(x, dw)>,
        <grad_b <u, f>, db> = <u, f(0, w, db)>,
        d/dt [<grad_x, ax> + <grad_w, aw>](x + t dx, w + t dw) = <u, f(ax, dw)> + <u, f(dx, aw)>.
    """
    rng = np.random.default_rng(seed + 1)
    x, w = arrays[:2]
    ts = [tinygen.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*ts)
    u = rng.standard_normal(out.shape)
    gs = tinygen.grad(out, ts, grad_outputs=tinygen.tensor(u), create_graph=True)
    dx, dw, ax, aw = (rng.standard_normal(a.shape) for a in (x, w, x, w))

    def dot(a, b):
        return float(np.sum(a * b))

    def on_u(r):  # <u, r> and the size of its terms, for the rounding allowance
        return dot(u, r), float(np.sum(np.abs(u * r)))
    checks = [("grad x", dot(gs[0].detach().numpy(), dx), [on_u(ref(dx, w))]),
              ("grad w", dot(gs[1].detach().numpy(), dw), [on_u(ref(x, dw))])]
    if len(arrays) == 3:
        db = rng.standard_normal(arrays[2].shape)
        checks.append(("grad b", dot(gs[2].numpy(), db), [on_u(ref(np.zeros_like(x), w, db))]))
    s = (gs[0] * tinygen.tensor(ax)).sum() + (gs[1] * tinygen.tensor(aw)).sum()
    hx, hw = tinygen.grad(s, ts[:2], allow_unused=True)
    hx = np.zeros_like(x) if hx is None else hx.numpy()
    hw = np.zeros_like(w) if hw is None else hw.numpy()
    checks.append(("second order", dot(hx, dx) + dot(hw, dw),
                   [on_u(ref(ax, dw)), on_u(ref(dx, aw))]))
    for what, analytic, parts in checks:
        exact = sum(p[0] for p in parts)
        scale = 1.0 + sum(p[1] for p in parts)
        assert abs(analytic - exact) <= 1e-11 * scale, \
            f"{what}: {analytic!r} vs exact {exact!r} (terms of size {scale:.3g})"


@needs_torch
@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "transposed"])
@given(data=st.data())
def test_double_backward_against_torch(nd, transposed, data):
    """grad of <dL/dx, vx> + <dL/dw, vw> with respect to x and w, through create_graph=True."""
    case = data.draw(conv_cases(nd, transposed), label="case")
    arrays = _arrays(case, data.draw(st.integers(0, 2**16), label="seed"))
    fn, _, torch_fn = _callables(nd, transposed, case[3])
    rng = np.random.default_rng(1)
    ours = [tinygen.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    y, ty = fn(*ours), torch_fn(*theirs)
    u = rng.standard_normal(y.shape)
    vs = [rng.standard_normal(a.shape) for a in arrays[:2]]
    gs = tinygen.grad(y, ours, grad_outputs=tinygen.tensor(u), create_graph=True)
    tgs = torch.autograd.grad(ty, theirs, grad_outputs=torch.tensor(u), create_graph=True)
    for g, tg in zip(gs, tgs):
        np.testing.assert_allclose(g.detach().numpy(), tg.detach().numpy(), rtol=1e-10, atol=1e-10)
    s = (gs[0] * tinygen.tensor(vs[0])).sum() + (gs[1] * tinygen.tensor(vs[1])).sum()
    ts = (tgs[0] * torch.tensor(vs[0])).sum() + (tgs[1] * torch.tensor(vs[1])).sum()
    hs = tinygen.grad(s, ours[:2], allow_unused=True)
    ths = torch.autograd.grad(ts, theirs[:2], allow_unused=True)
    for h, th, a in zip(hs, ths, arrays):
        h = np.zeros_like(a) if h is None else h.numpy()
        th = np.zeros_like(a) if th is None else th.numpy()
        assert h.shape == a.shape
        np.testing.assert_allclose(h, th, rtol=1e-10, atol=1e-10)
    # conv is bilinear: d<gx, vx>/dw and d<gw, vw>/dx are not zero, so the check above has teeth
    # (unless every tap falls in the padding, when the output ignores x altogether)
    if np.any(fn(*ours[:2]).detach().numpy()):
        assert np.abs(ths[0].numpy()).max() > 0 and np.abs(ths[1].numpy()).max() > 0


@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "transposed"])
@given(data=st.data())
def test_third_order_through_the_weight_gradient(nd, transposed, data):
    """r(x) = <grad_x |dL/dw|^2, v> with L = <f(x, w), u>: differentiating r needs the backward
    of the weight-gradient op with respect to its incoming gradient (a third derivative of f)."""
    case = data.draw(conv_cases(nd, transposed), label="case")
    x, w = _arrays(case, data.draw(st.integers(0, 2**16), label="seed"))[:2]
    fn, _, torch_fn = _callables(nd, transposed, case[3])
    rng = np.random.default_rng(2)
    u = rng.standard_normal(fn(tinygen.tensor(x), tinygen.tensor(w)).shape)
    v, dx = rng.standard_normal(x.shape), rng.standard_normal(x.shape)

    def r_and_grad(xa, lib):
        if lib is torch:
            xt, wt = torch.tensor(xa, requires_grad=True), torch.tensor(w, requires_grad=True)
            (gw,) = torch.autograd.grad(torch_fn(xt, wt), wt, torch.tensor(u), create_graph=True)
            (gx,) = torch.autograd.grad((gw * gw).sum(), xt, create_graph=True)
            r = (gx * torch.tensor(v)).sum()
            (h,) = torch.autograd.grad(r, xt)
            return float(r.detach()), h.numpy()
        xt, wt = tinygen.tensor(xa, requires_grad=True), tinygen.tensor(w, requires_grad=True)
        (gw,) = tinygen.grad(fn(xt, wt), wt, grad_outputs=tinygen.tensor(u), create_graph=True)
        (gx,) = tinygen.grad((gw * gw).sum(), xt, create_graph=True)
        r = (gx * tinygen.tensor(v)).sum()
        (h,) = tinygen.grad(r, xt, allow_unused=True)
        return float(r.detach().numpy()), np.zeros_like(xa) if h is None else h.detach().numpy()

    _, h = r_and_grad(x, tinygen)
    eps = 1e-6  # r is quadratic in x: the central difference is exact up to rounding
    numeric = (r_and_grad(x + eps * dx, tinygen)[0] - r_and_grad(x - eps * dx, tinygen)[0]) / \
        (2 * eps)
    analytic = float(np.sum(h * dx))
    assert abs(analytic - numeric) <= 1e-6 * max(abs(analytic), abs(numeric)) + 1e-6, \
        (analytic, numeric)
    # PyTorch 2.x cannot take this third derivative of a transposed conv with output_padding > 0
    # ("output_padding is not supported for non-transposed convolutions"): no oracle there
    if torch is not None and not any(_per_axis(case[3].get("output_padding", 0), nd)):
        _, th = r_and_grad(x, torch)
        np.testing.assert_allclose(h, th, rtol=1e-10, atol=1e-10 * (1 + np.abs(th).max()))


@pytest.mark.parametrize("nd", [1, 2])
@given(data=st.data())
def test_transposed_conv_is_the_adjoint_of_conv(nd, data):
    """<conv(x, w), y> == <x, conv_transpose(y, w)> for the same stride/padding/dilation/groups,
    with the output_padding that restores x's size."""
    x_shape, w_shape, _, kw = data.draw(conv_cases(nd, False), label="case")
    if isinstance(kw["padding"], str):
        return  # the transposed conv takes ints only; covered by the int cases
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    conv = F.conv1d if nd == 1 else F.conv2d
    conv_t = F.conv_transpose1d if nd == 1 else F.conv_transpose2d
    y = conv(tinygen.tensor(x), tinygen.tensor(w), **kw).numpy()
    s, p, d = (_per_axis(kw[k], nd) for k in ("stride", "padding", "dilation"))
    k = w_shape[2:]
    out_pad = tuple((x_shape[-nd + a] + 2 * p[a] - d[a] * (k[a] - 1) - 1) % s[a]
                    for a in range(nd))
    v = rng.standard_normal(y.shape)
    xt = conv_t(tinygen.tensor(v), tinygen.tensor(w), stride=kw["stride"], padding=kw["padding"],
                output_padding=out_pad, groups=kw["groups"], dilation=kw["dilation"]).numpy()
    assert xt.shape == x.shape
    lhs, rhs = float(np.sum(y * v)), float(np.sum(x * xt))
    assert abs(lhs - rhs) <= 1e-10 * (1 + np.sum(np.abs(y * v)))


# -- the kernels' other paths: row-shift GEMMs and batch chunks ------------------------------------
ROW_CASES = [  # (transposed, x shape, w shape, kwargs): large enough for the row-shift path
    (False, (2, 16, 8, 9), (16, 16, 3, 3), dict(padding=1)),
    (False, (2, 32, 8, 11), (8, 16, 3, 2), dict(stride=(1, 2), padding=(2, 1), dilation=(2, 1),
                                                groups=2)),
    (True, (2, 16, 8, 8), (16, 8, 3, 3), dict(padding=1, output_padding=0)),
    (True, (1, 32, 9, 9), (32, 16, 2, 3), dict(padding=(2, 1), dilation=(1, 2), groups=2,
                                               output_padding=(0, 1))),
]


@pytest.mark.parametrize("transposed, x_shape, w_shape, kwargs", ROW_CASES)
def test_row_shift_path(monkeypatch, transposed, x_shape, w_shape, kwargs):
    if DEVICE != "cpu":
        pytest.skip("spies on the CPU kernels' row-shift path; the op runs on the CUDA kernels")
    hits = []
    for name in ("_conv_rows", "_weight_rows"):
        original = getattr(cpu_conv, name)

        def spy(*args, _original=original, _name=name):
            hits.append(_name)
            return _original(*args)
        monkeypatch.setattr(cpu_conv, name, spy)
    rng = np.random.default_rng(3)
    case = (x_shape, w_shape, True, kwargs)
    arrays = [rng.standard_normal(x_shape), rng.standard_normal(w_shape),
              rng.standard_normal(_n_out(case))]
    fn, ref, torch_fn = _callables(2, transposed, kwargs)
    check_op(fn, arrays, reference=ref, torch_fn=torch_fn, second_order=False, float32=True)
    assert "_conv_rows" in hits, "the row-shift path was not exercised; adjust the shapes"
    if not transposed:
        assert "_weight_rows" in hits, "the row-shift weight gradient was not exercised"


@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "transposed"])
@pytest.mark.parametrize("big", [False, True], ids=["im2col", "rows"])
def test_batch_chunks(monkeypatch, transposed, big):
    """One sample per chunk (a tiny chunk budget) gives the same results as one chunk."""
    rng = np.random.default_rng(4)
    c = 16 if big else 2
    x = rng.standard_normal((3, c, 8, 9))
    w = rng.standard_normal((c, 4, 3, 3)) if transposed else rng.standard_normal((4, c, 3, 3))
    kwargs = dict(padding=1) if big else dict(stride=2, padding=1, dilation=(1, 2))
    if transposed and not big:
        kwargs["output_padding"] = 1
    fn, ref, _ = _callables(2, transposed, kwargs)
    whole = [g.detach().numpy() for g in _value_and_grads(fn, x, w)]
    monkeypatch.setattr(cpu_conv, "_CHUNK_BYTES", 1)
    chunked = [g.detach().numpy() for g in _value_and_grads(fn, x, w)]
    np.testing.assert_allclose(chunked[0], ref(x, w), rtol=1e-10, atol=1e-10)
    for a, b in zip(whole, chunked):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def _value_and_grads(fn, x, w):
    xt, wt = tinygen.tensor(x, requires_grad=True), tinygen.tensor(w, requires_grad=True)
    y = fn(xt, wt)
    u = np.random.default_rng(5).standard_normal(y.shape)
    return (y,) + tuple(tinygen.grad(y, [xt, wt], grad_outputs=tinygen.tensor(u)))


# -- argument errors -------------------------------------------------------------------------------
def _z(*shape, dtype=np.float64):
    return tinygen.tensor(np.zeros(shape, dtype=dtype))


ERRORS = [  # (op, args, kwargs, pattern the ValueError message must match)
    # input rank
    ("conv1d", ((5,), (2, 3, 2)), {}, r"input must have shape \(N, C, L\).*got shape \(5,\)"),
    ("conv2d", ((1, 2, 3, 5, 5), (2, 2, 2, 2)), {},
     r"input must have shape \(N, C, H, W\).*got shape \(1, 2, 3, 5, 5\)"),
    ("conv_transpose1d", ((5,), (2, 3, 2)), {}, r"input must have shape.*got shape \(5,\)"),
    ("conv_transpose2d", ((2, 5), (2, 3, 2, 2)), {}, r"input must have shape.*\(2, 5\)"),
    # weight rank
    ("conv2d", ((1, 2, 5, 5), (2, 2, 3)), {}, r"weight must have 4 axes, got shape \(2, 2, 3\)"),
    ("conv_transpose1d", ((1, 2, 5), (2, 3)), {}, r"weight must have 3 axes.*\(2, 3\)"),
    # channels not divisible by groups
    ("conv1d", ((1, 3, 5), (4, 1, 2)), dict(groups=2),
     r"in_channels \(3\).*divisible by groups \(2\).*\(1, 3, 5\).*\(4, 1, 2\)"),
    ("conv2d", ((1, 4, 5, 5), (3, 2, 2, 2)), dict(groups=2),
     r"out_channels \(3\).*groups \(2\).*\(1, 4, 5, 5\).*\(3, 2, 2, 2\)"),
    ("conv_transpose1d", ((1, 3, 5), (3, 1, 2)), dict(groups=2),
     r"in_channels \(3\).*divisible by groups \(2\).*\(1, 3, 5\).*\(3, 1, 2\)"),
    # weight / input channel mismatch
    ("conv1d", ((1, 3, 5), (2, 4, 2)), {},
     r"weight of shape \(2, 4, 2\) expects 4 input channels.*\(1, 3, 5\) has 3"),
    ("conv2d", ((1, 4, 5, 5), (2, 1, 2, 2)), dict(groups=2),
     r"weight of shape \(2, 1, 2, 2\) expects 2 input channels.*\(1, 4, 5, 5\) has 4"),
    ("conv_transpose1d", ((1, 3, 5), (2, 4, 2)), {},
     r"weight of shape \(2, 4, 2\) expects 2 input channels.*\(1, 3, 5\) has 3"),
    ("conv_transpose2d", ((3, 5, 5), (4, 1, 2, 2)), {},
     r"weight of shape \(4, 1, 2, 2\) expects 4 input channels.*\(1, 3, 5, 5\) has 3"),
    # groups
    ("conv1d", ((1, 2, 5), (2, 2, 2)), dict(groups=0), r"groups must be a positive int, got 0"),
    ("conv_transpose2d", ((1, 2, 5, 5), (2, 2, 2, 2)), dict(groups=-1), r"groups.*-1"),
    # stride / dilation / padding values
    ("conv1d", ((1, 2, 5), (2, 2, 2)), dict(stride=0), r"stride must be positive, got 0"),
    ("conv2d", ((1, 2, 5, 5), (2, 2, 2, 2)), dict(stride=(1, -1)),
     r"stride must be positive, got \(1, -1\)"),
    ("conv_transpose1d", ((1, 2, 5), (2, 2, 2)), dict(stride=0), r"stride must be positive"),
    ("conv1d", ((1, 2, 5), (2, 2, 2)), dict(dilation=0), r"dilation must be positive, got 0"),
    ("conv_transpose2d", ((1, 2, 5, 5), (2, 2, 2, 2)), dict(dilation=(0, 1)),
     r"dilation must be positive, got \(0, 1\)"),
    ("conv1d", ((1, 2, 5), (2, 2, 2)), dict(padding=-1), r"padding must be non-negative, got -1"),
    ("conv2d", ((1, 2, 5, 5), (2, 2, 2, 2)), dict(padding=(0, -2)),
     r"padding must be non-negative, got \(0, -2\)"),
    ("conv_transpose1d", ((1, 2, 5), (2, 2, 2)), dict(padding=-1), r"padding must be non-neg"),
    ("conv_transpose1d", ((1, 2, 5), (2, 2, 2)), dict(output_padding=-1),
     r"output_padding must be non-negative"),
    ("conv2d", ((1, 2, 5, 5), (2, 2, 2, 2)), dict(stride=(1, 2, 3)),
     r"stride must be an int or a tuple of 2 ints, got \(1, 2, 3\)"),
    # kernel larger than the padded input
    ("conv1d", ((1, 2, 3), (2, 2, 5)), {},
     r"kernel \(size \(5,\).*extent 5.*larger than the padded input \(spatial shape \(3,\), "
     r"padded 3"),
    ("conv2d", ((1, 2, 5, 4), (2, 2, 3, 3)), dict(dilation=(1, 2)),
     r"kernel \(size \(3, 3\).*extent 5 on axis 1.*\(5, 4\), padded 4 on axis 1"),
    ("conv1d", ((2, 2), (2, 2, 5)), dict(padding=1), r"larger than the padded input.*padded 4"),
    # transposed output of size <= 0
    ("conv_transpose1d", ((1, 2, 2), (2, 2, 2)), dict(padding=2),
     r"output would have size -1 on axis 0.*input spatial shape \(2,\), kernel \(2,\)"),
    ("conv_transpose1d", ((1, 2, 1), (2, 2, 2)), dict(padding=1),
     r"output would have size 0 on axis 0.*input spatial shape \(1,\), kernel \(2,\)"),
    ("conv_transpose2d", ((1, 2, 1, 3), (2, 2, 1, 1)), dict(padding=(1, 0)),
     r"output would have size -1 on axis 0.*\(1, 3\), kernel \(1, 1\)"),
    # output_padding not smaller than stride or dilation
    ("conv_transpose1d", ((1, 2, 5), (2, 2, 2)), dict(stride=2, output_padding=2),
     r"output_padding \(2,\) must be smaller than either stride \(2,\) or dilation \(1,\)"),
    ("conv_transpose2d", ((1, 2, 5, 5), (2, 2, 2, 2)), dict(stride=(3, 1), dilation=(1, 2),
                                                           output_padding=(1, 2)),
     r"output_padding \(1, 2\).*stride \(3, 1\).*dilation \(1, 2\) \(axis 1\)"),
    # padding strings
    ("conv1d", ((1, 2, 5), (2, 2, 2)), dict(stride=2, padding="same"),
     r"padding='same' is not supported for strided convolutions \(stride=\(2,\)\)"),
    ("conv2d", ((1, 2, 5, 5), (2, 2, 2, 2)), dict(stride=(1, 2), padding="same"),
     r"padding='same'.*stride=\(1, 2\)"),
    ("conv2d", ((1, 2, 5, 5), (2, 2, 2, 2)), dict(padding="full"),
     r"padding must be an int, a tuple of ints, 'valid' or 'same', got 'full'"),
    ("conv_transpose2d", ((1, 2, 5, 5), (2, 2, 2, 2)), dict(padding="same"),
     r"padding must be an int or a tuple of ints for transposed convolutions, got 'same'"),
    # bias of the wrong shape
    ("conv1d", ((1, 2, 5), (3, 2, 2), (2,)), {}, r"bias must have shape \(3,\), got \(2,\)"),
    ("conv2d", ((2, 5, 5), (4, 2, 2, 2), (1, 4)), {}, r"bias must have shape \(4,\), got \(1, 4\)"),
    ("conv_transpose1d", ((1, 2, 5), (2, 3, 2), (2,)), dict(groups=2),
     r"bias must have shape \(6,\), got \(2,\)"),
    ("conv_transpose2d", ((1, 2, 5, 5), (2, 3, 2, 2), (2,)), {},
     r"bias must have shape \(3,\), got \(2,\)"),
    # an empty kernel
    ("conv1d", ((1, 2, 5), (3, 2, 0)), {}, r"weight.*kernel.*\(3, 2, 0\)"),
    ("conv_transpose2d", ((1, 2, 5, 5), (2, 3, 2, 0)), {}, r"weight.*kernel.*\(2, 3, 2, 0\)"),
]


@pytest.mark.parametrize("op, shapes, kwargs, pattern", ERRORS,
                         ids=[f"{e[0]}-{i}" for i, e in enumerate(ERRORS)])
def test_argument_errors(op, shapes, kwargs, pattern):
    tensors = [_z(*s) for s in shapes]
    with pytest.raises(ValueError, match=pattern) as info:
        getattr(F, op)(*tensors, **kwargs)
    assert op in str(info.value)  # the message names the function
    if torch is not None:  # PyTorch rejects the same calls
        with pytest.raises((ValueError, RuntimeError, TypeError)):
            getattr(TF, op)(*[torch.zeros(s, dtype=torch.float64) for s in shapes], **kwargs)


@pytest.mark.parametrize("op", sorted(OPS.values()))
def test_dtype_errors(op):
    nd = 2 if op.endswith("2d") else 1
    x_shape, w_shape = (1, 2) + (4,) * nd, (2, 2) + (2,) * nd
    fn = getattr(F, op)
    with pytest.raises(TypeError, match=r"float32 and float64"):
        fn(_z(*x_shape, dtype=np.float32), _z(*w_shape))
    with pytest.raises(TypeError, match=r"float64 and float32"):
        fn(_z(*x_shape), _z(*w_shape, dtype=np.float32))
    with pytest.raises(TypeError, match=r"int64"):
        fn(_z(*x_shape, dtype=np.int64), _z(*w_shape, dtype=np.int64))
    with pytest.raises(TypeError, match=r"bias.*float64.*float32"):
        fn(_z(*x_shape, dtype=np.float32), _z(*w_shape, dtype=np.float32), _z(2))
    with pytest.raises(TypeError, match=r"input must be a Tensor"):
        fn(np.zeros(x_shape), _z(*w_shape))
    with pytest.raises(TypeError, match=r"weight must be a Tensor"):
        fn(_z(*x_shape), np.zeros(w_shape))
