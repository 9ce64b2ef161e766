"""Sample-quality scores: the PSD square root, the Fréchet distance (closed forms, an independent
Denman-Beavers reference, PyTorch's general eigenvalues as oracle), class coverage, nearest
training images, input validation, and the scores of a model with a trained classifier."""
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygen
from harness import torch
from tinygen.data import load_mnist
from tinygen.models import scoring
from tinygen.models.classifier import ClassifierConfig, MNISTClassifier


def _spd(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T + (0 if rank else 1e-3) * np.eye(d)


def _sqrtm_denman_beavers(a, iters=100):
    """sqrt of a (not necessarily symmetric) matrix with positive real eigenvalues, by the
    Denman-Beavers iteration Y <- (Y + Z^-1)/2, Z <- (Z + Y^-1)/2 (Y -> a^1/2)."""
    y, z = a.copy(), np.eye(len(a))
    for _ in range(iters):
        y, z = 0.5 * (y + np.linalg.inv(z)), 0.5 * (z + np.linalg.inv(y))
    return y


@settings(max_examples=20)
@given(st.integers(1, 6), st.integers(0, 2**16))
def test_sqrtm_psd_squares_back(d, seed):
    rng = np.random.default_rng(seed)
    a = _spd(rng, d)
    s = scoring.sqrtm_psd(a)
    np.testing.assert_allclose(s, s.T, atol=1e-12)
    np.testing.assert_allclose(s @ s, a, rtol=1e-9, atol=1e-9 * np.abs(a).max())
    assert np.linalg.eigvalsh(s).min() >= -1e-12
    np.testing.assert_allclose(s, _sqrtm_denman_beavers(a), rtol=1e-7, atol=1e-9)


def test_sqrtm_psd_of_a_singular_matrix():
    rng = np.random.default_rng(0)
    a = _spd(rng, 5, rank=2)                       # eigenvalues 0 (rounding: +-1e-16)
    s = scoring.sqrtm_psd(a)
    np.testing.assert_allclose(s @ s, a, atol=1e-10)
    with pytest.raises(ValueError, match=r"square matrix, got shape \(2, 3\)"):
        scoring.sqrtm_psd(np.zeros((2, 3)))


def _fd_reference(mu_a, sa, mu_b, sb):
    """d^2 with tr (Sa Sb)^{1/2} from the Denman-Beavers root of the non-symmetric product."""
    return (np.sum((mu_a - mu_b) ** 2) + np.trace(sa) + np.trace(sb)
            - 2 * np.trace(_sqrtm_denman_beavers(sa @ sb)))


@settings(max_examples=20)
@given(st.integers(1, 6), st.integers(0, 2**16))
def test_frechet_distance_against_an_independent_square_root(d, seed):
    rng = np.random.default_rng(seed)
    mu_a, mu_b = rng.normal(size=d), rng.normal(size=d)
    sa, sb = _spd(rng, d), _spd(rng, d)
    got = scoring.frechet_distance_gaussians(mu_a, sa, mu_b, sb)
    want = _fd_reference(mu_a, sa, mu_b, sb)
    assert got == pytest.approx(want, rel=1e-7, abs=1e-9)
    assert scoring.frechet_distance_gaussians(mu_b, sb, mu_a, sa) == pytest.approx(got, rel=1e-9,
                                                                                   abs=1e-12)
    if torch is not None:     # oracle: tr (Sa Sb)^1/2 = sum sqrt(eigenvalues of Sa Sb)
        ev = torch.linalg.eigvals(torch.tensor(sa @ sb)).real.clamp(min=0).sqrt().sum().item()
        oracle = np.sum((mu_a - mu_b) ** 2) + np.trace(sa) + np.trace(sb) - 2 * ev
        assert got == pytest.approx(oracle, rel=1e-7, abs=1e-9)


def test_frechet_distance_closed_forms():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert scoring.frechet_distance_gaussians([1.0], [[4.0]], [-2.0], [[9.0]]) == \
        pytest.approx(9.0 + 1.0)
    # diagonal covariances: the sum over dimensions
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    want = np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert scoring.frechet_distance_gaussians(np.zeros(3), np.diag(s1), np.zeros(3),
                                              np.diag(s2)) == pytest.approx(want)
    # the same Gaussian: 0; commuting covariances a and 4a: tr(a + 4a - 2*2a) = tr a
    rng = np.random.default_rng(1)
    a = _spd(rng, 4)
    assert scoring.frechet_distance_gaussians(np.ones(4), a, np.ones(4), a) == \
        pytest.approx(0.0, abs=1e-9)
    assert scoring.frechet_distance_gaussians(np.ones(4), a, np.ones(4), 4 * a) == \
        pytest.approx(np.trace(a), rel=1e-9)


def test_frechet_distance_of_feature_sets():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(500, 3))
    assert scoring.frechet_distance(f, f) == pytest.approx(0.0, abs=1e-9)
    shifted = f + np.array([3.0, 0.0, 4.0])
    assert scoring.frechet_distance(f, shifted) == pytest.approx(25.0, rel=1e-9)
    with pytest.raises(ValueError, match=r"same D, got shapes \(500, 3\) and \(4, 2\)"):
        scoring.frechet_distance(f, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="N >= 2"):
        scoring.frechet_distance(f[:1], f)
    with pytest.raises(ValueError, match=r"sigma_b must have shape \(2, 2\)"):
        scoring.frechet_distance_gaussians(np.zeros(2), np.eye(2), np.zeros(2), np.eye(3))


