"""nn: Module machinery, Parameter, containers, layers against PyTorch, BatchNorm, Dropout, init,
clip_grad_norm_, loss modules and a short training run."""
import copy
import math
import pickle
from collections import OrderedDict

import numpy as np
import pytest

import tinygen
from tinygen import nn
from conftest import torch

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch oracle not installed")


class Net(nn.Module):
    def __init__(self, dtype=None):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 4, dtype=dtype), nn.Tanh(),
                                  nn.Linear(4, 2, dtype=dtype))
        self.head = nn.Linear(2, 1, bias=False, dtype=dtype)
        self.shared = self.head  # the same module twice: its parameters count once
        self.register_buffer("steps", tinygen.tensor(0))
        self.register_buffer("scratch", tinygen.zeros(2), persistent=False)

    def forward(self, x):
        return self.head(self.body(x))


# -- Module machinery ------------------------------------------------------------------------------
def test_registration_and_traversal():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias",
                     "head.weight"]
    assert len(list(net.parameters())) == 5
    assert [n for n, _ in net.named_parameters(prefix="net")][0] == "net.body.0.weight"
    assert list(net.parameters(recurse=False)) == []
    assert [n for n, _ in net.named_buffers()] == ["steps", "scratch"]
    # PyTorch's order: own buffers, then children; a module under two names appears twice
    assert list(net.state_dict()) == ["steps"] + names + ["shared.weight"]
    assert [n for n, _ in net.named_children()] == ["body", "head"]
    assert [n for n, _ in net.named_modules()] == ["", "body", "body.0", "body.1", "body.2",
                                                   "head"]
    assert len(list(net.modules())) == 6 and len(list(net.children())) == 2
    with pytest.raises(TypeError, match="cannot assign Tensor to parameter 'weight'"):
        net.head.weight = tinygen.zeros(1, 2)
    with pytest.raises(TypeError, match="cannot assign int to module 'head'"):
        net.head = 3
    with pytest.raises(TypeError, match="cannot assign list to buffer 'steps'"):
        net.steps = [1]
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        net.missing
    with pytest.raises(KeyError, match="contain no '.'"):
        net.register_buffer("a.b", tinygen.zeros(1))
    with pytest.raises(KeyError, match="attribute 'body' already exists"):
        net.register_buffer("body", tinygen.zeros(1))
    with pytest.raises(TypeError, match="must be a Parameter or None"):
        net.register_parameter("w", tinygen.zeros(1))
    # re-assigning and deleting
    net.head.bias = nn.Parameter(tinygen.zeros(1))
    assert "head.bias" in dict(net.named_parameters())
    del net.head.bias
    assert "head.bias" not in dict(net.named_parameters())
    net.extra = tinygen.zeros(3)  # a plain Tensor attribute is not registered
    assert "extra" not in net.state_dict()


def test_shared_parameter_counted_once():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    b.weight = a.weight
    seq = nn.Sequential(a, b)
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "1.bias"]
    assert len(list(tinygen.optim.SGD(seq.parameters(), lr=0.1).param_groups[0]["params"])) == 3


def test_train_eval_recursion_and_apply():
    class Frozen(nn.Module):  # a child overriding train() is honoured, as in PyTorch
        def __init__(self):
            super().__init__()
            self.inner = nn.Dropout(0.5)

        def train(self, mode=True):
            return super().train(False)

    net = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Dropout(0.1), Frozen()))
    net.eval()
    assert all(not m.training for m in net.modules())
    net.train()
    assert net.training and net[1][0].training
    assert not net[1][1].training and not net[1][1].inner.training
    with pytest.raises(ValueError, match="mode must be a bool"):
        net.train("yes")
    visited = []
    net.apply(lambda m: visited.append(type(m).__name__))
    assert visited == ["Linear", "Dropout", "Dropout", "Frozen", "Sequential", "Sequential"]


