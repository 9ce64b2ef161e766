"""``ddpm``: a denoising diffusion model of MNIST digits (Ho et al. 2020), sampled with DDPM or
DDIM, optionally class-conditional with classifier-free guidance. The math is in
:mod:`tinygen.models.diffusion`, the noise-prediction network in :mod:`tinygen.models.unet`.

Training: images scaled to [-1, 1] (and, when conditional, the label replaced by "no label" for a
share ``label_dropout`` of the batch, both on the host before the batch goes to the device), one
step t ~ U{1..T} and one eps ~ N(0, I) per image, the simple loss ||eps - eps_theta(x_t, t, y)||^2
with Adam, gradient clipping, a linear warm-up then a cosine learning-rate decay, and an
exponential moving average (EMA) of the weights after every step. The EMA weights are the ones
evaluated and sampled from (Ho et al. use decay 0.9999 over 800k steps; a short run needs a
shorter memory, 0.999 here).

Evaluation (``tinygen eval --json``): ``simple_loss`` on the held-out images; ``bits_per_dim``,
the variational bound (4) of the diffusion module on the first ``vb_images`` images, its KL
terms estimated from ``vb_timesteps`` stratified steps (0: all T); through the scoring
classifier (the shipped one; ``--classifier PATH`` another, ``none`` skips them) the sample
scores of :mod:`tinygen.models.scoring` (class entropy, classifier Fréchet distance, nearest-training-image distance) for
``eval_samples`` samples drawn with the configured sampler.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from .. import nn
from .base import GenerativeModel, register
from .diffusion import GaussianDiffusion, classifier_free_guidance, make_betas
from .phases import Phase, warmup_cosine
from .unet import UNet, UNetConfig

__all__ = ["DDPM", "DDPMConfig"]

NUM_CLASSES = 10
IMAGE_SHAPE = (1, 28, 28)


@dataclass
class DDPMConfig:
    schedule: str = "linear"        # "linear" (Ho et al.) or "cosine" (Nichol & Dhariwal)
    timesteps: int = 1000           # T
    base_channels: int = 16         # U-Net width of the 28 x 28 level
    channel_mults: str = "1,2,2"    # widths of the levels 28, 14, 7 as multiples of the base
    blocks_per_level: int = 1       # residual blocks per level (down; up has one more)
    attention: bool = True          # self-attention at 7 x 7 and in the middle
    groups: int = 8                 # GroupNorm groups
    dropout: float = 0.0            # dropout in the residual blocks
    conditional: bool = True        # class-conditional (label embedding + guidance)
    label_dropout: float = 0.1      # share of training labels replaced by "no label"
    guidance: float = 2.0           # classifier-free guidance scale w (1: the conditional model)
    sampler: str = "ddim"           # "ddim" or "ddpm" (all T ancestral steps)
    sampling_steps: int = 50        # DDIM steps
    eta: float = 1.0                # DDIM noise (0: deterministic, 1: DDPM-like); 1 by default:
                                    # after a short training eta 0 left ~30% of the samples noise
                                    # (500 samples: class entropy 1.99, FID 525 vs 2.30, 135)
    ema_decay: float = 0.999        # EMA of the weights used for evaluation and sampling
    warmup_steps: int = 200         # linear learning-rate warm-up, then cosine decay to 10%
    clip_grad: float = 1.0          # gradient norm clipping
    eval_samples: int = 1000        # samples scored by the classifier in evaluate()
    vb_images: int = 100            # held-out images for the variational bound
    vb_timesteps: int = 50          # stratified steps estimating the bound's KL sum (0: all T)
    trajectory_frames: int = 10     # frames of the noise-to-digit strip in `tinygen sample`
    classifier: str = ""            # scoring classifier ("": the shipped one; "none"; a path)


@register
class DDPM(GenerativeModel):
    """Denoising diffusion on MNIST (see the module docstring)."""
    model_name = "ddpm"
    description = ("denoising diffusion (DDPM, U-Net, EMA) with DDIM sampling and "
                   "classifier-free guidance, MNIST")
    Config = DDPMConfig
    select = "simple_loss"
    train_defaults = {"epochs": 40, "lr": 1e-3, "batch_size": 64}
    eval_batch_size = 100

    def __init__(self, config=None):
        super().__init__(config or DDPMConfig())
        c = self.config
        try:
            mults = tuple(int(m) for m in str(c.channel_mults).split(","))
        except ValueError:
            raise ValueError(f"channel_mults must be comma-separated ints, got "
                             f"{c.channel_mults!r}") from None
        if c.sampler not in ("ddim", "ddpm"):
            raise ValueError(f"sampler must be 'ddim' or 'ddpm', got {c.sampler!r}")
        if not 0.0 <= c.label_dropout < 1.0 or not 0.0 <= c.ema_decay < 1.0:
            raise ValueError(f"label_dropout and ema_decay must be in [0, 1), got "
                             f"{c.label_dropout} and {c.ema_decay}")
        for name in ("eval_samples", "vb_images", "vb_timesteps", "warmup_steps",
                     "trajectory_frames"):
            if getattr(c, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(c, name)}")
        self.diffusion = GaussianDiffusion(make_betas(c.schedule, c.timesteps))
        self.diffusion.ddim_timesteps(c.sampling_steps)                   # validates the count
        self.unet = UNet(UNetConfig(1, c.base_channels, mults, c.blocks_per_level, c.attention,
                                    c.groups, c.dropout, NUM_CLASSES if c.conditional else 0))
        self.ema = nn.EMA(self.unet, c.ema_decay)

    # -- training ------------------------------------------------------------------------------
    def prepare(self, arrays, rng):
        """Host side, before the device: images to [-1, 1]; labels dropped to "no label"
        (index 10) for a share ``label_dropout`` of the batch."""
        images, labels = arrays[0], arrays[1]
        labels = np.asarray(labels, np.int64).copy()
        if self.config.conditional and self.config.label_dropout > 0:
            labels[rng.random(len(labels)) < self.config.label_dropout] = NUM_CLASSES
        return (np.asarray(images, np.float32) * 2.0 - 1.0, labels)

    def eps_fn(self, labels=None):
        """eps_theta(x_t, t) with the labels fixed (None: unconditional / "no label")."""
        labels = None if labels is None or not self.config.conditional else \
            np.asarray(labels, np.int64)
        return lambda x, t: self.unet(x, t, labels)

    def training_loss(self, batch, rng):
        x0, labels = batch[0], batch[1].cpu().numpy()
        return self.diffusion.simple_loss(self.eps_fn(labels), x0, rng), {}

    def phases(self, data):
        c = self.config
        return [Phase("train", self.unet.parameters, self.training_loss,
                      evaluate=(lambda: self.validation_metrics(data.val))
                      if data.val is not None else None,
                      select=self.select, prepare=self.prepare, clip_grad_norm=c.clip_grad,
                      lr_schedule=warmup_cosine(c.warmup_steps, 0.1),
                      after_step=lambda step: self.ema.update())]

    # -- evaluation ----------------------------------------------------------------------------
    def simple_loss_on(self, dataset, n=1000, seed=0):
        """The simple loss (3) on the first ``n`` images of ``dataset`` with the EMA weights,
        seeded t and noise (the same draws every call)."""
        rng = np.random.default_rng(seed)
        images, labels = dataset.images[:n], dataset.labels[:n]
        total = 0.0
        with self.ema.applied():
            for value, count in self.batched(
                    lambda x, y: float(self.diffusion.simple_loss(
                        self.eps_fn(y), self.as_tensor(x * 2.0 - 1.0), rng)), images, labels):
                total += value * count
        return total / len(images)

    def validation_metrics(self, dataset):
        return {"simple_loss": self.simple_loss_on(dataset)}

    def bits_per_dim(self, dataset, rng):
        """The variational bound (4) in bits/dim on the first ``vb_images`` images (pixels
        quantized to 256 levels in [-1, 1]), EMA weights, labels given when conditional."""
        c = self.config
        n = min(c.vb_images, len(dataset))
        images = np.round(dataset.images[:n] * 255.0) / 255.0 * 2.0 - 1.0
        labels = dataset.labels[:n]
        nats = []
        with self.ema.applied():
            for part, _ in self.batched(
                    lambda x, y: self.diffusion.variational_bound(
                        self.eps_fn(y), self.as_tensor(x), rng, c.vb_timesteps or None),
                    images, labels):
                nats.append(part)
        return float(np.concatenate(nats).mean()) / (np.prod(IMAGE_SHAPE) * math.log(2))

    def evaluate(self, dataset):
        """``simple_loss``, ``bits_per_dim`` (when ``vb_images`` > 0) and, with a classifier,
        the scores of ``eval_samples`` samples against ``dataset``."""
        c = self.config
        rng = np.random.default_rng(2)
        out = {"simple_loss": self.simple_loss_on(dataset)}
        if c.vb_images:
            out["bits_per_dim"] = self.bits_per_dim(dataset, rng)
        clf = self.scoring_classifier() if c.eval_samples else None
        if clf is not None:
            from .scoring import score_samples
            samples = self.sample(c.eval_samples, rng)
            self.__dict__["_scored_samples"] = samples        # reused by extra_metrics
            out.update(score_samples(clf, samples, dataset.images))
        return out

    def extra_metrics(self, data, split, dataset):
        """The overfitting check (when ``eval_samples`` > 0): mean distance of 100 samples (those
        just scored, else fresh ones) to their nearest training image beside that of 100 real
        ``split`` images."""
        if not self.config.eval_samples:
            return {}
        from .scoring import nearest_training
        samples = self.__dict__.pop("_scored_samples", None)
        samples = self.sample(100, np.random.default_rng(3)) if samples is None else samples[:100]
        return {f"{split}_nn_train_dist":
                float(nearest_training(samples, data.train.images)[1].mean()),
                f"{split}_nn_train_dist_real":
                float(nearest_training(dataset.images[:100], data.train.images)[1].mean())}

    # -- sampling ------------------------------------------------------------------------------
    def generate(self, labels, rng, sampler=None, trajectory=0, progress=False):
        """Images for ``labels`` (n,) (ignored when unconditional) with the EMA weights: returns
        ``(images (n, 1, 28, 28) in [0, 1], frames (trajectory, n, 1, 28, 28) in [0, 1])``."""
        c = self.config
        labels = np.asarray(labels, np.int64)
        chunks, frames = [], []
        with self.ema.applied():
            for start in range(0, len(labels), self.eval_batch_size):
                part = labels[start:start + self.eval_batch_size]
                fn = classifier_free_guidance(self.unet, part, NUM_CLASSES, c.guidance) \
                    if c.conditional else self.eps_fn()
                x, traj = self.diffusion.sample(
                    fn, (len(part),) + IMAGE_SHAPE, rng, sampler or c.sampler,
                    c.sampling_steps, c.eta, trajectory, progress, self.device)
                chunks.append(x)
                frames.append(traj)
        to_unit = lambda a: np.clip((a + 1.0) / 2.0, 0.0, 1.0).astype(np.float32)  # noqa: E731
        return to_unit(np.concatenate(chunks)), to_unit(np.concatenate(frames, axis=1))

    def sample(self, n, rng):
        """``n`` digits in [0, 1] (labels 0..9 in turn when conditional)."""
        return self.generate(np.arange(n) % NUM_CLASSES, rng)[0]

    def save_samples(self, n, rng, path):
        """The grid at ``path`` (a row per digit when conditional) and beside it
        ``<name>_trajectory.png``: for the first few samples the strip of frames from noise
        to digit."""
        from .. import plots
        per_row = NUM_CLASSES if self.config.conditional else int(np.ceil(np.sqrt(n)))
        labels = np.repeat(np.arange(NUM_CLASSES), int(np.ceil(n / NUM_CLASSES)))[:n] \
            if self.config.conditional else np.zeros(n, np.int64)
        images, frames = self.generate(labels, rng, trajectory=self.config.trajectory_frames,
                                       progress=True)
        out = plots.save_image_grid(images, path, nrow=per_row, scale=2)
        if len(frames):
            shown = min(len(labels), NUM_CLASSES)
            pick = np.linspace(0, len(labels) - 1, shown).astype(int)        # one per digit
            strip = frames[:, pick].transpose(1, 0, 2, 3, 4).reshape(-1, *IMAGE_SHAPE)
            root, ext = os.path.splitext(os.fspath(path))
            plots.save_image_grid(strip, f"{root}_trajectory{ext or '.png'}",
                                  nrow=len(frames), scale=2)
        return out

    def pictures(self, out_dir, dataset, rng):
        """samples.png (a row per digit) and samples_trajectory.png."""
        path = os.path.join(out_dir, "samples.png")
        self.save_samples(100 if self.config.conditional else 64, rng, path)
        return [path, os.path.join(out_dir, "samples_trajectory.png")]
