"""Task heads: a LanguageModel or MultiEncoder plus a linear decoder and a loss.

    classifier = TextClassifier(encoder=multi_encoder, num_classes=corpus.num_classes)
    classifier.predict_tags(["He can will go"], corpus.label_map)
    # {'Sentences': [...], 'DME scores': [[0.66, 0.34]], 'Predictions': ['not_acceptable']}
    tagger = SequenceTagger(multi_encoder, corpus.num_classes, use_crf=True)
    tagger.predict_tags(["Obama visited Paris"], corpus.label_map)
    # {'Sentences': [...], 'DME scores': [[[0.6, 0.4], ...]], 'Predictions': [[('Obama', 'B-PER'), ...]]}

Each head owns one C model (``multienc._C.Model``) holding the combiner and
decoder weights and computing every LM, the pooling, the combination, the
decoder, the loss, the backward and the optimizer step in one call.
Checkpoints (``save`` / ``from_checkpoint``) are safetensors files holding
every weight plus, in their metadata, each LM's config and tokenizer files and
the head's settings, so a model is rebuilt with no network and no other file.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from multienc import random as me_random
from multienc.device import check_device
from multienc.batching import (build_inputs, linear_init, new_c_model, pool_rows, read_state, word_inputs, write_state,
                                xavier_uniform)
from multienc.encoders import LanguageModel
from multienc.multi_encoder import MultiEncoder

__all__ = ["TextClassifier", "TextRegressor", "SequenceTagger", "Predictions"]

Encoder = Union[LanguageModel, MultiEncoder]


def _check_sentences(sentences: Any) -> List:
    if isinstance(sentences, (str, bytes)) or not isinstance(sentences, Sequence):
        raise TypeError(f"sentences must be a list of texts or (text, text) pairs, got {type(sentences).__name__}")
    out = []
    for i, s in enumerate(sentences):
        if isinstance(s, (tuple, list)) and len(s) == 2 and all(isinstance(x, str) for x in s):
            out.append((s[0], s[1]))
        elif isinstance(s, str):
            out.append(s)
        else:
            raise TypeError(f"sentences[{i}] must be a str or a (str, str) pair, got {type(s).__name__}")
    return out


class Predictions(dict):
    """The dict ``predict_tags`` returns (the seed's keys), which also knows the names of the
    language models whose DME scores it holds (:attr:`lm_names`, in score order) so that
    :func:`multienc.plot.plot_dme_scores` labels its columns with them."""

    def __init__(self, model: "_TaskHead", items: Dict[str, list]):
        super().__init__(items)
        #: each language model's name, in the order of the weights in ``'DME scores'``
        self.lm_names: List[str] = [lm.name for lm in model.language_models]


class _TaskHead:
    """Shared machinery of TextClassifier, TextRegressor and SequenceTagger."""

    _task = 0  # the C model's task: 0 cross-entropy, 1 MSE, 2 CRF
    _suffix = ""

    def __init__(self, encoder: Encoder, num_classes: int, device: Optional[str] = None):
        if not isinstance(encoder, (LanguageModel, MultiEncoder)):
            raise TypeError(f"encoder must be a LanguageModel or a MultiEncoder, got {type(encoder).__name__}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if self._task != 1 and num_classes < 2:
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
        combiner = encoder.head_config() if isinstance(encoder, MultiEncoder) else dict(combine=0)
        combiner.update(self._c_options())
        self._c = new_c_model(self.language_models, combiner, task=self._task, num_classes=self.num_classes)
        self.steps_trained = 0
        self.reset_head(me_random.generator())

    def _prepare_encoder(self) -> None:
        """Check the LMs' pooling before the C model is built (sentence heads: not word-level)."""
        for lm in self.language_models:
            if lm.pooling == "word-level":
                raise ValueError(f"{lm.name}: word-level pooling is for the sequence tagger; "
                                 f"use pooling='cls' or 'mean' for {type(self).__name__}")

    def _c_options(self) -> Dict[str, Any]:
        """Head-specific entries of the C model's config."""
        return {}

    # ------------------------------------------------------------- weights
    def reset_head(self, rng: np.random.Generator) -> None:
        """Draw fresh combiner and decoder weights (torch's default initialisation; the decoder
        weight xavier-uniform as in the seed)."""
        E = self._c.embedding_length
        state: Dict[str, np.ndarray] = {}
        if isinstance(self.encoder, MultiEncoder):
            self.encoder._bind(self)
            self.encoder._state = self.encoder._init_state(rng)
            state.update(self.encoder._state)
        w = xavier_uniform(rng, self.num_classes, E)
        _, b = linear_init(rng, self.num_classes, E)
        state["decoder.weight"], state["decoder.bias"] = w, b
        write_state(self._c, state)

    def _head_state(self) -> Dict[str, np.ndarray]:
        return read_state(self._c)

    def _load_head(self, state: Mapping[str, np.ndarray]) -> None:
        write_state(self._c, state)

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Every weight: ``lm.<i>.<hf name>`` for each LM, then the head's ``combiner.*`` / ``decoder.*``."""
        out = {}
        for i, lm in enumerate(self.language_models):
            for k, v in lm.encoder.state_dict().items():
                out[f"lm.{i}.{k}"] = v
        out.update(self._head_state())
        return out

    def load_state_dict(self, state: Mapping[str, np.ndarray], source: str = "state dict") -> None:
        """Set every weight from :meth:`state_dict`'s layout."""
        for i, lm in enumerate(self.language_models):
            prefix = f"lm.{i}."
            lm.encoder.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)},
                                       source=source)
        head = {k: v for k, v in state.items() if not k.startswith("lm.")}
        missing = [name for name, _, _ in self._c.param_info() if name not in head]
        if missing:
            raise ValueError(f"{source}: missing head weight(s) {', '.join(missing)}")
        write_state(self._c, head, source)

    # ------------------------------------------------------------- running
    def _forward(self, sentences: List, targets: Optional[np.ndarray] = None):
        """(outputs [B, C], weights [n, B], loss | None) in eval mode."""
        out, alpha, loss, _ = self._c.forward(build_inputs(self.language_models, sentences), targets)
        return out, alpha, loss

    def _batches(self, sentences: List, batch_size: int):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        for i in range(0, len(sentences), batch_size):
            yield sentences[i:i + batch_size]

    def _outputs(self, sentences: Sequence, batch_size: int):
        sentences = _check_sentences(sentences)
        if not sentences:
            return np.zeros((0, self.num_classes), np.float32), np.zeros((0, len(self.language_models)), np.float32)
        outs, weights = [], []
        for chunk in self._batches(sentences, batch_size):
            out, alpha, _ = self._forward(chunk)
            outs.append(out)
            weights.append(alpha.T)
        return np.concatenate(outs), np.concatenate(weights)

    def _dme(self) -> bool:
        return isinstance(self.encoder, MultiEncoder) and self.encoder.combine_method == "dme"

    def predict_tags(self, sentences: Sequence, label_map: Optional[Mapping[str, int]] = None,
                     batch_size: int = 32) -> "Predictions":
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
    def save(self, path: str) -> None:
        """Write the model to ``path`` (safetensors content; the seed's name is ``best-model.pt``)."""
        from multienc.checkpoint import save_checkpoint
        save_checkpoint(self, path)

    @classmethod
    def from_checkpoint(cls, path: str) -> "_TaskHead":
        """Rebuild a model saved by :meth:`save` (or the trainer) with no network and no other file."""
        from multienc.checkpoint import load_checkpoint
        model = load_checkpoint(path)
        if not isinstance(model, cls):
            raise TypeError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    def head_settings(self) -> Dict[str, Any]:
        """What the checkpoint records to rebuild this head."""
        enc = self.encoder
        s: Dict[str, Any] = {"head": type(self).__name__, "num_classes": self.num_classes}
        if isinstance(enc, MultiEncoder):
            s["multi_encoder"] = dict(combine_method=enc.combine_method if enc.num_lms > 1 else "concat",
                                      use_layer_norm=enc.use_layer_norm,
                                      alternate_freezing_prob=enc.alternate_freezing_prob,
                                      combine_dropout=enc.combine_dropout)
        return s

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, num_classes={self.num_classes},\n encoder={self.encoder!r})"


