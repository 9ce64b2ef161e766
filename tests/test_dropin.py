"""What PyTorch scripts need to run with only the import swapped: devices as objects, dtype
aliases and ``Size``, Tensor methods (view refusing copies, new_*, narrow, t, in-place unary ops,
addcmul_/addcdiv_, add/sub alpha), ``out += identity`` in a graph, ``tinygen.nn.functional``,
``tinygen.utils.data``, ``tinygen.save``/``load``, Adagrad/RMSprop/Adadelta and the
learning-rate schedulers against torch, Embedding/RNN/GRU against torch, Dropout2d,
cross-entropy with label smoothing."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygen
from tinygen import functional as F
from harness import arrays, check_op, shapes, torch

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is the oracle here")


# -- devices, dtypes, Size ---------------------------------------------------------------------------
def test_devices_are_objects_like_torch():
    dev = tinygen.device("cuda" if tinygen.cuda.is_available() else "cpu")
    x = tinygen.zeros(2, 3, device=dev)
    assert x.device == dev and x.device.type == str(dev).split(":")[0]
    cpu = tinygen.device("cpu")
    assert repr(cpu) == "device(type='cpu')" and cpu.index is None and str(cpu) == "cpu"
    cuda0 = tinygen.device("cuda", 0)
    assert str(cuda0) == "cuda:0" and cuda0.type == "cuda" and cuda0.index == 0
    assert tinygen.device("cuda:0") == cuda0 and repr(cuda0) == "device(type='cuda', index=0)"
    assert tinygen.zeros(1).device == "cpu" and not tinygen.zeros(1).is_cuda
    assert tinygen.zeros(1).to(cpu).device == cpu
    with pytest.raises(ValueError, match="'cpu' or 'cuda'"):
        tinygen.device("tpu")
    tinygen.backends.cudnn.benchmark = True          # accepted, no effect
    assert isinstance(tinygen.cuda.is_available(), bool)
    assert tinygen.cuda.device_count() == (1 if tinygen.cuda.is_available() else 0)


def test_dtype_aliases_and_size():
    assert tinygen.float == np.float32 and tinygen.long == np.int64 and tinygen.double == np.float64
    assert tinygen.zeros(2, dtype=tinygen.long).dtype == np.int64
    x = tinygen.zeros(2, 3)
    assert isinstance(x.shape, tinygen.Size) and x.shape == (2, 3) and x.size() == (2, 3)
    assert x.size().numel() == 6 and repr(x.shape) == "tinygen.Size([2, 3])"
    assert x.type(tinygen.double).dtype == np.float64 and x.type() == "float32"
    assert x.long().dtype == np.int64 and x.int().dtype == np.int32 and x.bool().dtype == np.bool_


# -- Tensor methods ------------------------------------------------------------------------------------
def test_view_refuses_a_non_contiguous_tensor_and_reshape_copies():
    x = tinygen.arange(6.0).reshape(2, 3)
    v = x.view(3, 2)
    v[0, 0] = 10.0                                   # a view writes through
    assert x[0, 0].item() == 10.0
    t = x.t()
    assert not t.is_contiguous()
    with pytest.raises(RuntimeError, match="reshape"):
        t.view(6)
    r = t.reshape(6)                                 # a copy
    np.testing.assert_array_equal(r.numpy(), x.numpy().T.reshape(6))
    assert t.contiguous().view(6).shape == (6,) and x.contiguous() is x
    assert x.view_as(tinygen.zeros(3, 2)).shape == (3, 2)
    if torch is not None:
        with pytest.raises(RuntimeError):
            torch.arange(6.0).reshape(2, 3).t().view(6)


@given(data=st.data())
def test_view_narrow_t_through_the_harness(data):
    x = data.draw(arrays(data.draw(shapes(min_dims=2, max_dims=2, min_side=2))))
    n = x.shape[1]
    check_op(lambda t: t.view(-1).narrow(0, 1, n) * t.t()[0].sum(), [x], second_order=True,
             reference=lambda v: v.reshape(-1)[1:1 + n] * v.T[0].sum(),
             torch_fn=(lambda t: t.view(-1).narrow(0, 1, n) * t.t()[0].sum())
             if torch is not None else None)


@needs_torch
def test_new_factories_inplace_unary_and_fused_updates_like_torch():
    rng = np.random.default_rng(0)
    v = rng.uniform(0.5, 2.0, (3, 4))
    x, tx = tinygen.tensor(v), torch.tensor(v)
    for name in ("new_zeros", "new_ones", "new_empty"):
        a, b = getattr(x, name)(2, 5), getattr(tx, name)(2, 5)
        assert a.shape == tuple(b.shape) and str(a.dtype) == str(b.dtype).replace("torch.", "")
    assert x.new_full((2,), 3.0).numpy().tolist() == [3.0, 3.0]
    assert x.new_tensor([1, 2]).dtype == np.float64
    for name in ("sqrt_", "exp_", "log_", "abs_", "neg_", "tanh_", "sigmoid_", "relu_", "sign_"):
        a, b = tinygen.tensor(v - 1.0), torch.tensor(v - 1.0)
        if name in ("sqrt_", "log_"):
            a, b = tinygen.tensor(v), torch.tensor(v)
        assert getattr(a, name)() is a
        getattr(b, name)()
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, err_msg=name)
    a, b = tinygen.tensor(v), torch.tensor(v)
    a.addcmul_(tinygen.tensor(v), tinygen.tensor(v), value=0.5).addcdiv_(
        tinygen.tensor(v), tinygen.tensor(v + 1), value=-2)
    b.addcmul_(torch.tensor(v), torch.tensor(v), value=0.5).addcdiv_(
        torch.tensor(v), torch.tensor(v + 1), value=-2)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)
    a.pow_(2).add_(1.0, alpha=3).sub_(tinygen.tensor(v), alpha=2)
    b.pow_(2).add_(1.0, alpha=3).sub_(torch.tensor(v), alpha=2)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)
    np.testing.assert_allclose(x.add(x, alpha=2).numpy(), tx.add(tx, alpha=2).numpy())
    np.testing.assert_allclose(x.sub(1.0, alpha=3).numpy(), tx.sub(1.0, alpha=3).numpy())
    p = tinygen.tensor(v, requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place"):
        p.exp_()


def test_augmented_assignment_in_a_graph_like_a_resnet_block():
    """``out += identity`` after a layer (PyTorch allows it there): gradients are right."""
    rng = np.random.default_rng(1)
    x = tinygen.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    w = tinygen.tensor(rng.standard_normal((3, 3)), requires_grad=True)
    out = x @ w
    identity = x
    out += identity
    out = out.relu()
    out *= 2.0
    gx, gw = tinygen.grad(out.sum(), [x, w])
    mask = ((x.detach().numpy() @ w.detach().numpy() + x.detach().numpy()) > 0) * 2.0
    np.testing.assert_allclose(gx.detach().numpy(), mask @ w.detach().numpy().T + mask, rtol=1e-12)
    np.testing.assert_allclose(gw.detach().numpy(), x.detach().numpy().T @ mask, rtol=1e-12)
    acc = tinygen.zeros(())                          # accumulating a loss into a plain tensor
    acc += (w * w).sum()
    (g,) = tinygen.grad(acc, [w])
    np.testing.assert_allclose(g.detach().numpy(), 2 * w.detach().numpy())
    leaf = tinygen.ones(2, requires_grad=True)       # as PyTorch: a leaf that requires grad
    with pytest.raises(RuntimeError, match="leaf"):
        leaf += 1.0
    i = (x @ w).long()
    with pytest.raises(RuntimeError):                # an int tensor cannot hold a float result
        y = x @ w
        i = y.detach().long()
        y2 = i
        y2 += x


def test_nn_functional_is_functional():
    import tinygen.nn.functional as NF
    assert NF is F and tinygen.nn.functional is F
    from tinygen.nn.functional import relu
    assert relu is F.relu


# -- data ------------------------------------------------------------------------------------------
def test_dataloader_batches_shuffle_drop_last_and_seeded_generator():
    from tinygen.utils.data import DataLoader, Dataset, TensorDataset
    x, y = tinygen.randn(10, 3), tinygen.arange(10)
    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True,
                        generator=tinygen.Generator(5))
    assert len(loader) == 3
    first = [b[1].numpy().tolist() for b in loader]
    assert sorted(sum(first, [])) == list(range(10)) and [len(b) for b in first] == [4, 4, 2]
    second = [b[1].numpy().tolist() for b in loader]
    assert first != second                            # a new order each epoch
    again = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True,
                       generator=tinygen.Generator(5))
    assert [b[1].numpy().tolist() for b in again] == first     # the same seed, the same order
    xb, yb = next(iter(DataLoader(TensorDataset(x, y), batch_size=4)))
    np.testing.assert_array_equal(xb.numpy(), x.numpy()[:4])
    assert len(DataLoader(TensorDataset(x, y), batch_size=4, drop_last=True)) == 2

    class Squares(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.full(2, i, dtype=np.float32), i, {"half": i / 2}

    batches = list(DataLoader(Squares(), batch_size=2, drop_last=True))
    assert len(batches) == 2
    feats, labels, extra = batches[1]
    assert feats.dtype == np.float32 and feats.shape == (2, 2) and labels.dtype == np.int64
    np.testing.assert_array_equal(labels.numpy(), [2, 3])
    assert extra["half"].dtype == np.float64 and extra["half"].numpy().tolist() == [1.0, 1.5]


def test_dataloader_over_tinygen_datasets_and_random_split():
    from tinygen.data.mnist import Dataset as Digits
    from tinygen.utils.data import DataLoader, random_split
    digits = Digits(np.random.default_rng(0).random((7, 1, 28, 28), dtype=np.float32),
                    np.arange(7, dtype=np.int64))
    images, labels = next(iter(DataLoader(digits, batch_size=5)))
    assert images.shape == (5, 1, 28, 28) and labels.numpy().tolist() == [0, 1, 2, 3, 4]
    tinygen.manual_seed(0)
    a, b = random_split(range(10), [0.7, 0.3])
    assert len(a) == 7 and len(b) == 3 and sorted(list(a) + list(b)) == list(range(10))
    with pytest.raises(ValueError, match="add up"):
        random_split(range(10), [3, 3])


# -- save / load -----------------------------------------------------------------------------------
def test_save_load_round_trips_state_dicts_without_pickle(tmp_path):
    model = tinygen.nn.Sequential(tinygen.nn.Linear(3, 4), tinygen.nn.BatchNorm1d(4))
    opt = tinygen.optim.Adam(model.parameters(), lr=1e-2)
    model(tinygen.randn(5, 3)).sum().backward()
    opt.step()
    sched = tinygen.optim.lr_scheduler.StepLR(opt, 2)
    path = tmp_path / "ckpt.pt"
    tinygen.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                  "scheduler": sched.state_dict(), "epoch": 7, "note": None,
                  "w": tinygen.ones(2, requires_grad=True)}, path)
    ck = tinygen.load(path, map_location=tinygen.device("cpu"))
    assert ck["epoch"] == 7 and ck["note"] is None and ck["w"].requires_grad
    fresh = tinygen.nn.Sequential(tinygen.nn.Linear(3, 4), tinygen.nn.BatchNorm1d(4))
    fresh.load_state_dict(ck["model"])
    for (n, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=n)
    opt2 = tinygen.optim.Adam(fresh.parameters(), lr=1e-2)
    opt2.load_state_dict(ck["optimizer"])
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    with pytest.raises(TypeError, match="state_dict"):
        tinygen.save(model, path)
    with pytest.raises(ValueError, match="weights_only"):
        tinygen.load(path, weights_only=False)


@needs_torch
def test_torch_state_dict_arrays_load_into_tinygen_modules():
    """A torch model's state dict (as NumPy arrays) loads into the same tinygen model."""
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Embedding(11, 6), torch.nn.GRU(6, 5, 2))
    ours = tinygen.nn.Sequential(tinygen.nn.Embedding(11, 6), tinygen.nn.GRU(6, 5, 2))
    ours.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    idx = np.random.default_rng(0).integers(0, 11, (7, 3))
    out, h = ours[1](ours[0](tinygen.tensor(idx)))
    tout, th = tm[1](tm[0](torch.tensor(idx)))
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h.detach().numpy(), th.detach().numpy(), rtol=1e-5, atol=1e-6)


