"""Encoder throughput: multienc's engine vs the same HF model in PyTorch, same run, same machine.

    python benchmarks/bench_encoder.py [--shape bert-base ...] [--runs 3] [--batch 16 --seq 128 --iters 3]
    python benchmarks/bench_encoder.py --shape modernbert-base [--batch 4 --seq 1024 --layers 6] [--no-eager]
    python benchmarks/bench_encoder.py --device cuda [--torch-compile]

Shapes (random weights): bert-base (hidden 768, 12 layers, 12 heads, intermediate 3072, the
default), distilbert-base (6 such layers, DistilBERT's blocks) and xlm-roberta-base (BERT-base
layers under a 250,002-row word table) and modernbert-base (answerdotai/ModernBERT-base's config:
22 layers, intermediate 1152 GeGLU, windows of 128 on two layers of three, dropouts 0 as released;
on the CPU against ModernBertModel with eager and with sdpa attention, --no-eager leaving eager
out: its T x T probabilities per layer need gigabytes at long lengths). --layers overrides the
layer count. deberta-v3-base (microsoft/deberta-v3-base: 12 BERT-base-size layers with disentangled
attention, 256 position buckets, a 128,100-row word table) and mpnet-base
(sentence-transformers/all-mpnet-base-v2: 12 such layers with a 32-bucket relative attention bias).
Each side runs in its own subprocess (so peak memory is its own); with --runs N both sides run N
times, alternating, and the table gives each number as the median of the N runs with all N listed.

CPU (default): the same thread count on both sides; forward tokens/s (eval),
forward+backward tokens/s (train mode, dropout on; the backward from a fixed gradient of the last
hidden state), training-step tokens/s (a 2-class classifier on the first token: forward,
cross-entropy, backward, gradient clipping at 5 and AdamW over every parameter, i.e. the whole
word table too; PyTorch: the model, nn.Linear, clip_grad_norm_, torch.optim.AdamW), peak RSS,
and the BLAS sgemm rate at the layer's GEMM shapes (the ceiling: x w^T alone, the best of each
shape's samples) with the engine's achieved GFLOP/s, and the cores' float32 multiply-add peak
(_C_tests.fma_peak: independent FMA chains on every thread, sampled with the ceiling) with the
ceiling's and the forward+backward's shares of it. Beside these: the products a forward+backward
runs (x w^T, dY w and dY^T x of every layer) timed whole right after each timed forward+backward,
each forward+backward against the products next to it (FLOP rates, so the attention's products
count on the engine's side only), and the engine's own split of its forward+backward (op_profile:
its matrix products' GFLOP/s, the attention's and other element-wise ops' shares). PyTorch runs
where importable: this interpreter, else $MULTIENC_TORCH_PYTHON, else .venv-ref/bin/python.

CUDA (--device cuda, default batch 32): the engine (fp32 for now) against
BertModel with SDPA attention in fp32 (TF32 off: the same math) and with bf16 autocast (and
torch.compile of the latter with --torch-compile); forward+backward ("train step": the encoder's,
from a fixed gradient of the last hidden state) tokens/s, forward tokens/s, peak GPU memory
and MFU = (6 x non-embedding parameters x tokens + 12 x layers x batch x seq^2
x hidden) / step time / the card's dense bf16 peak (--peak-tflops, else a
datasheet value by card name).

Prints a markdown table last; ``--json`` writes the numbers too.
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
# Dense bf16 tensor-core peaks from the datasheets (TFLOP/s), matched against the card name.
BF16_PEAK_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0),
                    ("L40S", 362.0), ("A10", 125.0))


_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
             hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
# HF config.json contents of each shape (DistilBERT under its own key names)
SHAPES = {
    "bert-base": dict(_BASE, model_type="bert", vocab_size=30522, max_position_embeddings=512,
                      type_vocab_size=2, layer_norm_eps=1e-12),
    "distilbert-base": dict(model_type="distilbert", vocab_size=30522, dim=768, n_layers=6, n_heads=12,
                            hidden_dim=3072, max_position_embeddings=512, activation="gelu", dropout=0.1,
                            attention_dropout=0.1, pad_token_id=0),
    "xlm-roberta-base": dict(_BASE, model_type="xlm-roberta", vocab_size=250002, max_position_embeddings=514,
                             type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0,
                             eos_token_id=2),
    "modernbert-base": dict(model_type="modernbert", vocab_size=50368, hidden_size=768, num_hidden_layers=22,
                            num_attention_heads=12, intermediate_size=1152, max_position_embeddings=8192,
                            hidden_activation="gelu", norm_eps=1e-5, norm_bias=False, attention_bias=False,
                            mlp_bias=False, local_attention=128, global_attn_every_n_layers=3,
                            global_rope_theta=160000.0, local_rope_theta=10000.0, pad_token_id=50283,
                            attention_dropout=0.0, embedding_dropout=0.0, mlp_dropout=0.0),
    # microsoft/deberta-v3-base's config.json
    "deberta-v3-base": dict(_BASE, model_type="deberta-v2", vocab_size=128100, max_position_embeddings=512,
                            type_vocab_size=0, layer_norm_eps=1e-7, relative_attention=True,
                            position_buckets=256, norm_rel_ebd="layer_norm", share_att_key=True,
                            pos_att_type=["p2c", "c2p"], max_relative_positions=-1,
                            position_biased_input=False, pad_token_id=0),
    # sentence-transformers/all-mpnet-base-v2's config.json
    "mpnet-base": dict(_BASE, model_type="mpnet", vocab_size=30527, max_position_embeddings=514,
                       relative_attention_num_buckets=32, layer_norm_eps=1e-5, pad_token_id=1,
                       bos_token_id=0, eos_token_id=2),
}
_DISTILBERT_KEYS = {"hidden_size": "dim", "num_hidden_layers": "n_layers", "intermediate_size": "hidden_dim"}


def dim(cfg: dict, key: str) -> int:
    """A size of the shape under BERT's key name (DistilBERT names them differently)."""
    return cfg[_DISTILBERT_KEYS[key]] if cfg["model_type"] == "distilbert" else cfg[key]


