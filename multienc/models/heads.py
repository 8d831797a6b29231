"""Task heads: a LanguageModel or MultiEncoder plus a linear decoder and a loss.

    classifier = TextClassifier(encoder=multi_encoder, num_classes=corpus.num_classes)
    classifier.predict_tags(["He can will go"], corpus.label_map)
    # {'Sentences': [...], 'DME scores': [[0.66, 0.34]], 'Predictions': ['not_acceptable']}

Each head owns one :class:`~multienc.engine.TaskModel` holding the combiner and decoder
weights and computing every LM, the pooling, the combination, the decoder, the loss, the
backward and the optimizer step in one call. Checkpoints (``save`` / ``from_checkpoint``) are
one file (:mod:`multienc.formats.checkpoint`) holding every weight plus each LM's config and
tokenizer files and the head's own settings, so a model is rebuilt with no network and no
other file. Each head class records and restores its own settings
(:meth:`TaskHead.checkpoint_settings` / :meth:`TaskHead.from_checkpoint_settings`) and is
found by its name in :data:`HEADS`, which every subclass joins when it is defined.
The sequence tagger is in :mod:`multienc.models.tagger`.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union

import numpy as np

from multienc.engine import TaskModel, check_device
from multienc.engine.task_model import TASK_CLASSIFY, TASK_REGRESS, Inputs
from multienc.formats import schema
from multienc.formats.checkpoint import CheckpointError, checked_field, parse_metadata, read_checkpoint, \
    write_checkpoint
from multienc.models.initialization import generator, linear_init, xavier_uniform
from multienc.models.inputs import build_inputs, check_sentences, in_length_batches
from multienc.models.language_model import LanguageModel
from multienc.models.multi_encoder import MultiEncoder
from multienc.parallel import ProcessGroup, data_parallel_step

__all__ = ["TaskHead", "TextClassifier", "TextRegressor", "Predictions", "HEADS", "load_model"]

Encoder = Union[LanguageModel, MultiEncoder]

#: head class name (as checkpoints record it) -> class; every TaskHead subclass registers itself
HEADS: Dict[str, Type["TaskHead"]] = {}


class Predictions(dict):
    """The dict ``predict_tags`` returns (the seed's keys), which also knows the names of the
    language models whose DME scores it holds (:attr:`lm_names`, in score order) so that
    :func:`multienc.plot.plot_dme_scores` labels its columns with them."""

    def __init__(self, model: "TaskHead", items: Dict[str, list]):
        super().__init__(items)
        #: each language model's name, in the order of the weights in ``'DME scores'``
        self.lm_names: List[str] = [lm.name for lm in model.language_models]


class TaskHead:
    """What TextClassifier, TextRegressor and SequenceTagger share: the task model, weights,
    prediction batches, the training step the trainer calls, and checkpoints.

    A training or evaluation batch is a list of samples with ``text`` (a str or a pair) or, for
    the tagger, ``tokens``, and ``label`` (the :class:`multienc.datasets.Sentence` interface).
    """

    _task = TASK_CLASSIFY  # the task model's loss
    _suffix = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        HEADS[cls.__name__] = cls

    def __init__(self, encoder: Encoder, num_classes: int, device: Optional[str] = None):
        if not isinstance(encoder, (LanguageModel, MultiEncoder)):
            raise TypeError(f"encoder must be a LanguageModel or a MultiEncoder, got {type(encoder).__name__}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if self._task != TASK_REGRESS and num_classes < 2:
            raise ValueError(f"a {type(self).__name__} needs num_classes >= 2, got {num_classes}")
        #: where the whole model runs: its language models' device
        self.device: str = check_device(device, encoder.device, type(self).__name__,
                                        f"the language model(s) {encoder.name!r} live")
        self.encoder = encoder
        self.num_classes = int(num_classes)
        self.language_models: List[LanguageModel] = (
            list(encoder.language_models) if isinstance(encoder, MultiEncoder) else [encoder])
        self._prepare_encoder()
        multi = isinstance(encoder, MultiEncoder) and encoder.num_lms > 1
        self.encoder_type = "multi-transformer" if multi else "single-transformer"
        self.name = f"{encoder.name}{self._suffix}"
        combiner = encoder.task_model_options() if isinstance(encoder, MultiEncoder) else dict(combine="none")
        combiner.update(self._task_model_options())
        #: the C task model computing this head (and its LMs) for prediction and training
        self.task_model = TaskModel([lm.encoder for lm in self.language_models], task=self._task,
                                    num_classes=self.num_classes, **combiner)
        self.label_map: Optional[Dict[str, int]] = None
        self.corpus_name: Optional[str] = None
        self.steps_trained = 0
        self.reset_head(generator())

    def _prepare_encoder(self) -> None:
        """Check the LMs' pooling before the task model is built (sentence heads: not word-level)."""
        for lm in self.language_models:
            if lm.pooling == "word-level":
                raise ValueError(f"{lm.name}: word-level pooling is for the sequence tagger; "
                                 f"use pooling='cls' or 'mean' for {type(self).__name__}")

    def _task_model_options(self) -> Dict[str, Any]:
        """Head-specific arguments of the task model."""
        return {}

    # ------------------------------------------------------------- weights
    def reset_head(self, rng: np.random.Generator) -> None:
        """Draw fresh combiner and decoder weights (torch's default initialisation; the decoder
        weight xavier-uniform as in the seed)."""
        E = self.task_model.embedding_length
        state: Dict[str, np.ndarray] = {}
        if isinstance(self.encoder, MultiEncoder):
            self.encoder._bind(self)
            self.encoder._state = self.encoder._init_state(rng)
            state.update(self.encoder._state)
        w = xavier_uniform(rng, self.num_classes, E)
        _, b = linear_init(rng, self.num_classes, E)
        state["decoder.weight"], state["decoder.bias"] = w, b
        self.task_model.load_state(state)

    def state_dict(self, lm_out: Optional[Sequence[np.ndarray]] = None) -> Dict[str, np.ndarray]:
        """Every weight: ``lm.<i>.<hf name>`` for each LM, then the head's ``combiner.*`` / ``decoder.*``.
        ``lm_out``: one array per LM that takes its copy (:meth:`Encoder.state_dict`'s ``out``)."""
        if lm_out is not None and len(lm_out) != len(self.language_models):
            raise ValueError(f"lm_out holds {len(lm_out)} arrays for {len(self.language_models)} language models")
        out = {}
        for i, lm in enumerate(self.language_models):
            for k, v in lm.encoder.state_dict(None if lm_out is None else lm_out[i]).items():
                out[f"lm.{i}.{k}"] = v
        out.update(self.task_model.state())
        return out

    def load_state_dict(self, state: Mapping[str, np.ndarray], source: str = "state dict") -> None:
        """Set every weight from :meth:`state_dict`'s layout."""
        for i, lm in enumerate(self.language_models):
            prefix = f"lm.{i}."
            lm.encoder.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)},
                                       source=source)
        head = {k: v for k, v in state.items() if not k.startswith("lm.")}
        missing = [name for name, _, _ in self.task_model.param_info() if name not in head]
        if missing:
            raise ValueError(f"{source}: missing head weight(s) {', '.join(missing)}")
        self.task_model.load_state(head, source)

    # ------------------------------------------------------------- batches
    def _inputs(self, samples: Sequence, with_targets: bool) -> Tuple[Inputs, Optional[np.ndarray], Dict[str, Any]]:
        """(task model inputs, targets or None, extra task model arguments) of a batch of samples."""
        inputs = build_inputs(self.language_models, [s.text for s in samples])
        return inputs, self._targets(samples) if with_targets else None, {}

    def _targets(self, samples: Sequence) -> np.ndarray:
        return np.array([s.label for s in samples], np.int32)

    def prepare_training(self) -> None:
        """Allocate the optimizer state of the fine-tuned language models now rather than inside
        the first training step (the trainer calls this before its first batch)."""
        self.task_model.prepare_training([lm.fine_tune for lm in self.language_models])

    def train_step(self, samples: Sequence, learning_rates: Sequence[float], weight_decay: Sequence[float],
                   trainable: Sequence[bool], seed: int, max_grad_norm: float,
                   group: Optional[ProcessGroup] = None) -> Tuple[float, float]:
        """One training step on a batch of samples (see :meth:`TaskModel.train_step`): (loss, gradient
        norm before clipping). With ``group``, every rank passes the same whole batch and computes its
        shard; the gradients are summed across the ranks before the identical update on every rank
        (:func:`multienc.parallel.data_parallel_step`)."""
        inputs, targets, extra = self._inputs(samples, with_targets=True)
        if group is not None:
            loss_and_norm = data_parallel_step(self.task_model, group, self.device, inputs, targets, extra,
                                               learning_rates, weight_decay, trainable, seed, max_grad_norm)
        else:
            loss_and_norm = self.task_model.train_step(inputs, targets, learning_rates, weight_decay, trainable,
                                                       seed=seed, max_grad_norm=max_grad_norm, **extra)
        self.steps_trained += 1
        return loss_and_norm

    def evaluate_batch(self, samples: Sequence, label_map: Optional[Mapping[str, int]] = None
                       ) -> Tuple[float, list]:
        """(loss, predictions) of the model in eval mode on a batch of labelled samples: class ids
        for a classifier, scores for a regressor, tag-id lists for a tagger."""
        inputs, targets, extra = self._inputs(samples, with_targets=True)
        out, _, loss, _ = self.task_model.forward(inputs, targets, **extra)
        return loss, self._predictions(out)

    def _predictions(self, outputs: np.ndarray) -> list:
        raise NotImplementedError

    # ------------------------------------------------------------- predicting
    def _forward(self, sentences: List) -> Tuple[np.ndarray, np.ndarray]:
        """(outputs [B, C], weights [n, B]) in eval mode."""
        out, alpha, _, _ = self.task_model.forward(build_inputs(self.language_models, sentences))
        return out, alpha

    def _outputs(self, sentences: Sequence, batch_size: int) -> Tuple[np.ndarray, np.ndarray]:
        sentences = check_sentences(sentences)
        if not sentences:
            return np.zeros((0, self.num_classes), np.float32), np.zeros((0, len(self.language_models)), np.float32)

        def run(batch: List) -> Tuple[np.ndarray, np.ndarray]:
            out, alpha = self._forward(batch)
            return out, alpha.T

        return in_length_batches(self.language_models, sentences, batch_size, run)

    def _dme(self) -> bool:
        return isinstance(self.encoder, MultiEncoder) and self.encoder.combine_method == "dme"

    def predict_tags(self, sentences: Sequence, label_map: Optional[Mapping[str, int]] = None,
                     batch_size: int = 32) -> Predictions:
        """The seed's prediction dict: ``'Sentences'`` (as given), ``'DME scores'`` (one weight per
        LM per sentence, summing to 1; only for a DME multi-encoder) and ``'Predictions'``
        (label names when ``label_map`` is given)."""
        outputs, weights = self._outputs(sentences, batch_size)
        result = Predictions(self, {"Sentences": list(sentences)})
        if self._dme():
            result["DME scores"] = weights.astype(float).tolist()
        result["Predictions"] = self._labels(outputs, label_map)
        return result

    def _labels(self, outputs: np.ndarray, label_map: Optional[Mapping[str, int]]) -> list:
        raise NotImplementedError

    # ------------------------------------------------------------- checkpoints
    def checkpoint_settings(self) -> Dict[str, Any]:
        """This head's settings as its checkpoint records them (JSON-able); subclasses add theirs
        under ``"options"`` (the keyword arguments :meth:`from_checkpoint_settings` passes on)."""
        settings: Dict[str, Any] = {"num_classes": self.num_classes}
        if isinstance(self.encoder, MultiEncoder):
            settings["multi_encoder"] = self.encoder.checkpoint_settings()
        return settings

    #: the ``options`` this head's checkpoint settings carry (none for the sentence heads)
    OPTIONS_SCHEMA = schema.Obj({}, closed=True)

    @classmethod
    def settings_schema(cls) -> schema.Schema:
        """What :meth:`checkpoint_settings` writes (plus the class name under ``head``)."""
        return schema.Obj({"head": schema.Str(1, 200), "num_classes": schema.Int(1, (1 << 31) - 1),
                           "multi_encoder": MultiEncoder.SETTINGS_SCHEMA, "options": cls.OPTIONS_SCHEMA},
                          required=("head", "num_classes"), closed=True)

    @classmethod
    def from_checkpoint_settings(cls, language_models: List[LanguageModel], settings: Mapping[str, Any]
                                 ) -> "TaskHead":
        """A head of this class over ``language_models`` with :meth:`checkpoint_settings`' settings."""
        if "multi_encoder" in settings:
            encoder: Encoder = MultiEncoder.from_checkpoint_settings(language_models, settings["multi_encoder"])
        else:
            encoder = language_models[0]
        return cls(encoder, settings["num_classes"], **settings.get("options", {}))

    def checkpoint(self, lm_out: Optional[Sequence[np.ndarray]] = None) -> Tuple[Dict[str, str], Dict[str, np.ndarray]]:
        """(metadata, tensors) of this model's checkpoint (see :mod:`multienc.formats.checkpoint`);
        ``lm_out`` as :meth:`state_dict`'s."""
        meta = {"head": json.dumps({"head": type(self).__name__, **self.checkpoint_settings()}),
                "language_models": json.dumps([lm.checkpoint_spec() for lm in self.language_models])}
        if self.label_map:
            meta["label_map"] = json.dumps(self.label_map)
        if self.corpus_name:
            meta["corpus_name"] = self.corpus_name
        return meta, self.state_dict(lm_out)

    def save(self, path: str) -> None:
        """Write the model to ``path`` atomically (safetensors content; the seed's name is ``best-model.pt``)."""
        meta, tensors = self.checkpoint()
        write_checkpoint(path, tensors, meta)

    @classmethod
    def from_checkpoint(cls, path: str) -> "TaskHead":
        """Rebuild a model saved by :meth:`save` (or the trainer) with no network and no other file."""
        model = load_model(path)
        if not isinstance(model, cls):
            raise TypeError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    @staticmethod
    def from_saved(metadata: Mapping[str, str], tensors: Mapping[str, np.ndarray],
                   source: str = "checkpoint") -> "TaskHead":
        """A model from checkpoint metadata and tensors (what :meth:`checkpoint` returns).

        Every field is checked before anything is built (:class:`CheckpointError` naming ``source``
        and the field): the envelope by the file format, the head's settings by its class, each
        language model's spec by :class:`LanguageModel`, and the sizes the settings declare against
        the tensors (``num_classes`` against ``decoder.weight``), so a checkpoint cannot make the
        head allocate what its tensors do not hold."""
        meta = parse_metadata(metadata, source)
        head = meta["head"]
        cls = HEADS.get(head["head"])
        if cls is None:
            raise CheckpointError(source, "head.head", f"unknown head {head['head']!r}; known: {', '.join(HEADS)}")
        checked_field(head, cls.settings_schema(), "head", source)
        specs = meta["language_models"]
        for i, spec in enumerate(specs):
            checked_field(spec, LanguageModel.SPEC_SCHEMA, f"language_models[{i}]", source)
        num_classes = head["num_classes"]
        for name in ("decoder.weight", "decoder.bias"):
            have = tensors.get(name)
            if have is None or have.shape[:1] != (num_classes,):
                raise CheckpointError(source, "head.num_classes",
                                      f"{num_classes} classes, but tensor {name} has shape "
                                      f"{None if have is None else tuple(have.shape)}")
        label_map = meta.get("label_map")
        bad = [k for k, v in (label_map or {}).items() if v >= num_classes]
        if bad:
            raise CheckpointError(source, "label_map", f"label {bad[0]!r} has id {label_map[bad[0]]}, outside the "
                                                       f"{num_classes} classes")
        lms = []
        for i, spec in enumerate(specs):
            prefix = f"lm.{i}."
            state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                lms.append(LanguageModel.from_checkpoint_spec(spec, state, source=source))
            except (ValueError, NotImplementedError) as e:  # ModelConfigError, TokenizerFileError, WeightsError
                raise CheckpointError(source, f"language_models[{i}]", str(e)) from None
        try:
            model = cls.from_checkpoint_settings(lms, head)
            model.load_state_dict(dict(tensors), source=source)
        except ValueError as e:
            raise CheckpointError(source, "head", str(e)) from None
        model.label_map = label_map
        model.corpus_name = meta.get("corpus_name")
        model.steps_trained = 1  # trained weights: the trainer must not re-draw the head
        return model

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, num_classes={self.num_classes},\n encoder={self.encoder!r})"