# -- optimizers and schedules against torch ----------------------------------------------------------
OPTIMIZERS = [
    ("Adagrad", dict(lr=0.1)), ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.1,
                                                initial_accumulator_value=0.2)),
    ("RMSprop", dict(lr=0.01)), ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True,
                                                 weight_decay=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, maximize=True)),
    ("Adadelta", dict()), ("Adadelta", dict(lr=0.5, rho=0.8, weight_decay=0.1)),
]


@needs_torch
@pytest.mark.parametrize("name,kw", OPTIMIZERS, ids=[f"{n}{i}" for i, (n, _) in
                                                     enumerate(OPTIMIZERS)])
def test_optimizers_match_torch(name, kw):
    rng = np.random.default_rng(2)
    w0, target = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    p = tinygen.tensor(w0, requires_grad=True)
    tp = torch.tensor(w0, requires_grad=True)
    opt = getattr(tinygen.optim, name)([p], **kw)
    topt = getattr(torch.optim, name)([tp], **kw)
    for step in range(25):
        opt.zero_grad()
        ((p - tinygen.tensor(target)) ** 4).sum().backward()
        opt.step()
        topt.zero_grad()
        ((tp - torch.tensor(target)) ** 4).sum().backward()
        topt.step()
        np.testing.assert_allclose(p.detach().numpy(), tp.detach().numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=f"step {step}")
    state = opt.state_dict()["state"][0]
    for key, value in topt.state_dict()["state"][0].items():
        if key != "step":
            np.testing.assert_allclose(state[key], value.numpy(), rtol=1e-10, atol=1e-14)
    assert state["step"] == 25
    fresh = getattr(tinygen.optim, name)([tinygen.tensor(p.detach().numpy().copy(), requires_grad=True)],
                                         **kw)
    fresh.load_state_dict(opt.state_dict())
    assert set(fresh.state_dict()["state"][0]) == set(state)


