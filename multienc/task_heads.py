"""The research code's module name for the task heads (``from multienc.task_heads import
TextClassifier``); they live in :mod:`multienc.models`."""
from multienc.models.heads import Predictions, TextClassifier, TextRegressor
from multienc.models.tagger import SequenceTagger

__all__ = ["TextClassifier", "TextRegressor", "SequenceTagger", "Predictions"]
