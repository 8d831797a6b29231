"""BERTweet's tokenizer (vocab.txt + bpe.codes, fastBPE) against transformers' BertweetTokenizer (and
PhobertTokenizer, which reads the same files the same way), run live.

transformers has only a Python tokenizer for BERTweet, so the reference gives ids, token strings,
type ids, the pieces of ``tokenize()`` and ``decode()``, but no offsets or word ids. Ours are
checked against its pieces: every token that is not a template special is the text at its offsets,
with "@@" when a later token belongs to the same word (the pieces a word is split into), which is
what ``tokenize()`` returns for it. Files: the tiny hub's ``vinai/bertweet-base`` (made by
tools/make_tiny_hub.py from fastBPE codes learned on CoLA) and hand-made files exercising how
transformers reads them (repeated tokens and merges, line endings, a merges file without a final
newline, a merge listed before the one that makes its input).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import transformers

import _tok_corpora as C
from _tiny_hub import TEXTS, local
from _tok_compare import assert_concurrent_calls_agree
from multienc.engine.tokenization import Tokenizer, TokenizerFileError, UnsupportedTokenizerError

BERTWEET = local("vinai/bertweet-base")
# Python's str.isspace() chars (re's \s), and some that are not whitespace to Python
PY_SPACES = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200b))) + \
    "\u2028\u2029\u202f\u205f\u3000"
NOT_SPACES = "\x1b\x7f\u180e\u200b\u2060\ufeff"
TWEETS = [
    "@user I can't believe it's already December !! 😂 😂 #2026 http://t.co/abc",
    "The cat sat on the mat.", "the the the", "The government's imposition of a fine.", "a", "I", "x y z",
    "word\nword", "word\n\nword", "word \nword", "word\r\nword", "word\n", "\nword", "word\n<mask>", "<mask>\nword",
    "a<s>b", "<mask>x", "x</s>", "<pad><unk>", "a  <mask>  b", "hello@@ world@@", "@@", "a@@b",
    "theeeeeee caaaat", "aaaaaaaaaaaaaaa", "ababababab", "t" * 3000, "the " * 400,
] + [f"the{c}cat" for c in PY_SPACES + NOT_SPACES] + [f"a{c}" for c in PY_SPACES]


def _reference(folder: str):
    ref = transformers.AutoTokenizer.from_pretrained(folder)
    assert type(ref).__name__ == "BertweetTokenizer"
    return ref


def _pieces_at_offsets(text: str, enc) -> list:
    """Our tokens as BertweetTokenizer.tokenize shows them: the text at each token's offsets, with
    "@@" when the next token has the same word id (template specials left out)."""
    out = []
    for k, (w, (s, e)) in enumerate(zip(enc.word_ids, enc.offsets)):
        if w is None:
            continue
        inside = k + 1 < len(enc.word_ids) and enc.word_ids[k + 1] == w
        out.append(text[s:e] + ("@@" if inside else ""))
    return out


def assert_matches_bertweet(ours: Tokenizer, ref, texts: list, label: str) -> None:
    """Texts one by one (encode, ids, tokens, pieces at offsets, decode both ways), as a batch, as
    pairs (type ids 0) and as pre-split words (each word's tokens carry its index)."""
    for text in texts:
        enc = ours.encode(text)
        ids = ref(text)["input_ids"]
        assert enc.ids == ids, f"{label}: {text!r}"
        assert enc.tokens == ref.convert_ids_to_tokens(ids), f"{label}: {text!r}"
        assert _pieces_at_offsets(text, enc) == ref.tokenize(text), f"{label}: {text!r}"
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip), text
    batch = ours.encode_batch(texts, truncation=False)
    for i, ids in enumerate(ref(texts)["input_ids"]):
        assert batch["input_ids"][i, :len(ids)].tolist() == ids and batch["attention_mask"][i].sum() == len(ids)
    pairs = list(zip(texts[::2], texts[1::2]))
    ref_pairs = ref([a for a, _ in pairs], [b for _, b in pairs], return_token_type_ids=True)
    batch = ours.encode_batch(pairs, truncation=False)
    for i, (ids, types) in enumerate(zip(ref_pairs["input_ids"], ref_pairs["token_type_ids"])):
        assert batch["input_ids"][i, :len(ids)].tolist() == ids, f"{label} pair {pairs[i]!r}"
        assert batch["token_type_ids"][i, :len(ids)].tolist() == types == [0] * len(ids)
    words = C.stress_words(200, seed=3) + [t.split() or ["x"] for t in texts[:50]]
    batch = ours.encode_batch(words, truncation=False, is_split_into_words=True)
    for i, (row, ids) in enumerate(zip(words, ref(words, is_split_into_words=True)["input_ids"])):
        assert batch["input_ids"][i, :len(ids)].tolist() == ids, f"{label} words {row!r}"
        expected = [None] + [n for n, w in enumerate(row) for _ in ref.tokenize(w)] + [None]
        assert [None if w < 0 else w for w in batch["word_ids"][i, :len(ids)].tolist()] == expected


