"""optim: SGD, Adam, AdamW against hand-written NumPy update rules (always) and PyTorch (when
installed), parameter groups, state dicts, version counters and error messages."""
import copy

import numpy as np
import pytest

import tinygen
from tinygen import nn, optim
from conftest import torch

# -- a gradient that depends on the current parameters (so errors cannot cancel) ----------------
SHAPES = [(3, 4), (5,), ()]


def grad_fn(p, c):
    """A nonlinear, bounded-growth gradient field: 2 tanh(p) + 0.3 p + c."""
    return 2.0 * np.tanh(p) + 0.3 * p + c


def initial_values(seed=0):
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(s) for s in SHAPES]
    offsets = [rng.standard_normal(s) for s in SHAPES]
    return values, offsets


def make_params(values, layout="contiguous"):
    """Parameters holding copies of ``values``; ``layout="strided"`` gives non-contiguous
    arrays (the optimizers' generic array-module path instead of the fused CPU kernel)."""
    params = []
    for v in values:
        if layout == "strided" and v.ndim == 2:
            arr = np.asfortranarray(v)
        elif layout == "strided" and v.ndim == 1:
            arr = np.zeros(2 * v.size)[::2]
            arr[...] = v
        else:
            arr = np.array(v)
        p = nn.Parameter(tinygen.from_numpy(arr))
        assert (layout == "strided") != arr.flags.c_contiguous or arr.ndim == 0
        params.append(p)
    return params


# -- NumPy reference rules, written from PyTorch's documented algorithms ---------------------------
def reference_run(kind, values, offsets, steps, **hp):
    """Parameters after ``steps`` updates of optimizer ``kind`` ("sgd", "adam", "adamw")."""
    ps = [np.array(v, dtype=np.float64) for v in values]
    states = [{} for _ in ps]
    lr = hp.get("lr", 1e-3)
    wd = hp.get("weight_decay", 0.0 if kind != "adamw" else 1e-2)
    for _ in range(steps):
        for i, (p, c, st) in enumerate(zip(ps, offsets, states)):
            g = grad_fn(p, c)
            if hp.get("maximize"):
                g = -g
            if kind == "sgd":
                mom, damp = hp.get("momentum", 0.0), hp.get("dampening", 0.0)
                if wd:
                    g = g + wd * p
                if mom:
                    st["buf"] = g.copy() if "buf" not in st else mom * st["buf"] + (1 - damp) * g
                    g = g + mom * st["buf"] if hp.get("nesterov") else st["buf"]
                ps[i] = p - lr * g
            else:
                b1, b2 = hp.get("betas", (0.9, 0.999))
                eps = hp.get("eps", 1e-8)
                if wd and kind == "adamw":
                    p = p * (1 - lr * wd)
                elif wd:
                    g = g + wd * p
                t = st["t"] = st.get("t", 0) + 1
                m = st["m"] = b1 * st.get("m", 0.0) + (1 - b1) * g
                v = st["v"] = b2 * st.get("v", 0.0) + (1 - b2) * g * g
                if hp.get("amsgrad"):
                    v = st["vmax"] = np.maximum(st.get("vmax", 0.0), v)
                denom = np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps
                ps[i] = p - lr / (1 - b1 ** t) * m / denom
    return ps


def run_ours(opt, params, offsets, steps):
    for _ in range(steps):
        opt.zero_grad()
        for p, c in zip(params, offsets):
            p.grad = tinygen.tensor(grad_fn(p.detach().numpy(), c))
        opt.step()
    return [p.detach().numpy().copy() for p in params]


def run_torch(cls, values, offsets, steps, **hp):
    ps = [torch.nn.Parameter(torch.tensor(np.array(v, dtype=np.float64))) for v in values]
    opt = cls(ps, **hp)
    for _ in range(steps):
        opt.zero_grad()
        for p, c in zip(ps, offsets):
            p.grad = torch.tensor(grad_fn(p.detach().numpy(), c))
        opt.step()
    return [p.detach().numpy() for p in ps], opt


