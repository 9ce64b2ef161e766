"""The training loop: checkpoints (atomic, round trip), exact resume, the NaN stop, metrics."""
import json
import os
import zipfile

import numpy as np
import pytest

import tinygen
from tinygen import functional as F
from tinygen import nn
from tinygen.train import Phase, Trainer, TrainConfig, TrainingDiverged
from tinygen.serialization import CheckpointError, save_tree
from tinygen.checkpoint import atomic_write, load_checkpoint, save_checkpoint


# -- checkpoints ----------------------------------------------------------------------------------
def test_checkpoint_round_trip_converts_tensors(tmp_path):
    path = tmp_path / "a.ckpt"
    payload = {"w": tinygen.tensor(np.arange(6.0).reshape(2, 3)), "nested": {"x": [1, 2.5]},
               "arr": np.ones(3, np.float32)}
    save_checkpoint(path, payload)
    back = load_checkpoint(path)
    assert isinstance(back["w"], np.ndarray)
    np.testing.assert_array_equal(back["w"], np.arange(6.0).reshape(2, 3))
    assert back["nested"] == {"x": [1, 2.5]}
    assert back["arr"].dtype == np.float32
    assert os.listdir(tmp_path) == ["a.ckpt"]  # no temporary files left behind


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "model.ckpt"
    save_checkpoint(path, {"v": 1})
    with pytest.raises(ZeroDivisionError):
        with atomic_write(path) as f:
            f.write(b"half a checkpoint")
            1 / 0
    assert load_checkpoint(path)["v"] == 1
    assert sorted(os.listdir(tmp_path)) == ["model.ckpt"]


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.ckpt: is not a tinygen file"):
        load_checkpoint(tmp_path / "junk.ckpt")
    # a file of tinygen's format that holds something else than a checkpoint
    save_tree(tmp_path / "other.ckpt", {"hello": 1}, kind="weights")
    with pytest.raises(CheckpointError, match="holds a 'weights', not a 'checkpoint'"):
        load_checkpoint(tmp_path / "other.ckpt")
    # a newer format version
    path = tmp_path / "v.ckpt"
    save_checkpoint(path, {})
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    header = json.loads(members["tinygen.json"])
    header["version"] = 99
    members["tinygen.json"] = json.dumps(header).encode()
    with zipfile.ZipFile(path, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(path)


# -- a tiny model for the loop ----------------------------------------------------------------------
class TinyRegressor(nn.Module):
    model_name = "tiny"

    def __init__(self, config=None):
        super().__init__()
        from dataclasses import make_dataclass
        self.config = config or make_dataclass("TinyConfig", [("width", int, 8)])()
        self.net = nn.Sequential(nn.Linear(4, self.config.width), nn.Tanh(),
                                 nn.Dropout(0.2), nn.Linear(self.config.width, 1))

    def loss(self, batch, rng):
        x, y = batch
        noise = tinygen.tensor(rng.normal(0, 0.01, size=x.shape).astype(np.float32))
        return F.mse_loss(self.net(x + noise).reshape(-1), y), {}

    def phases(self, x_val, y_val, nan_at=None):
        def evaluate():
            return {"mse": float(F.mse_loss(self.net(tinygen.tensor(x_val)).reshape(-1),
                                            tinygen.tensor(y_val)))}
        loss = self.loss
        if nan_at is not None:
            calls = {"n": 0}

            def loss(batch, rng):
                calls["n"] += 1
                value, stats = self.loss(batch, rng)
                return (value * float("nan") if calls["n"] == nan_at else value), stats
        return [Phase("train", self.parameters, loss, evaluate=evaluate, select="mse")]


def _data(seed=0, n=64):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1).astype(np.float32)
    return x, y


def _train(out, epochs, resume=None, nan_at=None, seed=3):
    tinygen.manual_seed(seed)
    model = TinyRegressor()
    x, y = _data()
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=1e-2, seed=seed, out=str(out),
                      log_every=1, progress=False)
    trainer = Trainer(model, model.phases(x[:16], y[:16], nan_at), (x, y), cfg)
    trainer.fit(resume=resume)
    return model, trainer


