"""The trainer's phase hooks (tinygen.models.phases.Phase): host-side ``prepare``, the optimizer
choice, gradient clipping, learning-rate schedules, ``after_step``; and nn.EMA, the moving average
of weights that an ``after_step`` hook keeps (checkpointed, so resume stays exact)."""
import math

import numpy as np
import pytest

import tinygen
from tinygen import functional as F
from tinygen import nn
from tinygen.checkpoint import load_checkpoint
from tinygen.models.phases import OptimizerSpec, Phase, warmup_cosine
from tinygen.train import Trainer, TrainConfig


class Linear1(nn.Module):
    """y = w . x (no bias), one weight vector: every update is easy to predict by hand."""
    model_name = "linear1"

    def __init__(self):
        super().__init__()
        from dataclasses import make_dataclass
        self.config = make_dataclass("Linear1Config", [("width", int, 3)])()
        self.lin = nn.Linear(3, 1, bias=False)
        self.lin.weight.array[...] = 0.0

    def loss(self, batch, rng):
        x, y = batch
        return F.mse_loss(self.lin(x).reshape(-1), y), {}


def _data(n=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return x, (x @ np.array([1.0, -1.0, 2.0])).astype(np.float32)


def _fit(tmp_path, phase_kwargs, epochs=1, batch_size=8, lr=0.1, resume=None, model=None,
         name="run"):
    model = model or Linear1()
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=0,
                      out=str(tmp_path / name), log_every=1, progress=False, val_fraction=0.0)
    phase = Phase("train", model.parameters, model.loss, **phase_kwargs)
    trainer = Trainer(model, [phase], _data(), cfg)
    trainer.fit(resume=resume)
    return model, trainer


def _sgd_step(w, x, y, lr):
    """One full-batch SGD step of the MSE by hand: grad = 2/N X^T (X w - y)."""
    grad = 2.0 / len(x) * x.T.astype(np.float64) @ (x @ w - y)
    return w - lr * grad, grad


def test_prepare_changes_the_numpy_batch_before_the_device(tmp_path):
    seen = []

    def prepare(arrays, rng):
        x, y = arrays
        assert isinstance(x, np.ndarray) and isinstance(rng, np.random.Generator)
        seen.append(x.shape)
        return x, np.zeros_like(y)             # all targets 0: the weights must stay 0

    model, _ = _fit(tmp_path, {"prepare": prepare, "optimizer": "sgd"})
    assert seen == [(8, 3)]
    np.testing.assert_array_equal(model.lin.weight.array, 0.0)


def test_sgd_phase_takes_the_sgd_step(tmp_path):
    model, trainer = _fit(tmp_path, {"optimizer": "sgd"}, lr=0.1)
    x, y = _data()
    want, _ = _sgd_step(np.zeros(3), x, y, 0.1)
    np.testing.assert_allclose(model.lin.weight.array.reshape(-1), want, rtol=1e-5)
    assert type(trainer.optimizer).__name__ == "SGD"


def test_adamw_with_options(tmp_path):
    _, trainer = _fit(tmp_path, {"optimizer": "adamw",
                                 "optimizer_options": {"weight_decay": 0.5, "betas": (0.8, 0.9)}})
    assert type(trainer.optimizer).__name__ == "AdamW"
    group = trainer.optimizer.param_groups[0]
    assert group["weight_decay"] == 0.5 and tuple(group["betas"]) == (0.8, 0.9)


def test_clip_grad_norm_bounds_the_step_and_logs_the_norm(tmp_path):
    x, y = _data()
    _, grad = _sgd_step(np.zeros(3), x, y, 1.0)
    model, trainer = _fit(tmp_path, {"optimizer": "sgd", "clip_grad_norm": 0.1}, lr=1.0)
    step = model.lin.weight.array.reshape(-1).astype(np.float64)
    assert np.linalg.norm(grad) > 1.0                       # clipping was needed
    np.testing.assert_allclose(np.linalg.norm(step), 0.1, rtol=1e-4)
    np.testing.assert_allclose(step, -grad / np.linalg.norm(grad) * 0.1, rtol=1e-4)
    rec = [r for r in trainer.history if r["kind"] == "train"][0]
    assert rec["grad_norm"] == pytest.approx(np.linalg.norm(grad), rel=1e-4)


