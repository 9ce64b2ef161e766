"""Neural-network building blocks (PyTorch's ``torch.nn`` names): ``Module``, ``Parameter``,
layers, containers, losses, ``init`` and ``utils``. No gradient code lives here: modules only
compose the differentiable ops of :mod:`tinygen.functional`."""
from . import init, utils
from .conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
from .layers import (ELU, BatchNorm1d, BatchNorm2d, BCELoss, BCEWithLogitsLoss,
                     CrossEntropyLoss, Dropout, Flatten, GaussianNLLLoss, Identity, L1Loss,
                     LeakyReLU, Linear, LogSoftmax, ModuleDict, ModuleList, MSELoss, NLLLoss,
                     ReLU, Sequential, Sigmoid, Softmax, Softplus, Tanh, Unflatten)
from .module import Module, Parameter

__all__ = ["Module", "Parameter", "init", "utils", "Conv1d", "Conv2d", "ConvTranspose1d",
           "ConvTranspose2d", "ELU", "BatchNorm1d", "BatchNorm2d", "BCELoss",
           "BCEWithLogitsLoss", "CrossEntropyLoss", "Dropout", "Flatten", "GaussianNLLLoss",
           "Identity", "L1Loss", "LeakyReLU", "Linear", "LogSoftmax", "ModuleDict", "ModuleList",
           "MSELoss", "NLLLoss", "ReLU", "Sequential", "Sigmoid", "Softmax", "Softplus", "Tanh",
           "Unflatten"]
