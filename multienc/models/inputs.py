"""Turning sentences into the task model's inputs.

For every LM of a model: tokenize the batch (texts or (a, b) pairs, padded to
the longest, truncated to the LM's maximum) and build the pooling weights that
select each sentence's vector from the LM's hidden states. For sequence
labeling (:func:`word_inputs`) the words are tokenized pre-split, each LM's
sub-words are mapped to the words through the tokenizer's ``word_ids`` and the
weights make one vector per word. Shared by the combiner, the task heads and
the trainer.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from multienc.engine.task_model import Inputs

#: sub-word pooling of a word (Flair's ``subtoken_pooling``) -> pooled rows per word
SUBTOKEN_POOLINGS = {"first": 1, "last": 1, "mean": 1, "first_last": 2}


def chunked(items: List, batch_size: int) -> Iterator[List]:
    """``items`` in consecutive batches of ``batch_size`` (ValueError unless a positive int)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    for i in range(0, len(items), batch_size):
        yield items[i:i + batch_size]


def length_batches(lengths: Sequence[int], batch_size: int) -> List[List[int]]:
    """Indices of the items in batches of ``batch_size``, longest first (ties in input order), as
    Flair's ``predict`` orders sentences: a batch is padded to its longest member, so grouping
    similar lengths saves most of the padding's work. The caller puts the results back in input
    order. ValueError unless ``batch_size`` is a positive int."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return list(chunked(order, batch_size))


#: sentences tokenized at a time to measure their lengths (bounds the padded arrays held at once)
_LENGTH_CHUNK = 1024


def subword_length_batches(language_models: Sequence, sentences: Sequence, batch_size: int,
                           words: bool = False) -> List[List[int]]:
    """:func:`length_batches` of texts or (text, text) pairs (``words``: word lists, tokenized as
    :func:`word_inputs` does) by their length in sub-words: each sentence's longest tokenization
    among ``language_models`` (truncated as its batch will be). Characters or words would be a
    rough proxy: on the CoLA dev split batches of 32 by characters pad a fifth of every LM's rows,
    by sub-words about a twentieth. Tokenizes the sentences (a small cost beside their forward
    passes) in chunks, so a long list never holds all its tokens at once."""
    lengths = np.zeros(len(sentences), np.int64)
    for lo in range(0, len(sentences), _LENGTH_CHUNK):
        part, chunk = lengths[lo:lo + _LENGTH_CHUNK], sentences[lo:lo + _LENGTH_CHUNK]
        for lm in language_models:
            enc = encode_words(lm, chunk) if words else lm.tokenize(chunk)
            np.maximum(part, enc["attention_mask"].sum(1), out=part)
    return length_batches(lengths.tolist(), batch_size)


def in_length_batches(language_models: Sequence, sentences: Sequence, batch_size: int,
                      run: Callable[[List], Tuple[np.ndarray, ...]]) -> Tuple[np.ndarray, ...]:
    """``run`` over the :func:`subword_length_batches` of ``sentences`` (not empty; each call gets
    one batch's sentences and returns arrays with a row per sentence), each array's rows put
    back in input order: the forward passes of ``predict`` and ``embed``, whose memory is that of
    ``batch_size`` sentences however many are given."""
    batches = subword_length_batches(language_models, sentences, batch_size)
    parts = [run([sentences[i] for i in batch]) for batch in batches]
    back = np.argsort(np.concatenate(batches))
    return tuple(np.concatenate(column)[back] for column in zip(*parts))


def check_sentences(sentences: Any) -> List:
    """``sentences`` as a list of texts and (text, text) pairs (2-item lists become tuples);
    TypeError naming the first item that is neither."""
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


def sentence_pool_weights(attention_mask: np.ndarray, pooling: str, cls_position: int) -> np.ndarray:
    """Pooling as weights over positions, float32 (B, 1, T).

    ``'cls'``: 1 at the classifier token (position 0, or the last real token when the
    tokenizer puts it last). ``'mean'``: 1/n over the n real tokens (padding excluded).
    """
    mask = np.asarray(attention_mask)
    B, T = mask.shape
    w = np.zeros((B, 1, T), np.float32)
    if pooling == "cls":
        pos = np.zeros(B, np.int64) if cls_position == 0 else np.maximum(mask.sum(1), 1) - 1
        w[np.arange(B), 0, pos] = 1.0
    elif pooling == "mean":
        counts = np.maximum(mask.sum(1, keepdims=True), 1)
        w[:, 0, :] = mask / counts
    else:
        raise ValueError(f"sentence pooling must be 'cls' or 'mean', got {pooling!r}")
    return w


def lm_inputs(lm, sentences: Sequence) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray], np.ndarray]:
    """(input_ids, attention_mask, token_type_ids or None, pool weights) of one LM for a batch."""
    enc = lm.tokenize(sentences)
    mask = enc["attention_mask"]
    types = enc["token_type_ids"] if lm.encoder.uses_token_types else None
    return (enc["input_ids"].astype(np.int32), mask.astype(np.int32),
            None if types is None else types.astype(np.int32),
            sentence_pool_weights(mask, lm.pooling, lm.cls_position))


def build_inputs(language_models: Sequence, sentences: Sequence) -> Inputs:
    """The C model's inputs for a batch: one tuple per LM."""
    return [lm_inputs(lm, sentences) for lm in language_models]


def pool_rows(subtoken_pooling: str) -> int:
    """Pooled rows per word of a ``subtoken_pooling`` (ValueError for an unknown one)."""
    if subtoken_pooling not in SUBTOKEN_POOLINGS:
        raise ValueError(f"subtoken_pooling must be one of {', '.join(map(repr, SUBTOKEN_POOLINGS))}, "
                         f"got {subtoken_pooling!r}")
    return SUBTOKEN_POOLINGS[subtoken_pooling]


def word_pool_weights(word_ids: np.ndarray, lengths: Sequence[int], K: int, subtoken_pooling: str) -> np.ndarray:
    """Word-level pooling as weights over positions, float32 (B, K * rows, T).

    ``word_ids`` (B, T): the word index of each sub-word (-1 for special tokens and padding),
    as the tokenizer gives them for pre-split words (a word's sub-words are consecutive).
    Words ``w < lengths[b]`` get weights; rows of other words stay zero. ``'first'`` / ``'last'``:
    1 at the word's first / last sub-word; ``'mean'``: 1/n over its n sub-words;
    ``'first_last'``: two rows per word (2w: first, 2w + 1: last), which the C model joins
    into one 2H-wide vector. A word without sub-words (e.g. only characters the tokenizer
    drops) keeps all-zero weights: its vector is zero.
    """
    rows = pool_rows(subtoken_pooling)
    ids = np.asarray(word_ids, np.int64)
    B, T = ids.shape
    weights = np.zeros((B, K * rows, T), np.float32)
    limit = np.asarray(lengths, np.int64)[:, None]
    keep = (ids >= 0) & (ids < limit)
    prev = np.concatenate([np.full((B, 1), -1), ids[:, :-1]], 1)
    nxt = np.concatenate([ids[:, 1:], np.full((B, 1), -1)], 1)
    first, last = keep & (ids != prev), keep & (ids != nxt)
    if subtoken_pooling == "mean":
        b, t = np.nonzero(keep)
        counts = np.zeros((B, K))
        np.add.at(counts, (b, ids[b, t]), 1.0)
        weights[b, ids[b, t], t] = 1.0 / counts[b, ids[b, t]]
        return weights
    for mask, offset in {"first": [(first, 0)], "last": [(last, 0)],
                         "first_last": [(first, 0), (last, 1)]}[subtoken_pooling]:
        b, t = np.nonzero(mask)
        weights[b, ids[b, t] * rows + offset, t] = 1.0
    return weights


def _covered_words(lm, words: Sequence[Sequence[str]], enc: Dict[str, np.ndarray]) -> np.ndarray:
    """How many leading words of each sentence the LM sees completely after truncation."""
    ids = enc["word_ids"]
    real = enc["attention_mask"].sum(1)
    covered = np.array([len(w) for w in words], np.int64)
    for b in np.nonzero(real >= lm.max_length)[0]:  # maybe truncated
        present = ids[b][ids[b] >= 0]
        if len(present) == 0:
            covered[b] = 0
            continue
        last = int(present[-1])
        whole = len(lm.word_tokenizer.encode([words[b][last]], add_special_tokens=False,
                                             is_split_into_words=True).ids)
        if last + 1 < len(words[b]) or int((present == last).sum()) < whole:
            covered[b] = last + 1 if int((present == last).sum()) == whole else last
    return covered


def encode_words(lm, words: Sequence[Sequence[str]]) -> Dict[str, np.ndarray]:
    """``lm``'s padded encoding of pre-split sentences (its :attr:`word_tokenizer`, truncated to its
    maximum length)."""
    return lm.word_tokenizer.encode_batch([list(w) for w in words], max_length=lm.max_length,
                                          is_split_into_words=True)


def word_inputs(language_models: Sequence, words: Sequence[Sequence[str]],
                subtoken_pooling: str = "first") -> Tuple[Inputs, np.ndarray]:
    """The C model's inputs for a batch of pre-split sentences, and each sentence's length.

    Each LM tokenizes the words with ``is_split_into_words=True`` (its :attr:`word_tokenizer`)
    truncated to its maximum length; the pooling weights (:func:`word_pool_weights`) give
    K = max length rows per sentence. A sentence's length (int32) is the number of leading
    words that every LM sees whole; words past it (cut off by a maximum length) get no row
    and a warning, and the tagger tags them ``'O'``.
    """
    if not words:
        raise ValueError("empty batch of sentences")
    encs = [encode_words(lm, words) for lm in language_models]
    lengths = np.array([len(w) for w in words], np.int64)
    for lm, enc in zip(language_models, encs):
        covered = _covered_words(lm, words, enc)
        cut = int((lengths - np.minimum(lengths, covered)).sum())
        if cut:
            warnings.warn(f"{lm.name}: {cut} word(s) of this batch lie past the model's maximum length of "
                          f"{lm.max_length} sub-words; they are tagged 'O' and not trained on", stacklevel=3)
        lengths = np.minimum(lengths, covered)
    K = max(1, int(lengths.max()))
    inputs = []
    for lm, enc in zip(language_models, encs):
        mask = enc["attention_mask"].astype(np.int32)
        types = enc["token_type_ids"].astype(np.int32) if lm.encoder.uses_token_types else None
        inputs.append((enc["input_ids"].astype(np.int32), mask, types,
                       word_pool_weights(enc["word_ids"], lengths, K, subtoken_pooling)))
    return inputs, lengths.astype(np.int32)
