"""The research project's two language models at their real shapes, with random weights.

    .venv-ref/bin/python tools/make_seed_job_models.py [--out build/seed-job-models]

Writes two model folders that ``benchmarks/bench_seed_job.py`` trains (it runs this script
itself when they are missing):

- ``electra-base-discriminator-random``: ``transformers.ElectraConfig`` with the values of
  google/electra-base-discriminator (hidden 768, 12 layers, 12 heads, intermediate 3072,
  embedding size 768, vocabulary 30,522) and the bert-base-uncased vocabulary from
  ``../shared/data/vocab/bert-base-uncased`` (ELECTRA's own WordPiece vocabulary is that one).
- ``roberta-base-random``: ``transformers.RobertaConfig`` with roberta-base's values (vocabulary
  50,265, 514 positions, one token type, padding id 1) and its byte-level BPE from
  ``../shared/data/vocab/roberta-base``.

Weights: the models' own initialisation (``ElectraModel(config)`` / ``RobertaModel(config)``
after ``torch.manual_seed``), saved with ``save_pretrained`` as ``model.safetensors``.
Nothing is downloaded; the folders are build outputs (about 0.9 GB together), never committed.
"""
from __future__ import annotations

import argparse
import os
import shutil

import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.environ.get("MULTIENC_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
VOCAB = os.path.join(DATA, "vocab")
DEFAULT_OUT = os.path.join(ROOT, "build", "seed-job-models")

#: folder name -> (config class, model class, config values of the real checkpoint, vocabulary folder)
MODELS = {
    "electra-base-discriminator-random": (
        transformers.ElectraConfig, transformers.ElectraModel,
        dict(vocab_size=30522, embedding_size=768, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
             intermediate_size=3072, hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
             max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0),
        "bert-base-uncased"),
    "roberta-base-random": (
        transformers.RobertaConfig, transformers.RobertaModel,
        dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
             hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
             max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0,
             eos_token_id=2),
        "roberta-base"),
}


def build(out: str, name: str, seed: int) -> str:
    """Write one model folder (weights, config, tokenizer files) and return its path."""
    config_cls, model_cls, values, vocab = MODELS[name]
    folder = os.path.join(out, name)
    tmp = folder + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    torch.manual_seed(seed)
    model = model_cls(config_cls(**values), add_pooling_layer=False) if model_cls is transformers.RobertaModel \
        else model_cls(config_cls(**values))
    model.save_pretrained(tmp, safe_serialization=True)
    src = os.path.join(VOCAB, vocab)
    for f in sorted(os.listdir(src)):
        shutil.copyfile(os.path.join(src, f), os.path.join(tmp, f))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="folder to write the two model folders into")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not os.path.isdir(VOCAB):
        raise SystemExit(f"vocabularies not found under {VOCAB} (set MULTIENC_SHARED_DATA)")
    os.makedirs(args.out, exist_ok=True)
    for i, name in enumerate(MODELS):
        print(build(args.out, name, args.seed + i))


if __name__ == "__main__":
    main()
