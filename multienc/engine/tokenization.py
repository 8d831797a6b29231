"""Tokenizers for the BERT family (WordPiece), the RoBERTa family (byte-level BPE), SentencePiece
Unigram models (XLM-RoBERTa, ALBERT, DeBERTa-v2/v3) and BERTweet (fastBPE).

The tokenization itself runs in C (``multienc.engine._C.Tokenizer``) with the behaviour of
HuggingFace's fast tokenizers: the same ids, type ids, character offsets and word
indices (BERTweet, which has only a Python tokenizer in transformers: its ids, with the
offsets and word indices of its words and pieces). This module reads the tokenizer files and
offers the Python API::

    tok = Tokenizer.from_pretrained("path/to/bert-base-uncased")
    enc = tok.encode("Hello world!", pair="Second sentence")
    enc.ids, enc.type_ids, enc.offsets, enc.word_ids, enc.tokens
    batch = tok.encode_batch(["a text", ("first", "second")], max_length=128)
    batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]

Files understood: ``tokenizer.json`` (HF ``tokenizers`` format) or the legacy
``vocab.txt`` (WordPiece; with ``bpe.codes``, BERTweet's fastBPE) / ``vocab.json`` + ``merges.txt``
(BPE) or a SentencePiece model
(``sentencepiece.bpe.model`` / ``spiece.model`` / ``spm.model``, read without protobuf), with
``tokenizer_config.json`` and ``special_tokens_map.json``.
"""
from __future__ import annotations

import base64
import binascii
import io
import os
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from multienc.engine import _C
from multienc.formats import schema

__all__ = ["Encoding", "SpmModel", "Tokenizer", "TokenizerFileError", "UnsupportedTokenizerError", "convert_spm_model",
           "read_spm_model", "spm_checkpoint_tokenizer_json", "spm_family", "spm_folder_tokenizer_json",
           "SPM_FAMILIES"]

TextInput = Union[str, Sequence[str]]
BatchInput = Union[TextInput, Tuple[TextInput, TextInput], List[TextInput]]

# Kinds shared with csrc/tokenize/tokenizer.h and csrc/tokenize/normalizers.h.
_WORDPIECE, _BPE, _UNIGRAM, _FASTBPE = 1, 2, 3, 4
_PRE_NONE, _PRE_BERT, _PRE_BYTELEVEL, _PRE_STEPS, _PRE_PY_WORDS = 0, 1, 2, 3, 4
_NORM_KINDS = {"Precompiled": 1, "Replace": 2, "NFC": 3, "NFD": 4, "NFKC": 5, "NFKD": 6, "Strip": 7,
               "StripAccents": 8, "Lowercase": 9}
_PRE_METASPACE, _PRE_WHITESPACE_SPLIT, _PRE_PUNCTUATION = 1, 2, 3
_PREPEND_SCHEMES = {"always": 0, "first": 1, "never": 2}
_SPLIT_BEHAVIORS = {"Removed": 0, "Isolated": 1, "MergedWithPrevious": 2, "MergedWithNext": 3, "Contiguous": 4}
_RE_SET, _RE_NSET, _RE_BEGIN, _RE_END, _RE_SPACE_BIT = 0, 1, 2, 3, 8
_POST_NONE, _POST_TEMPLATE = 0, 1
_TMPL_A, _TMPL_B = -1, -2
_AT_SINGLE_WORD, _AT_LSTRIP, _AT_RSTRIP, _AT_NORMALIZED, _AT_SPECIAL = 1, 2, 4, 8, 16

_SPECIAL_KEYS = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token", "bos_token", "eos_token")


class TokenizerFileError(ValueError):
    """A tokenizer file is missing, unreadable or malformed (the message names the file and field)."""


class UnsupportedTokenizerError(TokenizerFileError, NotImplementedError):
    """A tokenizer file uses a component multienc does not implement (the message names it and the file)."""


# ---------------------------------------------------------------- what the readers accept
# Only the fields multienc reads are described; every other key is ignored, as in HF. Ids and type
# ids are int32 for the C tokenizer; the largest id is further bounded by the number of tokens.
_ID = schema.Int(0, (1 << 31) - 1)
_FLAG = schema.Bool()
_ADDED_TOKEN = schema.Obj({"id": _ID, "content": schema.Str(1), "single_word": _FLAG, "lstrip": _FLAG,
                           "rstrip": _FLAG, "normalized": _FLAG, "special": _FLAG}, required=("id", "content"))


def _one_template_kind(item: Dict[str, Any], field: str) -> None:
    if ("Sequence" in item) == ("SpecialToken" in item):
        raise schema.SchemaError(field, "a template item is either {\"Sequence\": ...} or {\"SpecialToken\": ...}")


_TEMPLATE = schema.Arr(schema.Obj({
    "Sequence": schema.Obj({"id": schema.Const("A", "B"), "type_id": _ID}, required=("id", "type_id")),
    "SpecialToken": schema.Obj({"id": schema.Str(), "type_id": _ID}, required=("id", "type_id")),
}, check=_one_template_kind), max_len=1024)
_PAIR = schema.Tup(schema.Str(), _ID)
_PATTERN = schema.Obj({"String": schema.Str(), "Regex": schema.Str()})
# Components; a Sequence holds a list of components (nesting is bounded by _MAX_NESTING).
_NORMALIZER = schema.Obj({"type": schema.Str(), "clean_text": _FLAG, "handle_chinese_chars": _FLAG,
                          "strip_accents": schema.Opt(_FLAG), "lowercase": _FLAG,
                          "precompiled_charsmap": schema.Opt(schema.Str(max_len=1 << 28)), "pattern": _PATTERN,
                          "content": schema.Str(), "strip_left": _FLAG, "strip_right": _FLAG})
_NORMALIZER.fields["normalizers"] = schema.Arr(_NORMALIZER, max_len=1024)
_PRE_TOKENIZER = schema.Obj({"type": schema.Str(), "add_prefix_space": _FLAG, "use_regex": _FLAG,
                             "replacement": schema.Str(), "prepend_scheme": schema.Str(), "split": _FLAG,
                             "behavior": schema.Str()})
_PRE_TOKENIZER.fields["pretokenizers"] = schema.Arr(_PRE_TOKENIZER, max_len=1024)
_DECODER = schema.Obj({"type": schema.Str(), "prefix": schema.Str(), "cleanup": _FLAG, "replacement": schema.Str(),
                       "prepend_scheme": schema.Str(), "split": _FLAG, "add_prefix_space": _FLAG,
                       "pattern": _PATTERN, "content": schema.Str(), "start": schema.Int(0, 1 << 20),
                       "stop": schema.Int(0, 1 << 20)})
_DECODER.fields["decoders"] = schema.Arr(_DECODER, max_len=1024)
_MAX_NESTING = 32  # Sequence inside Sequence
_TOKENIZER_JSON = schema.Obj({
    "model": schema.Obj({
        "type": schema.Opt(schema.Str()),
        # WordPiece / BPE: token -> id; Unigram: [piece, score] in id order
        "vocab": schema.Either(schema.MapOf(_ID), schema.Arr(schema.Tup(schema.Str(), schema.Float()),
                                                             max_len=(1 << 31) - 1),
                               what="an object of token -> id or a list of [piece, score]"),
        "unk_id": schema.Opt(_ID),
        "merges": schema.Arr(schema.Either(schema.Str(), schema.Tup(schema.Str(), schema.Str()),
                                           what='"a b" or ["a", "b"]')),
        "unk_token": schema.Opt(schema.Str()),
        "continuing_subword_prefix": schema.Opt(schema.Str()),
        "end_of_word_suffix": schema.Opt(schema.Str()),
        "max_input_chars_per_word": schema.Int(0, (1 << 31) - 1),
        "dropout": schema.Opt(schema.Float(0.0, 1.0)),
        "fuse_unk": schema.Opt(_FLAG), "byte_fallback": schema.Opt(_FLAG), "ignore_merges": schema.Opt(_FLAG),
    }, required=("vocab",)),
    "normalizer": schema.Opt(_NORMALIZER),
    "pre_tokenizer": schema.Opt(_PRE_TOKENIZER),
    "post_processor": schema.Opt(schema.Obj({
        "type": schema.Str(), "single": _TEMPLATE, "pair": _TEMPLATE,
        "special_tokens": schema.MapOf(schema.Obj({"id": schema.Str(), "ids": schema.Arr(_ID, max_len=1024),
                                                   "tokens": schema.Arr(schema.Str(), max_len=1024)},
                                                  required=("ids",))),
        "sep": _PAIR, "cls": _PAIR, "trim_offsets": _FLAG, "add_prefix_space": _FLAG})),
    "decoder": schema.Opt(_DECODER),
    "added_tokens": schema.Opt(schema.Arr(_ADDED_TOKEN)),
    "padding": schema.Opt(schema.Obj({"pad_id": _ID})),
}, required=("model",))


def _digits(value: Any, field: str) -> str:
    schema.Str(1, 10)(value, field)
    if not value.isdigit() or not value.isascii() or int(value) >= 1 << 31:
        raise schema.SchemaError(field, f"key {value!r} is not a token id")
    return value


_SPECIAL = schema.Opt(schema.Either(schema.Str(), schema.Obj({"content": schema.Str()}, required=("content",)),
                                    what="a token string or an AddedToken object"))
_TOKENIZER_CONFIG = schema.Obj({
    "do_lower_case": _FLAG, "tokenize_chinese_chars": _FLAG, "strip_accents": schema.Opt(_FLAG),
    "add_prefix_space": _FLAG, "trim_offsets": _FLAG, "keep_accents": _FLAG, "split_by_punct": _FLAG,
    "tokenizer_class": schema.Opt(schema.Str()),
    # transformers writes int(1e30) when there is no limit
    "model_max_length": schema.Opt(schema.Either(schema.Int(1, 1 << 128), schema.Float(1.0),
                                                 what="a positive number")),
    "added_tokens_decoder": schema.MapOf(schema.Obj(
        {"content": schema.Str(1), "single_word": _FLAG, "lstrip": _FLAG, "rstrip": _FLAG, "normalized": _FLAG,
         "special": _FLAG}, required=("content",)), key=_digits),
    **{role: _SPECIAL for role in ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token", "bos_token",
                                   "eos_token")},
})


def _checked(value: Any, spec: "schema.Schema", path: str) -> Any:
    """``value`` checked against ``spec``; TokenizerFileError naming the file and the field otherwise."""
    try:
        return schema.check(value, spec)
    except schema.SchemaError as e:
        raise TokenizerFileError(f"{path}: {e}") from None
    except RecursionError:
        raise TokenizerFileError(f"{path}: components nested too deeply") from None


#: One encoded input (C type), with the list attributes of HF ``tokenizers.Encoding``: ``ids``,
#: ``type_ids``, ``tokens``, ``offsets``, ``word_ids``, ``sequence_ids``, ``special_tokens_mask``,
#: ``attention_mask``; see ``help(Encoding)``.
Encoding = _C.Encoding


