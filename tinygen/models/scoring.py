"""Sample-quality scores for any image generator, through a classifier trained with tinygen
(:mod:`tinygen.models.classifier`). Everything takes plain NumPy image arrays (N, 1, 28, 28)
(or (N, 28, 28), (N, 784)) with values in [0, 1], so any model's ``sample(n, rng)`` can be
scored the same way.

* **Class coverage**: the histogram h of the labels the classifier gives to the samples and
  its entropy  H = - sum_k p_k log p_k,  p_k = h_k / n  (nats). All ten digits equally often
  gives log 10 = 2.303; a generator that collapsed to one digit gives 0.
* **Fréchet distance** between the classifier's penultimate features phi of two sets, each
  summarized by a Gaussian N(mu, Sigma) (Heusel et al. 2017, here with our own classifier
  instead of Inception):

      d^2 = || mu_a - mu_b ||^2 + tr( Sigma_a + Sigma_b - 2 (Sigma_a Sigma_b)^{1/2} ),

  with  tr (Sigma_a Sigma_b)^{1/2} = tr (Sigma_a^{1/2} Sigma_b Sigma_a^{1/2})^{1/2}: both
  square roots are of symmetric positive semi-definite matrices, taken by eigendecomposition
  in float64. The distance between two halves of the real test set is the floor a perfect
  generator would reach at that sample size (:func:`real_vs_real`).
* **Overfitting check** (the lecture): for sampled images the nearest training image in
  Euclidean distance; a generator that memorized would show distances far below those of real
  held-out digits to the training set.
"""
from __future__ import annotations

import os

import numpy as np

NUM_CLASSES = 10


def as_images(images, name="images") -> np.ndarray:
    """``images`` as a float32 array (N, 1, 28, 28); a ValueError naming ``name`` and the shape
    for anything else (wrong shape, NaN/Inf, values outside [0, 1])."""
    x = np.asarray(images)
    if x.ndim == 2 and x.shape[1] == 784:
        x = x.reshape(-1, 1, 28, 28)                   # (N, 784) -> (N, 1, 28, 28)
    elif x.ndim == 3 and x.shape[1:] == (28, 28):
        x = x[:, None]                                 # (N, 28, 28) -> (N, 1, 28, 28)
    if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
        raise ValueError(f"{name} must have shape (N, 1, 28, 28), (N, 28, 28) or (N, 784), got "
                         f"{tuple(np.shape(images))}")
    if len(x) == 0:
        raise ValueError(f"{name} is empty (shape {tuple(np.shape(images))})")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real numbers, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} (shape {x.shape}) contains NaN or infinite values")
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"{name} (shape {x.shape}) must lie in [0, 1], got values in "
                         f"[{x.min():.4g}, {x.max():.4g}]")
    return np.ascontiguousarray(x)


# -- the classifier ------------------------------------------------------------------------------
def load_classifier(path, device="cpu"):
    """The :class:`~tinygen.models.classifier.MNISTClassifier` stored in checkpoint ``path``
    (``tinygen train classifier`` writes ``model.ckpt``), in evaluation mode."""
    from .registry import model_from_checkpoint

    model, ckpt = model_from_checkpoint(path, device)
    if ckpt["model"] != "classifier":
        raise ValueError(f"{path!r} is a checkpoint of {ckpt['model']!r}, not of the "
                         f"'classifier' model (train one with `tinygen train classifier`)")
    return model


_resolved: dict = {}

#: The scoring classifier that ships with tinygen (package data, weights only): the
#: ``classifier`` model with ``--channels 16 --hidden 64``, trained on the 5,000 embedded digits
#: by the command in :data:`SHIPPED_CLASSIFIER_COMMAND`; test error 2.62% on the 10,000 MNIST
#: test images.
SHIPPED_CLASSIFIER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights",
                                  "mnist_classifier.ckpt")
SHIPPED_CLASSIFIER_COMMAND = ("tinygen train classifier --channels 16 --hidden 64 --epochs 30 "
                              "--seed 0 --data MNIST_DIR; tinygen export RUN/model.ckpt "
                              "tinygen/models/weights/mnist_classifier.ckpt")
#: the ``classifier`` option that turns the sample scores off
NO_CLASSIFIER = "none"


