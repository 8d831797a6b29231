"""Every Unicode code point through both pipelines, against HF tokenizers run live.

This checks the generated Unicode tables (tools/gen_unicode_tables.py) and the version each
property follows: control/punctuation/Mn categories, NFD, lowercase, whitespace, CJK ranges
(WordPiece, with a synthetic vocabulary holding every character so that each normalized
character shows in the ids), and the \\p{L} / \\p{N} / \\s classes of the GPT-2 pattern
(byte-level BPE with the real roberta-base vocabulary).
"""
from __future__ import annotations

import json

import pytest
import tokenizers
import transformers

import _tok_corpora as C
from _tok_compare import assert_batch_matches
from multienc.engine.tokenization import Tokenizer

CODE_POINTS = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
CHUNK = 200
BATCH = 500  # texts per encode_batch: all 5,560 at once held 12.7 GB of encodings on both sides


def _compare_in_batches(ours: Tokenizer, ref: tokenizers.Tokenizer, texts: list, label: str) -> None:
    for i in range(0, len(texts), BATCH):
        batch = texts[i:i + BATCH]
        assert_batch_matches(ours.encode_batch(batch, truncation=False), ref.encode_batch(batch), batch, label)


def _wordpiece_all_chars(tmp_path, lowercase: bool) -> str:
    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "[PAD]": 3}
    for cp in CODE_POINTS:
        vocab[chr(cp)] = len(vocab)
        vocab["##" + chr(cp)] = len(vocab)
    specials = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                 "normalized": False, "special": True} for t, i in list(vocab.items())[:4]]
    d = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": specials,
         "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                        "strip_accents": None, "lowercase": lowercase},
         "pre_tokenizer": {"type": "BertPreTokenizer"},
         "post_processor": {"type": "TemplateProcessing",
                            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                                       {"Sequence": {"id": "A", "type_id": 0}},
                                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [1], "tokens": ["[CLS]"]},
                                               "[SEP]": {"id": "[SEP]", "ids": [2], "tokens": ["[SEP]"]}}},
         "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
         "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                   "max_input_chars_per_word": 100, "vocab": vocab}}
    path = tmp_path / f"all-chars-{lowercase}.json"
    path.write_text(json.dumps(d), encoding="utf-8")
    return str(path)


@pytest.mark.slow
def test_every_code_point_wordpiece(tmp_path):
    """Uncased BERT normalization (every step on); the cased pipeline is the same minus two steps."""
    lowercase = True
    path = _wordpiece_all_chars(tmp_path, lowercase)
    ours, ref = Tokenizer.from_file(path), tokenizers.Tokenizer.from_file(path)
    # "a<c>b" units: c deleted, split off (punctuation, whitespace, CJK) or kept and normalized
    # (then visible as "##<c'>" ids); a combining mark also meets the mark before it.
    texts = [" ".join(f"a{chr(cp)}b{chr(cp)}" for cp in CODE_POINTS[i:i + CHUNK])
             for i in range(0, len(CODE_POINTS), CHUNK)]
    _compare_in_batches(ours, ref, texts, f"every code point, WordPiece lowercase={lowercase}")


@pytest.mark.slow
def test_every_code_point_byte_level():
    folder = C.shared_vocab("roberta-base")
    ref = transformers.AutoTokenizer.from_pretrained(folder).backend_tokenizer
    ours = Tokenizer.from_pretrained(folder)
    # letters, numbers, others and whitespace split differently next to 'a', '1', '.', ' ', "'"
    texts = ["".join(f"a{c}1{c}.{c} {c}'{c}\n" for c in map(chr, CODE_POINTS[i:i + CHUNK]))
             for i in range(0, len(CODE_POINTS), CHUNK)]
    _compare_in_batches(ours, ref, texts, "every code point, byte-level BPE")