SCHEDULERS = [
    ("StepLR", dict(step_size=3, gamma=0.5)), ("MultiStepLR", dict(milestones=[2, 5, 5, 9])),
    ("ExponentialLR", dict(gamma=0.9)), ("CosineAnnealingLR", dict(T_max=6, eta_min=0.01)),
    ("LambdaLR", dict(lr_lambda=lambda e: 1.0 / (1 + e))),
]


@needs_torch
@pytest.mark.parametrize("name,kw", SCHEDULERS, ids=[n for n, _ in SCHEDULERS])
def test_lr_schedulers_match_torch(name, kw):
    p = tinygen.zeros(2, requires_grad=True)
    tp = torch.zeros(2, requires_grad=True)
    opt = tinygen.optim.SGD([{"params": [p]}, {"params": [tinygen.zeros(1, requires_grad=True)],
                                               "lr": 0.3}], lr=0.1)
    topt = torch.optim.SGD([{"params": [tp]}, {"params": [torch.zeros(1, requires_grad=True)],
                                               "lr": 0.3}], lr=0.1)
    sched = getattr(tinygen.optim.lr_scheduler, name)(opt, **kw)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kw)
    for epoch in range(20):
        np.testing.assert_allclose(sched.get_last_lr(), tsched.get_last_lr(), rtol=1e-12,
                                   err_msg=f"epoch {epoch}")
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
        if epoch == 8:   # resume from a state dict half-way
            state = sched.state_dict()
            sched = getattr(tinygen.optim.lr_scheduler, name)(opt, **kw)
            sched.load_state_dict(state)
            for g, lr in zip(opt.param_groups, state["_last_lr"]):
                g["lr"] = lr
    assert [g["lr"] for g in opt.param_groups] == pytest.approx(
        [g["lr"] for g in topt.param_groups], rel=1e-12)