def test_zero_grad_and_requires_grad():
    net = Net()
    net(tinygen.randn(5, 3)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(np.all(p.grad.numpy() == 0) for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())
    assert not net(tinygen.randn(5, 3)).requires_grad


def test_state_dict_round_trip_gives_identical_outputs():
    tinygen.manual_seed(1)
    a = Net()
    tinygen.manual_seed(2)
    b = Net()
    x = tinygen.randn(4, 3)
    assert not np.allclose(a(x).detach().numpy(), b(x).detach().numpy())
    weight, array, version = b.body[0].weight, b.body[0].weight.array, b.body[0].weight._version
    result = b.load_state_dict(a.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    np.testing.assert_array_equal(a(x).detach().numpy(), b(x).detach().numpy())
    # in place: same Parameter, same memory, version bumped
    assert b.body[0].weight is weight and weight.array is array and weight._version > version
    arrays = {k: v.numpy().copy() for k, v in a.state_dict().items()}
    c = Net()
    c.load_state_dict(arrays)  # plain arrays work too
    np.testing.assert_array_equal(a(x).detach().numpy(), c(x).detach().numpy())


def test_state_dict_tensors_are_detached_views():
    net = Net()
    sd = net.state_dict()
    assert not sd["body.0.weight"].requires_grad and sd["body.0.weight"].is_leaf
    assert np.shares_memory(sd["body.0.weight"].detach().numpy(), net.body[0].weight.detach().numpy())
    assert net.state_dict(keep_vars=True)["body.0.weight"] is net.body[0].weight


def test_load_state_dict_errors():
    net = Net()
    sd = net.state_dict()
    bad = OrderedDict(sd)
    del bad["head.weight"]
    bad["extra"] = tinygen.zeros(1)
    with pytest.raises(RuntimeError, match="missing keys: head.weight.*unexpected keys: extra"):
        net.load_state_dict(bad)
    missing, unexpected = net.load_state_dict(bad, strict=False)
    assert missing == ["head.weight"] and unexpected == ["extra"]
    wrong = OrderedDict(sd)
    wrong["body.0.weight"] = np.zeros((2, 2))
    before = net.body[0].bias.detach().numpy().copy()
    wrong["body.0.bias"] = np.full(4, 7.0)
    with pytest.raises(RuntimeError, match=r"body.0.weight: expected shape \(4, 3\), got \(2, 2\)"):
        net.load_state_dict(wrong, strict=False)  # shapes are checked even when not strict
    np.testing.assert_array_equal(net.body[0].bias.detach().numpy(), before)  # nothing was copied
    with pytest.raises(TypeError, match="expected a mapping"):
        net.load_state_dict([1, 2])


def test_load_state_dict_casts_into_the_existing_dtype():
    net = Net()  # float32
    sd = {k: v.numpy().astype(np.float64) + 1.0 if v.dtype.kind == "f" else v.numpy()
          for k, v in Net(dtype=np.float64).state_dict().items()}
    net.load_state_dict(sd)
    assert net.body[0].weight.dtype == np.float32
    np.testing.assert_allclose(net.body[0].weight.detach().numpy(), sd["body.0.weight"], rtol=1e-6)


def test_repr_matches_torch_text():
    net = Net()
    text = repr(net)
    assert text.startswith("Net(\n  (body): Sequential(\n    (0): Linear(in_features=3, "
                           "out_features=4, bias=True)\n")
    assert "(head): Linear(in_features=2, out_features=1, bias=False)" in text
    assert repr(nn.Parameter(tinygen.zeros(2))).startswith("Parameter containing:\ntensor(")

    def build(lib):
        n = lib.nn
        return n.Sequential(n.Linear(3, 4), n.ReLU(), n.BatchNorm1d(4), n.LeakyReLU(0.2),
                            n.Dropout(0.1), n.Softplus(), n.ELU(), n.Softmax(dim=1),
                            n.LogSoftmax(1), n.Flatten(), n.Unflatten(1, (2, 2)), n.Identity(),
                            n.Sigmoid(), n.Tanh(),
                            n.BatchNorm2d(2, momentum=None, affine=False),
                            n.ModuleList([n.Linear(1, 1)]),
                            n.ModuleDict({"a": n.Linear(1, 2, bias=False)}), n.MSELoss(),
                            n.CrossEntropyLoss(), n.GaussianNLLLoss())
    ours = repr(build(tinygen))
    assert "(14): BatchNorm2d(2, eps=1e-05, momentum=None, " \
        "affine=False, bias=False, track_running_stats=True)" in ours
    if torch is not None:
        assert ours == repr(build(torch))


def test_to_float64_keeps_objects_and_converts_grads():
    net = Net()
    net(tinygen.randn(2, 3)).sum().backward()
    w = net.head.weight
    version = w._version
    assert net.to(np.float64) is net
    assert net.head.weight is w and w.dtype == np.float64 and w._version == version + 1
    assert w.grad.dtype == np.float64
    assert net.steps.dtype == np.int64  # integer buffers keep their dtype
    assert net.scratch.dtype == np.float64
    assert net(tinygen.randn(2, 3, dtype=np.float64)).dtype == np.float64
    net.to("float32")
    assert w.dtype == np.float32 and net.float() is net
    assert net.to(np.float32) is net and w._version == version + 2  # no-op: no bump
    with pytest.raises(TypeError, match="floating dtype"):
        net.to(np.int64)
    with pytest.raises(TypeError, match="neither a device"):
        net.to("gpu0")


def test_module_pickle_and_deepcopy():
    net = Net()
    x = tinygen.randn(3, 3)
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert clone.body[0].weight is not net.body[0].weight
        assert not np.shares_memory(clone.body[0].weight.detach().numpy(), net.body[0].weight.detach().numpy())
        assert isinstance(clone.body[0].weight, nn.Parameter) and clone.body[0].weight.requires_grad
        np.testing.assert_array_equal(clone(x).detach().numpy(), net(x).detach().numpy())
        assert clone.shared is clone.head  # sharing survives


# -- Parameter and containers ---------------------------------------------------------------------
def test_parameter():
    t = tinygen.zeros(2)
    p = nn.Parameter(t)
    assert p.requires_grad and p.is_leaf and isinstance(p, tinygen.Tensor)
    assert p.array is t.array  # a Tensor's memory is shared, as in PyTorch
    assert p.dtype == np.float32 and nn.Parameter([1.0, 2.0]).dtype == np.float32
    arr = np.ones(3)
    q = nn.Parameter(arr, requires_grad=False)
    assert not q.requires_grad and q.dtype == np.float64 and q.array is not arr
    assert (p * 2).grad_fn is not None and type(p * 2) is tinygen.Tensor
    with pytest.raises(RuntimeError, match="only floating point"):
        nn.Parameter(tinygen.tensor([1, 2]))
    assert nn.Parameter(tinygen.tensor([1, 2]), requires_grad=False).dtype == np.int64


def test_sequential():
    seq = nn.Sequential(OrderedDict([("a", nn.Linear(2, 2)), ("b", nn.ReLU())]))
    assert [n for n, _ in seq.named_children()] == ["a", "b"]
    assert isinstance(seq[0], nn.Linear) and isinstance(seq[-1], nn.ReLU) and len(seq) == 2
    sub = seq[1:]
    assert isinstance(sub, nn.Sequential) and [n for n, _ in sub.named_children()] == ["b"]
    seq.append(nn.Identity())
    assert len(seq) == 3 and [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Identity"]
    with pytest.raises(IndexError, match="index 3 is out of range for Sequential of length 3"):
        seq[3]
    s = nn.Sequential(nn.Tanh(), nn.ReLU())
    s.insert(1, nn.Sigmoid())
    s[0] = nn.Identity()
    del s[2]
    assert [type(m).__name__ for m in s] == ["Identity", "Sigmoid"]
    assert [n for n, _ in s.named_children()] == ["0", "1"]
    x = tinygen.tensor(np.array([[-1.0, 2.0]], np.float32))
    np.testing.assert_allclose(seq(x).detach().numpy(), np.maximum(seq[0](x).detach().numpy(), 0))


def test_module_list_and_dict():
    ml = nn.ModuleList([nn.Linear(1, 1), nn.Linear(1, 1)])
    ml.append(nn.Linear(1, 2)).extend([nn.ReLU()])
    assert len(list(ml.parameters())) == 6 and len(ml[1:]) == 3 and isinstance(ml[-1], nn.ReLU)
    assert [n for n, _ in ml.named_parameters()][-1] == "2.bias"
    md = nn.ModuleDict({"x": nn.Linear(1, 1)})
    md["y"] = nn.Linear(1, 1)
    md.update([("z", nn.Tanh())])
    assert list(md) == ["x", "y", "z"] and "x" in md and len(md) == 3
    assert [n for n, _ in md.named_parameters()] == ["x.weight", "x.bias", "y.weight", "y.bias"]
    assert isinstance(md.pop("z"), nn.Tanh)
    del md["y"]
    assert list(md.keys()) == ["x"]


# -- layers against PyTorch (float64, weights copied in) -----------------------------------------
def copy_into_torch(ours, theirs):
    with torch.no_grad():
        for (n1, p1), (n2, p2) in zip(ours.named_parameters(), theirs.named_parameters()):
            assert n1 == n2
            p2.copy_(torch.tensor(p1.detach().numpy()))


def compare_with_torch(ours, theirs, x, tol=1e-10):
    """Outputs, input gradients and parameter gradients of a module pair (float64)."""
    copy_into_torch(ours, theirs)
    xo, xt = tinygen.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yo, yt = ours(xo), theirs(xt)
    np.testing.assert_allclose(yo.detach().numpy(), yt.detach().numpy(), rtol=tol, atol=tol)
    u = np.random.default_rng(1).standard_normal(yo.shape)
    (yo * tinygen.tensor(u)).sum().backward()
    (yt * torch.tensor(u)).sum().backward()
    np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), rtol=tol, atol=tol)
    for (n, p1), p2 in zip(ours.named_parameters(), theirs.parameters()):
        np.testing.assert_allclose(p1.grad.numpy(), p2.grad.numpy(), rtol=tol, atol=tol,
                                   err_msg=n)


@needs_torch
@pytest.mark.parametrize("make,shape", [
    (lambda lib: lib.nn.Sequential(lib.nn.Linear(5, 4), lib.nn.ReLU(), lib.nn.Linear(4, 3),
                                   lib.nn.Sigmoid()), (6, 5)),
    (lambda lib: lib.nn.Linear(5, 3), (2, 3, 5)),  # batch axes
    (lambda lib: lib.nn.Sequential(lib.nn.Linear(5, 3, bias=False), lib.nn.Tanh(),
                                   lib.nn.Softplus(beta=2.0), lib.nn.ELU(0.5),
                                   lib.nn.LeakyReLU(0.1), lib.nn.LogSoftmax(1)), (6, 5)),
    (lambda lib: lib.nn.Sequential(lib.nn.Unflatten(1, (1, 5)), lib.nn.Flatten(),
                                   lib.nn.Identity(), lib.nn.Softmax(-1)), (6, 5)),
    (lambda lib: lib.nn.Sequential(lib.nn.Flatten(0, 1), lib.nn.Softplus(0.5, threshold=1.0)),
     (2, 3, 5)),
    (lambda lib: lib.nn.BatchNorm1d(5), (6, 5)),
    (lambda lib: lib.nn.BatchNorm1d(3, momentum=None), (4, 3, 5)),
    (lambda lib: lib.nn.BatchNorm2d(3), (4, 3, 2, 3)),
    (lambda lib: lib.nn.BatchNorm2d(3, affine=False), (4, 3, 2, 3)),
])
def test_layers_match_torch(make, shape):
    ours, theirs = make(tinygen).to(np.float64), make(torch).double()
    if hasattr(ours, "weight") and ours.weight is not None and ours.weight.ndim == 1:
        rng = np.random.default_rng(2)  # BatchNorm: non-trivial affine parameters
        with tinygen.no_grad():
            ours.weight.copy_(rng.uniform(0.5, 2.0, ours.weight.shape))
            ours.bias.copy_(rng.standard_normal(ours.bias.shape))
    x = np.random.default_rng(0).standard_normal(shape) * 2 + 0.5
    compare_with_torch(ours, theirs, x)


def _softmax(x, axis):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


# (module factory, NumPy reference of its forward) on inputs of shape (3, 4, 6); the modules
# with parameters (Linear, BatchNorm1d) read them in their reference
LAYER_REFS = [
    (lambda: nn.Linear(6, 5, dtype=np.float64),
     lambda m, x: x @ m.weight.detach().numpy().T + m.bias.detach().numpy()),
    (lambda: nn.Linear(6, 2, bias=False, dtype=np.float64), lambda m, x: x @ m.weight.detach().numpy().T),
    (lambda: nn.ReLU(), lambda m, x: np.maximum(x, 0)),
    (lambda: nn.LeakyReLU(0.1), lambda m, x: np.where(x >= 0, x, 0.1 * x)),
    (lambda: nn.Sigmoid(), lambda m, x: 1 / (1 + np.exp(-x))),
    (lambda: nn.Tanh(), lambda m, x: np.tanh(x)),
    (lambda: nn.Softplus(2.0, threshold=1.0),
     lambda m, x: np.where(2 * x > 1.0, x, np.log1p(np.exp(2 * x)) / 2)),
    (lambda: nn.ELU(0.5), lambda m, x: np.where(x > 0, x, 0.5 * (np.exp(x) - 1))),
    (lambda: nn.Softmax(1), lambda m, x: _softmax(x, 1)),
    (lambda: nn.LogSoftmax(-1), lambda m, x: np.log(_softmax(x, -1))),
    (lambda: nn.Flatten(), lambda m, x: x.reshape(3, 24)),
    (lambda: nn.Flatten(0, 1), lambda m, x: x.reshape(12, 6)),
    (lambda: nn.Unflatten(2, (2, -1)), lambda m, x: x.reshape(3, 4, 2, 3)),
    (lambda: nn.Identity(), lambda m, x: x),
    (lambda: nn.Dropout(0.5).eval(), lambda m, x: x),
    (lambda: nn.BatchNorm1d(4, dtype=np.float64),
     lambda m, x: (x - x.mean((0, 2), keepdims=True)) / np.sqrt(x.var((0, 2), keepdims=True)
                                                                + 1e-5)),
]


@pytest.mark.parametrize("make,reference", LAYER_REFS)
def test_layers_forward_reference_and_finite_differences(make, reference):
    """Without PyTorch too: forward against NumPy, and the gradient of <u, f> with respect to
    the input and every parameter against central differences along random directions."""
    rng = np.random.default_rng(0)
    module = make()
    for p in module.parameters():  # non-trivial values (BatchNorm starts at 1 and 0)
        with tinygen.no_grad():
            p.copy_(rng.uniform(0.5, 1.5, p.shape))
    x = rng.standard_normal((3, 4, 6))
    xt = tinygen.tensor(x, requires_grad=True)
    y = module(xt)
    ref = reference(module, x)
    if isinstance(module, nn.BatchNorm1d):
        ref = ref * module.weight.detach().numpy()[:, None] + module.bias.detach().numpy()[:, None]
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-12, atol=1e-12)
    u = tinygen.tensor(rng.standard_normal(y.shape))
    (y * u).sum().backward()

    def objective():
        with tinygen.no_grad():
            return float((module(xt) * u).sum().item())

    h = 1e-6
    for t in [xt] + list(module.parameters()):
        d = rng.standard_normal(t.shape)
        analytic = float((t.grad.numpy() * d).sum())
        base = t.detach().numpy().copy()
        with tinygen.no_grad():
            t.copy_(base + h * d)
            up = objective()
            t.copy_(base - h * d)
            down = objective()
            t.copy_(base)
        assert analytic == pytest.approx((up - down) / (2 * h), rel=1e-6, abs=1e-8)


