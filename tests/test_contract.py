"""The model contract: every registered model builds, trains a few steps, writes a checkpoint
that rebuilds it exactly, evaluates to finite numbers and samples -- from one small options
table. A new model is tested by adding one line to ``SMALL`` (the test fails for a registered
model that has no line)."""
import os

import numpy as np
import pytest

import tinygen
from tinygen.checkpoint import save_checkpoint
from tinygen.data import RunData
from tinygen.models import MODELS, model_from_checkpoint
from tinygen.train import Trainer, TrainConfig

# model name -> (small options, data: "mnist" = 60 embedded digits (40 + 20), "own" = the model's load_data)
SMALL = {
    "linear-ae": ({"latent_dim": 4}, "mnist"),
    "mlp-ae": ({"latent_dim": 4, "hidden": 32}, "mnist"),
    "conv-ae": ({"latent_dim": 4, "channels": 4}, "mnist"),
    "dae": ({"latent_dim": 4, "hidden": 32}, "mnist"),
    "cae": ({"latent_dim": 4}, "mnist"),
    "sdae": ({"layers": 2, "hidden": 16, "pretrain_epochs": 1}, "mnist"),
    "vae": ({"latent_dim": 4, "hidden": 32, "iw_samples": 4}, "mnist"),
    "cvae": ({"hidden": 32, "iw_samples": 4}, "mnist"),
    "conv-vae": ({"latent_dim": 4, "channels": 4, "iw_samples": 4}, "mnist"),
    "vanilla-vae": ({"latent_dim": 4, "hidden_dims": "4,8", "iw_samples": 4}, "mnist"),
    "toy-vae": ({"hidden": 16, "iw_samples": 4, "n_points": 60}, "own"),
    "m1": ({"labels": 20, "m1_latent_dim": 4, "m1_hidden": 16, "m1_epochs": 1, "latent_dim": 4,
            "hidden": 16, "classifier_epochs": 1, "iw_samples": 4}, "mnist"),
    "m2": ({"labels": 20, "latent_dim": 4, "hidden": 16, "iw_samples": 4}, "mnist"),
    "m1m2": ({"labels": 20, "m1_latent_dim": 4, "m1_hidden": 16, "m1_epochs": 1, "latent_dim": 4,
              "hidden": 16, "iw_samples": 4}, "mnist"),
    "nvp-toy": ({"hidden": 16, "depth": 2}, "own"),
    "realnvp": ({"width": 4, "scales": 1, "checker": 1, "channel": 1, "final": 1}, "mnist"),
    "gan": ({"latent_dim": 4, "hidden": 16, "eval_samples": 20}, "mnist"),
    "dcgan": ({"latent_dim": 4, "channels": 4, "eval_samples": 20}, "mnist"),
    "cgan": ({"latent_dim": 4, "channels": 4, "eval_samples": 20}, "mnist"),
    "classifier": ({"channels": 4, "hidden": 16}, "mnist"),
    "pixelrnn-row": ({"layers": 1, "hidden": 4, "features": 4, "out_hidden": 4}, "mnist"),
    "pixelrnn-diag": ({"layers": 1, "hidden": 4, "features": 4, "out_hidden": 4}, "mnist"),
    "char-rnn": ({"seq_len": 16, "embed": 8, "hidden": 16, "layers": 1, "sample_length": 20},
                 "own"),
    "wavenet": ({"residual_channels": 8, "dilation_channels": 8, "skip_channels": 8,
                 "dilation_layers": 2, "stacks": 1, "seq_len": 16, "sample_length": 20}, "own"),
    "ddpm": ({"base_channels": 8, "groups": 4, "timesteps": 20, "sampling_steps": 3,
              "eval_samples": 0, "vb_images": 4, "vb_timesteps": 2, "trajectory_frames": 2},
             "mnist"),
}


def _mnist_data(per_class_train=4, per_class_val=2):
    """A class-balanced handful of the embedded digits (semi-supervised models need every
    class among the training labels)."""
    from tinygen.data import load_embedded_mnist
    d = load_embedded_mnist()
    order = np.random.default_rng(0).permutation(len(d))
    labels = d.labels[order]
    picks = [order[labels == c] for c in range(10)]
    n = per_class_train
    train = np.concatenate([p[:n] for p in picks])
    val = np.concatenate([p[n:n + per_class_val] for p in picks])
    return RunData(d.subset(np.sort(train)), d.subset(np.sort(val)))


def _shrink(data, n_train=80, n_val=40):
    """The model's own data, cut to a few batches (text models keep their sequences)."""
    def cut(ds, n):
        return None if ds is None else ds.subset(np.arange(min(n, len(ds))))
    return RunData(cut(data.train, n_train), cut(data.val, n_val), None)


def test_every_registered_model_has_a_line():
    assert set(MODELS) <= set(SMALL), f"add these to SMALL: {sorted(set(MODELS) - set(SMALL))}"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_build_train_checkpoint_reload_evaluate_sample(name, tmp_path):
    if name not in MODELS:
        pytest.fail(f"{name} is in SMALL but not registered")
    options, source = SMALL[name]
    tinygen.manual_seed(0)
    cls = MODELS[name]
    model = cls(cls.Config(**options))
    data = _mnist_data() if source == "mnist" else _shrink(model.load_data(None, 0.25, 0)[0])
    cfg = TrainConfig(epochs=1, batch_size=20, seed=0, out=str(tmp_path / "run"),
                      progress=False, log_every=1)
    trainer = Trainer(model, model.phases(data), (data.train.images, data.train.labels), cfg)
    trainer.fit()
    train = [r for r in trainer.history if r["kind"] == "train"]
    assert train and all(np.isfinite(r["loss"]) for r in train)

    trainer.load_best()
    model.finish(data)
    path = tmp_path / "model.ckpt"
    save_checkpoint(path, trainer.checkpoint_payload())
    back, ckpt = model_from_checkpoint(path)
    assert type(back) is cls and ckpt["model"] == name
    mine, theirs = model.state_dict(), back.state_dict()
    assert set(mine) == set(theirs)
    for key in mine:
        np.testing.assert_array_equal(tinygen.backend.to_numpy(theirs[key].array),
                                      tinygen.backend.to_numpy(mine[key].array), err_msg=key)

    back.eval()
    metrics = back.evaluate(data.val)
    assert metrics and all(np.isfinite(float(v)) for v in metrics.values()), metrics
    if back.can_sample:
        out = back.save_samples(4, np.random.default_rng(0), str(tmp_path / "samples.png"))
        assert os.path.getsize(out) > 0
