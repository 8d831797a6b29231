"""Generate ``tests/fixtures/tiny_hub/``: tiny random-weight models under real hub names, with
real tokenizer files, laid out for ``tests/_hub_server.HubServer`` (``{org--name}/{revision}/``),
and ``tests/fixtures/tiny_hub_reference.npz`` with HF transformers' outputs for them.

Run with the reference environment (torch + transformers + tokenizers + sentencepiece):

    .venv-ref/bin/python tools/make_tiny_hub.py [--corpus path/to/CoLA/train.tsv] [repo id ...]

With repo ids only those repositories (and their reference arrays) are rewritten; the others
stay as they are. The vocabularies are trained on the CoLA training sentences (default
``../shared/data/glue/CoLA/train.tsv``; the corpus itself is not committed): WordPiece and
byte-level BPE with the ``tokenizers`` library, SentencePiece Unigram models with the
``sentencepiece`` package. The trainers break frequency ties in hash order, so a rerun can change a
few tokens near the vocabulary cut-off; WordPiece vocabularies are written sorted (special
tokens first) to keep such diffs small. The references are always rewritten with the
fixtures. Each model is the shape of the seed's checkpoints at toy size (hidden 32,
2 layers, 4 heads, intermediate 37) and is saved the way its hub repository is:

* ``google/electra-base-discriminator``: ``ElectraForPreTraining`` (``electra.`` prefix plus the
  discriminator head), embedding_size 16 != hidden 32, uncased WordPiece ``vocab.txt`` +
  ``tokenizer_config.json``, ``model.safetensors``.
* ``roberta-base``: ``RobertaForMaskedLM`` (``roberta.`` prefix plus the LM head), byte-level BPE
  ``vocab.json`` + ``merges.txt`` + ``tokenizer_config.json``, ``model.safetensors``.
* ``SpanBERT/spanbert-base-cased``: ``BertForPreTraining`` (``bert.`` prefix plus ``cls.`` heads),
  cased WordPiece ``vocab.txt`` + ``tokenizer_config.json`` (``do_lower_case`` false), weights only
  as ``pytorch_model.bin`` written by ``torch.save``.
* ``nghuyong/ernie-2.0-en``: a bare ``BertModel`` (no prefix), uncased WordPiece,
  ``pytorch_model.bin`` only.
* ``nghuyong/ernie-2.0-base-en`` (the repository's name since transformers has ``ErnieModel``):
  ``ErnieForMaskedLM`` (``ernie.`` prefix plus ``cls.``), ``model_type`` ``ernie`` with ``use_task_id``
  (every token adds row 0 of the task type table) and four token types, uncased WordPiece,
  ``pytorch_model.bin`` only.
* ``answerdotai/ModernBERT-base``: ``ModernBertForMaskedLM`` (``model.`` prefix, ``head.`` and
  ``decoder.``; the decoder weight tied to the embeddings), 3 layers with a global layer every 3
  and window 8, ``config.json`` in the hub checkpoint's spelling (``global_attn_every_n_layers``,
  ``global_rope_theta``, ``local_rope_theta``; no ``layer_types`` / ``rope_parameters``), a
  byte-level BPE ``tokenizer.json`` laid out as ModernBERT's (no normalizer, ByteLevel without
  prefix space, the BERT template ``[CLS] $A [SEP]`` / ``[CLS] $A [SEP] $B:1 [SEP]:1``, the special
  tokens after the learned vocabulary, ``[MASK]`` with ``lstrip``) with its
  ``tokenizer_config.json`` (``PreTrainedTokenizerFast``, ``model_input_names`` without token types)
  and ``special_tokens_map.json``, ``model.safetensors``.
* ``distilbert-base-uncased``: ``DistilBertForMaskedLM`` (``distilbert.`` prefix plus the
  ``vocab_*`` head), uncased WordPiece ``vocab.txt`` + ``tokenizer.json`` + ``tokenizer_config.json``,
  ``model.safetensors``.
* ``xlm-roberta-base``: ``XLMRobertaForMaskedLM`` (``roberta.`` prefix plus the LM head), a
  SentencePiece Unigram model (1000 pieces, ``nmt_nfkc``) as ``sentencepiece.bpe.model`` and the
  ``tokenizer.json`` transformers' ``XLMRobertaConverter`` makes of it (fairseq ids: ``<s>`` 0,
  ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, spm pieces shifted by one, ``<mask>`` last).
* ``albert-base-v2``: ``AlbertForMaskedLM`` (``albert.`` prefix plus ``predictions.``), embedding
  size 16, one shared layer group, ``gelu_new``, dropouts 0 as the real config; a lower-cased
  Unigram model (``<pad>`` 0, ``<unk>`` 1, ``[CLS]`` 2, ``[SEP]`` 3, ``[MASK]`` 4) as ``spiece.model``
  and the ``tokenizer.json`` of transformers' ``AlbertConverter``.
* ``camembert-base``: ``CamembertForMaskedLM`` (``roberta.`` prefix plus the LM head, ``bos_token_id``
  5 and ``eos_token_id`` 6 as the real config), a Unigram model as XLM-R's and the ``tokenizer.json``
  of transformers' ``CamembertConverter`` (fairseq's layout: ``<s>NOTUSED`` 0, ``<pad>`` 1,
  ``</s>NOTUSED`` 2, ``<unk>`` 3, ``<unk>NOTUSED`` 4, the pieces after the model's ``<unk>``, so
  ``<s>`` 5 and ``</s>`` 6, ``<mask>`` last); ``tokenizer_config.json`` without ``tokenizer_class``.
* ``multienc-test/xlm-roberta-spm-only``, ``multienc-test/albert-spm-only`` and
  ``multienc-test/camembert-spm-only``: the same kinds of model and SentencePiece files without
  ``tokenizer.json``, as many fine-tuned checkpoints ship them; transformers builds the tokenizer
  from the ``.model`` file. The XLM-R and CamemBERT ones' ``tokenizer_config.json`` names no
  ``tokenizer_class``, so the family comes from config.json's ``model_type`` (the two share the file
  name ``sentencepiece.bpe.model``). The CamemBERT one's weights are ``pytorch_model.bin``.
* ``microsoft/deberta-v3-base``: ``DebertaV2ForMaskedLM`` (``deberta.`` prefix plus ``lm_predictions.``)
  with DeBERTa-v3's attention (relative only, 16 log buckets, c2p + p2c through the shared
  projections, LayerNorm on the relative embeddings, no token types), ``pytorch_model.bin``, and as
  the hub repository no ``tokenizer.json``: a cased Unigram ``spm.model`` (``[PAD]`` 0, ``[CLS]`` 1,
  ``[SEP]`` 2, ``[UNK]`` 3; ``[MASK]`` added after the pieces) with ``tokenizer_class``
  ``DebertaV2Tokenizer``: transformers builds the tokenizer with its ``DebertaV2Converter``.
* ``microsoft/deberta-base``: ``DebertaForMaskedLM`` (``deberta.`` prefix plus its MLM head) with DeBERTa
  (v1)'s attention (one ``in_proj`` without bias, ``q_bias`` / ``v_bias``, c2p through ``pos_proj`` and
  p2c through ``pos_q_proj``, relative only, distances clamped at 64, no token types),
  ``pytorch_model.bin``, and a byte-level BPE ``vocab.json`` + ``merges.txt`` with DeBERTa's specials
  (``[PAD]`` 0, ``[CLS]`` 1, ``[SEP]`` 2, ``[UNK]`` 3, ``[MASK]`` last) whose ``tokenizer_config.json``
  names no class: transformers builds ``DebertaTokenizer`` from config.json's ``model_type``.
* ``vinai/bertweet-base``: ``RobertaForMaskedLM`` (``roberta.`` prefix plus the LM head) with BERTweet's
  tokenizer files: fastBPE ``bpe.codes`` (learned here on the corpus's whitespace-split words, ``</w>``
  ending a word) and fairseq's ``vocab.txt`` ("token count" lines; "@@" marks a piece inside a word;
  ``<s>``/``<pad>``/``</s>``/``<unk>`` implied as ids 0-3, ``<mask>`` appended by the tokenizer).
  The class ``BertweetTokenizer`` is named only in ``config.json``, as in the hub repository; its
  ``tokenizer_config.json`` holds ``model_max_length`` (the hub's has none, and transformers would
  then not truncate the long reference inputs) and ``normalization`` false.
* ``sentence-transformers/all-mpnet-base-v2``: a bare ``MPNetModel`` with its pooler (no prefix),
  an uncased WordPiece ``vocab.txt`` with MPNet's specials (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2,
  ``<unk>`` 3, then BERT's part with ``[UNK]``, the tokenizer's unk token, ``<mask>`` last) and the ``tokenizer.json`` of ``MPNetTokenizerFast`` (template
  ``<s> A </s></s> B </s>``), ``model.safetensors``.

The converters' output gets the special tokens transformers' tokenizer classes register
(``<pad>``/``<unk>``/``<mask>``, ``<mask>`` and ``[MASK]`` with ``lstrip``) as added tokens, as the hub
files have them. transformers 5's ``AutoTokenizer`` rebuilds the normalizer and pre-tokenizer of
these two classes in code instead of reading them from ``tokenizer.json``
(HF-SEMANTICS-FAMILIES.md §6.9); the generator checks that ``tokenizers.Tokenizer.from_file`` on the
written file gives the same ids as ``AutoTokenizer`` for every reference input.

The reference file holds the inputs (``texts``: :data:`SENTENCES`, ``pairs``: :data:`PAIRS`)
and, per model (key prefix ``{repo id}/``) and kind (``texts`` / ``pairs``), the HF
``AutoTokenizer`` batch (``input_ids``, ``attention_mask``, and ``token_type_ids`` where it
returns them) and ``AutoModel``'s eval-mode ``last_hidden_state`` (eager attention), both
loaded from the very files written here.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import tempfile
from collections import Counter

import numpy as np
import sentencepiece as spm
import tokenizers
import torch
import transformers
from transformers.convert_slow_tokenizer import AlbertConverter, CamembertConverter, XLMRobertaConverter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "tests", "fixtures", "tiny_hub")
REFERENCE = os.path.join(HERE, "..", "tests", "fixtures", "tiny_hub_reference.npz")
CORPUS = os.path.join(HERE, "..", "..", "shared", "data", "glue", "CoLA", "train.tsv")
VOCAB_SIZE = 1500
SPM_PIECES = 1000
MAX_LENGTH = 64
COMMON = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
              hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
# RoBERTa and XLM-R: positions after the padding index, one token type, fairseq special ids
ROBERTA_LIKE = dict(COMMON, max_position_embeddings=MAX_LENGTH + 2, type_vocab_size=1, hidden_act="gelu",
                    layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2)
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# MPNet's vocabulary: these, BERT's vocabulary (with its "[UNK]", MPNet's unk_token), "<mask>" last
MPNET_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "[UNK]"]
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
DEBERTA_SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[UNK]"]  # "[MASK]" last
MODERNBERT_SPECIALS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
MODERNBERT = "answerdotai/ModernBERT-base"

# Texts, then pairs: ordinary English, casing, punctuation, digits, accents, one past max length.
SENTENCES = [
    "The government's imposition of a fine.",
    "Somebody just left - guess who.",
    "He can will go",
    "John Smith visited New York in 1998, didn't he?",
    "Café prices rose by 12.5% (again)!",
    " ".join(["The book that the student read was long."] * 12),
]
PAIRS = [
    ("The cat sat on the mat.", "A cat is sitting on a mat."),
    ("Mary thinks that John left.", "Who does Mary think left?"),
    ("short", " ".join(["a very long second sentence that goes on"] * 10)),
]


def corpus(path: str) -> list:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t")[3] for line in f if line.count("\t") >= 3]


def wordpiece_vocab(texts: list, lowercase: bool, folder: str) -> None:
    tok = tokenizers.BertWordPieceTokenizer(lowercase=lowercase, strip_accents=None)
    tok.train_from_iterator(texts, vocab_size=VOCAB_SIZE, special_tokens=BERT_SPECIALS, show_progress=False)
    tok.save_model(folder)  # vocab.txt
    # The trainer orders equally frequent merges by hash: sort, so that reruns differ little.
    path = os.path.join(folder, "vocab.txt")
    with open(path, encoding="utf-8") as f:
        learned = [t for t in f.read().splitlines() if t not in BERT_SPECIALS]
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in BERT_SPECIALS + sorted(learned)))
    write_json(os.path.join(folder, "tokenizer_config.json"), {
        "tokenizer_class": "BertTokenizer", "do_lower_case": lowercase, "model_max_length": MAX_LENGTH,
        "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
        "mask_token": "[MASK]"})


def mpnet_vocab(texts: list, folder: str) -> None:
    """An uncased WordPiece vocabulary laid out as MPNet's (specials first, ``<mask>`` last) with the
    ``tokenizer.json`` ``MPNetTokenizerFast`` builds from it."""
    tok = tokenizers.BertWordPieceTokenizer(lowercase=True, strip_accents=None)
    tok.train_from_iterator(texts, vocab_size=VOCAB_SIZE, special_tokens=MPNET_SPECIALS + ["<mask>"],
                            show_progress=False)
    tok.save_model(folder)
    path = os.path.join(folder, "vocab.txt")
    with open(path, encoding="utf-8") as f:
        learned = [t for t in f.read().splitlines() if t not in MPNET_SPECIALS + ["<mask>"]]
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in MPNET_SPECIALS + sorted(learned) + ["<mask>"]))
    with open(path, encoding="utf-8") as f:
        vocab = {t: i for i, t in enumerate(f.read().splitlines())}
    fast = transformers.MPNetTokenizerFast(vocab=vocab, do_lower_case=True, model_max_length=MAX_LENGTH)
    fast.backend_tokenizer.save(os.path.join(folder, "tokenizer.json"))
    write_json(os.path.join(folder, "tokenizer_config.json"), {
        "tokenizer_class": "MPNetTokenizer", "do_lower_case": True, "model_max_length": MAX_LENGTH,
        "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>", "unk_token": "[UNK]",
        "pad_token": "<pad>", "mask_token": "<mask>"})


def deberta_spm(texts: list, folder: str) -> None:
    """A cased Unigram ``spm.model`` with DeBERTa-v3's special ids, no ``tokenizer.json``."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, vocab_size=SPM_PIECES, model_type="unigram",
        normalization_rule_name="nmt_nfkc", character_coverage=1.0, num_threads=1, shuffle_input_sentence=False,
        minloglevel=2, pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]",
        eos_piece="[SEP]", unk_piece="[UNK]")
    with open(os.path.join(folder, "spm.model"), "wb") as f:
        f.write(model.getvalue())
    write_json(os.path.join(folder, "tokenizer_config.json"), {
        "tokenizer_class": "DebertaV2Tokenizer", "do_lower_case": False, "vocab_type": "spm",
        "model_max_length": MAX_LENGTH})