class TextClassifier(_TaskHead):
    """Sentence (or sentence-pair) classification with cross-entropy.

    Args:
        encoder: a :class:`LanguageModel` or :class:`MultiEncoder`.
        num_classes: the number of classes (``corpus.num_classes``).
        device: None (the language models' device) or that same device; another one is a ValueError.
    """

    _task = 0
    _suffix = "-classifier"

    def predict(self, sentences: Sequence, batch_size: int = 32) -> np.ndarray:
        """Class ids (int64) of texts or (text, text) pairs."""
        return self._outputs(sentences, batch_size)[0].argmax(1).astype(np.int64)

    def predict_proba(self, sentences: Sequence, batch_size: int = 32) -> np.ndarray:
        """Class probabilities (softmax of the logits), float32 (B, num_classes)."""
        logits = self._outputs(sentences, batch_size)[0].astype(np.float64)
        e = np.exp(logits - logits.max(1, keepdims=True))
        return (e / e.sum(1, keepdims=True)).astype(np.float32)

    def _labels(self, outputs: np.ndarray, label_map: Optional[Mapping[str, int]]) -> list:
        ids = outputs.argmax(1).tolist() if len(outputs) else []
        if label_map is None:
            return ids
        names = {int(v): k for k, v in label_map.items()}
        return [names.get(i, i) for i in ids]


