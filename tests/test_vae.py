"""The VAE family: the importance-weighted bound against an exactly known log p(x), overfitting
one batch, a short training of every model, the command line, resume and errors (the
likelihoods and the estimator against direct formulas: tests/test_distributions.py)."""
import json
import math
import os

import numpy as np
import pytest

import tinygen
from tinygen import nn
from tinygen.models import MODELS
from tinygen.data import RunData
from tinygen.models.semisupervised import labelled_indices
from tinygen.distributions import Family, FixedNormal
from tinygen.models.vae import VAE, MLPVAE, VAEConfig
from tinygen.train.loop import TrainConfig, Trainer


# -- the importance-weighted bound against an exact log p(x) -----------------------------------
class LinearGaussianVAE(VAE):
    """p(z) = N(0, I), p(x|z) = N(W z + b, s^2 I): log p(x) = log N(x; b, W W^T + s^2 I) and the
    posterior p(z|x) = N(S W^T (x - b) / s^2, S), S = (I + W^T W / s^2)^-1, are exact. The
    encoder q(z|x) is that posterior with its mean shifted by ``shift`` and its log-variance
    by ``widen`` (0, 0: q is exact and the ELBO equals log p(x))."""
    model_name = ""
    Config = VAEConfig

    def __init__(self, dim_x=3, dim_z=2, std=0.5, shift=0.0, widen=0.0):
        super().__init__(VAEConfig(latent_dim=dim_z))
        self.latent_dim = dim_z
        self.likelihood = Family(FixedNormal, std=std)
        self.dec = nn.Linear(dim_z, dim_x)
        self.std, self.shift, self.widen = std, shift, widen

    def _wb(self):
        return (self.dec.weight.detach().numpy().astype(np.float64),
                self.dec.bias.detach().numpy().astype(np.float64))

    def encode(self, x, y=None):
        w, b = self._wb()
        cov = np.linalg.inv(np.eye(self.latent_dim) + w.T @ w / self.std ** 2)   # S (d, d)
        mu = (x.numpy().astype(np.float64) - b) @ w @ cov / self.std ** 2 + self.shift
        # q has a diagonal covariance: exact only if S is diagonal, so decorrelate W's columns
        logvar = np.log(np.diag(cov))[None, :] + self.widen + np.zeros_like(mu)
        return tinygen.tensor(mu), tinygen.tensor(logvar)

    def decode(self, z, y=None):
        return (self.dec(z),)

    def exact_log_px(self, x):
        w, b = self._wb()
        cov = w @ w.T + self.std ** 2 * np.eye(len(b))
        d = x - b
        _, logdet = np.linalg.slogdet(cov)
        return -0.5 * (np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d) + logdet
                       + len(b) * math.log(2 * math.pi))


def _linear_gaussian(**kw):
    model = LinearGaussianVAE(**kw)
    w = np.linalg.qr(np.random.default_rng(6).normal(size=(3, 2)))[0] * np.array([1.5, 0.8])
    with tinygen.no_grad():                      # orthogonal columns: the posterior is diagonal
        model.dec.weight.copy_(tinygen.tensor(w.astype(np.float32)))
    model.eval()
    z = np.random.default_rng(3).standard_normal((6, 2))
    x = z @ w.T + model.dec.bias.detach().numpy() + 0.5 * np.random.default_rng(4).standard_normal((6, 3))
    return model, x


def test_elbo_and_iw_estimate_are_exact_with_the_true_posterior():
    model, x = _linear_gaussian()
    exact = model.exact_log_px(x)
    elbo, _, kl = model.elbo(x, None, np.random.default_rng(0))
    # with q = p(z|x), log p(x|z) + log p(z) - log q(z|x) = log p(x) for every z
    np.testing.assert_allclose(model.iw_log_likelihood(x, k=1, rng=np.random.default_rng(1)),
                               exact, atol=1e-4)
    assert np.all(kl > 0)
    # one-sample ELBO: unbiased for log p(x) - KL(q || posterior) = log p(x)
    assert np.mean(elbo) == pytest.approx(np.mean(exact), abs=0.5)


