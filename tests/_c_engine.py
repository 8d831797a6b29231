"""Tiny C engines built straight from the binding's own inputs (the engine config dict, no model
files): encoders with random weights, task models on them and their batches. Used by the binding
tests (tests/test_c_bindings.py) and the thread-safety stress test (tests/test_thread_safety.py),
which also runs :func:`stress` and :func:`opposite_orders` in a subprocess (``python -m _c_engine
...`` with this folder on PYTHONPATH) so that a deadlock becomes a timeout and a sanitizer report
an exit status instead of a hung or aborted test session."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Dict, List, Tuple

import numpy as np

from multienc.engine import _C

HERE = os.path.dirname(os.path.abspath(__file__))
COMBINE = {"none": 0, "concat": 1, "mean": 2, "dme": 3}
CLASSIFY, REGRESS, CRF = 0, 1, 2
VOCAB = 100


def engine_config(hidden: int = 32, layers: int = 2, heads: int = 4) -> Dict[str, float]:
    """A BERT-family engine config (the dict multienc.engine passes to _C.Encoder)."""
    return {"family": 0, "vocab_size": VOCAB, "hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "intermediate_size": 4 * hidden, "max_position_embeddings": 1024,
            "type_vocab_size": 2, "activation": 0, "pad_token_id": 0, "layer_norm_eps": 1e-12,
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}


def encoder(hidden: int = 32, layers: int = 2, seed: int = 0) -> "_C.Encoder":
    """A _C.Encoder with N(0, 0.05) weights (LayerNorm weights 1)."""
    enc = _C.Encoder(engine_config(hidden, layers))
    rng = np.random.default_rng(seed)
    flat = (rng.standard_normal(enc.num_floats) * 0.05).astype(np.float32)
    for name, shape, off in enc.param_info():
        if "LayerNorm.weight" in name:
            flat[off:off + int(np.prod(shape))] = 1.0
    enc.write_params(flat)
    return enc


def model(encoders, combine: str, task: int = CLASSIFY, num_classes: int = 2, seed: int = 0) -> "_C.Model":
    """A _C.Model on `encoders` with N(0, 0.1) head weights."""
    m = _C.Model(list(encoders), {"combine": COMBINE[combine], "task": task, "num_classes": num_classes})
    rng = np.random.default_rng(seed)
    m.write_params((rng.standard_normal(m.num_floats) * 0.1).astype(np.float32))
    return m


def lm_batch(rng, B: int, T: int) -> Tuple[np.ndarray, np.ndarray]:
    """(ids, mask) [B, T]: random ids, random lengths (the first row full), padding id 0."""
    ids = rng.integers(1, VOCAB, (B, T)).astype(np.int32)
    mask = np.ones((B, T), np.int32)
    for b, n in enumerate(rng.integers(1, T + 1, B)):
        if b:
            ids[b, n:] = 0
            mask[b, n:] = 0
    return ids, mask


def model_inputs(rng, n_lms: int, B: int, lengths: List[int]):
    """One (ids, mask, None, mean-pool weights) per LM, each LM its own length, B sentences."""
    out = []
    for i in range(n_lms):
        ids, mask = lm_batch(rng, B, lengths[i])
        pool = (mask / mask.sum(1, keepdims=True)).astype(np.float32)[:, None, :]
        out.append((ids, mask, None, pool))
    return out


def targets(rng, task: int, B: int, num_classes: int):
    if task == REGRESS:
        return rng.standard_normal((B, num_classes)).astype(np.float32)
    return rng.integers(0, num_classes, B).astype(np.int32)


def run_script(func: str, *args, timeout: float) -> subprocess.CompletedProcess:
    """Run ``func(*args)`` of this module in a fresh interpreter (same environment, so the sanitizer
    build and its preloads carry over); its last stdout line is a JSON result."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "_c_engine", func, *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------------------- subprocess workloads

def opposite_orders(iterations: int) -> dict:
    """Two heads on the same two LMs, listed in opposite orders, used from two threads at once (each
    thread alternating prediction and training steps): with the encoders' locks taken in each
    model's own order this deadlocks within a few calls."""
    rng = np.random.default_rng(0)
    a, b = encoder(32, 1, seed=1), encoder(48, 1, seed=2)
    heads = [model([a, b], "concat"), model([b, a], "dme")]
    batches = [model_inputs(rng, 2, 4, [12, 9]), model_inputs(rng, 2, 4, [9, 12])]
    labels = targets(rng, CLASSIFY, 4, 2)
    done = [0, 0]
    errors: List[str] = []

    def work(k):
        try:
            for i in range(iterations):
                if i % 2:
                    heads[k].train_step(batches[k], labels, [1e-5] * 4, [0.0] * 4, [True, True], seed=i)
                else:
                    out, *_ = heads[k].forward(batches[k])
                    assert out.shape == (4, 2) and np.isfinite(out).all()
                done[k] += 1
        except BaseException as e:  # any failure in a thread, reported below
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"done": done, "errors": errors}


