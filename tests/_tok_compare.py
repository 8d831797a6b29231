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