def shape_config(name: str, layers: int | None) -> dict:
    cfg = dict(SHAPES[name])
    if layers:
        cfg["n_layers" if cfg["model_type"] == "distilbert" else "num_hidden_layers"] = layers
    return cfg


def gemm_shapes(cfg: dict, N: int) -> list:
    """(rows, in, out) of a layer's linears: QKV, attention output, the feed-forward pair."""
    H, I = dim(cfg, "hidden_size"), dim(cfg, "intermediate_size")
    up = 2 * I if cfg["model_type"] == "modernbert" else I  # GeGLU's Wi: input and gate
    return [(N, H, 3 * H), (N, H, H), (N, H, up), (N, I, H)]


def flops(cfg: dict, B: int, T: int) -> float:
    """Forward FLOPs of the encoder layers (2 per multiply-add; embeddings excluded); a ModernBERT
    local layer's query sees at most local_attention + 1 keys."""
    H, L = dim(cfg, "hidden_size"), dim(cfg, "num_hidden_layers")
    dense = sum(2 * n * c * oc for n, c, oc in gemm_shapes(cfg, B * T))
    total = 0.0
    for layer in range(L):
        keys = T
        if cfg["model_type"] == "modernbert" and layer % cfg["global_attn_every_n_layers"]:
            keys = min(T, cfg["local_attention"] + 1)
        total += dense + 2 * 2 * B * T * keys * H
        if cfg["model_type"] == "deberta-v2":  # c2p and p2c: each query/key row against 2 x span positions
            span = min(T, cfg["position_buckets"]) if cfg["position_buckets"] > 0 else T
            total += 2 * 2 * B * T * (2 * span) * H * len(cfg["pos_att_type"])
    return total