class TextRegressor(_TaskHead):
    """Sentence (or sentence-pair) regression with mean squared error.

    Args:
        encoder: a :class:`LanguageModel` or :class:`MultiEncoder`.
        num_classes: number of target values per sentence (1).
        device: None (the language models' device) or that same device; another one is a ValueError.
    """

    _task = 1
    _suffix = "-regressor"

    def __init__(self, encoder: Encoder, num_classes: int = 1, device: Optional[str] = None):
        super().__init__(encoder, num_classes, device)

    def predict(self, sentences: Sequence, batch_size: int = 32) -> np.ndarray:
        """Predicted scores, float32 (B,) (or (B, num_classes) for several targets)."""
        out = self._outputs(sentences, batch_size)[0]
        return out[:, 0] if self.num_classes == 1 else out

    def _labels(self, outputs: np.ndarray, label_map: Optional[Mapping[str, int]]) -> list:
        return (outputs[:, 0] if self.num_classes == 1 else outputs).astype(float).tolist()


def _check_words(sentences: Any) -> List[List[str]]:
    """Sentences for tagging as word lists: a str is split on whitespace, a list of str is taken as is."""
    if isinstance(sentences, (str, bytes)) or not isinstance(sentences, Sequence):
        raise TypeError(f"sentences must be a list of texts or of word lists, got {type(sentences).__name__}")
    out = []
    for i, s in enumerate(sentences):
        if isinstance(s, str):
            words = s.split()
        elif isinstance(s, (list, tuple)) and all(isinstance(w, str) for w in s):
            words = list(s)
        else:
            raise TypeError(f"sentences[{i}] must be a str or a list of words (str), got {type(s).__name__}")
        if not words:
            raise ValueError(f"sentences[{i}] has no tokens; a tagger needs at least one word")
        empty = [j for j, w in enumerate(words) if not w.strip()]
        if empty:
            raise ValueError(f"sentences[{i}]: word {empty[0]} is empty or blank")
        out.append(words)
    return out


