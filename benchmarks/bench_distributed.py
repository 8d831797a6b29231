"""Data-parallel training speed: 1 process vs 2 MPI ranks (1 thread each) on the same global batch,
the gradient all-reduce's time per step and its share of the step, and mpi4py's all-reduce vs the
same MPI_Allreduce called from C.

    python benchmarks/bench_distributed.py [--lm NAME_OR_FOLDER ...] [--batch 16] [--steps 6] [--repeats 3]

Model: two LMs with DME (default: the built-in all-MiniLM-L6-v2 + sre-embedding-model), the built-in
topic corpus' first batches (shuffled by seed 1), AdamW as ModelTrainer runs it. Each configuration
runs ``--repeats`` times as its own job (``mpirun -n N``, Open MPI over shared memory on this
machine, OMP_NUM_THREADS=1 per rank); a job times ``--steps`` training steps after one warm-up step
(``TaskHead.train_step``; with ranks, the data-parallel step of multienc.parallel). Reported: the
median of the repeats, and all of them. The all-reduce time is what the helper thread spent in
MPI_Allreduce per step; "not overlapped" is how long the step waited for it after its last backward.

The C comparison compiles benchmarks/allreduce_c.c with mpicc and times MPI_Allreduce (in place,
float32 sum) of the model's buffer sizes, against mpi4py's Comm.Allreduce on numpy arrays of the same
sizes, 2 ranks, median of 20 calls after 3 warm-up calls.

Prints a caption and markdown tables (last); ``--json FILE`` writes the numbers too.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MPIRUN = ["mpirun", "--oversubscribe"]


def _env() -> Dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
                OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def worker(args) -> None:
    """One job: build the model, time the steps, rank 0 writes the numbers to args.json."""
    import numpy as np

    from multienc.data import DEMO_MODELS, demo_corpus, packaged_model_folder
    from multienc.models import LanguageModel, MultiEncoder, TextClassifier
    from multienc.parallel import ProcessGroup

    group = ProcessGroup.world() if args.ranks else None
    folders = args.lm or [packaged_model_folder(name) for name in DEMO_MODELS]
    model = TextClassifier(MultiEncoder([LanguageModel(f) for f in folders], combine_method="dme"), 4)
    train = list(demo_corpus().train)
    order = np.random.default_rng(1).permutation(len(train))
    batches = [[train[j] for j in order[i * args.batch:(i + 1) * args.batch]] for i in range(args.steps + 1)]
    rates, decay, trainable = [5e-5, 5e-5, 1e-3, 1e-3], [0.01] * 4, [True, True]
    model.train_step(batches[0], rates, decay, trainable, seed=0, max_grad_norm=5.0, group=group)  # warm-up
    if group:
        group.reduce_seconds = group.reduce_wait_seconds = 0.0
        group.barrier()
    started = time.perf_counter()
    for step, batch in enumerate(batches[1:], start=1):
        model.train_step(batch, rates, decay, trainable, seed=step, max_grad_norm=5.0, group=group)
    seconds = time.perf_counter() - started
    if group is None or group.is_main:
        sizes = [int(view.size) for _, view in model.task_model.buffers("grads")]
        result = {"step_s": seconds / args.steps, "sentences_s": args.steps * args.batch / seconds,
                  "allreduce_s": group.reduce_seconds / args.steps if group else 0.0,
                  "exposed_s": group.reduce_wait_seconds / args.steps if group else 0.0,
                  "gradient_mb": sum(sizes) * 4 / 2 ** 20, "buffer_floats": sizes, "models": [os.path.basename(f) for f in folders]}
        with open(args.json, "w") as f:
            json.dump(result, f)


def mpi4py_allreduce(args) -> None:
    """Time mpi4py's in-place Allreduce on float32 arrays of the given sizes (rank 0 prints JSON)."""
    import numpy as np
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    out = {}
    for n in args.sizes:
        buf = np.ones(n, np.float32)
        times = []
        for i in range(23):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            if i >= 3:
                times.append(time.perf_counter() - t0)
        out[n] = statistics.median(times)
    if comm.Get_rank() == 0:
        print(json.dumps(out))


