"""Reference trajectories of torch.optim.AdamW, clip_grad_norm_ and HF's linear
warmup schedule, for tests/test_train_ops.py.

    .venv-ref/bin/python tools/make_optimizer_reference.py

Writes tests/fixtures/optim/reference.npz:
- adamw/<case>/{p0, grads, params, exp_avg, exp_avg_sq, hyper}: a parameter vector after
  each of 6 steps of AdamW (single-tensor CPU path) with the given gradients;
- clip/{grads, clipped, total_norm}: clip_grad_norm_(max_norm=5.0) over three tensors;
- clip_adamw/{p0, grads, params, hyper}: 6 training steps of clip_grad_norm_(max_norm=5.0) then
  AdamW, gradients of norm above and below 5 (what the fused clip + AdamW pass must reproduce);
- schedule/{total, warmup, factors}: get_linear_schedule_with_warmup's multipliers over
  the steps, as LambdaLR applies them (the first optimizer step uses factor 0).
"""
import os

import numpy as np
import torch
import transformers

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "optim")


def adamw_case(rng, n, lr, wd, betas, eps, steps=6):
    p0 = rng.standard_normal(n).astype(np.float32)
    grads = (rng.standard_normal((steps, n)) * rng.choice([1e-3, 1.0, 30.0], size=(steps, 1))).astype(np.float32)
    p = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    opt = torch.optim.AdamW([p], lr=lr, betas=betas, eps=eps, weight_decay=wd, foreach=False)
    params, m, v = [], [], []
    for s in range(steps):
        p.grad = torch.from_numpy(grads[s].copy())
        opt.step()
        st = opt.state[p]
        params.append(p.detach().numpy().copy())
        m.append(st["exp_avg"].numpy().copy())
        v.append(st["exp_avg_sq"].numpy().copy())
    return dict(p0=p0, grads=grads, params=np.stack(params), exp_avg=np.stack(m), exp_avg_sq=np.stack(v),
                hyper=np.array([lr, wd, betas[0], betas[1], eps]))


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(7)
    ref = {}
    cases = {"default": (1e-3, 1e-2, (0.9, 0.999), 1e-8), "finetune": (2e-5, 0.01, (0.9, 0.999), 1e-8),
             "decoder": (1e-3, 0.0, (0.9, 0.98), 1e-6), "big_wd": (5e-2, 0.3, (0.8, 0.99), 1e-8)}
    for name, (lr, wd, betas, eps) in cases.items():
        for k, v in adamw_case(rng, 1037, lr, wd, betas, eps).items():
            ref[f"adamw/{name}/{k}"] = v
    shapes = [(7, 5), (13,), (3, 3, 3)]
    gs = [torch.from_numpy((rng.standard_normal(s) * 3).astype(np.float32)) for s in shapes]
    ps = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
    for p, g in zip(ps, gs):
        p.grad = g.clone()
    total = torch.nn.utils.clip_grad_norm_(ps, 5.0)
    ref["clip/grads"] = np.concatenate([g.numpy().ravel() for g in gs])
    ref["clip/clipped"] = np.concatenate([p.grad.numpy().ravel() for p in ps])
    ref["clip/total_norm"] = np.array(total.item())
    p0 = rng.standard_normal(1037).astype(np.float32)
    grads = (rng.standard_normal((6, 1037)) * np.array([[0.5], [0.01], [0.3], [2.0], [0.05], [1.0]])).astype(np.float32)
    p = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    opt = torch.optim.AdamW([p], lr=1e-3, weight_decay=0.01, foreach=False)
    params = []
    for g in grads:
        p.grad = torch.from_numpy(g.copy())
        torch.nn.utils.clip_grad_norm_([p], 5.0)
        opt.step()
        params.append(p.detach().numpy().copy())
    ref.update({"clip_adamw/p0": p0, "clip_adamw/grads": grads, "clip_adamw/params": np.stack(params),
                "clip_adamw/hyper": np.array([1e-3, 0.01, 0.9, 0.999, 1e-8])})
    for total_steps, warmup in [(20, 2), (37, 4), (10, 0), (5, 5)]:
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.AdamW([p], lr=1.0)
        sched = transformers.get_linear_schedule_with_warmup(opt, warmup, total_steps)
        lrs = []
        for _ in range(total_steps):
            lrs.append(opt.param_groups[0]["lr"])
            p.grad = torch.zeros(1)
            opt.step()
            sched.step()
        ref[f"schedule/{total_steps}_{warmup}"] = np.array(lrs)
    np.savez_compressed(os.path.join(OUT, "reference.npz"), **ref)
    print("wrote", len(ref), "arrays;", "torch", torch.__version__, "transformers", transformers.__version__)


if __name__ == "__main__":
    main()
