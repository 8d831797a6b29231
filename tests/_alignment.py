"""Word alignment against HF ``word_ids``: the tagger's sub-word -> word map (through the word
pooling weights of every subtoken pooling) for a tokenizer folder, on tricky words and real WNUT-17
sentences, compared with transformers' AutoTokenizer (tokenizers backend; no torch)."""
import gzip
import hashlib
import json
import os
import types

import numpy as np
import transformers

import _tok_corpora as TC
from multienc.datasets import read_column_file
from multienc.encoders import LanguageModel
from multienc.engine.tokenization import Tokenizer
from multienc.models.inputs import word_inputs

HUB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "tiny_hub")
WNUT_TRAIN = os.path.join(TC.SHARED_DATA, "wnut17", "wnut17train.conll")
# HF's ids and word ids for the SentencePiece-only checkpoints (tools/make_word_ids_fixture.py)
WORD_IDS_FIXTURE = os.path.join(os.path.dirname(HUB), "tiny_hub_word_ids.json.gz")
MODES = ("first", "last", "mean", "first_last")

TRICKY = [
    ["Obama", "visited", "Paris", "🙂", "today", "!"],
    ["see", "https://example.com/a-b?c=1", "and", "www.foo.org"],
    ["state-of-the-art", "co-operation", "--", "e-mail", "x-ray"],
    ["Pneumonoultramicroscopicsilicovolcanoconiosis", "antidisestablishmentarianism", "zzzqqqxxx"],
    ["👩‍👩‍👧", "emoji🎉party", "café", "naïve", "Zürich", "東京"],
    ["@user", "#hashtag", "$5.00", "3.14", "U.S.A.", "don't", "'s"],
]

def sentence_digest(words):
    """A short sha256 of a word list: the word-ids fixture records the sentences it was made from."""
    return hashlib.sha256(json.dumps(words).encode()).hexdigest()[:12]


def hf_word_ids(folder, words):
    """HF's word ids (-1 for special tokens) and input ids of pre-split ``words``: from
    :data:`WORD_IDS_FIXTURE` for the folders it covers (transformers reads SentencePiece-only
    checkpoints only with the sentencepiece package, absent here), else transformers run live (a
    Python tokenizer's word ids: its tokens of each word in turn, as it encodes pre-split words)."""
    repo = os.path.dirname(os.path.relpath(folder, HUB)).replace("--", "/")
    with gzip.open(WORD_IDS_FIXTURE, "rt", encoding="utf-8") as f:
        fixture = json.load(f)
    if repo in fixture["repos"]:
        assert [sentence_digest(w) for w in words] == fixture["sentences"][:len(words)], \
            "the alignment sentences changed: rerun tools/make_word_ids_fixture.py"
        ref = fixture["repos"][repo]
        return ref["word_ids"][:len(words)], ref["input_ids"][:len(words)]
    bpe = os.path.exists(os.path.join(folder, "merges.txt"))
    tf = transformers.AutoTokenizer.from_pretrained(folder, **({"add_prefix_space": True} if bpe else {}))
    enc = tf(words, is_split_into_words=True, truncation=False)
    if not tf.is_fast:  # a Python tokenizer (BERTweet's) has no word_ids(): it tokenizes word by word
        return [[-1] + [n for n, w in enumerate(row) for _ in tf.tokenize(w)] + [-1] for row in words], \
            enc["input_ids"]
    return [[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(words))], enc["input_ids"]


def reference_weights(word_ids, lengths, K, mode):
    """Pooling weights written from HF word ids with explicit loops (independent of the package)."""
    B, T = len(word_ids), max(len(w) for w in word_ids)
    rows = 2 if mode == "first_last" else 1
    out = np.zeros((B, K * rows, T))
    for b, ids in enumerate(word_ids):
        for w in range(lengths[b]):
            pos = [t for t, x in enumerate(ids) if x == w]
            if not pos:
                continue
            if mode == "first":
                out[b, w, pos[0]] = 1
            elif mode == "last":
                out[b, w, pos[-1]] = 1
            elif mode == "mean":
                out[b, w, pos] = 1 / len(pos)
            else:
                out[b, 2 * w, pos[0]] = 1
                out[b, 2 * w + 1, pos[-1]] = 1
    return out


class _TokenizerOnly:
    """What word_inputs reads from a LanguageModel, for vocabularies without model weights."""

    def __init__(self, folder):
        self.name = os.path.basename(folder)
        self.word_tokenizer = Tokenizer.from_pretrained(folder, add_prefix_space=True)  # as LanguageModel does
        self.encoder = types.SimpleNamespace(uses_token_types=True)


def alignment_sentences():
    sents = list(TRICKY)
    if TC.present():
        sents += [s.tokens for s in read_column_file(WNUT_TRAIN, _wnut_labels(), 0, 1, delimiter="\t")[:300]]
    return sents


def _wnut_labels():
    from multienc.datasets import WNUT_NER
    return WNUT_NER.LABEL_MAP


def check_word_alignment(folder):
    """The sub-word -> word map of the tokenizer in ``folder`` (a tiny hub model's through its
    LanguageModel, other vocabularies' through the tokenizer alone), seen through the pooling weights
    of every mode, is HF's ``word_ids`` on the tricky words and, where the shared data is present,
    300 WNUT-17 sentences."""
    lm = LanguageModel(folder) if folder.startswith(HUB) else _TokenizerOnly(folder)
    lm.max_length = 10 ** 6  # alignment only (the encoder does not run); truncation: test_tagger.py
    sents = alignment_sentences()
    ref, ref_ids = hf_word_ids(folder, sents)
    for start in range(0, len(sents), 64):
        chunk, ref_chunk = sents[start:start + 64], ref[start:start + 64]
        for mode in MODES:
            inputs, lengths = word_inputs([lm], chunk, mode)
            ids, mask, _, weights = inputs[0]
            assert lengths.tolist() == [len(s) for s in chunk]
            for b, r in enumerate(ref_chunk):
                assert ids[b, :int(mask[b].sum())].tolist() == ref_ids[start + b]
            K = max(len(s) for s in chunk)
            want = reference_weights(ref_chunk, lengths, K, mode)
            np.testing.assert_allclose(weights[:, :, :want.shape[2]], want, rtol=1e-6, atol=0, err_msg=mode)
    if len(sents) > len(TRICKY) and folder.startswith(HUB):
        assert any(len(set(r)) < len(r) - 2 for r in ref), "the fixture vocabularies split words into pieces"
