"""The diffusion U-Net (issue 18): shapes at every level, the identity start, conditioning,
the time embedding, and a short training that lowers the simple loss."""
import math

import numpy as np
import pytest

import tinygen
from tinygen import functional as F
from tinygen.models.diffusion import GaussianDiffusion, linear_betas
from tinygen.models.unet import ResBlock, UNet, UNetConfig, timestep_embedding

TINY = dict(base_channels=8, channel_mults=(1, 2, 2), groups=4)


def test_shapes_at_every_level(monkeypatch):
    seen = []
    original = ResBlock.forward

    def recording(self, x, emb):
        out = original(self, x, emb)
        seen.append((tuple(x.shape), tuple(out.shape)))
        return out

    monkeypatch.setattr(ResBlock, "forward", recording)
    net = UNet(UNetConfig(**TINY, num_classes=10))
    x = tinygen.randn(2, 1, 28, 28)
    out = net(x, np.array([0, 999]), np.array([3, 10]))
    assert tuple(out.shape) == (2, 1, 28, 28)
    assert seen == [
        ((2, 8, 28, 28), (2, 8, 28, 28)),        # down, level 0 (28 x 28, C)
        ((2, 8, 14, 14), (2, 16, 14, 14)),       # down, level 1 (14 x 14, 2C)
        ((2, 16, 7, 7), (2, 16, 7, 7)),          # down, level 2 (7 x 7, 2C)
        ((2, 16, 7, 7), (2, 16, 7, 7)),          # middle
        ((2, 16, 7, 7), (2, 16, 7, 7)),
        ((2, 32, 7, 7), (2, 16, 7, 7)),          # up, level 2: + the level-2 block's output
        ((2, 32, 7, 7), (2, 16, 7, 7)),          #   + the second downsampling's output
        ((2, 32, 14, 14), (2, 16, 14, 14)),      # up, level 1: + the level-1 block's output
        ((2, 24, 14, 14), (2, 16, 14, 14)),      #   + the first downsampling's output
        ((2, 24, 28, 28), (2, 8, 28, 28)),       # up, level 0: + the level-0 block's output
        ((2, 16, 28, 28), (2, 8, 28, 28)),       #   + the input convolution's output
    ]


def test_starts_at_zero_and_conditioning_reaches_the_output():
    net = UNet(UNetConfig(**TINY, num_classes=10))
    x = tinygen.randn(3, 1, 28, 28)
    t = np.array([5, 500, 900])
    assert np.all(net(x, t, np.array([1, 2, 3])).detach().numpy() == 0)      # zero-initialized output
    for p in net.parameters():                                       # move off the zero start
        p.array += 0.05 * np.random.default_rng(0).standard_normal(p.shape).astype(p.dtype)
    with tinygen.no_grad():
        a = net(x, t, np.array([1, 2, 3])).numpy()
        b = net(x, t, np.array([1, 2, 4])).numpy()
        c = net(x, np.array([5, 500, 901]), np.array([1, 2, 3])).numpy()
    np.testing.assert_array_equal(a[:2], b[:2])                     # per-sample conditioning
    assert np.abs(a[2] - b[2]).max() > 1e-4                         # the label is used
    assert np.abs(a[2] - c[2]).max() > 1e-6 and np.array_equal(a[:2], c[:2])   # so is t
    with pytest.raises(ValueError, match="labels must be"):
        net(x, t, np.array([1, 2, 11]))
    with pytest.raises(ValueError, match="divisible by 4"):
        net(tinygen.randn(1, 1, 30, 30), np.array([1]))
    with pytest.raises(ValueError, match="groups=3 must divide"):
        UNet(UNetConfig(base_channels=8, groups=3))


def test_timestep_embedding():
    emb = timestep_embedding(np.array([0, 7]), 6).numpy()
    freqs = np.exp(-math.log(10000.0) * np.arange(3) / 3)
    np.testing.assert_allclose(emb[1], np.concatenate([np.sin(7 * freqs), np.cos(7 * freqs)]),
                               rtol=1e-6)
    np.testing.assert_allclose(emb[0], [0, 0, 0, 1, 1, 1])