def bpe_vocab(texts: list, folder: str) -> None:
    tok = tokenizers.ByteLevelBPETokenizer(add_prefix_space=False)
    tok.train_from_iterator(texts, vocab_size=VOCAB_SIZE, special_tokens=ROBERTA_SPECIALS, show_progress=False)
    tok.save_model(folder)  # vocab.json, merges.txt
    write_json(os.path.join(folder, "tokenizer_config.json"), {
        "tokenizer_class": "RobertaTokenizer", "model_max_length": MAX_LENGTH, "add_prefix_space": False})


def deberta_bpe_vocab(texts: list, folder: str) -> None:
    """DeBERTa (v1)'s GPT-2 style vocabulary: byte-level BPE with ``[PAD]`` 0, ``[CLS]`` 1, ``[SEP]`` 2,
    ``[UNK]`` 3 and ``[MASK]`` after the learned tokens; its tokenizer_class is dropped once the model
    is saved (main), so that the class comes from config.json's model_type."""
    tok = tokenizers.ByteLevelBPETokenizer(add_prefix_space=False)
    tok.train_from_iterator(texts, vocab_size=VOCAB_SIZE - 1, special_tokens=DEBERTA_SPECIALS, show_progress=False)
    tok.save_model(folder)  # vocab.json, merges.txt
    path = os.path.join(folder, "vocab.json")
    with open(path, encoding="utf-8") as f:
        vocab = json.load(f)
    vocab["[MASK]"] = len(vocab)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    write_json(os.path.join(folder, "tokenizer_config.json"), {
        "tokenizer_class": "DebertaTokenizer", "do_lower_case": False, "vocab_type": "gpt2",
        "model_max_length": MAX_LENGTH})


