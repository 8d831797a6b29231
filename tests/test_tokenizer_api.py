"""multienc.engine.tokenization API: errors, decoding, vocabulary accessors, batching details."""
from __future__ import annotations

import os

import numpy as np
import pytest
import transformers

import _tok_corpora as C
from _tok_compare import assert_concurrent_calls_agree
from multienc.engine.tokenization import Tokenizer, TokenizerFileError


@pytest.fixture(scope="module", params=C.VOCABS)
def both(request):
    folder = C.shared_vocab(request.param)
    return Tokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder)


def test_non_str_items_raise_type_error_naming_index(both):
    ours, _ = both
    with pytest.raises(TypeError, match=r"input 2: expected str, got None"):
        ours.encode_batch(["a", "b", None])
    with pytest.raises(TypeError, match=r"input 1: expected str, got int"):
        ours.encode_batch(["a", 3])
    with pytest.raises(TypeError, match=r"input 0, second of pair: expected str, got bytes"):
        ours.encode_batch([("a", b"b")])
    with pytest.raises(TypeError, match=r"input 1, word 2: expected str, got float"):
        ours.encode_batch([["a"], ["b", "c", 1.5]], is_split_into_words=True)
    with pytest.raises(TypeError, match=r"text: expected str, got None"):
        ours.encode(None)
    with pytest.raises(TypeError, match=r"list of inputs"):
        ours.encode_batch("just a string")


def test_lone_surrogates_rejected_like_hf(both):
    ours, tf = both
    bad = "ok \ud800 text"
    with pytest.raises(TypeError):
        tf.backend_tokenizer.encode(bad)
    with pytest.raises(TypeError, match=r"lone surrogate U\+D800 at position 3"):
        ours.encode(bad)
    with pytest.raises(TypeError, match=r"input 1: str contains a lone surrogate U\+DFFF"):
        ours.encode_batch(["fine", "x\udfff"])


def test_decode_matches_hf(both):
    ours, tf = both
    hf = tf.backend_tokenizer
    texts = C.stress_texts(400, seed=21) + C.corpora().texts[:400]
    for t in texts:
        ids = hf.encode(t).ids
        for skip in (True, False):
            assert ours.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip), t


def test_vocabulary_accessors(both):
    ours, tf = both
    hf = tf.backend_tokenizer
    assert ours.vocab_size == hf.get_vocab_size()
    for role in ("pad", "cls", "sep", "unk", "mask"):
        assert getattr(ours, f"{role}_token_id") == getattr(tf, f"{role}_token_id"), role
    assert ours.model_max_length == tf.model_max_length
    for tok, i in list(hf.get_vocab().items())[:2000]:
        assert ours.token_to_id(tok) == hf.token_to_id(tok)
        assert ours.id_to_token(i) == hf.id_to_token(i)
    assert ours.num_special_tokens_to_add(False) == tf.num_special_tokens_to_add(False)
    assert ours.num_special_tokens_to_add(True) == tf.num_special_tokens_to_add(True)


def test_batch_shapes_dtypes_and_padding(both):
    ours, _ = both
    empty = ours.encode_batch([])
    assert empty["input_ids"].shape == (0, 0) and empty["offset_mapping"].shape == (0, 0, 2)
    got = ours.encode_batch(["short", "a much longer text with many words in it", ""])
    for k in ("input_ids", "attention_mask", "token_type_ids", "special_tokens_mask", "word_ids", "sequence_ids"):
        assert got[k].dtype == np.int64 and got[k].shape == got["input_ids"].shape, k
    row = got["attention_mask"][0]
    n = int(row.sum())
    assert (got["input_ids"][0, n:] == ours.pad_token_id).all()
    assert (got["word_ids"][0, n:] == -1).all() and (got["special_tokens_mask"][0, n:] == 1).all()
    single = [ours.encode(t) for t in ("short", "a much longer text with many words in it", "")]
    for i, e in enumerate(single):
        assert got["input_ids"][i, :len(e)].tolist() == e.ids
        assert got["sequence_ids"][i, :len(e)].tolist() == [-1 if s is None else s for s in e.sequence_ids]


def test_default_truncation_is_model_max_length(both):
    ours, _ = both
    long_text = "word " * 2000
    assert ours.encode_batch([long_text])["input_ids"].shape == (1, 512)
    assert ours.encode_batch([long_text], truncation=False)["input_ids"].shape[1] > 512
    assert len(ours.encode(long_text)) > 512
    assert len(ours.encode(long_text, max_length=10)) == 10


def test_max_length_too_small(both):
    ours, _ = both
    need = ours.num_special_tokens_to_add(True)
    with pytest.raises(ValueError, match=r"input 0: max_length=.* leaves no room"):
        ours.encode_batch([("a", "b")], max_length=need - 1)
    with pytest.raises(ValueError, match=r"max_length must be a non-negative int"):
        ours.encode_batch(["a"], max_length=-3)


def test_concurrent_calls_agree(both):
    assert_concurrent_calls_agree(both[0], C.stress_texts(300, seed=31))


# ------------------------------------------------------------------ file errors

def _copy_vocab(src: str, dst, names):
    for n in names:
        with open(os.path.join(src, n), "rb") as f:
            (dst / n).write_bytes(f.read())


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(TokenizerFileError, match="model folder not found"):
        Tokenizer.from_pretrained(str(tmp_path / "nope"))
    with pytest.raises(TokenizerFileError, match=r"no tokenizer.json, vocab.txt or vocab.json"):
        Tokenizer.from_pretrained(str(tmp_path))
    with pytest.raises(TokenizerFileError, match=r"tokenizer file not found: .*tokenizer.json"):
        Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    (tmp_path / "vocab.json").write_text('{"a": 0, "b": 1, "ab": 2}', encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"not found: .*merges.txt"):
        Tokenizer.from_pretrained(str(tmp_path))


