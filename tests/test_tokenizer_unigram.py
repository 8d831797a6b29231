"""Parity of multienc's SentencePiece Unigram tokenizer with HuggingFace, run live where possible.

References (HF only, never our own output):
* tokenizer.json files written by transformers' converters (XLM-R, ALBERT, DeBERTa-v2) from
  ``../shared/data/spm``'s models (tests/fixtures/unigram/convert-*.json, made by
  tools/make_unigram_fixtures.py), run by ``tokenizers.Tokenizer``;
* Unigram models trained with ``sentencepiece`` on the corpora (8k / 32k pieces, with and without byte
  fallback): the tokenizer.json comes from ``multienc.engine.tokenization.convert_spm_model`` after checking that
  it is byte for byte (canonical JSON) what transformers' converter wrote (hash in the manifest), and
  ``tokenizers`` runs it;
* checkpoint folders with only a SentencePiece model: the backend tokenizer ``transformers.AutoTokenizer``
  built (saved by the generator: transformers needs sentencepiece + protobuf for these, which the test
  venv lacks) run by ``tokenizers``, and ``AutoTokenizer``'s own outputs for sample inputs;
* every Unicode code point through the Precompiled normalizer (``nmt_nfkc.bin``) and NFC/NFD/NFKC/NFKD.
Ids, type ids, offsets, word ids and special-token masks must be identical.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import warnings
from typing import Any, Dict, List

import numpy as np
import pytest

import tokenizers

import _tok_corpora as C
from _shared_data import require
from _tok_compare import assert_batch_matches, assert_encode_matches, assert_truncation_matches
from multienc.engine.tokenization import (SPM_FAMILIES, Tokenizer, TokenizerFileError, UnsupportedTokenizerError,
                                          convert_spm_model, read_spm_model, spm_checkpoint_tokenizer_json,
                                          spm_family)

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "unigram")
MANIFEST = json.load(open(os.path.join(FIX, "manifest.json"), encoding="utf-8"))
TRAINED = ["trained-8k", "trained-8k-bf", "trained-32k", "trained-32k-bf"]
CONVERT = sorted(f[len("convert-"):-len(".json")] for f in os.listdir(FIX) if f.startswith("convert-"))
AUTO = sorted(f[len("auto-"):] for f in os.listdir(FIX) if f.startswith("auto-"))
# folders transformers 5.24 loads (the others have error.txt: test_spm_checkpoint_refused checks we refuse them too)
AUTO_OK = [k for k in AUTO if not os.path.exists(os.path.join(FIX, f"auto-{k}", "error.txt"))]
FAMILY_OPTIONS = {"albert": {"do_lower_case": True, "keep_accents": False},
                  "deberta-v2": {"do_lower_case": False, "split_by_punct": False}, "xlm-roberta": {}, "camembert": {}}


def _model_path(name: str) -> str:
    if name.startswith("test"):
        return str(require(f"spm/{name}.model")[0])
    return os.path.join(FIX, name + ".model")


def _split_name(key: str) -> List[str]:
    for fam in SPM_FAMILIES:
        if key.endswith("-" + fam):
            return [key[:-len(fam) - 1], fam]
    raise ValueError(key)


def _with_charsmap(d: Any, charsmap: bytes) -> Any:
    """Put the model's charsmap back where the fixture holds its hash (checked)."""
    if isinstance(d, dict):
        cm = d.get("precompiled_charsmap")
        if d.get("type") == "Precompiled" and isinstance(cm, dict):
            assert cm["sha256"] == hashlib.sha256(charsmap).hexdigest(), "charsmap of the .model differs"
            return {**d, "precompiled_charsmap": base64.b64encode(charsmap).decode("ascii")}
        return {k: _with_charsmap(v, charsmap) for k, v in d.items()}
    if isinstance(d, list):
        return [_with_charsmap(v, charsmap) for v in d]
    return d


