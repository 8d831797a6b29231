"""Generate ``tests/fixtures/tiny_hub/``: tiny random-weight models under real hub names, with
real tokenizer files, laid out for ``tests/_hub_server.HubServer`` (``{org--name}/{revision}/``),
and ``tests/fixtures/tiny_hub_reference.npz`` with HF transformers' outputs for them.

Run with the reference environment (torch + transformers + tokenizers):

    .venv-ref/bin/python tools/make_tiny_hub.py [path/to/CoLA/train.tsv] [--only REPO_ID ...]

``--only`` regenerates the named repositories and their reference entries and keeps the others.

The vocabularies are trained with the ``tokenizers`` library on the CoLA training
sentences (default ``../shared/data/glue/CoLA/train.tsv``; the corpus itself is not
committed). The trainers break frequency ties in hash order, so a rerun can change a
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
* ``answerdotai/ModernBERT-base``: ``ModernBertForMaskedLM`` (``model.`` prefix, ``head.`` and
  ``decoder.``; the decoder weight tied to the embeddings), 3 layers with a global layer every 3
  and window 8, ``config.json`` in the hub checkpoint's spelling (``global_attn_every_n_layers``,
  ``global_rope_theta``, ``local_rope_theta``; no ``layer_types`` / ``rope_parameters``), a
  byte-level BPE ``tokenizer.json`` laid out as ModernBERT's (no normalizer, ByteLevel without
  prefix space, the BERT template ``[CLS] $A [SEP]`` / ``[CLS] $A [SEP] $B:1 [SEP]:1``, the special
  tokens after the learned vocabulary, ``[MASK]`` with ``lstrip``) with its
  ``tokenizer_config.json`` (``PreTrainedTokenizerFast``, ``model_input_names`` without token types)
  and ``special_tokens_map.json``, ``model.safetensors``.

The reference file holds the inputs (``texts``: :data:`SENTENCES`, ``pairs``: :data:`PAIRS`)
and, per model (key prefix ``{repo id}/``) and kind (``texts`` / ``pairs``), the HF
``AutoTokenizer`` batch (``input_ids``, ``attention_mask``, and ``token_type_ids`` where it
returns them) and ``AutoModel``'s eval-mode ``last_hidden_state`` (eager attention), both
loaded from the very files written here.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile

import numpy as np
import tokenizers
import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "tests", "fixtures", "tiny_hub")
REFERENCE = os.path.join(HERE, "..", "tests", "fixtures", "tiny_hub_reference.npz")
CORPUS = os.path.join(HERE, "..", "..", "shared", "data", "glue", "CoLA", "train.tsv")
VOCAB_SIZE = 1500
MAX_LENGTH = 64
COMMON = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
              hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
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


def bpe_vocab(texts: list, folder: str) -> None:
    tok = tokenizers.ByteLevelBPETokenizer(add_prefix_space=False)
    tok.train_from_iterator(texts, vocab_size=VOCAB_SIZE, special_tokens=ROBERTA_SPECIALS, show_progress=False)
    tok.save_model(folder)  # vocab.json, merges.txt
    write_json(os.path.join(folder, "tokenizer_config.json"), {
        "tokenizer_class": "RobertaTokenizer", "model_max_length": MAX_LENGTH, "add_prefix_space": False})


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
    for kind, batch in (("texts", tok(SENTENCES, padding=True, truncation=True, return_tensors="pt")),
                        ("pairs", tok([a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True,
                                      truncation=True, return_tensors="pt"))):
        with torch.no_grad():
            h = model(**batch).last_hidden_state
        for key, value in batch.items():  # RoBERTa's tokenizer returns no token_type_ids
            out[f"{repo_id}/{kind}/{key}"] = value.numpy()
        out[f"{repo_id}/{kind}/last_hidden_state"] = h.numpy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", nargs="?", default=CORPUS, help="CoLA's train.tsv")
    parser.add_argument("--only", nargs="+", metavar="REPO_ID", help="regenerate only these repositories")
    args = parser.parse_args()
    texts = corpus(args.corpus)
    torch.manual_seed(0)
    models = {
        "google/electra-base-discriminator": (
            lambda v: transformers.ElectraForPreTraining(transformers.ElectraConfig(
                **COMMON, vocab_size=v, embedding_size=16, max_position_embeddings=MAX_LENGTH,
                type_vocab_size=2, hidden_act="gelu", pad_token_id=0)),
            "uncased", False),
        "roberta-base": (
            lambda v: transformers.RobertaForMaskedLM(transformers.RobertaConfig(
                **COMMON, vocab_size=v, max_position_embeddings=MAX_LENGTH + 2, type_vocab_size=1,
                hidden_act="gelu", layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2)),
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
        MODERNBERT: (modernbert_model, "modernbert", False),
    }
    unknown = set(args.only or ()) - set(models)
    if unknown:
        parser.error(f"unknown repositories {sorted(unknown)}; known: {', '.join(models)}")
    out = {"texts": np.array(SENTENCES), "pairs": np.array(PAIRS)}
    if args.only:  # keep the other repositories and their reference entries
        with np.load(REFERENCE) as old:
            out.update({k: old[k] for k in old.files if not k.startswith(tuple(f"{r}/" for r in args.only))})
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "tiny_hub")
        for seed, (repo_id, (make, vocab, as_bin)) in enumerate(models.items()):
            if args.only and repo_id not in args.only:
                continue
            folder = os.path.join(root, repo_id.replace("/", "--"), "main")
            os.makedirs(folder)
            if vocab == "modernbert":
                modernbert_tokenizer(texts, folder)
            elif vocab == "bpe":
                bpe_vocab(texts, folder)
            else:
                wordpiece_vocab(texts, vocab == "uncased", folder)
            vocab_size = len(transformers.AutoTokenizer.from_pretrained(folder))
            build(folder, make(vocab_size), seed, as_bin)
            if vocab == "modernbert":
                hub_spelling(folder)
            out.update(reference(repo_id, folder))
        if not args.only and os.path.exists(ROOT):
            shutil.rmtree(ROOT)
        for repo in os.listdir(root):
            if os.path.exists(os.path.join(ROOT, repo)):
                shutil.rmtree(os.path.join(ROOT, repo))
            shutil.copytree(os.path.join(root, repo), os.path.join(ROOT, repo))
    np.savez_compressed(REFERENCE, **out)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(ROOT) for f in fs)
    print(f"wrote {ROOT} ({size / 1e6:.2f} MB) and {REFERENCE}")


if __name__ == "__main__":
    main()