@dataclass
class _Spec:
    """Everything the C tokenizer is built from (filled by the file readers)."""

    model: int
    vocab: Dict[str, int]
    merges: List[Tuple[str, str]] = field(default_factory=list)
    unk_token: Optional[str] = None
    max_input_chars_per_word: int = 100
    bert_normalizer: bool = False
    clean_text: bool = True
    handle_chinese_chars: bool = True
    strip_accents: Optional[bool] = None
    lowercase: bool = False
    pre_tokenizer: int = _PRE_NONE
    add_prefix_space: bool = False
    use_regex: bool = True
    post: int = _POST_NONE
    # (token id | _TMPL_A/_TMPL_B, type id[, the template's token string])
    single: List[Tuple[Any, ...]] = field(default_factory=list)
    pair: List[Tuple[Any, ...]] = field(default_factory=list)
    merges_file: Optional[str] = None  # named in merge errors
    trim_offsets: bool = False
    post_add_prefix_space: bool = False
    python_truncation: bool = False  # longest_first as transformers' Python tokenizers split pairs
    added: List[Dict[str, Any]] = field(default_factory=list)  # HF AddedToken dicts with "id"
    decoder: str = "wordpiece"  # or "bytelevel", "fastbpe", "steps"
    decoder_prefix: str = "##"
    decoder_cleanup: bool = True
    special: Dict[str, str] = field(default_factory=dict)  # role (e.g. "pad_token") -> token
    model_max_length: Optional[int] = None
    pad_id: Optional[int] = None
    # Unigram: pieces in id order (repeats allowed: the later id wins in `vocab`) and their scores
    pieces: List[str] = field(default_factory=list)
    scores: List[float] = field(default_factory=list)
    unk_id: Optional[int] = None  # Unigram, fastBPE
    byte_fallback: bool = False
    # Unigram pipelines: normalizer / pre-tokenizer steps as the C binding takes them
    normalizers: List[Tuple[Any, ...]] = field(default_factory=list)
    pre_tokenizers: List[Tuple[Any, ...]] = field(default_factory=list)
    decoders: List[Dict[str, Any]] = field(default_factory=list)  # decoder = "steps": tokenizers decoders


_POW10 = [float(f"1e{k}") for k in range(309)]
_U64_MAX = (1 << 64) - 1


def _serde_json_float(text: str) -> float:
    """A JSON number as serde_json (without its float_roundtrip feature, as tokenizers builds it) reads
    it into an f64: the decimal significand as a u64 (digits past its range dropped), converted to f64,
    then one multiplication or division by a power of ten. This is not always the correctly rounded
    value (1 ulp off for many 17-digit scores), and Unigram's Viterbi must see the same scores."""
    i, n = 0, len(text)
    positive = True
    if text[0] == "-":
        positive, i = False, 1
    sig, exp = 0, 0
    overflowed = False
    while i < n and text[i].isdigit():  # integer part
        d = ord(text[i]) - 48
        if overflowed or sig > (_U64_MAX - d) // 10:
            overflowed = True
            exp += 1
        else:
            sig = sig * 10 + d
        i += 1
    if i < n and text[i] == ".":
        i += 1
        while i < n and text[i].isdigit():
            d = ord(text[i]) - 48
            if not overflowed and sig <= (_U64_MAX - d) // 10:
                sig = sig * 10 + d
                exp -= 1
            else:
                overflowed = True
            i += 1
    if i < n and text[i] in "eE":
        i += 1
        eneg = False
        if text[i] in "+-":
            eneg, i = text[i] == "-", i + 1
        e = int(text[i:])
        if e > 2 ** 31 - 1:
            return (0.0 if sig == 0 or eneg else float("inf")) * (1 if positive else -1)
        exp = max(-2 ** 31, min(2 ** 31 - 1, exp - e if eneg else exp + e))
    f = float(sig)
    while True:
        if abs(exp) < len(_POW10):
            f = f * _POW10[exp] if exp >= 0 else f / _POW10[-exp]
            break
        if f == 0.0:
            break
        if exp >= 0:
            raise ValueError(f"number out of range: {text}")
        f /= 1e308
        exp += 308
    if f == float("inf"):
        raise ValueError(f"number out of range: {text}")
    return f if positive else -f


def _serde_json_int(text: str) -> Any:
    """Integers as serde_json reads them: exact within (i|u)64, else an f64 as _serde_json_float."""
    v = int(text)
    return v if -(1 << 63) <= v <= _U64_MAX else _serde_json_float(text)


