"""One LM's task-model step on one fixed padded batch, timed many times: for comparing two builds of
the engine on a noisy machine, where whole-job runs (``bench_seed_job.py``) vary by 10-20% and a
change of a few % needs the best of many short samples.

    python benchmarks/bench_task_step.py [--lm deberta-v3-base-random] [--pooling cls] [--steps 12]

A sentence-classification head (no combination) on one LM of the seed job's random-weight folders
(made by tools/make_seed_job_models.py when missing) or any model folder; the batch is
``--batch`` x ``--seq`` random ids with random lengths from 8 to ``--seq`` tokens (the first one
full), about a third padding as the research project's CoLA batches. Reports, after one warm-up
each, the best and the median seconds of ``--steps`` training steps' forward and backward (dropout
on, no optimizer) and of as many prediction forwards. Run it alternately with the builds compared
(``PYTHONPATH=<checkout>``) and compare the best samples.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_seed_job import DEFAULT_MODELS, MODEL_NAMES, OTHER_MODELS, ensure_models  # noqa: E402

POOLINGS = ("cls", "mean")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lm", default="deberta-v3-base-random",
                    help=f"a folder under --models ({', '.join(MODEL_NAMES + OTHER_MODELS)}) or a model folder's path")
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--pooling", choices=POOLINGS, default="cls")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=40)
    ap.add_argument("--steps", type=int, default=12)
    args = ap.parse_args()
    import numpy as np
    from multienc.engine import _C, Encoder
    folder = args.lm if os.path.isdir(args.lm) else ensure_models(args.models, [args.lm])[0]
    enc = Encoder(folder)
    model = _C.Model([enc._c], dict(combine=0, task=0, num_classes=2))
    rng = np.random.default_rng(0)
    B, T = args.batch, args.seq
    pad = enc.config.get("pad_token_id", 0)
    ids = rng.integers(1000, 20000, (B, T)).astype(np.int32)
    mask = np.ones((B, T), np.int32)
    pool = np.zeros((B, 1, T), np.float32)
    lengths = rng.integers(min(8, T), T + 1, B)
    lengths[0] = T
    for b, n in enumerate(lengths):
        ids[b, n:], mask[b, n:] = pad, 0
        pool[b, 0, :1 if args.pooling == "cls" else n] = 1.0 if args.pooling == "cls" else 1.0 / n
    inputs = [(ids, mask, None, pool)]
    targets = rng.integers(0, 2, B).astype(np.int32)

    def train_step() -> None:
        model.forward(inputs, targets, train=True, seed=3)
        model.backward([True])

    def predict() -> None:
        model.forward(inputs)

    print(f"{os.path.basename(folder.rstrip('/'))}, {args.pooling} head, {B} x {T} tokens "
          f"({int(mask.sum())} real), best and median of {args.steps} samples after one warm-up")
    for name, fn in (("training step forward+backward", train_step), ("prediction forward", predict)):
        fn()
        seconds = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - t0)
        print(f"{name}: best {min(seconds):.4f} s, median {statistics.median(seconds):.4f} s")


if __name__ == "__main__":
    main()
