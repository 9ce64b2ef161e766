"""Optimizers (PyTorch's ``torch.optim`` names and update rules): SGD, Adam, AdamW, Adagrad,
RMSprop, Adadelta; learning-rate schedules in :mod:`.lr_scheduler`."""
from . import lr_scheduler
from .adam import Adam, AdamW
from .adaptive import Adadelta, Adagrad, RMSprop
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta",
           "lr_scheduler"]