def non_embedding_params(cfg: dict) -> int:
    H, I, L = dim(cfg, "hidden_size"), dim(cfg, "intermediate_size"), dim(cfg, "num_hidden_layers")
    if cfg["model_type"] == "modernbert":  # no biases; two LayerNorm weights per layer
        return L * (3 * H * H + H * H + 2 * H * I + I * H + 2 * H)
    per_layer = (3 * H * H + 3 * H) + (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H
    return L * per_layer


def train_flops(cfg: dict, B: int, T: int) -> float:
    """FLOPs of one training step as MFU counts them (the issue's formula)."""
    return (6.0 * non_embedding_params(cfg) * B * T
            + 12.0 * dim(cfg, "num_hidden_layers") * B * T * T * dim(cfg, "hidden_size"))


def batch_arrays(cfg: dict, B: int, T: int):
    """Token ids (above the special ids, so no pad id) and a fixed output gradient, from seed 0."""
    import numpy as np
    rng = np.random.default_rng(0)
    ids = rng.integers(5, cfg["vocab_size"], (B, T))
    grad = rng.standard_normal((B, T, dim(cfg, "hidden_size"))).astype(np.float32)
    return ids, grad


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
    from multienc.engine import Encoder, op_profile
    cfg = shape_config(args.shape, args.layers)
    cuda = args.device.startswith("cuda")
    if cuda:  # start the backend first so its context and handles are not counted below
        from multienc.engine import _C_cuda
        _C_tests.ops_add_forward(np.ones(1, np.float32), np.ones(1, np.float32), args.device)
        free0, total = _C_cuda.mem_info()
    enc = Encoder.from_config(cfg, seed=0, device=args.device)
    ids, grad = batch_arrays(cfg, args.batch, args.seq)
    ids = ids.astype(np.int32)
    mask = np.ones_like(ids)
    # The training step never converts gradients to numpy, so the timed backward is the
    # engine call itself (Encoder.backward also copies every gradient out into a dict); on
    # the GPU the forward leaves its output on the device (output=False). Each engine call
    # returns after the device finished (status() synchronises), so host clocks are valid.
    # The ceiling: the sgemm of each linear's shape as matmul_forward calls it (x w^T, no bias), timed
    # inside C with the output allocated beforehand (a timed Python call of ops_matmul_forward also
    # allocated and zero-filled its 25 MB result: a ceiling about 3% low until 2026-12-02). Sampled
    # after every timed engine call and the best kept, so that it sees the same spells of a shared
    # machine as the engine's best time does.
    # A second reference beside it, timed like the engine: every product of the forward+backward's
    # layers as the step runs them (per layer shape x w^T onto the bias (beta 1), dX = dY w,
    # dW += dY^T x), all layers timed whole right after each timed forward+backward. A shared
    # machine's quiet spells favour the short samples of the ceiling above over a call of seconds;
    # a pass as long as the step, next to it, sees the same spell.
    rng = np.random.default_rng(0)
    gemms = [] if cuda else [(2.0 * n * c * oc, rng.standard_normal((n, c)).astype(np.float32),
                              rng.standard_normal((oc, c)).astype(np.float32), np.ones((n, oc), np.float32), n, c, oc,
                              rng.standard_normal((n, oc)).astype(np.float32), np.ones((n, c), np.float32),
                              np.ones((oc, c), np.float32))
                             for (n, c, oc) in gemm_shapes(cfg, args.batch * args.seq)]
    best_gemm = [float("inf")] * len(gemms)
    ceiling_mib = sum(a.nbytes for g in gemms for a in g[1:4] + g[7:]) / 2 ** 20  # every page written already

    def engine_rss_mib() -> float:  # the process's peak less the ceiling's arrays, resident throughout
        return peak_rss_mib() - ceiling_mib

    peak = [0.0]  # the cores' FMA peak beside the ceiling: what share of the hardware the ceiling is

    def sample_ceiling():
        for k, (_, x, w, out, n, c, oc, *_) in enumerate(gemms):
            best_gemm[k] = min(best_gemm[k], _C_tests.ops_gemm_fp32(x, w, out, False, True, n, oc, c, 1.0, 0.0, 0, 1)[1])
        if not cuda:
            peak[0] = max(peak[0], _C_tests.fma_peak())

    def timed(fn) -> float:
        t = _timed(fn)
        sample_ceiling()
        return t

    def step_products() -> float:
        seconds = 0.0
        for _ in range(dim(cfg, "num_hidden_layers")):
            for _, x, w, out, n, c, oc, dy, dx, dw in gemms:
                seconds += (_C_tests.ops_gemm_fp32(x, w, out, False, True, n, oc, c, 1.0, 1.0, 0, 1)[1]
                            + _C_tests.ops_gemm_fp32(dy, w, dx, False, False, n, c, oc, 1.0, 0.0, 0, 1)[1]
                            + _C_tests.ops_gemm_fp32(dy, x, dw, True, False, oc, c, n, 1.0, 1.0, 0, 1)[1])
        return seconds

    enc._c.forward(ids, mask, None, True, 0, False)  # warm-up: sizes the workspace (a training forward keeps most)
    enc._c.backward(grad)
    fwd, step = [], []
    for i in range(args.iters):
        fwd.append(timed(lambda: enc._c.forward(ids, mask, None, False, 0, not cuda)))
    phases, products = [], []  # of each forward+backward: its op_profile; the step's products beside it
    for i in range(args.iters):
        with op_profile() as prof:
            step.append(timed(lambda: (enc._c.forward(ids, mask, None, True, i, not cuda), enc._c.backward(grad))))
        phases.append(prof.seconds)
        if not cuda:
            products.append(step_products())
    res = dict(fwd_s=min(fwd), step_s=min(step), rss_mib=engine_rss_mib(), step_phases=phases[step.index(min(step))],
               step_pairs=list(zip(step, products)))
    if cuda:
        free1, _ = _C_cuda.mem_info()
        res["gpu_mib"] = (free0 - free1) / 2 ** 20  # nothing is freed between steps: the peak
        return res
    # the training step as the trainer runs it: one C call (forward, head, loss, backward, clipping,
    # AdamW over every parameter of the encoder and the head)
    from multienc.engine import TaskModel
    decoder = np.random.default_rng(1).normal(0.0, 0.02, (2, dim(cfg, "hidden_size"))).astype(np.float32)
    model = TaskModel([enc], "none", task=0, num_classes=2, state={"decoder.weight": decoder})
    pool = np.zeros((args.batch, 1, args.seq), np.float32)
    pool[:, 0, 0] = 1.0
    inputs = [(ids, mask, None, pool)]
    targets = (np.arange(args.batch) % 2).astype(np.int32)

    def train_step(seed):
        model.train_step(inputs, targets, learning_rates=[2e-5] * 3, weight_decay=[0.01] * 3, trainable=[True],
                         seed=seed, max_grad_norm=5.0)

    train_step(0)  # warm-up: allocates the optimizer state
    res["train_s"] = min(timed(lambda: train_step(i + 1)) for i in range(args.iters))
    res["rss_mib"] = engine_rss_mib()
    res.update(sgemm_gflops=sum(g[0] for g in gemms) / sum(best_gemm) / 1e9, fma_peak_gflops=peak[0],
               threads=_C.build_info()["openmp_max_threads"])
    return res


def worker_torch(args, compiled: bool = False, attention: str | None = None, bf16: bool = True) -> dict:
    """PyTorch's side; on a GPU with bf16 autocast (bf16) or in plain fp32 with TF32 off."""
    import torch
    import transformers
    cuda = args.device.startswith("cuda")
    autocast = cuda and bf16
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(args.threads)
    shape = shape_config(args.shape, args.layers)
    cfg = transformers.AutoConfig.for_model(**shape)
    cfg._attn_implementation = attention or ("sdpa" if cuda else "eager")
    dev = torch.device(args.device)
    pooler = {"add_pooling_layer": False} if shape["model_type"] in ("bert", "xlm-roberta", "mpnet") else {}
    model = transformers.AutoModel.from_config(cfg, **pooler).to(dev)
    ids_np, grad_np = batch_arrays(shape, args.batch, args.seq)
    ids = torch.from_numpy(ids_np).to(dev)
    mask = torch.ones_like(ids)
    grad = torch.from_numpy(grad_np).to(dev)
    run = torch.compile(model) if compiled else model

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    def forward():
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=autocast):
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
    if not cuda:  # the training step: classifier on the first token, clipping, AdamW over everything
        head = torch.nn.Linear(dim(shape, "hidden_size"), 2)
        params = list(model.parameters()) + list(head.parameters())
        opt = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.01)
        targets = torch.arange(args.batch) % 2

        def full_step():
            logits = head(run(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0])
            torch.nn.functional.cross_entropy(logits, targets).backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            opt.zero_grad()

        full_step()  # warm-up: allocates the optimizer state
        res["train_s"] = min(_timed(full_step) for _ in range(args.iters))
        res["rss_mib"] = peak_rss_mib()
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


