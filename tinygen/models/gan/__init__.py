"""Generative adversarial networks (Goodfellow et al. 2014; Radford et al. 2015), split by
concern: :mod:`.base` (the game, generation, evaluation), :mod:`.space` (the data space: MNIST
images or 2-D points), :mod:`.mlp` (``gan``), :mod:`.conv` (``dcgan``, ``cgan``)."""
from .base import GAN, LOSSES  # noqa: F401
from .mlp import GANConfig, MLPGAN  # noqa: F401
from .conv import CGANConfig, ConditionalDCGAN, DCGAN, DCGANConfig  # noqa: F401
from .space import ImageSpace, PointSpace  # noqa: F401