@needs_torch
@pytest.mark.parametrize("kw", [dict(), dict(mode="max", factor=0.5, patience=2, cooldown=1),
                                dict(threshold_mode="abs", threshold=0.1, patience=1,
                                     min_lr=0.02)])
def test_reduce_lr_on_plateau_matches_torch(kw):
    opt = tinygen.optim.SGD([tinygen.zeros(1, requires_grad=True)], lr=0.1)
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = tinygen.optim.lr_scheduler.ReduceLROnPlateau(opt, **kw)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kw)
    metrics = [1.0, 0.9, 0.95, 0.95, 0.96, 0.89, 0.9, 0.9, 0.9, 0.91, 0.9, 0.8] * 3
    for i, m in enumerate(metrics):
        sched.step(m)
        tsched.step(m)
        assert opt.param_groups[0]["lr"] == pytest.approx(topt.param_groups[0]["lr"],
                                                          rel=1e-12), i
    sched2 = tinygen.optim.lr_scheduler.ReduceLROnPlateau(opt, **kw)
    sched2.load_state_dict(sched.state_dict())
    assert sched2.best == sched.best and sched2.num_bad_epochs == sched.num_bad_epochs


# -- layers ----------------------------------------------------------------------------------------
@needs_torch
@pytest.mark.parametrize("kind", ["RNN", "RNN-relu", "GRU"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_rnn_and_gru_match_torch_forward_and_backward(kind, batch_first):
    name = kind.split("-")[0]
    extra = dict(nonlinearity="relu") if kind == "RNN-relu" else {}
    torch.manual_seed(0)
    tm = getattr(torch.nn, name)(4, 5, num_layers=2, batch_first=batch_first,
                                 dtype=torch.float64, **extra)
    ours = getattr(tinygen.nn, name)(4, 5, num_layers=2, batch_first=batch_first,
                                     dtype=tinygen.float64, **extra)
    ours.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 6, 4) if batch_first else (6, 3, 4))
    h0 = rng.standard_normal((2, 3, 5))
    # the modules are float64; the float32 oracle run goes through casts
    check_op(lambda t, h: (ours(t.double(), h.double())[0].sum(-1) +
                           ours(t.double(), h.double())[1].sum()).to(t.dtype),
             [x, h0], second_order=False, float32=False,
             torch_fn=lambda t, h: (tm(t.double(), h.double())[0].sum(-1) +
                                    tm(t.double(), h.double())[1].sum()).to(t.dtype))
    out, hn = ours(tinygen.tensor(x[:, 0] if batch_first else x[:, 0]))      # unbatched
    tout, thn = tm(torch.tensor(x[:, 0]))
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-10)
    ours.flatten_parameters()


