"""The research code's module name for the trainer (``from multienc.trainer import
ModelTrainer``); it lives in :mod:`multienc.training`."""
from multienc.training.trainer import ModelTrainer, TrainingError, default_base_path

__all__ = ["ModelTrainer", "TrainingError", "default_base_path"]
