"""Tokenizers for the BERT family (WordPiece) and the RoBERTa family (byte-level BPE).

The tokenization itself runs in C (``multienc.engine._C.Tokenizer``) with the behaviour of
HuggingFace's fast tokenizers: the same ids, type ids, character offsets and word
indices. This module reads the tokenizer files and offers the Python API::

    tok = Tokenizer.from_pretrained("path/to/bert-base-uncased")
    enc = tok.encode("Hello world!", pair="Second sentence")
    enc.ids, enc.type_ids, enc.offsets, enc.word_ids, enc.tokens
    batch = tok.encode_batch(["a text", ("first", "second")], max_length=128)
    batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]

Files understood: ``tokenizer.json`` (HF ``tokenizers`` format) or the legacy
``vocab.txt`` (WordPiece) / ``vocab.json`` + ``merges.txt`` (BPE), with
``tokenizer_config.json`` and ``special_tokens_map.json``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from multienc.engine import _C
from multienc.formats import schema

__all__ = ["Encoding", "Tokenizer", "TokenizerFileError"]

TextInput = Union[str, Sequence[str]]
BatchInput = Union[TextInput, Tuple[TextInput, TextInput], List[TextInput]]

# Kinds shared with csrc/tokenize/tokenizer.h.
_WORDPIECE, _BPE = 1, 2
_PRE_NONE, _PRE_BERT, _PRE_BYTELEVEL = 0, 1, 2
_POST_NONE, _POST_TEMPLATE = 0, 1
_TMPL_A, _TMPL_B = -1, -2
_AT_SINGLE_WORD, _AT_LSTRIP, _AT_RSTRIP, _AT_NORMALIZED, _AT_SPECIAL = 1, 2, 4, 8, 16

_SPECIAL_KEYS = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token", "bos_token", "eos_token")


class TokenizerFileError(ValueError):
    """A tokenizer file is missing, unreadable or malformed (the message names the file and field)."""


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
_TOKENIZER_JSON = schema.Obj({
    "model": schema.Obj({
        "type": schema.Opt(schema.Str()),
        "vocab": schema.MapOf(_ID),
        "merges": schema.Arr(schema.Either(schema.Str(), schema.Tup(schema.Str(), schema.Str()),
                                           what='"a b" or ["a", "b"]')),
        "unk_token": schema.Opt(schema.Str()),
        "continuing_subword_prefix": schema.Opt(schema.Str()),
        "end_of_word_suffix": schema.Opt(schema.Str()),
        "max_input_chars_per_word": schema.Int(0, (1 << 31) - 1),
        "dropout": schema.Opt(schema.Float(0.0, 1.0)),
        "fuse_unk": schema.Opt(_FLAG), "byte_fallback": schema.Opt(_FLAG), "ignore_merges": schema.Opt(_FLAG),
    }, required=("vocab",)),
    "normalizer": schema.Opt(schema.Obj({"type": schema.Str(), "clean_text": _FLAG, "handle_chinese_chars": _FLAG,
                                         "strip_accents": schema.Opt(_FLAG), "lowercase": _FLAG})),
    "pre_tokenizer": schema.Opt(schema.Obj({"type": schema.Str(), "add_prefix_space": _FLAG,
                                            "use_regex": _FLAG})),
    "post_processor": schema.Opt(schema.Obj({
        "type": schema.Str(), "single": _TEMPLATE, "pair": _TEMPLATE,
        "special_tokens": schema.MapOf(schema.Obj({"id": schema.Str(), "ids": schema.Arr(_ID, max_len=1024)},
                                                  required=("ids",))),
        "sep": _PAIR, "cls": _PAIR, "trim_offsets": _FLAG, "add_prefix_space": _FLAG})),
    "decoder": schema.Opt(schema.Obj({"type": schema.Str(), "prefix": schema.Str(), "cleanup": _FLAG})),
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
    "add_prefix_space": _FLAG, "trim_offsets": _FLAG,
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
    single: List[Tuple[int, int]] = field(default_factory=list)  # (token id | _TMPL_A/_TMPL_B, type id)
    pair: List[Tuple[int, int]] = field(default_factory=list)
    merges_file: Optional[str] = None  # named in merge errors
    trim_offsets: bool = False
    post_add_prefix_space: bool = False
    added: List[Dict[str, Any]] = field(default_factory=list)  # HF AddedToken dicts with "id"
    decoder: str = "wordpiece"  # or "bytelevel"
    decoder_prefix: str = "##"
    decoder_cleanup: bool = True
    special: Dict[str, str] = field(default_factory=dict)  # role (e.g. "pad_token") -> token
    model_max_length: Optional[int] = None
    pad_id: Optional[int] = None


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
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
        raise NotImplementedError(f"{where}: {what} is not supported by multienc's tokenizers")


def _spec_from_tokenizer_json(path: str) -> _Spec:
    """Read a HF tokenizers ``tokenizer.json`` (the components the BERT and RoBERTa families use)."""
    d = _checked(_read_json(path), _TOKENIZER_JSON, path)
    m = d["model"]
    mtype = m.get("type") or ("BPE" if "merges" in m else "WordPiece" if "continuing_subword_prefix" in m else None)
    vocab = m["vocab"]
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
        raise NotImplementedError(f"{path}: model type {mtype!r} is not supported (WordPiece and BPE are)")

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

    pp = d.get("post_processor")
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

            def items(tmpl: List[Dict[str, Any]]) -> List[Tuple[int, int]]:
                out: List[Tuple[int, int]] = []
                for piece in tmpl:
                    if "Sequence" in piece:
                        out.append((_TMPL_A if piece["Sequence"]["id"] == "A" else _TMPL_B,
                                    int(piece["Sequence"]["type_id"])))
                    else:
                        sid = piece["SpecialToken"]["id"]
                        if sid not in specials:
                            raise TokenizerFileError(f"{path}: template token {sid!r} has no special_tokens entry")
                        out.extend((int(i), int(piece["SpecialToken"]["type_id"])) for i in specials[sid]["ids"])
                return out

            spec.single, spec.pair = items(pp["single"]), items(pp["pair"])
        elif t in ("RobertaProcessing", "BertProcessing"):
            spec.post = _POST_TEMPLATE
            (_, sep_id), (_, cls_id) = pp["sep"], pp["cls"]
            if t == "RobertaProcessing":
                spec.single = [(cls_id, 0), (_TMPL_A, 0), (sep_id, 0)]
                spec.pair = spec.single + [(sep_id, 0), (_TMPL_B, 0), (sep_id, 0)]
                spec.trim_offsets = bool(pp.get("trim_offsets", True))
                spec.post_add_prefix_space = bool(pp.get("add_prefix_space", True))
            else:
                spec.single = [(cls_id, 0), (_TMPL_A, 0), (sep_id, 0)]
                spec.pair = spec.single + [(_TMPL_B, 1), (sep_id, 1)]
        elif t == "ByteLevel":
            spec.trim_offsets = bool(pp.get("trim_offsets", True))
            spec.post_add_prefix_space = bool(pp.get("add_prefix_space", True))
        else:
            _need(False, path, f"post-processor {t!r}")

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


def _spec_from_legacy(model_dir: str, config: Dict[str, Any]) -> _Spec:
    """vocab.txt (WordPiece, BertTokenizer) or vocab.json + merges.txt (BPE, RobertaTokenizer)."""
    vocab_txt = os.path.join(model_dir, "vocab.txt")
    vocab_json = os.path.join(model_dir, "vocab.json")
    if os.path.exists(vocab_txt):
        vocab: Dict[str, int] = {}
        for i, line in enumerate(_read_lines(vocab_txt)):
            vocab[_rust_trim_end(line)] = i
        if not vocab:
            raise TokenizerFileError(f"{vocab_txt}: the vocabulary is empty")
        lower = bool(config.get("do_lower_case", True))
        spec = _Spec(_WORDPIECE, vocab, bert_normalizer=True, lowercase=lower,
                     handle_chinese_chars=bool(config.get("tokenize_chinese_chars", True)),
                     strip_accents=config.get("strip_accents"), pre_tokenizer=_PRE_BERT, post=_POST_TEMPLATE)
        roles = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                 "mask_token": "[MASK]"}
    elif os.path.exists(vocab_json):
        vocab = _checked(_read_json(vocab_json), schema.MapOf(_ID), vocab_json)
        merges_txt = os.path.join(model_dir, "merges.txt")
        lines = [ln for ln in _read_lines(merges_txt) if not ln.startswith("#version")]
        aps = bool(config.get("add_prefix_space", False))
        spec = _Spec(_BPE, vocab, merges=_merge_pairs(lines, merges_txt), pre_tokenizer=_PRE_BYTELEVEL,
                     add_prefix_space=aps, post=_POST_TEMPLATE, trim_offsets=bool(config.get("trim_offsets", True)),
                     post_add_prefix_space=aps, decoder="bytelevel", merges_file=merges_txt)
        roles = {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
                 "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"}
    else:
        raise TokenizerFileError(f"{model_dir}: no tokenizer.json, vocab.txt or vocab.json + merges.txt found")

    for role in _SPECIAL_KEYS:
        if _token_content(config.get(role)) is not None:
            roles[role] = _token_content(config[role])
    if spec.model == _WORDPIECE and roles["unk_token"] not in vocab:
        raise TokenizerFileError(f"{vocab_txt}: the unknown token {roles['unk_token']!r} is not in the vocabulary")
    # Special tokens become added tokens (normalized=False) as transformers registers them; one
    # missing from the vocabulary gets its id as tokenizers assigns it (in transformers' role order).
    decoder_cfg = config.get("added_tokens_decoder") or {}
    added: Dict[str, Dict[str, Any]] = {}
    for tid, tok in decoder_cfg.items():
        if isinstance(tok, dict) and tok.get("content") is not None:
            flags = {k: bool(tok[k]) for k in ("single_word", "lstrip", "rstrip", "normalized", "special") if k in tok}
            added[tok["content"]] = _added_dict(tok["content"], int(tid), **flags)
    for content in dict.fromkeys(roles[r] for r in ("bos_token", "eos_token", "unk_token", "sep_token",
                                                     "pad_token", "cls_token", "mask_token") if r in roles):
        if content in added:
            continue
        if content in vocab:
            added[content] = _added_dict(content, vocab[content])
        else:  # tokenizers' AddedVocabulary::add_tokens id rule
            top = max((a["id"] for a in added.values()), default=None)
            new_id = top + 1 if top is not None and top >= len(vocab) else len(vocab)
            added[content] = _added_dict(content, new_id)
    spec.added = sorted(added.values(), key=lambda a: a["id"])
    spec.unk_token = roles["unk_token"] if spec.model == _WORDPIECE else None
    spec.special = roles
    ids = {**vocab, **{a["content"]: a["id"] for a in spec.added}}
    cls_id, sep_id = ids[roles["cls_token"]], ids[roles["sep_token"]]
    if spec.model == _WORDPIECE:
        spec.single = [(cls_id, 0), (_TMPL_A, 0), (sep_id, 0)]
        spec.pair = spec.single + [(_TMPL_B, 1), (sep_id, 1)]
    else:
        spec.single = [(cls_id, 0), (_TMPL_A, 0), (sep_id, 0)]
        spec.pair = spec.single + [(sep_id, 0), (_TMPL_B, 0), (sep_id, 0)]
    return spec


def _check_id_range(vocab: Dict[str, int], added: List[Dict[str, Any]], source: str) -> None:
    """Ids may leave holes (HF allows any), but not so many that the id table the C tokenizer sizes
    by the largest id dwarfs the vocabulary: the largest must be below twice the number of tokens
    plus 1024 (one id of 2**30 - 1 in a small file would otherwise cost gigabytes)."""
    count = len(vocab) + len(added)
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
    """A WordPiece or byte-level BPE tokenizer with HF fast-tokenizer behaviour, running in C.

    Build one with :meth:`from_pretrained` (a model folder) or :meth:`from_file` (a
    ``tokenizer.json``). ``encode`` returns an :class:`Encoding`; ``encode_batch`` returns
    padded numpy arrays and runs in C with the GIL released, on all OpenMP threads.
    """

    def __init__(self, spec: _Spec, source: str):
        self._spec = spec
        self.source = source
        vocab = dict(spec.vocab)
        _check_id_range(vocab, spec.added, source)
        if spec.model == _WORDPIECE and spec.unk_token not in vocab:
            raise TokenizerFileError(f"{source}: the unknown token {spec.unk_token!r} is not in the vocabulary")
        # id -> token: the vocabulary (a later duplicate wins), then added tokens.
        self._id_to_token: Dict[int, str] = {i: t for t, i in vocab.items()}
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
        }
        added = [(a["content"], a["id"],
                  (_AT_SINGLE_WORD if a.get("single_word") else 0) | (_AT_LSTRIP if a.get("lstrip") else 0)
                  | (_AT_RSTRIP if a.get("rstrip") else 0) | (_AT_NORMALIZED if a.get("normalized") else 0)
                  | (_AT_SPECIAL if a.get("special") else 0)) for a in spec.added]
        try:
            self._c = _C.Tokenizer(options, list(vocab.items()), spec.merges, added, spec.single, spec.pair)
        except ValueError as e:
            where = spec.merges_file if spec.merges_file and str(e).startswith("merge ") else source
            raise TokenizerFileError(f"{where}: {e}") from None
        self.model_max_length: Optional[int] = spec.model_max_length
        self._pad_id = spec.pad_id

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_pretrained(cls, model_dir: str, **overrides: Any) -> "Tokenizer":
        """Load the tokenizer of a model folder.

        Uses ``tokenizer.json`` when present, else ``vocab.txt`` (WordPiece) or ``vocab.json`` +
        ``merges.txt`` (byte-level BPE), with ``tokenizer_config.json`` / ``special_tokens_map.json``
        (``do_lower_case``, ``strip_accents``, ``tokenize_chinese_chars``, ``add_prefix_space``,
        ``trim_offsets``, ``model_max_length``, special tokens), as ``transformers.AutoTokenizer``
        does. ``overrides`` replace config values, e.g. ``add_prefix_space=True`` (which RoBERTa
        needs for ``is_split_into_words``, as in transformers).
        """
        if not os.path.isdir(model_dir):
            raise TokenizerFileError(f"model folder not found: {model_dir}")
        unknown = set(overrides) - {"do_lower_case", "strip_accents", "tokenize_chinese_chars", "add_prefix_space",
                                    "trim_offsets", "model_max_length", *_SPECIAL_KEYS}
        if unknown:
            raise TypeError(f"from_pretrained: unknown option(s) {sorted(unknown)}")
        config = {**_read_config(model_dir), **overrides}
        tj = os.path.join(model_dir, "tokenizer.json")
        if os.path.exists(tj):
            fixed = set(overrides) & {"do_lower_case", "strip_accents", "tokenize_chinese_chars", "trim_offsets"}
            if fixed:
                raise ValueError(f"{tj} fixes {sorted(fixed)}; edit the file to change them")
            spec = _spec_from_tokenizer_json(tj)
            source = tj
            for role in _SPECIAL_KEYS:
                if _token_content(config.get(role)) is not None:
                    spec.special[role] = _token_content(config[role])
            if "add_prefix_space" in overrides and spec.pre_tokenizer == _PRE_BYTELEVEL:
                spec.add_prefix_space = spec.post_add_prefix_space = bool(overrides["add_prefix_space"])
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
        return self._c.encode(text, pair, bool(add_special_tokens), self._max_length(max_length),
                              int(bool(is_split_into_words)))

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
        return self._c.encode_batch(list(texts_or_pairs), bool(add_special_tokens), limit,
                                    int(bool(is_split_into_words)), 0 if pad is None else pad, num_threads or 0)

    # ------------------------------------------------------------------ decoding

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of token ids, as HF ``tokenizers.Tokenizer.decode`` (WordPiece or ByteLevel decoder)."""
        tokens = []
        for i in ids:
            i = int(i)
            tok = self._id_to_token.get(i)
            if tok is None or (skip_special_tokens and i in self._special_ids):
                continue
            tokens.append(tok)
        if self._spec.decoder == "bytelevel":
            return _bytelevel_decode(tokens)
        prefix, out = self._spec.decoder_prefix, []
        for n, tok in enumerate(tokens):
            if n:
                tok = tok.replace(prefix, "", 1) if tok.startswith(prefix) else " " + tok
            if self._spec.decoder_cleanup:
                tok = _cleanup(tok)
            out.append(tok)
        return "".join(out)

    def __repr__(self) -> str:
        kind = "WordPiece" if self._spec.model == _WORDPIECE else "BPE"
        return f"Tokenizer({kind}, vocab_size={self.vocab_size}, source={self.source!r})"


def _cleanup(s: str) -> str:
    """tokenizers' WordPiece decoder cleanup of tokenization spaces."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                 (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        s = s.replace(a, b)
    return s


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