CASES = [
    ("sgd", dict(lr=0.1)),
    ("sgd", dict(lr=0.1, momentum=0.9)),
    ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("sgd", dict(lr=0.1, momentum=0.5, dampening=0.3, weight_decay=0.1)),
    ("sgd", dict(lr=0.02, momentum=0.9, weight_decay=0.05, maximize=True)),
    ("adam", dict(lr=0.1)),
    ("adam", dict(lr=0.1, amsgrad=True)),
    ("adam", dict(lr=0.05, weight_decay=0.1)),
    ("adam", dict(lr=0.05, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.05, amsgrad=True)),
    ("adam", dict(lr=0.05, maximize=True)),
    ("adamw", dict(lr=0.1)),
    ("adamw", dict(lr=0.1, weight_decay=0.1, amsgrad=True)),
]
CLASSES = {"sgd": optim.SGD, "adam": optim.Adam, "adamw": optim.AdamW}


def _tol(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("kind,hp", CASES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(CASES)])
def test_update_rules_match_reference_and_torch(kind, hp, layout):
    values, offsets = initial_values()
    params = make_params(values, layout)
    ours = run_ours(CLASSES[kind](params, **hp), params, offsets, 10)
    ref = reference_run(kind, values, offsets, 10, **hp)
    for o, r, v in zip(ours, ref, values):
        assert not np.allclose(o, v)  # the parameters did move
        _tol(o, r)
    if torch is not None:
        tcls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
        theirs, _ = run_torch(tcls[kind], values, offsets, 10, **hp)
        for o, t in zip(ours, theirs):
            _tol(o, t)


def test_float32_parameters_stay_float32_and_track_float64():
    values, offsets = initial_values()
    p32 = [nn.Parameter(tinygen.tensor(v.astype(np.float32))) for v in values]
    ours = run_ours(optim.Adam(p32, lr=0.05, amsgrad=True), p32, offsets, 10)
    ref = reference_run("adam", [v.astype(np.float32) for v in values], offsets, 10, lr=0.05,
                        amsgrad=True)
    for o, r in zip(ours, ref):
        assert o.dtype == np.float32
        np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-5)


# -- a real model: engine gradients + optimizer, against PyTorch ----------------------------------
def _mlp_pair():
    tinygen.manual_seed(0)
    ours = nn.Sequential(nn.Linear(3, 8, dtype=np.float64), nn.Tanh(),
                         nn.Linear(8, 2, dtype=np.float64))
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(),
                                 torch.nn.Linear(8, 2)).double()
    with torch.no_grad():
        for p, q in zip(ours.parameters(), theirs.parameters()):
            q.copy_(torch.tensor(p.detach().numpy()))
    return ours, theirs


@pytest.mark.skipif(torch is None, reason="PyTorch oracle not installed")
@pytest.mark.parametrize("name,hp", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
                                     ("Adam", dict(lr=0.05, amsgrad=True)),
                                     ("AdamW", dict(lr=0.05, weight_decay=0.1))])
def test_tiny_mlp_training_matches_torch(name, hp):
    ours, theirs = _mlp_pair()
    opt_o = getattr(optim, name)(ours.parameters(), **hp)
    opt_t = getattr(torch.optim, name)(theirs.parameters(), **hp)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 3)), rng.standard_normal((16, 2))
    for _ in range(10):
        opt_o.zero_grad()
        tinygen.functional.mse_loss(ours(tinygen.tensor(x)), tinygen.tensor(y)).backward()
        opt_o.step()
        opt_t.zero_grad()
        torch.nn.functional.mse_loss(theirs(torch.tensor(x)), torch.tensor(y)).backward()
        opt_t.step()
    for p, q in zip(ours.parameters(), theirs.parameters()):
        _tol(p.detach().numpy(), q.detach().numpy())


# -- step semantics -------------------------------------------------------------------------------
def test_step_is_in_place_bumps_versions_and_skips_params_without_grad():
    a = nn.Parameter(tinygen.tensor(np.ones(3)))
    b = nn.Parameter(tinygen.tensor(np.ones(2)))
    opt = optim.SGD([a, b], lr=0.5)
    array, version = a.array, a._version
    y = (a * a).sum()  # saves a for its backward
    a.grad = tinygen.tensor(np.ones(3))
    opt.step()
    assert a.array is array and a._version == version + 1
    np.testing.assert_array_equal(a.detach().numpy(), 0.5)
    np.testing.assert_array_equal(b.detach().numpy(), 1.0)  # no gradient: untouched, no state
    assert b not in opt.state and b._version == 0
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.backward()