# -- class coverage --------------------------------------------------------------------------------
def test_class_coverage():
    hist, h = scoring.class_coverage(np.repeat(np.arange(10), 7))
    assert list(hist) == [7] * 10 and h == pytest.approx(np.log(10))
    hist, h = scoring.class_coverage(np.full(30, 3))
    assert hist[3] == 30 and hist.sum() == 30 and h == 0.0 and str(h) == "0.0"   # not -0.0
    _, h = scoring.class_coverage(np.array([0, 0, 1, 1]))
    assert h == pytest.approx(np.log(2))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\), got values in \[0, 12\]"):
        scoring.class_coverage(np.array([0, 12]))
    with pytest.raises(ValueError, match="non-empty 1-D integer array"):
        scoring.class_coverage(np.array([0.5, 1.0]))


# -- nearest training image -----------------------------------------------------------------------------
def test_nearest_training_against_brute_force():
    rng = np.random.default_rng(0)
    train = rng.random((40, 1, 28, 28)).astype(np.float32)
    samples = rng.random((9, 28, 28)).astype(np.float32)
    samples[2] = train[17, 0]                                  # an exact copy
    idx, dist = scoring.nearest_training(samples, train, chunk=4)
    for i, s in enumerate(samples):
        d = [np.sqrt(np.sum((s.astype(np.float64) - t[0]) ** 2)) for t in train]
        assert idx[i] == int(np.argmin(d))
        assert dist[i] == pytest.approx(min(d), abs=1e-6)
    assert idx[2] == 17 and dist[2] == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("bad,msg", [
    (np.zeros((3, 2, 28, 28)), r"shape \(N, 1, 28, 28\).*got \(3, 2, 28, 28\)"),
    (np.zeros((0, 784)), "is empty"),
    (np.full((2, 784), np.nan), "NaN or infinite"),
    (np.full((2, 784), 1.5), r"must lie in \[0, 1\]"),
])
def test_images_are_validated(bad, msg):
    with pytest.raises(ValueError, match=msg):
        scoring.as_images(bad)


