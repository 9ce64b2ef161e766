"""GAN, DCGAN, conditional DCGAN and the trainer's own-step phases (several optimizers).

The losses are checked against their closed forms in float64 (with the harness: central
differences, second order, PyTorch's BCE as the oracle); the models for shapes and ranges, the
k-discriminator-steps rhythm, exact resume with two Adam states, the NaN stop, and short
trainings whose losses move and whose per-epoch pictures are written.
"""
import json
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygen
from harness import arrays, check_op, distinct_arrays, torch
from tinygen.data import Dataset
from tinygen.data import RunData
from tinygen.models.gan import ConditionalDCGAN, DCGAN, GANConfig, MLPGAN
from tinygen.train import Phase, Trainer, TrainConfig, TrainingDiverged
from tinygen.checkpoint import load_checkpoint
from tinygen.models.phases import OptimizerSpec


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


# -- the losses -------------------------------------------------------------------------------------
@settings(max_examples=15)
@given(st.integers(1, 6), st.integers(0, 2**16), st.sampled_from([1.0, 0.9]))
def test_discriminator_loss_is_the_negative_value_function(n, seed, s):
    """L_D = -[mean log D(x) + mean log(1 - D(G(z)))] with D = sigmoid(logit); with the real
    label s < 1 (one-sided smoothing) the real term is s log D(x) + (1 - s) log(1 - D(x))."""
    model = MLPGAN(GANConfig(dataset="moons", hidden=4, latent_dim=2, real_label=s))
    rng = np.random.default_rng(seed)
    real, fake = rng.uniform(-4, 4, n), rng.uniform(-4, 4, n)

    def ref(r, f):
        real_term = s * _log_sigmoid(r) + (1 - s) * _log_sigmoid(-r)  # log(1 - s(r)) = ls(-r)
        return -(np.mean(real_term) + np.mean(_log_sigmoid(-f)))

    tfn = None
    if torch is not None:
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        tfn = lambda r, f: bce(r, torch.full_like(r, s)) + bce(f, torch.zeros_like(f))  # noqa
    check_op(model.d_loss, [real, fake], reference=ref, torch_fn=tfn)


@pytest.mark.parametrize("loss", ["minimax", "non-saturating"])
@settings(max_examples=10)
@given(logits=arrays((5,), low=-5, high=5))
def test_generator_losses(loss, logits):
    """minimax: mean log(1 - D(G(z))); non-saturating: -mean log D(G(z))."""
    model = MLPGAN(GANConfig(dataset="moons", hidden=4, latent_dim=2, loss=loss))
    if loss == "minimax":
        ref = lambda f: np.mean(_log_sigmoid(-f))                             # noqa: E731
    else:
        ref = lambda f: -np.mean(_log_sigmoid(f))                             # noqa: E731
    check_op(model.g_loss, [logits], reference=ref)


def test_minimax_loss_saturates_where_the_non_saturating_one_does_not():
    """Goodfellow et al.: when D rejects G(z) confidently (logit -> -inf) the minimax loss's
    gradient vanishes, the non-saturating loss's tends to -1/n per sample."""
    grads = {}
    for loss in ("minimax", "non-saturating"):
        model = MLPGAN(GANConfig(dataset="moons", hidden=4, latent_dim=2, loss=loss))
        logit = tinygen.tensor(np.full(4, -8.0), requires_grad=True)
        model.g_loss(logit).backward()
        grads[loss] = logit.grad.numpy()
    np.testing.assert_allclose(grads["minimax"], -1 / (1 + np.exp(8.0)) / 4, rtol=1e-10)
    np.testing.assert_allclose(grads["non-saturating"], -(1 - 1 / (1 + np.exp(8.0))) / 4,
                               rtol=1e-10)
    assert np.all(np.abs(grads["non-saturating"]) > 1000 * np.abs(grads["minimax"]))


# -- shapes and ranges -------------------------------------------------------------------------------
@pytest.mark.parametrize("cls,options", [(MLPGAN, {"hidden": 16}),
                                         (DCGAN, {"channels": 4, "latent_dim": 8}),
                                         (ConditionalDCGAN, {"channels": 4, "latent_dim": 8})])