def _read_json(path: str, serde_numbers: bool = False) -> Any:
    """A JSON file; `serde_numbers`: numbers as tokenizers (serde_json) reads them."""
    try:
        with open(path, encoding="utf-8") as f:
            if serde_numbers:
                return schema.load_json(f.read(), parse_float=_serde_json_float, parse_int=_serde_json_int)
            return schema.load_json(f.read())
    except FileNotFoundError:
        raise TokenizerFileError(f"tokenizer file not found: {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise TokenizerFileError(f"cannot read tokenizer file {path}: {e}") from None


def _read_lines(path: str) -> List[str]:
    """Lines of a text file as Rust's BufRead::lines yields them (no '\\n' / '\\r\\n')."""
    try:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8")
    except FileNotFoundError:
        raise TokenizerFileError(f"tokenizer file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TokenizerFileError(f"cannot read tokenizer file {path}: {e}") from None
    lines = data.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def _read_text(path: str) -> str:
    """A text file as Python's open(path, encoding="utf-8").read() gives it (universal newlines)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise TokenizerFileError(f"tokenizer file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TokenizerFileError(f"cannot read tokenizer file {path}: {e}") from None


def _rust_trim_end(s: str) -> str:
    """str::trim_end: strip trailing White_Space (Python's isspace also covers U+001C..U+001F)."""
    end = len(s)
    while end and s[end - 1].isspace() and s[end - 1] not in "\x1c\x1d\x1e\x1f":
        end -= 1
    return s[:end]


def _token_content(value: Any) -> Optional[str]:
    """A special token given as a string or as an AddedToken dict."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get("content")
    return str(value)


def _added_dict(content: str, token_id: int, special: bool = True, **flags: bool) -> Dict[str, Any]:
    d = {"id": token_id, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": not special, "special": special}
    d.update(flags)
    return d


def _merge_pairs(raw: Iterable[Any], where: str) -> List[Tuple[str, str]]:
    out = []
    for i, m in enumerate(raw):
        parts = m.split(" ") if isinstance(m, str) else list(m)
        if len(parts) != 2 or not all(isinstance(p, str) for p in parts):
            raise TokenizerFileError(f"{where}: merge {i + 1} ({m!r}) is not two tokens separated by one space")
        out.append((parts[0], parts[1]))
    return out


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise UnsupportedTokenizerError(f"{where}: {what} is not supported by multienc's tokenizers")


# ------------------------------------------------------------------ Unigram pipeline components

_RE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "f": "\f", "v": "\v", "a": "\a", "e": "\x1b", "0": "\0"}
_RE_META = set("\\^$.|?*+()[]{}")


def _regex_program(pattern: str, literal: bool, where: str) -> List[int]:
    """Compile a Replace pattern into the int32 program of csrc/tokenize/normalizers.h.

    Literal (``String``) patterns and the regular expressions the SentencePiece converters write are
    supported: alternatives of literal chars, ``[...]`` classes, ``\\s``, ``\\A`` / ``\\z``, each with
    an optional greedy ``{n,}`` / ``{n,m}`` / ``{n}`` / ``+`` / ``*`` / ``?``. Anything else (groups,
    lazy quantifiers, look-around, ...) and patterns that can match the empty string raise
    TokenizerFileError naming the pattern."""
    def unsupported(why: str) -> TokenizerFileError:
        kind = "String" if literal else "Regex"
        return UnsupportedTokenizerError(f"{where}: Replace normalizer with {kind} pattern {pattern!r} is not supported "
                                  f"by multienc's tokenizers ({why})")

    if literal:
        if not pattern:
            raise unsupported("empty pattern")
        items = [[(_RE_SET, 1, 1, [(ord(c), ord(c))])] for c in pattern]
        alts = [[it[0] for it in items]]
    else:
        alts, cur, i, n = [], [], 0, len(pattern)

        def escape_char(c: str) -> Tuple[int, List[Tuple[int, int]]]:
            if c == "s":
                return _RE_SET | _RE_SPACE_BIT, []
            if c in _RE_ESCAPES:
                return _RE_SET, [(ord(_RE_ESCAPES[c]),) * 2]
            if c in _RE_META or c in "-/ '\"#&~@%=:;,!<>`":
                return _RE_SET, [(ord(c),) * 2]
            raise unsupported(f"escape \\{c}")

        while i < n:
            c = pattern[i]
            if c == "|":
                alts.append(cur)
                cur = []
                i += 1
                continue
            if c == "\\":
                if i + 1 >= n:
                    raise unsupported("trailing backslash")
                e = pattern[i + 1]
                i += 2
                if e == "A":
                    cur.append((_RE_BEGIN, 0, 0, []))
                    continue
                if e == "z":
                    cur.append((_RE_END, 0, 0, []))
                    continue
                kind, ranges = escape_char(e)
            elif c == "[":
                j, kind, ranges = i + 1, _RE_SET, []
                if j < n and pattern[j] == "^":
                    kind, j = _RE_NSET, j + 1
                first = True
                while j < n and (pattern[j] != "]" or first):
                    first = False
                    if pattern[j] == "\\":
                        if j + 1 >= n:
                            raise unsupported("trailing backslash")
                        k2, r2 = escape_char(pattern[j + 1])
                        kind |= k2 & _RE_SPACE_BIT
                        ranges.extend(r2)
                        j += 2
                        continue
                    if pattern[j] == "[":
                        raise unsupported("nested class")
                    lo = ord(pattern[j])
                    if j + 2 < n and pattern[j + 1] == "-" and pattern[j + 2] != "]":
                        hi = ord(pattern[j + 2])
                        if hi < lo:
                            raise unsupported("reversed range")
                        ranges.append((lo, hi))
                        j += 3
                    else:
                        ranges.append((lo, lo))
                        j += 1
                if j >= n:
                    raise unsupported("unterminated class")
                i = j + 1
            elif c in "()^$.?*+{}]":
                raise unsupported(f"{c!r} outside a supported construct")
            else:
                kind, ranges = _RE_SET, [(ord(c), ord(c))]
                i += 1
            lo_q, hi_q = 1, 1
            if i < n and pattern[i] in "+*?{":
                q = pattern[i]
                if q == "{":
                    m = re.match(r"\{(\d+)(,(\d*))?\}", pattern[i:])
                    if not m:
                        raise unsupported("malformed {} quantifier")
                    lo_q = int(m.group(1))
                    hi_q = lo_q if m.group(2) is None else (-1 if m.group(3) == "" else int(m.group(3)))
                    if hi_q != -1 and hi_q < lo_q:
                        raise unsupported("malformed {} quantifier")
                    i += m.end()
                else:
                    lo_q, hi_q = {"+": (1, -1), "*": (0, -1), "?": (0, 1)}[q]
                    i += 1
                if i < n and pattern[i] in "+?":
                    raise unsupported("lazy or possessive quantifier")
            cur.append((kind, lo_q, hi_q, ranges))
        alts.append(cur)
    prog = [len(alts)]
    for alt in alts:
        if not alt or sum(it[1] for it in alt if it[0] in (_RE_SET, _RE_NSET) or it[0] & _RE_SPACE_BIT) < 1:
            raise unsupported("it can match the empty string")
        if len(alt) > 64 or len(alts) > 64:
            raise unsupported("too long")
        if sum(1 for it in alt if it[1] != it[2]) > 3:  # bounds the backtracking (polynomial degree)
            raise unsupported("more than 3 variable-length items in one alternative")
        prog.append(len(alt))
        for kind, lo_q, hi_q, ranges in alt:
            prog += [kind, lo_q, hi_q, len(ranges)]
            for a, b in ranges:
                prog += [a, b]
    return prog


def _steps(obj: Any, key: str, what: str, where: str, one: Any, depth: int = 0) -> List[Any]:
    """The components of a tokenizer.json component, a Sequence (its list under `key`) flattened;
    `one` turns a single component into a list of steps."""
    if obj is None:
        return []
    if not isinstance(obj, dict):
        raise TokenizerFileError(f"{where}: {what} must be an object")
    if obj.get("type") != "Sequence":
        return one(obj, where)
    seq = obj.get(key)
    if not isinstance(seq, list):
        raise TokenizerFileError(f"{where}: Sequence {what} without a {key!r} list")
    if depth >= _MAX_NESTING:
        raise TokenizerFileError(f"{where}: Sequence {what}s nested more than {_MAX_NESTING} deep")
    return [x for sub in seq for x in _steps(sub, key, what, where, one, depth + 1)]


def _normalizer_steps(n: Any, where: str) -> List[Tuple[Any, ...]]:
    """A tokenizer.json normalizer (Sequence flattened) as (kind, left, right, charsmap, program, content)."""
    return _steps(n, "normalizers", "normalizer", where, _normalizer_step)


def _normalizer_step(n: Dict[str, Any], where: str) -> List[Tuple[Any, ...]]:
    t = n.get("type")
    if t == "Precompiled":
        raw = n.get("precompiled_charsmap")
        if not isinstance(raw, str):
            raise TokenizerFileError(f"{where}: Precompiled normalizer: precompiled_charsmap must be a base64 string")
        try:
            blob = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as e:
            raise TokenizerFileError(f"{where}: Precompiled normalizer: bad base64 ({e})") from None
        return [(_NORM_KINDS[t], 0, 0, blob, None, None)]
    if t == "Replace":
        pat, content = n.get("pattern"), n.get("content")
        if not isinstance(pat, dict) or len(pat) != 1 or not isinstance(content, str):
            raise TokenizerFileError(f"{where}: Replace normalizer needs pattern {{String|Regex}} and content")
        (pk, pv), = pat.items()
        if pk not in ("String", "Regex") or not isinstance(pv, str):
            raise TokenizerFileError(f"{where}: Replace normalizer: unknown pattern {pat!r}")
        return [(_NORM_KINDS[t], 0, 0, None, _regex_program(pv, pk == "String", where), content)]
    if t == "Strip":
        return [(_NORM_KINDS[t], int(bool(n.get("strip_left", True))), int(bool(n.get("strip_right", True))),
                 None, None, None)]
    if t in ("NFC", "NFD", "NFKC", "NFKD", "StripAccents", "Lowercase"):
        return [(_NORM_KINDS[t], 0, 0, None, None, None)]
    raise UnsupportedTokenizerError(f"{where}: normalizer {t!r} is not supported by multienc's tokenizers "
                             "for Unigram models")


def _metaspace_scheme(p: Dict[str, Any], where: str) -> str:
    """prepend_scheme of a Metaspace object, as tokenizers deserializes it (legacy add_prefix_space)."""
    scheme = p.get("prepend_scheme", "always")
    if scheme not in _PREPEND_SCHEMES:
        raise TokenizerFileError(f"{where}: Metaspace: unknown prepend_scheme {scheme!r}")
    if p.get("add_prefix_space") is False:
        if scheme != "never":
            raise TokenizerFileError(f"{where}: Metaspace: add_prefix_space does not match declared prepend_scheme")
    return scheme


def _pre_tokenizer_steps(p: Any, where: str) -> List[Tuple[Any, ...]]:
    """A tokenizer.json pre-tokenizer (Sequence flattened) as (kind, replacement, scheme, split, behavior)."""
    return _steps(p, "pretokenizers", "pre-tokenizer", where, _pre_tokenizer_step)


def _pre_tokenizer_step(p: Dict[str, Any], where: str) -> List[Tuple[Any, ...]]:
    t = p.get("type")
    if t == "Metaspace":
        repl = p.get("replacement", "\u2581")
        if not isinstance(repl, str) or len(repl) != 1:
            raise TokenizerFileError(f"{where}: Metaspace replacement must be one character")
        scheme = _metaspace_scheme(p, where)
        return [(_PRE_METASPACE, repl, _PREPEND_SCHEMES[scheme], int(bool(p.get("split", True))), 0)]
    if t == "WhitespaceSplit":
        return [(_PRE_WHITESPACE_SPLIT, " ", 0, 0, 0)]
    if t == "Punctuation":
        behavior = p.get("behavior", "Isolated")
        if behavior not in _SPLIT_BEHAVIORS:
            raise TokenizerFileError(f"{where}: Punctuation: unknown behavior {behavior!r}")
        return [(_PRE_PUNCTUATION, " ", 0, 0, _SPLIT_BEHAVIORS[behavior])]
    raise UnsupportedTokenizerError(f"{where}: pre-tokenizer {t!r} is not supported by multienc's tokenizers "
                             "for Unigram models")


def _decoder_steps(dec: Any, where: str) -> List[Dict[str, Any]]:
    """Decoders of a Unigram tokenizer (Sequence flattened): Metaspace, Replace, ByteFallback, Fuse, Strip."""
    return _steps(dec, "decoders", "decoder", where, _decoder_step)


def _decoder_step(dec: Dict[str, Any], where: str) -> List[Dict[str, Any]]:
    t = dec.get("type")
    if t == "Metaspace":
        return [{"type": t, "replacement": dec.get("replacement", "\u2581"), "prepend_scheme": _metaspace_scheme(dec, where)}]
    if t == "Replace":
        pat = dec.get("pattern") or {}
        if "String" not in pat:
            raise UnsupportedTokenizerError(f"{where}: Replace decoder with pattern {pat!r} is not supported")
        return [{"type": t, "from": pat["String"], "to": dec.get("content", "")}]
    if t in ("ByteFallback", "Fuse"):
        return [{"type": t}]
    if t == "Strip":
        return [{"type": t, "content": dec.get("content", " "), "start": int(dec.get("start", 0)),
                 "stop": int(dec.get("stop", 0))}]
    raise UnsupportedTokenizerError(f"{where}: decoder {t!r} is not supported by multienc's tokenizers for Unigram models")


def _unigram_spec(m: Dict[str, Any], where: str) -> _Spec:
    vocab = m.get("vocab")
    if not isinstance(vocab, list):
        raise TokenizerFileError(f"{where}: Unigram model.vocab must be a list of [piece, score]")
    pieces, scores = [], []
    for i, item in enumerate(vocab):
        if (not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], str)
                or isinstance(item[1], bool) or not isinstance(item[1], (int, float))):
            raise TokenizerFileError(f"{where}: Unigram vocab entry {i} is not [piece, score]: {item!r}")
        pieces.append(item[0])
        scores.append(float(item[1]))
    unk_id = m.get("unk_id")
    if unk_id is not None:
        if isinstance(unk_id, bool) or not isinstance(unk_id, int) or unk_id < 0:
            raise TokenizerFileError(f"{where}: Unigram unk_id must be a non-negative int or null")
        if not pieces:
            raise TokenizerFileError(f"{where}: Unigram: the vocabulary is empty but at least <unk> is needed")
        if unk_id >= len(pieces):
            raise TokenizerFileError(f"{where}: Unigram: unk_id {unk_id} is larger than the vocabulary size")
    spec = _Spec(_UNIGRAM, {p: i for i, p in enumerate(pieces)}, pre_tokenizer=_PRE_STEPS, decoder="steps")
    spec.pieces, spec.scores, spec.unk_id = pieces, scores, unk_id
    spec.byte_fallback = bool(m.get("byte_fallback", False))
    return spec


def _read_post_processor(pp: Any, spec: _Spec, path: str) -> None:
    """TemplateProcessing / RobertaProcessing / BertProcessing / ByteLevel into the spec's templates."""
    if pp is not None:
        t = pp.get("type")
        needed = {"TemplateProcessing": ("single", "pair"), "RobertaProcessing": ("sep", "cls"),
                  "BertProcessing": ("sep", "cls")}.get(t, ())
        missing = [k for k in needed if k not in pp]
        if missing:
            raise TokenizerFileError(f"{path}: post_processor.{missing[0]}: is missing (a {t} needs "
                                     f"{' and '.join(needed)})")
        if t == "TemplateProcessing":
            spec.post = _POST_TEMPLATE
            specials = pp.get("special_tokens", {})

            def items(tmpl: List[Dict[str, Any]]) -> List[Tuple[Any, ...]]:
                out: List[Tuple[Any, ...]] = []
                for piece in tmpl:
                    if "Sequence" in piece:
                        out.append((_TMPL_A if piece["Sequence"]["id"] == "A" else _TMPL_B,
                                    int(piece["Sequence"]["type_id"])))
                    else:
                        sid = piece["SpecialToken"]["id"]
                        if sid not in specials:
                            raise TokenizerFileError(f"{path}: template token {sid!r} has no special_tokens entry")
                        ids, toks = specials[sid]["ids"], specials[sid].get("tokens") or []
                        out.extend((int(i), int(piece["SpecialToken"]["type_id"]),
                                    *([toks[k]] if k < len(toks) and isinstance(toks[k], str) else []))
                                   for k, i in enumerate(ids))
                return out

            spec.single, spec.pair = items(pp["single"]), items(pp["pair"])
        elif t in ("RobertaProcessing", "BertProcessing"):
            spec.post = _POST_TEMPLATE
            (sep_tok, sep_id), (cls_tok, cls_id) = pp["sep"], pp["cls"]
            if t == "RobertaProcessing":
                spec.single = [(cls_id, 0, cls_tok), (_TMPL_A, 0), (sep_id, 0, sep_tok)]
                spec.pair = spec.single + [(sep_id, 0, sep_tok), (_TMPL_B, 0), (sep_id, 0, sep_tok)]
                spec.trim_offsets = bool(pp.get("trim_offsets", True))
                spec.post_add_prefix_space = bool(pp.get("add_prefix_space", True))
            else:
                spec.single = [(cls_id, 0, cls_tok), (_TMPL_A, 0), (sep_id, 0, sep_tok)]
                spec.pair = spec.single + [(_TMPL_B, 1), (sep_id, 1, sep_tok)]
        elif t == "ByteLevel":
            spec.trim_offsets = bool(pp.get("trim_offsets", True))
            spec.post_add_prefix_space = bool(pp.get("add_prefix_space", True))
        else:
            _need(False, path, f"post-processor {t!r}")



def _spec_from_tokenizer_json(path: str) -> _Spec:
    """Read a HF tokenizers ``tokenizer.json``."""
    return _spec_from_tokenizer_dict(_read_json(path, serde_numbers=True), path)


def _spec_from_tokenizer_dict(d: Any, path: str) -> _Spec:
    """A tokenizer.json object (the components the BERT, RoBERTa and SentencePiece families use);
    `path` names the file in errors."""
    d = _checked(d, _TOKENIZER_JSON, path)
    m = d["model"]
    mtype = m.get("type") or ("BPE" if "merges" in m else "WordPiece" if "continuing_subword_prefix" in m
                              else "Unigram" if isinstance(m.get("vocab"), list) else None)
    if mtype == "Unigram":
        spec = _unigram_spec(m, path)
        spec.normalizers = _normalizer_steps(d.get("normalizer"), path)
        spec.pre_tokenizers = _pre_tokenizer_steps(d.get("pre_tokenizer"), path)
        spec.decoders = _decoder_steps(d.get("decoder"), path)
        _read_post_processor(d.get("post_processor"), spec, path)
        spec.added = [dict(a) for a in d.get("added_tokens") or []]
        pad = d.get("padding") or {}
        if "pad_id" in pad:
            spec.pad_id = int(pad["pad_id"])
        return spec
    vocab = m.get("vocab")
    if not isinstance(vocab, dict):
        raise TokenizerFileError(f"{path}: model.vocab must be an object of token -> id")
    if mtype == "WordPiece":
        _need(m.get("continuing_subword_prefix", "##") == "##", path, "a WordPiece prefix other than '##'")
        spec = _Spec(_WORDPIECE, vocab, unk_token=m.get("unk_token", "[UNK]"),
                     max_input_chars_per_word=int(m.get("max_input_chars_per_word", 100)))
    elif mtype == "BPE":
        _need(m.get("dropout") is None, path, "BPE dropout")
        _need(not m.get("continuing_subword_prefix") and not m.get("end_of_word_suffix"), path,
              "a BPE subword prefix/suffix")
        _need(not m.get("byte_fallback") and not m.get("ignore_merges") and not m.get("fuse_unk"), path,
              "BPE byte_fallback / ignore_merges / fuse_unk")
        spec = _Spec(_BPE, vocab, merges=_merge_pairs(m.get("merges", []), path), unk_token=m.get("unk_token"))
    else:
        raise UnsupportedTokenizerError(f"{path}: model type {mtype!r} is not supported (WordPiece, BPE and Unigram are)")

    n = d.get("normalizer")
    if n is not None:
        _need(n.get("type") == "BertNormalizer", path, f"normalizer {n.get('type')!r}")
        spec.bert_normalizer = True
        spec.clean_text = bool(n.get("clean_text", True))
        spec.handle_chinese_chars = bool(n.get("handle_chinese_chars", True))
        spec.strip_accents = n.get("strip_accents")
        spec.lowercase = bool(n.get("lowercase", True))

    p = d.get("pre_tokenizer")
    if p is not None:
        if p.get("type") == "BertPreTokenizer":
            spec.pre_tokenizer = _PRE_BERT
        elif p.get("type") == "ByteLevel":
            spec.pre_tokenizer = _PRE_BYTELEVEL
            spec.add_prefix_space = bool(p.get("add_prefix_space", True))
            spec.use_regex = bool(p.get("use_regex", True))
        else:
            _need(False, path, f"pre-tokenizer {p.get('type')!r}")

    _read_post_processor(d.get("post_processor"), spec, path)

    dec = d.get("decoder") or {}
    if dec.get("type") == "ByteLevel" or (not dec and spec.model == _BPE):
        spec.decoder = "bytelevel"
    elif dec.get("type") in ("WordPiece", None):
        spec.decoder_prefix = dec.get("prefix", "##")
        spec.decoder_cleanup = bool(dec.get("cleanup", True))
    else:
        _need(False, path, f"decoder {dec.get('type')!r}")

    spec.added = [dict(a) for a in d.get("added_tokens") or []]
    pad = d.get("padding") or {}
    if "pad_id" in pad:
        spec.pad_id = int(pad["pad_id"])
    return spec


def _model_config(model_dir: str) -> Dict[str, Any]:
    """config.json of a model folder ({} when absent or not an object)."""
    path = os.path.join(model_dir, "config.json")
    if not os.path.exists(path):
        return {}
    mc = _read_json(path)
    return mc if isinstance(mc, dict) else {}


#: The tokenizer classes (transformers' names, without "Fast") that a folder without tokenizer.json
#: may name, per vocabulary file; any other is refused rather than tokenized another way (e.g.
#: BertJapaneseTokenizer's MeCab words, GPT-2's without <s>).
_WORDPIECE_CLASSES = ("BertTokenizer", "DistilBertTokenizer", "ElectraTokenizer", "MPNetTokenizer")
_FASTBPE_CLASSES = ("BertweetTokenizer", "PhobertTokenizer")  # vocab.txt with bpe.codes
_VOCAB_TXT_CLASSES = _WORDPIECE_CLASSES + _FASTBPE_CLASSES
_BPE_CLASSES = ("RobertaTokenizer", "DebertaTokenizer")


def _base_class(cls: str) -> str:
    """A tokenizer class name without transformers' "Fast" suffix."""
    return cls[:-4] if cls.endswith("Fast") else cls


def _declared_class(model_dir: str, config: Dict[str, Any], model_config: Dict[str, Any], allowed: Iterable[str],
                    source: str) -> Optional[str]:
    """The tokenizer class a folder names, as transformers' AutoTokenizer looks it up:
    tokenizer_config.json's ``tokenizer_class`` (``config``), else config.json's (``model_config``);
    without "Fast"; None when neither names one. UnsupportedTokenizerError for a class not in ``allowed``."""
    cls = config.get("tokenizer_class")
    where = "tokenizer_config.json"
    if not isinstance(cls, str):
        cls, where = model_config.get("tokenizer_class"), "config.json"
    if not isinstance(cls, str):
        return None
    base = _base_class(cls)
    allowed = tuple(allowed)
    if base not in allowed:
        raise UnsupportedTokenizerError(
            f"{os.path.join(model_dir, where)}: tokenizer_class {cls!r} is not supported with {source} (without a "
            f"tokenizer.json multienc builds {', '.join(allowed)} from it)")
    return base


def _is_deberta_bpe(model_dir: str, config: Dict[str, Any]) -> bool:
    """Whether a vocab.json + merges.txt folder is DeBERTa (v1)'s: its tokenizer class
    DebertaTokenizer, else (no class) config.json's model_type ``deberta``."""
    model_config = _model_config(model_dir)
    cls = _declared_class(model_dir, config, model_config, _BPE_CLASSES, "vocab.json + merges.txt")
    if cls is not None:
        return cls == "DebertaTokenizer"
    return model_config.get("model_type") == "deberta"


def _config_added(config: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """tokenizer_config.json's added_tokens_decoder as added-token dicts by content."""
    added: Dict[str, Dict[str, Any]] = {}
    for tid, tok in (config.get("added_tokens_decoder") or {}).items():
        if isinstance(tok, dict) and tok.get("content") is not None:
            flags = {k: bool(tok[k]) for k in ("single_word", "lstrip", "rstrip", "normalized", "special") if k in tok}
            added[tok["content"]] = _added_dict(tok["content"], int(tid), **flags)
    return added


def _config_roles(roles: Dict[str, str], config: Dict[str, Any]) -> Dict[str, str]:
    """The default special tokens ``roles``, overridden by those the config names."""
    for role in _SPECIAL_KEYS:
        if _token_content(config.get(role)) is not None:
            roles[role] = _token_content(config[role])
    return roles


def _cls_sep_templates(spec: _Spec, ids: Dict[str, int], bert_pair: bool = False) -> None:
    """The roles' ``cls A sep``; pairs ``cls A sep sep B sep`` with type ids 0 (RoBERTa's), or
    ``cls A sep B sep`` with B's type id 1 (``bert_pair``)."""
    cls_id, sep_id = ids[spec.special["cls_token"]], ids[spec.special["sep_token"]]
    spec.single = [(cls_id, 0), (_TMPL_A, 0), (sep_id, 0)]
    spec.pair = spec.single + ([(_TMPL_B, 1), (sep_id, 1)] if bert_pair else [(sep_id, 0), (_TMPL_B, 0), (sep_id, 0)])


def _spec_from_fastbpe(model_dir: str, vocab_txt: str, config: Dict[str, Any], cls: str) -> _Spec:
    """BertweetTokenizer's or PhobertTokenizer's (the same but for Bertweet's normalization)
    vocab.txt (fairseq's "token count" lines after ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3)
    and bpe.codes (fastBPE merges), built as transformers 5.24 builds it:
    words of ``re.findall(r"\\S+\\n?")``, fastBPE with "@@" marking a piece inside a word, special
    tokens missing from the vocabulary appended, ``<s> A </s></s> B </s>`` with type ids 0. Its
    ``normalization`` (a tweet tokenizer and the emoji package's demojize) is refused."""
    cfg_path = os.path.join(model_dir, "tokenizer_config.json")
    if cls == "BertweetTokenizer" and config.get("normalization"):
        raise UnsupportedTokenizerError(
            f"{cfg_path}: normalization: true is not supported (BertweetTokenizer's tweet normalization depends on "
            f"the emoji package's demojize); normalize the texts beforehand and set normalization to false")
    codes = os.path.join(model_dir, "bpe.codes")
    if not os.path.exists(codes):
        raise TokenizerFileError(f"{codes}: not found ({cls} reads vocab.txt and bpe.codes)")
    roles = _config_roles({"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
                           "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"}, config)
    encoder: Dict[str, int] = {}
    for i, role in enumerate(("bos_token", "pad_token", "eos_token", "unk_token")):
        encoder[roles[role]] = i
    text = _read_text(vocab_txt)
    for n, line in enumerate(io.StringIO(text).readlines(), 1):
        line = line.strip()
        cut = line.rfind(" ")
        if cut == -1:
            raise TokenizerFileError(f"{vocab_txt}: line {n}: expected '<token> <count>', got {line[:60]!r}")
        encoder[line[:cut]] = len(encoder)  # a repeated token takes the next id, as add_from_file does
    merges = [m for m in (tuple(ln.split()[:-1]) for ln in _read_text(codes).split("\n")[:-1]) if len(m) == 2]
    # Special tokens become added tokens (normalized=False); one missing from the vocabulary gets
    # the next id of PythonBackend._add_tokens (the length of get_vocab()), in transformers' role order.
    added = _config_added(config)
    current = {**encoder, **{c: a["id"] for c, a in added.items()}}
    new_id = len(current)
    for content in dict.fromkeys(roles[r] for r in ("bos_token", "eos_token", "unk_token", "sep_token",
                                                     "pad_token", "cls_token", "mask_token")):
        if content in added:
            continue
        if content not in current:
            current[content] = new_id
            new_id += 1
        added[content] = _added_dict(content, current[content])
    # a piece is looked up among the added tokens first, then in the vocabulary
    spec = _Spec(_FASTBPE, current, merges=merges, pre_tokenizer=_PRE_PY_WORDS, post=_POST_TEMPLATE,
                 decoder="fastbpe", decoder_cleanup=bool(config.get("clean_up_tokenization_spaces", False)),
                 unk_id=encoder[roles["unk_token"]], merges_file=codes, python_truncation=True)
    spec.added = sorted(added.values(), key=lambda a: a["id"])
    spec.special = roles
    _cls_sep_templates(spec, current)
    return spec


def _spec_from_legacy(model_dir: str, config: Dict[str, Any]) -> _Spec:
    """vocab.txt (WordPiece: BertTokenizer, or MPNetTokenizer with ``<s>``/``</s>``/``<pad>``/``[UNK]``,
    ``<mask>`` with lstrip and RoBERTa's processing ``<s> A </s></s> B </s>``; BertweetTokenizer's
    or PhobertTokenizer's with bpe.codes) or vocab.json + merges.txt (BPE: RobertaTokenizer, or DebertaTokenizer as
    transformers 5.24 builds it: [CLS]/[SEP] specials (``[MASK]`` without the lstrip its v4 class
    had), the template ``[CLS] A [SEP]`` / ``[CLS] A [SEP] [SEP] B [SEP]`` with one type id and no
    offset trimming)."""
    vocab_txt = os.path.join(model_dir, "vocab.txt")
    deberta = mpnet = False
    vocab_json = os.path.join(model_dir, "vocab.json")
    if os.path.exists(vocab_txt):
        cls = _declared_class(model_dir, config, _model_config(model_dir), _VOCAB_TXT_CLASSES, "vocab.txt")
        if cls in _FASTBPE_CLASSES:
            return _spec_from_fastbpe(model_dir, vocab_txt, config, cls)
        mpnet = cls == "MPNetTokenizer"
        vocab: Dict[str, int] = {}
        for i, line in enumerate(_read_lines(vocab_txt)):
            vocab[_rust_trim_end(line)] = i
        if not vocab:
            raise TokenizerFileError(f"{vocab_txt}: the vocabulary is empty")
        lower = bool(config.get("do_lower_case", True))
        spec = _Spec(_WORDPIECE, vocab, bert_normalizer=True, lowercase=lower,
                     handle_chinese_chars=bool(config.get("tokenize_chinese_chars", True)),
                     strip_accents=config.get("strip_accents"), pre_tokenizer=_PRE_BERT, post=_POST_TEMPLATE,
                     trim_offsets=mpnet)
        roles = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "[UNK]", "sep_token": "</s>",
                 "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>"} if mpnet else \
            {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
             "mask_token": "[MASK]"}
    elif os.path.exists(vocab_json):
        vocab = _checked(_read_json(vocab_json), schema.MapOf(_ID), vocab_json)
        merges_txt = os.path.join(model_dir, "merges.txt")
        lines = [ln for ln in _read_lines(merges_txt) if not ln.startswith("#version")]
        aps = bool(config.get("add_prefix_space", False))
        deberta = _is_deberta_bpe(model_dir, config)
        spec = _Spec(_BPE, vocab, merges=_merge_pairs(lines, merges_txt), pre_tokenizer=_PRE_BYTELEVEL,
                     add_prefix_space=aps, post=_POST_TEMPLATE,
                     trim_offsets=not deberta and bool(config.get("trim_offsets", True)),
                     post_add_prefix_space=aps, decoder="bytelevel", merges_file=merges_txt)
        roles = {"bos_token": "[CLS]", "eos_token": "[SEP]", "sep_token": "[SEP]", "cls_token": "[CLS]",
                 "unk_token": "[UNK]", "pad_token": "[PAD]", "mask_token": "[MASK]"} if deberta else \
            {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
             "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"}
    else:
        raise TokenizerFileError(f"{model_dir}: no tokenizer.json, vocab.txt or vocab.json + merges.txt found")

    _config_roles(roles, config)
    if spec.model == _WORDPIECE and roles["unk_token"] not in vocab:
        raise TokenizerFileError(f"{vocab_txt}: the unknown token {roles['unk_token']!r} is not in the vocabulary")
    # Special tokens become added tokens (normalized=False) as transformers registers them; one
    # missing from the vocabulary gets its id as tokenizers assigns it (in transformers' role order).
    added = _config_added(config)
    for content in dict.fromkeys(roles[r] for r in ("bos_token", "eos_token", "unk_token", "sep_token",
                                                     "pad_token", "cls_token", "mask_token") if r in roles):
        if content in added:
            continue
        lstrip = mpnet and content == roles["mask_token"]
        if content in vocab:
            added[content] = _added_dict(content, vocab[content], lstrip=lstrip)
        else:  # tokenizers' AddedVocabulary::add_tokens id rule
            top = max((a["id"] for a in added.values()), default=None)
            new_id = top + 1 if top is not None and top >= len(vocab) else len(vocab)
            added[content] = _added_dict(content, new_id, lstrip=lstrip)
    spec.added = sorted(added.values(), key=lambda a: a["id"])
    spec.unk_token = roles["unk_token"] if spec.model == _WORDPIECE else None
    spec.special = roles
    ids = {**vocab, **{a["content"]: a["id"] for a in spec.added}}
    _cls_sep_templates(spec, ids, bert_pair=spec.model == _WORDPIECE and not mpnet)
    return spec


# ------------------------------------------------------------------ SentencePiece model files

#: The SentencePiece families: model_type -> (spm file name, transformers tokenizer class).
SPM_FAMILIES: Dict[str, Tuple[str, str]] = {
    "xlm-roberta": ("sentencepiece.bpe.model", "XLMRobertaTokenizer"),
    "camembert": ("sentencepiece.bpe.model", "CamembertTokenizer"),
    "albert": ("spiece.model", "AlbertTokenizer"),
    "deberta-v2": ("spm.model", "DebertaV2Tokenizer"),
}
_SPM_PIECE_NORMAL, _SPM_PIECE_UNKNOWN, _SPM_PIECE_CONTROL, _SPM_PIECE_USER, _SPM_PIECE_UNUSED, _SPM_PIECE_BYTE = range(1, 7)


def _camembert_vocab(pieces: List[Tuple[str, float]], pad: str = "<pad>", unk: str = "<unk>",
                     mask: str = "<mask>") -> List[Tuple[str, float]]:
    """CamemBERT's fairseq vocabulary: four specials and the model's own <unk> demoted by -100 ahead
    of the model's pieces after its first (so its <s> and </s> land at 5 and 6), then the mask."""
    return [("<s>NOTUSED", 0.0), (pad, 0.0), ("</s>NOTUSED", 0.0), (unk, 0.0), ("<unk>NOTUSED", -100.0)] \
        + pieces[1:] + [(mask, 0.0)]


@dataclass
class SpmModel:
    """The fields of a SentencePiece ``ModelProto`` that the tokenizer needs (proto2 defaults)."""

    pieces: List[Tuple[str, float, int]]  # (piece, score, type); the id is the index
    model_type: int = 1  # 1 UNIGRAM, 2 BPE, 3 WORD, 4 CHAR
    unk_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    pad_id: int = -1
    unk_piece: str = "<unk>"
    bos_piece: str = "<s>"
    eos_piece: str = "</s>"
    pad_piece: str = "<pad>"
    byte_fallback: bool = False
    normalizer_name: str = ""
    precompiled_charsmap: bytes = b""
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    escape_whitespaces: bool = True


def _pb_fields(buf: bytes, start: int, end: int, where: str) -> Iterable[Tuple[int, int, Any]]:
    """(field number, wire type, value) of a protobuf message buf[start:end]: varints as unsigned ints,
    length-delimited fields as (offset, end) into buf, fixed32/fixed64 as bytes. Every length is
    checked against the bytes left; groups and unknown wire types are errors."""
    i = start

    def varint() -> int:
        nonlocal i
        v, shift = 0, 0
        while True:
            if i >= end:
                raise TokenizerFileError(f"{where}: truncated protobuf varint")
            b = buf[i]
            i += 1
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                return v
            shift += 7
            if shift >= 70:
                raise TokenizerFileError(f"{where}: protobuf varint longer than 10 bytes")

    while i < end:
        key = varint()
        num, wt = key >> 3, key & 7
        if num == 0 or num > 0x1FFFFFFF:
            raise TokenizerFileError(f"{where}: bad protobuf field number {num}")
        if wt == 0:
            yield num, wt, varint()
        elif wt == 2:
            n = varint()
            if n > end - i:
                raise TokenizerFileError(f"{where}: protobuf field {num} of {n} bytes runs past the end of its message")
            yield num, wt, (i, i + n)
            i += n
        elif wt in (1, 5):
            n = 8 if wt == 1 else 4
            if n > end - i:
                raise TokenizerFileError(f"{where}: truncated protobuf field {num}")
            yield num, wt, buf[i:i + n]
            i += n
        else:
            raise TokenizerFileError(f"{where}: unsupported protobuf wire type {wt} (field {num})")


def _pb_int32(v: int) -> int:
    v &= (1 << 64) - 1
    v = v - (1 << 64) if v >> 63 else v
    return ((v + (1 << 31)) % (1 << 32)) - (1 << 31)


def _pb_str(buf: bytes, span: Tuple[int, int], where: str, what: str) -> str:
    try:
        return buf[span[0]:span[1]].decode("utf-8")
    except UnicodeDecodeError:
        raise TokenizerFileError(f"{where}: {what} is not valid UTF-8") from None


def read_spm_model(path: str) -> SpmModel:
    """Read a SentencePiece model file (``ModelProto``) with a bounds-checked protobuf reader (no
    protobuf dependency). Pieces must be non-empty valid UTF-8; the special ids must lie in range."""
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except FileNotFoundError:
        raise TokenizerFileError(f"tokenizer file not found: {path}") from None
    except OSError as e:
        raise TokenizerFileError(f"cannot read tokenizer file {path}: {e}") from None
    m = SpmModel(pieces=[])
    int_fields = {40: "unk_id", 41: "bos_id", 42: "eos_id", 43: "pad_id"}
    str_fields = {45: "unk_piece", 46: "bos_piece", 47: "eos_piece", 48: "pad_piece"}
    for num, wt, v in _pb_fields(buf, 0, len(buf), path):
        if num == 1 and wt == 2:
            piece, score, ptype = None, 0.0, _SPM_PIECE_NORMAL
            for n2, w2, v2 in _pb_fields(buf, v[0], v[1], path):
                if n2 == 1 and w2 == 2:
                    piece = _pb_str(buf, v2, path, f"piece {len(m.pieces)}")
                elif n2 == 2 and w2 == 5:
                    score = struct.unpack("<f", v2)[0]
                elif n2 == 3 and w2 == 0:
                    ptype = _pb_int32(v2)
            if not piece:
                raise TokenizerFileError(f"{path}: piece {len(m.pieces)} is empty")
            if not _SPM_PIECE_NORMAL <= ptype <= _SPM_PIECE_BYTE:
                raise TokenizerFileError(f"{path}: piece {len(m.pieces)} has unknown type {ptype}")
            m.pieces.append((piece, score, ptype))
        elif num == 2 and wt == 2:
            for n2, w2, v2 in _pb_fields(buf, v[0], v[1], path):
                if n2 == 3 and w2 == 0:
                    m.model_type = _pb_int32(v2)
                elif n2 == 35 and w2 == 0:
                    m.byte_fallback = bool(v2)
                elif n2 in int_fields and w2 == 0:
                    setattr(m, int_fields[n2], _pb_int32(v2))
                elif n2 in str_fields and w2 == 2:
                    setattr(m, str_fields[n2], _pb_str(buf, v2, path, str_fields[n2]))
        elif num == 3 and wt == 2:
            for n2, w2, v2 in _pb_fields(buf, v[0], v[1], path):
                if n2 == 1 and w2 == 2:
                    m.normalizer_name = _pb_str(buf, v2, path, "normalizer name")
                elif n2 == 2 and w2 == 2:
                    m.precompiled_charsmap = buf[v2[0]:v2[1]]
                elif n2 in (3, 4, 5) and w2 == 0:
                    setattr(m, {3: "add_dummy_prefix", 4: "remove_extra_whitespaces", 5: "escape_whitespaces"}[n2],
                            bool(v2))
    if not m.pieces:
        raise TokenizerFileError(f"{path}: no pieces (not a SentencePiece model?)")
    if m.model_type != 1:
        kind = {2: "BPE", 3: "WORD", 4: "CHAR"}.get(m.model_type, str(m.model_type))
        raise UnsupportedTokenizerError(f"{path}: SentencePiece model type {kind} is not supported (Unigram is)")
    if not 0 <= m.unk_id < len(m.pieces):
        raise TokenizerFileError(f"{path}: unk_id {m.unk_id} is not a piece id (0 .. {len(m.pieces) - 1})")
    return m


def spm_family(tokenizer_config: Optional[Dict[str, Any]] = None,
               model_config: Optional[Dict[str, Any]] = None) -> Optional[str]:
    """The SentencePiece family ("xlm-roberta", "camembert", "albert", "deberta-v2") of a checkpoint: from
    tokenizer_config.json's ``tokenizer_class`` (with or without ``Fast``), else config.json's
    ``tokenizer_class``, else its ``model_type``; None when none names one of them."""
    for cls in ((tokenizer_config or {}).get("tokenizer_class"), (model_config or {}).get("tokenizer_class")):
        if isinstance(cls, str):
            for fam, (_, name) in SPM_FAMILIES.items():
                if _base_class(cls) == name:
                    return fam
    mt = (model_config or {}).get("model_type")
    if isinstance(mt, str):
        mt = mt.replace("_", "-")
        if mt in SPM_FAMILIES:
            return mt
    return None


def _check_number_comma(piece: str) -> bool:
    return len(piece) < 2 or piece[-1] != "," or not piece[-2].isdigit()


def _template_json(single: List[Tuple[str, int]], pair: List[Tuple[str, int]],
                   specials: List[Tuple[str, int]]) -> Dict[str, Any]:
    """A TemplateProcessing object (items: "$A" / "$B" or a special token, with type ids)."""
    def items(t: List[Tuple[str, int]]) -> List[Dict[str, Any]]:
        return [{"Sequence": {"id": x[1:], "type_id": ty}} if x in ("$A", "$B")
                else {"SpecialToken": {"id": x, "type_id": ty}} for x, ty in t]
    return {"type": "TemplateProcessing", "single": items(single), "pair": items(pair),
            "special_tokens": {tok: {"id": tok, "ids": [i], "tokens": [tok]} for tok, i in specials}}


def _added_token_json(token_id: int, content: str, special: bool, normalized: bool = False,
                      lstrip: bool = False) -> Dict[str, Any]:
    return {"id": token_id, "content": content, "single_word": False, "lstrip": lstrip, "rstrip": False,
            "normalized": normalized, "special": special}


def convert_spm_model(path: str, family: str, do_lower_case: Optional[bool] = None,
                      keep_accents: bool = False, split_by_punct: bool = False,
                      add_prefix_space: bool = True, legacy: bool = True) -> Dict[str, Any]:
    """The tokenizer.json object transformers' converter writes for a SentencePiece model
    (``XLMRobertaConverter``, ``CamembertConverter``, ``AlbertConverter``, ``DebertaV2Converter`` of
    transformers 5.24:
    ``Converter.converted()``), without the tokens a transformers tokenizer adds afterwards.

    Options are the slow tokenizer's: ``do_lower_case`` (ALBERT default True, DeBERTa False),
    ``keep_accents`` (ALBERT), ``split_by_punct`` (DeBERTa), ``add_prefix_space``, ``legacy``."""
    if family not in SPM_FAMILIES:
        raise ValueError(f"unknown SentencePiece family {family!r}; known: {', '.join(SPM_FAMILIES)}")
    spm = read_spm_model(path)
    if spm.byte_fallback:
        import warnings
        warnings.warn(f"{path}: the SentencePiece model uses byte_fallback, which transformers' converters drop "
                      "(unknown text becomes the unk token)")
    if do_lower_case is None:
        do_lower_case = family == "albert"
    vocab = [(p, sc) for p, sc, _ in spm.pieces]
    unk_id = spm.unk_id
    if family == "xlm-roberta":
        vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + vocab[3:] + [("<mask>", 0.0)]
        unk_id = 3
    elif family == "camembert":  # fairseq's layout: the model's <unk> demoted, its <s> and </s> at 5 and 6
        vocab = _camembert_vocab(vocab)
        unk_id = 3
    elif family == "albert":
        vocab = [(p, sc) if _check_number_comma(p) else (p, sc - 100) for p, sc in vocab]
    ids: Dict[str, int] = {}
    for i, (p, _) in enumerate(vocab):
        ids[p] = i

    def slow_id(tok: str) -> int:  # the slow tokenizer's convert_tokens_to_ids
        if family == "xlm-roberta":
            fairseq = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
            if tok in fairseq:
                return fairseq[tok]
            if tok == "<mask>":
                return len(spm.pieces) + 1
            sp = {p: i for i, (p, _, _) in enumerate(spm.pieces)}.get(tok)
            return sp + 1 if sp is not None and sp > 0 else 3
        if family == "camembert":
            return ids.get(tok, unk_id)
        return {p: i for i, (p, _, _) in enumerate(spm.pieces)}.get(tok, spm.unk_id)

    # CONTROL and USER_DEFINED pieces become added tokens (tokenizers' add_tokens id rule)
    added: List[Dict[str, Any]] = []
    seen = set()
    for i, (p, _, t) in enumerate(spm.pieces):
        if t in (_SPM_PIECE_CONTROL, _SPM_PIECE_USER) and p not in seen:
            seen.add(p)
            if p in ids:
                tid = ids[p]
            else:
                top = max((a["id"] for a in added), default=None)
                tid = top + 1 if top is not None and top >= len(vocab) else len(vocab)
            added.append(_added_token_json(tid, p, special=t == _SPM_PIECE_CONTROL))
    charsmap = spm.precompiled_charsmap
    pre_charsmap = [{"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode("ascii")}] \
        if charsmap else []
    multi_space = {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}
    if family == "albert":
        norms = [{"type": "Replace", "pattern": {"String": "``"}, "content": '"'},
                 {"type": "Replace", "pattern": {"String": "''"}, "content": '"'}]
        if not keep_accents:
            norms += [{"type": "NFKD"}, {"type": "StripAccents"}]
        if do_lower_case:
            norms.append({"type": "Lowercase"})
        norms += pre_charsmap + [multi_space]
    elif family == "deberta-v2":
        norms = ([{"type": "Lowercase"}] if do_lower_case else []) + [
            {"type": "Strip", "strip_left": True, "strip_right": True}] + pre_charsmap + [multi_space]
    else:
        norms = pre_charsmap + [{"type": "Strip", "strip_left": False, "strip_right": True},
                                {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": "\u2581"}]
    scheme = ("always" if legacy else "first") if add_prefix_space else "never"
    metaspace = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": True}
    if family == "deberta-v2":
        pre = {"type": "Sequence", "pretokenizers": ([{"type": "Punctuation", "behavior": "Isolated"}]
                                                      if split_by_punct else []) + [metaspace]}
    else:
        pre = metaspace
    if family in ("xlm-roberta", "camembert"):
        post = _template_json([("<s>", 0), ("$A", 0), ("</s>", 0)],
                              [("<s>", 0), ("$A", 0), ("</s>", 0), ("</s>", 0), ("$B", 0), ("</s>", 0)],
                              [("<s>", slow_id("<s>")), ("</s>", slow_id("</s>"))])
    else:
        post = _template_json([("[CLS]", 0), ("$A", 0), ("[SEP]", 0)],
                              [("[CLS]", 0), ("$A", 0), ("[SEP]", 0), ("$B", 1), ("[SEP]", 1)],
                              [("[CLS]", slow_id("[CLS]")), ("[SEP]", slow_id("[SEP]"))])
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": {"type": "Sequence", "normalizers": norms}, "pre_tokenizer": pre,
            "post_processor": post, "decoder": {**metaspace},
            "model": {"type": "Unigram", "unk_id": unk_id, "vocab": [[p, sc] for p, sc in vocab],
                      "byte_fallback": False}}


_SPM_SPECIAL_DEFAULTS = {
    "xlm-roberta": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
                    "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>"},
    "camembert": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
                  "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>"},
    "albert": {"bos_token": "[CLS]", "eos_token": "[SEP]", "unk_token": "<unk>", "sep_token": "[SEP]",
               "pad_token": "<pad>", "cls_token": "[CLS]", "mask_token": "[MASK]"},
    "deberta-v2": {"bos_token": "[CLS]", "eos_token": "[SEP]", "unk_token": "[UNK]", "sep_token": "[SEP]",
                   "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"},
}


def spm_checkpoint_tokenizer_json(path: str, family: str, config: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    r"""The tokenizer.json object of the backend tokenizer that ``transformers.AutoTokenizer`` (5.24)
    builds for a checkpoint that has only a SentencePiece model: ``XLMRobertaTokenizer``,
    ``AlbertTokenizer`` or ``DebertaV2Tokenizer`` from the vocabulary (XLM-R: fairseq order), the
    charsmap and ``config`` (tokenizer_config.json: ``do_lower_case``, ``keep_accents``,
    ``split_by_punct``, ``add_prefix_space``, special tokens). These classes rebuild normalizer and
    pre-tokenizer in code: ALBERT gets no -100 comma rule and unk id 1, DeBERTa-v2 gets
    ``Replace(\s{2,}|[\n\r\t])``, NFC, right Strip and no Precompiled (transformers 4 differed;
    ``convert_spm_model`` gives the converter's pipeline)."""
    if family not in SPM_FAMILIES:
        raise ValueError(f"unknown SentencePiece family {family!r}; known: {', '.join(SPM_FAMILIES)}")
    cfg = dict(config or {})
    spm = read_spm_model(path)
    tokens = {role: _token_content(cfg.get(role)) or default for role, default in _SPM_SPECIAL_DEFAULTS[family].items()}
    vocab = [(p, sc) for p, sc, _ in spm.pieces]
    charsmap = spm.precompiled_charsmap
    precompiled = {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode("ascii")}
    add_prefix_space = bool(cfg.get("add_prefix_space", True))
    norms: List[Dict[str, Any]]
    if family in ("xlm-roberta", "camembert"):
        if family == "xlm-roberta":
            vocab = [(tokens["bos_token"], 0.0), (tokens["pad_token"], 0.0), (tokens["eos_token"], 0.0),
                     (tokens["unk_token"], 0.0)] + vocab[3:] + [(tokens["mask_token"], 0.0)]
            unk_id = 3
        else:
            vocab = _camembert_vocab(vocab, tokens["pad_token"], tokens["unk_token"], tokens["mask_token"])
            unk_id = next(i for i, (p, _) in enumerate(vocab) if p == tokens["unk_token"])
        normalizer: Optional[Dict[str, Any]] = precompiled if charsmap else None
        scheme = "always" if add_prefix_space else "never"
        pre: Dict[str, Any] = {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, {
            "type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": True}]}
    elif family == "albert":
        unk_id = 1
        norms = [{"type": "Replace", "pattern": {"String": "``"}, "content": '"'},
                 {"type": "Replace", "pattern": {"String": "''"}, "content": '"'}]
        if not cfg.get("keep_accents", False):
            norms += [{"type": "NFKD"}, {"type": "StripAccents"}]
        if cfg.get("do_lower_case", True):
            norms.append({"type": "Lowercase"})
        if charsmap:
            norms.append(precompiled)
        normalizer = {"type": "Sequence", "normalizers": norms}
        scheme = "always" if add_prefix_space else "never"
        pre = {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, {
            "type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": True}]}
    else:
        unk_id = next((i for i, v in enumerate(vocab) if v == (tokens["unk_token"], 0.0)), spm.unk_id)
        norms = [{"type": "Lowercase"}] if cfg.get("do_lower_case", False) else []
        norms += [{"type": "Replace", "pattern": {"Regex": r"\s{2,}|[\n\r\t]"}, "content": " "}, {"type": "NFC"},
                  {"type": "Strip", "strip_left": False, "strip_right": True}]
        normalizer = {"type": "Sequence", "normalizers": norms}
        scheme = "always" if add_prefix_space else "first"
        steps = [{"type": "Punctuation", "behavior": "Isolated"}] if cfg.get("split_by_punct", False) else []
        pre = {"type": "Sequence", "pretokenizers": steps + [
            {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": True}]}
    ids: Dict[str, int] = {}
    for i, (p, _) in enumerate(vocab):
        ids[p] = i
    if family == "albert":
        for role in ("cls_token", "sep_token"):
            if tokens[role] not in ids:
                raise TokenizerFileError(f"{path}: the ALBERT {role} {tokens[role]!r} is not a piece of the model "
                                         "(transformers 5 cannot build this tokenizer either)")
    # added tokens: the CONTROL / USER_DEFINED pieces, then the special tokens (transformers' role order)
    added: List[Dict[str, Any]] = []
    by_content: Dict[str, Dict[str, Any]] = {}

    def add(content: str, special: bool, lstrip: bool = False) -> None:
        if content in by_content:
            return
        if content in ids:
            tid = ids[content]
        else:
            top = max((a["id"] for a in added), default=None)
            tid = top + 1 if top is not None and top >= len(vocab) else len(vocab)
        a = _added_token_json(tid, content, special, lstrip=lstrip)
        by_content[content] = a
        added.append(a)

    for p, _, t in spm.pieces:
        if t in (_SPM_PIECE_CONTROL, _SPM_PIECE_USER) and not (family == "xlm-roberta" and p not in ids):
            add(p, t == _SPM_PIECE_CONTROL)
    for role in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
        add(tokens[role], True, lstrip=family == "camembert" and role == "mask_token")
    tid = {**ids, **{a["content"]: a["id"] for a in added}}
    if family in ("xlm-roberta", "camembert"):
        b, e = tokens["bos_token"], tokens["eos_token"]
        post = _template_json([(b, 0), ("$A", 0), (e, 0)], [(b, 0), ("$A", 0), (e, 0), (e, 0), ("$B", 0), (e, 0)],
                              [(b, tid[b]), (e, tid[e])])
    else:
        c, e = tokens["cls_token"], tokens["sep_token"]
        post = _template_json([(c, 0), ("$A", 0), (e, 0)], [(c, 0), ("$A", 0), (e, 0), ("$B", 1), (e, 1)],
                              [(c, tid[c]), (e, tid[e])])
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": sorted(added, key=lambda a: a["id"]),
            "normalizer": normalizer, "pre_tokenizer": pre, "post_processor": post,
            "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": True},
            "model": {"type": "Unigram", "unk_id": unk_id, "vocab": [[p, sc] for p, sc in vocab],
                      "byte_fallback": False}}


def _spm_file(model_dir: str) -> Optional[str]:
    for name, _ in SPM_FAMILIES.values():
        path = os.path.join(model_dir, name)
        if os.path.exists(path):
            return path
    return None


def _spm_folder_family(model_dir: str, path: str, config: Dict[str, Any]) -> str:
    """The family of the SentencePiece model ``path`` in ``model_dir``: :func:`spm_family` of the
    tokenizer config and config.json, else the one whose file name it has; UnsupportedTokenizerError
    when the folder names another tokenizer class."""
    model_config = _model_config(model_dir)
    _declared_class(model_dir, config, model_config, (name for _, name in SPM_FAMILIES.values()),
                    os.path.basename(path))
    family = spm_family(config, model_config)
    if family is None:
        family = next(f for f, (name, _) in SPM_FAMILIES.items() if os.path.basename(path) == name)
    return family


def spm_folder_tokenizer_json(model_dir: str) -> Optional[Dict[str, Any]]:
    """The tokenizer.json object ``transformers.AutoTokenizer`` builds for ``model_dir`` when the
    folder has a SentencePiece model and no tokenizer.json (its tokenizer_config.json,
    special_tokens_map.json and config.json read as :meth:`Tokenizer.from_pretrained` reads them);
    None when the folder has no SentencePiece model."""
    path = _spm_file(model_dir)
    if path is None:
        return None
    config = _read_config(model_dir)
    return spm_checkpoint_tokenizer_json(path, _spm_folder_family(model_dir, path, config), config)


def _spec_from_spm_checkpoint(model_dir: str, path: str, config: Dict[str, Any]) -> _Spec:
    """A folder with a SentencePiece model and no tokenizer.json, as transformers 5.24 loads it."""
    family = _spm_folder_family(model_dir, path, config)
    spec = _spec_from_tokenizer_dict(spm_checkpoint_tokenizer_json(path, family, config), path)
    spec.special = {role: _token_content(config.get(role)) or default
                    for role, default in _SPM_SPECIAL_DEFAULTS[family].items()}
    return spec


def _check_id_range(vocab: Dict[str, int], added: List[Dict[str, Any]], source: str, pieces: int = 0) -> None:
    """Ids may leave holes (HF allows any), but not so many that the id table the C tokenizer sizes
    by the largest id dwarfs the vocabulary: the largest must be below twice the number of tokens
    plus 1024 (one id of 2**30 - 1 in a small file would otherwise cost gigabytes). ``pieces``: a
    Unigram vocabulary's length (its repeated pieces have ids too)."""
    count = max(len(vocab), pieces) + len(added)
    limit = 2 * count + 1024
    for token, i in vocab.items():
        if i >= limit:
            raise TokenizerFileError(f"{source}: model.vocab[{token[:60]!r}]: id {i} is far beyond the {count} "
                                     f"tokens (ids must be below {limit}: sparse ids are refused)")
    for n, a in enumerate(added):
        if a["id"] >= limit:
            raise TokenizerFileError(f"{source}: added_tokens[{n}].id {a['id']} is far beyond the {count} tokens "
                                     f"(ids must be below {limit}: sparse ids are refused)")


def _read_config(model_dir: str) -> Dict[str, Any]:
    """tokenizer_config.json overlaid with special_tokens_map.json (both optional)."""
    config: Dict[str, Any] = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = os.path.join(model_dir, name)
        if os.path.exists(path):
            config.update(_checked(_read_json(path), _TOKENIZER_CONFIG, path))
    return config


class Tokenizer:
    """A WordPiece, byte-level BPE, Unigram or fastBPE tokenizer with HF's behaviour, running in C.

    Build one with :meth:`from_pretrained` (a model folder) or :meth:`from_file` (a
    ``tokenizer.json``). ``encode`` returns an :class:`Encoding`; ``encode_batch`` returns
    padded numpy arrays and runs in C with the GIL released, on all OpenMP threads.
    """

    def __init__(self, spec: _Spec, source: str):
        self._spec = spec
        self.source = source
        vocab = dict(spec.vocab)  # Unigram: piece -> its (last) id
        _check_id_range(vocab, spec.added, source, len(spec.pieces))
        if spec.model == _WORDPIECE and spec.unk_token not in vocab:
            raise TokenizerFileError(f"{source}: the unknown token {spec.unk_token!r} is not in the vocabulary")
        # id -> token: the vocabulary (a later duplicate wins), then added tokens.
        if spec.model == _UNIGRAM:
            self._id_to_token: Dict[int, str] = dict(enumerate(spec.pieces))
        else:
            self._id_to_token = {i: t for t, i in vocab.items()}
        for a in spec.added:
            self._id_to_token[a["id"]] = a["content"]
        self._token_to_id: Dict[str, int] = {**vocab, **{a["content"]: a["id"] for a in spec.added}}
        self._special_ids = frozenset(a["id"] for a in spec.added if a.get("special", False))
        strip = spec.strip_accents if spec.strip_accents is not None else spec.lowercase
        options = {
            "model": spec.model, "bert_normalizer": int(spec.bert_normalizer), "clean_text": int(spec.clean_text),
            "handle_chinese_chars": int(spec.handle_chinese_chars), "strip_accents": int(bool(strip)),
            "lowercase": int(spec.lowercase), "pre_tokenizer": spec.pre_tokenizer,
            "add_prefix_space": int(spec.add_prefix_space), "use_regex": int(spec.use_regex), "post": spec.post,
            "trim_offsets": int(spec.trim_offsets), "post_add_prefix_space": int(spec.post_add_prefix_space),
            "unk_id": vocab.get(spec.unk_token, -1) if spec.unk_token is not None else -1,
            "max_input_chars_per_word": spec.max_input_chars_per_word,
            "byte_fallback": int(spec.byte_fallback), "python_truncation": int(spec.python_truncation),
        }
        if spec.model in (_UNIGRAM, _FASTBPE):
            options["unk_id"] = -1 if spec.unk_id is None else spec.unk_id
        if spec.model == _UNIGRAM:
            vocab_items = [(p, i) for i, p in enumerate(spec.pieces)]
        else:
            vocab_items = list(vocab.items())
        added = [(a["content"], a["id"],
                  (_AT_SINGLE_WORD if a.get("single_word") else 0) | (_AT_LSTRIP if a.get("lstrip") else 0)
                  | (_AT_RSTRIP if a.get("rstrip") else 0) | (_AT_NORMALIZED if a.get("normalized") else 0)
                  | (_AT_SPECIAL if a.get("special") else 0)) for a in spec.added]
        try:
            self._c = _C.Tokenizer(options, vocab_items, spec.merges, added, spec.single, spec.pair,
                                   spec.scores if spec.model == _UNIGRAM else None, spec.normalizers,
                                   spec.pre_tokenizers)
        except ValueError as e:
            where = spec.merges_file if spec.merges_file and str(e).startswith("merge ") else source
            raise TokenizerFileError(f"{where}: {e}") from None
        self.model_max_length: Optional[int] = spec.model_max_length
        self._pad_id = spec.pad_id

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_pretrained(cls, model_dir: str, **overrides: Any) -> "Tokenizer":
        """Load the tokenizer of a model folder.

        Uses ``tokenizer.json`` when present, else ``vocab.txt`` (WordPiece; with ``bpe.codes``,
        BERTweet's or PhoBERT's fastBPE) or ``vocab.json`` + ``merges.txt`` (byte-level BPE), with
        ``tokenizer_config.json`` / ``special_tokens_map.json``
        (``do_lower_case``, ``strip_accents``, ``tokenize_chinese_chars``, ``add_prefix_space``,
        ``trim_offsets``, ``model_max_length``, special tokens), as ``transformers.AutoTokenizer``
        does. ``overrides`` replace config values, e.g. ``add_prefix_space=True`` (which RoBERTa
        needs for ``is_split_into_words``, as in transformers).
        """
        if not os.path.isdir(model_dir):
            raise TokenizerFileError(f"model folder not found: {model_dir}")
        unknown = set(overrides) - {"do_lower_case", "strip_accents", "tokenize_chinese_chars", "add_prefix_space",
                                    "trim_offsets", "model_max_length", "keep_accents", "split_by_punct",
                                    *_SPECIAL_KEYS}
        if unknown:
            raise TypeError(f"from_pretrained: unknown option(s) {sorted(unknown)}")
        config = {**_read_config(model_dir), **overrides}
        tj = os.path.join(model_dir, "tokenizer.json")
        if os.path.exists(tj):
            fixed = set(overrides) & {"do_lower_case", "strip_accents", "tokenize_chinese_chars", "trim_offsets",
                                      "keep_accents", "split_by_punct"}
            if fixed:
                raise ValueError(f"{tj} fixes {sorted(fixed)}; edit the file to change them")
            spec = _spec_from_tokenizer_json(tj)
            source = tj
            for role in _SPECIAL_KEYS:
                if _token_content(config.get(role)) is not None:
                    spec.special[role] = _token_content(config[role])
            if "add_prefix_space" in overrides and spec.pre_tokenizer == _PRE_BYTELEVEL:
                spec.add_prefix_space = spec.post_add_prefix_space = bool(overrides["add_prefix_space"])
        elif _spm_file(model_dir) is not None and not os.path.exists(os.path.join(model_dir, "vocab.txt")):
            source = _spm_file(model_dir)
            spec = _spec_from_spm_checkpoint(model_dir, source, config)
        else:
            spec = _spec_from_legacy(model_dir, config)
            source = model_dir
        mml = config.get("model_max_length")
        if isinstance(mml, int) and 0 < mml < 10 ** 9:  # transformers writes 1e30 for "no limit"
            spec.model_max_length = mml
        tok = cls(spec, source)
        specials = tok.num_special_tokens_to_add(pair=True)
        if spec.model_max_length is not None and spec.model_max_length < specials:
            # every encode_batch truncates to it by default, and would fail
            raise TokenizerFileError(f"{os.path.join(model_dir, 'tokenizer_config.json')}: model_max_length: "
                                     f"{spec.model_max_length} leaves no room for the {specials} special tokens "
                                     f"of a sentence pair")
        return tok

    @classmethod
    def from_file(cls, path: str) -> "Tokenizer":
        """Load a HF ``tokenizer.json`` (as ``tokenizers.Tokenizer.from_file`` does)."""
        spec = _spec_from_tokenizer_json(path)
        return cls(spec, path)

    # ------------------------------------------------------------------ vocabulary

    @property
    def vocab_size(self) -> int:
        """Number of distinct tokens (vocabulary plus added tokens), as HF ``get_vocab_size()``."""
        return len(self._token_to_id)

    def token_to_id(self, token: str) -> Optional[int]:
        """Id of a token string, or None."""
        return self._token_to_id.get(token)

    def id_to_token(self, token_id: int) -> Optional[str]:
        """Token string of an id, or None."""
        return self._id_to_token.get(token_id)

    def _role_id(self, role: str, defaults: Sequence[str]) -> Optional[int]:
        tok = self._spec.special.get(role)
        if tok is not None:
            return self._token_to_id.get(tok)
        for d in defaults:
            if d in self._token_to_id:
                return self._token_to_id[d]
        return None

    @property
    def pad_token_id(self) -> Optional[int]:
        """Id used to pad batches (``[PAD]`` / ``<pad>``); None if the tokenizer has none."""
        if self._pad_id is not None:
            return self._pad_id
        return self._role_id("pad_token", ("[PAD]", "<pad>"))

    @property
    def cls_token_id(self) -> Optional[int]:
        """Id of the classifier token (``[CLS]`` / ``<s>``)."""
        return self._role_id("cls_token", ("[CLS]", "<s>"))

    @property
    def sep_token_id(self) -> Optional[int]:
        """Id of the separator token (``[SEP]`` / ``</s>``)."""
        return self._role_id("sep_token", ("[SEP]", "</s>"))

    @property
    def unk_token_id(self) -> Optional[int]:
        """Id of the unknown token (``[UNK]`` / ``<unk>``)."""
        return self._role_id("unk_token", ("[UNK]", "<unk>"))

    @property
    def mask_token_id(self) -> Optional[int]:
        """Id of the mask token (``[MASK]`` / ``<mask>``)."""
        return self._role_id("mask_token", ("[MASK]", "<mask>"))

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """How many special tokens encoding adds to a single input or a pair."""
        return int(self._c.num_special_tokens_to_add(pair))

    # ------------------------------------------------------------------ encoding

    @staticmethod
    def _max_length(max_length: Optional[int]) -> int:
        if max_length is None:
            return -1
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 0:
            raise ValueError(f"max_length must be a non-negative int or None, got {max_length!r}")
        return max_length

    def encode(self, text: TextInput, pair: Optional[TextInput] = None, add_special_tokens: bool = True,
               max_length: Optional[int] = None, is_split_into_words: bool = False) -> Encoding:
        """Encode one text (or a pair of texts) like HF ``Tokenizer.encode``.

        With ``is_split_into_words=True``, ``text`` (and ``pair``) are lists of words; each word is
        tokenized on its own and its tokens carry its index as word id (HF ``is_pretokenized``).
        ``max_length`` truncates (longest_first for pairs, special tokens included); the default
        is no truncation. A ``str`` with lone surrogates raises TypeError, as in HF.
        """
        return self._encoding_call(self._c.encode, text, pair, bool(add_special_tokens), self._max_length(max_length),
                                   int(bool(is_split_into_words)))

    def _encoding_call(self, encode: Any, *args: Any) -> Any:
        """``encode(*args)``; a Unigram model without ``unk_id`` meeting text its vocabulary cannot
        cover fails as in HF tokenizers, as a TokenizerFileError naming the file (the file lacks the
        unknown token that text needs)."""
        try:
            return encode(*args)
        except ValueError as e:
            if self._spec.model == _UNIGRAM and self._spec.unk_id is None and "`unk_id` is missing" in str(e):
                raise TokenizerFileError(f"{self.source}: {e} (model.unk_id is null and byte_fallback cannot cover "
                                         f"the text; give the Unigram model an unk_id)") from None
            raise

    def encode_batch(self, texts_or_pairs: Sequence[BatchInput], max_length: Optional[int] = None,
                     add_special_tokens: bool = True, is_split_into_words: bool = False,
                     truncation: bool = True, num_threads: Optional[int] = None) -> Dict[str, np.ndarray]:
        """Encode a batch in C (GIL released, OpenMP threads) and pad it to its longest encoding.

        Items are texts or ``(text, text_pair)`` tuples; with ``is_split_into_words=True`` lists of
        words or ``(words, words)`` tuples. Truncation (``longest_first``, special tokens included)
        is to ``max_length``, or to ``model_max_length`` when ``max_length`` is None and the model
        has one; ``truncation=False`` turns it off.

        Returns int64 arrays of shape (batch, length): ``input_ids``, ``attention_mask``,
        ``token_type_ids``, ``special_tokens_mask``, ``word_ids`` and ``sequence_ids`` (-1 for
        special tokens and padding), and ``offset_mapping`` of shape (batch, length, 2).
        Padding uses the model's pad id, type id 0, offsets (0, 0). A non-str item raises
        TypeError naming its index.
        """
        if isinstance(texts_or_pairs, (str, bytes)) or not isinstance(texts_or_pairs, Sequence):
            raise TypeError("encode_batch expects a list of inputs (texts, pairs or word lists), "
                            f"got {type(texts_or_pairs).__name__}")
        if max_length is None and truncation:
            max_length = self.model_max_length
        limit = self._max_length(max_length) if truncation else -1
        pad = self.pad_token_id
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ValueError(f"num_threads must be a positive int or None, got {num_threads!r}")
        return self._encoding_call(self._c.encode_batch, list(texts_or_pairs), bool(add_special_tokens), limit,
                                   int(bool(is_split_into_words)), 0 if pad is None else pad, num_threads or 0)

    # ------------------------------------------------------------------ decoding

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of token ids, as HF ``tokenizers.Tokenizer.decode`` (WordPiece, ByteLevel or the Unigram
        files' decoders: Metaspace, Replace, ByteFallback, Fuse, Strip), or for fastBPE as
        BertweetTokenizer.decode."""
        fastbpe = self._spec.decoder == "fastbpe"
        tokens = []
        for i in ids:
            i = int(i)
            if skip_special_tokens and i in self._special_ids:
                continue
            tok = self._id_to_token.get(i)
            if tok is None:
                if not fastbpe:
                    continue  # tokenizers skips an unknown id
                tok = self._spec.special["unk_token"]  # a Python tokenizer shows the unknown token
            tokens.append(tok)
        if fastbpe:  # convert_tokens_to_string, then transformers' clean_up_tokenization if asked
            text = " ".join(tokens).replace("@@ ", "").strip()
            return _cleanup(text, dont=False) if self._spec.decoder_cleanup else text
        if self._spec.decoder == "bytelevel":
            return _bytelevel_decode(tokens)
        if self._spec.decoder == "steps":
            return "".join(_decode_steps(tokens, self._spec.decoders))
        prefix, out = self._spec.decoder_prefix, []
        for n, tok in enumerate(tokens):
            if n:
                tok = tok.replace(prefix, "", 1) if tok.startswith(prefix) else " " + tok
            if self._spec.decoder_cleanup:
                tok = _cleanup(tok)
            out.append(tok)
        return "".join(out)

    def __repr__(self) -> str:
        kind = {_WORDPIECE: "WordPiece", _BPE: "BPE", _UNIGRAM: "Unigram", _FASTBPE: "fastBPE"}[self._spec.model]
        return f"Tokenizer({kind}, vocab_size={self.vocab_size}, source={self.source!r})"


def _cleanup(s: str, dont: bool = True) -> str:
    """tokenizers' WordPiece decoder cleanup of tokenization spaces; without its " do not" -> " don't"
    (``dont=False``) transformers' clean_up_tokenization."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                 (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        if dont or a != " do not":
            s = s.replace(a, b)
    return s


def _decode_steps(tokens: List[str], decoders: List[Dict[str, Any]]) -> List[str]:
    """tokenizers' decode_chain of each decoder in turn (Metaspace, Replace, ByteFallback, Fuse, Strip)."""
    for d in decoders:
        t = d["type"]
        if t == "Metaspace":
            repl, lead = d["replacement"], d["prepend_scheme"] != "never"
            tokens = ["".join(("" if i == 0 and lead else " ") if c == repl else c for c in tok)
                      for i, tok in enumerate(tokens)]
        elif t == "Replace":
            tokens = [tok.replace(d["from"], d["to"]) for tok in tokens]
        elif t == "Fuse":
            tokens = ["".join(tokens)]
        elif t == "Strip":
            out = []
            for tok in tokens:
                a, b = 0, len(tok)
                while a < min(d["start"], b) and tok[a] == d["content"]:
                    a += 1
                for _ in range(d["stop"]):
                    if b > a and tok[b - 1] == d["content"]:
                        b -= 1
                out.append(tok[a:b])
            tokens = out
        else:  # ByteFallback: runs of <0xNN> pieces become their UTF-8 text (U+FFFD per byte if invalid)
            out, pending = [], bytearray()

            def flush() -> None:
                if pending:
                    try:
                        out.append(pending.decode("utf-8"))
                    except UnicodeDecodeError:
                        out.extend("\ufffd" for _ in pending)
                    pending.clear()

            for tok in tokens:
                if len(tok) == 6 and tok.startswith("<0x") and tok.endswith(">") and \
                        all(c in "0123456789abcdefABCDEF" for c in tok[3:5]):
                    pending.append(int(tok[3:5], 16))
                else:
                    flush()
                    out.append(tok)
            flush()
            tokens = out
    return tokens


def _byte_table() -> Dict[str, int]:
    """Byte-level char -> byte (GPT-2 bytes_to_unicode, inverted)."""
    keep = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, n = {}, 0
    for b in range(256):
        if b in keep:
            table[chr(b)] = b
        else:
            table[chr(0x100 + n)] = b
            n += 1
    return table


_CHAR_BYTES = _byte_table()


def _bytelevel_decode(tokens: List[str]) -> str:
    out = bytearray()
    for tok in tokens:
        try:
            out.extend([_CHAR_BYTES[c] for c in tok])
        except KeyError:
            out.extend(tok.encode("utf-8"))
    return out.decode("utf-8", errors="replace")