def reference_batch_norm(x, steps, momentum, eps=1e-5):
    """NumPy reference: outputs of each training step and the final running statistics."""
    axes = (0,) + tuple(range(2, x[0].ndim))
    c = x[0].shape[1]
    rm, rv, outs = np.zeros(c), np.ones(c), []
    for k in range(steps):
        xb = x[k]
        mu, var = xb.mean(axis=axes), xb.var(axis=axes)
        n = xb.size // c
        m = 1.0 / (k + 1) if momentum is None else momentum
        rm = (1 - m) * rm + m * mu
        rv = (1 - m) * rv + m * var * n / (n - 1)
        shape = (1, c) + (1,) * (xb.ndim - 2)
        outs.append((xb - mu.reshape(shape)) / np.sqrt(var.reshape(shape) + eps))
    return outs, rm, rv


@pytest.mark.parametrize("cls,shape", [(nn.BatchNorm1d, (6, 3)), (nn.BatchNorm1d, (4, 3, 5)),
                                       (nn.BatchNorm2d, (4, 3, 2, 2))])
@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_batchnorm_train_and_eval(cls, shape, momentum):
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(shape) * (k + 1) + k for k in range(4)]
    bn = cls(3, momentum=momentum, dtype=np.float64)
    outs = [bn(tinygen.tensor(x)).detach().numpy() for x in xs]
    ref, rm, rv = reference_batch_norm(xs, 4, momentum)
    for o, r in zip(outs, ref):
        np.testing.assert_allclose(o, r, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bn.running_mean.numpy(), rm, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.numpy(), rv, rtol=1e-12)
    assert bn.num_batches_tracked.item() == 4
    bn.eval()
    y = bn(tinygen.tensor(xs[0])).detach().numpy()
    assert bn.num_batches_tracked.item() == 4  # evaluation changes nothing
    np.testing.assert_allclose(bn.running_mean.numpy(), rm, rtol=1e-12)
    cshape = (1, 3) + (1,) * (len(shape) - 2)
    np.testing.assert_allclose(y, (xs[0] - rm.reshape(cshape)) / np.sqrt(rv.reshape(cshape) + 1e-5),
                               rtol=1e-10)
    if torch is not None:
        tb = getattr(torch.nn, cls.__name__)(3, momentum=momentum).double()
        for x in xs:
            tb(torch.tensor(x))
        np.testing.assert_allclose(bn.running_mean.numpy(), tb.running_mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(bn.running_var.numpy(), tb.running_var.numpy(), rtol=1e-12)
        tb.eval()
        np.testing.assert_allclose(y, tb(torch.tensor(xs[0])).detach().numpy(), rtol=1e-10)
    bn.reset_running_stats()
    assert bn.num_batches_tracked.item() == 0 and np.all(bn.running_var.numpy() == 1)


def test_batchnorm_errors_defaults_and_no_running_stats():
    with pytest.raises(ValueError, match=r"expected 4-D input, got shape \(2, 3\)"):
        nn.BatchNorm2d(3)(tinygen.zeros(2, 3))
    with pytest.raises(ValueError, match=r"expected 2-D or 3-D input, got shape \(2, 3, 4, 5\)"):
        nn.BatchNorm1d(3)(tinygen.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match="has 2 channels"):
        nn.BatchNorm1d(3)(tinygen.zeros(4, 2))
    bn = nn.BatchNorm2d(4)
    assert bn.weight.dtype == np.float32 and bn.running_mean.dtype == np.float32
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var",
                                     "num_batches_tracked"]
    bn = nn.BatchNorm1d(2, track_running_stats=False, affine=False).eval()
    x = np.random.default_rng(0).standard_normal((5, 2))
    y = bn(tinygen.tensor(x)).numpy()  # batch statistics even in eval
    np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), rtol=1e-10)
    assert list(bn.state_dict()) == [] and list(bn.parameters()) == []


