"""The generative models, each built only on the engine (see :mod:`tinygen.models.base` for the
protocol the trainer and the command line use). ``MODELS`` maps names to classes."""
from ..data import RunData  # noqa: F401
from .registry import (MODELS, build_model, get_model_class, model_from_checkpoint,  # noqa: F401
                       register)
from .phases import OptimizerSpec, Phase, warmup_cosine  # noqa: F401
from .base import GenerativeModel  # noqa: F401
from .pca import PCA, principal_angles  # noqa: F401
from .autoencoders import (Autoencoder, ConvAutoencoder, ContractiveAutoencoder,  # noqa: F401
                           DenoisingAutoencoder, LinearAutoencoder, MLPAutoencoder)
from .sdae import StackedDenoisingAutoencoder  # noqa: F401
from .flows import MultiScaleFlow, NVPNet, NVPToy, RealNVP  # noqa: F401
from .vae import ConditionalVAE, ConvVAE, MLPVAE, ToyVAE, VAE, VanillaVAE  # noqa: F401
from .semisupervised import M1, M1M2, M2  # noqa: F401
from .classifier import MNISTClassifier  # noqa: F401
from .gan import DCGAN, GAN, ConditionalDCGAN, MLPGAN  # noqa: F401
from .pixelrnn import DiagonalBiLSTMPixelRNN, PixelRNN, RowLSTMPixelRNN  # noqa: F401
from .charrnn import CharRNN  # noqa: F401
from .wavenet import WaveNet  # noqa: F401
from .ddpm import DDPM  # noqa: F401