# -- with a classifier ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_classifier():
    """A small classifier trained for a few epochs on 1,500 embedded digits."""
    from tinygen.data import load_mnist
    from tinygen.data import RunData
    from tinygen.train import Trainer, TrainConfig
    import tempfile

    tinygen.manual_seed(0)
    digits = load_mnist("train", None)
    pick = np.random.default_rng(0).choice(len(digits), 2000, replace=False)
    train, held = digits.subset(pick[:1500]), digits.subset(pick[1500:])
    model = MNISTClassifier(ClassifierConfig(channels=8, hidden=32, shift=1, dropout=0.1))
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(epochs=3, batch_size=50, lr=2e-3, out=out, progress=False)
        Trainer(model, model.phases(RunData(train)), (train.images, train.labels), cfg).fit()
    model.eval()
    return model, held


def test_classifier_scores_of_real_digits(trained_classifier):
    model, held = trained_classifier
    labels = scoring.classify(model, held.images)
    assert labels.shape == (500,) and np.mean(labels == held.labels) > 0.85
    feats, labels2 = scoring.features_and_labels(model, held.images)
    assert feats.shape == (500, 32) and feats.dtype == np.float64
    np.testing.assert_array_equal(labels, labels2)
    rvr = scoring.real_vs_real(model, held.images)
    out = scoring.score_samples(model, held.images, held.images, train=held.images[:100])
    assert out["fid_classifier"] == pytest.approx(0.0, abs=1e-8)   # the same set
    assert out["fid_real_vs_real"] == pytest.approx(rvr)
    assert out["class_entropy"] > 2.2                             # the held-out digits are balanced
    assert sum(out[f"class_hist_{k}"] for k in range(10)) == pytest.approx(1.0)
    assert out["nn_train_dist"] == pytest.approx(0.0, abs=1e-3)   # samples taken from "train"
    # one repeated digit: no coverage, and far from the real features
    ones = np.repeat(held.images[held.labels == 1][:1], 300, axis=0)
    bad = scoring.score_samples(model, ones, held.images)
    assert bad["class_entropy"] == 0.0
    assert bad["fid_classifier"] > 10 * max(rvr, 1e-6)


def test_gan_evaluate_with_a_classifier_checkpoint(trained_classifier, tmp_path):
    """A GAN names a classifier checkpoint; evaluate then reports the scores (random generator:
    far from the real-vs-real distance)."""
    from tinygen.models.gan import DCGAN
    from tinygen.checkpoint import save_checkpoint
    from dataclasses import asdict

    model, held = trained_classifier
    path = tmp_path / "clf.ckpt"
    save_checkpoint(path, {"model": "classifier", "model_config": asdict(model.config),
                           "state_dict": model.state_dict()})
    assert isinstance(scoring.load_classifier(path), MNISTClassifier)
    gan = DCGAN(DCGAN.Config(channels=4, latent_dim=8, eval_samples=200, classifier=str(path)))
    gan.eval()
    out = gan.evaluate(held)
    assert {"fid_classifier", "fid_real_vs_real", "class_entropy", "d_real"} <= set(out)
    assert 0 <= out["class_entropy"] <= np.log(10) + 1e-9
    assert out["fid_classifier"] > out["fid_real_vs_real"]
    gan_ckpt = tmp_path / "gan.ckpt"
    save_checkpoint(gan_ckpt, {"model": "dcgan", "model_config": asdict(gan.config),
                               "state_dict": gan.state_dict()})
    with pytest.raises(ValueError, match="not of the 'classifier' model"):
        scoring.load_classifier(gan_ckpt)


# -- the classifier that ships with tinygen --------------------------------------------------------
def test_the_shipped_classifier_is_the_default_and_none_turns_it_off():
    assert os.path.isfile(scoring.SHIPPED_CLASSIFIER)
    assert os.path.getsize(scoring.SHIPPED_CLASSIFIER) < 1_000_000        # weights only
    assert scoring.classifier_path("") == scoring.SHIPPED_CLASSIFIER
    assert scoring.classifier_path(None) == scoring.SHIPPED_CLASSIFIER
    assert scoring.classifier_path("none") is None and scoring.classifier_path("None") is None
    assert scoring.classifier_path("a/b.ckpt") == "a/b.ckpt"
    assert scoring.resolve_classifier("none") is None
    clf = scoring.resolve_classifier("")
    assert isinstance(clf, MNISTClassifier) and not clf.training
    assert scoring.resolve_classifier("") is clf                   # loaded once per process
    assert (clf.config.channels, clf.config.hidden) == (16, 64)