@needs_torch
@pytest.mark.parametrize("name", ["RNNCell", "GRUCell"])
def test_cells_match_torch(name):
    torch.manual_seed(1)
    tm = getattr(torch.nn, name)(3, 4, dtype=torch.float64)
    ours = getattr(tinygen.nn, name)(3, 4, dtype=tinygen.float64)
    ours.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    rng = np.random.default_rng(4)
    check_op(lambda x, h: ours(x.double(), h.double()).to(x.dtype),   # second order too
             [rng.standard_normal((2, 3)), rng.standard_normal((2, 4))], float32=False,
             torch_fn=lambda x, h: tm(x.double(), h.double()).to(x.dtype))


@needs_torch
def test_embedding_matches_torch_and_skips_the_padding_row():
    torch.manual_seed(2)
    tm = torch.nn.Embedding(7, 3, padding_idx=2, dtype=torch.float64)
    ours = tinygen.nn.Embedding(7, 3, padding_idx=2, dtype=tinygen.float64)
    assert np.all(ours.weight.detach().numpy()[2] == 0)
    ours.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    with tinygen.no_grad():
        ours.weight[2] = 1.0
    with torch.no_grad():
        tm.weight[2] = 1.0
    idx = np.array([[0, 2, 6], [2, 2, 1]])
    out = ours(tinygen.tensor(idx))
    tout = tm(torch.tensor(idx))
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy())
    u = np.random.default_rng(0).standard_normal(out.shape)
    out.backward(tinygen.tensor(u))
    tout.backward(torch.tensor(u))
    np.testing.assert_allclose(ours.weight.grad.numpy(), tm.weight.grad.numpy(), rtol=1e-12)
    with pytest.raises(IndexError, match="indices"):
        ours(tinygen.tensor([7]))
    with pytest.raises(TypeError, match="integer"):
        ours(tinygen.tensor([1.0]))


def test_dropout2d_drops_whole_channels():
    tinygen.manual_seed(0)
    layer = tinygen.nn.Dropout2d(0.5)
    y = layer(tinygen.ones(8, 16, 3, 3)).numpy()
    per_channel = y.reshape(8, 16, 9)
    assert np.all(per_channel.min(-1) == per_channel.max(-1))      # constant per channel
    assert set(np.unique(y)) <= {0.0, 2.0} and 0.3 < (y == 0).mean() < 0.7
    y3 = layer(tinygen.ones(4, 6, 5)).numpy()                # (N, C, L), as torch reads it
    assert np.all(y3.min(-1) == y3.max(-1))
    layer.eval()
    assert np.all(layer(tinygen.ones(2, 3, 2, 2)).numpy() == 1.0)