def test_image_generators_shapes_and_ranges(cls, options):
    model = cls(cls.Config(**options))
    model.eval()
    x = model.sample(7, np.random.default_rng(0))
    assert x.shape == (7, 1, 28, 28) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() <= 1 and x.std() > 0
    with tinygen.no_grad():
        y = model.one_hot(np.arange(7) % 10) if model.conditional else None
        logits = model.D_logit(model.to_d_input(tinygen.tensor(x)), y)
    assert logits.shape == (7,)
    inter = model.interpolate(model.latents(3, np.random.default_rng(1)),
                              model.latents(3, np.random.default_rng(2)), steps=5,
                              labels=np.arange(3) if model.conditional else None)
    assert inter.shape == (3, 5, 1, 28, 28)
    # the interpolation's ends are the samples of the end latents
    z0 = model.latents(3, np.random.default_rng(1))
    np.testing.assert_allclose(inter[:, 0], model.generate(
        z0, np.arange(3) if model.conditional else None), atol=1e-6)


def test_toy_gan_samples_points():
    model = MLPGAN(GANConfig(dataset="rings", hidden=8, latent_dim=3))
    pts = model.sample(11, np.random.default_rng(0))
    assert pts.shape == (11, 2) and np.isfinite(pts).all()


def test_conditional_generator_uses_the_label():
    model = ConditionalDCGAN(ConditionalDCGAN.Config(channels=4, latent_dim=8))
    model.eval()
    z = np.repeat(model.latents(1, np.random.default_rng(0)), 10, axis=0)
    x = model.generate(z, np.arange(10))
    assert np.abs(x[0] - x[1]).max() > 1e-4            # same z, different digit


def test_conditional_discriminator_variants():
    """Projection D with the auxiliary classifier: its terms are logged; the concatenation D
    (label planes) has none; the logit of the projection D is psi.phi + (V y).phi."""
    rng = np.random.default_rng(0)
    batch = (tinygen.tensor(rng.random((8, 1, 28, 28)).astype(np.float32)),
             tinygen.tensor(np.arange(8) % 10))
    for options, keys in (({}, {"d_aux_loss", "g_aux_loss"}),
                          ({"projection": False, "aux_weight": 0.0}, set())):
        model = ConditionalDCGAN(ConditionalDCGAN.Config(channels=2, latent_dim=4, **options))
        opts = {"discriminator": tinygen.optim.Adam(model.discriminator.parameters()),
                "generator": tinygen.optim.Adam(model.generator.parameters())}
        stats = model.train_step(batch, rng, opts)
        assert {"d_aux_loss", "g_aux_loss"} & set(stats) == keys
        if keys:
            assert stats["loss"] == pytest.approx(stats["d_loss"] + stats["d_aux_loss"], rel=1e-5)
            d = model.discriminator
            model.eval()
            with tinygen.no_grad():
                x, y = model.to_d_input(batch[0]), model.one_hot(np.arange(8))
                logit, aux = model.D_both(x, y)
                phi = d.features(x).numpy().astype(np.float64)
            want = (phi @ d.psi.weight.detach().numpy().T.astype(np.float64))[:, 0] + d.psi.bias.detach().numpy() \
                + np.sum((y.detach().numpy() @ d.embed.weight.detach().numpy().T) * phi, axis=1)
            np.testing.assert_allclose(logit.numpy(), want, rtol=1e-4, atol=1e-5)
            assert aux.shape == (8, 10)
    with pytest.raises(ValueError, match="needs the projection discriminator"):
        ConditionalDCGAN(ConditionalDCGAN.Config(channels=2, projection=False, aux_weight=1.0))
    with pytest.raises(ValueError, match="aux_weight must be >= 0"):
        ConditionalDCGAN(ConditionalDCGAN.Config(channels=2, aux_weight=-1.0))


@pytest.mark.parametrize("bad,msg", [({"dataset": "spirals"}, "dataset must be"),
                                     ({"loss": "wasserstein"}, "loss must be one of"),
                                     ({"d_steps": 0}, "d_steps must be >= 1"),
                                     ({"real_label": 0.4}, "real_label must be in"),
                                     ({"latent_dim": 0}, "latent_dim must be >= 1")])
def test_gan_config_is_validated(bad, msg):
    with pytest.raises(ValueError, match=msg):
        MLPGAN(GANConfig(**bad))