class SequenceTagger(_TaskHead):
    """Sequence labeling (e.g. NER): one tag per word, from one or several LMs.

    Every LM is switched to word-level pooling. Words are the corpus tokens (a text is split on
    whitespace); each LM tokenizes them pre-split and maps its sub-words to the words through the
    tokenizer's word ids (as HF ``tokenizers`` with ``is_split_into_words=True``), and a word's
    vector is its first sub-word's hidden state, or as ``subtoken_pooling`` says. A
    :class:`MultiEncoder` combines per word (DME: one score per LM per word). A linear decoder
    gives each word's tag scores; the loss is cross-entropy averaged over the batch's words, or
    with ``use_crf=True`` a linear-chain CRF (pytorch-crf's parameters and semantics: its negative
    log-likelihood summed over sentences, divided by the number of words) with Viterbi decoding.

    Words past an LM's maximum length (in sub-words) are not seen by the model: a warning says
    so, they get the tag ``'O'`` and are not trained on.

    Args:
        encoder: a :class:`LanguageModel` or :class:`MultiEncoder`.
        num_classes: the number of tags (``corpus.num_classes``). The seed's order
            ``SequenceTagger(num_classes, encoder)`` works too.
        use_crf: a CRF layer on the decoder's scores.
        subtoken_pooling: ``'first'`` (the seed's), ``'last'``, ``'mean'`` or ``'first_last'`` (the
            first and last sub-word vectors side by side, twice as wide), as in Flair.
        device: None (the language models' device) or that same device; another one is a ValueError.
    """

    _suffix = "-sequence-tagger"

    def __init__(self, encoder: Union[Encoder, int], num_classes: Union[int, Encoder], use_crf: bool = False,
                 subtoken_pooling: str = "first", device: Optional[str] = None):
        if isinstance(num_classes, (LanguageModel, MultiEncoder)) and not isinstance(encoder, (LanguageModel,
                                                                                             MultiEncoder)):
            encoder, num_classes = num_classes, encoder  # the seed's SequenceTagger(num_classes, encoder)
        self._rows = pool_rows(subtoken_pooling)
        self.use_crf = bool(use_crf)
        self.subtoken_pooling = subtoken_pooling
        self._task = 2 if self.use_crf else 0
        self.label_map: Optional[Dict[str, int]] = None
        super().__init__(encoder, num_classes, device)

    def _prepare_encoder(self) -> None:
        for lm in self.language_models:
            lm.change_lm_pooling("word-level")
        if isinstance(self.encoder, MultiEncoder):
            self.encoder.set_pool_rows(self._rows)

    def _c_options(self) -> Dict[str, Any]:
        return {"pool_rows": self._rows}

    def reset_head(self, rng: np.random.Generator) -> None:
        """Fresh combiner and decoder weights, and the CRF's transitions drawn from U(-0.1, 0.1)
        as pytorch-crf initialises them."""
        super().reset_head(rng)
        if self.use_crf:
            C = self.num_classes
            write_state(self._c, {"crf.transitions": rng.uniform(-0.1, 0.1, (C, C)),
                                  "crf.start_transitions": rng.uniform(-0.1, 0.1, C),
                                  "crf.end_transitions": rng.uniform(-0.1, 0.1, C)})

    # ------------------------------------------------------------- running
    def _outside_id(self, label_map: Optional[Mapping[str, int]]) -> int:
        """The tag of words the model cannot see: ``'O'`` of the label map (id 0 without one)."""
        label_map = label_map or self.label_map
        return int(label_map["O"]) if label_map and "O" in label_map else 0

    def _tagging_inputs(self, words: List[List[str]], tags: Optional[Sequence[Sequence[int]]] = None):
        """(C model inputs, lengths [B], targets [B * K] (-1 past each length) or None) of a batch."""
        inputs, lengths = word_inputs(self.language_models, words, self.subtoken_pooling)
        if tags is None:
            return inputs, lengths, None
        K = inputs[0][3].shape[1] // self._rows
        targets = np.full((len(words), K), -1, np.int32)
        for b, (t, n) in enumerate(zip(tags, lengths)):
            targets[b, :n] = t[:n]
        return inputs, lengths, targets.reshape(-1)

    def _tag_batch(self, words: List[List[str]], tags: Optional[Sequence[Sequence[int]]] = None,
                   label_map: Optional[Mapping[str, int]] = None):
        """(tag ids per sentence (one per word), DME / mean weights [B, K, n], lengths, loss | None)."""
        inputs, lengths, targets = self._tagging_inputs(words, tags)
        B = len(words)
        K = inputs[0][3].shape[1] // self._rows
        res = self._c.forward(inputs, targets, lengths=lengths, decode=self.use_crf)
        out, alpha, loss = res[0], res[1], res[2]
        ids = res[4] if self.use_crf else out.reshape(B, K, self.num_classes).argmax(-1)
        outside = self._outside_id(label_map)
        pred = [ids[b, :n].tolist() + [outside] * (len(words[b]) - n) for b, n in enumerate(lengths)]
        weights = alpha.reshape(-1, B, K).transpose(1, 2, 0)
        return pred, weights, lengths, loss

    def predict(self, sentences: Sequence, batch_size: int = 32) -> List[List[int]]:
        """Tag ids, one list per sentence with one id per word."""
        words = _check_words(sentences)
        return [p for chunk in self._batches(words, batch_size) for p in self._tag_batch(chunk)[0]]

    def predict_tags(self, sentences: Sequence, label_map: Optional[Mapping[str, int]] = None,
                     batch_size: int = 32) -> "Predictions":
        """The seed's prediction dict: ``'Sentences'`` (as given), ``'DME scores'`` (DME multi-encoder
        only: per sentence, per word one weight per LM summing to 1; None for a word past the
        maximum length) and ``'Predictions'``: per sentence the (word, tag) pairs, tags as names
        when ``label_map`` (or the trainer's label map) is known. Texts are split on whitespace."""
        words = _check_words(sentences)
        names = {int(v): k for k, v in (label_map or self.label_map or {}).items()}
        preds, scores = [], []
        for chunk in self._batches(words, batch_size):
            pred, weights, lengths, _ = self._tag_batch(chunk, label_map=label_map)
            preds += [[(w, names.get(t, t)) for w, t in zip(ws, p)] for ws, p in zip(chunk, pred)]
            scores += [weights[b, :n].astype(float).tolist() + [None] * (len(chunk[b]) - n)
                       for b, n in enumerate(lengths)]
        result = Predictions(self, {"Sentences": list(sentences)})
        if self._dme():
            result["DME scores"] = scores
        result["Predictions"] = preds
        return result

    def head_settings(self) -> Dict[str, Any]:
        s = super().head_settings()
        s["options"] = {"use_crf": self.use_crf, "subtoken_pooling": self.subtoken_pooling}
        return s