# -- Dropout --------------------------------------------------------------------------------------
def test_dropout_statistics_scaling_and_eval():
    p = 0.25
    d = nn.Dropout(p, generator=tinygen.Generator(0))
    x = tinygen.ones(200, 200, dtype=np.float64, requires_grad=True)
    y = d(x)
    kept = y.detach().numpy() != 0
    assert abs(kept.mean() - (1 - p)) < 0.01  # 40,000 draws: std of the fraction ~0.002
    np.testing.assert_allclose(y.detach().numpy()[kept], 1 / (1 - p), rtol=1e-15)
    y.sum().backward()  # the gradient is the same scaled mask
    np.testing.assert_array_equal(x.grad.detach().numpy(), y.detach().numpy())
    d.eval()
    assert d(x) is x
    assert nn.Dropout(0.0)(x) is x
    assert np.all(nn.Dropout(1.0)(x).detach().numpy() == 0)
    for bad in (-0.1, 1.5, "0.5"):
        with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\]"):
            nn.Dropout(bad)


def test_dropout_reproducible_with_seeded_generators():
    x = tinygen.ones(50, 50)
    a = nn.Dropout(0.5, generator=tinygen.Generator(7))(x).numpy()
    b = nn.Dropout(0.5, generator=tinygen.Generator(7))(x).numpy()
    c = nn.Dropout(0.5, generator=tinygen.Generator(8))(x).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    tinygen.manual_seed(3)
    d1 = nn.Dropout(0.5)(x).numpy()
    tinygen.manual_seed(3)
    np.testing.assert_array_equal(d1, nn.Dropout(0.5)(x).numpy())