def test_bad_latents_and_labels_are_refused():
    model = ConditionalDCGAN(ConditionalDCGAN.Config(channels=2, latent_dim=4))
    with pytest.raises(ValueError, match=r"z must have shape \(N, 4\), got \(3, 5\)"):
        model.generate(np.zeros((3, 5)), np.zeros(3, int))
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        model.generate(np.zeros((3, 4)), np.zeros(2, int))


# -- the k discriminator steps -----------------------------------------------------------------------
def test_generator_steps_once_per_k_discriminator_steps():
    model = MLPGAN(GANConfig(dataset="moons", hidden=8, latent_dim=2, d_steps=3))
    opts = {"discriminator": tinygen.optim.Adam(model.discriminator.parameters(), lr=1e-2),
            "generator": tinygen.optim.Adam(model.generator.parameters(), lr=1e-2)}
    rng = np.random.default_rng(0)
    batch = (tinygen.tensor(rng.normal(size=(16, 2)).astype(np.float32)),
             tinygen.tensor(np.zeros(16, np.int64)))
    g_moved, d_moved = [], []
    for _ in range(6):
        g0 = [p.detach().numpy().copy() for p in model.generator.parameters()]
        d0 = [p.detach().numpy().copy() for p in model.discriminator.parameters()]
        stats = model.train_step(batch, rng, opts)
        g_moved.append(any(np.any(a != p.detach().numpy()) for a, p in zip(g0, model.generator.parameters())))
        d_moved.append(any(np.any(a != p.detach().numpy()) for a, p in zip(d0, model.discriminator.parameters())))
        assert ("g_loss" in stats) == g_moved[-1]
        assert 0 < stats["d_real"] < 1 and 0 < stats["d_fake"] < 1
    assert d_moved == [True] * 6
    assert g_moved == [False, False, True, False, False, True]


# -- the trainer with several optimizers -------------------------------------------------------------
def _toy_data(n=96, seed=0):
    from tinygen.data import TOY_DATASETS
    pts = TOY_DATASETS["moons"](n, seed=seed)
    return RunData(Dataset(pts, np.zeros(n, np.int64), "moons"),
                   Dataset(pts[:32], np.zeros(32, np.int64), "moons-val"))


def _train_toy_gan(out, epochs, resume=None, seed=5, **options):
    tinygen.manual_seed(seed)
    model = MLPGAN(GANConfig(dataset="moons", hidden=16, latent_dim=2, d_steps=2, **options))
    data = _toy_data()
    cfg = TrainConfig(epochs=epochs, batch_size=32, lr=2e-3, seed=seed, out=str(out),
                      log_every=1, progress=False)
    trainer = Trainer(model, model.phases(data), (data.train.images, data.train.labels), cfg)
    trainer.fit(resume=resume)
    return model, trainer


def _records(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_gan_phase_checkpoints_both_optimizers_with_their_betas(tmp_path):
    model, trainer = _train_toy_gan(tmp_path, epochs=2)
    assert trainer.optimizer is None and set(trainer.optimizers) == {"discriminator", "generator"}
    for opt in trainer.optimizers.values():
        assert opt.param_groups[0]["betas"] == (0.5, 0.999)
    ckpt = load_checkpoint(tmp_path / "last.ckpt")
    assert set(ckpt["optimizers"]) == {"discriminator", "generator"}
    assert ckpt["optimizer"] is None
    # 3 batches per epoch, d_steps 2: 6 discriminator steps, generator steps after 2, 4, 6
    assert ckpt["state_dict"]["d_steps_done"] == 6
    recs = _records(tmp_path)
    train = [r for r in recs if r["kind"] == "train"]
    assert [("g_loss" in r) for r in train] == [False, True] * 3
    assert all({"d_loss", "d_real", "d_fake"} <= set(r) for r in train)
    assert [r["epoch"] for r in recs if r["kind"] == "val"] == [1, 2]
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith("samples_epoch")) == \
        ["samples_epoch_001.png", "samples_epoch_002.png"]


def test_gan_resume_reproduces_the_uninterrupted_run(tmp_path):
    full, _ = _train_toy_gan(tmp_path / "full", epochs=4)
    _train_toy_gan(tmp_path / "part", epochs=1)       # 3 batches: stops mid-rhythm (d_steps 2)
    resumed, _ = _train_toy_gan(tmp_path / "part", epochs=4,
                                resume=tmp_path / "part" / "last.ckpt", seed=99)
    a, b = _records(tmp_path / "full"), _records(tmp_path / "part")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for key in ("loss", "g_loss", "d_real", "d_fake"):
            assert ra.get(key) == rb.get(key)
    for (name, p), (_, q) in zip(full.state_dict().items(), resumed.state_dict().items()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=name)