def bertweet_vocab(texts: list, folder: str) -> None:
    """fastBPE codes learned as fastBPE learns them (the most frequent adjacent pair of symbols over
    the corpus's words, ties broken by the pair itself; ``</w>`` marks each word's last char), and the
    vocabulary of the pieces BertweetTokenizer makes of the corpus with them, most frequent first, cut
    so that some pieces are unknown. The class goes to config.json once the model is saved (main)."""
    counts = Counter(w for t in texts for w in t.split())
    words = {tuple(w[:-1]) + (w[-1] + "</w>",): c for w, c in counts.items()}
    codes = []
    for _ in range(VOCAB_SIZE // 2):
        pairs: Counter = Counter()
        for word, c in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += c
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        codes.append(f"{best[0]} {best[1]} {pairs[best]}\n")
        merged = {}
        for word, c in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + c
        words = merged
    with open(os.path.join(folder, "bpe.codes"), "w", encoding="utf-8") as f:
        f.writelines(codes)
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("a 1\n")  # a placeholder, to run the reference's BPE
    bpe = transformers.BertweetTokenizer(os.path.join(folder, "vocab.txt"), os.path.join(folder, "bpe.codes")).bpe
    pieces: Counter = Counter()
    for w, c in counts.items():
        for piece in bpe(w).split(" "):
            pieces[piece] += c
    kept = sorted(pieces.items(), key=lambda kv: (-kv[1], kv[0]))[:VOCAB_SIZE - 100]
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
        f.writelines(f"{tok} {c}\n" for tok, c in kept)
    write_json(os.path.join(folder, "tokenizer_config.json"), {
        "tokenizer_class": "BertweetTokenizer", "model_max_length": MAX_LENGTH, "normalization": False})


def modernbert_tokenizer(texts: list, folder: str) -> None:
    """A byte-level BPE tokenizer.json in the layout of ModernBERT's (see the module docstring)."""
    from tokenizers import AddedToken, decoders, models, pre_tokenizers, processors, trainers
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok.add_special_tokens([AddedToken(t, lstrip=t == "[MASK]", normalized=False, special=True)
                            for t in MODERNBERT_SPECIALS])
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.save(os.path.join(folder, "tokenizer.json"))
    roles = {"unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]",
             "mask_token": "[MASK]"}
    write_json(os.path.join(folder, "tokenizer_config.json"), {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": MAX_LENGTH,
        "model_input_names": ["input_ids", "attention_mask"], "clean_up_tokenization_spaces": True, **roles})
    write_json(os.path.join(folder, "special_tokens_map.json"), roles)


def modernbert_model(vocab_size: int) -> torch.nn.Module:
    ids = {t: i for i, t in enumerate(MODERNBERT_SPECIALS, vocab_size - len(MODERNBERT_SPECIALS))}
    return transformers.ModernBertForMaskedLM(transformers.ModernBertConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=MAX_LENGTH, local_attention=8, global_attn_every_n_layers=3,
        pad_token_id=ids["[PAD]"], cls_token_id=ids["[CLS]"], bos_token_id=ids["[CLS]"],
        sep_token_id=ids["[SEP]"], eos_token_id=ids["[SEP]"]))


