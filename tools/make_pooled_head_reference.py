"""HF references for a classification head on pooled rows: logits, loss and every gradient.

Run with the reference environment (torch + transformers), not the test venv:

    /work/main/.venv-ref/bin/python tools/make_pooled_head_reference.py [FAMILY ...]

(all families by default; each family's batch and head come from its own seed, so naming some
rewrites only theirs).

For each tiny fixture model in ``tests/fixtures/models/<family>/`` (made by
``tools/make_encoder_fixtures.py``; loaded here, not changed) it writes ``pooled_heads.npz``:
a padded batch (lengths 11, 7, 3, 9; token types for BERT, ELECTRA and ALBERT) and, per pooling,

- ``cls``: the first row of each sentence (one vector per sentence),
- ``mean``: the mean of each sentence's unpadded rows (one vector per sentence),
- ``words``: three rows per sentence at first-subtoken positions (a word-level head),

the pooling matrix ``pool`` [B, K, T], the targets, the HF logits ``decoder(pool @ h)`` and the
mean cross-entropy, and the gradient of that loss for every HF parameter (``grad/<hf name>``) and
for the decoder (``grad/decoder.weight``, ``grad/decoder.bias``). Dropout is off (the HF config's
dropout probabilities set to 0), attention is the eager implementation. The test
(``tests/test_model_step.py``) feeds the same batch to the C task model, whose last layer then
computes only the rows the pooling reads (the families with plain attention: these five).
"""
from __future__ import annotations

import os
import sys

import numpy as np
import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures", "models")
FAMILIES = ("bert", "roberta", "electra", "distilbert", "albert")
LENGTHS = (11, 7, 3, 9)
CLASSES = 3


def pooling_matrices(rng: np.random.Generator, T: int) -> dict:
    """name -> [B, K, T] float32 pooling weights."""
    B = len(LENGTHS)
    cls = np.zeros((B, 1, T), np.float32)
    cls[:, 0, 0] = 1.0
    mean = np.zeros((B, 1, T), np.float32)
    words = np.zeros((B, 3, T), np.float32)
    for b, n in enumerate(LENGTHS):
        mean[b, 0, :n] = 1.0 / n
        for k, t in enumerate(sorted(rng.choice(np.arange(1, n - 1), 3, replace=False)) if n > 4 else (0, 1, 2)):
            words[b, k, t] = 1.0
    return {"cls": cls, "mean": mean, "words": words}


def main(families: list) -> None:
    for family in families:
        folder = os.path.join(FIXTURES, family)
        # as the fixture was saved (no pooler); dropout off under each family's own config keys
        extra = {} if family in ("electra", "distilbert") else {"add_pooling_layer": False}
        extra.update({"dropout": 0.0, "attention_dropout": 0.0} if family == "distilbert" else
                     {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})
        model = transformers.AutoModel.from_pretrained(folder, attn_implementation="eager", **extra)
        model.train()
        rng = np.random.default_rng(2000 + FAMILIES.index(family))
        pad = model.config.pad_token_id
        T, B = max(LENGTHS), len(LENGTHS)
        ids = rng.integers(3, model.config.vocab_size, (B, T)).astype(np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for b, n in enumerate(LENGTHS):
            mask[b, :n] = 1
            ids[b, n:] = pad
            types[b, n // 2:n] = 1
        inputs = dict(input_ids=ids, attention_mask=mask)
        if family not in ("roberta", "distilbert"):
            inputs["token_type_ids"] = types
        H = model.config.hidden_size
        ref = {k: v for k, v in inputs.items()}
        for name, pool in pooling_matrices(rng, T).items():
            K = pool.shape[1]
            decoder = torch.nn.Linear(H, CLASSES)
            with torch.no_grad():
                decoder.weight.copy_(torch.from_numpy(rng.standard_normal((CLASSES, H)).astype(np.float32) * 0.3))
                decoder.bias.copy_(torch.from_numpy(rng.standard_normal(CLASSES).astype(np.float32) * 0.3))
            targets = rng.integers(0, CLASSES, B * K).astype(np.int64)
            model.zero_grad(set_to_none=True)
            h = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).last_hidden_state
            pooled = torch.einsum("bkt,bth->bkh", torch.from_numpy(pool), h).reshape(B * K, H)
            logits = decoder(pooled)
            loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(targets))
            loss.backward()
            ref[f"{name}/pool"] = pool
            ref[f"{name}/targets"] = targets.astype(np.int32)
            ref[f"{name}/decoder.weight"] = decoder.weight.detach().numpy().copy()
            ref[f"{name}/decoder.bias"] = decoder.bias.detach().numpy().copy()
            ref[f"{name}/logits"] = logits.detach().numpy()
            ref[f"{name}/loss"] = np.float64(loss.item())
            for pname, p in list(model.named_parameters()) + [(f"decoder.{n}", p) for n, p in
                                                              decoder.named_parameters()]:
                g = p.grad if p.grad is not None else torch.zeros_like(p)
                ref[f"{name}/grad/{pname}"] = g.numpy().copy()
        np.savez_compressed(os.path.join(folder, "pooled_heads.npz"), **ref)
        print(family, "->", os.path.join(folder, "pooled_heads.npz"), len(ref), "arrays",
              f"torch {torch.__version__} transformers {transformers.__version__}")


if __name__ == "__main__":
    main(sys.argv[1:] or list(FAMILIES))