# -- init -----------------------------------------------------------------------------------------
def test_init_statistics():
    g = tinygen.Generator(0)
    w = tinygen.empty(300, 200, dtype=np.float64)  # fan_in 200, fan_out 300
    nn.init.uniform_(w, -0.3, 0.7, generator=g)
    assert w.numpy().min() >= -0.3 and w.numpy().max() < 0.7
    assert abs(w.numpy().mean() - 0.2) < 0.005
    nn.init.normal_(w, 1.0, 0.5, generator=g)
    assert abs(w.numpy().mean() - 1.0) < 0.005 and abs(w.numpy().std() - 0.5) < 0.005
    nn.init.xavier_uniform_(w, generator=g)
    bound = math.sqrt(6 / 500)
    assert np.abs(w.numpy()).max() <= bound and np.abs(w.numpy()).max() > 0.99 * bound
    nn.init.xavier_normal_(w, gain=2.0, generator=g)
    assert abs(w.numpy().std() / (2 * math.sqrt(2 / 500)) - 1) < 0.01
    nn.init.kaiming_uniform_(w, mode="fan_out", nonlinearity="relu", generator=g)
    bound = math.sqrt(2) * math.sqrt(3 / 300)
    assert np.abs(w.numpy()).max() <= bound and np.abs(w.numpy()).max() > 0.99 * bound
    nn.init.kaiming_normal_(w, a=0.2, generator=g)  # leaky_relu, fan_in
    assert abs(w.numpy().std() / (math.sqrt(2 / 1.04) / math.sqrt(200)) - 1) < 0.01
    nn.init.constant_(w, 0.5)
    assert np.all(w.numpy() == 0.5)
    assert np.all(nn.init.zeros_(w).numpy() == 0) and np.all(nn.init.ones_(w).numpy() == 1)
    with pytest.raises(ValueError, match="mode must be 'fan_in' or 'fan_out'"):
        nn.init.kaiming_uniform_(w, mode="fan_avg")