def hub_spelling(folder: str) -> None:
    """Rewrite config.json as the hub checkpoints spell ModernBERT's layer pattern and bases."""
    path = os.path.join(folder, "config.json")
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg.pop("layer_types")
    rope = cfg.pop("rope_parameters")
    cfg.update(global_rope_theta=rope["full_attention"]["rope_theta"],
               local_rope_theta=rope["sliding_attention"]["rope_theta"], architectures=["ModernBertForMaskedLM"])
    assert cfg["global_attn_every_n_layers"] == 3
    write_json(path, cfg)
class _SpmFile:
    """What transformers' SentencePiece converters read of a slow tokenizer: the model file, the
    ids of the template's special tokens, and the normalisation options."""

    def __init__(self, path: str, ids: dict, **options):
        self.vocab_file, self._ids = path, ids
        self.__dict__.update(options)

    def convert_tokens_to_ids(self, token: str) -> int:
        return self._ids[token]


def unigram_vocab(texts: list, folder: str, family: str) -> None:
    """Train a Unigram model with sentencepiece and write it with its converted ``tokenizer.json``."""
    lower = family == "albert"
    ids = dict(unk_id=1, pad_id=0, bos_id=-1, eos_id=-1, control_symbols=["[CLS]", "[SEP]", "[MASK]"]) \
        if lower else dict(unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([t.lower() for t in texts] if lower else texts), model_writer=model,
        vocab_size=SPM_PIECES, model_type="unigram", normalization_rule_name="nmt_nfkc", character_coverage=1.0,
        num_threads=1, shuffle_input_sentence=False, minloglevel=2, **ids)
    name = "spiece.model" if lower else "sentencepiece.bpe.model"
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(model.getvalue())
    if lower:
        tok = AlbertConverter(_SpmFile(path, {"[CLS]": 2, "[SEP]": 3}, do_lower_case=True, keep_accents=False)).converted()
        specials = [("<pad>", False), ("<unk>", False), ("[CLS]", False), ("[SEP]", False), ("[MASK]", True)]
        config = {"tokenizer_class": "AlbertTokenizer", "do_lower_case": True, "keep_accents": False,
                  "remove_space": True, "unk_token": "<unk>", "pad_token": "<pad>", "cls_token": "[CLS]",
                  "sep_token": "[SEP]", "mask_token": "[MASK]", "bos_token": "[CLS]", "eos_token": "[SEP]"}
    elif family == "camembert":  # fairseq's ids: <s> and </s> are the model's, at 5 and 6
        tok = CamembertConverter(_SpmFile(path, {"<s>": 5, "</s>": 6})).converted()
        specials = [("<s>NOTUSED", False), ("<pad>", False), ("</s>NOTUSED", False), ("<unk>", False),
                    ("<unk>NOTUSED", False), ("<s>", False), ("</s>", False), ("<mask>", True)]
        config = {"tokenizer_class": "CamembertTokenizer"}  # dropped after the model is saved (main)
    else:
        tok = XLMRobertaConverter(_SpmFile(path, {"<s>": 0, "</s>": 2})).converted()
        specials = [("<s>", False), ("<pad>", False), ("</s>", False), ("<unk>", False), ("<mask>", True)]
        config = {"tokenizer_class": "XLMRobertaTokenizer"}
    tok.add_special_tokens([tokenizers.AddedToken(t, lstrip=lstrip, normalized=False, special=True)
                            for t, lstrip in specials])
    tok.save(os.path.join(folder, "tokenizer.json"))
    write_json(os.path.join(folder, "tokenizer_config.json"), {**config, "model_max_length": MAX_LENGTH})


