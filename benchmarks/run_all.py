"""Run every benchmark and regenerate benchmarks/RESULTS.md from their outputs.

    python benchmarks/run_all.py            # CPU sections, plus GPU sections when a GPU is usable
    python benchmarks/run_all.py --only train --output /tmp/RESULTS.md
    python benchmarks/run_all.py --only real-cola     # rewrite that section, keep the others

With ``--only`` the chosen sections replace their namesakes in an existing output file and the
other sections stay as they were (each section states its own date and command).

Each benchmark script prints its own markdown (a caption and a table); this script runs them one
after another (they share the machine, so nothing runs in parallel), puts each output in its own
section and writes the file with the machine, the date and the commands. A script missing from
this checkout, or one that fails, gets a section saying so (and the exit status is 1 on failure).
PyTorch comparisons run where bench_encoder.torch_python() finds torch ($MULTIENC_TORCH_PYTHON,
.venv-ref/bin/python).
"""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import time
from typing import List, NamedTuple, Optional, Tuple

from machine_info import cpu_name, proc_field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class Section(NamedTuple):
    key: str
    title: str
    script: str
    args: Tuple[str, ...] = ()
    gpu: bool = False


SECTIONS = (
    Section("encoder", "Encoder: forward and backward, multienc vs PyTorch (CPU)", "bench_encoder.py"),
    Section("encoder-families", "Encoder families: DistilBERT-base and XLM-R-base shapes, multienc vs PyTorch (CPU)",
            "bench_encoder.py", ("--shape", "distilbert-base", "--shape", "xlm-roberta-base", "--runs", "3")),
    Section("encoder-modernbert", "Encoder: ModernBERT-base shape, multienc vs PyTorch eager and sdpa (CPU)",
            "bench_encoder.py", ("--shape", "modernbert-base", "--iters", "2")),
    Section("encoder-modernbert-long", "Encoder: ModernBERT-base shape at 4 x 1024, multienc vs PyTorch sdpa (CPU)",
            "bench_encoder.py", ("--shape", "modernbert-base", "--batch", "4", "--seq", "1024", "--layers", "6",
                                 "--iters", "1", "--runs", "3", "--no-eager")),
    Section("gemm-forms", "The sgemm in each form a training step runs it, against the cores' FMA peak (CPU)",
            "bench_gemm_forms.py"),
    Section("padding", "Padding of prediction's batches by how they are grouped (CoLA and WNUT-17 dev)",
            "padding.py"),
    Section("inference-memory", "An encoder's first forward over 32 x 512 tokens: eval mode vs inference mode (CPU)",
            "bench_inference_memory.py"),
    Section("load-memory", "Loading one LM: peak memory from model.safetensors, pytorch_model.bin, float16 and bfloat16 (CPU)",
            "bench_load_memory.py"),
    Section("tokenizer", "Tokenizers: multienc vs HF tokenizers", "bench_tokenizer.py"),
    Section("train", "End-to-end training: two language models with DME, multienc vs PyTorch (CPU)",
            "bench_train.py"),
    Section("seed-job", "The research project's job: ELECTRA-base + RoBERTa-base with DME on CoLA, multienc vs PyTorch "
            "(CPU)", "bench_seed_job.py"),
    Section("distributed", "Data-parallel training: 1 process vs 2 MPI ranks (CPU)", "bench_distributed.py"),
    Section("encoder-gpu", "Encoder on the GPU: multienc vs PyTorch", "bench_encoder.py", ("--device", "cuda"),
            gpu=True),
    Section("real-cola", "Real data: a pretrained model from PyPI fine-tuned on CoLA, multienc vs HF transformers",
            "real_cola.py", ("--train", "1500", "--epochs", "3", "--lr", "1e-4")),
    Section("real-ner", "Real data: sequence labeling on WNUT-17, multienc vs HF transformers", "real_ner.py"),
    Section("export", "Export: save_pretrained folders loaded by HF transformers", "check_export.py"),
)


