"""Generative adversarial networks (Patrini's lecture on unsupervised learning and generative
models; Goodfellow et al. 2014,
Radford et al. 2015).

A generator G maps a latent z ~ N(0, I) to a sample G(z); a discriminator D(x) in (0, 1) says
how likely x is real. They play the minimax game

    min_G max_D  V(D, G) = E_{X ~ q^X} [ log D(X) ] + E_{Z ~ N(0,I)} [ log(1 - D(G(Z))) ].

For a fixed G the optimal D is D*(x) = q(x) / (q(x) + p_G(x)), and then V(D*, G) =
-log 4 + 2 JS(q || p_G): the game's optimum is p_G = q. We train both by alternating gradient
steps (Algorithm 1 of Goodfellow et al.): ``d_steps`` = k discriminator steps on

    L_D = - [ mean log D(x) + mean log(1 - D(G(z))) ]                  (BCE: real -> 1, fake -> 0)

for each generator step on either the minimax generator loss

    L_G^minimax = mean log(1 - D(G(z)))

or the non-saturating one (the paper's practical choice: early on D rejects G(z) with high
confidence, log(1 - D(G(z))) saturates and gives G almost no gradient)

    L_G^ns = - mean log D(G(z)).

D works on logits l = D_logit(x), D(x) = sigmoid(l), so log D = -softplus(-l) and
log(1 - D) = -softplus(l) are computed stably (binary_cross_entropy_with_logits).

Models in this file:

* ``gan``    MLP generator and discriminator, on MNIST (images (N, 1, 28, 28) in [0, 1]) or on a
             2-D toy set (``--dataset moons | rings | 8gaussians | checkerboard``).
* ``dcgan``  Radford et al.'s architecture for 28x28: a transposed-convolution generator and a
             strided-convolution discriminator, BatchNorm in both (not on G's output nor on D's
             input), ReLU in G with tanh on the pixels, LeakyReLU(0.2) in D, weights
             N(0, 0.02), Adam lr 2e-4 with beta1 = 0.5.
* ``cgan``   class-conditional DCGAN (Mirza & Osindero 2014): G(z, y) and D(x, y) both see the
             label as a one-hot vector y: concatenated to z for G, as ten constant planes beside
             the image for D. Sample grids have a row per digit.

Images are shown to D scaled to [-1, 1] (x' = 2x - 1) and G ends with tanh; ``sample`` returns
(G(z) + 1) / 2 in [0, 1].

Logged per step: ``d_loss``, ``g_loss``, ``d_real`` = mean D(x) and ``d_fake`` = mean D(G(z))
(the ``loss`` column is L_D). Every epoch a sample grid of a fixed set of latents is saved
(``samples_epoch_NNN.png``; toy sets: the samples over the data). Sample quality on MNIST is
scored through a tinygen classifier (:mod:`tinygen.models.scoring`): name its checkpoint with
``--classifier PATH`` or the environment variable ``TINYGEN_CLASSIFIER``.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np

from .. import functional as F
from .. import nn
from ..autograd import no_grad
from ..tensor import tensor
from .phases import OptimizerSpec, Phase
from .base import GenerativeModel, register

IMAGE_SHAPE = (1, 28, 28)
PIXELS = 28 * 28
LOSSES = ("non-saturating", "minimax")
FIXED_LATENT_SEED = 20141210     # the latents of the per-epoch grids (never the trainer's rng)


def _toy_names():
    from ..data import TOY_DATASETS
    return tuple(sorted(TOY_DATASETS))


class GAN(GenerativeModel):
    """Shared training, evaluation and pictures of the GANs. Subclasses build
    ``self.generator`` (latents (N, d) [, one-hot labels (N, 10)] -> images (N, 1, 28, 28) in
    [-1, 1], or points (N, 2)) and ``self.discriminator`` (data in the same form -> logits (N,)).
    """
    train_defaults = {"epochs": 20, "lr": 2e-4, "batch_size": 64}
    select = None                   # the GAN losses do not rank epochs: keep the last one
    conditional = False
    betas = (0.5, 0.999)            # Adam betas of both players (Radford et al.)

    def __init__(self, config):
        super().__init__(config)
        c = self.config
        if c.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {c.latent_dim}")
        if c.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {c.loss!r}")
        if c.d_steps < 1:
            raise ValueError(f"d_steps must be >= 1, got {c.d_steps}")
        if c.eval_samples < 2:
            raise ValueError(f"eval_samples must be >= 2, got {c.eval_samples}")
        # discriminator steps taken so far: a generator step follows every d_steps-th of them
        # (a buffer, so it is in the checkpoints and a resumed run keeps the rhythm)
        self.register_buffer("d_steps_done", tensor(0))
        # the scoring classifier, loaded on first use; kept out of the Module machinery so it
        # is never part of this model's parameters or checkpoints
        self.__dict__["_classifier"] = None

    # -- data ------------------------------------------------------------------------------------
    @property
    def is_toy(self) -> bool:
        return getattr(self.config, "dataset", "mnist") != "mnist"

    def to_d_input(self, x):
        """Data as D sees it: images in [0, 1] -> 2x - 1 in [-1, 1]; toy points unchanged."""
        return x if self.is_toy else x * 2.0 - 1.0

    def from_g_output(self, g) -> np.ndarray:
        """G's output as data: images (G + 1) / 2 clipped to [0, 1]; toy points unchanged."""
        g = g.numpy() if hasattr(g, "numpy") else np.asarray(g)
        return g if self.is_toy else np.clip((g + 1.0) / 2.0, 0.0, 1.0)

    def latents(self, n, rng) -> np.ndarray:
        """z ~ N(0, I): (n, latent_dim) float32."""
        return rng.standard_normal((n, self.config.latent_dim)).astype(np.float32)

    def one_hot(self, labels):
        """(N,) integer labels (array or list) -> (N, 10) float32 one-hot Tensor on the model's
        device."""
        labels = tensor(np.asarray(labels, dtype=np.int64), device=self.device)
        return F.one_hot(labels, 10).float()

    # -- the two players -------------------------------------------------------------------------
    def G(self, z, y=None):
        """G(z[, y]) on Tensors."""
        return self.generator(z, y) if self.conditional else self.generator(z)

    def D_logit(self, x, y=None):
        """The discriminator's logit l(x[, y]) (N,), D(x) = sigmoid(l)."""
        return self.discriminator(x, y) if self.conditional else self.discriminator(x)

    def d_loss(self, real_logit, fake_logit):
        """L_D = - [mean log D(x) + mean log(1 - D(G(z)))]."""
        ones = F.binary_cross_entropy_with_logits(real_logit, tensor(
            np.ones(real_logit.shape, np.float32), device=real_logit.device))
        zeros = F.binary_cross_entropy_with_logits(fake_logit, tensor(
            np.zeros(fake_logit.shape, np.float32), device=fake_logit.device))
        return ones + zeros

    def g_loss(self, fake_logit):
        """L_G: minimax  mean log(1 - D(G(z))) = - BCE(l, 0), or non-saturating
        - mean log D(G(z)) = BCE(l, 1)."""
        if self.config.loss == "minimax":
            target = np.zeros(fake_logit.shape, np.float32)
            return -F.binary_cross_entropy_with_logits(fake_logit,
                                                       tensor(target, device=fake_logit.device))
        target = np.ones(fake_logit.shape, np.float32)
        return F.binary_cross_entropy_with_logits(fake_logit,
                                                  tensor(target, device=fake_logit.device))

    def D_both(self, x, y=None):
        """(logit (N,), auxiliary class logits (N, 10) or None): the conditional model with
        ``aux_weight`` > 0 also classifies its input from the discriminator's features."""
        return self.D_logit(x, y), None

    def aux_term(self, aux_logits, labels):
        """aux_weight * cross-entropy of D's auxiliary classifier (None without one)."""
        if aux_logits is None:
            return None
        return self.config.aux_weight * F.cross_entropy(aux_logits, labels)

    def train_step(self, batch, rng, optimizers):
        """One discriminator step on the batch; after every ``d_steps``-th, one generator step
        on a fresh batch of latents. Returns the stats to log."""
        x = self.to_d_input(batch[0])
        n = x.shape[0]
        y = self.one_hot(batch[1].numpy()) if self.conditional else None
        # -- D step: ascend V(D, G) = mean log D(x) + mean log(1 - D(G(z))) --------------------
        with no_grad():
            fake = self.G(self.as_tensor(self.latents(n, rng)), y)      # G fixed here
        real_logit, real_aux = self.D_both(x, y)
        fake_logit = self.D_logit(fake, y)
        loss_d = self.d_loss(real_logit, fake_logit)
        stats = {"d_loss": float(loss_d)}
        aux = self.aux_term(real_aux, batch[1])          # D's classifier learns on real digits
        if aux is not None:
            loss_d = loss_d + aux
            stats["d_aux_loss"] = float(aux)
        opt_d, opt_g = optimizers["discriminator"], optimizers["generator"]
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        stats.update({"loss": float(loss_d),
                      "d_real": float(F.sigmoid(real_logit.detach()).mean()),
                      "d_fake": float(F.sigmoid(fake_logit.detach()).mean())})
        with no_grad():
            self.d_steps_done.add_(1)
        if int(self.d_steps_done.item()) % self.config.d_steps == 0:
            # -- G step: descend L_G through D (D's gradients are cleared before its next step)
            labels = None
            if self.conditional:   # fresh labels, uniform over the digits
                labels = rng.integers(0, 10, size=n)
                y = self.one_hot(labels)
                labels = tensor(labels, device=self.device)
            fake_logit, fake_aux = self.D_both(self.G(self.as_tensor(self.latents(n, rng)), y), y)
            loss_g = self.g_loss(fake_logit)
            stats["g_loss"] = float(loss_g)
            aux = self.aux_term(fake_aux, labels)        # G: be classified as the label asked
            if aux is not None:
                loss_g = loss_g + aux
                stats["g_aux_loss"] = float(aux)
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            stats["d_fake_g_step"] = float(F.sigmoid(fake_logit.detach()).mean())
        return stats

    def phases(self, data):
        val = data.val
        return [Phase("train", step=self.train_step,
                      optimizers={"discriminator": OptimizerSpec(self.discriminator.parameters,
                                                                 betas=self.betas),
                                  "generator": OptimizerSpec(self.generator.parameters,
                                                             betas=self.betas)},
                      evaluate=(lambda: self.quick_metrics(val)) if val is not None else None,
                      after_epoch=self.save_epoch_samples)]

    # -- generation ------------------------------------------------------------------------------
    def generate(self, z, labels=None) -> np.ndarray:
        """G(z[, y]) as data (images in [0, 1] or points) for NumPy latents (N, d) and labels
        (N,) (conditional models), in batches, without gradients."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(f"z must have shape (N, {self.config.latent_dim}), got {z.shape}")
        if self.conditional:
            if labels is None or np.shape(labels) != (len(z),):
                raise ValueError(f"labels must have shape ({len(z)},), got "
                                 f"{None if labels is None else np.shape(labels)}")
            labels = np.asarray(labels)
            if labels.min() < 0 or labels.max() > 9:
                raise ValueError("labels must be digits 0..9")
            def fn(zb, yb):
                return self.G(self.as_tensor(zb), self.one_hot(yb))
            parts = [self.from_g_output(g) for g, _ in self.batched(fn, z, labels)]
        else:
            parts = [self.from_g_output(g) for g, _ in
                     self.batched(lambda zb: self.G(self.as_tensor(zb)), z)]
        return np.concatenate(parts)

    def sample(self, n, rng, labels=None):
        """n samples: images (n, 1, 28, 28) in [0, 1] (toy sets: points (n, 2)). Conditional
        models draw ``labels`` (default: the digits 0..9 in turn)."""
        if self.conditional and labels is None:
            labels = np.arange(n) % 10
        return self.generate(self.latents(n, rng), labels if self.conditional else None)

    def interpolate(self, z0, z1, steps=10, labels=None) -> np.ndarray:
        """G((1 - alpha) z0 + alpha z1) for latent pairs z0, z1 (R, d) -> (R, steps, 1, 28, 28)
        (conditional models: the row's label fixed)."""
        alpha = np.linspace(0.0, 1.0, steps, dtype=np.float32)[None, :, None]   # (1, steps, 1)
        z = (1 - alpha) * z0[:, None] + alpha * z1[:, None]                     # (R, steps, d)
        flat = z.reshape(-1, z0.shape[1])                                       # (R*steps, d)
        lab = None if labels is None else np.repeat(labels, steps)
        return self.generate(flat, lab).reshape(len(z0), steps, *IMAGE_SHAPE)

    def fixed_sample(self, n=100) -> np.ndarray:
        """Samples from the same latents every epoch (a seeded generator of its own)."""
        return self.sample(n, np.random.default_rng(FIXED_LATENT_SEED))

    # -- evaluation ------------------------------------------------------------------------------
    def classifier_path(self):
        """The classifier checkpoint to score with: ``--classifier`` or $TINYGEN_CLASSIFIER
        (None if neither names an existing file)."""
        for path in (self.config.classifier, os.environ.get("TINYGEN_CLASSIFIER", "")):
            if path and os.path.exists(path):
                return path
        return None

    def scoring_classifier(self):
        """The loaded classifier, or None after printing what is missing."""
        if self._classifier is None:
            path = self.classifier_path()
            if path is None:
                named = [p for p in (self.config.classifier,
                                     os.environ.get("TINYGEN_CLASSIFIER", "")) if p]
                why = (f"{', '.join(map(repr, named))} does not exist" if named else
                       "none was named")
                print(f"{self.model_name}: no classifier checkpoint ({why}), so fid_classifier, "
                      f"class_entropy, ... are not reported; train one with `tinygen train "
                      f"classifier --out runs/classifier` and pass --classifier "
                      f"runs/classifier/model.ckpt (or set TINYGEN_CLASSIFIER)", file=sys.stderr)
                self.__dict__["_classifier"] = False
            else:
                from .scoring import load_classifier
                self.__dict__["_classifier"] = load_classifier(path, self.device)
        return self._classifier or None

    def d_stats(self, dataset) -> dict:
        """Mean D(x) on ``dataset`` (up to 1,000 items) and mean D(G(z)) on as many samples
        (evaluation mode: D's BatchNorm uses its running statistics)."""
        x, real_labels = dataset.images[:1000], dataset.labels[:1000]
        fake_labels = np.arange(len(x)) % 10       # the labels sample() conditions on
        fake = self.sample(len(x), np.random.default_rng(1))

        def mean_d(arr, labels):
            vals = []
            for start in range(0, len(arr), self.eval_batch_size):
                xb = self.to_d_input(self.as_tensor(arr[start:start + self.eval_batch_size]))
                yb = (self.one_hot(labels[start:start + self.eval_batch_size])
                      if self.conditional else None)
                vals.append(F.sigmoid(self.D_logit(xb, yb)).numpy())
            return float(np.concatenate(vals).mean())
        with no_grad():
            return {"d_real": mean_d(x, real_labels), "d_fake": mean_d(fake, fake_labels)}

    def quick_metrics(self, dataset) -> dict:
        """The per-epoch validation record: D(x), D(G(z)), and with a classifier the class
        entropy of 1,000 samples."""
        out = self.d_stats(dataset)
        clf = None if self.is_toy else self.scoring_classifier()
        if clf is not None:
            from .scoring import class_coverage, classify
            _, out["class_entropy"] = class_coverage(classify(clf, self.fixed_sample(1000)))
        return out

    def evaluate(self, dataset) -> dict:
        """D(x) and D(G(z)); on MNIST with a classifier, the scores of
        :func:`tinygen.models.scoring.score_samples` for ``eval_samples`` samples against
        ``dataset``; on a toy set the Fréchet distance between Gaussians fitted to samples and
        data (``frechet_2d``)."""
        out = self.d_stats(dataset)
        rng = np.random.default_rng(2)
        if self.is_toy:
            from .scoring import frechet_distance
            out["frechet_2d"] = frechet_distance(self.sample(self.config.eval_samples, rng),
                                                 dataset.images)
            return out
        clf = self.scoring_classifier()
        if clf is not None:
            from .scoring import score_samples
            out.update(score_samples(clf, self.sample(self.config.eval_samples, rng),
                                     dataset.images))
        return out

    def extra_metrics(self, data, split, dataset):
        """The overfitting check (MNIST): mean distance of 100 samples to their nearest
        training image (``<split>_nn_train_dist``) beside that of 100 real ``split`` images
        (``<split>_nn_train_dist_real``)."""
        if self.is_toy:
            return {}
        from .scoring import nearest_training
        samples = self.sample(100, np.random.default_rng(3))
        return {f"{split}_nn_train_dist":
                float(nearest_training(samples, data.train.images)[1].mean()),
                f"{split}_nn_train_dist_real":
                float(nearest_training(dataset.images[:100], data.train.images)[1].mean())}

    # -- pictures --------------------------------------------------------------------------------
    def save_epoch_samples(self, epoch, out_dir):
        """The per-epoch picture: the fixed latents' samples (toy sets: over the data)."""
        from .. import plots as img

        path = os.path.join(out_dir, f"samples_epoch_{epoch:03d}.png")
        if self.is_toy:
            return img.plot_scatter_2d(self.fixed_sample(1000), path,
                                       reference=self._toy_reference,
                                       title=f"{self.model_name} epoch {epoch}")
        return self._save_grid(self.fixed_sample(100), path)

    def _save_grid(self, x, path):
        from .. import plots as img
        return img.save_image_grid(x, path, nrow=10, scale=2)

    def save_samples(self, n, rng, path):
        """A PNG grid of n samples (toy sets: a scatter plot)."""
        if self.is_toy:
            from .. import plots as img
            return img.plot_scatter_2d(self.sample(n, rng), path, title=f"{self.model_name}")
        return super().save_samples(n, rng, path)

    def pictures(self, out_dir, dataset, rng):
        from .. import plots as img

        if self.is_toy:
            return [img.plot_scatter_2d(self.sample(2000, rng),
                                        os.path.join(out_dir, "samples.png"),
                                        reference=dataset.images, title=self.model_name)]
        paths = [self._save_grid(self.sample(100, rng), os.path.join(out_dir, "samples.png"))]
        z0, z1 = self.latents(8, rng), self.latents(8, rng)
        labels = np.arange(8) % 10 if self.conditional else None
        paths.append(img.save_interpolations(self.interpolate(z0, z1, labels=labels),
                                             os.path.join(out_dir, "interpolations.png"),
                                             scale=2))
        # the overfitting check: samples (odd rows) above their nearest training images
        from .scoring import nearest_training
        if self._train_images is not None:
            s = self.sample(20, rng)
            idx, _ = nearest_training(s, self._train_images)
            paths.append(img.save_reconstructions(s, self._train_images[idx],
                                                  os.path.join(out_dir, "nearest_train.png"),
                                                  scale=2))
        return paths

    _toy_reference = None
    _train_images = None

    def load_data(self, data_dir=None, val_fraction=0.1, seed=0):
        """MNIST (the base class's loader) or, for ``dataset`` a toy name, the generated 2-D
        set (:func:`tinygen.train.run.load_toy_data`)."""
        if self.is_toy:
            from ..data import load_toy_data
            data, desc = load_toy_data(self.config.dataset, val_fraction=val_fraction, seed=seed)
            self._toy_reference = data.train.images
        else:
            data, desc = super().load_data(data_dir, val_fraction, seed)
        self._train_images = data.train.images
        return data, desc


def _init_dcgan(module):
    """Radford et al.: conv weights N(0, 0.02), BatchNorm scale N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


# ------------------------------------------------------------------------------------------------
@dataclass
class GANConfig:
    dataset: str = "mnist"          # "mnist" or a 2-D toy set (moons, rings, 8gaussians, ...)
    latent_dim: int = 32            # d, dimension of z ~ N(0, I)
    hidden: int = 256               # width of the hidden layers of G and D
    loss: str = "non-saturating"    # generator loss: non-saturating (-log D(G(z))) or minimax
    d_steps: int = 1                # k, discriminator steps per generator step
    classifier: str = ""            # classifier checkpoint for the scores ("": $TINYGEN_CLASSIFIER)
    eval_samples: int = 10000       # samples scored by evaluate()


class _MLPGenerator(nn.Module):
    """z (N, d) -> h -> h -> out, LeakyReLU(0.2); tanh on images (N, 1, 28, 28), linear on
    points (N, 2)."""

    def __init__(self, d, h, out_dim, image):
        super().__init__()
        self.image = image
        self.net = nn.Sequential(nn.Linear(d, h), nn.LeakyReLU(0.2), nn.Linear(h, h),
                                 nn.LeakyReLU(0.2), nn.Linear(h, out_dim))

    def forward(self, z):
        out = self.net(z)
        if self.image:
            return F.tanh(out).reshape(z.shape[0], *IMAGE_SHAPE)   # (N, 784) -> (N, 1, 28, 28)
        return out


class _MLPDiscriminator(nn.Module):
    """x (N, 1, 28, 28) or (N, 2) -> h -> h -> 1 logit, LeakyReLU(0.2)."""

    def __init__(self, in_dim, h):
        super().__init__()
        self.in_dim = in_dim
        self.net = nn.Sequential(nn.Linear(in_dim, h), nn.LeakyReLU(0.2), nn.Linear(h, h),
                                 nn.LeakyReLU(0.2), nn.Linear(h, 1))

    def forward(self, x):
        return self.net(x.reshape(x.shape[0], self.in_dim)).reshape(x.shape[0])   # (N, 1) -> (N,)


@register
class MLPGAN(GAN):
    """Goodfellow et al.'s GAN with MLP players, on MNIST or a 2-D toy set."""
    model_name = "gan"
    description = ("GAN with MLP generator/discriminator (minimax or non-saturating loss, k D "
                   "steps), MNIST or 2-D toy sets")
    Config = GANConfig
    betas = (0.5, 0.999)

    def __init__(self, config=None):
        config = config or GANConfig()
        if config.dataset != "mnist" and config.dataset not in _toy_names():
            raise ValueError(f"dataset must be 'mnist' or one of {', '.join(_toy_names())}, got "
                             f"{config.dataset!r}")
        super().__init__(config)
        c = self.config
        if c.hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {c.hidden}")
        dim = 2 if self.is_toy else PIXELS
        self.generator = _MLPGenerator(c.latent_dim, c.hidden, dim, image=not self.is_toy)
        self.discriminator = _MLPDiscriminator(dim, c.hidden)

    def interpolate(self, z0, z1, steps=10, labels=None):
        if self.is_toy:
            raise ValueError("interpolation pictures are for the MNIST variant")
        return super().interpolate(z0, z1, steps, labels)


# ------------------------------------------------------------------------------------------------
@dataclass
class DCGANConfig:
    latent_dim: int = 64            # d, dimension of z ~ N(0, I)
    channels: int = 64              # C: G has 2C then C channels, D has C then 2C
    loss: str = "non-saturating"    # generator loss: non-saturating (-log D(G(z))) or minimax
    d_steps: int = 1                # k, discriminator steps per generator step
    classifier: str = ""            # classifier checkpoint for the scores ("": $TINYGEN_CLASSIFIER)
    eval_samples: int = 10000       # samples scored by evaluate()


class _ConvGenerator(nn.Module):
    """Fractionally-strided convolutions from the latent (as a 1x1 image) up to 28x28:

        (d+c)x1x1  ConvT(d+c, 2C, 7)              -> 2Cx7x7,   BN, ReLU
        2Cx7x7     ConvT(2C, C, 4, stride 2, pad 1) -> Cx14x14,  BN, ReLU
        Cx14x14    ConvT(C, 1, 4, stride 2, pad 1)  -> 1x28x28,  tanh

    (a transposed conv maps W to (W - 1) s - 2p + k: 1 -> 7 -> 14 -> 28). ``c`` = 10 for the
    conditional generator (the one-hot label concatenated to z), else 0."""

    def __init__(self, d, ch, cond=0):
        super().__init__()
        self.in_dim = d + cond
        self.net = nn.Sequential(
            nn.ConvTranspose2d(d + cond, 2 * ch, 7, bias=False), nn.BatchNorm2d(2 * ch),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * ch, ch, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(ch), nn.ReLU(),
            nn.ConvTranspose2d(ch, 1, 4, stride=2, padding=1), nn.Tanh())

    def forward(self, z, y=None):
        h = z if y is None else F.cat([z, y], dim=1)                 # (N, d [+ 10])
        return self.net(h.reshape(h.shape[0], self.in_dim, 1, 1))    # -> (N, 1, 28, 28)


class _ConvDiscriminator(nn.Module):
    """Strided convolutions down to one logit:

        (1+c)x28x28 Conv(1+c, C, 4, stride 2, pad 1) -> Cx14x14,  LeakyReLU(0.2)
        Cx14x14     Conv(C, 2C, 4, stride 2, pad 1)  -> 2Cx7x7,   BN, LeakyReLU(0.2)
        2Cx7x7      Conv(2C, 1, 7)                  -> 1x1x1     (the logit)

    ``c`` = 10 for the conditional discriminator: the one-hot label as ten constant planes."""

    def __init__(self, ch, cond=0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1 + cond, ch, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * ch),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * ch, 1, 7))

    def forward(self, x, y=None):
        if y is not None:
            planes = y.reshape(y.shape[0], 10, 1, 1).expand(y.shape[0], 10, 28, 28)
            x = F.cat([x, planes], dim=1)                             # (N, 11, 28, 28)
        return self.net(x).reshape(x.shape[0])                        # (N, 1, 1, 1) -> (N,)