def _records(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_training_writes_metrics_and_checkpoints(tmp_path, capsys):
    model, trainer = _train(tmp_path, epochs=3)
    recs = _records(tmp_path)
    kinds = [r["kind"] for r in recs]
    assert kinds.count("train") == 12 and kinds.count("epoch") == 3 and kinds.count("val") == 3
    assert [r["step"] for r in recs if r["kind"] == "train"] == list(range(1, 13))
    assert all(r["images_per_s"] > 0 for r in recs if r["kind"] == "train")
    losses = [r["loss"] for r in recs if r["kind"] == "epoch"]
    assert losses[-1] < losses[0]
    ckpt = load_checkpoint(tmp_path / "last.ckpt")
    assert ckpt["trainer"]["step"] == 12 and ckpt["trainer"]["epoch"] == 3
    assert set(ckpt["state_dict"]) == set(model.state_dict())
    best = load_checkpoint(tmp_path / "best.ckpt")
    vals = [r["mse"] for r in recs if r["kind"] == "val"]
    assert best["trainer"]["best"]["train"] == pytest.approx(min(vals))
    assert "epoch 3: loss" in capsys.readouterr().out


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    full, _ = _train(tmp_path / "full", epochs=4)
    _, first = _train(tmp_path / "part", epochs=2)
    before = load_checkpoint(tmp_path / "part" / "last.ckpt")["trainer"]["seconds"]
    assert 0 < before <= first.train_seconds()
    # the epoch-2 checkpoint of the interrupted run; resume it for the remaining 2 epochs
    resumed, second = _train(tmp_path / "part", epochs=4,
                             resume=tmp_path / "part" / "last.ckpt",
                             seed=99)  # a different seed here must not matter: the state is restored
    # the training time counts both parts of the run (results.json's train_seconds)
    assert second.train_seconds() > before
    assert load_checkpoint(tmp_path / "part" / "last.ckpt")["trainer"]["seconds"] > before
    a, b = _records(tmp_path / "full"), _records(tmp_path / "part")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        assert ra.get("loss") == rb.get("loss") and ra.get("mse") == rb.get("mse")
    for (name, p), (_, q) in zip(full.named_parameters(), resumed.named_parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy(), err_msg=name)


def test_resume_cuts_metrics_after_the_checkpoint(tmp_path):
    _train(tmp_path, epochs=1)
    import shutil
    shutil.copy(tmp_path / "last.ckpt", tmp_path / "epoch1.ckpt")
    _train(tmp_path, epochs=2)            # fresh run overwrites: 2 epochs of records
    _train(tmp_path, epochs=2, resume=tmp_path / "epoch1.ckpt")
    steps = [r["step"] for r in _records(tmp_path) if r["kind"] == "train"]
    assert steps == list(range(1, 9))     # no duplicated steps 5..8


def test_nan_loss_stops_with_step_and_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 6 \(epoch 2\).*last.ckpt"):
        _train(tmp_path, epochs=3, nan_at=6)
    ckpt = load_checkpoint(tmp_path / "last.ckpt")
    assert ckpt["trainer"]["step"] == 4          # the last good checkpoint: end of epoch 1
    assert all(np.isfinite(v).all() for v in ckpt["state_dict"].values())


def test_nan_before_any_checkpoint_says_so(tmp_path):
    with pytest.raises(TrainingDiverged, match="no checkpoint was written yet"):
        _train(tmp_path, epochs=1, nan_at=2)


@pytest.mark.parametrize("field,value,msg", [("epochs", 0, "epochs must be >= 1"),
                                             ("batch_size", 0, "batch_size must be >= 1"),
                                             ("lr", 0.0, "lr must be a finite number > 0"),
                                             ("lr", float("nan"), "lr must be a finite"),
                                             ("seed", -1, "seed must be >= 0"),
                                             ("epochs", 2.5, "epochs must be an int"),
                                             ("val_fraction", 1.0, r"val_fraction must be in"),
                                             ("device", "tpu", "device must be")])
def test_train_config_is_validated(field, value, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(**{field: value}).validate()


def test_resume_refuses_another_models_checkpoint(tmp_path):
    _train(tmp_path, epochs=1)
    ckpt = load_checkpoint(tmp_path / "last.ckpt")
    ckpt["model"] = "other"
    save_checkpoint(tmp_path / "other.ckpt", {k: v for k, v in ckpt.items()
                                              if k not in ("format", "version")})
    with pytest.raises(ValueError, match="holds model 'other'"):
        _train(tmp_path, epochs=2, resume=tmp_path / "other.ckpt")