def test_short_training_lowers_the_simple_loss():
    tinygen.manual_seed(0)
    net = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), groups=4, attention=False))
    diffusion = GaussianDiffusion(linear_betas(100))
    rng = np.random.default_rng(0)
    x0 = np.zeros((8, 1, 8, 8), np.float32) - 1
    x0[:, :, 2:6, 3:5] = 1                                        # the same bar in every image
    t = rng.integers(0, 100, 8)
    noise = tinygen.tensor(rng.standard_normal(x0.shape).astype(np.float32))
    xt = diffusion.q_sample(tinygen.tensor(x0), t, noise)
    opt = tinygen.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = F.mse_loss(net(xt, t), noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[0] == pytest.approx(1.0, abs=0.25)     # zero output: the noise's variance
    assert losses[-1] < 0.5 * losses[0]


# -- the registered ddpm model -------------------------------------------------------------------
DDPM_TINY = dict(base_channels=8, groups=4, timesteps=50, sampling_steps=5, eval_samples=0,
                 vb_images=4, vb_timesteps=3, warmup_steps=2, trajectory_frames=3)


def _digits(n):
    from tinygen.data import Dataset, load_embedded_mnist
    d = load_embedded_mnist()
    return Dataset(d.images[:n], d.labels[:n], "digits")


def test_ddpm_prepare_scales_and_drops_labels():
    from tinygen.models.ddpm import DDPM, DDPMConfig
    model = DDPM(DDPMConfig(**DDPM_TINY, label_dropout=0.3))
    images = np.random.default_rng(0).random((4000, 1, 2, 2)).astype(np.float32)
    labels = np.arange(4000) % 10
    x, y = model.prepare((images, labels), np.random.default_rng(1))
    np.testing.assert_allclose(x, images * 2 - 1)
    dropped = y == 10
    assert 0.27 < dropped.mean() < 0.33 and np.array_equal(y[~dropped], labels[~dropped])
    unconditional = DDPM(DDPMConfig(**DDPM_TINY, conditional=False))
    assert np.array_equal(unconditional.prepare((images, labels), np.random.default_rng(1))[1],
                          labels)


def test_ddpm_trains_with_ema_saves_grid_and_trajectory_and_evaluates(tmp_path):
    from tinygen.checkpoint import load_checkpoint
    from tinygen.data import RunData
    from tinygen.models.ddpm import DDPM, DDPMConfig
    from tinygen.models.registry import model_from_checkpoint
    from tinygen.train import TrainConfig, Trainer
    tinygen.manual_seed(0)
    model = DDPM(DDPMConfig(**DDPM_TINY))
    data = RunData(_digits(64), _digits(16))
    cfg = TrainConfig(epochs=2, batch_size=16, lr=2e-3, out=str(tmp_path), progress=False)
    trainer = Trainer(model, model.phases(data), (data.train.images, data.train.labels), cfg)
    trainer.fit()
    # the EMA followed the 8 steps: its weights differ from the raw ones and are saved
    assert int(model.ema.num_updates.array) == 8
    raw = model.unet.conv_in.weight.detach().numpy().copy()
    with model.ema.applied():
        averaged = model.unet.conv_in.weight.detach().numpy().copy()
    assert not np.allclose(raw, averaged) and np.array_equal(model.unet.conv_in.weight.detach().numpy(),
                                                             raw)
    assert any(k.startswith("ema.shadow") for k in load_checkpoint(tmp_path / "last.ckpt")
               ["state_dict"])
    reloaded, _ = model_from_checkpoint(tmp_path / "last.ckpt")
    # sampling is seeded and uses the EMA weights (the same for the reloaded model)
    a = model.sample(4, np.random.default_rng(5))
    np.testing.assert_array_equal(a, reloaded.sample(4, np.random.default_rng(5)))
    assert a.shape == (4, 1, 28, 28) and a.min() >= 0 and a.max() <= 1
    out = model.save_samples(20, np.random.default_rng(0), str(tmp_path / "grid.png"))
    from PIL import Image
    grid = Image.open(out)
    strip = Image.open(tmp_path / "grid_trajectory.png")
    assert grid.size[0] > grid.size[1]                  # 10 per row, 2 rows
    assert strip.size[0] < strip.size[1]                # 3 frames across, one row per digit
    metrics = model.evaluate(data.val)
    assert set(metrics) == {"simple_loss", "bits_per_dim"} and metrics["bits_per_dim"] > 0
    # --classifier none: no sample scores, but the nearest-training-image check runs
    model.config.eval_samples = 4
    model.use_classifier("none")
    assert set(model.evaluate(data.val)) == {"simple_loss", "bits_per_dim"}
    # the default: the shipped classifier judges the samples
    model.use_classifier("")
    scored = model.evaluate(data.val)
    assert 0 <= scored["class_entropy"] <= np.log(10) + 1e-9 and scored["fid_classifier"] > 0
    near = model.extra_metrics(data, "val", data.val)
    assert set(near) == {"val_nn_train_dist", "val_nn_train_dist_real"}
    assert all(v > 0 for v in near.values())
