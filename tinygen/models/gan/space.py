"""The data space a GAN plays in, as an object: MNIST images or points of a 2-D toy set.

Everything that differs between the two -- how data is shown to the discriminator, how the
generator's output becomes data, where the data comes from, how samples are scored and drawn --
is a method here, so that the GAN classes have no ``if toy`` branches.
"""
from __future__ import annotations

import os

import numpy as np

from ...data import TOY_DATASETS, load_mnist_data, load_toy_data

__all__ = ["ImageSpace", "PointSpace", "space_for", "IMAGE_SHAPE", "PIXELS"]

IMAGE_SHAPE = (1, 28, 28)
PIXELS = 28 * 28


def _array(g) -> np.ndarray:
    return g.cpu().numpy() if hasattr(g, "numpy") else np.asarray(g)


class ImageSpace:
    """MNIST digits (N, 1, 28, 28) in [0, 1]; D sees 2x - 1 in [-1, 1], G ends in tanh."""
    name = "mnist"
    dim = PIXELS
    images = True

    def to_d_input(self, x):
        return x * 2.0 - 1.0

    def from_g_output(self, g) -> np.ndarray:
        return np.clip((_array(g) + 1.0) / 2.0, 0.0, 1.0)

    def load_data(self, data_dir, val_fraction, seed):
        return load_mnist_data(data_dir, val_fraction, seed)

    def evaluate(self, model, dataset, rng) -> dict:
        """The classifier's scores of ``eval_samples`` samples against ``dataset`` (nothing
        without a scoring classifier)."""
        clf = model.scoring_classifier()
        if clf is None:
            return {}
        from ..scoring import score_samples
        return score_samples(clf, model.sample(model.config.eval_samples, rng), dataset.images)

    def quick_metrics(self, model, dataset) -> dict:
        """Class entropy of 1,000 samples from the fixed latents and their Fréchet distance to
        ``dataset``'s images (the validation digits) in the classifier's features: what ranks
        the epochs (:meth:`ranks_epochs`)."""
        clf = model.scoring_classifier()
        if clf is None:
            return {}
        from ..scoring import class_coverage, features, features_and_labels, frechet_distance
        f_fake, labels = features_and_labels(clf, model.fixed_sample(1000))
        _, entropy = class_coverage(labels)
        return {"class_entropy": entropy,
                "fid_classifier": frechet_distance(f_fake, features(clf, dataset.images)),
                **model.fixed_sample_metrics(labels)}

    def ranks_epochs(self, model) -> bool:
        """Whether the epochs are ranked (best.ckpt) by the validation ``fid_classifier``: with
        a scoring classifier."""
        return model.scoring_classifier() is not None

    def extra_metrics(self, model, data, split, dataset) -> dict:
        """The overfitting check: mean distance of 100 samples to their nearest training image
        (``<split>_nn_train_dist``) beside that of 100 real ``split`` images."""
        from ..scoring import nearest_training
        samples = model.sample(100, np.random.default_rng(3))
        return {f"{split}_nn_train_dist":
                float(nearest_training(samples, data.train.images)[1].mean()),
                f"{split}_nn_train_dist_real":
                float(nearest_training(dataset.images[:100], data.train.images)[1].mean())}

    def epoch_picture(self, model, path, reference, epoch):
        return model.save_grid(model.fixed_sample(100), path)

    def save_samples(self, model, n, rng, path):
        from ..base import GenerativeModel
        return GenerativeModel.save_samples(model, n, rng, path)      # the default image grid

    def pictures(self, model, out_dir, dataset, rng, train_images):
        from ... import plots as img
        from ..scoring import nearest_training

        paths = [model.save_grid(model.sample(100, rng), os.path.join(out_dir, "samples.png"))]
        z0, z1 = model.latents(8, rng), model.latents(8, rng)
        labels = np.arange(8) % 10 if model.conditional else None
        paths.append(img.save_interpolations(model.interpolate(z0, z1, labels=labels),
                                             os.path.join(out_dir, "interpolations.png"),
                                             scale=2))
        if train_images is not None:   # samples (odd rows) above their nearest training images
            s = model.sample(20, rng)
            idx, _ = nearest_training(s, train_images)
            paths.append(img.save_reconstructions(s, train_images[idx],
                                                  os.path.join(out_dir, "nearest_train.png"),
                                                  scale=2))
        return paths


class PointSpace:
    """Points (N, 2) of a generated toy set, shown to D as they are; G ends linear."""
    images = False
    dim = 2

    def __init__(self, name):
        if name not in TOY_DATASETS:
            raise ValueError(f"dataset must be 'mnist' or one of {', '.join(sorted(TOY_DATASETS))}"
                             f", got {name!r}")
        self.name = name

    def to_d_input(self, x):
        return x

    def from_g_output(self, g) -> np.ndarray:
        return _array(g)

    def load_data(self, data_dir, val_fraction, seed):
        if data_dir:
            raise ValueError(f"gan --dataset {self.name} trains on generated 2-D points; --data "
                             f"{data_dir!r} is not used")
        return load_toy_data(self.name, val_fraction=val_fraction, seed=seed)

    def evaluate(self, model, dataset, rng) -> dict:
        """``frechet_2d``: the Fréchet distance between Gaussians fitted to samples and data."""
        from ..scoring import frechet_distance
        return {"frechet_2d": frechet_distance(model.sample(model.config.eval_samples, rng),
                                               dataset.images)}

    def quick_metrics(self, model, dataset) -> dict:
        return {}

    def ranks_epochs(self, model) -> bool:
        return False

    def extra_metrics(self, model, data, split, dataset) -> dict:
        return {}

    def epoch_picture(self, model, path, reference, epoch):
        from ... import plots as img
        return img.plot_scatter_2d(model.fixed_sample(1000), path, reference=reference,
                                   title=f"{model.model_name} epoch {epoch}")

    def save_samples(self, model, n, rng, path):
        from ... import plots as img
        return img.plot_scatter_2d(model.sample(n, rng), path, title=model.model_name)

    def pictures(self, model, out_dir, dataset, rng, train_images):
        from ... import plots as img
        return [img.plot_scatter_2d(model.sample(2000, rng),
                                    os.path.join(out_dir, "samples.png"),
                                    reference=dataset.images, title=model.model_name)]


def space_for(dataset: str):
    """The data space named by a GAN's ``dataset`` option."""
    return ImageSpace() if dataset == "mnist" else PointSpace(dataset)