def test_bertweet_folder_matches_transformers():
    """The hub layout: vocab.txt + bpe.codes, BertweetTokenizer named in config.json only."""
    assert "tokenizer_class" not in json.load(open(os.path.join(BERTWEET, "tokenizer_config.json")))
    ours, ref = Tokenizer.from_pretrained(BERTWEET), _reference(BERTWEET)
    assert repr(ours).startswith("Tokenizer(fastBPE")
    assert (ours.cls_token_id, ours.pad_token_id, ours.sep_token_id, ours.unk_token_id) == (0, 1, 2, 3)
    assert ours.mask_token_id == ref.mask_token_id == len(ref) - 1 == ours.vocab_size - 1
    corpus = C.corpora().texts[:3000]  # none without ../shared/data
    assert_matches_bertweet(ours, ref, TWEETS + TEXTS + corpus + C.stress_texts(1500, seed=21), "bertweet")
    # on ordinary English most tokens are known words or pieces of words, not the unknown token
    batch = ours.encode_batch(TEXTS, truncation=False)
    real = batch["input_ids"][batch["attention_mask"] == 1]
    assert (real == ours.unk_token_id).mean() < 0.05 and (real > 4).mean() > 0.8


def test_bertweet_truncation_matches_transformers():
    ours, ref = Tokenizer.from_pretrained(BERTWEET), _reference(BERTWEET)
    texts = [t for t in TWEETS + C.stress_texts(200, seed=4) if t.strip()]
    pairs = list(zip(texts[::2], texts[1::2]))
    for max_length in (5, 9, 20):
        got = ours.encode_batch(texts, max_length=max_length)
        for i, ids in enumerate(ref(texts, truncation=True, max_length=max_length)["input_ids"]):
            assert got["input_ids"][i, :len(ids)].tolist() == ids
        got = ours.encode_batch(pairs, max_length=max_length)
        hf = ref([a for a, _ in pairs], [b for _, b in pairs], truncation="longest_first", max_length=max_length)
        for i, ids in enumerate(hf["input_ids"]):
            assert got["input_ids"][i, :len(ids)].tolist() == ids, pairs[i]
    # the folder's model_max_length (64) is the default limit
    long = ours.encode_batch(["the " * 400])
    assert long["input_ids"].shape == (1, 64) and long["input_ids"][0, -1] == ours.sep_token_id


def _folder(tmp_path, vocab: bytes, codes: bytes, config: dict = None):
    folder = tmp_path / "bertweet"
    folder.mkdir()
    (folder / "vocab.txt").write_bytes(vocab)
    (folder / "bpe.codes").write_bytes(codes)
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertweetTokenizer",
                                                              **(config or {})}))
    return str(folder)


# A merge listed before the merge that makes its input ("ab a" before "a b"): BertweetTokenizer merges
# every occurrence of the best pair before it looks again, so "ababx" becomes ab@@ ab@@ x, where a
# priority queue over positions (tokenizers' BPE) would make aba@@ b@@ x.
ODD_CODES = (b"ab a 9\nt h 9\na b 8\nth e</w> 7\na a 5\nx y\nc a t 4\na b 1\r\nh e 3\n"
             b"aa aa 2\nc a 2\nca t</w> 1\nl o 1")  # no final newline: the last line is dropped
ODD_VOCAB = (b"ab@@ 5\naba@@ 3\nb@@ 2\nx 9\nthe 9\nt@@ 1\nh@@ 1\ne 1\n  the  3  \r\n<s> 1\naa@@ 1\naaaa@@ 1\n"
             b"a@@ 2\na 2\nca@@ 1\ncat 1\nhe 1\nlo 1\nl@@ 1\no 1\nb 1\nthe 4\n")