def run_worker(python: str, kind: str, args, shape: str) -> dict:
    cmd = [python, os.path.abspath(__file__), "--worker", kind, "--shape", shape, "--batch", str(args.batch),
           "--seq", str(args.seq), "--iters", str(args.iters), "--threads", str(args.threads),
           "--device", args.device] + (["--layers", str(args.layers)] if args.layers else [])
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} worker failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarize(runs: list) -> dict | None:
    """One side's runs: each number the median over the runs; ``runs`` keeps them all."""
    runs = [r for r in runs if r]
    if not runs:
        return None
    out = dict(runs[0], runs=runs)
    for key, value in runs[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = statistics.median(r[key] for r in runs)
    return out


def spread(side: dict, fn) -> str:
    """fn of the median run, with fn of every run in brackets when there are several."""
    values = [fn(r) for r in side["runs"]]
    text = f"{statistics.median(values):,.1f}"
    return text + (" (" + ", ".join(f"{v:,.1f}" for v in values) + ")" if len(values) > 1 else "")


def bf16_peak(card: str, override: float | None) -> tuple[float | None, str]:
    if override:
        return override, "--peak-tflops"
    for key, tf in BF16_PEAK_TFLOPS:
        if key in card:
            return tf, f"datasheet, {key}"
    return None, "unknown card"


def report_cpu(args, shape: str, ours: dict, refs: dict) -> None:
    """The engine against each PyTorch side (refs: column title -> its summary, or None)."""
    tokens = args.batch * args.seq
    cfg = shape_config(shape, args.layers)
    fl = flops(cfg, args.batch, args.seq)
    rows = [("forward tokens/s (eval)", lambda r: tokens / r["fwd_s"]),
            ("forward+backward tokens/s (train)", lambda r: tokens / r["step_s"]),
            ("training step tokens/s (+ head, clipping, AdamW)", lambda r: tokens / r["train_s"]),
            ("peak RSS MiB", lambda r: r["rss_mib"])]
    runs = f", median of {len(ours['runs'])} runs (each run listed)" if len(ours["runs"]) > 1 else ""
    print(f"{shape} shape ({dim(cfg, 'num_hidden_layers')} layers, vocabulary {cfg['vocab_size']:,}), "
          f"batch {args.batch} x seq {args.seq}, {args.threads} threads{runs}")
    print("| metric | multienc | " + " | ".join(f"{t} | ratio" for t in refs) + " |\n|---|---|"
          + "---|---|" * len(refs))
    for name, fn in rows:
        cells = [f"{spread(r, fn)} | {statistics.median(map(fn, ours['runs'])) / statistics.median(map(fn, r['runs'])):.2f}x"
                 if r else "n/a | n/a" for r in refs.values()]
        print(f"| {name} | {spread(ours, fn)} | " + " | ".join(cells) + " |")
    fwd_gf = fl / ours["fwd_s"] / 1e9
    step_gf = 3 * fl / ours["step_s"] / 1e9
    print(f"| sgemm ceiling at layer shapes GFLOP/s | {spread(ours, lambda r: r['sgemm_gflops'])} | | |")
    print(f"| the cores' fp32 FMA peak GFLOP/s (fma_peak); the ceiling, the forward+backward as % of it | "
          f"{spread(ours, lambda r: r['fma_peak_gflops'])}; "
          + ", ".join(f"{r['sgemm_gflops'] / r['fma_peak_gflops']:.0%}" for r in ours["runs"]) + "; "
          + ", ".join(f"{3 * fl / r['step_s'] / 1e9 / r['fma_peak_gflops']:.0%}" for r in ours["runs"]) + " | | |")
    for name, gf, key, flops_per_step in (("forward", fwd_gf, "fwd_s", fl), ("forward+backward", step_gf, "step_s", 3 * fl)):
        # each run against the ceiling it measured minutes apart, too: the ceiling moves from run to run
        each = (" (runs: " + ", ".join(f"{flops_per_step / r[key] / 1e9 / r['sgemm_gflops']:.0%}" for r in ours["runs"])
                + ")") if len(ours["runs"]) > 1 else ""
        print(f"| engine {name} GFLOP/s | {gf:.1f} ({gf / ours['sgemm_gflops']:.0%} of ceiling{each}) | | |")
    # the same forward+backward against its own products timed next to it, and where its time goes
    runs = ours["runs"]
    dense = 3 * dim(cfg, "num_hidden_layers") * sum(2.0 * n * c * oc for n, c, oc in gemm_shapes(cfg, tokens))
    pairs = [pair for r in runs for pair in r["step_pairs"]]
    print(f"| the step's products timed whole beside each forward+backward: GFLOP/s (best, median) | "
          f"{dense / min(p for _, p in pairs) / 1e9:.1f}, {dense / statistics.median(p for _, p in pairs) / 1e9:.1f} | | |")
    print("| engine forward+backward, % of the products beside it (median of pairs; each pair) | "
          f"{statistics.median(3 * fl / dense * p / t for t, p in pairs):.0%} ("
          + ", ".join(f"{3 * fl / dense * p / t:.0%}" for t, p in pairs) + ") | | |")
    print("| engine forward+backward: its matrix products GFLOP/s; attention, other element-wise % of it | "
          + "; ".join(f"{dense / p['matrix products'] / 1e9:.1f}; {p['attention'] / sum(p.values()):.1%}, "
                      f"{p['other element-wise'] / sum(p.values()):.1%}" for p in (r["step_phases"] for r in runs))
          + " | | |")
    done = [r for r in refs.values() if r]
    if done:
        print(f"PyTorch {done[0]['torch']}, transformers {done[0]['transformers']}, "
              f"{' and '.join(r['attention'] for r in done)} attention")


def report_cuda(args, shape: str, sides: dict) -> None:
    """Each side's median over the runs with every run in brackets, and the engine against PyTorch
    in fp32 (the same math) and with bf16 autocast."""
    tokens = args.batch * args.seq
    cfg = shape_config(shape, args.layers)
    card = next((s["card"] for s in sides.values() if s and "card" in s), "unknown card")
    peak, peak_src = bf16_peak(card, args.peak_tflops)
    tf = train_flops(cfg, args.batch, args.seq)
    titles = {"multienc": "multienc fp32", "torch": "PyTorch bf16 autocast", "torch_fp32": "PyTorch fp32",
              "torch_compile": "torch.compile bf16"}
    names = [n for n in sides if sides[n]]
    runs = f", median of {args.runs} runs (each run listed)" if args.runs > 1 else ""
    print(f"{shape} shape, {dim(cfg, 'num_hidden_layers')} layers, batch {args.batch} x seq {args.seq}, {card}; "
          f"bf16 peak {peak or '?'} TFLOP/s ({peak_src}); SDPA attention on PyTorch's side{runs}")
    print("| metric | " + " | ".join(titles[n] for n in names) + " |\n|---|" + "---|" * len(names))

    def row(label, fn):
        print(f"| {label} | " + " | ".join(spread(sides[n], fn) for n in names) + " |")

    row("forward+backward tokens/s (train mode)", lambda s: tokens / s["step_s"])
    row("forward tokens/s (eval)", lambda s: tokens / s["fwd_s"])
    row("peak GPU MiB", lambda s: s["gpu_mib"])
    if peak:
        row("MFU (% of the bf16 peak)", lambda s: 100 * tf / s["step_s"] / (peak * 1e12))
    ours = sides.get("multienc")
    for key in ("torch_fp32", "torch"):
        base = sides.get(key)
        if ours and base:
            for what, field in (("forward+backward", "step_s"), ("forward", "fwd_s")):
                print(f"| multienc {what} vs {titles[key]} | {base[field] / ours[field]:.2f}x (medians) |"
                      + " |" * (len(names) - 1))
    base = next((sides[k] for k in ("torch_fp32", "torch") if sides.get(k)), None)
    if base:
        print(f"PyTorch {base['torch']}, transformers {base['transformers']}, {base['attention']} attention")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    ap.add_argument("--shape", action="append", choices=list(SHAPES),
                    help="model shape; repeat for several (default bert-base)")
    ap.add_argument("--runs", type=int, default=1, help="runs of both sides per shape (median reported)")
    ap.add_argument("--batch", type=int, help="default 16 on cpu, 32 on cuda")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--layers", type=int, help="override the shape's layer count")
    ap.add_argument("--no-eager", action="store_true",
                    help="cpu: leave PyTorch eager attention out (modernbert-base: sdpa only)")
    ap.add_argument("--iters", type=int, help="timed repetitions (best taken); default 3 on cpu, 10 on cuda")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--torch-compile", action="store_true", help="cuda: also time torch.compile(BertModel)")
    ap.add_argument("--peak-tflops", type=float, help="cuda: the card's dense bf16 peak for MFU")
    ap.add_argument("--worker", choices=["ours", "torch", "torch_fp32", "torch_sdpa", "torch_compile"])
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    args.batch = args.batch or (32 if cuda else 16)
    args.iters = args.iters or (10 if cuda else 3)
    shapes = args.shape or ["bert-base"]
    if cuda and "modernbert-base" in shapes:
        ap.error("the engine runs ModernBERT on the CPU only (no CUDA rotary, GeGLU and windowed attention yet)")
    if args.worker:
        args.shape = shapes[0]
        res = worker_ours(args) if args.worker == "ours" else \
            worker_torch(args, args.worker == "torch_compile", "sdpa" if args.worker == "torch_sdpa" else None,
                         bf16=args.worker != "torch_fp32")
        print(json.dumps(res))
        return
    tp = torch_python()
    results = {}
    for shape in shapes:
        sdpa = not cuda and SHAPES[shape]["model_type"] == "modernbert"  # eager and sdpa side by side
        kinds = ["multienc"] + ([] if args.no_eager else ["torch"]) + (["torch_fp32"] if cuda else []) + \
            (["torch_compile"] if cuda and args.torch_compile else []) + (["torch_sdpa"] if sdpa else [])
        runs = {kind: [] for kind in kinds}
        for _ in range(args.runs):  # the sides alternate, so slow spells of a shared machine hit both
            for kind in kinds:
                if kind == "multienc":
                    runs[kind].append(run_worker(sys.executable, "ours", args, shape))
                    continue
                try:
                    runs[kind].append(run_worker(tp, kind, args, shape) if tp else None)
                except RuntimeError as e:  # report the engine's numbers even when a PyTorch side fails
                    print(e, file=sys.stderr)
                    runs[kind].append(None)
        sides = {kind: summarize(r) for kind, r in runs.items()}
        if cuda:
            report_cuda(args, shape, sides)
        else:
            titles = {"torch": "PyTorch eager" if sdpa else "PyTorch", "torch_sdpa": "PyTorch sdpa"}
            report_cpu(args, shape, sides["multienc"], {titles[k]: sides[k] for k in kinds[1:]})
        cfg = shape_config(shape, args.layers)
        results[shape] = dict(results=sides, flops_forward=flops(cfg, args.batch, args.seq),
                              flops_train_step=train_flops(cfg, args.batch, args.seq))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(args=vars(args), shapes=results), f, indent=2)


if __name__ == "__main__":
    main()
