"""Pretrained encoders as the task heads and the trainer see them.

:class:`LanguageModel` is one HuggingFace encoder (BERT, RoBERTa, XLM-RoBERTa, ELECTRA,
DistilBERT, ALBERT, MPNet, DeBERTa-v2/v3, ModernBERT and the checkpoints built on them, e.g.
SpanBERT, ERNIE 2.0, all-mpnet-base-v2) named as on the hub or by a local folder, with its
tokenizer and a pooling of the last hidden states::

    lm = LanguageModel("google/electra-base-discriminator")       # hub id, HF cache, offline
    lm = LanguageModel("roberta-base", hidden_dropout_prob=0.4, pooling="mean")
    lm = LanguageModel("path/to/folder", tokenizer="bert-base-cased")
    vectors = lm.embed(["A sentence.", ("A premise.", "A hypothesis.")])   # (2, lm.embedding_length)

Files come from :func:`multienc.hub.resolve_model_files`, weights are read by
:mod:`multienc.formats.weights` (safetensors, sharded, ``pytorch_model.bin`` without torch),
the encoder is :class:`multienc.engine.Encoder` and the tokenizer
:class:`multienc.engine.Tokenizer`. In a checkpoint a language model is its settings, its
config.json and its tokenizer files (:meth:`LanguageModel.checkpoint_spec`); reloading writes
those files into a content-addressed folder under ``$MULTIENC_CACHE/checkpoints``.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from multienc.engine import (Encoder, ModelConfigError, Tokenizer, TokenizerFileError, engine_config,
                             hidden_dropout_key, read_config, spm_folder_tokenizer_json)
from multienc.formats import schema
from multienc.hub import SENTENCEPIECE_FILES, TOKENIZER_FILES, resolve_model_files, resolve_tokenizer_files
from multienc.models.inputs import in_length_batches, sentence_pool_weights

__all__ = ["LanguageModel", "POOLINGS"]

POOLINGS = ("cls", "mean", "word-level")
# Files from which Tokenizer.from_pretrained can build a tokenizer (with tokenizer_config.json etc.).
_VOCABULARY_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", *SENTENCEPIECE_FILES)
# What to suggest when a checkpoint ships no tokenizer, by model_type.
_TOKENIZER_HINTS = {"bert": ("bert-base-cased", " (SpanBERT's vocabulary; 'bert-base-uncased' for uncased models)"),
                    "ernie": ("nghuyong/ernie-2.0-base-en", " (ERNIE 2.0's English vocabulary)"),
                    "roberta": ("roberta-base", ""), "electra": ("google/electra-base-discriminator", ""),
                    "xlm-roberta": ("xlm-roberta-base", ""), "camembert": ("camembert-base", ""),
                    "albert": ("albert-base-v2", ""),
                    "distilbert": ("distilbert-base-uncased", " ('distilbert-base-cased' for cased models)"),
                    "mpnet": ("sentence-transformers/all-mpnet-base-v2", ""),
                    "deberta": ("microsoft/deberta-base", ""),
                    "deberta-v2": ("microsoft/deberta-v3-base", " (DeBERTa-v3's; 'microsoft/deberta-v2-xlarge' for v2)")}
_WORD_LEVEL_ONLY_IN_TAGGER = ("word-level pooling makes one vector per word inside the sequence tagger "
                    "(multienc.models.SequenceTagger); use pooling='cls' or 'mean' for sentence vectors")

Sentences = Sequence[Union[str, Sequence[str]]]


def _items(sentences: Sentences) -> List:
    """A batch's texts and pairs as the tokenizer takes them (2-item lists as pairs); TypeError for
    a single string or a non-sequence, ValueError for an empty batch."""
    if isinstance(sentences, (str, bytes)) or not isinstance(sentences, Sequence):
        raise TypeError(f"sentences must be a list of texts or (text, text) pairs, got {type(sentences).__name__}")
    if len(sentences) == 0:
        raise ValueError("sentences is empty")
    return [tuple(s) if isinstance(s, list) and len(s) == 2 else s for s in sentences]


def _check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(repr(p) for p in POOLINGS)}, got {pooling!r}")
    return pooling


class LanguageModel:
    """One pretrained transformer encoder with its tokenizer (the seed's ``LanguageModel``).

    Args:
        model: a hub id (``"roberta-base"``, ``"org/name"``; looked up in the HF cache, downloaded
            from ``$HF_ENDPOINT`` when missing, cache only with ``HF_HUB_OFFLINE=1``) or a local
            folder holding ``config.json`` and the weights.
        fine_tune: whether training updates this encoder (read by the trainer).
        pooling: ``'cls'`` (the row of the classifier token), ``'mean'`` (average over the real
            tokens) or ``'word-level'`` (one row per word, for sequence tagging).
        hidden_dropout_prob: replaces the config's hidden dropout probability (0 <= p < 1) of
            BERT, RoBERTa and ELECTRA; ModernBERT has none (its embedding, attention and MLP
            dropouts come from config.json).
        keep_special_tokens: the seed's option to put the CLS row before the word rows; recorded in
            checkpoints but unused: the tagger's rows are the words only (in the seed the CLS row
            shifted every word's vector against its tag).
        revision: branch, tag or commit of a hub model (default ``main``).
        tokenizer: the tokenizer to use instead of the model's own: a :class:`Tokenizer`, or a
            hub id / folder whose tokenizer files are loaded (only those files are downloaded).
            Needed for checkpoints that ship no tokenizer files.
        device: ``'cpu'``, ``'cuda'`` or ``'cuda:N'`` for the encoder's weights and compute; None
            chooses as :func:`multienc.device.resolve_device` says (``$MULTIENC_DEVICE``, else a
            device on which the whole task model runs). A head built on this LM runs there too.

    Raises ValueError for a bad argument, NotImplementedError for a model type the engine does
    not support, :class:`multienc.hub.HubError` (an OSError) when the files cannot be had,
    :class:`multienc.engine.ModelConfigError` / ValueError for a broken config or checkpoint and
    :class:`TokenizerFileError` for missing or broken tokenizer files; each message names the
    file (and tensor).
    """

    def __init__(self, model: str = "google/electra-base-discriminator", fine_tune: bool = True,
                 pooling: str = "cls", hidden_dropout_prob: float = 0.1, keep_special_tokens: bool = True,
                 revision: Optional[str] = None, tokenizer: Union[Tokenizer, str, None] = None,
                 device: Optional[str] = None):
        self._set_options(model, fine_tune, pooling, hidden_dropout_prob, keep_special_tokens)
        self.model_dir: str = resolve_model_files(model, revision=revision)
        # An unsupported model type is reported before the tokenizer and the weights are read.
        raw_config = read_config(self.model_dir)
        engine_config(raw_config, os.path.join(self.model_dir, "config.json"))
        tok = self._load_tokenizer(tokenizer, raw_config["model_type"])
        dropout = {hidden_dropout_key(raw_config["model_type"]): float(hidden_dropout_prob)}
        self._finish(tok, Encoder(self.model_dir, dropout, device=device))

    #: what :meth:`checkpoint_spec` writes (checked when a checkpoint is read; the config is checked
    #: by the engine, the tokenizer files by the tokenizer)
    SPEC_SCHEMA = schema.Obj({
        "model_id": schema.Str(1, 4096), "name": schema.Str(0, 4096), "pooling": schema.Const(*POOLINGS),
        "fine_tune": schema.Bool(), "keep_special_tokens": schema.Bool(), "max_length": schema.Int(1, 1 << 31),
        "config": schema.Obj({}),
        "tokenizer_files": schema.MapOf(schema.Str(0, 1 << 30), key=schema.Const(*TOKENIZER_FILES), max_len=16),
        "tokenizer_binary_files": schema.MapOf(schema.Str(0, 1 << 30), key=schema.Const(*SENTENCEPIECE_FILES),
                                               max_len=len(SENTENCEPIECE_FILES)),
    }, required=("model_id", "pooling", "fine_tune", "keep_special_tokens", "config", "tokenizer_files"))

    def checkpoint_spec(self) -> Dict[str, Any]:
        """What a checkpoint records of this language model (JSON-able): its settings, its config
        (the dropout override included) and the tokenizer files :class:`Tokenizer` reads: the text
        files as text, a SentencePiece model (binary; only without tokenizer.json, which supersedes
        it) base64-encoded under ``tokenizer_binary_files``."""
        names = self.tokenizer_file_names()
        if "tokenizer.json" in names:
            names = [n for n in names if n not in SENTENCEPIECE_FILES]
        files, binary = {}, {}
        for name in names:
            path = os.path.join(self.tokenizer_dir, name)
            if name in SENTENCEPIECE_FILES:
                with open(path, "rb") as fb:
                    binary[name] = base64.b64encode(fb.read()).decode("ascii")
            else:
                with open(path, encoding="utf-8") as f:
                    files[name] = f.read()
        spec = dict(model_id=self.model_id, name=self.name, pooling=self.pooling, fine_tune=self.fine_tune,
                    keep_special_tokens=self.keep_special_tokens, max_length=self.max_length, config=self.config,
                    tokenizer_files=files)
        if binary:
            spec["tokenizer_binary_files"] = binary
        return spec

    @classmethod
    def from_checkpoint_spec(cls, spec: Mapping[str, Any], state: Mapping[str, np.ndarray],
                             source: str = "checkpoint") -> "LanguageModel":
        """Rebuild from :meth:`checkpoint_spec` and the encoder weights, with no network: the config
        and tokenizer files are written once into a content-addressed cache folder."""
        config = dict(spec["config"])
        cfg = engine_config(config, f"{source}: config")  # checked before anything is written or read
        folder = _materialise(spec)
        self = cls.__new__(cls)
        self._set_options(spec["model_id"], spec["fine_tune"], spec["pooling"], cfg["hidden_dropout_prob"],
                          spec["keep_special_tokens"])
        self.model_dir = folder
        self._tokenizer_dir = folder
        self._finish(Tokenizer.from_pretrained(folder), Encoder.from_state_dict(config, state, source))
        return self

    def _set_options(self, model: str, fine_tune: bool, pooling: str, hidden_dropout_prob: float,
                     keep_special_tokens: bool) -> None:
        self.pooling: str = _check_pooling(pooling)
        if isinstance(hidden_dropout_prob, bool) or not isinstance(hidden_dropout_prob, (int, float)) \
                or not 0.0 <= hidden_dropout_prob < 1.0:
            raise ValueError(f"hidden_dropout_prob must be a number in [0, 1), got {hidden_dropout_prob!r}")
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a hub id or a folder, got {model!r}")
        self.model_id: str = model
        self.name: str = model.rstrip("/").split("/")[-1]
        self.fine_tune: bool = bool(fine_tune)
        self.keep_special_tokens: bool = bool(keep_special_tokens)

    def _finish(self, tokenizer: Tokenizer, encoder: Encoder) -> None:
        self.tokenizer: Tokenizer = tokenizer
        self._word_tokenizer: Optional[Tokenizer] = None
        self.encoder: Encoder = encoder
        self.config: Dict[str, Any] = self.encoder.config
        vocab_size = int(self.config["vocab_size"])
        if self.tokenizer.vocab_size > vocab_size:
            raise ValueError(f"{self.model_id}: the tokenizer ({self.tokenizer.source}) has "
                             f"{self.tokenizer.vocab_size} tokens but the model's vocabulary only {vocab_size}; "
                             f"pass the tokenizer the model was trained with (tokenizer=...)")
        self.embedding_length: int = self.encoder.hidden_size
        self.cls_position: int = 0 if self.tokenizer.encode("a").ids[0] == self.tokenizer.cls_token_id else -1
        limit = self.tokenizer.model_max_length
        self.max_length: int = min(self.encoder.max_positions, limit if limit is not None else 1 << 62)
        specials = self.tokenizer.num_special_tokens_to_add(pair=True)
        if self.max_length < specials:  # the tokenizer refuses such a model_max_length itself
            raise ModelConfigError(
                f"{self.model_id}: config.json's max_position_embeddings leaves {self.encoder.max_positions} "
                f"position(s), no room for the {specials} special tokens of a sentence pair")

    @property
    def device(self) -> str:
        """Where the encoder's weights live and it computes (``'cpu'``, ``'cuda:N'``...)."""
        return self.encoder.device

    @property
    def word_tokenizer(self) -> Tokenizer:
        """The tokenizer for pre-split words (``is_split_into_words=True``), as the tagger uses it.

        The model's own tokenizer reloaded from :attr:`tokenizer_dir` with ``add_prefix_space=True``,
        which byte-level BPE (RoBERTa) needs so that every word is tokenized as after a space (what
        transformers requires for pre-split input); WordPiece tokenizers ignore the option.
        """
        if self._word_tokenizer is None:
            self._word_tokenizer = Tokenizer.from_pretrained(self._tokenizer_dir, add_prefix_space=True)
        return self._word_tokenizer

    @property
    def tokenizer_dir(self) -> str:
        """The folder the tokenizer files were read from."""
        return self._tokenizer_dir

    def tokenizer_file_names(self) -> List[str]:
        """Names of the tokenizer files (of :data:`multienc.hub.TOKENIZER_FILES`) in :attr:`tokenizer_dir`."""
        return [n for n in TOKENIZER_FILES if os.path.isfile(os.path.join(self._tokenizer_dir, n))]

    def _load_tokenizer(self, tokenizer: Union[Tokenizer, str, None], model_type: str) -> Tokenizer:
        if isinstance(tokenizer, Tokenizer):
            source = tokenizer.source
            self._tokenizer_dir = source if os.path.isdir(source) else os.path.dirname(source)
            return tokenizer
        if tokenizer is not None and not isinstance(tokenizer, str):
            raise TypeError(f"tokenizer must be a Tokenizer, a hub id or a folder, got {type(tokenizer).__name__}")
        if tokenizer is None:
            folder = self.model_dir
            if not any(os.path.isfile(os.path.join(folder, f)) for f in _VOCABULARY_FILES):
                example, note = _TOKENIZER_HINTS[model_type]
                raise TokenizerFileError(
                    f"{self.model_id} ships no tokenizer files (none of {', '.join(_VOCABULARY_FILES)} in "
                    f"{folder}); pass the tokenizer it was trained with as a hub id or folder, e.g. "
                    f"LanguageModel({self.model_id!r}, tokenizer={example!r}){note}")
        else:
            folder = resolve_tokenizer_files(tokenizer)
        self._tokenizer_dir = folder
        return Tokenizer.from_pretrained(folder)

    # ------------------------------------------------------------------ pooling

    def change_lm_pooling(self, pooling: str) -> None:
        """Switch the pooling to ``'cls'``, ``'mean'`` or ``'word-level'`` (ValueError otherwise)."""
        self.pooling = _check_pooling(pooling)

    def pool(self, hidden_states: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Pool last hidden states (B, T, H) into sentence vectors (B, H) with :attr:`pooling`.

        ``'cls'``: the row at :attr:`cls_position` (for -1 the last real token; the seed took the
        last padded slot). ``'mean'``: the average over real tokens only (``attention_mask`` 1);
        the seed averaged over padding too, which made a sentence's vector depend on its batch.
        ``'word-level'`` is the sequence tagger's (NotImplementedError here).
        """
        hidden_states = np.asarray(hidden_states)
        mask = np.asarray(attention_mask)
        if hidden_states.ndim != 3 or mask.shape != hidden_states.shape[:2]:
            raise ValueError(f"expected hidden states (B, T, H) and an attention mask (B, T), got "
                             f"{hidden_states.shape} and {mask.shape}")
        if self.pooling in ("cls", "mean"):
            weights = sentence_pool_weights(mask, self.pooling, self.cls_position)
            return np.einsum("bkt,bth->bkh", weights, hidden_states)[:, 0]
        raise NotImplementedError(_WORD_LEVEL_ONLY_IN_TAGGER)

    # ------------------------------------------------------------------ running

    def tokenize(self, sentences: Sentences) -> Dict[str, np.ndarray]:
        """Tokenize a batch as the seed does: padding to the longest, truncation to :attr:`max_length`.

        ``sentences``: texts and/or sentence pairs (2-tuples or 2-item lists). Returns the int64
        arrays of :meth:`Tokenizer.encode_batch` (``input_ids``, ``attention_mask``,
        ``token_type_ids``, ``word_ids``, ...).
        """
        return self.tokenizer.encode_batch(_items(sentences), max_length=self.max_length)

    def embed(self, sentences: Sentences, batch_size: int = 32) -> np.ndarray:
        """Eval-mode (no dropout) pooled embeddings, float32 (B, :attr:`embedding_length`), in the
        order given. The sentences run ``batch_size`` at a time, similar lengths together (as
        ``predict`` batches them), so a long list needs the memory of one batch."""
        if self.pooling == "word-level":
            raise NotImplementedError(_WORD_LEVEL_ONLY_IN_TAGGER)

        def run(batch: List) -> Tuple[np.ndarray]:
            enc = self.tokenize(batch)
            types = enc["token_type_ids"] if self.encoder.uses_token_types else None
            hidden = self.encoder.forward(enc["input_ids"], enc["attention_mask"], types, inference=True)
            return (self.pool(hidden, enc["attention_mask"]),)

        return in_length_batches([self], _items(sentences), batch_size, run)[0]

    # ------------------------------------------------------------------ saving

    def save_pretrained(self, directory: str) -> None:
        """Write ``config.json`` (with the overridden dropout), ``model.safetensors`` (HF base-model
        names) and the tokenizer files into ``directory``: the folder loads with transformers'
        ``AutoModel`` / ``AutoTokenizer`` and with ``LanguageModel(directory)``. A tokenizer read
        from a SentencePiece model alone also gets the ``tokenizer.json`` transformers builds from it
        (as transformers' own ``save_pretrained`` writes one), so that transformers needs no
        ``sentencepiece`` package to read the folder."""
        self.encoder.save_pretrained(directory)
        names = self.tokenizer_file_names()
        for name in names:
            source = os.path.join(self._tokenizer_dir, name)
            target = os.path.join(directory, name)
            if not (os.path.exists(target) and os.path.samefile(source, target)):
                shutil.copyfile(source, target)
        converted = None if "tokenizer.json" in names else spm_folder_tokenizer_json(self._tokenizer_dir)
        if converted is not None:
            with open(os.path.join(directory, "tokenizer.json"), "w", encoding="utf-8") as f:
                json.dump(converted, f, ensure_ascii=False, indent=2)

    def __repr__(self) -> str:
        cfg = self.encoder.engine_config
        return (f"LanguageModel({self.model_id!r}, model_type={self.config.get('model_type')!r}, "
                f"layers={cfg['num_hidden_layers']}, embedding_length={self.embedding_length}, "
                f"pooling={self.pooling!r}, fine_tune={self.fine_tune}, "
                f"hidden_dropout_prob={cfg['hidden_dropout_prob']}, max_length={self.max_length})")



def checkpoint_cache_dir() -> str:
    """``$MULTIENC_CACHE/checkpoints`` (``~/.cache/multienc/checkpoints`` by default)."""
    root = os.environ.get("MULTIENC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "multienc")
    return os.path.join(root, "checkpoints")


def _materialise(spec: Mapping[str, Any]) -> str:
    """A folder with the LM's config.json and tokenizer files (content-addressed, written once)."""
    binary = spec.get("tokenizer_binary_files", {})
    content = {"config": spec["config"], "files": spec["tokenizer_files"]}
    if binary:  # checkpoints without binary files keep their folder
        content["binary_files"] = binary
    blob = json.dumps(content, sort_keys=True).encode()
    cache = checkpoint_cache_dir()
    folder = os.path.join(cache, hashlib.sha256(blob).hexdigest()[:32])
    if os.path.isfile(os.path.join(folder, ".complete")):
        return folder
    os.makedirs(cache, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=cache, prefix=".incomplete-")
    try:
        with open(os.path.join(tmp, "config.json"), "w", encoding="utf-8") as f:
            json.dump(spec["config"], f, indent=2)
        for name, text in spec["tokenizer_files"].items():
            if os.path.basename(name) != name or name.startswith("."):
                raise ValueError(f"checkpoint names a tokenizer file {name!r} outside its folder")
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                f.write(text)
        for name, data in binary.items():
            if name not in SENTENCEPIECE_FILES:
                raise ValueError(f"checkpoint holds a binary tokenizer file {name!r}; known: "
                                 f"{', '.join(SENTENCEPIECE_FILES)}")
            with open(os.path.join(tmp, name), "wb") as fb:
                fb.write(base64.b64decode(data, validate=True))
        open(os.path.join(tmp, ".complete"), "w").close()
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished it first
            if not os.path.isfile(os.path.join(folder, ".complete")):
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return folder