def _job(n: int, argv: List[str], json_path: str) -> dict:
    cmd = (MPIRUN + ["-n", str(n)] if n else []) + [sys.executable, os.path.abspath(__file__), *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    with open(json_path) as f:
        return json.load(f)


def _c_allreduce(sizes: List[int], tmp: str) -> Dict[int, float]:
    exe = os.path.join(tmp, "allreduce_c")
    subprocess.run(["mpicc", "-O2", "-o", exe, os.path.join(HERE, "allreduce_c.c")], check=True)
    proc = subprocess.run(MPIRUN + ["-n", "2", exe, *map(str, sizes)], capture_output=True, text=True, env=_env(),
                          check=True, timeout=600)
    return {int(k): v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lm", action="append", help="a language model folder (default: the two built-in models)")
    parser.add_argument("--batch", type=int, default=16, help="global batch (sentences per step)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per job")
    parser.add_argument("--repeats", type=int, default=3, help="jobs per configuration (median reported)")
    parser.add_argument("--json", help="also write the numbers here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ranks", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mpi4py", type=int, nargs="+", dest="sizes", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.sizes:
        mpi4py_allreduce(args)
        return
    started = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="bench-dp-")
    try:
        extra = [a for lm in (args.lm or []) for a in ("--lm", lm)]
        common = ["--worker", "--batch", str(args.batch), "--steps", str(args.steps), *extra]
        configs = [("1 process, no MPI (one-call step)", 0, []), ("1 rank (mpirun -n 1, staged step)", 1, ["--ranks"]),
                   ("2 ranks (mpirun -n 2)", 2, ["--ranks"])]
        results = {}
        for name, n, flags in configs:
            runs = []
            for r in range(args.repeats):
                path = os.path.join(tmp, f"{n}-{r}.json")
                runs.append(_job(n, common + flags + ["--json", path], path))
            results[name] = runs
        first = results[configs[0][0]][0]
        sizes = sorted(set(first["buffer_floats"]))
        ours = json.loads(subprocess.run(MPIRUN + ["-n", "2", sys.executable, os.path.abspath(__file__),
                                                   "--mpi4py", *map(str, sizes)], capture_output=True, text=True,
                                         env=_env(), check=True, timeout=600).stdout.strip().splitlines()[-1])
        c = _c_allreduce(sizes, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def med(runs: List[dict], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    print(f"Two-LM DME training ({' + '.join(first['models'])}), global batch {args.batch}, {args.steps} timed steps "
          f"per job after a warm-up step, 1 OpenMP thread per process, Open MPI {_ompi_version()} over shared "
          f"memory; gradients summed per step: {first['gradient_mb']:.1f} MB in 3 buffers; median of "
          f"{args.repeats} jobs (all jobs in brackets); {time.perf_counter() - started:.0f} s in all.")
    print()
    print("| configuration | step s | sentences/s | all-reduce s per step | share of step | not overlapped s |")
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():
        step = med(runs, "step_s")
        allreduce = med(runs, "allreduce_s")
        rates = ", ".join(f"{r['sentences_s']:.1f}" for r in runs)
        reduces = ", ".join(f"{r['allreduce_s']:.4f}" for r in runs)
        print(f"| {name} | {step:.3f} | {med(runs, 'sentences_s'):.1f} ({rates}) | {allreduce:.4f} ({reduces}) | "
              f"{100 * allreduce / step:.1f}% | {med(runs, 'exposed_s'):.4f} |")
    print()
    print("| all-reduce of one buffer, 2 ranks | floats | mpi4py (numpy view) | C MPI_Allreduce | ratio |")
    print("|---|---|---|---|---|")
    for n in sizes:
        print(f"| in place, float32 sum | {n:,} | {1e3 * ours[str(n)]:.2f} ms | {1e3 * c[n]:.2f} ms | "
              f"{ours[str(n)] / c[n]:.2f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "mpi4py": ours, "c": c}, f, indent=1)


def _ompi_version() -> str:
    out = subprocess.run(["mpirun", "--version"], capture_output=True, text=True, env=_env()).stdout
    return out.split("\n")[0].rsplit(" ", 1)[-1] if out else "?"


if __name__ == "__main__":
    main()
