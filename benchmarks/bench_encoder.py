"""Encoder throughput: multienc's C engine vs HF BertModel in PyTorch, same run, same cores.

    python benchmarks/bench_encoder.py [--batch 16 --seq 128 --layers 12 --iters 3]

BERT-base shape (hidden 768, 12 heads, intermediate 3072) with random weights.
Each side runs in its own subprocess (so peak RSS is its own) with the same
thread count: forward tokens/s (eval), forward+backward tokens/s (train mode,
dropout on), peak RSS. PyTorch runs where importable: this interpreter, else
$MULTIENC_TORCH_PYTHON, else .venv-ref/bin/python. Also printed: the BLAS
sgemm rate at the layer's GEMM shapes (the ceiling) and the engine's achieved
GFLOP/s. Prints a markdown table; ``--json`` writes the numbers too.
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


def bert_config(layers: int) -> dict:
    return dict(model_type="bert", vocab_size=30522, hidden_size=768, num_hidden_layers=layers,
                num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512,
                type_vocab_size=2, hidden_act="gelu", layer_norm_eps=1e-12,
                hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def flops(cfg: dict, B: int, T: int) -> float:
    """Forward FLOPs of the encoder layers (2 per multiply-add; embeddings excluded)."""
    H, I, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    N = B * T
    dense = 2 * N * (3 * H * H + H * H + 2 * H * I)
    attention = 2 * 2 * B * T * T * H
    return L * (dense + attention)


def peak_rss_mib() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker_ours(args) -> dict:
    import numpy as np
    from multienc import _C
    from multienc.engine import Encoder
    cfg = bert_config(args.layers)
    enc = Encoder.from_config(cfg, seed=0)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, cfg["vocab_size"], (args.batch, args.seq))
    mask = np.ones_like(ids)
    grad = rng.standard_normal((args.batch, args.seq, 768)).astype(np.float32)
    # The training step never converts gradients to numpy, so the timed backward is the
    # engine call itself (Encoder.backward also copies every gradient out into a dict).
    enc.forward(ids, mask)  # warm-up: sizes the workspace
    enc._c.backward(grad)
    fwd, step = [], []
    for i in range(args.iters):
        t0 = time.perf_counter()
        enc.forward(ids, mask)
        fwd.append(time.perf_counter() - t0)
    for i in range(args.iters):
        t0 = time.perf_counter()
        enc.forward(ids, mask, train=True, seed=i)
        enc._c.backward(grad)
        step.append(time.perf_counter() - t0)
    # the ceiling: sgemm at the layer's shapes through the same BLAS call path
    N, H, I = args.batch * args.seq, 768, 3072
    shapes = [(N, H, 3 * H), (N, H, H), (N, H, I), (N, I, H)]
    gemm_flops, gemm_time = 0.0, 0.0
    for (n, c, oc) in shapes:
        x = rng.standard_normal((n, c)).astype(np.float32)
        w = rng.standard_normal((oc, c)).astype(np.float32)
        _C.ops_matmul_forward(x, w, None)
        best = min(_timed(lambda: _C.ops_matmul_forward(x, w, None)) for _ in range(3))
        gemm_flops += 2.0 * n * c * oc
        gemm_time += best
    return dict(fwd_s=min(fwd), step_s=min(step), rss_mib=peak_rss_mib(),
                sgemm_gflops=gemm_flops / gemm_time / 1e9, threads=_C.build_info()["openmp_max_threads"])


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def worker_torch(args) -> dict:
    import torch
    import transformers
    torch.set_num_threads(args.threads)
    cfg = transformers.BertConfig(**{k: v for k, v in bert_config(args.layers).items() if k != "model_type"})
    cfg._attn_implementation = "eager"
    model = transformers.BertModel(cfg, add_pooling_layer=False)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), generator=g)
    mask = torch.ones_like(ids)
    grad = torch.randn(args.batch, args.seq, 768, generator=g)
    model.eval()
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    model.train()
    model(input_ids=ids, attention_mask=mask).last_hidden_state.backward(grad)
    fwd, step = [], []
    model.eval()
    with torch.no_grad():
        for _ in range(args.iters):
            t0 = time.perf_counter()
            model(input_ids=ids, attention_mask=mask)
            fwd.append(time.perf_counter() - t0)
    model.train()
    for _ in range(args.iters):
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=False)
        model(input_ids=ids, attention_mask=mask).last_hidden_state.backward(grad)
        step.append(time.perf_counter() - t0)
    return dict(fwd_s=min(fwd), step_s=min(step), rss_mib=peak_rss_mib(),
                torch=torch.__version__, transformers=transformers.__version__)


def torch_python() -> str | None:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        return sys.executable
    except ImportError:
        pass
    for cand in (os.environ.get("MULTIENC_TORCH_PYTHON"), os.path.join(ROOT, ".venv-ref", "bin", "python")):
        if cand and os.path.exists(cand):
            return cand
    return None


def run_worker(python: str, kind: str, args) -> dict:
    cmd = [python, os.path.abspath(__file__), "--worker", kind, "--batch", str(args.batch),
           "--seq", str(args.seq), "--layers", str(args.layers), "--iters", str(args.iters),
           "--threads", str(args.threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--worker", choices=["ours", "torch"])
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if args.worker:
        res = worker_ours(args) if args.worker == "ours" else worker_torch(args)
        print(json.dumps(res))
        return
    tokens = args.batch * args.seq
    cfg = bert_config(args.layers)
    fl = flops(cfg, args.batch, args.seq)
    ours = run_worker(sys.executable, "ours", args)
    tp = torch_python()
    ref = run_worker(tp, "torch", args) if tp else None
    rows = [("forward tokens/s (eval)", tokens / ours["fwd_s"], tokens / ref["fwd_s"] if ref else None),
            ("forward+backward tokens/s (train)", tokens / ours["step_s"], tokens / ref["step_s"] if ref else None),
            ("peak RSS MiB", ours["rss_mib"], ref["rss_mib"] if ref else None)]
    print(f"BERT-base shape, {args.layers} layers, batch {args.batch} x seq {args.seq}, "
          f"{args.threads} threads")
    print("| metric | multienc | PyTorch | ratio |\n|---|---|---|---|")
    for name, a, b in rows:
        ratio = f"{a / b:.2f}x" if b else "n/a"
        print(f"| {name} | {a:,.1f} | {b:,.1f} | {ratio} |" if b else f"| {name} | {a:,.1f} | n/a | n/a |")
    fwd_gf = fl / ours["fwd_s"] / 1e9
    step_gf = 3 * fl / ours["step_s"] / 1e9
    print(f"| sgemm ceiling at layer shapes GFLOP/s | {ours['sgemm_gflops']:.1f} | | |")
    print(f"| engine forward GFLOP/s | {fwd_gf:.1f} ({fwd_gf / ours['sgemm_gflops']:.0%} of ceiling) | | |")
    print(f"| engine forward+backward GFLOP/s | {step_gf:.1f} ({step_gf / ours['sgemm_gflops']:.0%} of ceiling) | | |")
    if ref:
        print(f"PyTorch {ref['torch']}, transformers {ref['transformers']}, eager attention")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(args=vars(args), ours=ours, torch=ref, flops_forward=fl), f, indent=2)


if __name__ == "__main__":
    main()
