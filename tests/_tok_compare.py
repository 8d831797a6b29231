"""Comparison of multienc encodings with HF tokenizers encodings (shared by the tokenizer tests)."""
from __future__ import annotations

from typing import Sequence

import pytest

from multienc.engine.tokenization import Tokenizer


def assert_batch_matches(ours: dict, hf_encs, inputs: Sequence, label: str) -> int:
    """Compare encode_batch arrays with HF encodings row by row; returns the number compared."""
    bad = []
    n_rows = len(hf_encs)
    assert ours["input_ids"].shape[0] == n_rows
    lengths = ours["attention_mask"].sum(axis=1)
    width = max((len(e.ids) for e in hf_encs), default=0)
    assert ours["input_ids"].shape[1] == width, f"{label}: padded length differs"
    for i, e in enumerate(hf_encs):
        n = len(e.ids)
        if (lengths[i] != n or ours["input_ids"][i, :n].tolist() != e.ids
                or ours["token_type_ids"][i, :n].tolist() != e.type_ids
                or [tuple(o) for o in ours["offset_mapping"][i, :n].tolist()] != e.offsets
                or ours["word_ids"][i, :n].tolist() != [-1 if w is None else w for w in e.word_ids]
                or ours["special_tokens_mask"][i, :n].tolist() != e.special_tokens_mask):
            bad.append(i)
    if bad:
        i = bad[0]
        e = hf_encs[i]
        n = len(e.ids)
        pytest.fail(f"{label}: {len(bad)} of {n_rows} inputs differ from HF; first: input {i} {inputs[i]!r}\n"
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


def assert_truncation_matches(ours: Tokenizer, hf, max_length: int) -> None:
    """encode_batch(max_length=...) == HF with longest_first truncation and padding to the longest, on
    stress texts and pairs (inputs whose special tokens leave no room are left out, as ours refuses them)."""
    import _tok_corpora as C

    texts = C.stress_texts(200, seed=5) + ["a b c d e f g h i j k l m n o p", ""]
    pairs = C.stress_pairs(150, seed=6) + [("a b c d e f g", "h"), ("x", "a b c d e f g h i")]
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
