"""Encoder throughput: multienc's engine vs HF BertModel in PyTorch, same run, same machine.

    python benchmarks/bench_encoder.py [--batch 16 --seq 128 --layers 12 --iters 3]
    python benchmarks/bench_encoder.py --device cuda [--torch-compile]

BERT-base shape (hidden 768, 12 heads, intermediate 3072) with random weights.
Each side runs in its own subprocess (so peak memory is its own).

CPU (default): the same thread count on both sides; forward tokens/s (eval),
forward+backward tokens/s (train mode, dropout on), peak RSS, and the BLAS
sgemm rate at the layer's GEMM shapes (the ceiling) with the engine's
achieved GFLOP/s. PyTorch runs where importable: this interpreter, else
$MULTIENC_TORCH_PYTHON, else .venv-ref/bin/python.

CUDA (--device cuda, default batch 32): the engine (fp32 for now) against
BertModel with bf16 autocast and SDPA attention (and torch.compile of it with
--torch-compile); training-step tokens/s, forward tokens/s, peak GPU memory
and MFU = (6 x non-embedding parameters x tokens + 12 x layers x batch x seq^2
x hidden) / step time / the card's dense bf16 peak (--peak-tflops, else a
datasheet value by card name).

Prints a markdown table last; ``--json`` writes the numbers too.
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
# Dense bf16 tensor-core peaks from the datasheets (TFLOP/s), matched against the card name.
BF16_PEAK_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0),
                    ("L40S", 362.0), ("A10", 125.0))


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


def non_embedding_params(cfg: dict) -> int:
    H, I, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    per_layer = (3 * H * H + 3 * H) + (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H
    return L * per_layer


def train_flops(cfg: dict, B: int, T: int) -> float:
    """FLOPs of one training step as MFU counts them (the issue's formula)."""
    return (6.0 * non_embedding_params(cfg) * B * T
            + 12.0 * cfg["num_hidden_layers"] * B * T * T * cfg["hidden_size"])


def peak_rss_mib() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def worker_ours(args) -> dict:
    import numpy as np
    from multienc.engine import _C, _C_tests  # the op entry points: built by `make build` (not in wheels)
    from multienc.engine import Encoder
    cfg = bert_config(args.layers)
    cuda = args.device.startswith("cuda")
    if cuda:  # start the backend first so its context and handles are not counted below
        from multienc.engine import _C_cuda
        _C_tests.ops_add_forward(np.ones(1, np.float32), np.ones(1, np.float32), args.device)
        free0, total = _C_cuda.mem_info()
    enc = Encoder.from_config(cfg, seed=0, device=args.device)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, cfg["vocab_size"], (args.batch, args.seq)).astype(np.int32)
    mask = np.ones_like(ids)
    grad = rng.standard_normal((args.batch, args.seq, 768)).astype(np.float32)
    # The training step never converts gradients to numpy, so the timed backward is the
    # engine call itself (Encoder.backward also copies every gradient out into a dict); on
    # the GPU the forward leaves its output on the device (output=False). Each engine call
    # returns after the device finished (status() synchronises), so host clocks are valid.
    enc._c.forward(ids, mask, None, False, 0, False)  # warm-up: sizes the workspace
    enc._c.backward(grad)
    fwd, step = [], []
    for i in range(args.iters):
        fwd.append(_timed(lambda: enc._c.forward(ids, mask, None, False, 0, not cuda)))
    for i in range(args.iters):
        t0 = time.perf_counter()
        enc._c.forward(ids, mask, None, True, i, not cuda)
        enc._c.backward(grad)
        step.append(time.perf_counter() - t0)
    res = dict(fwd_s=min(fwd), step_s=min(step), rss_mib=peak_rss_mib())
    if cuda:
        free1, _ = _C_cuda.mem_info()
        res["gpu_mib"] = (free0 - free1) / 2 ** 20  # nothing is freed between steps: the peak
        return res
    # the ceiling: sgemm at the layer's shapes through the same BLAS call path
    N, H, I = args.batch * args.seq, 768, 3072
    shapes = [(N, H, 3 * H), (N, H, H), (N, H, I), (N, I, H)]
    gemm_flops, gemm_time = 0.0, 0.0
    for (n, c, oc) in shapes:
        x = rng.standard_normal((n, c)).astype(np.float32)
        w = rng.standard_normal((oc, c)).astype(np.float32)
        _C_tests.ops_matmul_forward(x, w, None)
        best = min(_timed(lambda: _C_tests.ops_matmul_forward(x, w, None)) for _ in range(3))
        gemm_flops += 2.0 * n * c * oc
        gemm_time += best
    res.update(sgemm_gflops=gemm_flops / gemm_time / 1e9, threads=_C.build_info()["openmp_max_threads"])
    return res