@given(data=st.data(), smoothing=st.sampled_from([0.0, 0.1, 0.5]),
       reduction=st.sampled_from(["mean", "sum", "none"]), weighted=st.booleans())
def test_cross_entropy_label_smoothing_through_the_harness(data, smoothing, reduction, weighted):
    n, c = data.draw(st.integers(1, 4)), data.draw(st.integers(2, 5))
    x = data.draw(arrays((n, c)))
    target = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    weight = np.linspace(0.5, 1.5, c) if weighted else None
    tw = None if weight is None else tinygen.tensor(weight)

    def ref(v):  # the smoothed target distribution, written out
        logp = v - np.log(np.exp(v).sum(1, keepdims=True))
        w = np.ones(c) if weight is None else weight
        q = np.full((n, c), smoothing / c)
        q[np.arange(n), target] += 1 - smoothing
        per = -(q * logp * w).sum(1)
        return {"none": per, "sum": per.sum(), "mean": per.sum() / w[target].sum()}[reduction]
    check_op(lambda t: F.cross_entropy(t, tinygen.tensor(target), weight=tw, reduction=reduction,
                                       label_smoothing=smoothing), [x], reference=ref,
             torch_fn=(lambda t: torch.nn.functional.cross_entropy(
                 t, torch.tensor(target), weight=None if weight is None else
                 torch.tensor(weight, dtype=t.dtype), reduction=reduction,
                 label_smoothing=smoothing)) if torch is not None else None)
    assert tinygen.nn.CrossEntropyLoss(label_smoothing=smoothing).label_smoothing == smoothing


def test_dataloader_samplers_subsets_and_unbatched():
    from tinygen.utils.data import (BatchSampler, ConcatDataset, DataLoader, SequentialSampler,
                                    Subset, TensorDataset)
    ds = TensorDataset(tinygen.arange(6), tinygen.arange(6) * 10)
    single = list(DataLoader(ds, batch_size=None))
    assert len(single) == 6 and single[2][1].item() == 20                 # samples, uncollated
    sub = Subset(ds, [5, 0, 3])
    assert [b[0].numpy().tolist() for b in DataLoader(sub, batch_size=2)] == [[5, 0], [3]]
    both = ConcatDataset([sub, ds])
    assert len(both) == 9 and both[3][0].item() == 0 and both[-1][0].item() == 5
    sampler = BatchSampler(SequentialSampler(ds), batch_size=4, drop_last=False)
    loader = DataLoader(ds, batch_sampler=sampler)
    assert [b[0].numpy().tolist() for b in loader] == [[0, 1, 2, 3], [4, 5]] and len(loader) == 2
    loader = DataLoader(ds, batch_size=4, collate_fn=lambda items: len(items))
    assert list(loader) == [4, 2]
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(ds, batch_size=2, shuffle=True, sampler=SequentialSampler(ds))
    with pytest.raises(ValueError, match="first dimension"):
        TensorDataset(tinygen.zeros(3), tinygen.zeros(4))


@needs_torch
def test_chained_schedulers_match_torch():
    """Two epoch-based schedulers on one optimizer compose, as PyTorch's chainable ones."""
    opt = tinygen.optim.SGD([tinygen.zeros(1, requires_grad=True)], lr=1.0)
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ours = [tinygen.optim.lr_scheduler.StepLR(opt, 3, 0.5),
            tinygen.optim.lr_scheduler.ExponentialLR(opt, 0.9)]
    theirs = [torch.optim.lr_scheduler.StepLR(topt, 3, 0.5),
              torch.optim.lr_scheduler.ExponentialLR(topt, 0.9)]
    for _ in range(12):
        opt.step()
        topt.step()
        for s in ours + theirs:
            s.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12)


@given(data=st.data())
def test_embedding_through_the_harness(data):
    """Rows used several times add up their gradients (the padding row's gradient is zeroed on
    purpose, which finite differences cannot see: that is checked against torch above)."""
    n, d = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 3))
    weight = data.draw(arrays((n, d)))
    idx = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=6)))
    idx = idx.reshape(data.draw(st.sampled_from([(-1,), (1, -1)])))
    check_op(lambda w: F.embedding(tinygen.tensor(idx), w), [weight], reference=lambda w: w[idx],
             second_order="zero",
             torch_fn=(lambda w: torch.nn.functional.embedding(torch.tensor(idx), w))
             if torch is not None else None)
