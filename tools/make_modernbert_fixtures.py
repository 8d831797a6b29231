"""Generate the tiny ModernBERT fixtures and their HF reference outputs.

Run with the reference environment (torch + transformers 5.24.0), not the test venv:

    .venv-ref/bin/python tools/make_modernbert_fixtures.py

For each configuration below it writes ``tests/fixtures/models/<name>/``: the model saved by
transformers (``config.json`` as transformers 5 writes it, with ``layer_types`` and
``rope_parameters``, + ``model.safetensors``) and ``reference.npz`` holding, per input case, the
inputs, the eval-mode ``last_hidden_state`` of ``ModernBertModel`` (eager attention, the padded
path), a fixed random ``R`` and the gradient of ``sum(last_hidden_state * R)`` for EVERY
parameter (keys ``grad/<hf name>``). The configurations cross the local window (windows 8, 12
and 16, lengths up to 64), cover ``global_attn_every_n_layers`` 1, 2 and 3, both activations,
with and without biases, and padded batches whose padded queries see no real key inside their
window. ``tests/fixtures/models/modernbert_rope.npz`` holds transformers' own rotary tables
(``ModernBertRotaryEmbedding``) for the fixtures' head sizes and for ModernBERT-base's (head size
64, bases 160000 and 10000, positions up to 8191).
"""
from __future__ import annotations

import os

import numpy as np
import torch
import transformers

from make_encoder_fixtures import randomize, record_case  # tools/ is on sys.path when run as a script

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "models")
VOCAB = 99


def configs() -> dict:
    common = dict(vocab_size=VOCAB, pad_token_id=0, bos_token_id=2, eos_token_id=3, cls_token_id=2,
                  sep_token_id=3, max_position_embeddings=64, attention_dropout=0.1, embedding_dropout=0.1,
                  mlp_dropout=0.1)
    return {
        # no biases (the released checkpoints' setting), window 8, one global layer in three
        "modernbert": transformers.ModernBertConfig(
            **common, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=24,
            local_attention=8, global_attn_every_n_layers=3, hidden_activation="gelu"),
        # every bias, window 16, every second layer global, tanh GELU, other bases
        "modernbert-biases": transformers.ModernBertConfig(
            **common, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=20,
            local_attention=16, global_attn_every_n_layers=2, hidden_activation="gelu_pytorch_tanh",
            norm_bias=True, attention_bias=True, mlp_bias=True, global_rope_theta=5000.0,
            local_rope_theta=300.0, norm_eps=1e-6),
        # every layer global (n = 1), window 12 unused
        "modernbert-global": transformers.ModernBertConfig(
            **common, hidden_size=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
            local_attention=12, global_attn_every_n_layers=1, hidden_activation="gelu"),
    }


def cases(rng: np.random.Generator) -> list:
    """Padded batches of unequal lengths (short rows padded far past the window), a full batch."""
    out = []
    for T, lengths in ((64, [64, 41, 5, 23]), (37, [37, 37]), (20, [20, 12, 1])):
        ids = rng.integers(4, VOCAB, size=(len(lengths), T)).astype(np.int64)
        mask = np.zeros_like(ids)
        for b, n in enumerate(lengths):
            mask[b, :n] = 1
            ids[b, n:] = 0
        out.append(dict(input_ids=ids, attention_mask=mask))
    return out


def rope_tables() -> dict:
    """transformers' cos/sin (ModernBertRotaryEmbedding) for head sizes and bases in use."""
    out = {}
    positions = np.unique(np.concatenate([np.arange(64), np.random.default_rng(0).integers(64, 8192, 200), [8191]]))
    for name, (hs, theta_g, theta_l) in {"base": (64, 160000.0, 10000.0), "hs8": (8, 160000.0, 10000.0),
                                         "hs16": (16, 5000.0, 300.0), "hs12": (12, 160000.0, 10000.0)}.items():
        cfg = transformers.ModernBertConfig(hidden_size=hs * 2, num_attention_heads=2, num_hidden_layers=2,
                                            global_attn_every_n_layers=2, global_rope_theta=theta_g,
                                            local_rope_theta=theta_l, max_position_embeddings=8192)
        rot = transformers.models.modernbert.modeling_modernbert.ModernBertRotaryEmbedding(cfg)
        pos = torch.from_numpy(positions)[None]
        x = torch.zeros(1, dtype=torch.float32)
        for layer_type, theta in (("full_attention", theta_g), ("sliding_attention", theta_l)):
            cos, sin = rot(x, pos, layer_type)
            out[f"{name}/{theta}/cos"] = cos[0, :, : hs // 2].numpy()
            out[f"{name}/{theta}/sin"] = sin[0, :, : hs // 2].numpy()
        out[f"{name}/positions"] = positions
        out[f"{name}/head_size"] = np.array(hs)
    return out


def main() -> None:
    torch.manual_seed(0)
    for i, (name, cfg) in enumerate(configs().items()):
        cfg._attn_implementation = "eager"
        model = transformers.ModernBertModel(cfg)
        randomize(model, 300 + i, norm_weights=("norm.weight",))
        model.eval()
        folder = os.path.join(OUT, name)
        os.makedirs(folder, exist_ok=True)
        model.save_pretrained(folder, safe_serialization=True)
        rng = np.random.default_rng(3000 + i)
        ref = {}
        for c, inputs in enumerate(cases(rng)):
            h = record_case(model, inputs, rng, c, ref)
            # the SDPA path computes the same function on the real tokens
            tin = {k: torch.from_numpy(v) for k, v in inputs.items()}
            model.config._attn_implementation = "sdpa"
            with torch.no_grad():
                hs = model(**tin).last_hidden_state
            model.config._attn_implementation = "eager"
            real = tin["attention_mask"].bool()
            assert torch.allclose(hs[real], h[real], atol=1e-5), "eager and sdpa disagree"
        np.savez_compressed(os.path.join(folder, "reference.npz"), **ref)
        print(name, "->", folder, len(ref), "arrays",
              f"torch {torch.__version__} transformers {transformers.__version__}")
    path = os.path.join(OUT, "modernbert_rope.npz")
    np.savez_compressed(path, **rope_tables())
    print("rotary tables ->", path)


if __name__ == "__main__":
    main()
