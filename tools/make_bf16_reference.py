"""Reference outputs of the tiny encoder fixtures with bf16 linear layers (``precision="bf16"``).

Run with the reference environment (torch + transformers), not the test venv:

    .venv-ref/bin/python tools/make_bf16_reference.py

For each fixture below (made by tools/make_encoder_fixtures.py and make_modernbert_fixtures.py)
it loads the model saved by transformers and writes ``reference_bf16.npz`` beside its
``reference.npz``: per input case of that file (same inputs, same ``R``), the eval-mode
``last_hidden_state`` and the gradient of ``sum(last_hidden_state * R)`` for every parameter,
computed by transformers with every ``nn.Linear`` replaced by the semantics multienc's bf16
precision promises: the input and the weight rounded to bfloat16 (torch's round to nearest even),
the product accumulated in float32, the bias added in float32; in backward
``dX = bf16(dY) bf16(W)`` and ``dW = bf16(dY)^T bf16(X)``, ``db = sum(dY)`` in float32. A product of
two bfloat16 values is exact in float32, so this is the function the engine's bf16 GEMM computes,
up to the order of the float32 sums. Everything else (LayerNorm, softmax, attention products, the
DeBERTa-v2 convolution) stays float32 on both sides.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "tests", "fixtures", "models")
FAMILIES = ("bert", "roberta", "electra", "albert", "distilbert", "mpnet", "deberta-v3", "deberta-v2-conv",
            "modernbert")


def bf16(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).to(torch.float32)


class Bf16Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        y = bf16(x) @ bf16(w).t()
        return y + b if b is not None else y

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        g2, x2 = g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1])
        dx = (bf16(g2) @ bf16(w)).reshape(x.shape)
        dw = bf16(g2).t() @ bf16(x2)
        return dx, dw, (g2.sum(0) if ctx.has_bias else None)


def bf16_linear(x, w, b=None):
    return Bf16Linear.apply(x, w, b)


def main() -> None:
    torch.nn.functional.linear = bf16_linear  # nn.Linear.forward calls it through the module
    for family in FAMILIES:
        folder = os.path.join(MODELS, family)
        ref = np.load(os.path.join(folder, "reference.npz"))
        model = transformers.AutoModel.from_pretrained(folder, attn_implementation="eager")
        model.eval()
        out = {}
        c = 0
        while f"case{c}/input_ids" in ref:
            inputs = {k: torch.from_numpy(ref[f"case{c}/{k}"]) for k in ("input_ids", "attention_mask",
                                                                         "token_type_ids")
                      if f"case{c}/{k}" in ref}
            model.zero_grad(set_to_none=True)
            h = model(**inputs).last_hidden_state
            (h * torch.from_numpy(ref[f"case{c}/R"])).sum().backward()
            out[f"case{c}/last_hidden_state"] = h.detach().numpy()
            for name, p in model.named_parameters():  # AutoModel adds a pooler, which h does not use
                if f"case{c}/grad/{name}" in ref:
                    g = p.grad if p.grad is not None else torch.zeros_like(p)
                    out[f"case{c}/grad/{name}"] = g.numpy().copy()
            assert {k for k in out if k.startswith(f"case{c}/grad/")} == \
                {k for k in ref.files if k.startswith(f"case{c}/grad/")}, family
            c += 1
        np.savez_compressed(os.path.join(folder, "reference_bf16.npz"), **out)
        print(family, "->", folder, c, "cases", f"torch {torch.__version__} transformers {transformers.__version__}")


if __name__ == "__main__":
    main()