def test_init_in_place_on_parameters_and_generator_reproducibility():
    p = nn.Parameter(tinygen.zeros(4, 5))
    array, version = p.array, p._version
    assert nn.init.kaiming_uniform_(p, generator=tinygen.Generator(1)) is p  # grad mode is on
    assert p.array is array and p._version == version + 1 and p.requires_grad
    q = nn.Parameter(tinygen.zeros(4, 5))
    nn.init.kaiming_uniform_(q, generator=tinygen.Generator(1))
    np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


def test_fans_and_gains():
    fan = nn.init._calculate_fan_in_and_fan_out
    assert fan(tinygen.empty(4, 3)) == (3, 4)
    assert fan(tinygen.empty(8, 3, 5, 5)) == (75, 200)
    with pytest.raises(ValueError, match="at least 2 axes"):
        fan(tinygen.empty(3))
    assert nn.init.calculate_gain("tanh") == 5 / 3
    assert nn.init.calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / 1.04)
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        nn.init.calculate_gain("swish")
    if torch is not None:
        for name in ("linear", "conv2d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"):
            assert nn.init.calculate_gain(name) == pytest.approx(
                torch.nn.init.calculate_gain(name), rel=1e-15)
        assert fan(tinygen.empty(8, 3, 5, 5)) == \
            torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(8, 3, 5, 5))


