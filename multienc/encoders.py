"""The research code's module name for the language models (``from multienc.encoders import
LanguageModel, MultiEncoder``); they live in :mod:`multienc.models`."""
from multienc.models.language_model import POOLINGS, LanguageModel
from multienc.models.multi_encoder import MultiEncoder

__all__ = ["LanguageModel", "MultiEncoder", "POOLINGS"]
