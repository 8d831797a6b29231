"""Generate ``tests/fixtures/tiny_hub/``: tiny random-weight models under real hub names, with
real tokenizer files, laid out for ``tests/_hub_server.HubServer`` (``{org--name}/{revision}/``),
and ``tests/fixtures/tiny_hub_reference.npz`` with HF transformers' outputs for them.

Run with the reference environment (torch + transformers + tokenizers):

    .venv-ref/bin/python tools/make_tiny_hub.py [path/to/CoLA/train.tsv]

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

The reference file holds the inputs (``texts``: :data:`SENTENCES`, ``pairs``: :data:`PAIRS`)
and, per model (key prefix ``{repo id}/``) and kind (``texts`` / ``pairs``), the HF
``AutoTokenizer`` batch (``input_ids``, ``attention_mask``, and ``token_type_ids`` where it
returns them) and ``AutoModel``'s eval-mode ``last_hidden_state`` (eager attention), both
loaded from the very files written here.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
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


def write_json(path: str, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial LayerNorm and bias values, so that a wrongly loaded tensor cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
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
    texts = corpus(sys.argv[1] if len(sys.argv) > 1 else CORPUS)
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
    }
    out = {"texts": np.array(SENTENCES), "pairs": np.array(PAIRS)}
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "tiny_hub")
        for seed, (repo_id, (make, vocab, as_bin)) in enumerate(models.items()):
            folder = os.path.join(root, repo_id.replace("/", "--"), "main")
            os.makedirs(folder)
            if vocab == "bpe":
                bpe_vocab(texts, folder)
            else:
                wordpiece_vocab(texts, vocab == "uncased", folder)
            vocab_size = len(transformers.AutoTokenizer.from_pretrained(folder))
            build(folder, make(vocab_size), seed, as_bin)
            out.update(reference(repo_id, folder))
        if os.path.exists(ROOT):
            shutil.rmtree(ROOT)
        shutil.copytree(root, ROOT)
    np.savez_compressed(REFERENCE, **out)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(ROOT) for f in fs)
    print(f"wrote {ROOT} ({size / 1e6:.2f} MB) and {REFERENCE}")


if __name__ == "__main__":
    main()
