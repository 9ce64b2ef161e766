"""The MNIST classifier that scores the generators: augmentation, shapes, a short training that
beats chance by far, evaluation, and option checks."""
import numpy as np
import pytest

import tinygen
from tinygen.data import load_mnist
from tinygen.data import RunData
from tinygen.data import random_shift
from tinygen.models.classifier import ClassifierConfig, MNISTClassifier
from tinygen.train import Trainer, TrainConfig


def test_random_shift_translates_each_image_within_the_range():
    rng = np.random.default_rng(0)
    x = np.zeros((20, 1, 28, 28), np.float32)
    x[:, :, 5:23, 6:20] = rng.random((20, 1, 18, 14))        # margins > the shift: nothing lost
    out = random_shift(x, 2, np.random.default_rng(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    offsets = set()
    for a, b in zip(x, out):
        # brute force: exactly one (dy, dx) in [-2, 2]^2 maps a onto b
        hits = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                if np.array_equal(np.roll(a, (dy, dx), axis=(1, 2)), b)]
        assert len(hits) == 1
        offsets.add(hits[0])
    assert len(offsets) > 5                                   # the shifts vary between images
    np.testing.assert_array_equal(random_shift(x, 0, rng), x)


def test_random_shift_fills_with_zeros():
    x = np.ones((50, 1, 6, 6), np.float32)
    out = random_shift(x, 1, np.random.default_rng(0))
    assert set(np.unique(out)) <= {0.0, 1.0}
    assert out.sum(axis=(1, 2, 3)).min() >= 25 and (out == 0).any()


def test_shapes_of_logits_features_and_labels():
    model = MNISTClassifier(ClassifierConfig(channels=4, hidden=12))
    model.eval()
    x = np.random.default_rng(0).random((7, 1, 28, 28)).astype(np.float32)
    assert model.logits(x).shape == (7, 10)
    with tinygen.no_grad():
        assert model.features(tinygen.tensor(x)).shape == (7, 12)
    labels = model.predict(x)
    assert labels.shape == (7,) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() <= 9


def test_short_training_beats_chance_by_far(tmp_path):
    """3 epochs on 1,000 embedded digits; error on 500 others well below chance (0.9), below
    the first epoch's, and the loss falls."""
    tinygen.manual_seed(0)
    digits = load_mnist("train", None)
    pick = np.random.default_rng(1).choice(len(digits), 1500, replace=False)
    train, val = digits.subset(pick[:1000]), digits.subset(pick[1000:])
    model = MNISTClassifier(ClassifierConfig(channels=8, hidden=32))
    before = model.evaluate(val)["error"]
    cfg = TrainConfig(epochs=3, batch_size=25, lr=2e-3, out=str(tmp_path), progress=False)
    trainer = Trainer(model, model.phases(RunData(train, val)), (train.images, train.labels),
                      cfg)
    records = trainer.fit()
    errors = [r["error"] for r in records]
    model.eval()
    after = model.evaluate(val)["error"]
    assert before > 0.6 and after < 0.25 and errors[-1] < errors[0]
    assert after == pytest.approx(np.mean(model.predict(val.images) != val.labels))
    assert trainer.load_best()


@pytest.mark.parametrize("bad,msg", [({"channels": 0}, "channels and hidden must be >= 1"),
                                     ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
                                     ({"shift": 9}, r"shift must be in \[0, 8\]")])
def test_options_are_validated(bad, msg):
    with pytest.raises(ValueError, match=msg):
        MNISTClassifier(ClassifierConfig(**bad))


def test_classifier_is_registered_and_does_not_sample():
    from tinygen.models import MODELS
    assert MODELS["classifier"] is MNISTClassifier
    with pytest.raises(ValueError, match="does not generate samples"):
        MNISTClassifier(ClassifierConfig(channels=2, hidden=4)).sample(2, np.random.default_rng())
