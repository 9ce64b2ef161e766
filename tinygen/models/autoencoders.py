"""The autoencoder family of the lecture (Fleuret's lecture on autoencoders and generative models,
"Autoencoders").

An autoencoder is an encoder f: X -> F (latent space of dimension d) and a decoder g: F -> X
such that g o f is close to the identity on the data. With q^X the data distribution it is
trained with the MSE loss

    L(f, g) = E_{X ~ q^X} || X - g(f(X)) ||^2                         (mean over pixels here)

Models in this file (all on 28x28 MNIST digits in [0, 1], images (N, 1, 28, 28)):

* ``mlp-ae``    f, g multi-layer perceptrons.
* ``linear-ae`` f, g linear (affine): the optimum spans the PCA subspace of dimension d.
* ``conv-ae``   the lecture's convolutional autoencoder: convolutions with strides > 1 down to
                d x 1 x 1, the reciprocal transposed convolutions back up.
* ``dae``       denoising autoencoder (Vincent et al. 2010): corrupt x to x~ with Gaussian,
                salt-and-pepper or masking noise, train g(f(x~)) to reconstruct the clean x.
* ``cae``       contractive autoencoder (Rifai et al. 2011): MSE + lambda ||J_f(x)||_F^2.

Every autoencoder also gets what the lecture does with it:

* interpolation  xi(x, x', alpha) = g((1 - alpha) f(x) + alpha f(x')),  alpha in [0, 1];
* sampling       fit a Gaussian with diagonal covariance to the training codes,
                 f(X) ~ N(m^, Delta^), draw z from it and show g(z).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .. import functional as F
from .. import nn
from ..autograd import no_grad
from ..data import balanced_indices
from ..tensor import zeros
from .phases import Phase
from .base import GenerativeModel, register
from .pca import PCA

IMAGE_SHAPE = (1, 28, 28)
PIXELS = 28 * 28


class Autoencoder(GenerativeModel):
    """Shared training, evaluation, interpolation and sampling; subclasses define
    :meth:`encode` (images (N, 1, 28, 28) -> codes (N, d)) and :meth:`decode` (the inverse
    shapes)."""
    select = "mse"
    train_defaults = {"epochs": 25, "lr": 1e-3, "batch_size": 100}
    scored_samples = 10000

    def __init__(self, config):
        super().__init__(config)
        d = config.latent_dim
        if d < 1:
            raise ValueError(f"latent_dim must be >= 1, got {d}")
        # The diagonal Gaussian f(X) ~ N(m^, Delta^) fitted to the training codes (finish()).
        self.register_buffer("code_mean", zeros(d))
        self.register_buffer("code_std", zeros(d))

    def encode(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, z):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x):
        return self.decode(self.encode(x))

    # -- training --------------------------------------------------------------------------------
    def corrupt(self, x: np.ndarray, rng):
        """The encoder's corrupted input x~ during training, a NumPy batch made on the host
        (None: the clean input; the denoising AE adds noise)."""
        return None

    def prepare_batch(self, arrays, rng):
        """The phase's host-side ``prepare``: (images, labels) [+ corrupted images]."""
        noisy = self.corrupt(arrays[0], rng)
        return tuple(arrays) if noisy is None else tuple(arrays) + (noisy,)

    def penalty(self, x, z):
        """A regularizer added to the MSE (none; the contractive AE overrides it)."""
        return None

    def training_loss(self, batch, rng):
        x = batch[0]
        z = self.encode(batch[2] if len(batch) > 2 else x)    # f(x~), x~ made by prepare_batch
        mse = F.mse_loss(self.decode(z), x)            # || x - g(f(x~)) ||^2, mean over pixels
        extra = self.penalty(x, z)
        if extra is None:
            return mse, {}                             # the loss is the MSE
        return mse + extra, {"mse": float(mse), "penalty": float(extra)}

    def phases(self, data):
        return [Phase("train", self.parameters, self.training_loss,
                      evaluate=(lambda: self.evaluate(data.val)) if data.val is not None else None,
                      select=self.select, prepare=self.prepare_batch)]

    # -- evaluation ------------------------------------------------------------------------------
    def reconstruct(self, images) -> np.ndarray:
        """g(f(x)) for NumPy images (N, 1, 28, 28), in batches, without gradients."""
        parts = [out.cpu().numpy() for out, _ in self.batched(lambda x: self(self.as_tensor(x)),
                                                        images)]
        return np.concatenate(parts) if parts else np.zeros((0,) + IMAGE_SHAPE, np.float32)

    def codes(self, images) -> np.ndarray:
        """f(x) (N, d) for NumPy images."""
        parts = [z.cpu().numpy() for z, _ in self.batched(lambda x: self.encode(self.as_tensor(x)),
                                                    images)]
        return np.concatenate(parts)

    def evaluate(self, dataset) -> dict:
        """``mse``: mean squared reconstruction error per pixel on ``dataset``."""
        rec = self.reconstruct(dataset.images)
        return {"mse": float(np.mean((rec.astype(np.float64) - dataset.images) ** 2))}

    def check_data(self, data):
        """Before training: the PCA baseline at the same d needs d <= min(N_train, 784)."""
        limit = min(len(data.train), PIXELS)
        if self.config.latent_dim > limit:
            raise ValueError(f"--latent-dim {self.config.latent_dim} is beyond what the PCA "
                             f"baseline can fit on {len(data.train)} training images of "
                             f"{PIXELS} pixels (at most {limit})")

    def extra_metrics(self, data, split, dataset):
        """The PCA baseline at the same d (fitted on the training set): ``pca_<split>_mse``."""
        return {f"pca_{split}_mse": pca_baseline(data.train, dataset,
                                                 self.config.latent_dim)["pca_mse"]}

    def finish(self, data):
        """Fit the diagonal Gaussian N(m^, Delta^) to the codes of the training set. A code
        that collapsed to one value (e.g. a dead ReLU unit) keeps a spread of 1e-6, so that a
        fitted distribution (std > 0) tells apart from the zeros of an unfinished run."""
        z = self.codes(data.train.images).astype(np.float64)
        with no_grad():
            self.code_mean.copy_(self.as_tensor(z.mean(axis=0)))
            self.code_std.copy_(self.as_tensor(np.maximum(z.std(axis=0), 1e-6)))

    # -- generation ------------------------------------------------------------------------------
    def sample(self, n, rng):
        """g(z), z ~ N(m^, Delta^): images (n, 1, 28, 28) clipped to [0, 1]."""
        std = self.code_std.cpu().numpy()
        if not np.any(std > 0):
            raise ValueError("this checkpoint has no fitted code distribution (the run did not "
                             "finish); sample from the final checkpoint of a completed run")
        z = self.code_mean.cpu().numpy() + std * rng.standard_normal((n, len(std)))
        with no_grad():
            x = self.decode(self.as_tensor(z)).cpu().numpy()
        return np.clip(x, 0.0, 1.0)

    def interpolate(self, x0, x1, steps=10) -> np.ndarray:
        """xi(x, x', alpha) = g((1 - alpha) f(x) + alpha f(x')) for pairs of images
        x0, x1 (R, 1, 28, 28) -> (R, steps, 1, 28, 28)."""
        z0, z1 = self.codes(x0), self.codes(x1)                       # (R, d) each
        alpha = np.linspace(0.0, 1.0, steps)[None, :, None]           # (1, steps, 1)
        z = (1 - alpha) * z0[:, None] + alpha * z1[:, None]           # (R, steps, d)
        with no_grad():
            x = self.decode(self.as_tensor(z.reshape(-1, z0.shape[1]))).cpu().numpy()
        return np.clip(x.reshape(len(x0), steps, *IMAGE_SHAPE), 0.0, 1.0)

    def pictures(self, out_dir, dataset, rng):
        from .. import plots as img

        x = dataset.images
        sel = x[balanced_indices(dataset.labels, 20)]          # two of each digit, fixed
        paths = [img.save_reconstructions(sel, np.clip(self.reconstruct(sel), 0, 1),
                                          os.path.join(out_dir, "reconstructions.png"), scale=2)]
        pick = rng.choice(len(x), size=(2, 8), replace=False)
        paths.append(img.save_interpolations(self.interpolate(x[pick[0]], x[pick[1]]),
                                             os.path.join(out_dir, "interpolations.png"),
                                             scale=2))
        if np.any(self.code_std.cpu().numpy() > 0):
            paths.append(img.save_image_grid(self.sample(64, rng),
                                             os.path.join(out_dir, "samples.png"), nrow=8,
                                             scale=2))
        return paths