def test_gradient_of_the_wrong_shape_is_refused():
    p = nn.Parameter(tinygen.zeros(4))
    p.grad = tinygen.zeros(2)
    with pytest.raises(RuntimeError, match=r"shape \(4,\) has a gradient of shape \(2,\)"):
        optim.Adam([p]).step()


def test_closure_and_zero_grad():
    p = nn.Parameter(tinygen.tensor(np.array([1.0, -2.0])))
    opt = optim.Adam([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    with tinygen.no_grad():  # the closure still records its graph
        loss = opt.step(closure)
    assert loss.item() == 5.0 and opt.state[p]["step"] == 1
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(p.grad.numpy(), 0.0)
    opt.zero_grad()
    assert p.grad is None


def test_param_groups_defaults_and_lr_changes():
    values, offsets = initial_values()
    params = make_params(values)
    opt = optim.SGD([{"params": params[:2]}, {"params": params[2:], "lr": 0.01}], lr=0.1,
                    momentum=0.9)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[1]["lr"] == 0.01
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[1]["nesterov"] is False
    ours = run_ours(opt, params, offsets, 5)
    ref_a = reference_run("sgd", values[:2], offsets[:2], 5, lr=0.1, momentum=0.9)
    ref_b = reference_run("sgd", values[2:], offsets[2:], 5, lr=0.01, momentum=0.9)
    for o, r in zip(ours, ref_a + ref_b):
        _tol(o, r)
    # a changed learning rate takes effect at the next step (schedulers do this)
    extra = nn.Parameter(tinygen.tensor(np.zeros(2)))
    opt.add_param_group({"params": [extra], "lr": 1.0, "momentum": 0.0})
    extra.grad = tinygen.tensor(np.ones(2))
    opt.param_groups[2]["lr"] = 2.0
    opt.step()
    np.testing.assert_array_equal(extra.detach().numpy(), -2.0)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [extra]})


def test_named_parameters_are_accepted():
    lin = nn.Linear(2, 2)
    opt = optim.Adam(lin.named_parameters())
    group = opt.param_groups[0]
    assert len(group["params"]) == 2
    assert group["params"][0] is lin.weight and group["params"][1] is lin.bias
    assert opt.param_groups[0]["param_names"] == ["weight", "bias"]


# -- state dicts ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,hp", [("sgd", dict(lr=0.1, momentum=0.9, nesterov=True)),
                                     ("adam", dict(lr=0.05, amsgrad=True, weight_decay=0.1)),
                                     ("adamw", dict(lr=0.05))])
def test_state_dict_round_trip_continues_identically(kind, hp):
    values, offsets = initial_values()
    params = make_params(values)
    opt = CLASSES[kind](params, **hp)
    run_ours(opt, params, offsets, 3)
    saved = opt.state_dict()
    snapshot = copy.deepcopy(saved)
    assert sorted(saved["state"]) == [0, 1, 2]
    assert saved["param_groups"][0]["params"] == [0, 1, 2]
    # a new optimizer (other hyperparameters) over copies of the parameters
    clones = make_params([p.detach().numpy() for p in params])
    other = CLASSES[kind](clones, lr=123.0)
    other.load_state_dict(saved)
    assert other.param_groups[0]["lr"] == hp["lr"]
    a = run_ours(opt, params, offsets, 5)
    b = run_ours(other, clones, offsets, 5)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    # later steps changed neither the saved dict nor the state the clone was given
    for idx, entry in snapshot["state"].items():
        for k, v in entry.items():
            np.testing.assert_array_equal(saved["state"][idx][k], v)
    # and the result is what an uninterrupted run gives
    for x, r in zip(a, reference_run(kind, values, offsets, 8, **hp)):
        _tol(x, r)


@pytest.mark.skipif(torch is None, reason="PyTorch oracle not installed")
def test_state_dict_layout_and_values_match_torch():
    values, offsets = initial_values()
    params = make_params(values)
    opt = optim.Adam(params, lr=0.05, amsgrad=True)
    run_ours(opt, params, offsets, 4)
    _, topt = run_torch(torch.optim.Adam, values, offsets, 4, lr=0.05, amsgrad=True)
    ours, theirs = opt.state_dict(), topt.state_dict()
    assert ours["param_groups"][0]["params"] == theirs["param_groups"][0]["params"]
    assert set(ours["param_groups"][0]) <= set(theirs["param_groups"][0])
    for idx, entry in theirs["state"].items():
        assert set(ours["state"][idx]) == set(entry)
        assert ours["state"][idx]["step"] == int(entry["step"])
        for k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            _tol(ours["state"][idx][k], entry[k].numpy())