def test_nan_in_a_step_stat_stops_training(tmp_path):
    model = MLPGAN(GANConfig(dataset="moons", hidden=8, latent_dim=2))
    calls = {"n": 0}

    def step(batch, rng, optimizers):
        calls["n"] += 1
        stats = model.train_step(batch, rng, optimizers)
        if calls["n"] == 5:
            stats["g_loss"] = float("nan")
        return stats
    phase = model.phases(_toy_data())[0]
    phase.step = step
    cfg = TrainConfig(epochs=3, batch_size=32, out=str(tmp_path), progress=False)
    data = _toy_data()
    with pytest.raises(TrainingDiverged, match=r"g_loss is nan at step 5 \(epoch 2\).*last.ckpt"):
        Trainer(model, [phase], (data.train.images, data.train.labels), cfg).fit()
    assert load_checkpoint(tmp_path / "last.ckpt")["trainer"]["step"] == 3


def test_phase_needs_a_loss_or_a_step_with_optimizers():
    with pytest.raises(ValueError, match="give parameters and loss, or step and optimizers"):
        Phase("p")
    with pytest.raises(ValueError, match="a step needs optimizers"):
        Phase("p", step=lambda b, r, o: {"loss": 0.0})
    model = MLPGAN(GANConfig(dataset="moons", hidden=4, latent_dim=2))
    phase = Phase("p", step=lambda b, r, o: {"d": 1.0},
                  optimizers={"d": OptimizerSpec(model.parameters)})
    data = _toy_data()
    trainer = Trainer(model, [phase], (data.train.images, data.train.labels),
                      TrainConfig(epochs=1, out="/tmp/unused-tinygen-test", progress=False))
    with pytest.raises(ValueError, match="must return stats with a 'loss' entry"):
        trainer.fit()


# -- short trainings ---------------------------------------------------------------------------------
def test_toy_gan_learns_the_eight_gaussians(tmp_path):
    """A few epochs on the eight Gaussians: the samples' Gaussian fit approaches the data's
    (frechet_2d) far below the untrained generator's."""
    from tinygen.data import load_toy_data
    tinygen.manual_seed(0)
    model = MLPGAN(GANConfig(dataset="8gaussians", hidden=64, latent_dim=4))
    data, _ = load_toy_data("8gaussians", n_train=1000, n_test=500)
    before = model.evaluate(data.test)["frechet_2d"]
    cfg = TrainConfig(epochs=15, batch_size=50, lr=1e-3, out=str(tmp_path), progress=False)
    Trainer(model, model.phases(data), (data.train.images, data.train.labels), cfg).fit()
    model.eval()
    after = model.evaluate(data.test)
    assert after["frechet_2d"] < 0.25 * before, (before, after)
    assert 0 < after["d_real"] < 1 and 0 < after["d_fake"] < 1
    epochs = [r for r in _records(tmp_path) if r["kind"] == "epoch"]
    assert len(epochs) == 15 and epochs[0]["loss"] != epochs[-1]["loss"]


