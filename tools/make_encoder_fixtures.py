"""Generate the tiny encoder fixtures and their HF reference outputs.

Run with the reference environment (torch + transformers), not the test venv:

    .venv-ref/bin/python tools/make_encoder_fixtures.py

For each family (bert, roberta, electra with embedding_size != hidden_size) it
writes ``tests/fixtures/models/<family>/`` holding the model saved by
transformers (``config.json`` + ``model.safetensors``) and ``reference.npz``
with, per input case, the inputs, the eval-mode ``last_hidden_state``, a fixed
random ``R`` and the gradient of ``sum(last_hidden_state * R)`` for EVERY
parameter (keys ``grad/<hf name>``). Attention is the eager implementation,
the parity reference named in HF-SEMANTICS.md.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "models")


def configs() -> dict:
    common = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=37, max_position_embeddings=40,
                  hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    return {
        "bert": transformers.BertConfig(**common, type_vocab_size=2, hidden_act="gelu",
                                        layer_norm_eps=1e-12, pad_token_id=0),
        "roberta": transformers.RobertaConfig(**{**common, "max_position_embeddings": 42},
                                              type_vocab_size=1, hidden_act="gelu_new",
                                              layer_norm_eps=1e-5, pad_token_id=1,
                                              bos_token_id=0, eos_token_id=2),
        "electra": transformers.ElectraConfig(**common, embedding_size=16, type_vocab_size=2,
                                              hidden_act="gelu", layer_norm_eps=1e-12,
                                              pad_token_id=0),
    }


def model_class(family: str):
    return {"bert": transformers.BertModel, "roberta": transformers.RobertaModel,
            "electra": transformers.ElectraModel}[family]


def cases(family: str, rng: np.random.Generator) -> list:
    """Padded batches of unequal lengths; sentence pairs with token types."""
    pad = 1 if family == "roberta" else 0
    T = 11
    lengths = [11, 7, 3, 9]
    ids = rng.integers(3, 99, size=(len(lengths), T)).astype(np.int64)
    mask = np.zeros_like(ids)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
        ids[b, n:] = pad
    out = []
    if family == "roberta":
        ids2 = ids.copy()
        ids2[0, 4] = pad  # a literal pad id inside the text keeps position `pad`
        out.append(dict(input_ids=ids, attention_mask=mask))
        out.append(dict(input_ids=ids2, attention_mask=mask))
    else:
        types = np.zeros_like(ids)
        for b, n in enumerate(lengths):
            types[b, n // 2:n] = 1  # second segment of a pair
        out.append(dict(input_ids=ids, attention_mask=mask))
        out.append(dict(input_ids=ids, attention_mask=mask, token_type_ids=types))
    full = rng.integers(3, 99, size=(2, 40 if family != "roberta" else 40)).astype(np.int64)
    out.append(dict(input_ids=full, attention_mask=np.ones_like(full)))
    return out


def randomize(model: torch.nn.Module, seed: int, norm_weight: str = "LayerNorm.weight") -> None:
    """Weights far from the initialisation: LayerNorm weights (names containing ``norm_weight``)
    1 + N(0, 0.1), embeddings N(0, 0.3), the rest N(0, 0.1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.1
            if norm_weight in name:
                p.copy_(1.0 + noise)
            else:
                p.copy_(noise * (3.0 if "embeddings" in name else 1.0))


def record_case(model: torch.nn.Module, inputs: dict, rng: np.random.Generator, c: int, ref: dict) -> torch.Tensor:
    """Case ``c`` into ``ref``: the inputs, the eval-mode last_hidden_state, a random ``R`` and
    every parameter's gradient of sum(last_hidden_state * R). Returns last_hidden_state."""
    tin = {k: torch.from_numpy(v) for k, v in inputs.items()}
    model.zero_grad(set_to_none=True)
    h = model(**tin).last_hidden_state
    R = torch.from_numpy(rng.standard_normal(h.shape).astype(np.float32))
    (h * R).sum().backward()
    for k, v in inputs.items():
        ref[f"case{c}/{k}"] = v
    ref[f"case{c}/last_hidden_state"] = h.detach().numpy()
    ref[f"case{c}/R"] = R.numpy()
    for name, p in model.named_parameters():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        ref[f"case{c}/grad/{name}"] = g.numpy().copy()
    return h.detach()


def main() -> None:
    torch.manual_seed(0)
    for i, (family, cfg) in enumerate(configs().items()):
        cfg._attn_implementation = "eager"
        model = model_class(family)(cfg, add_pooling_layer=False) if family != "electra" \
            else model_class(family)(cfg)
        randomize(model, 100 + i)
        model.eval()
        folder = os.path.join(OUT, family)
        os.makedirs(folder, exist_ok=True)
        model.save_pretrained(folder, safe_serialization=True)
        rng = np.random.default_rng(1000 + i)
        ref = {}
        for c, inputs in enumerate(cases(family, rng)):
            record_case(model, inputs, rng, c, ref)
        np.savez_compressed(os.path.join(folder, "reference.npz"), **ref)
        print(family, "->", folder, len(ref), "arrays",
              f"torch {torch.__version__} transformers {transformers.__version__}")


if __name__ == "__main__":
    main()