def test_load_state_dict_accepts_tensors():
    values, offsets = initial_values()
    params = make_params(values)
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    run_ours(opt, params, offsets, 2)
    saved = opt.state_dict()
    # Tensors, and Fortran-ordered arrays (copied into the parameter's own layout)
    saved["state"] = {i: {k: tinygen.tensor(v) if i else np.asfortranarray(v)
                          for k, v in e.items()} for i, e in saved["state"].items()}
    clones = make_params([p.detach().numpy() for p in params])
    other = optim.SGD(clones, lr=0.1, momentum=0.9)
    other.load_state_dict(saved)
    buf = other.state[clones[1]]["momentum_buffer"]
    assert isinstance(buf, np.ndarray) and buf is not saved["state"][1]["momentum_buffer"].array
    assert other.state[clones[0]]["momentum_buffer"].flags.c_contiguous
    for x, y in zip(run_ours(opt, params, offsets, 2), run_ours(other, clones, offsets, 2)):
        np.testing.assert_array_equal(x, y)


def test_load_state_dict_errors():
    values, offsets = initial_values()
    params = make_params(values)
    opt = optim.Adam(params)
    run_ours(opt, params, offsets, 1)
    saved = opt.state_dict()
    with pytest.raises(ValueError, match="1 parameter groups, the optimizer has 2"):
        optim.Adam([{"params": params[:1]}, {"params": params[1:]}]).load_state_dict(saved)
    with pytest.raises(ValueError, match="parameter group 0 has 3 parameters in the state dict, "
                                         "2 in the optimizer"):
        optim.Adam(params[:2]).load_state_dict(saved)
    swapped = make_params([values[1], values[0], values[2]])
    with pytest.raises(ValueError, match=r"state 'exp_avg' of parameter 0 has shape \(3, 4\), "
                                         r"but the parameter has shape \(5,\)"):
        optim.Adam(swapped).load_state_dict(saved)
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"params": []})


# -- validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,match", [
    (lambda ps: optim.SGD(ps, lr=-0.1), "invalid learning rate -0.1"),
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=-1), "invalid momentum"),
    (lambda ps: optim.SGD(ps, lr=0.1, weight_decay=-1), "invalid weight_decay"),
    (lambda ps: optim.SGD(ps, lr=0.1, nesterov=True), "nesterov momentum requires"),
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
     "nesterov momentum requires"),
    (lambda ps: optim.Adam(ps, betas=(1.0, 0.999)), r"betas must be in \[0, 1\)"),
    (lambda ps: optim.Adam(ps, betas=(0.9, -0.1)), r"betas must be in \[0, 1\)"),
    (lambda ps: optim.Adam(ps, eps=-1e-8), "invalid eps"),
    (lambda ps: optim.AdamW(ps, weight_decay=-0.1), "invalid weight_decay"),
    (lambda ps: optim.Adam(ps, lr=float("nan")), "invalid learning rate"),
    (lambda ps: optim.Adam([{"params": ps, "lr": -1.0}]), "invalid learning rate -1.0"),
    (lambda ps: optim.SGD([], lr=0.1), "empty parameter list"),
    (lambda ps: optim.SGD(ps + ps[:1], lr=0.1), "more than once in one group"),
])
def test_hyperparameter_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make(make_params(initial_values()[0]))


def test_type_errors():
    p = nn.Parameter(tinygen.zeros(2))
    with pytest.raises(TypeError, match="single Tensor"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(TypeError, match="ordered collection"):
        optim.SGD([{"params": {p}}], lr=0.1)
    with pytest.raises(TypeError, match="can only optimize Tensors"):
        optim.SGD([np.zeros(2)], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([p * 2], lr=0.1)
    with pytest.raises(TypeError, match="floating point"):
        optim.SGD([tinygen.tensor([1, 2])], lr=0.1)


def test_repr():
    text = repr(optim.Adam([nn.Parameter(tinygen.zeros(1))], lr=0.01))
    assert text.startswith("Adam (") and "Parameter Group 0" in text and "lr: 0.01" in text
