"""The bf16 GEMM kernel (csrc/cpu/gemm_bf16.c) against the fp32 product it replaces and PyTorch's bf16.

    python benchmarks/bench_gemm_bf16.py [--tokens 150 512 2048] [--threads 2] [--runs 3] [--seconds 0.3]

The shapes are the linear layers of a BERT-base-size encoder in training on T tokens (hidden 768:
the fused QKV projection 768 -> 2304, the attention output 768 -> 768, the FFN's 768 -> 3072 and
3072 -> 768), each as its three products: forward (out = inp w^T: M = T, N = out features, K = in
features; NT), the input gradient (dinp = dout w: NN) and the weight gradient (dw = dout^T inp:
M = out features, N = in features, K = T; TN). Per shape, GFLOP/s (2 M N K / time) of

- bf16: me_gemm_bf16 (me_cpu_gemm(1, ...)), float32 inputs rounded to bf16 while packed, float32 accumulation;
- sgemm: the fp32 table's product, me_cpu_gemm(0, ...) (OpenBLAS sgemm, single-threaded, on our OpenMP threads);
- torch bf16: torch.matmul on bf16 tensors (oneDNN; inputs already bf16, so no conversion in its
  time) where a PyTorch is found: this interpreter, else $MULTIENC_TORCH_PYTHON, else
  .venv-ref/bin/python; its own process, the same thread count.

Each number is the median of --runs runs (all listed), each run repeating the product for about
--seconds; the engine's two products alternate shape by shape, and engine and PyTorch run by run.
After each engine run the cores' peaks are sampled on the same threads (_C_tests.fma_peak and
bf16_dot_peak: independent chains of vfmadd231ps and of vdpbf16ps), and the last lines put both
products against them: how fast this CPU runs bf16 dot products against fp32 FMAs bounds what the
bf16 kernel can gain over sgemm. Needs the test extension (make build).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench_encoder import torch_python  # noqa: E402
from machine_info import cpu_name  # noqa: E402

LAYERS = (("qkv", 768, 2304), ("attn out", 768, 768), ("ffn up", 768, 3072), ("ffn down", 3072, 768))


def shapes(tokens):
    """(label, ta, tb, M, N, K) of every product."""
    out = []
    for t in tokens:
        for name, cin, cout in LAYERS:
            out.append((f"T={t} {name} fwd", 0, 1, t, cout, cin))
            out.append((f"T={t} {name} dinp", 0, 0, t, cin, cout))
            out.append((f"T={t} {name} dw", 1, 0, cout, cin, t))
    return out


def timed(call, flops, seconds):
    """GFLOP/s of one run; call(repeat) -> seconds for `repeat` products."""
    once = call(1)  # warm-up, and the repeat count
    repeat = max(1, int(seconds / max(once, 1e-6)))
    return flops * repeat / call(repeat) / 1e9


def engine_side(shape_list, threads, seconds):
    """One run of every shape: {"bf16": GFLOP/s, "sgemm": GFLOP/s} each."""
    import numpy as np

    from multienc.engine import _C_tests

    rng = np.random.default_rng(0)
    out = []
    for _, ta, tb, M, N, K in shape_list:
        A = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
        B = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
        C = np.zeros((M, N), np.float32)
        flops = 2.0 * M * N * K
        out.append({key: timed(lambda r: fn(A, B, C, ta, tb, M, N, K, 1.0, 0.0, threads, r)[1], flops, seconds)
                    for key, fn in (("bf16", _C_tests.ops_gemm_bf16), ("sgemm", _C_tests.ops_gemm_fp32))})
    return out


def torch_worker(shape_list, threads, seconds):
    """One run of every shape in PyTorch: GFLOP/s each."""
    import torch

    torch.set_num_threads(threads)
    out = []
    for _, ta, tb, M, N, K in shape_list:
        a = torch.randn((K, M) if ta else (M, K)).bfloat16()
        b = torch.randn((N, K) if tb else (K, N)).bfloat16()
        opa, opb = (a.t() if ta else a), (b.t() if tb else b)

        def call(repeat):
            t0 = time.perf_counter()
            for _ in range(repeat):
                torch.matmul(opa, opb)
            return time.perf_counter() - t0

        out.append(timed(call, 2.0 * M * N * K, seconds))
    return {"runs": out, "version": torch.__version__}


def torch_run(py, args):
    cmd = [py, os.path.abspath(__file__), "--worker", "--threads", str(args.threads), "--seconds", str(args.seconds),
           "--tokens", *map(str, args.tokens)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"the PyTorch worker failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cell(values):
    return f"{statistics.median(values):.1f} ({', '.join(f'{v:.1f}' for v in values)})"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, nargs="+", default=[150, 512, 2048])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=0.3, help="about how long one run repeats a product")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    shape_list = shapes(args.tokens)
    if args.worker:
        print(json.dumps(torch_worker(shape_list, args.threads, args.seconds)))
        return

    from multienc.engine import _C_tests
    if not _C_tests.cpu_has_bf16():
        sys.exit("this CPU has no AVX512-BF16: there is no bf16 GEMM to measure")
    start = time.time()
    py = None if args.no_torch else torch_python()
    # runs alternate between the engine and PyTorch, so that both see the same spells of load
    ours = [[] for _ in shape_list]
    theirs = [[] for _ in shape_list] if py else None
    version = None
    fma_peaks, dot_peaks = [], []
    for _ in range(args.runs):
        for acc, res in zip(ours, engine_side(shape_list, args.threads, args.seconds)):
            acc.append(res)
        fma_peaks.append(_C_tests.fma_peak(args.threads))
        dot_peaks.append(_C_tests.bf16_dot_peak(args.threads))
        if py:
            res = torch_run(py, args)
            version = res["version"]
            for acc, value in zip(theirs, res["runs"]):
                acc.append(value)

    from multienc import build_info
    print(f"{cpu_name()}, {os.cpu_count()} logical cores, {args.threads} threads, OpenBLAS {build_info()['blas_core']} "
          f"kernels for sgemm; "
          f"load average {os.getloadavg()[0]:.1f} at the end; {time.time() - start:.0f} s; "
          f"PyTorch {version or 'not run'}")
    print(f"GFLOP/s, median of {args.runs} runs (each run listed)\n")
    print("| product | M x N x K | bf16 | sgemm | torch bf16 | bf16 / sgemm | bf16 / torch |")
    print("|---|---|---|---|---|---|---|")
    for i, (label, ta, tb, M, N, K) in enumerate(shape_list):
        bf16, sgemm = [r["bf16"] for r in ours[i]], [r["sgemm"] for r in ours[i]]
        t = theirs[i] if theirs else None
        med = statistics.median(bf16)
        ops = f"{'T' if ta else 'N'}{'T' if tb else 'N'}"
        print(f"| {label} ({ops}) | {M} x {N} x {K} | {cell(bf16)} | {cell(sgemm)} | "
              f"{cell(t) if t else '-'} | {med / statistics.median(sgemm):.2f}x | "
              f"{f'{med / statistics.median(t):.2f}x' if t else '-'} |")
    fma, dot = statistics.median(fma_peaks), statistics.median(dot_peaks)
    bf16_share = [statistics.median(r["bf16"] for r in runs) / dot for runs in ours]
    sgemm_share = [statistics.median(r["sgemm"] for r in runs) / fma for runs in ours]
    print(f"\nThe cores' peaks on {args.threads} threads, sampled after each run (GFLOP/s, median (runs)): "
          f"fp32 FMA (fma_peak) {cell(fma_peaks)}, bf16 dot products (bf16_dot_peak, vdpbf16ps) {cell(dot_peaks)}: "
          f"bf16's peak is {dot / fma:.2f}x fp32's on this CPU. Against them, over the shapes: bf16 at "
          f"{min(bf16_share):.0%}-{max(bf16_share):.0%} of the vdpbf16ps peak, sgemm at "
          f"{min(sgemm_share):.0%}-{max(sgemm_share):.0%} of the FMA peak.")


if __name__ == "__main__":
    main()