@register
class DCGAN(GAN):
    """Radford et al.'s deep convolutional GAN, sized for 28x28 MNIST."""
    model_name = "dcgan"
    description = ("DCGAN: transposed-conv generator, strided-conv discriminator, BatchNorm, "
                   "LeakyReLU")
    Config = DCGANConfig

    def __init__(self, config=None):
        super().__init__(config or DCGANConfig())
        c = self.config
        if c.channels < 1:
            raise ValueError(f"channels must be >= 1, got {c.channels}")
        cond = 10 if self.conditional else 0
        self.generator = _ConvGenerator(c.latent_dim, c.channels, cond)
        self.discriminator = _ConvDiscriminator(c.channels, cond)
        _init_dcgan(self)


# ------------------------------------------------------------------------------------------------
@dataclass
class CGANConfig(DCGANConfig):
    projection: bool = True         # D(x, y) = psi(phi(x)) + <V y, phi(x)> (Miyato & Koyama
    #                                 2018); False: y as ten planes concatenated to the image
    aux_weight: float = 1.0         # weight of D's auxiliary classifier loss (AC-GAN, Odena et
    #                                 al. 2017) in L_D (real digits) and L_G (G(z, y) as y); 0: off


class _ProjectionDiscriminator(nn.Module):
    """The conditional discriminator with a projection (Miyato & Koyama 2018): features

        1x28x28  Conv(1, C, 4, stride 2, pad 1)  -> Cx14x14,  LeakyReLU(0.2)
        Cx14x14  Conv(C, 2C, 4, stride 2, pad 1) -> 2Cx7x7,   BN, LeakyReLU(0.2)
        flatten                                 -> phi(x) (N, 2C*49)

    and the logit  l(x, y) = psi^T phi(x) + b + (V y)^T phi(x)  with V (2C*49, 10) one
    embedding per digit: the label enters as an inner product with the image's features, not
    as extra input channels. ``aux`` adds a linear classifier of phi(x) (N, 10)."""

    def __init__(self, ch, aux):
        super().__init__()
        width = 2 * ch * 49
        self.features = nn.Sequential(
            nn.Conv2d(1, ch, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * ch),
            nn.LeakyReLU(0.2), nn.Flatten())                            # -> (N, 2C*49)
        self.psi = nn.Linear(width, 1)
        self.embed = nn.Linear(10, width, bias=False)                   # V y for one-hot y
        self.aux = nn.Linear(width, 10) if aux else None

    def both(self, x, y):
        phi = self.features(x)                                          # (N, 2C*49)
        logit = self.psi(phi).reshape(x.shape[0]) + (self.embed(y) * phi).sum(dim=1)   # (N,)
        return logit, (self.aux(phi) if self.aux is not None else None)

    def forward(self, x, y):
        return self.both(x, y)[0]


