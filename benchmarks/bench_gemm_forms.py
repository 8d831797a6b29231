"""The fp32 table's sgemm in each form a training step runs it, against the cores' FMA peak.

    python benchmarks/bench_gemm_forms.py [--shape bert-base] [--batch 16 --seq 128] [--samples 12] [--runs 3]

bench_encoder.py's sgemm ceiling is x w^T alone (beta 0) at a layer's linear shapes, the best of
short samples. A forward+backward runs four forms of each product: x w^T onto the bias (beta 1),
dX = dY w (beta 0; beta 1 where a residual gradient is added), dW += dY^T x (beta 1). Each form is
timed here at every linear shape of the encoder (its rows the batch's tokens), the forms
interleaved sample by sample so that they see the same spells of a shared machine; per form the
rate over all shapes from each shape's best sample (as the ceiling is computed) and from each
shape's median sample, and the cores' float32 multiply-add peak (_C_tests.fma_peak) beside them.
With --runs N everything is measured N times; each cell is the median run with all N listed.
Needs the test extension (`make build`).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_encoder import SHAPES, gemm_shapes, shape_config, spread  # noqa: E402

# (name, ta, tb, beta): row-major C[M, N] = op(A) op(B) + beta C with the arrays of one linear
FORMS = (("x w^T (beta 0): the ceiling's form", False, True, 0.0),
         ("x w^T onto the bias (beta 1): forward", False, True, 1.0),
         ("dY w (beta 0): backward, input gradient", False, False, 0.0),
         ("dY^T x (beta 1): backward, weight gradient", True, False, 1.0))


def measure(shapes: list, samples: int) -> dict:
    """{form: (GFLOP/s from each shape's best sample, GFLOP/s from each shape's median)}, 'peak': FMA peak."""
    from multienc.engine import _C_tests

    rng = np.random.default_rng(0)
    seconds = {name: [[] for _ in shapes] for name, *_ in FORMS}
    arrays = []
    for n, c, oc in shapes:
        x, w, dy = (rng.standard_normal(s).astype(np.float32) for s in ((n, c), (oc, c), (n, oc)))
        arrays.append((x, w, dy, np.ones((n, oc), np.float32), np.ones((n, c), np.float32),
                       np.ones((oc, c), np.float32)))
    peak = 0.0
    for _ in range(samples):
        for k, ((n, c, oc), (x, w, dy, out, dx, dw)) in enumerate(zip(shapes, arrays)):
            for name, ta, tb, beta in FORMS:
                if not ta and tb:  # x w^T -> [n, oc]
                    args = (x, w, out, ta, tb, n, oc, c)
                elif not ta:  # dY w -> [n, c]
                    args = (dy, w, dx, ta, tb, n, c, oc)
                else:  # dY^T x -> [oc, c]
                    args = (dy, x, dw, ta, tb, oc, c, n)
                seconds[name][k].append(_C_tests.ops_gemm_fp32(*args, 1.0, beta, 0, 1)[1])
        peak = max(peak, _C_tests.fma_peak())
    flops = sum(2.0 * n * c * oc for n, c, oc in shapes) / 1e9
    res = {name: (flops / sum(min(t) for t in per_shape), flops / sum(statistics.median(t) for t in per_shape))
           for name, per_shape in seconds.items()}
    res["peak"] = peak
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="bert-base", choices=list(SHAPES))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--samples", type=int, default=12, help="samples of every form and shape per run")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if args.samples < 1 or args.runs < 1:
        ap.error("--samples and --runs must be at least 1")
    shapes = gemm_shapes(shape_config(args.shape, None), args.batch * args.seq)
    side = {"runs": [measure(shapes, args.samples) for _ in range(args.runs)]}
    runs = side["runs"]
    from multienc.engine import _C

    print(f"{args.shape} linears {', '.join(f'{n}x{c}x{oc}' for n, c, oc in shapes)} (rows x in x out), "
          f"{_C.build_info()['openmp_max_threads']} threads, {args.samples} samples per form and shape, "
          f"median of {args.runs} runs (each run listed)")
    print("| form | GFLOP/s, each shape's best sample | % of FMA peak | GFLOP/s, each shape's median sample |")
    print("|---|---|---|---|")
    for name, *_ in FORMS:
        print(f"| {name} | {spread(side, lambda r: r[name][0])} | "
              f"{statistics.median(r[name][0] / r['peak'] for r in runs):.0%} | {spread(side, lambda r: r[name][1])} |")
    print(f"| the cores' fp32 FMA peak (fma_peak) | {spread(side, lambda r: r['peak'])} | 100% | |")


if __name__ == "__main__":
    main()