@pytest.mark.parametrize("cls", [DCGAN, ConditionalDCGAN])
def test_dcgan_short_training_moves_and_writes_pictures(cls, tmp_path, capsys):
    from tinygen.data import load_mnist
    tinygen.manual_seed(0)
    digits = load_mnist("train", None)
    pick = np.random.default_rng(0).choice(len(digits), 160, replace=False)
    train = digits.subset(pick[:128])
    val = digits.subset(pick[128:])
    model = cls(cls.Config(channels=4, latent_dim=8, eval_samples=50, classifier="none"))
    g0 = model.sample(16, np.random.default_rng(0))
    cfg = TrainConfig(epochs=2, batch_size=32, lr=2e-3, out=str(tmp_path), log_every=1,
                      progress=False)
    data = RunData(train, val)
    Trainer(model, model.phases(data), (train.images, train.labels), cfg).fit()
    model.eval()
    g1 = model.sample(16, np.random.default_rng(0))
    assert g1.shape == (16, 1, 28, 28) and 0 <= g1.min() and g1.max() <= 1
    assert np.abs(g1 - g0).mean() > 1e-3                          # the generator moved
    train_recs = [r for r in _records(tmp_path) if r["kind"] == "train"]
    assert len(train_recs) == 8
    assert all(np.isfinite(r["g_loss"]) and 0 < r["d_real"] < 1 for r in train_recs)
    assert train_recs[0]["loss"] != train_recs[-1]["loss"]
    assert os.path.exists(tmp_path / "samples_epoch_002.png")
    model.finish(data)                   # keeps the training images for nearest_train.png
    paths = model.pictures(str(tmp_path), val, np.random.default_rng(0))
    assert [os.path.basename(p) for p in paths] == ["samples.png", "interpolations.png",
                                                    "nearest_train.png"]
    from PIL import Image
    w, h = Image.open(paths[0]).size
    assert (w, h) == ((2 + 10 * 30) * 2, (2 + 10 * 30) * 2)        # 10 x 10 tiles
    # `tinygen sample`: the conditional model puts a row per digit (25 -> 10 rows of 3)
    grid = model.save_samples(25, np.random.default_rng(0), str(tmp_path / "s.png"))
    w, h = Image.open(grid).size
    if model.conditional:
        assert (w, h) == ((2 + 3 * 30) * 2, (2 + 10 * 30) * 2)
    else:
        assert (w, h) == ((2 + 5 * 30) * 2, (2 + 5 * 30) * 2)
    # --classifier none: the classifier scores are left out, the model prints nothing
    metrics = model.evaluate(val)
    assert set(metrics) == {"d_real", "d_fake"}
    assert capsys.readouterr().err == ""
    # the default (""): the shipped scoring classifier judges the samples
    model.config.classifier = ""
    metrics = model.evaluate(val)
    assert 0 <= metrics["class_entropy"] <= np.log(10) + 1e-9
    assert metrics["fid_classifier"] > 0 and np.isfinite(metrics["fid_classifier"])
    if model.conditional:
        assert 0 <= metrics["label_accuracy"] <= 1


# -- minibatch standard deviation (DCGAN's --minibatch-std) ------------------------------------------
def _minibatch_std_reference(h, eps=1e-8):
    """NumPy float64, written out: the spread of each feature over the batch, averaged."""
    n, c, height, width = h.shape
    total = 0.0
    for k in range(c):
        for i in range(height):
            for j in range(width):
                column = h[:, k, i, j]
                total += math.sqrt(((column - column.mean()) ** 2).mean() + eps)
    spread = total / (c * height * width)
    return np.concatenate([h, np.full((n, 1, height, width), spread)], axis=1)