def worker_torch(args, compiled: bool = False) -> dict:
    import torch
    import transformers
    cuda = args.device.startswith("cuda")
    torch.set_num_threads(args.threads)
    cfg = transformers.BertConfig(**{k: v for k, v in bert_config(args.layers).items() if k != "model_type"})
    cfg._attn_implementation = "sdpa" if cuda else "eager"
    dev = torch.device(args.device)
    model = transformers.BertModel(cfg, add_pooling_layer=False).to(dev)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), generator=g).to(dev)
    mask = torch.ones_like(ids)
    grad = torch.randn(args.batch, args.seq, 768, generator=g).to(dev)
    run = torch.compile(model) if compiled else model

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    def forward():
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=cuda):
            return run(input_ids=ids, attention_mask=mask).last_hidden_state

    def train_step():
        model.zero_grad(set_to_none=False)
        forward().float().backward(grad)

    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    model.eval()
    with torch.no_grad():
        for _ in range(2 if compiled else 1):
            forward()
    model.train()
    for _ in range(2 if compiled else 1):
        train_step()
    sync()
    fwd, step = [], []
    model.eval()
    with torch.no_grad():
        for _ in range(args.iters):
            t0 = time.perf_counter()
            forward()
            sync()
            fwd.append(time.perf_counter() - t0)
    model.train()
    for _ in range(args.iters):
        t0 = time.perf_counter()
        train_step()
        sync()
        step.append(time.perf_counter() - t0)
    res = dict(fwd_s=min(fwd), step_s=min(step), rss_mib=peak_rss_mib(),
               torch=torch.__version__, transformers=transformers.__version__,
               attention=model.config._attn_implementation)
    if cuda:
        res.update(gpu_mib=torch.cuda.max_memory_allocated(dev) / 2 ** 20,
                   card=torch.cuda.get_device_name(dev))
    return res


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
           "--threads", str(args.threads), "--device", args.device]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} worker failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bf16_peak(card: str, override: float | None) -> tuple[float | None, str]:
    if override:
        return override, "--peak-tflops"
    for key, tf in BF16_PEAK_TFLOPS:
        if key in card:
            return tf, f"datasheet, {key}"
    return None, "unknown card"


def report_cpu(args, ours: dict, ref: dict | None) -> None:
    tokens = args.batch * args.seq
    fl = flops(bert_config(args.layers), args.batch, args.seq)
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
        print(f"PyTorch {ref['torch']}, transformers {ref['transformers']}, {ref['attention']} attention")


def report_cuda(args, sides: dict) -> None:
    tokens = args.batch * args.seq
    cfg = bert_config(args.layers)
    card = next((s["card"] for s in sides.values() if s and "card" in s), "unknown card")
    peak, peak_src = bf16_peak(card, args.peak_tflops)
    tf = train_flops(cfg, args.batch, args.seq)
    names = [n for n in sides if sides[n]]
    base = sides.get("torch")
    print(f"BERT-base shape, {args.layers} layers, batch {args.batch} x seq {args.seq}, {card}; "
          f"bf16 peak {peak or '?'} TFLOP/s ({peak_src}); multienc fp32, PyTorch bf16 autocast + SDPA")
    print("| metric | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))

    def row(label, fn, fmt):
        print(f"| {label} | " + " | ".join(fmt.format(fn(sides[n])) for n in names) + " |")

    row("train step tokens/s", lambda s: tokens / s["step_s"], "{:,.0f}")
    row("forward tokens/s (eval)", lambda s: tokens / s["fwd_s"], "{:,.0f}")
    row("peak GPU MiB", lambda s: s["gpu_mib"], "{:,.0f}")
    if peak:
        row("MFU (bf16 peak)", lambda s: tf / s["step_s"] / (peak * 1e12), "{:.1%}")
    if base:
        row("train step vs PyTorch eager", lambda s: base["step_s"] / s["step_s"], "{:.2f}x")
    if base:
        print(f"PyTorch {base['torch']}, transformers {base['transformers']}, {base['attention']} attention")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    ap.add_argument("--batch", type=int, help="default 16 on cpu, 32 on cuda")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--iters", type=int, help="timed repetitions (best taken); default 3 on cpu, 10 on cuda")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--torch-compile", action="store_true", help="cuda: also time torch.compile(BertModel)")
    ap.add_argument("--peak-tflops", type=float, help="cuda: the card's dense bf16 peak for MFU")
    ap.add_argument("--worker", choices=["ours", "torch", "torch_compile"])
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    args.batch = args.batch or (32 if cuda else 16)
    args.iters = args.iters or (10 if cuda else 3)
    if args.worker:
        res = worker_ours(args) if args.worker == "ours" else worker_torch(args, args.worker == "torch_compile")
        print(json.dumps(res))
        return
    sides = {"multienc": run_worker(sys.executable, "ours", args)}
    tp = torch_python()
    kinds = ["torch"] + (["torch_compile"] if cuda and args.torch_compile else [])
    for kind in kinds:
        try:
            sides[kind] = run_worker(tp, kind, args) if tp else None
        except RuntimeError as e:  # report the engine's numbers even when a PyTorch side fails
            print(e, file=sys.stderr)
            sides[kind] = None
    if cuda:
        report_cuda(args, sides)
    else:
        report_cpu(args, sides["multienc"], sides["torch"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(args=vars(args), results=sides,
                           flops_forward=flops(bert_config(args.layers), args.batch, args.seq),
                           flops_train_step=train_flops(bert_config(args.layers), args.batch, args.seq)),
                      f, indent=2)


if __name__ == "__main__":
    main()
