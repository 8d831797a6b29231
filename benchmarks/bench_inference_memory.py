"""An encoder's first forward over long inputs: eval mode (every layer's activations kept for a
backward) against inference mode (``Encoder.forward(inference=True)``, what predictions run).

    python benchmarks/bench_inference_memory.py [--batch 32] [--seq 512] [--runs 3] [--model FOLDER]

Each run makes a fresh encoder per mode (so its workspace is mapped and cleared by that forward,
as a prediction's first batch is) and reports the workspace (``Encoder.workspace_bytes``) and the
forward's seconds; median of the runs, every run in brackets. The default model is the random-weight
RoBERTa-base folder of ``bench_seed_job.py``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_seed_job import DEFAULT_MODELS, MODEL_NAMES, ensure_models  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--model", default=None, help="a model folder (default: the seed job's RoBERTa-base)")
    args = ap.parse_args()
    import numpy as np
    from multienc.engine import Encoder
    folder = args.model or ensure_models(DEFAULT_MODELS, list(MODEL_NAMES))[1]
    ids = np.full((args.batch, args.seq), 1000, np.int64)
    seconds = {False: [], True: []}
    mib = {}
    for _ in range(args.runs):
        for inference in (False, True):
            enc = Encoder(folder)
            t0 = time.perf_counter()
            enc.forward(ids, inference=inference)
            seconds[inference].append(time.perf_counter() - t0)
            mib[inference] = enc.workspace_bytes / 2 ** 20
            del enc
    print(f"{os.path.basename(folder.rstrip('/'))}, {args.batch} x {args.seq} tokens, first forward of a fresh encoder; "
          f"median of {args.runs} runs (each run in brackets)\n")
    print("| mode | workspace MiB | seconds |\n|---|---|---|")
    for inference, name in ((False, "eval (activations kept)"), (True, "inference")):
        runs = ", ".join(f"{s:.1f}" for s in seconds[inference])
        print(f"| {name} | {mib[inference]:,.0f} | {statistics.median(seconds[inference]):.1f} ({runs}) |")


if __name__ == "__main__":
    main()