# ------------------------------------------------------------------------------------------------
@dataclass
class MLPAEConfig:
    latent_dim: int = 8     # d, the dimension of the code f(x)
    hidden: int = 256       # width of the two hidden layers (784-h-h/2-d and back)


@register
class MLPAutoencoder(Autoencoder):
    """f: 784 -> h -> h/2 -> d and g: d -> h/2 -> h -> 784 with ReLU, a sigmoid on the pixels."""
    model_name = "mlp-ae"
    description = "MLP autoencoder (784-h-h/2-d, mirrored decoder), MSE + Adam"
    Config = MLPAEConfig

    def __init__(self, config=None):
        super().__init__(config or MLPAEConfig())
        h, d = self.config.hidden, self.config.latent_dim
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(PIXELS, h), nn.ReLU(),
                                     nn.Linear(h, h // 2), nn.ReLU(), nn.Linear(h // 2, d))
        self.decoder = nn.Sequential(nn.Linear(d, h // 2), nn.ReLU(), nn.Linear(h // 2, h),
                                     nn.ReLU(), nn.Linear(h, PIXELS), nn.Sigmoid(),
                                     nn.Unflatten(1, IMAGE_SHAPE))

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)


# ------------------------------------------------------------------------------------------------
@dataclass
class LinearAEConfig:
    latent_dim: int = 8     # d; the optimum spans the top-d PCA subspace


@register
class LinearAutoencoder(Autoencoder):
    """f(x) = W_e x + b_e, g(z) = W_d z + b_d. For the MSE loss the optimal g o f is the
    projection on the top-d principal subspace (shifted by the mean): the columns of W_d span
    the PCA subspace, although W_d itself is only determined up to an invertible d x d map."""
    model_name = "linear-ae"
    description = "linear encoder and decoder; its optimum is the PCA subspace"
    Config = LinearAEConfig

    def __init__(self, config=None):
        super().__init__(config or LinearAEConfig())
        d = self.config.latent_dim
        self.encoder = nn.Linear(PIXELS, d)
        self.decoder = nn.Linear(d, PIXELS)

    def encode(self, x):
        return self.encoder(x.reshape(x.shape[0], PIXELS))        # (N, 1, 28, 28) -> (N, 784)

    def decode(self, z):
        return self.decoder(z).reshape(z.shape[0], *IMAGE_SHAPE)  # (N, 784) -> (N, 1, 28, 28)

    def decoder_basis(self) -> np.ndarray:
        """W_d (784, d): its column space is what should match PCA."""
        return self.decoder.weight.detach().cpu().numpy()

    def extra_metrics(self, data, split, dataset):
        """The PCA baseline, and (once, with the first split) the largest principal angle
        between the decoder's column space and the top-d PCA subspace of the training set."""
        from .pca import principal_angles

        out = super().extra_metrics(data, split, dataset)
        if split == ("val" if data.val is not None else "test"):
            pca = PCA.fit(data.train.images, self.config.latent_dim)
            angles = principal_angles(self.decoder_basis(), pca.components.T)
            out["pca_max_principal_angle_deg"] = float(np.degrees(angles.max()))
        return out


# ------------------------------------------------------------------------------------------------
@dataclass
class ConvAEConfig:
    latent_dim: int = 8     # d, channels of the 1x1 code (the lecture shows d = 8, 16, 32)
    channels: int = 32      # nb_channels of every hidden convolution


@register
class ConvAutoencoder(Autoencoder):
    """The lecture's deep convolutional autoencoder (sizes for a 28x28 input):

        encoder                                      decoder
        1x28x28  Conv2d(1, C, 5)          -> Cx24x24     dx1x1   ConvT(d, C, 4)          -> Cx4x4
        Cx24x24  Conv2d(C, C, 5)          -> Cx20x20     Cx4x4   ConvT(C, C, 3, stride 2) -> Cx9x9
        Cx20x20  Conv2d(C, C, 4, stride 2) -> Cx9x9      Cx9x9   ConvT(C, C, 4, stride 2) -> Cx20x20
        Cx9x9    Conv2d(C, C, 3, stride 2) -> Cx4x4      Cx20x20 ConvT(C, C, 5)          -> Cx24x24
        Cx4x4    Conv2d(C, d, 4)          -> dx1x1      Cx24x24 ConvT(C, 1, 5)          -> 1x28x28

    with ReLU between layers and none on the code or the output. A convolution of kernel w
    and stride s maps W to (W - w) div s + 1 and the transposed one maps it back to
    (W - 1) s + w, which restores W exactly here (W = w + s q at every stride-2 layer).
    """
    model_name = "conv-ae"
    description = "the lecture's convolutional autoencoder (strided convs, transposed-conv decoder)"
    Config = ConvAEConfig

    def __init__(self, config=None):
        super().__init__(config or ConvAEConfig())
        c, d = self.config.channels, self.config.latent_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c, kernel_size=5), nn.ReLU(),
            nn.Conv2d(c, c, kernel_size=5), nn.ReLU(),
            nn.Conv2d(c, c, kernel_size=4, stride=2), nn.ReLU(),
            nn.Conv2d(c, c, kernel_size=3, stride=2), nn.ReLU(),
            nn.Conv2d(c, d, kernel_size=4))
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(d, c, kernel_size=4), nn.ReLU(),
            nn.ConvTranspose2d(c, c, kernel_size=3, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(c, c, kernel_size=4, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(c, c, kernel_size=5), nn.ReLU(),
            nn.ConvTranspose2d(c, 1, kernel_size=5))

    def encode(self, x):
        return self.encoder(x).reshape(x.shape[0], self.config.latent_dim)  # (N, d, 1, 1) -> (N, d)

    def decode(self, z):
        return self.decoder(z.reshape(z.shape[0], self.config.latent_dim, 1, 1))


# ------------------------------------------------------------------------------------------------
NOISES = ("gaussian", "salt-pepper", "masking")


def corrupt_array(x, noise: str, level: float, rng) -> np.ndarray:
    """The denoising autoencoder's corruption x -> x~ (NumPy, float32, same shape):

    * ``gaussian``:    x~ = x + eps, eps ~ N(0, level^2)             (additive isotropic noise)
    * ``salt-pepper``: a fraction ``level`` of the pixels, chosen at random, set to 0 or 1 with
                       equal probability
    * ``masking``:     a fraction ``level`` of the pixels, chosen at random, set to 0
    """
    x = np.asarray(x, dtype=np.float32)
    if noise == "gaussian":
        return (x + level * rng.standard_normal(x.shape)).astype(np.float32)
    hit = rng.random(x.shape) < level
    if noise == "masking":
        return np.where(hit, np.float32(0), x)
    if noise == "salt-pepper":
        salt = (rng.random(x.shape) < 0.5).astype(np.float32)
        return np.where(hit, salt, x)
    raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")


@dataclass
class DAEConfig:
    latent_dim: int = 32        # d
    hidden: int = 256           # hidden width (MLP as in mlp-ae)
    noise: str = "gaussian"     # gaussian | salt-pepper | masking
    noise_level: float = 0.5    # sigma for gaussian, else the fraction of corrupted pixels


@register
class DenoisingAutoencoder(MLPAutoencoder):
    """Minimize E || X - g(f(X~)) ||^2 where X~ is a corrupted X: the encoder must keep the
    structure that lets the decoder undo the noise (Vincent et al., 2010)."""
    model_name = "dae"
    description = "denoising autoencoder (gaussian, salt-and-pepper or masking noise)"
    Config = DAEConfig

    def __init__(self, config=None):
        config = config or DAEConfig()
        if config.noise not in NOISES:
            raise ValueError(f"noise must be one of {', '.join(NOISES)}, got {config.noise!r}")
        if not (config.noise_level >= 0 and (config.noise == "gaussian" or config.noise_level <= 1)):
            raise ValueError(f"noise_level must be >= 0 (and <= 1 for {config.noise} noise), got "
                             f"{config.noise_level}")
        super().__init__(config)

    def corrupt(self, x, rng):
        return corrupt_array(x, self.config.noise, self.config.noise_level, rng)

    def evaluate(self, dataset):
        """``mse`` (clean input) and ``denoise_mse``: E || x - g(f(x~)) ||^2 with a fixed,
        seeded corruption of the evaluation set."""
        metrics = super().evaluate(dataset)
        noisy = corrupt_array(dataset.images, self.config.noise, self.config.noise_level,
                              np.random.default_rng(12345))
        rec = self.reconstruct(noisy)
        metrics["denoise_mse"] = float(np.mean((rec.astype(np.float64) - dataset.images) ** 2))
        metrics["noisy_input_mse"] = float(np.mean((noisy.astype(np.float64) -
                                                    dataset.images) ** 2))
        return metrics

    def pictures(self, out_dir, dataset, rng):
        from .. import plots as img

        paths = super().pictures(out_dir, dataset, rng)
        x = dataset.images[balanced_indices(dataset.labels, 10)]       # one of each digit
        noisy = corrupt_array(x, self.config.noise, self.config.noise_level, rng)
        rows = np.stack([x, np.clip(noisy, 0, 1), np.clip(self.reconstruct(noisy), 0, 1)])
        paths.append(img.save_interpolations(rows, os.path.join(out_dir, "denoising.png"),
                                             scale=2))  # rows: clean, corrupted, denoised
        return paths


# ------------------------------------------------------------------------------------------------
@dataclass
class CAEConfig:
    latent_dim: int = 64        # d, sigmoid code units
    contraction: float = 1e-3   # lambda, weight of ||J_f(x)||_F^2


@register
class ContractiveAutoencoder(Autoencoder):
    """h = f(x) = sigmoid(W x + b), x^ = g(h) = sigmoid(W' h + b'), loss

        || x - g(f(x)) ||^2  +  lambda || J_f(x) ||_F^2,

    and for this encoder the Jacobian has the closed form J_f(x) = diag(h (1 - h)) W, so

        || J_f(x) ||_F^2 = sum_j (h_j (1 - h_j))^2 sum_i W_ji^2

    (Rifai et al., 2011): the penalty makes the code insensitive to directions the data does
    not vary in."""
    model_name = "cae"
    description = "contractive autoencoder (MSE + lambda * squared Frobenius norm of the encoder Jacobian)"
    Config = CAEConfig

    def __init__(self, config=None):
        super().__init__(config or CAEConfig())
        if self.config.contraction < 0:
            raise ValueError(f"contraction must be >= 0, got {self.config.contraction}")
        d = self.config.latent_dim
        self.enc = nn.Linear(PIXELS, d)
        self.dec = nn.Linear(d, PIXELS)

    def encode(self, x):
        return F.sigmoid(self.enc(x.reshape(x.shape[0], PIXELS)))  # (N, 784) -> (N, d)

    def decode(self, z):
        return F.sigmoid(self.dec(z)).reshape(z.shape[0], *IMAGE_SHAPE)

    def jacobian_norm2(self, h):
        """||J_f(x)||_F^2 per sample from the codes h (N, d): sum_j (h_j(1-h_j))^2 ||W_j||^2."""
        row_norm2 = (self.enc.weight * self.enc.weight).sum(dim=1)  # (d,)
        return ((h * (1 - h)) ** 2 * row_norm2).sum(dim=1)          # (N,)

    def penalty(self, x, z):
        return self.config.contraction * self.jacobian_norm2(z).mean()

    def evaluate(self, dataset):
        """``mse`` and ``jacobian_norm2``: mean ||J_f(x)||_F^2 over the set."""
        metrics = super().evaluate(dataset)
        norms = [self.jacobian_norm2(self.encode(self.as_tensor(x))).detach().cpu().numpy().sum()
                 for x in np.array_split(dataset.images, max(1, len(dataset.images) // 500))]
        metrics["jacobian_norm2"] = float(np.sum(norms) / len(dataset.images))
        return metrics


def pca_baseline(train, heldout, d) -> dict:
    """The PCA reconstruction error at the same d, fitted on ``train`` (a Dataset)."""
    return {"pca_mse": PCA.fit(train.images, d).mse(heldout.images)}
