"""The research project's own job: ELECTRA-base + RoBERTa-base tuned together with DME on CoLA.

    python benchmarks/bench_seed_job.py [--sentences 1600] [--predict 1043] [--runs 3] [--threads T]
    python benchmarks/bench_seed_job.py --predict-only --precisions fp32    # prediction alone
    python benchmarks/bench_seed_job.py --lm modernbert-base-random --precisions fp32    # the job with other LMs
    python benchmarks/run_all.py --only seed-job    # rewrite its section of RESULTS.md

Models: the two base-size language models at their real shapes with random weights
(``tools/make_seed_job_models.py``, run with the reference venv when the folders are missing;
``--models DIR`` takes them from elsewhere): ELECTRA-base discriminator with the bert-base-uncased
vocabulary and RoBERTa-base with its byte-level BPE. ``--lm NAME ...`` runs the same job with other
LMs of that script (``modernbert-base-random``: ModernBERT-base's shape with RoBERTa's BPE;
``deberta-v3-base-random``: DeBERTa-v3-base's with the bert-base-uncased WordPiece). Data: the first ``--sentences`` sentences of
the real CoLA training split (``../shared/data/glue/CoLA/train.tsv``) in file order, batches of 16,
one epoch; prediction over the first ``--predict`` sentences of the CoLA dev split (all 1,043 by
default), batches of 32: multienc's ``predict`` batches them longest first (as Flair's does), the
PyTorch loop in file order (as a plain HF loop does). ``--predict-only`` times the prediction of
the untrained models alone.

Both sides train the same model with the same settings: CLS vectors, per-LM projections to 768,
DME (a linear score per LM, softmax across LMs, weighted sum), a linear decoder, cross-entropy;
AdamW (weight decay 0.01) at 2e-5 for the LMs and 1e-3 for combiner and decoder (the seed's
README), clipping at 5.0, the linear schedule with 10% warmup, hidden and attention dropout 0.1.
multienc: ``ModelTrainer.train`` as users call it (no checkpoint file; the trainer needs a dev
split, so both sides end the epoch with an evaluation of the first 64 dev sentences). PyTorch:
HF ``AutoModel`` per LM with HF's fast tokenizers, fp32 eager, and bf16 autocast around the
forward and the loss (fp32 weights, gradients and AdamW state), on the same threads. multienc in
fp32 and, on CPUs with AVX512-BF16, with ``precision="bf16"`` (bf16 linear layers, float32
accumulation; its prediction in bf16 too, through ``task_model.set_precision``).

Each (side, precision) runs in its own subprocess, ``--runs`` times in rotation; the table gives
the median and every run (the machine may be shared: the load average is recorded with each
run). Reported for multienc: sentences/s of the whole ``train`` call, seconds per step (median
over the steps after the first), peak RSS, prediction sentences/s, and where a step's time goes
(``multienc.engine.op_profile``: matrix products, attention, other element-wise ops, the head,
the optimizer, the rest of the C step, and Python with tokenization). ``--json FILE`` writes
every number.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_MODELS = os.path.join(ROOT, "build", "seed-job-models")
MODEL_NAMES = ("electra-base-discriminator-random", "roberta-base-random")
#: the other folders tools/make_seed_job_models.py writes on request
OTHER_MODELS = ("modernbert-base-random", "deberta-v3-base-random")
LM_LR, HEAD_LR, WEIGHT_DECAY, MAX_GRAD_NORM, WARMUP, BATCH, EVAL_BATCH, DEV = 2e-5, 1e-3, 0.01, 5.0, 0.1, 16, 32, 64
sys.path.insert(0, HERE)
from bench_encoder import torch_python  # noqa: E402
from bench_train import torch_dme  # noqa: E402
from real_cola import COLA, read_cola  # noqa: E402


def peak_rss_mib() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def predict_rate(predict, n: int) -> float:
    """Sentences per second of one call of ``predict`` over ``n`` sentences."""
    t0 = time.perf_counter()
    predict()
    return n / (time.perf_counter() - t0)


def run_ours(args) -> dict:
    """multienc through ModelTrainer.train, the C step timed per call and per op phase."""
    from multienc import build_info
    from multienc.datasets import Corpus, Sentence
    from multienc.encoders import LanguageModel, MultiEncoder
    from multienc.engine import op_profile
    from multienc.task_heads import TextClassifier
    from multienc.trainer import ModelTrainer
    import tempfile
    tr, dv = read_cola("train.tsv", args.sentences), read_cola("dev.tsv")
    to_predict = dv[0][:args.predict]
    corpus = Corpus("CoLA (real files)", "Sentence classification", [Sentence(t, y) for t, y in zip(*tr)],
                    [Sentence(t, y) for t, y in zip(dv[0][:DEV], dv[1][:DEV])],
                    label_map={"not_acceptable": 0, "acceptable": 1}, evaluation_metric=["matthews_corr"])
    clf = TextClassifier(MultiEncoder([LanguageModel(f) for f in args.folders], combine_method="dme"), 2)
    if args.predict_only:
        clf.task_model.set_precision(args.precision)
        return dict(predict_sps=predict_rate(lambda: clf.predict(to_predict, batch_size=EVAL_BATCH), len(to_predict)),
                    rss_mib=peak_rss_mib(), blas_core=build_info()["blas_core"])
    c_seconds: List[float] = []
    inner = clf.task_model.train_step

    def timed_step(*a, **kw):
        t0 = time.perf_counter()
        out = inner(*a, **kw)
        c_seconds.append(time.perf_counter() - t0)
        return out

    clf.task_model.train_step = timed_step
    step_ends: List[float] = []
    outer = clf.train_step

    def marked_step(*a, **kw):
        out = outer(*a, **kw)
        step_ends.append(time.perf_counter())
        return out

    clf.train_step = marked_step
    with tempfile.TemporaryDirectory() as base, op_profile() as phases:
        t0 = time.perf_counter()
        ModelTrainer(clf, corpus).train(learning_rate=LM_LR, decoder_learning_rate=HEAD_LR, batch_size=BATCH,
                                        epochs=1, use_linear_scheduler=True, warmup_fraction=WARMUP,
                                        weight_decay=WEIGHT_DECAY, max_grad_norm=MAX_GRAD_NORM, base_path=base,
                                        save_best_model=False, seed=0, progress=False, precision=args.precision)
        train_s = time.perf_counter() - t0
    clf.task_model.set_precision(args.precision)  # train hands the model back in fp32
    steps = [b - a for a, b in zip(step_ends, step_ends[1:])]  # steps 2.. (the first also sizes buffers)
    predict_sps = predict_rate(lambda: clf.predict(to_predict, batch_size=EVAL_BATCH), len(to_predict))
    c_total = sum(c_seconds)
    per_step = {k: v / len(c_seconds) for k, v in phases.seconds.items()}
    per_step["rest of the C step"] = max(0.0, (c_total - sum(phases.seconds.values())) / len(c_seconds))
    per_step["Python and tokenization"] = max(0.0, (train_s - c_total) / len(c_seconds))
    return dict(train_s=train_s, sentences=len(tr[0]), steps=len(c_seconds), step_s=statistics.median(steps),
                rss_mib=peak_rss_mib(), predict_sps=predict_sps, phases=per_step, blas_core=build_info()["blas_core"],
                lm_mode=clf.task_model.lm_schedule())


def run_torch(args) -> dict:
    """The same model, data order and settings in PyTorch (fp32 eager or bf16 autocast)."""
    import torch
    import transformers
    spec = importlib.util.spec_from_file_location("optim", os.path.join(ROOT, "multienc", "training", "optim.py"))
    optim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(optim)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    forward, lms, head, opt = torch_dme(args.folders, 2, LM_LR, HEAD_LR, WEIGHT_DECAY, attn_implementation="eager")
    torch.nn.init.xavier_uniform_(head[2].weight)  # the decoder, initialised as multienc's
    tr, dv = read_cola("train.tsv", args.sentences), read_cola("dev.tsv")
    to_predict = dv[0][:args.predict]
    total = (len(tr[0]) + BATCH - 1) // BATCH
    warmup = -(-int(total * WARMUP * 1000) // 1000)  # ceil, as the trainer
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: optim.linear_schedule_factor(s, total, warmup))
    params = [p for g in opt.param_groups for p in g["params"]]
    bf16 = args.precision == "bf16"

    def predict():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for i in range(0, len(to_predict), EVAL_BATCH):
                forward(to_predict[i:i + EVAL_BATCH]).argmax(1)

    if args.predict_only:
        lms.eval()
        head.eval()
        return dict(predict_sps=predict_rate(predict, len(to_predict)), rss_mib=peak_rss_mib(),
                    torch=torch.__version__, transformers=transformers.__version__,
                    cpu_capability=torch.backends.cpu.get_cpu_capability())
    ends = []
    started = time.perf_counter()
    lms.train()
    head.train()
    for i in range(0, len(tr[0]), BATCH):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(forward(tr[0][i:i + BATCH]), torch.tensor(tr[1][i:i + BATCH]))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        opt.step()
        sched.step()
        ends.append(time.perf_counter())
    lms.eval()
    head.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, DEV, EVAL_BATCH):
            torch.nn.functional.cross_entropy(forward(dv[0][i:i + EVAL_BATCH]), torch.tensor(dv[1][i:i + EVAL_BATCH]))
    train_s = time.perf_counter() - started
    predict_sps = predict_rate(predict, len(to_predict))
    steps = [b - a for a, b in zip(ends, ends[1:])]
    return dict(train_s=train_s, sentences=len(tr[0]), steps=len(ends), step_s=statistics.median(steps),
                rss_mib=peak_rss_mib(), predict_sps=predict_sps, torch=torch.__version__,
                transformers=transformers.__version__, cpu_capability=torch.backends.cpu.get_cpu_capability())


def worker(python: str, kind: str, precision: str, args) -> dict:
    cmd = [python, os.path.abspath(__file__), "--worker", kind, "--precision", precision, "--sentences",
           str(args.sentences), "--predict", str(args.predict), "--threads", str(args.threads), "--models", args.models,
           "--lm", *args.lm] + (["--predict-only"] if args.predict_only else [])
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MULTIENC_DEVICE="cpu",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    load = os.getloadavg()[0]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} {precision} worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["load"] = [load, os.getloadavg()[0]]
    return res


def ensure_models(folder: str, names: List[str]) -> List[str]:
    """The model folders `names`, made by tools/make_seed_job_models.py when missing."""
    paths = [os.path.join(folder, n) for n in names]
    if not all(os.path.isfile(os.path.join(p, "config.json")) for p in paths):
        python = torch_python()
        if not python:
            sys.exit(f"the model folders are missing under {folder} and no PyTorch interpreter was found to make "
                     f"them (set MULTIENC_TORCH_PYTHON or run tools/make_seed_job_models.py)")
        subprocess.run([python, os.path.join(ROOT, "tools", "make_seed_job_models.py"), "--out", folder, "--models",
                        *names], check=True, stdout=subprocess.DEVNULL)
    return paths


#: the (ours, PyTorch) pairs the ratio table compares
RATIOS = (("ours-fp32", "torch-fp32"), ("ours-fp32", "torch-bf16"), ("ours-bf16", "torch-bf16"), ("ours-bf16", "torch-fp32"))


def fmt_runs(values: List[float], spec: str) -> str:
    return f"{format(statistics.median(values), spec)} ({', '.join(format(v, spec) for v in values)})"


def report(args, results: Dict[str, List[dict]]) -> None:
    torch_info = next((r for k, rs in results.items() if k.startswith("torch") for r in rs), None)
    ours_info = next((r for k, rs in results.items() if k.startswith("ours") for r in rs), None)
    trained = "untrained" if args.predict_only else (f"trained on the first {args.sentences} real CoLA training "
                                                     f"sentences (one epoch, batch {BATCH})")
    lms = "ELECTRA-base + RoBERTa-base" if tuple(args.lm) == MODEL_NAMES else " + ".join(args.lm)
    print(f"{lms} (random weights, real shapes and vocabularies) with DME, {trained}; "
          f"{args.threads} threads, CPU; prediction over the first {args.predict} dev sentences, batches of {EVAL_BATCH}; "
          f"median of {args.runs} runs (each run in brackets, in order)"
          + (f"; multienc's OpenBLAS kernels: {ours_info['blas_core']}" if ours_info and "blas_core" in ours_info else "")
          + (f"; PyTorch {torch_info['torch']} (CPU capability {torch_info.get('cpu_capability', '?')}), "
             f"transformers {torch_info['transformers']}, eager attention" if torch_info else ""))
    print()
    names = {"ours-fp32": "multienc fp32", "ours-bf16": "multienc bf16", "torch-fp32": "PyTorch fp32 eager",
             "torch-bf16": "PyTorch bf16 autocast"}
    # (header, format of a run's list of values) per column; prediction alone has only the predict column
    columns = [] if args.predict_only else [
        ("train sentences/s", lambda runs: fmt_runs([r["sentences"] / r["train_s"] for r in runs], ".2f")),
        ("s per step", lambda runs: fmt_runs([r["step_s"] for r in runs], ".3f"))]
    columns.append(("predict sentences/s", lambda runs: fmt_runs([r["predict_sps"] for r in runs], ".1f")))
    print("| implementation | " + " | ".join(h for h, _ in columns) + " | peak RSS MiB | load average |")
    print("|---" * (len(columns) + 3) + "|")
    for key, runs in results.items():
        loads = ", ".join(f"{r['load'][0]:.1f}-{r['load'][1]:.1f}" for r in runs)
        print(f"| {names[key]} | " + " | ".join(fmt(runs) for _, fmt in columns) +
              f" | {statistics.median(r['rss_mib'] for r in runs):,.0f} | {loads} |")
    print()
    ratios = [] if args.predict_only else [("train", lambda a, b: b["train_s"] / a["train_s"])]
    ratios.append(("predict", lambda a, b: a["predict_sps"] / b["predict_sps"]))
    print("| ratio (same run) | " + " | ".join(h for h, _ in ratios) + " |")
    print("|---" * (len(ratios) + 1) + "|")
    for key, ref in RATIOS:
        if key in results and ref in results:
            cells = [fmt_runs([ratio(a, b) for a, b in zip(results[key], results[ref])], ".2f") + "x"
                     for _, ratio in ratios]
            print(f"| {names[key]} vs {names[ref]} | " + " | ".join(cells) + " |")
    if args.predict_only:
        return
    for key in ("ours-fp32", "ours-bf16"):
        if key not in results:
            continue
        runs = results[key]
        print()
        print(f"Where a step of {names[key]} goes (seconds per step, median of the runs; LMs "
              f"{runs[0]['lm_mode']}; when they run side by side their phases add up, so the phases "
              f"are thread-group seconds and can sum past the step's wall time):")
        print()
        print("| phase | s per step | share |")
        print("|---|---|---|")
        phases = {p: statistics.median(r["phases"][p] for r in runs) for p in runs[0]["phases"]}
        total = sum(phases.values())
        for p, v in phases.items():
            print(f"| {p} | {v:.3f} | {v / total:.0%} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sentences", type=int, default=1600, help="first N CoLA training sentences")
    ap.add_argument("--predict", type=int, default=1043, help="first N CoLA dev sentences to predict (all: 1043)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help=argparse.SUPPRESS)  # workers
    ap.add_argument("--sides", nargs="+", default=["ours", "torch"], choices=["ours", "torch"])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"],
                    help="which precisions to run (multienc bf16 only on CPUs with AVX512-BF16)")
    ap.add_argument("--models", default=DEFAULT_MODELS, help="folder holding the model folders")
    ap.add_argument("--lm", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES + OTHER_MODELS,
                    help="the LMs (folders under --models; default: the research project's two)")
    ap.add_argument("--predict-only", action="store_true",
                    help="only the prediction over the dev sentences, by the untrained models (no training)")
    ap.add_argument("--worker", choices=["ours", "torch"])
    ap.add_argument("--json", help="also write every number to this file (rewritten after each run)")
    ap.add_argument("--report", metavar="JSON", help="print the tables of a --json file (of a run that was stopped)")
    args = ap.parse_args()
    if args.report:
        with open(args.report) as f:
            saved = json.load(f)
        args.sentences, args.predict, args.threads = saved["sentences"], saved["predict"], saved["threads"]
        args.predict_only = saved.get("predict_only", False)
        args.lm = saved.get("lm", list(MODEL_NAMES))
        results = {k: v[:min(map(len, saved["results"].values()))] for k, v in saved["results"].items()}
        args.runs = len(next(iter(results.values())))
        report(args, results)
        return
    if args.worker:
        args.folders = [os.path.join(args.models, n) for n in args.lm]
        print(json.dumps(run_ours(args) if args.worker == "ours" else run_torch(args)))
        return
    if not os.path.isfile(os.path.join(COLA, "train.tsv")):
        sys.exit(f"real CoLA files not found under {COLA} (set MULTIENC_SHARED_DATA)")
    ensure_models(args.models, args.lm)
    python = torch_python()
    from multienc.engine import bf16_available
    ours = [p for p in args.precisions if p == "fp32" or bf16_available()]
    plan = [("ours", p, sys.executable) for p in ours] if "ours" in args.sides else []
    if "torch" in args.sides and python:
        plan += [("torch", p, python) for p in args.precisions]
    results: Dict[str, List[dict]] = {}
    for run in range(args.runs):
        for kind, precision, py in plan:
            print(f"run {run + 1}/{args.runs}: {kind} {precision}", file=sys.stderr, flush=True)
            results.setdefault(f"{kind}-{precision}", []).append(worker(py, kind, precision, args))
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(dict(results=results, sentences=args.sentences, predict=args.predict,
                                   threads=args.threads, runs=args.runs, predict_only=args.predict_only, lm=args.lm),
                          f, indent=1)
    report(args, results)


if __name__ == "__main__":
    main()
