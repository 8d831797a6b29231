"""Training: :class:`~multienc.training.trainer.ModelTrainer` (the research code's trainer:
epochs, dev evaluation, best model, test report, log files), its frozen
:class:`~multienc.training.settings.TrainSettings`, the learning-rate schedule and groups
(:mod:`~multienc.training.optim`) and the log (:mod:`~multienc.training.log`).

Uses :mod:`multienc.models`, :mod:`multienc.datasets`, :mod:`multienc.evaluation` and
:mod:`multienc.engine`.
"""
from multienc.training.settings import TrainSettings
from multienc.training.trainer import ModelTrainer, TrainingError, default_base_path

__all__ = ["ModelTrainer", "TrainingError", "TrainSettings", "default_base_path"]