def _pair(tmp_path, d: Dict[str, Any], name: str = "tokenizer.json"):
    path = tmp_path / name
    path.write_text(json.dumps(d, ensure_ascii=False), encoding="utf-8")
    return Tokenizer.from_file(str(path)), tokenizers.Tokenizer.from_file(str(path))


def _unique(xs):
    return list(dict.fromkeys(xs))


def _batches(ours, ref, items: list, label: str, words: bool = False, size: int = 2048) -> int:
    """assert_batch_matches in chunks (padding to the longest of 216k inputs would take gigabytes)."""
    n = 0
    for i in range(0, len(items), size):
        chunk = items[i:i + size]
        got = ours.encode_batch(chunk, truncation=False, is_split_into_words=words)
        want = ref.encode_batch(chunk, is_pretokenized=True) if words else ref.encode_batch(chunk)
        n += assert_batch_matches(got, want, chunk, f"{label} [{i}:{i + len(chunk)}]")
    return n


# Under `make sanitize` (ASan + UBSan preloaded into everything, HF's allocations included) the stress
# comparisons are cut to a fifth: the sanitizers check memory safety; parity is the plain run's job.
STRESS_SCALE = 5 if os.environ.get("MULTIENC_SANITIZED") else 1


def _compare_all(ours, ref, label: str, full: bool) -> Dict[str, int]:
    """Stress set (always) and every corpus sentence / pair / word list (full)."""
    counts = {}
    texts = C.stress_texts(3000 // STRESS_SCALE)
    counts["stress"] = assert_batch_matches(ours.encode_batch(texts, truncation=False), ref.encode_batch(texts),
                                            texts, f"{label} stress")
    assert_encode_matches(ours, ref, texts[:600], f"{label} stress, encode()")
    assert_encode_matches(ours, ref, texts[:300], f"{label} no special tokens", add_special_tokens=False)
    pairs = C.stress_pairs(1000 // STRESS_SCALE)
    counts["stress pairs"] = assert_batch_matches(ours.encode_batch(pairs, truncation=False),
                                                  ref.encode_batch(pairs), pairs, f"{label} stress pairs")
    words = C.stress_words(1000 // STRESS_SCALE)
    counts["stress words"] = assert_batch_matches(
        ours.encode_batch(words, truncation=False, is_split_into_words=True),
        ref.encode_batch(words, is_pretokenized=True), words, f"{label} stress words")
    if not full:
        return counts
    corp = C.shared_corpora()
    counts["sentences"] = _batches(ours, ref, _unique(corp.texts), f"{label} corpora")
    counts["pairs"] = _batches(ours, ref, _unique(corp.pairs), f"{label} pairs")
    counts["word lists"] = _batches(ours, ref, corp.words, f"{label} words", words=True)
    print(f"\n{label}: compared {counts}")
    return counts


# ------------------------------------------------------------------ tokenizer.json from the converters

def _converted_pair(key: str, folder):
    mname, family = _split_name(key)
    spm = read_spm_model(_model_path(mname))
    fx = json.load(open(os.path.join(FIX, f"convert-{key}.json"), encoding="utf-8"))
    d = _with_charsmap(fx["tokenizer"], spm.precompiled_charsmap)
    return _pair(folder, d)


@pytest.fixture(scope="module", params=CONVERT)
def converted(request, tmp_path_factory):
    ours, ref = _converted_pair(request.param, tmp_path_factory.mktemp("conv"))
    return request.param, ours, ref


def test_converted_stress(converted):
    name, ours, ref = converted
    _compare_all(ours, ref, name, full=False)


# every corpus sentence through one converted pipeline in `make test`; the others in `make parity`
@pytest.mark.slow
@pytest.mark.parametrize("key", [k if k == "test_model-xlm-roberta" else pytest.param(k, marks=pytest.mark.parity)
                                 for k in CONVERT])
def test_converted_corpora(tmp_path, key):
    ours, ref = _converted_pair(key, tmp_path)
    _compare_all(ours, ref, key, full=True)


@pytest.mark.parametrize("max_length", [3, 4, 5, 8, 16, 64])
def test_converted_truncation_and_padding(converted, max_length):
    name, ours, ref = converted
    assert_truncation_matches(ours, ref, max_length)


def test_converted_decode(converted):
    name, ours, ref = converted
    for t in C.stress_texts(400, seed=8) + ["Hello  world", " x "]:
        ids = ref.encode(t).ids
        for skip in (True, False):
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip), t


# ------------------------------------------------------------------ trained models, our converter

@pytest.mark.parametrize("family", list(SPM_FAMILIES))
@pytest.mark.parametrize("mname", TRAINED + ["test_model", "test_ja_model"])
def test_convert_spm_model_equals_transformers(mname, family):
    """convert_spm_model writes exactly the tokenizer.json transformers' converter writes."""
    options = dict(FAMILY_OPTIONS[family])
    options.update({("test_model", "albert"): {"do_lower_case": True, "keep_accents": False},
                    ("test_ja_model", "albert"): {"do_lower_case": True, "keep_accents": True},
                    ("test_model", "deberta-v2"): {"do_lower_case": False, "split_by_punct": True},
                    ("test_ja_model", "deberta-v2"): {"do_lower_case": True, "split_by_punct": False}}
                   .get((mname, family), {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = convert_spm_model(_model_path(mname), family, **options)
    got = hashlib.sha256(json.dumps(d, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
    assert got == MANIFEST["converted_sha256"][f"{mname}/{family}"]


def _trained_pair(tmp_path, mname: str, family: str, byte_fallback: bool):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = convert_spm_model(_model_path(mname), family, **FAMILY_OPTIONS[family])
    # the converters drop byte_fallback; the file can still ask for it (as SentencePiece's own models do)
    d["model"]["byte_fallback"] = byte_fallback
    return _pair(tmp_path, d)


@pytest.mark.parametrize("mname", TRAINED)
def test_trained_stress(tmp_path, mname):
    ours, ref = _trained_pair(tmp_path, mname, "xlm-roberta", mname.endswith("-bf"))
    _compare_all(ours, ref, mname, full=False)


@pytest.mark.slow
@pytest.mark.parity
@pytest.mark.parametrize("mname, family", [("trained-8k", "xlm-roberta"), ("trained-8k-bf", "albert"),
                                           ("trained-32k", "deberta-v2"), ("trained-32k-bf", "xlm-roberta")])
def test_trained_corpora(tmp_path, mname, family):
    ours, ref = _trained_pair(tmp_path, mname, family, mname.endswith("-bf"))
    _compare_all(ours, ref, f"{mname}/{family}", full=True)


def test_byte_fallback_tokens(tmp_path):
    """Unknown chars of a byte-fallback model become <0xNN> pieces spanning the unknown text."""
    ours, ref = _trained_pair(tmp_path, "trained-8k-bf", "xlm-roberta", True)
    texts = ["𝄞 music", "emoji 🧑🏿‍🚀 and ⿰", "\U0010fffd\U000e0100 x", "ḁ̴̧͖̫͎͂̈́", "€ ¥ ₹ ₿"]
    assert_encode_matches(ours, ref, texts, "byte fallback")
    assert any(t.startswith("<0x") for t in ours.encode(texts[0]).tokens)


# ------------------------------------------------------------------ checkpoints without tokenizer.json

def _auto_folder(tmp_path, key: str):
    mname, family = _split_name(key)
    src = os.path.join(FIX, f"auto-{key}")
    folder = tmp_path / key
    folder.mkdir()
    shutil.copy(_model_path(mname), folder / SPM_FAMILIES[family][0])
    shutil.copy(os.path.join(src, "tokenizer_config.json"), folder / "tokenizer_config.json")
    return mname, family, src, str(folder)


@pytest.mark.parametrize("key", sorted(set(AUTO) - set(AUTO_OK)))
def test_spm_checkpoint_refused(tmp_path, key):
    """transformers 5.24 cannot build this folder's tokenizer (error.txt): we refuse it with a clear error."""
    _, _, _, folder = _auto_folder(tmp_path, key)
    with pytest.raises(TokenizerFileError, match="not a piece of the model"):
        Tokenizer.from_pretrained(folder)


def _auto_pair(tmp_path, key: str):
    """Our tokenizer of the spm-only folder, and AutoTokenizer's backend (saved by the generator)."""
    mname, family, src, folder = _auto_folder(tmp_path, key)
    backend = json.load(open(os.path.join(src, "backend.json"), encoding="utf-8"))
    d = _with_charsmap(backend["tokenizer"], read_spm_model(_model_path(mname)).precompiled_charsmap)
    ref = tokenizers.Tokenizer.from_str(json.dumps(d))
    # AutoTokenizer's model had the exact scores; tokenizers' JSON reader (serde_json) rounds some
    m = d["model"]
    ref.model = tokenizers.models.Unigram([tuple(v) for v in m["vocab"]], m["unk_id"], m["byte_fallback"])
    return key, Tokenizer.from_pretrained(folder), ref, src, folder, d


@pytest.fixture(scope="module", params=AUTO_OK)
def auto(request, tmp_path_factory):
    return _auto_pair(tmp_path_factory.mktemp("auto"), request.param)


def test_spm_checkpoint_stress(auto):
    key, ours, ref, src, folder, backend = auto
    _compare_all(ours, ref, f"spm-only {key}", full=False)


def test_spm_checkpoint_pipeline_is_transformers(auto):
    """The pipeline built for an spm-only folder is the one transformers' AutoTokenizer built."""
    key, ours, ref, src, folder, backend = auto
    mname, family = _split_name(key)
    cfg = json.load(open(os.path.join(src, "tokenizer_config.json"), encoding="utf-8"))
    mine = spm_checkpoint_tokenizer_json(_model_path(mname), family, cfg)
    for k in ("added_tokens", "normalizer", "pre_tokenizer", "post_processor", "decoder", "model"):
        assert mine[k] == backend[k], k


def test_spm_checkpoint_outputs_match_autotokenizer(auto):
    """Our outputs equal AutoTokenizer's, stored by the generator for sample inputs."""
    key, ours, ref, src, folder, backend = auto
    require()  # the sample inputs include corpus sentences
    out = np.load(os.path.join(src, "outputs.npz"))
    inputs = C.unigram_sample_inputs()
    for name in ("texts", "pairs", "words"):
        items = inputs[name]
        lens = out[f"{name}_len"]
        assert len(lens) == len(items)
        got = ours.encode_batch(items, truncation=False, is_split_into_words=name == "words")
        pos = 0
        for i, n in enumerate(lens):
            n = int(n)
            sl = slice(pos, pos + n)
            assert got["attention_mask"][i].sum() == n, (name, i, items[i])
            assert got["input_ids"][i, :n].tolist() == out[f"{name}_ids"][sl].tolist(), (name, i, items[i])
            assert got["token_type_ids"][i, :n].tolist() == out[f"{name}_type_ids"][sl].tolist(), (name, i)
            assert got["special_tokens_mask"][i, :n].tolist() == out[f"{name}_special"][sl].tolist(), (name, i)
            assert got["offset_mapping"][i, :n].tolist() == out[f"{name}_offsets"][sl].tolist(), (name, i, items[i])
            assert got["word_ids"][i, :n].tolist() == out[f"{name}_word_ids"][sl].tolist(), (name, i, items[i])
            pos += n


# one folder per family (the stress set and the sample outputs cover every folder)
AUTO_CORPORA = ["test_ja_model-xlm-roberta", "trained-albert-4k-albert", "trained-debertav3-4k-deberta-v2"]


@pytest.mark.slow
@pytest.mark.parity
@pytest.mark.parametrize("key", AUTO_CORPORA)
def test_spm_checkpoint_corpora(tmp_path, key):
    key, ours, ref, src, folder, backend = _auto_pair(tmp_path, key)
    _compare_all(ours, ref, f"spm-only {key}", full=True)


def test_spm_family_detection(tmp_path):
    assert spm_family({"tokenizer_class": "XLMRobertaTokenizerFast"}) == "xlm-roberta"
    assert spm_family({"tokenizer_class": "AlbertTokenizer"}, {"model_type": "bert"}) == "albert"
    assert spm_family({}, {"model_type": "deberta-v2"}) == "deberta-v2"
    assert spm_family({"tokenizer_class": "BertTokenizer"}, {"model_type": "bert"}) is None
    assert spm_family({"tokenizer_class": "CamembertTokenizerFast"}) == "camembert"
    assert spm_family({}, {"model_type": "camembert"}) == "camembert"
    assert spm_family({}, {"tokenizer_class": "CamembertTokenizer", "model_type": "roberta"}) == "camembert"
    # a folder whose config says ALBERT but whose model file has the XLM-R name
    folder = tmp_path / "f"
    folder.mkdir()
    shutil.copy(_model_path("trained-albert-4k"), folder / "sentencepiece.bpe.model")
    (folder / "config.json").write_text('{"model_type": "albert"}', encoding="utf-8")
    tok = Tokenizer.from_pretrained(str(folder))
    assert tok.cls_token_id == tok.token_to_id("[CLS]") and tok.unk_token_id == 1
    # the same file name under CamemBERT's config: fairseq's layout, the model's <s> and </s> at 5 and 6
    shutil.copy(_model_path("test_model"), folder / "sentencepiece.bpe.model")
    (folder / "config.json").write_text('{"model_type": "camembert"}', encoding="utf-8")
    tok = Tokenizer.from_pretrained(str(folder))
    assert (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id, tok.unk_token_id) == (5, 6, 1, 3)
    assert tok.encode("a").ids[::len(tok.encode("a").ids) - 1] == [5, 6]


# ------------------------------------------------------------------ every code point

CODE_POINTS = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]


def _code_point_texts() -> List[str]:
    """Each code point alone, after 'a', after NBSP (a Precompiled entry), before a combining acute and
    between two of a kind; WhitespaceSplit makes each unit its own pre-token (own offsets)."""
    out = []
    for i in range(0, len(CODE_POINTS), 256):
        chunk = [chr(c) for c in CODE_POINTS[i:i + 256]]
        out.append(" ".join(chunk))
        out.append(" ".join(f"a{c}\u00a0{c}{c}\u0301{c}" for c in chunk))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("normalizer", ["Precompiled"] + [pytest.param(n, marks=pytest.mark.parity) for n in
                                                          ("NFC", "NFD", "NFKC", "NFKD", "StripAccents+Lowercase")])
def test_every_code_point_normalizers(tmp_path, normalizer):
    """Normalized text (the strings of fused unknown tokens) and offsets for every code point."""
    if normalizer == "Precompiled":
        path = require("spm/nmt_nfkc.bin")[0]
        with open(path, "rb") as f:
            norm = {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(f.read()).decode("ascii")}
    elif normalizer == "StripAccents+Lowercase":
        norm = {"type": "Sequence", "normalizers": [{"type": "NFKD"}, {"type": "StripAccents"}, {"type": "Lowercase"}]}
    else:
        norm = {"type": normalizer}
    d = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": norm,
         "pre_tokenizer": {"type": "WhitespaceSplit"}, "post_processor": None, "decoder": None,
         "model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0], ["a", -1.0]], "byte_fallback": False}}
    ours, ref = _pair(tmp_path, d)
    texts = _code_point_texts()
    bad = []
    for t in texts:
        a, b = ours.encode(t), ref.encode(t)
        if (a.ids, a.tokens, a.offsets, a.word_ids) != (b.ids, b.tokens, b.offsets, b.word_ids):
            bad.append(t)
    assert not bad, f"{normalizer}: {len(bad)} of {len(texts)} texts differ; first {bad[0][:80]!r}"
    print(f"\n{normalizer}: {len(CODE_POINTS)} code points in {len(texts)} texts identical")


def test_precompiled_sample_entries(tmp_path):
    """The charsmap's double array, read through the normalizer: entries of nmt_nfkc.bin."""
    path = require("spm/nmt_nfkc.bin")[0]
    with open(path, "rb") as f:
        norm = {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(f.read()).decode("ascii")}
    d = {"normalizer": norm, "pre_tokenizer": None, "added_tokens": [],
         "model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0]]}}
    ours, ref = _pair(tmp_path, d)
    cases = {"ﬁ": "fi", "Ａ": "A", "①": "1", "™": "TM", "½": "1⁄2", "e\u0301": "é", "\u3000": " ", "\u00a0": " ",
             "Ａ\u0301": "A", "x\u001ey": "xy"}
    for src, want in cases.items():
        assert "".join(ours.encode(src).tokens) == want == "".join(ref.encode(src).tokens), src


# ------------------------------------------------------------------ model details, errors, robustness

def test_unigram_doc_example(tmp_path):
    """tokenizers' Unigram::encode example: fused unknowns, ties, best path."""
    vocab = [["<unk>", 0.0], ["a", 0.0], ["b", 0.0], ["c", 0.0], ["d", 0.0], ["cd", 1.0], ["ab", 2.0], ["abc", 5.0],
             ["abcd", 10.0]]
    d = {"model": {"type": "Unigram", "unk_id": 0, "vocab": vocab}, "added_tokens": []}
    ours, ref = _pair(tmp_path, d)
    enc = ours.encode("abcdacdxx")
    assert enc.tokens == ["abcd", "a", "cd", "xx"] == ref.encode("abcdacdxx").tokens
    assert enc.offsets[-1] == (7, 9) and enc.ids[-1] == 0
    assert_encode_matches(ours, ref, ["", "xxabx", "dcba", "<unk>x", "a<unk>"], "doc example")


@pytest.mark.parametrize("pattern", [{"Regex": r"\A +| +\z"}, {"Regex": " {2,}"}, {"Regex": r"\s{2,}|[\n\r\t]"},
                                     {"Regex": "[^a-z ]+"}, {"Regex": r"x?y{1,3}|\sz"}, {"String": "''"},
                                     {"String": "a.b*"}, {"Regex": r"\A▁"}])
@pytest.mark.parametrize("content", ["▁▁", ""])
def test_replace_patterns(tmp_path, pattern, content):
    """Replace with the supported regular expressions and literal strings, against tokenizers (Oniguruma);
    an empty content deletes the matches (a match at the text's start once passed NULL to memcpy)."""
    d = {"normalizer": {"type": "Replace", "pattern": pattern, "content": content},
         "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first"},
         "added_tokens": [], "model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0], ["▁", -1.0]]}}
    ours, ref = _pair(tmp_path, d)
    texts = C.stress_texts(500, seed=31) + ["  a  b  ", "''x''", "a.b*a.bb", "xyyy yyyy z\tz", "▁a", " ▁ "]
    assert_encode_matches(ours, ref, texts, f"Replace {pattern} -> {content!r}")


def test_unigram_without_unk_id(tmp_path):
    d = {"model": {"type": "Unigram", "unk_id": None, "vocab": [["a", -1.0], ["b", -2.0]]}, "added_tokens": []}
    ours, ref = _pair(tmp_path, d)
    assert ours.encode("abba").ids == ref.encode("abba").ids
    with pytest.raises(TokenizerFileError, match=r"tokenizer\.json: .*unk_id"):  # names the file (issue 17)
        ours.encode("abc")
    with pytest.raises(TokenizerFileError, match="unk_id"):
        ours.encode_batch(["ab", "abc"])
    with pytest.raises(Exception):
        ref.encode("abc")


@pytest.mark.parametrize("component, match", [
    ({"normalizer": {"type": "BertNormalizer"}}, "normalizer 'BertNormalizer'"),
    ({"normalizer": {"type": "Replace", "pattern": {"Regex": "(a|b)+"}, "content": "x"}}, r"Regex pattern '\(a\|b\)\+'"),
    ({"normalizer": {"type": "Replace", "pattern": {"Regex": "a*"}, "content": "x"}}, "empty string"),
    ({"pre_tokenizer": {"type": "ByteLevel"}}, "pre-tokenizer 'ByteLevel'"),
    ({"decoder": {"type": "CTC"}}, "decoder 'CTC'"),
])
def test_unsupported_components(tmp_path, component, match):
    d = {"model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0]]}, "added_tokens": [], **component}
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(UnsupportedTokenizerError, match=match) as e:
        Tokenizer.from_file(str(path))
    assert "tokenizer.json" in str(e.value)


@pytest.mark.parametrize("blob, match", [(b"", "too short"), (b"\x10\x00\x00\x00abcd", "does not fit"),
                                         (b"\xff\xff\xff\x7f", "does not fit"),
                                         (b"\x04\x00\x00\x00\x00\x00\x00\x00\xff", "not valid UTF-8")])
def test_bad_charsmap(tmp_path, blob, match):
    d = {"model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0]]}, "added_tokens": [],
         "normalizer": {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(blob).decode("ascii")}}
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=match):
        Tokenizer.from_file(str(path))


def test_spm_reader_errors(tmp_path):
    good = open(_model_path("test_model"), "rb").read()
    cases = {b"\x0a": "truncated protobuf varint", b"\x0a\xff\xff\xff\xff\x0f": "runs past the end",
             b"\x0a" + b"\xff" * 11: "longer than 10 bytes", b"\x0b": "wire type 3", b"": "no pieces",
             b"\x0a\x02\x0a\x00": "piece 0 is empty", b"\x0a\x03\x0a\x01\xff": "not valid UTF-8",
             b"\x0a\x03\x0a\x01a\x12\x02\x18\x02": "model type BPE", b"\x0a\x03\x0a\x01a\x12\x03\xc0\x02\x05": "unk_id 5"}
    for blob, match in cases.items():
        p = tmp_path / "m.model"
        p.write_bytes(blob)
        with pytest.raises(TokenizerFileError, match=match):
            read_spm_model(str(p))
    p = tmp_path / "cut.model"
    p.write_bytes(good[:len(good) // 2])
    with pytest.raises(TokenizerFileError):
        read_spm_model(str(p))


def _mutated(rng: random.Random, data: bytes, max_flips: int, cut: float) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randrange(1, max_flips)):
        b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b[:rng.randrange(len(b))] if rng.random() < cut else b)


def test_fuzz_spm_reader_and_charsmap(tmp_path):
    """Random byte mutations of a model file and of a charsmap give clean errors or working tokenizers."""
    rng = random.Random(14)
    good = open(_model_path("test_model"), "rb").read()
    charsmap = read_spm_model(_model_path("test_model")).precompiled_charsmap
    texts = C.stress_texts(40, seed=3)
    p = tmp_path / "m.model"
    for _ in range(120):
        p.write_bytes(_mutated(rng, good, 8, 0.3))
        try:
            read_spm_model(str(p))
        except TokenizerFileError:
            pass
    path = tmp_path / "t.json"
    for _ in range(60):
        blob = _mutated(rng, charsmap, 40, 0.2)
        d = {"model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0], ["a", -1.0]]}, "added_tokens": [],
             "normalizer": {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(blob).decode("ascii")}}
        path.write_text(json.dumps(d), encoding="utf-8")
        try:
            tok = Tokenizer.from_file(str(path))
        except TokenizerFileError:
            continue
        tok.encode_batch(texts)
