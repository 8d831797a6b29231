"""MultiEncoder: several LanguageModels combined into one representation.

The combiner's weights (per-LM projections, the shared LayerNorm, the DME
attention) are initialised here; once a task head is built on the encoder they
live in that head's task model, which computes everything (see
:mod:`multienc.models.heads`). Exported from :mod:`multienc.encoders` too.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from multienc.engine.task_model import COMBINE_METHODS, TASK_CLASSIFY, TaskModel
from multienc.formats import schema
from multienc.models.initialization import generator, linear_init
from multienc.models.inputs import build_inputs, check_sentences, in_length_batches
from multienc.models.language_model import LanguageModel

__all__ = ["MultiEncoder"]


class MultiEncoder:
    """Several pretrained LMs tuned together; their pooled vectors are combined.

    Args:
        language_models: the :class:`~multienc.encoders.LanguageModel` s (same pooling).
        combine_method: ``'concat'`` (join the vectors), ``'mean'`` (average of the
            vectors projected to the largest hidden size) or ``'dme'`` (Dynamic
            Meta-Embeddings: a learned score per LM from its projected vector, softmax
            across LMs, weighted sum; the weights are the "DME scores").
        use_layer_norm: a LayerNorm (eps 1e-3) shared by the LMs on each (projected) vector.
        alternate_freezing_prob: per training step, with this probability one LM chosen at
            random runs without gradient (no update) for that step.
        combine_dropout: dropout on the combined vector during training.

    With a single LM the method is ``'none'``: its vector passes through unchanged.
    """

    def __init__(self, language_models: Sequence[LanguageModel], combine_method: str = "concat",
                 use_layer_norm: bool = False, alternate_freezing_prob: float = 0.0, combine_dropout: float = 0.0):
        lms = list(language_models) if not isinstance(language_models, (str, bytes)) else None
        if not lms or not all(isinstance(lm, LanguageModel) for lm in lms):
            raise TypeError("language_models must be a non-empty list of LanguageModel")
        if combine_method not in COMBINE_METHODS or combine_method == "none":
            raise ValueError(f"combine_method must be 'concat', 'dme' or 'mean', got {combine_method!r}")
        devices = {lm.device for lm in lms}
        if len(devices) > 1:
            raise ValueError("the language models live on different devices: " + ", ".join(
                f"{lm.name} on {lm.device!r}" for lm in lms) + "; create them all with one device=...")
        poolings = {lm.pooling for lm in lms}
        if len(poolings) > 1:
            raise ValueError(f"all language models need the same pooling, got {sorted(poolings)}")
        for what, p in (("alternate_freezing_prob", alternate_freezing_prob), ("combine_dropout", combine_dropout)):
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
                raise ValueError(f"{what} must be a number in [0, 1), got {p!r}")
        self.language_models: List[LanguageModel] = lms
        self.num_lms = len(lms)
        self.combine_method = combine_method if len(lms) > 1 else "none"
        self.use_layer_norm = bool(use_layer_norm)
        self.alternate_freezing_prob = float(alternate_freezing_prob)
        self.combine_dropout = float(combine_dropout)
        if self.num_lms == 1 and (use_layer_norm or combine_dropout):
            warnings.warn("MultiEncoder with one language model passes its vector through unchanged: "
                          "use_layer_norm and combine_dropout are ignored", stacklevel=2)
        self.name = "-".join(lm.name for lm in lms)
        sizes = [lm.embedding_length for lm in lms]
        if self.combine_method == "concat" and self.use_layer_norm and len(set(sizes)) > 1:
            raise ValueError(f"use_layer_norm with combine_method='concat' shares one LayerNorm, so the language "
                             f"models need equal hidden sizes (got {sizes}); use 'dme' or 'mean'")
        for i, lm in enumerate(lms, start=1):
            setattr(self, f"lm_{i}", lm)
        self._owner = None  # the task head whose C model holds the live combiner weights
        self._standalone = None
        self.set_pool_rows(1)

    def set_pool_rows(self, rows: int) -> None:
        """Vectors made of ``rows`` pooled vectors side by side per LM (the tagger's
        ``subtoken_pooling='first_last'``: 2): every LM's width, the projection size and
        :attr:`embedding_length` scale by ``rows``; the combiner weights are drawn anew."""
        self.pool_rows = int(rows)
        sizes = [lm.embedding_length * self.pool_rows for lm in self.language_models]
        self.projection_size = max(sizes)
        self.embedding_length = sum(sizes) if self.combine_method == "concat" else (
            sizes[0] if self.combine_method == "none" else self.projection_size)
        self._state: Dict[str, np.ndarray] = self._init_state(generator())

    @property
    def device(self) -> str:
        """The device of the language models (one for all of them)."""
        return self.language_models[0].device

    # ------------------------------------------------------------- weights
    def _init_state(self, rng: np.random.Generator) -> Dict[str, np.ndarray]:
        """Fresh combiner weights as torch initialises nn.Linear / nn.LayerNorm."""
        P, st = self.projection_size, {}
        if self.combine_method in ("mean", "dme"):
            for i, lm in enumerate(self.language_models):
                w, b = linear_init(rng, P, lm.embedding_length * self.pool_rows)
                st[f"combiner.projections.{i}.weight"], st[f"combiner.projections.{i}.bias"] = w, b
        if self.use_layer_norm and self.combine_method != "none":
            st["combiner.layer_norm.weight"] = np.ones(P, np.float32)
            st["combiner.layer_norm.bias"] = np.zeros(P, np.float32)
        if self.combine_method == "dme":
            w, b = linear_init(rng, 1, P)
            st["combiner.attention.weight"], st["combiner.attention.bias"] = w, b
        return st

    def reset_parameters(self, rng: np.random.Generator) -> None:
        """Re-draw the combiner weights (the trainer does this for a fresh model given a seed)."""
        self._state = self._init_state(rng)
        if self._owner is not None:
            self._owner.task_model.load_state(self._state)

    def combiner_state_dict(self) -> Dict[str, np.ndarray]:
        """Copies of the combiner's weights (from the C model once a head uses them)."""
        if self._owner is not None:
            return {k: v for k, v in self._owner.task_model.state().items() if k.startswith("combiner.")}
        return {k: v.copy() for k, v in self._state.items()}

    def task_model_options(self) -> Dict[str, Any]:
        """The combiner's part of a :class:`~multienc.engine.TaskModel`'s arguments."""
        return dict(combine=self.combine_method, use_layer_norm=self.use_layer_norm,
                    combine_dropout=self.combine_dropout, ln_eps=1e-3, pool_rows=self.pool_rows)

    #: what :meth:`checkpoint_settings` writes (checked when a checkpoint is read)
    SETTINGS_SCHEMA = schema.Obj({"combine_method": schema.Const("concat", "dme", "mean"),
                                  "use_layer_norm": schema.Bool(),
                                  "alternate_freezing_prob": schema.Float(0.0, 1.0, below_hi=True),
                                  "combine_dropout": schema.Float(0.0, 1.0, below_hi=True)}, closed=True)

    def checkpoint_settings(self) -> Dict[str, Any]:
        """The constructor's settings, as a checkpoint records them (:meth:`from_checkpoint_settings`)."""
        return dict(combine_method=self.combine_method if self.num_lms > 1 else "concat",
                    use_layer_norm=self.use_layer_norm, alternate_freezing_prob=self.alternate_freezing_prob,
                    combine_dropout=self.combine_dropout)

    @classmethod
    def from_checkpoint_settings(cls, language_models: Sequence[LanguageModel],
                                 settings: Mapping[str, Any]) -> "MultiEncoder":
        """The multi-encoder a checkpoint recorded with :meth:`checkpoint_settings`."""
        return cls(language_models, **settings)

    def _bind(self, owner) -> None:
        self._owner = owner
        self._standalone = None

    # ------------------------------------------------------------- running
    def _runtime(self) -> TaskModel:
        if self._owner is not None:
            return self._owner.task_model
        if self._standalone is None:
            self._standalone = TaskModel([lm.encoder for lm in self.language_models], task=TASK_CLASSIFY,
                                         num_classes=0, state=self._state, **self.task_model_options())
        return self._standalone

    def embed(self, sentences: Sequence, batch_size: int = 32) -> np.ndarray:
        """Eval-mode combined vectors, float32 (B, :attr:`embedding_length`), in the order given.
        The sentences run ``batch_size`` at a time, similar lengths together (as ``predict``
        batches them), so a long list needs the memory of one batch."""
        return self._embed(sentences, batch_size)[0]

    def _embed(self, sentences: Sequence, batch_size: int) -> Tuple[np.ndarray, np.ndarray]:
        sentences = check_sentences(sentences)
        if not sentences:
            raise ValueError("sentences is empty")

        def run(batch: List) -> Tuple[np.ndarray, np.ndarray]:
            _, alpha, _, emb = self._runtime().forward(build_inputs(self.language_models, batch), embedding=True)
            return emb, alpha.T

        return in_length_batches(self.language_models, sentences, batch_size, run)

    def embed_with_attention(self, sentences: Sequence, batch_size: int = 32) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """(embeddings (B, E), DME scores (B, num LMs)) in eval mode, in the order given; each row of
        scores sums to 1. Batched as :meth:`embed`.

        Only for ``combine_method='dme'`` with two or more LMs; otherwise warns and returns None.
        """
        if self.combine_method != "dme":
            warnings.warn("embed_with_attention needs combine_method='dme' and at least two language models",
                          stacklevel=2)
            return None
        return self._embed(sentences, batch_size)

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(lm) for lm in self.language_models)
        return (f"MultiEncoder(combine_method={self.combine_method!r}, use_layer_norm={self.use_layer_norm}, "
                f"combine_dropout={self.combine_dropout}, alternate_freezing_prob={self.alternate_freezing_prob}, "
                f"embedding_length={self.embedding_length},\n  {inner})")
