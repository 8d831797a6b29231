"""Comparison of multienc encodings with HF tokenizers encodings (shared by the tokenizer tests)."""
from __future__ import annotations

import itertools
import threading
from typing import Optional, Sequence

import numpy as np
import pytest

from multienc.engine.tokenization import Tokenizer


def _flat(rows: list, pairs: bool = False) -> np.ndarray:
    """The rows (lists of ints, or of int pairs when pairs) concatenated into one int64 array."""
    items = itertools.chain.from_iterable(rows)
    if pairs:
        return np.fromiter(itertools.chain.from_iterable(items), dtype=np.int64).reshape(-1, 2)
    return np.fromiter(items, dtype=np.int64)


def assert_concurrent_calls_agree(ours: Tokenizer, texts: Sequence[str]) -> None:
    """4 threads calling encode and encode_batch on one tokenizer get the single-threaded results."""
    expected = [ours.encode(t).ids for t in texts]
    batch_expected = ours.encode_batch(texts)["input_ids"].tolist()
    errors = []

    def work():
        try:
            for _ in range(3):
                assert [ours.encode(t).ids for t in texts] == expected
                assert ours.encode_batch(texts)["input_ids"].tolist() == batch_expected
        except BaseException as e:  # any failure in a thread, reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, f"{len(errors)} of 4 threads failed: {errors!r}"


def assert_batch_matches(ours: dict, hf_encs, inputs: Sequence, label: str) -> int:
    """Compare encode_batch arrays with HF encodings field by field (ids, type ids, offsets, word
    ids, special-token masks, lengths); returns the number of inputs compared."""
    n_rows = len(hf_encs)
    assert ours["input_ids"].shape[0] == n_rows
    hf = {"input_ids": [e.ids for e in hf_encs], "token_type_ids": [e.type_ids for e in hf_encs],
          "offset_mapping": [e.offsets for e in hf_encs],
          "word_ids": [[-1 if w is None else w for w in e.word_ids] for e in hf_encs],
          "special_tokens_mask": [e.special_tokens_mask for e in hf_encs]}
    hf_len = np.array([len(r) for r in hf["input_ids"]], dtype=np.int64)
    width = int(hf_len.max(initial=0))
    assert ours["input_ids"].shape[1] == width, f"{label}: padded length differs"
    lengths = ours["attention_mask"].sum(axis=1)
    bad = lengths != hf_len
    if not bad.any():
        # every row's first len tokens, row after row, on both sides (padding is on the right)
        valid = np.arange(width)[None, :] < hf_len[:, None]
        row_of = np.repeat(np.arange(n_rows), hf_len)
        for key, rows in hf.items():
            theirs = _flat(rows, pairs=key == "offset_mapping")
            mine = ours[key][valid].astype(np.int64)
            differ = (mine != theirs).reshape(len(row_of), -1).any(axis=1)
            bad[row_of[differ]] = True
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        e = hf_encs[i]
        pytest.fail(f"{label}: {int(bad.sum())} of {n_rows} inputs differ from HF; first: input {i} {inputs[i]!r}\n"
                    f"  HF   ids {e.ids}\n  ours ids {ours['input_ids'][i, :lengths[i]].tolist()}\n"
                    f"  HF   offsets {e.offsets}\n  ours offsets {ours['offset_mapping'][i, :lengths[i]].tolist()}\n"
                    f"  HF   words {e.word_ids}\n  ours words {ours['word_ids'][i, :lengths[i]].tolist()}")
    return n_rows


def assert_encode_matches(ours: Tokenizer, hf, inputs: Sequence, label: str, **kw) -> None:
    """Compare the single-input path (encode) including token strings."""
    for x in inputs:
        a, b = (ours.encode(x[0], x[1], **kw), hf.encode(x[0], x[1], **_hf_kw(kw))) if isinstance(x, tuple) \
            else (ours.encode(x, **kw), hf.encode(x, **_hf_kw(kw)))
        assert (a.ids, a.type_ids, a.offsets, a.word_ids, a.tokens, a.special_tokens_mask, a.sequence_ids) == \
               (b.ids, b.type_ids, b.offsets, b.word_ids, b.tokens, b.special_tokens_mask, b.sequence_ids), \
               f"{label}: {x!r}"


def _hf_kw(kw: dict) -> dict:
    out = dict(kw)
    if out.pop("is_split_into_words", False):
        out["is_pretokenized"] = True
    return out


def assert_truncation_matches(ours: Tokenizer, hf, max_length: int, cut: Optional[int] = None) -> None:
    """encode_batch(max_length=...) == HF with longest_first truncation and padding to the longest, on
    stress texts and pairs (inputs whose special tokens leave no room are left out, as ours refuses them).
    ``cut``: each stress text cut to that many characters (HF builds every combination of two segments'
    overflowing pieces: long pairs in a small vocabulary take gigabytes)."""
    import _tok_corpora as C

    texts = [t[:cut] for t in C.stress_texts(200, seed=5)] + ["a b c d e f g h i j k l m n o p", ""]
    pairs = [(a[:cut], b[:cut]) for a, b in C.stress_pairs(150, seed=6)] + \
        [("a b c d e f g", "h"), ("x", "a b c d e f g h i")]
    pad_id = ours.pad_token_id
    for inputs in (texts, pairs):
        if max_length < ours.num_special_tokens_to_add(isinstance(inputs[0], tuple)):
            continue
        hf.enable_truncation(max_length=max_length, strategy="longest_first")
        hf.enable_padding(pad_id=pad_id)
        try:
            ref = hf.encode_batch(inputs)
        finally:
            hf.no_truncation()
            hf.no_padding()
        got = ours.encode_batch(inputs, max_length=max_length)
        assert got["input_ids"].tolist() == [e.ids for e in ref]
        assert got["attention_mask"].tolist() == [e.attention_mask for e in ref]
        assert got["token_type_ids"].tolist() == [e.type_ids for e in ref]
        assert got["special_tokens_mask"].tolist() == [e.special_tokens_mask for e in ref]
        assert got["offset_mapping"].tolist() == [[list(o) for o in e.offsets] for e in ref]
        assert got["word_ids"].tolist() == [[-1 if x is None else x for x in e.word_ids] for e in ref]
        assert got["input_ids"].shape == (len(inputs), len(ref[0].ids))


def assert_json_roundtrip(hf, folder, texts: Sequence[str]) -> None:
    """HF's pipeline ``hf`` saved as tokenizer.json in ``folder`` loads identically in both
    (``from_file``): the same encodings of ``texts``."""
    import os

    import tokenizers

    path = os.path.join(str(folder), "tokenizer.json")
    hf.save(path)
    ours = Tokenizer.from_file(path)
    ref = tokenizers.Tokenizer.from_file(path)
    assert_batch_matches(ours.encode_batch(texts, truncation=False), ref.encode_batch(texts), texts, "from_file")