def write_json(path: str, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial LayerNorm and bias values, so that a wrongly loaded tensor cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "norm.weight" in name or name.endswith("bias"):
                p.add_(torch.randn(p.shape, generator=g) * 0.1)


def build(folder: str, model: torch.nn.Module, seed: int, as_bin: bool) -> None:
    randomize(model, seed)
    if as_bin:
        model.config.save_pretrained(folder)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        torch.save(state, os.path.join(folder, "pytorch_model.bin"))
    else:
        model.save_pretrained(folder)


def reference(repo_id: str, folder: str) -> dict:
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    out = {}
    # Models with segment embeddings get their token types: transformers 5's ALBERT tokenizer no longer
    # returns them by default (huggingface/transformers#48128), so pairs would run with all-zero types.
    kw = {"return_token_type_ids": True} if getattr(model.config, "type_vocab_size", 0) > 1 else {}
    for kind, batch in (("texts", tok(SENTENCES, padding=True, truncation=True, return_tensors="pt", **kw)),
                        ("pairs", tok([a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True,
                                      truncation=True, return_tensors="pt", **kw))):
        if os.path.exists(os.path.join(folder, "tokenizer.json")):
            # the file as tokenizers runs it gives the same ids as AutoTokenizer on these inputs
            file_tok = tokenizers.Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
            items = SENTENCES if kind == "texts" else PAIRS
            for row, enc in zip(batch["input_ids"].tolist(), file_tok.encode_batch(items)):
                if len(enc.ids) <= MAX_LENGTH:  # not truncated
                    assert row[:len(enc.ids)] == enc.ids, (repo_id, row, enc.ids)
        with torch.no_grad():
            h = model(**batch).last_hidden_state
        for key, value in batch.items():  # RoBERTa's tokenizer returns no token_type_ids
            out[f"{repo_id}/{kind}/{key}"] = value.numpy()
        out[f"{repo_id}/{kind}/last_hidden_state"] = h.numpy()
    return out


def models() -> dict:
    """repo id -> (model for a vocabulary size, vocabulary kind, saved as pytorch_model.bin)."""
    xlm_roberta = lambda v: transformers.XLMRobertaForMaskedLM(  # noqa: E731
        transformers.XLMRobertaConfig(**ROBERTA_LIKE, vocab_size=v))
    camembert = lambda v: transformers.CamembertForMaskedLM(  # noqa: E731
        transformers.CamembertConfig(**{**ROBERTA_LIKE, "bos_token_id": 5, "eos_token_id": 6}, vocab_size=v))
    albert = lambda v: transformers.AlbertForMaskedLM(transformers.AlbertConfig(  # noqa: E731
        vocab_size=v, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, num_hidden_groups=1, inner_group_num=1, hidden_act="gelu_new",
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=MAX_LENGTH,
        type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0, bos_token_id=2, eos_token_id=3))
    return {
        "google/electra-base-discriminator": (
            lambda v: transformers.ElectraForPreTraining(transformers.ElectraConfig(
                **COMMON, vocab_size=v, embedding_size=16, max_position_embeddings=MAX_LENGTH,
                type_vocab_size=2, hidden_act="gelu", pad_token_id=0)),
            "uncased", False),
        "roberta-base": (
            lambda v: transformers.RobertaForMaskedLM(transformers.RobertaConfig(**ROBERTA_LIKE, vocab_size=v)),
            "bpe", False),
        "SpanBERT/spanbert-base-cased": (
            lambda v: transformers.BertForPreTraining(transformers.BertConfig(
                **COMMON, vocab_size=v, max_position_embeddings=MAX_LENGTH, type_vocab_size=2)),
            "cased", True),
        "nghuyong/ernie-2.0-en": (
            lambda v: transformers.BertModel(transformers.BertConfig(
                **COMMON, vocab_size=v, max_position_embeddings=MAX_LENGTH, type_vocab_size=4),
                add_pooling_layer=True),
            "uncased", True),
        "distilbert-base-uncased": (
            lambda v: transformers.DistilBertForMaskedLM(transformers.DistilBertConfig(
                vocab_size=v, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=MAX_LENGTH,
                dropout=0.1, attention_dropout=0.1, activation="gelu", pad_token_id=0)),
            "distilbert", False),
        "xlm-roberta-base": (xlm_roberta, "xlm-roberta", False),
        "albert-base-v2": (albert, "albert", False),
        "multienc-test/xlm-roberta-spm-only": (xlm_roberta, "xlm-roberta-spm", False),
        "multienc-test/albert-spm-only": (albert, "albert-spm", False),
        "microsoft/deberta-v3-base": (
            lambda v: transformers.DebertaV2ForMaskedLM(transformers.DebertaV2Config(
                **COMMON, vocab_size=v, max_position_embeddings=MAX_LENGTH, type_vocab_size=0, hidden_act="gelu",
                layer_norm_eps=1e-7, pad_token_id=0, relative_attention=True, position_biased_input=False,
                position_buckets=16, max_relative_positions=-1, pos_att_type="p2c|c2p",
                norm_rel_ebd="layer_norm", share_att_key=True)),
            "deberta-v3", True),
        "sentence-transformers/all-mpnet-base-v2": (
            lambda v: transformers.MPNetModel(transformers.MPNetConfig(
                **COMMON, vocab_size=v, max_position_embeddings=MAX_LENGTH + 2, hidden_act="gelu",
                layer_norm_eps=1e-5, relative_attention_num_buckets=32, pad_token_id=1, bos_token_id=0,
                eos_token_id=2), add_pooling_layer=True),
            "mpnet", False),
        MODERNBERT: (modernbert_model, "modernbert", False),
        "nghuyong/ernie-2.0-base-en": (
            lambda v: transformers.ErnieForMaskedLM(transformers.ErnieConfig(
                **COMMON, vocab_size=v, max_position_embeddings=MAX_LENGTH, type_vocab_size=4, hidden_act="gelu",
                layer_norm_eps=1e-5, pad_token_id=0, use_task_id=True, task_type_vocab_size=3)),
            "uncased", True),
        "camembert-base": (camembert, "camembert", False),
        "vinai/bertweet-base": (
            lambda v: transformers.RobertaForMaskedLM(transformers.RobertaConfig(**ROBERTA_LIKE, vocab_size=v)),
            "bertweet", True),
        "multienc-test/camembert-spm-only": (camembert, "camembert-spm", True),
        "microsoft/deberta-base": (
            lambda v: transformers.DebertaForMaskedLM(transformers.DebertaConfig(
                **COMMON, vocab_size=v, max_position_embeddings=MAX_LENGTH, type_vocab_size=0, hidden_act="gelu",
                layer_norm_eps=1e-7, pad_token_id=0, relative_attention=True, position_biased_input=False,
                max_relative_positions=-1, pos_att_type="c2p|p2c")),
            "deberta", True),
    }


def write_vocabulary(texts: list, vocab: str, folder: str) -> None:
    if vocab == "modernbert":
        modernbert_tokenizer(texts, folder)
    elif vocab == "bpe":
        bpe_vocab(texts, folder)
    elif vocab == "mpnet":
        mpnet_vocab(texts, folder)
    elif vocab == "deberta-v3":
        deberta_spm(texts, folder)
    elif vocab == "deberta":
        deberta_bpe_vocab(texts, folder)
    elif vocab == "bertweet":
        bertweet_vocab(texts, folder)
    elif vocab in ("xlm-roberta", "camembert", "albert"):
        unigram_vocab(texts, folder, vocab)
    elif vocab.endswith("-spm"):
        unigram_vocab(texts, folder, vocab[:-4])
        os.remove(os.path.join(folder, "tokenizer.json"))
    else:
        wordpiece_vocab(texts, vocab != "cased", folder)
    if vocab == "distilbert":  # the hub repo ships a tokenizer.json beside vocab.txt
        cfg_path = os.path.join(folder, "tokenizer_config.json")
        with open(cfg_path, encoding="utf-8") as f:
            cfg = json.load(f)
        write_json(cfg_path, {**cfg, "tokenizer_class": "DistilBertTokenizer"})
        transformers.AutoTokenizer.from_pretrained(folder).backend_tokenizer.save(
            os.path.join(folder, "tokenizer.json"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default=CORPUS, help="CoLA train.tsv")
    ap.add_argument("repos", nargs="*", help="rewrite only these repositories (default: all)")
    args = ap.parse_args()
    table = models()
    unknown = set(args.repos) - set(table)
    if unknown:
        ap.error(f"unknown repo id(s): {', '.join(sorted(unknown))}; known: {', '.join(table)}")
    chosen = args.repos or list(table)
    texts = corpus(args.corpus)
    out = {"texts": np.array(SENTENCES), "pairs": np.array(PAIRS)}
    if args.repos and os.path.exists(REFERENCE):  # keep the other repositories' arrays
        with np.load(REFERENCE) as old:
            out.update({k: old[k] for k in old.files
                        if k not in out and not any(k.startswith(r + "/") for r in chosen)})
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "tiny_hub")
        for seed, (repo_id, (make, vocab, as_bin)) in enumerate(table.items()):
            if repo_id not in chosen:
                continue
            folder = os.path.join(root, repo_id.replace("/", "--"), "main")
            os.makedirs(folder)
            write_vocabulary(texts, vocab, folder)
            vocab_size = len(transformers.AutoTokenizer.from_pretrained(folder))
            torch.manual_seed(seed)  # each repository's weights independent of which others are made
            build(folder, make(vocab_size), seed, as_bin)
            if vocab == "modernbert":
                hub_spelling(folder)
            if vocab in ("xlm-roberta-spm", "camembert", "camembert-spm", "deberta", "bertweet"):
                # the family from config.json's model_type (written by build), or its tokenizer_class
                cfg_path = os.path.join(folder, "tokenizer_config.json")
                with open(cfg_path, encoding="utf-8") as f:
                    cfg = json.load(f)
                write_json(cfg_path, {k: v for k, v in cfg.items() if k != "tokenizer_class"})
                if vocab == "bertweet":
                    model_cfg = os.path.join(folder, "config.json")
                    with open(model_cfg, encoding="utf-8") as f:
                        write_json(model_cfg, {**json.load(f), "tokenizer_class": "BertweetTokenizer"})
            out.update(reference(repo_id, folder))
        os.makedirs(ROOT, exist_ok=True)
        for repo_id in chosen:
            name = repo_id.replace("/", "--")
            if os.path.exists(os.path.join(ROOT, name)):
                shutil.rmtree(os.path.join(ROOT, name))
            shutil.copytree(os.path.join(root, name), os.path.join(ROOT, name))
    np.savez_compressed(REFERENCE, **out)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(ROOT) for f in fs)
    print(f"wrote {', '.join(chosen)} into {ROOT} ({size / 1e6:.2f} MB in all) and {REFERENCE}")


if __name__ == "__main__":
    main()
