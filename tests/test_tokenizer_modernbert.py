"""ModernBERT's tokenizer layout against HF tokenizers, live: tokenizer.json with a byte-level BPE
model, ByteLevel pre-tokenizer without prefix space, the BERT template ([CLS] A [SEP] B:1 [SEP]:1),
special tokens after the learned vocabulary and [MASK] with lstrip (the tiny hub's
answerdotai/ModernBERT-base, tools/make_tiny_hub.py; its vocabulary is trained on CoLA).

Reference: ``transformers.AutoTokenizer.from_pretrained(folder)``'s ``tokenizers`` backend. Texts:
every sentence, pair and word list of the shared corpora, compared in chunks (a 1500-token
vocabulary makes sequences long, and HF's encodings of the whole corpora at once outgrow the
memory), and the generated stress sets. Ids, type ids, offsets, word ids, tokens and
special-token masks must all be identical.
"""
from __future__ import annotations

import os

import pytest
import transformers

import _tok_corpora as C
from _tok_compare import assert_batch_matches, assert_encode_matches, assert_json_roundtrip, assert_truncation_matches
from multienc.engine.tokenization import Tokenizer

FOLDER = os.path.join(os.path.dirname(__file__), "fixtures", "tiny_hub", "answerdotai--ModernBERT-base", "main")
CHUNK = 5000


@pytest.fixture(scope="module")
def pair_of_tokenizers():
    hf = transformers.AutoTokenizer.from_pretrained(FOLDER).backend_tokenizer
    hf.no_truncation()
    hf.no_padding()
    return Tokenizer.from_pretrained(FOLDER), hf


def compare_in_chunks(ours, hf, inputs, label, words=False):
    n = 0
    for i in range(0, len(inputs), CHUNK):
        chunk = inputs[i:i + CHUNK]
        got = ours.encode_batch(chunk, truncation=False, is_split_into_words=words)
        n += assert_batch_matches(got, hf.encode_batch(chunk, is_pretokenized=words), chunk, f"{label} from {i}")
    return n


@pytest.mark.slow
def test_corpora(pair_of_tokenizers):
    ours, hf = pair_of_tokenizers
    corpora = C.shared_corpora()
    n = compare_in_chunks(ours, hf, list(dict.fromkeys(corpora.texts)), "corpora")
    n += compare_in_chunks(ours, hf, list(dict.fromkeys(corpora.pairs)), "pairs")
    n += compare_in_chunks(ours, hf, corpora.words, "split into words", words=True)
    print(f"\ncompared {n} corpus inputs")


def test_stress_sets(pair_of_tokenizers):
    ours, hf = pair_of_tokenizers
    texts, pairs, words = C.stress_texts(), C.stress_pairs(), C.stress_words()
    compare_in_chunks(ours, hf, texts, "stress")
    compare_in_chunks(ours, hf, pairs, "stress pairs")
    compare_in_chunks(ours, hf, words, "stress words", words=True)
    assert_encode_matches(ours, hf, texts[:500], "stress, encode()")
    assert_encode_matches(ours, hf, pairs[:300], "stress pairs, no special tokens", add_special_tokens=False)


def test_template_special_tokens_and_mask(pair_of_tokenizers):
    """The BERT template on byte-level tokens: [CLS] first, the second segment's type 1, and [MASK]
    taking the space before it (lstrip)."""
    ours, hf = pair_of_tokenizers
    for text in ("The cat sat on the [MASK].", "a [MASK] b", "[MASK]", "x  [MASK][MASK] y [CLS] z"):
        assert_encode_matches(ours, hf, [text], "mask")
    e = ours.encode("The cat.", "It sat.")
    assert e.ids[0] == ours.cls_token_id and e.type_ids[-1] == 1 and e.type_ids[0] == 0
    assert e.tokens[0] == "[CLS]" and e.tokens[-1] == "[SEP]"


def test_tokenizer_json_roundtrip(pair_of_tokenizers, tmp_path):
    """The pipeline HF built, saved as tokenizer.json, loads identically in both (from_file)."""
    assert_json_roundtrip(pair_of_tokenizers[1], tmp_path, C.stress_texts(800))


@pytest.mark.parametrize("max_length", [4, 8, 64])
def test_truncation_and_padding_match_transformers(pair_of_tokenizers, max_length):
    """encode_batch(max_length=...) == HF's longest_first truncation with padding, stress texts cut to
    40 characters (HF builds every combination of the two segments' overflowing pieces, which for
    long stress pairs in a 1500-token vocabulary takes gigabytes)."""
    assert_truncation_matches(*pair_of_tokenizers, max_length, cut=40)
