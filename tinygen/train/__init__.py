"""Training infrastructure shared by every model: the loop, checkpoints, metrics, pictures.

``tinygen.train.loop``        :class:`Trainer` (progress bar, metrics, evaluation, checkpoints,
                              exact resume, NaN stop)
``tinygen.checkpoint``  atomic checkpoint files
``tinygen.plots``      PNG grids and plots
"""
from ..checkpoint import load_checkpoint, save_checkpoint, atomic_write  # noqa: F401
from .loop import Phase, Trainer, TrainingDiverged, TrainConfig  # noqa: F401
