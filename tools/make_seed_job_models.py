"""The research project's two language models at their real shapes, with random weights.

    .venv-ref/bin/python tools/make_seed_job_models.py [--out build/seed-job-models] [--models NAME ...]

Writes two model folders that ``benchmarks/bench_seed_job.py`` trains (it runs this script
itself when they are missing):

- ``electra-base-discriminator-random``: ``transformers.ElectraConfig`` with the values of
  google/electra-base-discriminator (hidden 768, 12 layers, 12 heads, intermediate 3072,
  embedding size 768, vocabulary 30,522) and the bert-base-uncased vocabulary from
  ``../shared/data/vocab/bert-base-uncased`` (ELECTRA's own WordPiece vocabulary is that one).
- ``roberta-base-random``: ``transformers.RobertaConfig`` with roberta-base's values (vocabulary
  50,265, 514 positions, one token type, padding id 1) and its byte-level BPE from
  ``../shared/data/vocab/roberta-base``.

and on request (``--models modernbert-base-random deberta-v3-base-random``, for
``benchmarks/bench_seed_job.py --lm``):

- ``modernbert-base-random``: ``transformers.ModernBertConfig`` with answerdotai/ModernBERT-base's
  values (22 layers, hidden 768, 12 heads, intermediate 1152, global attention every third layer,
  local windows of 128, rotary bases 160,000 / 10,000, no biases, vocabulary 50,368) and roberta-base's
  byte-level BPE in place of its own tokenizer (not in ``../shared/data``), written as the
  ``tokenizer.json`` transformers' fast RoBERTa tokenizer saves: the special token ids are
  RoBERTa's (``<s>`` 0, padding 1, ``</s>`` 2), within the 50,368 rows.
- ``deberta-v3-base-random``: ``transformers.DebertaV2Config`` with microsoft/deberta-v3-base's values
  (hidden 768, 12 layers, 12 heads, intermediate 3072, relative attention with 256 log buckets, c2p and
  p2c sharing the key / query weights, the relative embeddings' LayerNorm, no absolute positions, no
  token types, vocabulary 128,100) and the bert-base-uncased WordPiece in place of its SentencePiece
  model (not in ``../shared/data``), written as ``BertTokenizerFast`` saves it: padding id 0 as
  DeBERTa's, ``[CLS]`` 101 and ``[SEP]`` 102 within the 128,100 rows.

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
    "modernbert-base-random": (
        transformers.ModernBertConfig, transformers.ModernBertModel,
        dict(vocab_size=50368, hidden_size=768, num_hidden_layers=22, num_attention_heads=12, intermediate_size=1152,
             hidden_activation="gelu", max_position_embeddings=8192, norm_eps=1e-5, norm_bias=False,
             global_rope_theta=160000.0, local_rope_theta=10000.0, global_attn_every_n_layers=3, local_attention=128,
             attention_bias=False, mlp_bias=False, attention_dropout=0.0, embedding_dropout=0.0, mlp_dropout=0.0,
             pad_token_id=1, bos_token_id=0, eos_token_id=2, cls_token_id=0, sep_token_id=2),
        "roberta-base"),
    "deberta-v3-base-random": (
        transformers.DebertaV2Config, transformers.DebertaV2Model,
        dict(vocab_size=128100, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
             hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=512,
             type_vocab_size=0, layer_norm_eps=1e-7, relative_attention=True, max_relative_positions=-1,
             position_buckets=256, norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type=["p2c", "c2p"],
             position_biased_input=False, pad_token_id=0),
        "bert-base-uncased"),
}
#: what a plain run writes: the research project's two models
SEED_JOB = ("electra-base-discriminator-random", "roberta-base-random")


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
    if model_cls is transformers.ModernBertModel:  # AutoTokenizer reads a ModernBERT folder's tokenizer.json only
        transformers.RobertaTokenizerFast.from_pretrained(src).save_pretrained(tmp)
    elif model_cls is transformers.DebertaV2Model:  # the tokenizer class named, as a DeBERTa config implies SentencePiece
        transformers.BertTokenizerFast.from_pretrained(src).save_pretrained(tmp)
    else:
        for f in sorted(os.listdir(src)):
            shutil.copyfile(os.path.join(src, f), os.path.join(tmp, f))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="folder to write the model folders into")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(SEED_JOB),
                    help="which folders to write (default: the research project's two)")
    args = ap.parse_args()
    if not os.path.isdir(VOCAB):
        raise SystemExit(f"vocabularies not found under {VOCAB} (set MULTIENC_SHARED_DATA)")
    os.makedirs(args.out, exist_ok=True)
    for name in args.models:
        print(build(args.out, name, args.seed + list(MODELS).index(name)))


if __name__ == "__main__":
    main()