def test_importance_weighted_bound_is_above_the_elbo_and_converges_to_log_px():
    model, x = _linear_gaussian(shift=0.4, widen=0.7)
    exact = model.exact_log_px(x)
    elbo = np.mean([model.elbo(x, None, np.random.default_rng(s))[0] for s in range(200)],
                   axis=0)                                            # E_q[...] per sample
    # E[log mean of k weights] over 40 draws: the bound tightens with k towards log p(x)
    bounds = {k: np.mean([model.iw_log_likelihood(x, k=k, rng=np.random.default_rng(s))
                          for s in range(40)], axis=0) for k in (1, 10, 100)}
    assert np.mean(bounds[1]) == pytest.approx(np.mean(elbo), abs=0.25)   # k = 1: the ELBO again
    assert np.mean(elbo) < np.mean(bounds[10]) < np.mean(bounds[100]) < np.mean(exact)
    assert np.all(bounds[100] < exact + 0.02)
    big = model.iw_log_likelihood(x, k=5000, rng=np.random.default_rng(5))
    np.testing.assert_allclose(big, exact, atol=0.05)
    # chunked estimation (several chunks of k per image) estimates the same quantity
    model.iw_batch_rows = 7
    chunked = model.iw_log_likelihood(x, k=5000, rng=np.random.default_rng(5))
    np.testing.assert_allclose(chunked, exact, atol=0.05)
    with pytest.raises(ValueError, match="k"):
        model.iw_log_likelihood(x, k=0)


# -- training ----------------------------------------------------------------------------------
def _digits(n=200, seed=0):
    from tinygen.data import load_mnist
    ds = load_mnist("train", None)
    return ds.subset(np.random.default_rng(seed).permutation(len(ds))[:n])   # classes mixed


def test_vae_overfits_one_batch():
    tinygen.manual_seed(0)
    model = MLPVAE(VAEConfig(hidden=128, latent_dim=8, iw_samples=0))
    batch = _digits(20)
    y = tinygen.tensor(batch.labels)
    opt = tinygen.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(300):
        xb = tinygen.tensor(model.prepare(batch.images, rng))   # fresh binarization (host side)
        loss, _ = model.training_loss((xb, y), rng)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert np.mean(losses[:10]) > 400 and np.mean(losses[-20:]) < 0.5 * np.mean(losses[:10])


@pytest.mark.parametrize("name", ["vae", "cvae", "conv-vae", "vanilla-vae", "toy-vae", "m1", "m2",
                                  "m1m2"])