def stress(seconds: float) -> dict:
    """4 threads, for `seconds`, on two shared LMs and three heads built on them: encoder forward +
    backward, predictions, head forward + backward and training steps, buffer reads, in random
    order. First a prediction-only phase whose results must equal single-threaded ones bit for bit.

    Allowed errors are the documented outcomes of another thread using the same object in between
    (docs/ARCHITECTURE.md, "Threads"); anything else is reported."""
    rng = np.random.default_rng(0)
    a, b = encoder(32, 2, seed=1), encoder(48, 1, seed=2)
    encs = {"a": a, "b": b}
    heads = {"dme": (model([a, b], "dme", CLASSIFY, 3, seed=3), CLASSIFY, 3, 2),
             "concat": (model([b, a], "concat", REGRESS, 2, seed=4), REGRESS, 2, 2),
             "none": (model([a], "none", CLASSIFY, 2, seed=5), CLASSIFY, 2, 1)}

    # phase 1: eval-mode results computed concurrently equal the single-threaded ones
    fixed = {name: model_inputs(rng, n, 3, [10, 7][:n]) for name, (_, _, _, n) in heads.items()}
    ids, mask = lm_batch(rng, 2, 11)
    reference = {name: heads[name][0].forward(fixed[name]) for name in heads}
    hidden = {k: e.forward(ids, mask) for k, e in encs.items()}
    mismatches: List[str] = []

    def predict_phase(k):
        for i in range(30):
            name = list(heads)[(i + k) % 3]
            out, alpha, _, _ = heads[name][0].forward(fixed[name])
            if not (np.array_equal(out, reference[name][0]) and np.array_equal(alpha, reference[name][1])):
                mismatches.append(f"thread {k}: {name} head predicted differently")
            key = "ab"[(i + k) % 2]
            if not np.array_equal(encs[key].forward(ids, mask), hidden[key]):
                mismatches.append(f"thread {k}: encoder {key} forward differed")

    threads = [threading.Thread(target=predict_phase, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # phase 2: everything at once
    allowed = ("grad must have the last forward's output shape",
               "last forward is not this model's",
               "backward() after an inference forward",
               "backward needs a forward with targets first")
    counts: Dict[str, int] = {}
    documented: Dict[str, int] = {}
    unexpected: List[str] = []
    deadline = time.monotonic() + seconds
    lock = threading.Lock()

    def mixed(k):
        r = np.random.default_rng(100 + k)
        ops = ["encoder", "predict", "head_backward", "train_step", "buffers"]
        while time.monotonic() < deadline:
            op = ops[int(r.integers(len(ops)))]
            try:
                if op == "encoder":
                    e = encs["ab"[int(r.integers(2))]]
                    ids, mask = lm_batch(r, int(r.integers(1, 5)), int(r.integers(2, 20)))
                    out = e.forward(ids, mask, None, bool(r.integers(2)), int(r.integers(1 << 30)))
                    assert np.isfinite(out).all()
                    e.backward(r.standard_normal(out.shape).astype(np.float32))
                else:
                    name = list(heads)[int(r.integers(3))]
                    m, task, C, n = heads[name]
                    B = int(r.integers(1, 5))
                    inputs = model_inputs(r, n, B, [int(x) for x in r.integers(2, 16, n)])
                    if op == "predict":
                        out, alpha, _, _ = m.forward(inputs)
                        assert out.shape == (B, C) and alpha.shape == (n, B) and np.isfinite(out).all()
                    elif op == "head_backward":
                        _, _, loss, _ = m.forward(inputs, targets(r, task, B, C), True, int(r.integers(1 << 30)))
                        assert np.isfinite(loss)
                        m.backward([True] * n)
                    elif op == "train_step":
                        loss, norm = m.train_step(inputs, targets(r, task, B, C), [1e-5] * (n + 2),
                                                  [0.01] * (n + 2), [True] * n, seed=int(r.integers(1 << 30)))
                        assert np.isfinite(loss) and np.isfinite(norm)
                    else:
                        m.read_params(np.empty(m.num_floats, np.float32))
                        e = encs["ab"[int(r.integers(2))]]
                        e.read_grads(np.empty(e.num_floats, np.float32))
            except (ValueError, RuntimeError) as e:
                known = [s for s in allowed if s in str(e)]
                if known:
                    with lock:
                        documented[known[0]] = documented.get(known[0], 0) + 1
                else:
                    unexpected.append(f"{op}: {type(e).__name__}: {e}")
            except BaseException as e:  # any other failure in a thread, reported below
                unexpected.append(f"{op}: {type(e).__name__}: {e}")
            with lock:
                counts[op] = counts.get(op, 0) + 1

    threads = [threading.Thread(target=mixed, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"mismatches": mismatches, "counts": counts, "documented_errors": documented, "unexpected": unexpected[:20]}


if __name__ == "__main__":
    fn = {"stress": lambda s: stress(float(s)), "opposite_orders": lambda n: opposite_orders(int(n))}[sys.argv[1]]
    print(json.dumps(fn(*sys.argv[2:])))