def classifier_path(option):
    """The checkpoint a model's ``classifier`` option names: ``""`` (the default) the shipped
    classifier :data:`SHIPPED_CLASSIFIER`, ``"none"`` no classifier (None), else the path."""
    if option is None or option == "":
        return SHIPPED_CLASSIFIER
    if str(option).lower() == NO_CLASSIFIER:
        return None
    return os.fspath(option)


def resolve_classifier(option, device="cpu"):
    """The scoring classifier every image model uses (GANs, VAEs, flows, DDPM, ...): the
    checkpoint named by the model's ``classifier`` option (see :func:`classifier_path`; the
    shipped one by default), loaded once per process and device; None for ``"none"`` (the
    class-coverage and Fréchet scores are then not reported). This is the one place where a
    model's scoring classifier is chosen."""
    path = classifier_path(option)
    if path is None:
        return None
    key = (path, str(device))
    if key not in _resolved:
        _resolved[key] = load_classifier(path, device)
    return _resolved[key]


def classify(model, images) -> np.ndarray:
    """Labels (N,) int64 that classifier ``model`` gives to ``images``."""
    model.eval()
    return model.predict(as_images(images))


def features(model, images) -> np.ndarray:
    """The classifier's penultimate features phi(x) (N, H) as float64."""
    return features_and_labels(model, images)[0]


def features_and_labels(model, images):
    """(phi(x) (N, H) float64, labels (N,) int64) in one pass of the classifier."""
    x = as_images(images)
    model.eval()

    def run(b):
        phi = model.features(model.as_tensor(b))
        return phi.cpu().numpy(), model.head(phi).cpu().numpy()
    parts = [out for out, _ in model.batched(run, x)]
    feats = np.concatenate([p[0] for p in parts]).astype(np.float64)
    labels = np.concatenate([p[1] for p in parts]).argmax(axis=1).astype(np.int64)
    return feats, labels


# -- class coverage ------------------------------------------------------------------------------
def class_coverage(labels, num_classes=NUM_CLASSES):
    """(histogram (num_classes,) int64, entropy in nats) of integer ``labels``."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a non-empty 1-D integer array, got shape "
                         f"{labels.shape} and dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got values in "
                         f"[{labels.min()}, {labels.max()}]")
    hist = np.bincount(labels, minlength=num_classes).astype(np.int64)
    p = hist[hist > 0] / hist.sum()
    return hist, float(-(p * np.log(p)).sum()) + 0.0  # H = - sum_k p_k log p_k (no -0.0)


# -- Fréchet distance ----------------------------------------------------------------------------
def sqrtm_psd(a) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix ``a`` (D, D) by
    eigendecomposition a = V diag(lambda) V^T -> V diag(sqrt(max(lambda, 0))) V^T (float64;
    eigenvalues that rounding made slightly negative count as 0)."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"a must be a square matrix, got shape {a.shape}")
    a = 0.5 * (a + a.T)                                 # symmetrize away rounding
    lam, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(lam, 0.0, None))) @ v.T


def gaussian_stats(feats):
    """(mu (D,), Sigma (D, D)) of features (N, D), float64, Sigma with the 1/(N-1) estimator."""
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_distance_gaussians(mu_a, sigma_a, mu_b, sigma_b) -> float:
    """d^2 = ||mu_a - mu_b||^2 + tr(Sigma_a) + tr(Sigma_b) - 2 tr (Sigma_a^1/2 Sigma_b
    Sigma_a^1/2)^1/2 between N(mu_a, Sigma_a) and N(mu_b, Sigma_b)."""
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    sigma_a, sigma_b = np.asarray(sigma_a, np.float64), np.asarray(sigma_b, np.float64)
    d = mu_a.shape[0]
    for name, v in (("mu_a", mu_a), ("mu_b", mu_b)):
        if v.shape != (d,):
            raise ValueError(f"{name} must have shape ({d},), got {v.shape}")
    for name, m in (("sigma_a", sigma_a), ("sigma_b", sigma_b)):
        if m.shape != (d, d):
            raise ValueError(f"{name} must have shape ({d}, {d}), got {m.shape}")
    root_a = sqrtm_psd(sigma_a)
    middle = root_a @ sigma_b @ root_a                   # symmetric PSD
    lam = np.linalg.eigvalsh(0.5 * (middle + middle.T))
    tr_cross = np.sqrt(np.clip(lam, 0.0, None)).sum()    # tr (Sigma_a Sigma_b)^{1/2}
    diff = mu_a - mu_b
    value = diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * tr_cross
    return float(max(value, 0.0))


def frechet_distance(feats_a, feats_b) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets (N_a, D), (N_b, D)."""
    fa, fb = np.asarray(feats_a), np.asarray(feats_b)
    if fa.ndim != 2 or fb.ndim != 2 or fa.shape[1] != fb.shape[1]:
        raise ValueError(f"feats_a and feats_b must be (N, D) with the same D, got shapes "
                         f"{fa.shape} and {fb.shape}")
    return frechet_distance_gaussians(*gaussian_stats(fa), *gaussian_stats(fb))