def load_model(path: str) -> TaskHead:
    """Rebuild the model saved at ``path``, whichever head it has."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    meta, tensors = read_checkpoint(path)
    return TaskHead.from_saved(meta, tensors, source=path)


class TextClassifier(TaskHead):
    """Sentence (or sentence-pair) classification with cross-entropy.

    Args:
        encoder: a :class:`LanguageModel` or :class:`MultiEncoder`.
        num_classes: the number of classes (``corpus.num_classes``).
        device: None (the language models' device) or that same device; another one is a ValueError.
    """

    _task = TASK_CLASSIFY
    _suffix = "-classifier"

    def predict(self, sentences: Sequence, batch_size: int = 32) -> np.ndarray:
        """Class ids (int64) of texts or (text, text) pairs."""
        return self._outputs(sentences, batch_size)[0].argmax(1).astype(np.int64)

    def predict_proba(self, sentences: Sequence, batch_size: int = 32) -> np.ndarray:
        """Class probabilities (softmax of the logits), float32 (B, num_classes)."""
        logits = self._outputs(sentences, batch_size)[0].astype(np.float64)
        e = np.exp(logits - logits.max(1, keepdims=True))
        return (e / e.sum(1, keepdims=True)).astype(np.float32)

    def _predictions(self, outputs: np.ndarray) -> list:
        return outputs.argmax(1).tolist()

    def _labels(self, outputs: np.ndarray, label_map: Optional[Mapping[str, int]]) -> list:
        ids = outputs.argmax(1).tolist() if len(outputs) else []
        if label_map is None:
            return ids
        names = {int(v): k for k, v in label_map.items()}
        return [names.get(i, i) for i in ids]


class TextRegressor(TaskHead):
    """Sentence (or sentence-pair) regression with mean squared error.

    Args:
        encoder: a :class:`LanguageModel` or :class:`MultiEncoder`.
        num_classes: number of target values per sentence (1).
        device: None (the language models' device) or that same device; another one is a ValueError.
    """

    _task = TASK_REGRESS
    _suffix = "-regressor"

    def __init__(self, encoder: Encoder, num_classes: int = 1, device: Optional[str] = None):
        super().__init__(encoder, num_classes, device)

    def predict(self, sentences: Sequence, batch_size: int = 32) -> np.ndarray:
        """Predicted scores, float32 (B,) (or (B, num_classes) for several targets)."""
        out = self._outputs(sentences, batch_size)[0]
        return out[:, 0] if self.num_classes == 1 else out

    def _targets(self, samples: Sequence) -> np.ndarray:
        return np.array([s.label for s in samples], np.float32).reshape(len(samples), -1)

    def _predictions(self, outputs: np.ndarray) -> list:
        return (outputs[:, 0] if self.num_classes == 1 else outputs).tolist()

    def _labels(self, outputs: np.ndarray, label_map: Optional[Mapping[str, int]]) -> list:
        return (outputs[:, 0] if self.num_classes == 1 else outputs).astype(float).tolist()