def test_the_shipped_classifier_reads_held_out_digits():
    """On the embedded digits' seeded validation split (500 digits it was selected on, never
    trained on) and, where the MNIST test files are beside the project, on all 10,000 test
    digits (2.62% error when it was exported)."""
    from tinygen.data.runs import load_mnist_data
    clf = scoring.resolve_classifier("")
    data, _ = load_mnist_data(None, 0.1, 0)
    assert np.mean(clf.predict(data.val.images) != data.val.labels) < 0.04
    mnist = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")
    if os.path.exists(os.path.join(mnist, "t10k-labels-idx1-ubyte.gz")):
        test = load_mnist("test", mnist)
        assert np.mean(clf.predict(test.images) != test.labels) == pytest.approx(0.0262,
                                                                                 abs=1e-4)


def test_every_image_model_reports_sample_scores_by_default():
    """The base hook: a model that draws digits is judged by the shipped classifier; "none"
    turns it off; a model that does not draw images reports nothing."""
    from tinygen.models import build_model
    from tinygen.data.runs import load_mnist_data
    data, _ = load_mnist_data(None, 0.1, 0)
    vae = build_model("conv-vae", {})
    vae.eval()
    scores = vae.sample_quality(data.val)
    assert scores["scored_samples"] == vae.scored_samples == 10000
    assert 0 <= scores["class_entropy"] <= np.log(10) + 1e-9
    assert scores["fid_classifier"] > scores["fid_real_vs_real"] > 0
    assert build_model("toy-vae", {}).sample_quality(data.val) == {}
    assert build_model("classifier", {}).sample_quality(data.val) == {}
    gan = build_model("gan", {"classifier": "none"})
    assert gan.sample_quality(data.val) == {}          # GANs score in evaluate() (eval_samples)


def test_cvae_cond_accuracy_uses_the_shipped_classifier_unless_none():
    from tinygen.models import build_model
    from tinygen.data.runs import load_mnist_data
    data, _ = load_mnist_data(None, 0.1, 0)
    cvae = build_model("cvae", {})
    cvae.eval()
    acc = cvae.extra_evaluation(data.val, None)["cond_accuracy"]
    assert 0 <= acc <= 1
    cvae.use_classifier("none")
    assert cvae.config.classifier == "none" and cvae.extra_evaluation(data.val, None) == {}
    vae = build_model("vae", {})
    assert vae.classifier_option == ""
    vae.use_classifier("none")
    assert vae.classifier_option == "none" and vae.sample_quality(data.val) == {}


def test_the_number_of_scored_samples_can_be_changed():
    from tinygen.models import build_model
    gan = build_model("dcgan", {"channels": 4})
    gan.use_scored_samples(300)
    assert gan.config.eval_samples == 300
    vae = build_model("vae", {})
    vae.use_scored_samples(40)
    assert vae.scored_samples == 40 and type(vae).scored_samples == 10000   # this model only
    with pytest.raises(ValueError, match="no samples that the scoring classifier judges"):
        build_model("toy-vae", {}).use_scored_samples(10)


def test_scores_only_refuses_models_that_score_in_evaluate(tmp_path):
    from dataclasses import asdict
    from tinygen.checkpoint import save_checkpoint
    from tinygen.models import build_model
    from tinygen.train.run import evaluate_checkpoint
    gan = build_model("dcgan", {"channels": 4})
    path = tmp_path / "gan.ckpt"
    save_checkpoint(path, {"model": "dcgan", "model_config": asdict(gan.config),
                           "state_dict": gan.state_dict()})
    with pytest.raises(ValueError, match="--scores-only: model 'dcgan' has no separate"):
        evaluate_checkpoint(path, scores_only=True)