def test_linear_default_init_follows_pytorch():
    lin = nn.Linear(300, 200)
    gain = math.sqrt(2 / (1 + 5))  # calculate_gain("leaky_relu", sqrt(5))
    bound = math.sqrt(3) * gain / math.sqrt(300)  # = 1/sqrt(fan_in)
    assert bound == pytest.approx(1 / math.sqrt(300))
    w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    assert lin.weight.dtype == np.float32 and lin.bias.shape == (200,)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.01  # uniform, not normal
    assert np.abs(b).max() <= 1 / math.sqrt(300) and np.abs(b).max() > 0.9 / math.sqrt(300)
    if torch is not None:
        tw = torch.nn.Linear(300, 200).weight.detach().numpy()
        assert np.abs(tw).max() <= bound and np.abs(tw).max() > 0.99 * bound
    tinygen.manual_seed(3)
    a = nn.Linear(4, 4).weight.detach().numpy()
    tinygen.manual_seed(3)
    np.testing.assert_array_equal(a, nn.Linear(4, 4).weight.detach().numpy())
    lin.reset_parameters(generator=tinygen.Generator(5))
    other = nn.Linear(300, 200)
    other.reset_parameters(generator=tinygen.Generator(5))
    np.testing.assert_array_equal(lin.weight.detach().numpy(), other.weight.detach().numpy())
    with pytest.raises(ValueError, match="in_features must be a non-negative int"):
        nn.Linear(2.5, 3)


# -- clip_grad_norm_ ------------------------------------------------------------------------------
def _params_with_grads(grads):
    ps = [nn.Parameter(tinygen.zeros(*g.shape, dtype=np.float64)) for g in grads]
    for p, g in zip(ps, grads):
        p.grad = tinygen.tensor(g)
    return ps


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_reference(norm_type, max_norm):
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(s) * 5 for s in ((3, 2), (4,), ())]
    model = nn.Module()
    for i, p in enumerate(_params_with_grads(grads)):
        setattr(model, f"p{i}", p)
    model.p3 = nn.Parameter(tinygen.zeros(2))  # no gradient: skipped
    old = [p.grad.array for p in model.parameters() if p.grad is not None]
    total = nn.utils.clip_grad_norm_(model.parameters(), max_norm, norm_type)  # a generator
    flat = np.concatenate([g.ravel() for g in grads])
    expected = np.abs(flat).max() if norm_type == math.inf else \
        (np.abs(flat) ** norm_type).sum() ** (1 / norm_type)
    assert isinstance(total, tinygen.Tensor) and total.shape == ()
    assert total.item() == pytest.approx(expected, rel=1e-12)
    coef = min(1.0, max_norm / (expected + 1e-6))
    for p, g in zip(model.parameters(), grads):
        np.testing.assert_allclose(p.grad.numpy(), g * coef, rtol=1e-12)
    for a, g in zip(old, grads):  # the old gradient arrays were not written to
        np.testing.assert_array_equal(a, g)
    assert model.p3.grad is None
    if torch is not None:
        tps = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
        for p, g in zip(tps, grads):
            p.grad = torch.tensor(g)
        t_total = torch.nn.utils.clip_grad_norm_(tps, max_norm, norm_type)
        assert total.item() == pytest.approx(t_total.item(), rel=1e-12)
        for p, q in zip(model.parameters(), tps):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-12)


def test_clip_grad_norm_edge_cases():
    ps = _params_with_grads([np.array([3.0, 4.0])])
    assert nn.utils.clip_grad_norm_(ps[0], 1.0).item() == pytest.approx(5.0)  # one Tensor
    np.testing.assert_allclose(ps[0].grad.numpy(), [0.6, 0.8], rtol=1e-6)
    assert nn.utils.clip_grad_norm_([nn.Parameter(tinygen.zeros(2))], 1.0).item() == 0.0
    bad = _params_with_grads([np.array([np.nan, 1.0]), np.array([1.0])])
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_(bad, 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError, match="norm_type must be positive"):
        nn.utils.clip_grad_norm_(bad, 1.0, norm_type=0)
    f32 = nn.Parameter(tinygen.zeros(3))
    f32.grad = tinygen.full((3,), 10.0)
    nn.utils.clip_grad_norm_([f32], 1.0)
    assert f32.grad.dtype == np.float32


# -- losses ---------------------------------------------------------------------------------------
def test_loss_modules():
    x, t = tinygen.tensor(np.array([[0.2, 0.8]])), tinygen.tensor(np.array([[0.0, 1.0]]))
    assert nn.MSELoss()(x, t).item() == pytest.approx(0.04, abs=1e-15)
    assert nn.L1Loss(reduction="sum")(x, t).item() == pytest.approx(0.4, abs=1e-15)
    assert nn.MSELoss(reduction="none")(x, t).shape == (1, 2)
    bce = -(np.log(0.8) + np.log(0.8)) / 2
    assert nn.BCELoss()(x, t).item() == pytest.approx(bce, rel=1e-12)
    logits = tinygen.tensor(np.array([[2.0, 0.0, -1.0]]))
    ce = nn.CrossEntropyLoss()(logits, tinygen.tensor([0])).item()
    assert ce == pytest.approx(np.log(np.exp([2.0, 0.0, -1.0]).sum()) - 2.0, rel=1e-12)
    assert nn.NLLLoss()(logits, tinygen.tensor([1])).item() == 0.0
    w = nn.CrossEntropyLoss(weight=np.array([1.0, 2.0, 3.0]))
    assert "weight" in w.state_dict()  # class weights are buffers, as in PyTorch
    with pytest.raises(ValueError, match="reduction must be"):
        nn.MSELoss(reduction="avg")