@register
class ConditionalDCGAN(DCGAN):
    """Class-conditional DCGAN: G(z, y), D(x, y) with y the one-hot digit; the game is

        min_G max_D  E_{(X, Y) ~ q} [log D(X, Y)] + E_{Z, Y} [log(1 - D(G(Z, Y), Y))].

    The discriminator sees y through a projection (default) or as input planes; with
    ``aux_weight`` > 0 it also has an auxiliary classifier c(x) trained on the real digits,
    and G is pushed to make c(G(z, y)) = y (AC-GAN's term):

        L_D += w * CE(c(x), y)     (real),         L_G += w * CE(c(G(z, y)), y).

    Samples and grids have the digit 0..9 in turn (a row per digit); ``label_accuracy`` is the
    share of samples the *independent* scoring classifier labels as their conditioning digit."""
    model_name = "cgan"
    description = ("class-conditional DCGAN (label into G; projection D, optional auxiliary "
                   "classifier), a row per digit")
    Config = CGANConfig
    conditional = True

    def __init__(self, config=None):
        config = config or CGANConfig()
        if config.aux_weight < 0:
            raise ValueError(f"aux_weight must be >= 0, got {config.aux_weight}")
        super().__init__(config)
        if config.projection:
            self.discriminator = _ProjectionDiscriminator(config.channels,
                                                          aux=config.aux_weight > 0)
            _init_dcgan(self.discriminator)
        elif config.aux_weight > 0:
            raise ValueError("aux_weight > 0 needs the projection discriminator (--projection)")

    def D_both(self, x, y=None):
        if self.config.projection:
            return self.discriminator.both(x, y)
        return super().D_both(x, y)

    def evaluate(self, dataset):
        """The DCGAN scores plus ``label_accuracy`` (with a classifier)."""
        out = super().evaluate(dataset)
        clf = self.scoring_classifier()
        if clf is not None:
            from .scoring import classify
            n = self.config.eval_samples
            labels = np.arange(n) % 10
            got = classify(clf, self.sample(n, np.random.default_rng(4), labels=labels))
            out["label_accuracy"] = float(np.mean(got == labels))
        return out

    def quick_metrics(self, dataset):
        out = super().quick_metrics(dataset)
        clf = self.scoring_classifier()
        if clf is not None:
            from .scoring import classify
            labels = np.arange(1000) % 10
            got = classify(clf, self.fixed_sample(1000))
            out["label_accuracy"] = float(np.mean(got == labels))
        return out

    def save_samples(self, n, rng, path):
        """A grid with a row per digit 0..9 and ceil(n / 10) samples in each."""
        per = -(-n // 10)
        return self._save_grid(self.sample(10 * per, rng), path)

    def _save_grid(self, x, path):
        """x holds the digits 0..9 in turn: reorder (N, ...) into a row per digit."""
        from .. import plots as img
        per = len(x) // 10
        rows = x[:per * 10].reshape(per, 10, *x.shape[1:]).swapaxes(0, 1)   # (10, per, 1, 28, 28)
        return img.save_interpolations(rows, path, scale=2)