def test_lr_schedule_sets_each_steps_learning_rate(tmp_path):
    calls = []

    def schedule(step, total):
        calls.append((step, total))
        return 0.0 if step == 0 else 1.0          # the first update does nothing

    model, _ = _fit(tmp_path, {"optimizer": "sgd", "lr_schedule": schedule}, epochs=2,
                    batch_size=8, lr=0.1)
    assert calls == [(0, 2), (1, 2)]
    x, y = _data()
    want, _ = _sgd_step(np.zeros(3), x, y, 0.1)          # only the second step moved
    np.testing.assert_allclose(model.lin.weight.array.reshape(-1), want, rtol=1e-5)


def test_warmup_cosine_shape():
    f = warmup_cosine(warmup_steps=4, final_factor=0.1)
    assert [f(s, 14) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4, 14) == pytest.approx(1.0)
    assert f(9, 14) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(14, 14) == pytest.approx(0.1)
    values = [f(s, 14) for s in range(4, 15)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_after_step_sees_every_update_without_grad(tmp_path):
    steps = []

    def after(step):
        steps.append((step, tinygen.is_grad_enabled()))

    _fit(tmp_path, {"after_step": after}, epochs=3, batch_size=4)
    assert steps == [(s, False) for s in range(1, 7)]


def test_bad_hook_options_are_refused():
    model = Linear1()
    with pytest.raises(ValueError, match="optimizer must be one of"):
        Phase("p", model.parameters, model.loss, optimizer="lbfgs")
    with pytest.raises(ValueError, match="clip_grad_norm must be > 0"):
        Phase("p", model.parameters, model.loss, clip_grad_norm=0.0)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        OptimizerSpec(model.parameters, kind="rmsprop")


# -- EMA ----------------------------------------------------------------------------------------------
def test_ema_formula_with_and_without_warmup():
    lin = nn.Linear(2, 2)
    w0 = lin.weight.array.copy()
    ema = nn.EMA(lin, decay=0.9, warmup=True)
    lin.weight.array[...] = 1.0
    ema.update()                                       # d_0 = min(0.9, 1/10) = 0.1
    np.testing.assert_allclose(ema.shadow_0.array, 0.1 * w0 + 0.9, rtol=1e-6)
    assert ema.current_decay() == pytest.approx(2 / 11)
    plain = nn.EMA(lin, decay=0.9, warmup=False)
    lin.weight.array[...] = 2.0
    plain.update()
    np.testing.assert_allclose(plain.shadow_0.array, 0.9 * 1.0 + 0.1 * 2.0, rtol=1e-6)
    assert list(lin.parameters()) and not list(ema.parameters())


def test_ema_applied_swaps_weights_in_and_back_even_on_error():
    lin = nn.Linear(2, 1)
    ema = nn.EMA(lin, decay=0.5, warmup=False)
    own = lin.weight.array.copy()
    lin.weight.array[...] += 4.0
    ema.update()                               # shadow = own + 2
    moved = lin.weight.array.copy()
    with pytest.raises(KeyError):
        with ema.applied():
            np.testing.assert_allclose(lin.weight.array, own + 2.0, rtol=1e-6)
            raise KeyError("inside")
    np.testing.assert_array_equal(lin.weight.array, moved)


def test_ema_refuses_bad_arguments():
    with pytest.raises(ValueError, match="decay must be in"):
        nn.EMA(nn.Linear(1, 1), decay=1.0)
    with pytest.raises(TypeError, match="must be a tinygen.nn.Module"):
        nn.EMA("net")


class WithEMA(Linear1):
    def __init__(self):
        super().__init__()
        self.ema = nn.EMA(self.lin, decay=0.8)


def test_ema_in_after_step_is_checkpointed_and_resume_is_exact(tmp_path):
    def run(epochs, resume=None, name="full"):
        tinygen.manual_seed(0)
        model = WithEMA()
        _fit(tmp_path, {"after_step": lambda step: model.ema.update()}, epochs=epochs,
             batch_size=4, resume=resume, model=model, name=name)
        return model

    full = run(4)
    assert int(full.ema.num_updates.array) == 8
    ckpt = load_checkpoint(tmp_path / "full" / "last.ckpt")
    np.testing.assert_array_equal(ckpt["state_dict"]["ema.shadow_0"], full.ema.shadow_0.array)
    run(2, name="part")
    resumed = run(4, resume=str(tmp_path / "part" / "last.ckpt"), name="part")
    np.testing.assert_array_equal(resumed.ema.shadow_0.array, full.ema.shadow_0.array)
    np.testing.assert_array_equal(resumed.lin.weight.array, full.lin.weight.array)
