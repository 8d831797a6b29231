"""Models: pretrained language models, their combination and the task heads.

- :class:`~multienc.models.language_model.LanguageModel`: one hub encoder with its tokenizer.
- :class:`~multienc.models.multi_encoder.MultiEncoder`: several combined (concat, mean, DME).
- :mod:`~multienc.models.heads`: :class:`TextClassifier`, :class:`TextRegressor`, checkpoints.
- :class:`~multienc.models.tagger.SequenceTagger`: one tag per word.
- :mod:`~multienc.models.inputs`: sentences and words to the task model's inputs.
- :mod:`~multienc.models.initialization`: initial weights and multienc's random generator.

Uses :mod:`multienc.engine`, :mod:`multienc.hub` and :mod:`multienc.formats`; not the corpora
(samples are anything with ``text``/``tokens`` and ``label``).
"""
from multienc.models.heads import HEADS, Predictions, TaskHead, TextClassifier, TextRegressor, load_model
from multienc.models.language_model import LanguageModel
from multienc.models.multi_encoder import MultiEncoder
from multienc.models.tagger import SequenceTagger

__all__ = ["LanguageModel", "MultiEncoder", "TaskHead", "TextClassifier", "TextRegressor", "SequenceTagger",
           "Predictions", "HEADS", "load_model"]