@settings(max_examples=15, deadline=None)
@given(st.data())
def test_minibatch_std_value_and_gradients(data):
    from tinygen.models.gan.conv import minibatch_std
    shape = (data.draw(st.integers(2, 4)), data.draw(st.integers(1, 3)),
             data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    # values apart (no ties): at zero spread sqrt(var + eps) curves too sharply for
    # finite differences
    h = data.draw(distinct_arrays(shape))
    if torch is not None:
        def torch_fn(t):
            spread = (t.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
            return torch.cat([t, spread.reshape(1, 1, 1, 1).expand(
                shape[0], 1, shape[2], shape[3])], dim=1)
    else:
        torch_fn = None
    check_op(minibatch_std, [h], reference=_minibatch_std_reference, torch_fn=torch_fn)


def test_dcgan_minibatch_std_lets_d_see_the_whole_batch():
    model = DCGAN(DCGAN.Config(channels=4, latent_dim=8, minibatch_std=True))
    assert model.discriminator.net[-1].weight.shape == (1, 2 * 4 + 1, 7, 7)
    model.eval()
    rng = np.random.default_rng(0)
    x = tinygen.tensor(rng.uniform(-1, 1, (6, 1, 28, 28)).astype(np.float32))
    same = tinygen.tensor(np.repeat(x.numpy()[:1], 6, axis=0))
    with tinygen.no_grad():
        varied, collapsed = model.D_logit(x, None), model.D_logit(same, None)
        # one image's logit depends on the rest of its batch: identical batch, zero spread
        plain = DCGAN(DCGAN.Config(channels=4, latent_dim=8))
        plain.eval()
        assert plain.D_logit(x, None).numpy()[0] == pytest.approx(
            plain.D_logit(same, None).numpy()[0])
    assert varied.shape == (6,) and abs(varied.numpy()[0] - collapsed.numpy()[0]) > 1e-6
    assert np.isfinite(model.sample(3, rng)).all()
    with pytest.raises(ValueError, match="minibatch_std.*--no-projection"):
        ConditionalDCGAN(ConditionalDCGAN.Config(channels=2, minibatch_std=True))
    cgan = ConditionalDCGAN(ConditionalDCGAN.Config(channels=2, latent_dim=4, projection=False,
                                                    aux_weight=0.0, minibatch_std=True))
    assert cgan.discriminator.net[-1].weight.shape == (1, 5, 7, 7)


def test_gan_epochs_are_ranked_by_the_validation_frechet_distance(tmp_path, monkeypatch):
    """With the scoring classifier, each epoch's validation record has the class entropy and
    Fréchet distance of the fixed latents' samples, and best.ckpt is the epoch with the lowest
    distance; without a classifier (or data to validate on) the last epoch is kept."""
    from tinygen.data import load_mnist
    from tinygen.models.gan.space import ImageSpace
    from tinygen.models.scoring import (class_coverage, features, features_and_labels,
                                        frechet_distance)
    tinygen.manual_seed(0)
    digits = load_mnist("train", None)
    pick = np.random.default_rng(1).choice(len(digits), 112, replace=False)
    train, val = digits.subset(pick[:64]), digits.subset(pick[64:])

    def fit(out, epochs):
        model = DCGAN(DCGAN.Config(channels=4, latent_dim=8))
        (phase,) = model.phases(RunData(train, val))
        assert phase.select == "fid_classifier"
        cfg = TrainConfig(epochs=epochs, batch_size=32, lr=2e-3, out=str(out), log_every=100,
                          progress=False)
        trainer = Trainer(model, [phase], (train.images, train.labels), cfg)
        trainer.fit()
        return model, trainer, [r for r in _records(out) if r["kind"] == "val"]

    # the record's numbers are the classifier's judgement of the fixed latents' samples
    model, _, vals = fit(tmp_path / "a", 1)
    model.eval()
    clf = model.scoring_classifier()
    f_fake, labels = features_and_labels(clf, model.fixed_sample(1000))
    assert vals[0]["fid_classifier"] == pytest.approx(
        frechet_distance(f_fake, features(clf, val.images)), rel=1e-4)
    assert vals[0]["class_entropy"] == pytest.approx(class_coverage(labels)[1], abs=1e-6)
    # best.ckpt: the epoch of the lowest distance, here the second of three
    scripted = iter([30.0, 10.0, 20.0])
    monkeypatch.setattr(ImageSpace, "quick_metrics",
                        lambda self, model, dataset: {"class_entropy": 2.0,
                                                      "fid_classifier": next(scripted)})
    model, trainer, vals = fit(tmp_path / "b", 3)
    assert [r["fid_classifier"] for r in vals] == [30.0, 10.0, 20.0]
    best = load_checkpoint(str(tmp_path / "b" / "best.ckpt"))
    last = load_checkpoint(str(tmp_path / "b" / "last.ckpt"))
    assert best["trainer"]["epoch"] == 2 and last["trainer"]["epoch"] == 3
    assert trainer.load_best()
    np.testing.assert_array_equal(model.state_dict()["generator.net.0.weight"],
                                  best["state_dict"]["generator.net.0.weight"])
    none = DCGAN(DCGAN.Config(channels=4, latent_dim=8, classifier="none"))
    assert none.phases(RunData(train, val))[0].select is None
    assert model.phases(RunData(train, None))[0].select is None


def test_cgan_epoch_record_has_the_label_accuracy_of_the_fixed_samples():
    """The per-epoch record's label accuracy is the classifier's judgement of the same 1,000
    fixed-latent samples that give its class entropy and Fréchet distance."""
    from tinygen.data import load_mnist
    from tinygen.models.scoring import classify
    tinygen.manual_seed(0)
    model = ConditionalDCGAN(ConditionalDCGAN.Config(channels=2, latent_dim=4))
    model.eval()
    val = load_mnist("train", None).subset(np.arange(40))
    record = model.quick_metrics(val)
    got = classify(model.scoring_classifier(), model.fixed_sample(1000))
    assert record["label_accuracy"] == pytest.approx(np.mean(got == np.arange(1000) % 10))
    assert {"d_real", "d_fake", "class_entropy", "fid_classifier"} <= set(record)