def test_short_training_of_every_vae(name, tmp_path):
    cls = MODELS[name]
    small = dict(iw_samples=4)
    if name in ("m1", "m2", "m1m2"):
        small.update(m1_epochs=1, classifier_epochs=1, labels=20, hidden=64, m1_hidden=64,
                     m1_latent_dim=8, latent_dim=4)
    if name == "conv-vae":
        small.update(channels=8)
    if name == "vanilla-vae":
        small.update(hidden_dims="8,16")
    model = cls(cls.Config(**small))
    if name == "toy-vae":
        data = model.load_data(None, 0.1, 0)[0]
    else:
        digits = _digits(120)
        data = RunData(digits.subset(np.arange(100)), digits.subset(np.arange(100, 120)))
    cfg = TrainConfig(epochs=2, batch_size=25, out=str(tmp_path), progress=False, log_every=1)
    trainer = Trainer(model, model.phases(data), (data.train.images, data.train.labels), cfg)
    trainer.fit()
    train = [r for r in trainer.history if r["kind"] == "train"]
    assert all(np.isfinite(r["loss"]) for r in train)
    last_phase = [r for r in train if r["phase"] == train[-1]["phase"]]
    assert last_phase[-1]["loss"] != last_phase[0]["loss"]          # the parameters moved
    model.eval()
    metrics = model.evaluate(data.val)
    assert all(np.isfinite(v) for v in metrics.values())
    if name in ("m1", "m2", "m1m2"):
        assert 0 <= metrics["error"] <= 1 and "test_error" not in metrics
        assert ("nll_nats" if name != "m1m2" else "m1_nll_nats") in metrics
    else:
        assert metrics["elbo_nats"] == pytest.approx(-metrics["neg_elbo"])
        assert metrics["kl_nats"] >= 0 and metrics["nll_nats"] <= metrics["neg_elbo"] + 5
    samples = model.sample(10, np.random.default_rng(0))
    if name == "toy-vae":
        assert samples.shape == (10, 2)
    else:
        assert samples.shape == (10, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1
    paths = model.pictures(str(tmp_path), data.val, np.random.default_rng(0))
    assert paths and all(os.path.getsize(p) > 0 for p in paths)


def test_conditional_samples_follow_the_label_ordering_and_manifold():
    tinygen.manual_seed(0)
    model = MODELS["cvae"](MODELS["cvae"].Config(latent_dim=2, hidden=32))
    model.eval()
    z = np.zeros((10, 2))
    per_label = model.decode_to_images(z, np.arange(10))
    assert len({arr.tobytes() for arr in per_label}) == 10          # the label changes the output
    assert model.manifold(5, np.zeros(25, np.int64)).shape == (25, 1, 28, 28)
    with pytest.raises(ValueError, match="labels"):
        model.encode(tinygen.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match="latent_dim = 2"):
        MLPVAE(VAEConfig(latent_dim=3)).manifold()


def test_warmup_ramps_the_kl_weight_and_resumes(tmp_path):
    digits = _digits(100)
    data = RunData(digits.subset(np.arange(80)), digits.subset(np.arange(80, 100)))

    def run(epochs, resume=None):
        tinygen.manual_seed(0)
        model = MLPVAE(VAEConfig(hidden=32, latent_dim=4, warmup_epochs=2, iw_samples=0))
        cfg = TrainConfig(epochs=epochs, batch_size=20, out=str(tmp_path / "run"),
                          progress=False, log_every=1)
        trainer = Trainer(model, model.phases(data), (data.train.images, data.train.labels), cfg)
        trainer.fit(resume=resume)
        return model, [r["loss"] for r in trainer.history if r["kind"] == "train"]

    model, _ = run(1)
    assert model.kl_weight() == pytest.approx(0.5)                  # 1 of 2 warm-up epochs
    _, resumed = run(3, resume=str(tmp_path / "run" / "last.ckpt"))
    full_model, full = run(3)
    assert full_model.kl_weight() == pytest.approx(1.0)
    np.testing.assert_allclose(resumed, full[-len(resumed):], rtol=1e-6)


def test_labelled_subset_is_balanced_and_seeded():
    labels = np.repeat(np.arange(10), 30)
    idx = labelled_indices(labels, 100, seed=0)
    assert len(idx) == 100 and np.all(np.bincount(labels[idx]) == 10)
    np.testing.assert_array_equal(idx, labelled_indices(labels, 100, seed=0))
    assert not np.array_equal(idx, labelled_indices(labels, 100, seed=1))
    with pytest.raises(ValueError, match="multiple"):
        labelled_indices(labels, 105, seed=0)
    with pytest.raises(ValueError, match="needs 40 images"):
        labelled_indices(labels, 400, seed=0)


@pytest.mark.parametrize("name, options, match", [
    ("vae", {"likelihood": "poisson"}, "likelihood must be one of"),
    ("vae", {"latent_dim": 0}, "latent_dim"),
    ("vae", {"logvar_min": 3.0, "logvar_max": 2.0}, "logvar_min"),
    ("vanilla-vae", {"hidden_dims": "32,x"}, "hidden_dims"),
    ("conv-vae", {"decoder_std": -1.0}, "decoder_std"),
    ("m2", {"hidden": 0}, "hidden"),
])
def test_bad_options_are_refused(name, options, match):
    cls = MODELS[name]
    with pytest.raises(ValueError, match=match):
        cls(cls.Config(**options))


def test_cli_trains_and_evaluates_toy_vae(tmp_path, capsys):
    from tinygen.cli import main

    out = tmp_path / "toy"
    assert main(["train", "toy-vae", "--epochs", "3", "--out", str(out), "--no-progress",
                 "--iw-samples", "50"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["test_nll_nats"] <= -results["test_elbo_nats"] + 0.5   # IW at least ~ELBO
    assert (out / "samples.png").stat().st_size > 0
    capsys.readouterr()
    assert main(["eval", str(out / "model.ckpt"), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["split"] == "test" and ev["test_nll_nats"] == pytest.approx(results["test_nll_nats"])
    assert main(["sample", str(out / "model.ckpt"), "-n", "100",
                 "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0


def test_iwae_training_bound_matches_the_estimator_and_trains():
    model, x = _linear_gaussian(shift=0.4, widen=0.7)
    exact = model.exact_log_px(x)
    xt = tinygen.tensor(x.astype(np.float32))
    with tinygen.no_grad():
        bound = model.iwae_bound(xt, None, 4000, np.random.default_rng(0)).numpy()
    np.testing.assert_allclose(bound, exact, atol=0.06)
    # a VAE trained with the IWAE bound (k = 3) and shift augmentation: finite, improving
    tinygen.manual_seed(0)
    vae = MLPVAE(VAEConfig(hidden=64, latent_dim=4, train_samples=3, shift=1, iw_samples=0))
    digits = _digits(40)
    opt = tinygen.optim.Adam(vae.parameters(), lr=3e-3)
    rng = np.random.default_rng(1)
    losses = []
    for _ in range(60):
        images, labels = vae.prepare_batch((digits.images, digits.labels), rng)  # shift, binarize
        loss, stats = vae.training_loss((tinygen.tensor(images), tinygen.tensor(labels)), rng)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert np.isfinite(losses).all() and stats["iwae_nats"] == pytest.approx(-losses[-1])
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 50
    with pytest.raises(ValueError, match="train_samples"):
        MLPVAE(VAEConfig(train_samples=0))
