"""SequenceTagger: one tag per word (e.g. NER), from one or several language models.

    tagger = SequenceTagger(multi_encoder, corpus.num_classes, use_crf=True)
    tagger.predict_tags(["Obama visited Paris"], corpus.label_map)
    # {'Sentences': [...], 'DME scores': [[[0.6, 0.4], ...]], 'Predictions': [[('Obama', 'B-PER'), ...]]}
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from multienc.engine.task_model import TASK_CLASSIFY, TASK_CRF, Inputs
from multienc.formats import schema
from multienc.models.heads import Encoder, Predictions, TaskHead
from multienc.models.inputs import SUBTOKEN_POOLINGS, pool_rows, subword_length_batches, word_inputs
from multienc.models.language_model import LanguageModel
from multienc.models.multi_encoder import MultiEncoder

__all__ = ["SequenceTagger"]


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


class SequenceTagger(TaskHead):
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
        self._task = TASK_CRF if self.use_crf else TASK_CLASSIFY
        super().__init__(encoder, num_classes, device)

    def _prepare_encoder(self) -> None:
        for lm in self.language_models:
            lm.change_lm_pooling("word-level")
        if isinstance(self.encoder, MultiEncoder):
            self.encoder.set_pool_rows(self._rows)

    def _task_model_options(self) -> Dict[str, Any]:
        return {"pool_rows": self._rows}

    def reset_head(self, rng: np.random.Generator) -> None:
        """Fresh combiner and decoder weights, and the CRF's transitions drawn from U(-0.1, 0.1)
        as pytorch-crf initialises them."""
        super().reset_head(rng)
        if self.use_crf:
            C = self.num_classes
            self.task_model.load_state({"crf.transitions": rng.uniform(-0.1, 0.1, (C, C)),
                                        "crf.start_transitions": rng.uniform(-0.1, 0.1, C),
                                        "crf.end_transitions": rng.uniform(-0.1, 0.1, C)})

    # ------------------------------------------------------------- running
    def _outside_id(self, label_map: Optional[Mapping[str, int]]) -> int:
        """The tag of words the model cannot see: ``'O'`` of the label map (id 0 without one)."""
        label_map = label_map or self.label_map
        return int(label_map["O"]) if label_map and "O" in label_map else 0

    def _word_inputs(self, words: List[List[str]], tags: Optional[Sequence[Sequence[int]]] = None
                     ) -> Tuple[Inputs, np.ndarray, Optional[np.ndarray]]:
        """(task model inputs, lengths [B], targets [B * K] (-1 past each length) or None) of a batch."""
        inputs, lengths = word_inputs(self.language_models, words, self.subtoken_pooling)
        if tags is None:
            return inputs, lengths, None
        K = inputs[0][3].shape[1] // self._rows
        targets = np.full((len(words), K), -1, np.int32)
        for b, (t, n) in enumerate(zip(tags, lengths)):
            targets[b, :n] = t[:n]
        return inputs, lengths, targets.reshape(-1)

    def _inputs(self, samples: Sequence, with_targets: bool) -> Tuple[Inputs, Optional[np.ndarray], Dict[str, Any]]:
        inputs, lengths, targets = self._word_inputs([s.tokens for s in samples],
                                                     [s.label for s in samples] if with_targets else None)
        return inputs, targets, {"lengths": lengths}

    def evaluate_batch(self, samples: Sequence, label_map: Optional[Mapping[str, int]] = None
                       ) -> Tuple[float, list]:
        tags, _, _, loss = self._tag_batch([s.tokens for s in samples], [s.label for s in samples],
                                           label_map=label_map)
        return loss, tags

    def _tag_batch(self, words: List[List[str]], tags: Optional[Sequence[Sequence[int]]] = None,
                   label_map: Optional[Mapping[str, int]] = None):
        """(tag ids per sentence (one per word), DME / mean weights [B, K, n], lengths, loss | None)."""
        inputs, lengths, targets = self._word_inputs(words, tags)
        B = len(words)
        K = inputs[0][3].shape[1] // self._rows
        res = self.task_model.forward(inputs, targets, lengths=lengths, decode=self.use_crf)
        out, alpha, loss = res[0], res[1], res[2]
        ids = res[4] if self.use_crf else out.reshape(B, K, self.num_classes).argmax(-1)
        outside = self._outside_id(label_map)
        pred = [ids[b, :n].tolist() + [outside] * (len(words[b]) - n) for b, n in enumerate(lengths)]
        weights = alpha.reshape(-1, B, K).transpose(1, 2, 0)
        return pred, weights, lengths, loss

    def predict(self, sentences: Sequence, batch_size: int = 32) -> List[List[int]]:
        """Tag ids, one list per sentence with one id per word."""
        words = _check_words(sentences)
        preds: List[List[int]] = [[] for _ in words]
        for batch in subword_length_batches(self.language_models, words, batch_size, words=True):
            for i, p in zip(batch, self._tag_batch([words[i] for i in batch])[0]):
                preds[i] = p
        return preds

    def predict_tags(self, sentences: Sequence, label_map: Optional[Mapping[str, int]] = None,
                     batch_size: int = 32) -> Predictions:
        """The seed's prediction dict: ``'Sentences'`` (as given), ``'DME scores'`` (DME multi-encoder
        only: per sentence, per word one weight per LM summing to 1; None for a word past the
        maximum length) and ``'Predictions'``: per sentence the (word, tag) pairs, tags as names
        when ``label_map`` (or the trainer's label map) is known. Texts are split on whitespace."""
        words = _check_words(sentences)
        names = {int(v): k for k, v in (label_map or self.label_map or {}).items()}
        preds: List[list] = [[] for _ in words]
        scores: List[list] = [[] for _ in words]
        for batch in subword_length_batches(self.language_models, words, batch_size, words=True):
            pred, weights, lengths, _ = self._tag_batch([words[i] for i in batch], label_map=label_map)
            for b, i in enumerate(batch):
                preds[i] = [(w, names.get(t, t)) for w, t in zip(words[i], pred[b])]
                scores[i] = weights[b, :lengths[b]].astype(float).tolist() + [None] * (len(words[i]) - lengths[b])
        result = Predictions(self, {"Sentences": list(sentences)})
        if self._dme():
            result["DME scores"] = scores
        result["Predictions"] = preds
        return result

    OPTIONS_SCHEMA = schema.Obj({"use_crf": schema.Bool(), "subtoken_pooling": schema.Const(*SUBTOKEN_POOLINGS)},
                                closed=True)

    def checkpoint_settings(self) -> Dict[str, Any]:
        settings = super().checkpoint_settings()
        settings["options"] = {"use_crf": self.use_crf, "subtoken_pooling": self.subtoken_pooling}
        return settings