def test_corrupt_files(tmp_path):
    roberta = C.shared_vocab("roberta-base")
    _copy_vocab(roberta, tmp_path, ["vocab.json", "merges.txt"])
    merges = (tmp_path / "merges.txt").read_text(encoding="utf-8").split("\n")
    (tmp_path / "merges.txt").write_text("\n".join(merges[:5] + ["a b c"] + merges[5:]), encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"merges.txt: merge 5 \('a b c'\) is not two tokens"):
        Tokenizer.from_pretrained(str(tmp_path))
    (tmp_path / "merges.txt").write_text("\n".join(merges[:5] + ["zzzq qqq"] + merges[5:]), encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"merges.txt: merge 5: token 'zzzq' is not in the vocabulary"):
        Tokenizer.from_pretrained(str(tmp_path))
    (tmp_path / "vocab.json").write_text('{"a": 0, ', encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"cannot read tokenizer file .*vocab.json"):
        Tokenizer.from_pretrained(str(tmp_path))
    (tmp_path / "vocab.json").write_text('["a", "b"]', encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"vocab.json: expected a JSON object"):
        Tokenizer.from_pretrained(str(tmp_path))

    wp = tmp_path / "wp"
    wp.mkdir()
    (wp / "vocab.txt").write_bytes(b"[PAD]\n[UNK]\n\xff\xfe\n")
    with pytest.raises(TokenizerFileError, match=r"cannot read tokenizer file .*vocab.txt"):
        Tokenizer.from_pretrained(str(wp))
    (wp / "vocab.txt").write_text("[PAD]\nhello\n", encoding="utf-8")
    (wp / "tokenizer_config.json").write_text('{"unk_token": "[UNK]"', encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"tokenizer_config.json"):
        Tokenizer.from_pretrained(str(wp))

    tj = tmp_path / "tokenizer.json"
    tj.write_text('{"model": {"type": "WordLevel", "vocab": {}}}', encoding="utf-8")
    with pytest.raises(NotImplementedError, match=r"model type 'WordLevel'"):
        Tokenizer.from_file(str(tj))
    tj.write_text('{"model": {"type": "Unigram", "vocab": {}}}', encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"tokenizer.json: Unigram model.vocab must be a list"):
        Tokenizer.from_file(str(tj))
    tj.write_text("{not json", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"cannot read tokenizer file .*tokenizer.json"):
        Tokenizer.from_file(str(tj))


def test_wordpiece_without_unk_token(tmp_path):
    (tmp_path / "vocab.txt").write_text("[PAD]\n[CLS]\n[SEP]\nhello\n", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"vocab.txt: the unknown token '\[UNK\]' is not in the vocabulary"):
        Tokenizer.from_pretrained(str(tmp_path))


def test_special_tokens_missing_from_vocab(tmp_path):
    """Configured special tokens absent from vocab.txt get new ids as transformers gives them."""
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\nhello\nworld\n", encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(
        '{"mask_token": "[M]", "bos_token": "<b>", "tokenizer_class": "BertTokenizer"}', encoding="utf-8")
    tok = Tokenizer.from_pretrained(str(tmp_path))
    tf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    for t in ["hello [M] world", "[M][M]", "hello", "x <b>"]:
        assert tok.encode(t).ids == tf.backend_tokenizer.encode(t).ids, t
    assert tok.mask_token_id == tf.mask_token_id


@pytest.mark.parametrize("repo, drop, where, cls, match", [
    # cl-tohoku/bert-base-japanese: MeCab words before the WordPiece; transformers needs fugashi
    ("SpanBERT/spanbert-base-cased", (), "tokenizer_config.json", "BertJapaneseTokenizer", "with vocab.txt"),
    # cl-tohoku/bert-base-japanese names its class in config.json too
    ("SpanBERT/spanbert-base-cased", (), "config.json", "BertJapaneseTokenizer", "with vocab.txt"),
    # a WordPiece class of a family multienc does not load (its template and specials differ)
    ("sentence-transformers/all-mpnet-base-v2", ("tokenizer.json",), "tokenizer_config.json", "FunnelTokenizer",
     "with vocab.txt"),
    # GPT-2's vocabulary files without RoBERTa's <s> ... </s>
    ("roberta-base", (), "tokenizer_config.json", "GPT2TokenizerFast", r"with vocab.json \+ merges.txt"),
    ("multienc-test/xlm-roberta-spm-only", (), "tokenizer_config.json", "XLNetTokenizer",
     "with sentencepiece.bpe.model"),
])
def test_tokenizer_class_without_tokenizer_json_must_be_one_we_build(tmp_path, repo, drop, where, cls, match):
    """A folder without tokenizer.json whose tokenizer_config.json (else config.json) names a class that
    the vocabulary file's reader does not build exactly is refused, naming the file and the class,
    rather than tokenized another way."""
    import json
    import shutil
    from _tiny_hub import local
    from multienc.engine.tokenization import UnsupportedTokenizerError
    folder = tmp_path / "m"
    shutil.copytree(local(repo), folder)
    Tokenizer.from_pretrained(str(folder))  # as shipped: loads
    for name in drop:
        os.remove(folder / name)
    for name in ("tokenizer_config.json", "config.json"):  # the class only where the case puts it
        cfg = json.loads((folder / name).read_text(encoding="utf-8"))
        cfg.pop("tokenizer_class", None)
        if name == where:
            cfg["tokenizer_class"] = cls
        (folder / name).write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(UnsupportedTokenizerError, match=f"{where}: tokenizer_class '{cls}' is not supported {match}"):
        Tokenizer.from_pretrained(str(folder))
