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

Models:

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
scored through a tinygen classifier (:func:`tinygen.models.scoring.resolve_classifier`): the one
that ships with tinygen, another checkpoint with ``--classifier PATH``, none with
``--classifier none``. With a classifier, the per-epoch validation record also has the class
entropy of 1,000 samples from fixed latents and their Fréchet distance to the validation digits
(``fid_classifier``), and the epoch with the lowest distance is the run's model (``best.ckpt``;
GAN training often gets worse again, dropping digits, after its best epoch); without one the
last epoch is kept.

Files: :mod:`.base` (the game, generation, evaluation), :mod:`.space` (MNIST images or 2-D
points as an object), :mod:`.mlp` (``gan``), :mod:`.conv` (``dcgan``, ``cgan``).
"""
from __future__ import annotations

import os

import numpy as np

from ... import functional as F
from ... import nn
from ...autograd import no_grad
from ...tensor import full_like, tensor, zeros_like
from ..base import GenerativeModel
from ..phases import OptimizerSpec, Phase
from .space import IMAGE_SHAPE, ImageSpace

__all__ = ["GAN", "LOSSES", "FIXED_LATENT_SEED", "init_dcgan"]

LOSSES = ("non-saturating", "minimax")
FIXED_LATENT_SEED = 20141210     # the latents of the per-epoch grids (never the trainer's rng)


class GAN(GenerativeModel):
    """Shared training, evaluation and pictures of the GANs. Subclasses build
    ``self.generator`` (latents (N, d) [, one-hot labels (N, 10)] -> images (N, 1, 28, 28) in
    [-1, 1], or points (N, 2)) and ``self.discriminator`` (data in the same form -> logits (N,)).
    """
    train_defaults = {"epochs": 20, "lr": 2e-4, "batch_size": 64}
    # The GAN losses do not rank epochs; on MNIST with a scoring classifier the Fréchet distance
    # of samples to the validation digits does (best.ckpt), else the last epoch is kept.
    select = None
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
        if not 0.5 < c.real_label <= 1.0:
            raise ValueError(f"real_label must be in (0.5, 1], got {c.real_label}")
        if c.eval_samples < 2:
            raise ValueError(f"eval_samples must be >= 2, got {c.eval_samples}")
        # discriminator steps taken so far: a generator step follows every d_steps-th of them
        # (a buffer, so it is in the checkpoints and a resumed run keeps the rhythm)
        self.register_buffer("d_steps_done", tensor(0))
        self._train_images = None      # the training images (set by finish(data))

    # -- data ------------------------------------------------------------------------------------
    space = ImageSpace()            # the data space (MLPGAN: images or 2-D points by --dataset)

    def to_d_input(self, x):
        """Data as D sees it (images in [0, 1] -> 2x - 1; points unchanged)."""
        return self.space.to_d_input(x)

    def from_g_output(self, g) -> np.ndarray:
        """G's output as data (images (G + 1) / 2 clipped to [0, 1]; points unchanged)."""
        return self.space.from_g_output(g)

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
        """L_D = - [mean log D(x) + mean log(1 - D(G(z)))]; with ``real_label`` s < 1 the real
        term's target is s instead of 1 (one-sided label smoothing, Salimans et al. 2016:
        - [s log D(x) + (1 - s) log(1 - D(x))], which keeps D from growing overconfident on
        real digits; the fake target stays 0)."""
        ones = F.binary_cross_entropy_with_logits(
            real_logit, full_like(real_logit.detach(), self.config.real_label))
        zeros = F.binary_cross_entropy_with_logits(fake_logit, zeros_like(fake_logit.detach()))
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
        y = self.one_hot(batch[1].cpu().numpy()) if self.conditional else None
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
        val, reference = data.val, data.train.images

        def after_epoch(epoch, out_dir):
            """The per-epoch picture: the fixed latents' samples (points: over the data)."""
            path = os.path.join(out_dir, f"samples_epoch_{epoch:03d}.png")
            return self.space.epoch_picture(self, path, reference, epoch)

        return [Phase("train", step=self.train_step,
                      optimizers={"discriminator": OptimizerSpec(self.discriminator.parameters,
                                                                 betas=self.betas),
                                  "generator": OptimizerSpec(self.generator.parameters,
                                                             betas=self.betas)},
                      evaluate=(lambda: self.quick_metrics(val)) if val is not None else None,
                      select="fid_classifier" if val is not None and self.space.ranks_epochs(self)
                      else self.select,
                      after_epoch=after_epoch)]

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
    def fixed_sample_metrics(self, labels) -> dict:
        """Per-epoch metrics of a subclass from the scoring classifier's ``labels`` of the
        fixed-latent samples (:meth:`fixed_sample`); none here."""
        return {}

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
                vals.append(F.sigmoid(self.D_logit(xb, yb)).cpu().numpy())
            return float(np.concatenate(vals).mean())
        with no_grad():
            return {"d_real": mean_d(x, real_labels), "d_fake": mean_d(fake, fake_labels)}

    def quick_metrics(self, dataset) -> dict:
        """The per-epoch validation record: D(x), D(G(z)), and with a classifier the class
        entropy of 1,000 samples and their Fréchet distance to ``dataset`` (which ranks the
        epochs)."""
        return {**self.d_stats(dataset), **self.space.quick_metrics(self, dataset)}

    def evaluate(self, dataset) -> dict:
        """D(x) and D(G(z)); on MNIST with a classifier, the scores of
        :func:`tinygen.models.scoring.score_samples` for ``eval_samples`` samples against
        ``dataset``; on a toy set the Fréchet distance between Gaussians fitted to samples and
        data (``frechet_2d``)."""
        return {**self.d_stats(dataset),
                **self.space.evaluate(self, dataset, np.random.default_rng(2))}

    def extra_metrics(self, data, split, dataset):
        return self.space.extra_metrics(self, data, split, dataset)

    # -- pictures --------------------------------------------------------------------------------
    def save_grid(self, x, path):
        from ... import plots as img
        return img.save_image_grid(x, path, nrow=10, scale=2)

    def save_samples(self, n, rng, path):
        """A PNG grid of n samples (toy sets: a scatter plot)."""
        return self.space.save_samples(self, n, rng, path)

    def pictures(self, out_dir, dataset, rng):
        return self.space.pictures(self, out_dir, dataset, rng, self._train_images)

    def load_data(self, data_dir=None, val_fraction=0.1, seed=0):
        """The data of the model's space: MNIST, or the generated 2-D set ``dataset``."""
        return self.space.load_data(data_dir, val_fraction, seed)

    def finish(self, data):
        """Keep the training images for the overfitting picture (nearest training image)."""
        self._train_images = data.train.images


def init_dcgan(module):
    """Radford et al.: conv weights N(0, 0.02), BatchNorm scale N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