def machine() -> str:
    """CPU model, core count, memory, GPU (if any) and how multienc was built."""
    cpu = cpu_name()
    mem = proc_field("/proc/meminfo", "MemTotal")
    mem_gib = f", {int(mem.split()[0]) / 2 ** 20:.0f} GiB RAM" if mem else ""
    gpu = gpu_name()
    sys.path.insert(0, ROOT)
    import multienc
    info = multienc.build_info()
    build = f"BLAS {info.get('blas')} with its {info.get('blas_core')} kernels, OpenMP {info.get('openmp')}, CUDA backend {'yes' if info.get('cuda') else 'no'}"
    load = ", load average %.1f at the start" % os.getloadavg()[0] if hasattr(os, "getloadavg") else ""
    return (f"{cpu}, {os.cpu_count()} logical cores{mem_gib}{load}; GPU: {gpu or 'none'}; "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}; multienc "
            f"{multienc.__version__} ({build})")


def gpu_name() -> Optional[str]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = [n.strip() for n in out.stdout.splitlines() if n.strip()]
    return ", ".join(names) if out.returncode == 0 and names else None


def gpu_usable() -> bool:
    sys.path.insert(0, ROOT)
    from multienc import cuda_available
    return cuda_available()


def run_section(section: Section) -> Tuple[str, bool]:
    """(markdown body, ok) of one section."""
    path = os.path.join(HERE, section.script)
    command = " ".join(["python", f"benchmarks/{section.script}", *map(shlex.quote, section.args)])
    if not os.path.isfile(path):
        return f"Not run: `benchmarks/{section.script}` is not in this checkout.", True
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, path, *section.args], capture_output=True, text=True, cwd=ROOT, env=env)
    seconds = time.perf_counter() - started
    print(f"  {section.key}: {seconds:.0f} s, exit status {proc.returncode}", file=sys.stderr)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no error output)"]
        return f"Command: `{command}`\n\nFailed (exit status {proc.returncode}): `{tail[0]}`", False
    when = time.strftime("%Y-%m-%d %H:%M %Z")
    load = f", load average {os.getloadavg()[0]:.1f} at the end" if hasattr(os, "getloadavg") else ""
    return f"Command: `{command}` ({seconds:.0f} s, {when}{load})\n\n{separate_tables(proc.stdout.strip())}", True


def existing_sections(path: str) -> List[Tuple[str, str]]:
    """(title, body) of each ``## `` section of an existing results file (none if absent)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return []
    out = []
    for chunk in text.split("\n## ")[1:]:
        title, _, body = chunk.partition("\n")
        out.append((title.strip(), body.strip()))
    return out


def separate_tables(text: str) -> str:
    """A blank line before and after each markdown table (scripts print a caption right above)."""
    out: List[str] = []
    for line in text.splitlines():
        table = line.startswith("|")
        if out and out[-1] and out[-1].startswith("|") != table:
            out.append("")
        out.append(line)
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", choices=[s.key for s in SECTIONS], help="run only these sections")
    ap.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"), help="the file to write")
    args = ap.parse_args(argv)
    gpu = gpu_usable()
    chosen = [s for s in SECTIONS if (args.only is None or s.key in args.only) and (gpu or not s.gpu)]
    skipped_gpu = [s for s in SECTIONS if s.gpu and not gpu and (args.only is None or s.key in args.only)]
    command = " ".join(["python benchmarks/run_all.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    parts = ["# Benchmark results", "",
             f"Regenerated by `{command}` on {time.strftime('%Y-%m-%d %H:%M %Z')}.", "", f"Machine: {machine()}.", "",
             "Numbers are from one run on that machine; other processes running at the same time lower them. "
             "Each section gives the command that reproduces it."]
    ok = True
    bodies = dict(existing_sections(args.output))  # sections no script makes (e.g. parity counts) stay
    for section in chosen:
        print(f"running {section.script} {' '.join(section.args)}", file=sys.stderr, flush=True)
        body, good = run_section(section)
        ok &= good
        bodies[section.title] = body
    for section in skipped_gpu:
        bodies[section.title] = "Not run: no usable GPU (multienc.cuda_available() is False)."
    order = [s.title for s in SECTIONS] + [t for t in bodies if t not in {s.title for s in SECTIONS}]
    for title in order:
        if title in bodies:
            parts += ["", f"## {title}", "", bodies[title].strip()]
    with open(args.output, "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