@needs_torch
@pytest.mark.parametrize("name,kwargs,target", [
    ("MSELoss", {}, "real"), ("L1Loss", dict(reduction="sum"), "real"),
    ("BCELoss", dict(weight="w"), "prob"),
    ("BCEWithLogitsLoss", dict(pos_weight="pw", reduction="none"), "prob"),
    ("CrossEntropyLoss", dict(weight="cw"), "class"), ("CrossEntropyLoss", {}, "probs"),
    ("NLLLoss", dict(ignore_index=1), "class"),
])
def test_loss_modules_match_torch(name, kwargs, target):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4))
    if name == "BCELoss":
        x = 1 / (1 + np.exp(-x))
    if name == "NLLLoss":
        x = x - np.log(np.exp(x).sum(1, keepdims=True))
    y = {"real": rng.standard_normal((6, 4)), "prob": rng.uniform(0, 1, (6, 4)),
         "class": rng.integers(0, 4, 6), "probs": rng.dirichlet(np.ones(4), 6)}[target]
    extra = {"w": rng.uniform(0.5, 2, (6, 4)), "pw": rng.uniform(0.5, 2, 4),
             "cw": rng.uniform(0.5, 2, 4)}
    ko = {k: (tinygen.tensor(extra[v]) if isinstance(v, str) and v in extra else v)
          for k, v in kwargs.items()}
    kt = {k: (torch.tensor(extra[v]) if isinstance(v, str) and v in extra else v)
          for k, v in kwargs.items()}
    xo, xt = tinygen.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    lo = getattr(nn, name)(**ko)(xo, tinygen.tensor(y))
    lt = getattr(torch.nn, name)(**kt)(xt, torch.tensor(y))
    np.testing.assert_allclose(lo.detach().numpy(), lt.detach().numpy(), rtol=1e-10, atol=1e-12)
    lo.sum().backward()
    lt.sum().backward()
    np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("var_shape", [(5, 3), (5,), (5, 1), "float"])
@pytest.mark.parametrize("full,reduction", [(False, "mean"), (True, "none"), (False, "sum")])
def test_gaussian_nll_loss(var_shape, full, reduction):
    rng = np.random.default_rng(0)
    mu, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    if var_shape == "float":
        var = 0.7
        var_full = np.full((5, 3), 0.7)
    else:
        var = rng.uniform(0.1, 2.0, var_shape)
        var.flat[0] = 1e-9  # below eps: clamped in value, not in gradient (as PyTorch)
        var_full = np.broadcast_to(var.reshape(5, -1), (5, 3))
    mo = tinygen.tensor(mu, requires_grad=True)
    vo = var if var_shape == "float" else tinygen.tensor(var, requires_grad=True)
    loss = nn.GaussianNLLLoss(full=full, reduction=reduction)(mo, tinygen.tensor(y), vo)
    v = np.maximum(var_full, 1e-6)
    ref = 0.5 * (np.log(v) + (mu - y) ** 2 / v) + (0.5 * math.log(2 * math.pi) if full else 0)
    ref = {"mean": ref.mean(), "sum": ref.sum(), "none": ref}[reduction]
    np.testing.assert_allclose(loss.detach().numpy(), ref, rtol=1e-10)
    if torch is not None:
        mt = torch.tensor(mu, requires_grad=True)
        vt = var if var_shape == "float" else torch.tensor(var, requires_grad=True)
        lt = torch.nn.GaussianNLLLoss(full=full, reduction=reduction)(mt, torch.tensor(y), vt)
        np.testing.assert_allclose(loss.detach().numpy(), lt.detach().numpy(), rtol=1e-10)
        loss.sum().backward()
        lt.sum().backward()
        np.testing.assert_allclose(mo.grad.numpy(), mt.grad.numpy(), rtol=1e-10)
        if var_shape != "float":
            np.testing.assert_allclose(vo.grad.numpy(), vt.grad.numpy(), rtol=1e-9)


def test_gaussian_nll_loss_errors():
    g = nn.GaussianNLLLoss()
    x = tinygen.zeros(4, 3)
    with pytest.raises(ValueError, match="negative"):
        g(x, x, tinygen.full((4, 3), -1.0))
    with pytest.raises(ValueError, match=r"var has shape \(4, 2\)"):
        g(x, x, tinygen.ones(4, 2))


# -- end to end -----------------------------------------------------------------------------------
def test_mlp_trains_on_a_fixed_regression_problem():
    tinygen.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (256, 2)).astype(np.float32)
    y = (np.sin(x[:, :1]) * np.cos(x[:, 1:])).astype(np.float32)
    model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 1))
    opt = tinygen.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.MSELoss()
    xt, yt = tinygen.tensor(x), tinygen.tensor(y)
    first = None
    for _ in range(300):
        loss = loss_fn(model(xt), yt)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 20
    assert model[0].weight.dtype == np.float32
