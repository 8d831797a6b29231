"""Loading one LM's weights: peak memory and seconds, from model.safetensors, pytorch_model.bin, float16 and bfloat16.

    python benchmarks/bench_load_memory.py [--runs 3] [--model FOLDER]

The default model is the random-weight RoBERTa-base folder of ``bench_seed_job.py``. Three twins
are made once next to it by the PyTorch interpreter (this one if it has torch, else
``MULTIENC_TORCH_PYTHON`` or ``.venv-ref``): ``<folder>-bin``, the same tensors written by
``torch.save`` as ``pytorch_model.bin`` (as older hub checkpoints are), and ``<folder>-fp16`` and
``<folder>-bf16``, its floating tensors in float16 or bfloat16 as ``model.safetensors`` (as many
hub checkpoints are). Each run loads each format in a fresh
subprocess (``Encoder(folder)``) and reports the process's resident memory just before loading,
its peak (``ru_maxrss``) and the loading seconds; median of the runs, every run in brackets,
beside the model's float32 bytes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench_encoder import torch_python  # noqa: E402
from bench_seed_job import DEFAULT_MODELS, MODEL_NAMES, ensure_models  # noqa: E402

WORKER = """
import json, resource, sys, time
from multienc.engine import Encoder
with open("/proc/self/status") as f:
    before = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
t0 = time.perf_counter()
enc = Encoder(sys.argv[1])
seconds = time.perf_counter() - t0
print(json.dumps({"before": before, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": seconds, "weights": enc._c.num_floats * 4 / 2 ** 20}))
"""

#: twin suffix -> (its weight file, the code that writes it from model.safetensors)
TWINS = {
    "bin": ("pytorch_model.bin", """
import sys, torch
from safetensors.torch import load_file
torch.save(load_file(sys.argv[1]), sys.argv[2])
"""),
    "fp16": ("model.safetensors", """
import sys
from safetensors.torch import load_file, save_file
save_file({k: v.half() if v.is_floating_point() else v for k, v in load_file(sys.argv[1]).items()}, sys.argv[2])
"""),
    "bf16": ("model.safetensors", """
import sys, torch
from safetensors.torch import load_file, save_file
save_file({k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in load_file(sys.argv[1]).items()},
          sys.argv[2])
"""),
}


def twin_of(folder: str, kind: str) -> str:
    """``<folder>-<kind>``: folder's config and tokenizer files with its weights rewritten as TWINS[kind]."""
    weight_file, code = TWINS[kind]
    twin = folder.rstrip("/") + "-" + kind
    if os.path.isfile(os.path.join(twin, weight_file)):
        return twin
    python = torch_python()
    if not python:
        sys.exit(f"no PyTorch interpreter to write the {kind} twin (set MULTIENC_TORCH_PYTHON)")
    tmp = twin + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for name in os.listdir(folder):
        if name != "model.safetensors":
            shutil.copyfile(os.path.join(folder, name), os.path.join(tmp, name))
    subprocess.run([python, "-c", code, os.path.join(folder, "model.safetensors"), os.path.join(tmp, weight_file)],
                   check=True)
    os.replace(tmp, twin)
    return twin


def load_once(folder: str) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", WORKER, folder], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--model", default=None, help="a folder with model.safetensors (default: the seed job's RoBERTa-base)")
    args = ap.parse_args()
    folder = args.model or ensure_models(DEFAULT_MODELS, list(MODEL_NAMES))[1]
    formats = {"model.safetensors": folder, "pytorch_model.bin": twin_of(folder, "bin"),
               "model.safetensors, float16": twin_of(folder, "fp16"),
               "model.safetensors, bfloat16": twin_of(folder, "bf16")}
    runs = {name: [] for name in formats}
    for _ in range(args.runs):
        for name, path in formats.items():
            runs[name].append(load_once(path))
    weights = runs["model.safetensors"][0]["weights"]
    print(f"{os.path.basename(folder.rstrip('/'))}: {weights:,.0f} MiB of float32 weights; Encoder(folder) in a fresh "
          f"process, median of {args.runs} runs (each run in brackets)\n")
    print("| file | RSS before loading MiB | peak RSS MiB | peak - before MiB | seconds |\n|---|---|---|---|---|")

    def cell(values, fmt):
        return f"{fmt.format(statistics.median(values))} ({', '.join(fmt.format(v) for v in values)})"

    for name, rs in runs.items():
        before, peak = [r["before"] for r in rs], [r["peak"] for r in rs]
        print(f"| {name} | {cell(before, '{:,.0f}')} | {cell(peak, '{:,.0f}')} | "
              f"{cell([p - b for p, b in zip(peak, before)], '{:,.0f}')} | {cell([r['seconds'] for r in rs], '{:.2f}')} |")


if __name__ == "__main__":
    main()
