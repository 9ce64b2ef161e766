"""Neural-network building blocks (PyTorch's ``torch.nn`` names): ``Module``, ``Parameter``,
layers, containers, losses, ``init`` and ``utils``. No gradient code lives here: modules only
compose the differentiable ops of :mod:`tinygen.functional`."""
from . import flows, init, utils
from .conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
from .flows import AffineCoupling, CouplingResNet, DequantizeLogit, FactorOut, Squeeze  # noqa: F401
from .layers import (ELU, BatchNorm1d, BatchNorm2d, BCELoss, BCEWithLogitsLoss,
                     CrossEntropyLoss, Dropout, Flatten, GaussianNLLLoss, Identity, L1Loss,
                     LeakyReLU, Linear, LogSoftmax, ModuleDict, ModuleList, MSELoss, NLLLoss,
                     ReLU, Sequential, Sigmoid, Softmax, Softplus, Tanh, Unflatten)
from .masked_conv import MaskedConv2d
from .activation import *  # noqa: F401,F403
from .activation import __all__ as _activation
from .attention import MultiheadAttention, TransformerEncoder, TransformerEncoderLayer
from .normalization import GroupNorm, LayerNorm
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d, Upsample
from .pooling import AdaptiveAvgPool1d, AvgPool1d, MaxPool1d
from .module import Module, Parameter
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from .layers import Dropout2d
from .sparse import Embedding
from .ema import EMA
from . import functional  # noqa: E402  (tinygen.nn.functional is tinygen.functional)

__all__ = ["Module", "Parameter", "init", "utils", "Conv1d", "Conv2d", "ConvTranspose1d",
           "ConvTranspose2d", "ELU", "BatchNorm1d", "BatchNorm2d", "BCELoss",
           "BCEWithLogitsLoss", "CrossEntropyLoss", "Dropout", "Flatten", "GaussianNLLLoss",
           "Identity", "L1Loss", "LeakyReLU", "Linear", "LogSoftmax", "ModuleDict", "ModuleList",
           "MSELoss", "NLLLoss", "ReLU", "Sequential", "Sigmoid", "Softmax", "Softplus", "Tanh",
           "Unflatten", "LSTM", "LSTMCell", "MaskedConv2d", "GRU", "GRUCell", "RNN", "RNNCell",
           "Dropout2d", "Embedding", "functional"]
__all__ += _activation + ["MultiheadAttention", "GroupNorm", "LayerNorm", "AdaptiveAvgPool2d",
                          "AvgPool2d", "MaxPool2d", "Upsample", "AdaptiveAvgPool1d", "AvgPool1d",
                          "MaxPool1d", "TransformerEncoder", "TransformerEncoderLayer"]
__all__ += ["EMA"]