@pytest.mark.parametrize("vocab,codes,config", [
    (ODD_VOCAB, ODD_CODES, {}),
    (ODD_VOCAB.replace(b"\r\n", b"\n").replace(b"\n", b"\r"), ODD_CODES.replace(b"\n", b"\r\n") + b"\n", {}),
    (ODD_VOCAB, ODD_CODES, {"bos_token": "<b>", "unk_token": "<u>", "mask_token": "a@@",
                            "clean_up_tokenization_spaces": True}),
    (ODD_VOCAB, ODD_CODES, {"added_tokens_decoder": {"23": {"content": "<mask>", "special": True},
                                                     "24": {"content": "he@@", "special": False}}}),
])
def test_bertweet_files_are_read_as_transformers_reads_them(tmp_path, vocab, codes, config):
    """Repeated vocabulary tokens (a later one takes the next id; "<s>" moves), lines with extra
    spaces, CR or CRLF line ends, merges with other field counts (ignored), a repeated merge (the
    later rank), special tokens renamed, added tokens from the config."""
    folder = _folder(tmp_path, vocab, codes, config)
    ours, ref = Tokenizer.from_pretrained(folder), _reference(folder)
    texts = ["ababx", "abababx", "the cat", "aaaaaaaa", "aaaaaaaaa", "hello", "lo he", "a b", "ab", "x <mask> x",
             "x<mask>", "the  . , don't", "he@@llo", "a@@", "cat cat the", "<b> <u> <s>"] + C.stress_texts(300, seed=8)
    assert_matches_bertweet(ours, ref, texts, "hand-made files")


def test_bertweet_merges_every_occurrence_of_a_pair_before_looking_again(tmp_path):
    ours = Tokenizer.from_pretrained(_folder(tmp_path, ODD_VOCAB, ODD_CODES))
    assert ours.encode("ababx", add_special_tokens=False).tokens == ["ab@@", "ab@@", "x"]


def test_phobert_files(tmp_path):
    """PhobertTokenizer (vinai/phobert-base) reads the same files the same way; it has no
    normalization, so the key is ignored as transformers ignores it."""
    folder = _folder(tmp_path, ODD_VOCAB, ODD_CODES, {"tokenizer_class": "PhobertTokenizer", "normalization": True})
    ref = transformers.AutoTokenizer.from_pretrained(folder)
    assert type(ref).__name__ == "PhobertTokenizer"
    assert_matches_bertweet(Tokenizer.from_pretrained(folder), ref, TWEETS + C.stress_texts(300, seed=9), "phobert")


def test_bertweet_normalization_is_refused(tmp_path):
    folder = _folder(tmp_path, ODD_VOCAB, ODD_CODES, {"normalization": True})
    with pytest.raises(UnsupportedTokenizerError, match=r"tokenizer_config\.json: normalization"):
        Tokenizer.from_pretrained(folder)


@pytest.mark.parametrize("vocab,codes,match", [
    (b"the 1\nnocount\n", ODD_CODES, r"vocab\.txt: line 2: expected '<token> <count>'"),
    (b"the 1\n\n", ODD_CODES, r"vocab\.txt: line 2"),
    (b"the 1\n\xff\xfe 2\n", ODD_CODES, r"vocab\.txt"),
    (ODD_VOCAB, b"a b 1\n\xc3\n", r"bpe\.codes"),
    (ODD_VOCAB, None, r"bpe\.codes: not found"),
])
def test_bertweet_bad_files_name_the_file(tmp_path, vocab, codes, match):
    folder = _folder(tmp_path, vocab, codes or b"")
    if codes is None:
        os.remove(os.path.join(folder, "bpe.codes"))
    with pytest.raises(TokenizerFileError, match=match):
        Tokenizer.from_pretrained(folder)


def test_bertweet_concurrent_calls_agree():
    """Threads share the tokenizer's workspaces and their piece caches (fastBPE's results too)."""
    assert_concurrent_calls_agree(Tokenizer.from_pretrained(BERTWEET), TWEETS + C.stress_texts(300, seed=31))


def test_bertweet_long_words():
    """Words of 20,000 chars as transformers splits them; one of 1,000,000 (a merge round costs
    O(log n) per merge, not a pass over the word) split into pieces that tile it."""
    ours, ref = Tokenizer.from_pretrained(BERTWEET), _reference(BERTWEET)
    for word in ("th" * 10_000, "".join(C.stress_texts(400, seed=2)).replace(" ", "")[:20_000]):
        assert ours.encode(word).ids == ref(word)["input_ids"]
    enc = ours.encode("theca" * 200_000, add_special_tokens=False)
    starts, ends = np.array(enc.offsets).T
    assert starts[0] == 0 and ends[-1] == 1_000_000 and (starts[1:] == ends[:-1]).all()
    assert set(enc.word_ids) == {0}