def _halves(n, seed):
    order = np.random.default_rng([seed, 2718]).permutation(n)
    return order[: n // 2], order[n // 2: 2 * (n // 2)]


def real_vs_real(model, images, seed=0) -> float:
    """The Fréchet distance between the features of two random halves of ``images`` (the
    baseline a generator's samples are compared with)."""
    f = features(model, images)
    a, b = _halves(len(f), seed)
    return frechet_distance(f[a], f[b])


# -- nearest training image ----------------------------------------------------------------------
def nearest_training(samples, train_images, chunk=512):
    """For each sample its nearest training image in Euclidean distance: (indices (N,) int64,
    distances (N,) float64). ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b, in float64."""
    a = as_images(samples, "samples").reshape(-1, 784).astype(np.float64)      # (N, 784)
    b = as_images(train_images, "train_images").reshape(-1, 784).astype(np.float64)  # (M, 784)
    b2 = (b * b).sum(axis=1)
    idx = np.empty(len(a), np.int64)
    dist = np.empty(len(a), np.float64)
    for s in range(0, len(a), chunk):
        part = a[s:s + chunk]
        d2 = (part * part).sum(axis=1)[:, None] + b2[None, :] - 2.0 * part @ b.T  # (n, M)
        j = d2.argmin(axis=1)
        idx[s:s + chunk] = j
        dist[s:s + chunk] = np.sqrt(np.clip(d2[np.arange(len(part)), j], 0.0, None))
    return idx, dist


# -- everything at once --------------------------------------------------------------------------
def score_samples(model, samples, real, train=None, real_features=None, seed=0,
                  n_nearest=100) -> dict:
    """Scores of generated ``samples`` against ``real`` held-out images (e.g. the MNIST test
    set) through classifier ``model``:

    ``class_entropy`` (nats; log 10 = 2.3026 is perfect coverage), ``class_hist_<k>`` (share of
    samples labelled k), ``fid_classifier`` (samples vs all of ``real``),
    ``fid_classifier_half`` (half of the samples vs half B of ``real``, the same sizes as the
    baseline), ``fid_real_vs_real`` (half A vs half B of ``real``), and with ``train``
    (training images) ``nn_train_dist`` (mean distance of the first ``n_nearest`` samples to
    their nearest training image) beside ``nn_train_dist_real`` (the same for real held-out
    images: memorized samples would lie far below it)."""
    samples = as_images(samples, "samples")
    real = as_images(real, "real")
    f_real = features(model, real) if real_features is None else real_features
    f_fake, labels = features_and_labels(model, samples)
    hist, entropy = class_coverage(labels)
    a, b = _halves(len(f_real), seed)
    half = np.arange(min(len(b), len(f_fake)))
    out = {"class_entropy": entropy,
           "fid_classifier": frechet_distance(f_fake, f_real),
           "fid_classifier_half": frechet_distance(f_fake[half], f_real[b]),
           "fid_real_vs_real": frechet_distance(f_real[a], f_real[b])}
    out.update({f"class_hist_{k}": float(h / len(samples)) for k, h in enumerate(hist)})
    if train is not None:
        m = min(n_nearest, len(samples), len(real))
        out["nn_train_dist"] = float(nearest_training(samples[:m], train)[1].mean())
        out["nn_train_dist_real"] = float(nearest_training(real[:m], train)[1].mean())
    return out
