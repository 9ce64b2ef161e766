"""Variational autoencoders, split by concern:

* :mod:`.base` -- the VAE base class (ELBO, IWAE bound, float64 evaluation by casting,
  sampling, pictures) and the config base that validates itself;
* :mod:`.mlp`  -- ``vae``, ``toy-vae``, ``cvae`` (KL warm-up, IWAE training, shift augmentation);
* :mod:`.conv` -- ``conv-vae`` and ``vanilla-vae``.

Likelihoods, posteriors and the importance-weighted estimator live in
:mod:`tinygen.distributions`.
"""
from .base import VAE, VAEConfigBase  # noqa: F401
from .mlp import (CVAEConfig, ConditionalVAE, MLPVAE, MLPVAEConfigBase, ToyVAE,  # noqa: F401
                  ToyVAEConfig, VAEConfig)
from .conv import ConvVAE, ConvVAEConfig, VanillaVAE, VanillaVAEConfig  # noqa: F401
