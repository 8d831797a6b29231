"""The training-step ops (pooling, concatenation, mean/DME combination, losses,
norms, AdamW) against float64 numpy references, and AdamW / gradient clipping /
the linear schedule against torch references (tools/make_optimizer_reference.py)."""
import os

import numpy as np
import pytest

from multienc.engine import _C_tests
from multienc.training.optim import linear_schedule_factor

from _numeric import rel

RNG = np.random.default_rng(77)
REF = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "optim", "reference.npz"))


def f32(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize("B,T,K,C", [(1, 1, 1, 1), (3, 7, 1, 5), (4, 11, 6, 17)])
def test_pool_forward_backward(B, T, K, C):
    h, w = f32(B, T, C), f32(B, K, T)
    out = _C_tests.ops_pool_forward(h, w)
    assert rel(out, np.einsum("bkt,btc->bkc", w.astype(np.float64), h.astype(np.float64))) < 1e-6
    g = f32(B, K, C)
    dh = _C_tests.ops_pool_backward(g, w)
    assert rel(dh, np.einsum("bkt,bkc->btc", w.astype(np.float64), g.astype(np.float64))) < 1e-6


def test_concat_forward_backward():
    parts = [f32(5, 3), f32(5, 8), f32(5, 1)]
    out = _C_tests.ops_concat_forward(parts)
    np.testing.assert_array_equal(out, np.concatenate(parts, 1))
    g = f32(5, 12)
    np.testing.assert_array_equal(_C_tests.ops_concat_backward(g, 3, 8), g[:, 3:11])


def combine_ref(x, scores):
    x = x.astype(np.float64)
    n = x.shape[0]
    if scores is None:
        alpha = np.full(x.shape[:2], 1.0 / n)
    else:
        s = scores.astype(np.float64)
        e = np.exp(s - s.max(0))
        alpha = e / e.sum(0)
    return (alpha[..., None] * x).sum(0), alpha


@pytest.mark.parametrize("n,R,C", [(1, 1, 1), (2, 5, 7), (3, 9, 33)])
@pytest.mark.parametrize("dme", [True, False])
def test_combine_forward_backward(n, R, C, dme):
    x = f32(n, R, C)
    scores = f32(n, R, scale=2.0) if dme else None
    out, alpha = _C_tests.ops_combine_forward(x, scores)
    rout, ralpha = combine_ref(x, scores)
    assert rel(out, rout) < 1e-6
    assert rel(alpha, ralpha) < 1e-6
    np.testing.assert_allclose(alpha.sum(0), 1.0, rtol=1e-6)
    g = f32(R, C)
    dx, ds = _C_tests.ops_combine_backward(g, x, alpha, dme)
    g64 = g.astype(np.float64)
    assert rel(dx, ralpha[..., None] * g64[None]) < 1e-6
    if dme:
        dal = (g64[None] * x).sum(-1)
        rds = ralpha * (dal - (ralpha * dal).sum(0))
        assert rel(ds, rds) < 1e-5 or np.abs(ds - rds).max() < 1e-6
        # and the analytic reference against central differences of the float64 forward
        eps = 1e-6
        for (i, r) in [(0, 0), (n - 1, R - 1)]:
            sp, sm = scores.astype(np.float64), scores.astype(np.float64)
            sp = sp.copy(); sp[i, r] += eps
            sm = sm.copy(); sm[i, r] -= eps
            fd = ((combine_ref(x, sp)[0] - combine_ref(x, sm)[0]) * g64).sum() / (2 * eps)
            assert abs(fd - rds[i, r]) < 1e-6 * max(1, abs(fd))
    else:
        assert ds is None


def test_cross_entropy_with_ignored_rows():
    logits = f32(6, 4, scale=3.0)
    targets = np.array([0, 3, -1, 2, 1, -100], np.int32)
    loss, probs, d = _C_tests.ops_cross_entropy(logits, targets)
    l64 = logits.astype(np.float64)
    p = np.exp(l64 - l64.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    keep = targets >= 0
    ref_loss = -np.log(p[keep, targets[keep]]).mean()
    assert abs(loss - ref_loss) < 1e-6 * max(1, ref_loss)
    assert rel(probs, p) < 1e-6
    onehot = np.zeros_like(p)
    onehot[np.where(keep)[0], targets[keep]] = 1
    ref_d = (p - onehot) * keep[:, None] / keep.sum()
    assert rel(d, ref_d) < 1e-6
    assert not d[2].any() and not d[5].any()
    loss0, _, d0 = _C_tests.ops_cross_entropy(logits, np.full(6, -1, np.int32))
    assert loss0 == 0.0 and not d0.any()


def test_mse():
    pred, target = f32(7, 3), f32(7, 3)
    loss, d = _C_tests.ops_mse(pred, target)
    diff = pred.astype(np.float64) - target
    assert abs(loss - (diff ** 2).mean()) < 1e-6
    assert rel(d, 2 * diff / diff.size) < 1e-6


def test_sum_squares_and_scale():
    x = f32(100003)
    assert abs(_C_tests.ops_sum_squares(x) - (x.astype(np.float64) ** 2).sum()) < 1e-9 * (x.astype(np.float64) ** 2).sum()
    np.testing.assert_array_equal(_C_tests.ops_scale(x, 0.25), x * np.float32(0.25))


def test_sum_squares_rows():
    """The norm of a sparse gradient: only the listed rows count."""
    x = f32(50, 13)
    rows = np.array([7, 0, 49, 3], np.int32)
    ref = (x[rows].astype(np.float64) ** 2).sum()
    assert abs(_C_tests.ops_sum_squares_rows(x, rows) - ref) < 1e-12 * ref
    assert _C_tests.ops_sum_squares_rows(x, np.zeros(0, np.int32)) == 0.0


@pytest.mark.parametrize("case", ["default", "finetune", "decoder", "big_wd"])
def test_adamw_matches_torch(case):
    k = f"adamw/{case}/"
    lr, wd, b1, b2, eps = REF[k + "hyper"]
    p = REF[k + "p0"].copy()
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for step, g in enumerate(REF[k + "grads"], start=1):
        p, m, v, g_after = _C_tests.ops_adamw(p, g, m, v, lr, b1, b2, eps, wd, step, 1.0)
        np.testing.assert_allclose(p, REF[k + "params"][step - 1], rtol=0, atol=1e-6)
        np.testing.assert_allclose(m, REF[k + "exp_avg"][step - 1], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(v, REF[k + "exp_avg_sq"][step - 1], rtol=1e-6, atol=1e-12)
        assert not g_after.any()  # the pass leaves the gradient zeroed for the next accumulation


def test_clip_norm_matches_torch():
    """The total norm the training step clips with, and its coefficient (max / (norm + 1e-6), at most 1)
    applied in the AdamW pass: with lr 0 and no decay, m after one step is (1 - beta1) * clipped gradient."""
    g = REF["clip/grads"]
    total = np.sqrt(_C_tests.ops_sum_squares(g))
    assert abs(total - REF["clip/total_norm"]) < 1e-5 * total
    coef = min(1.0, 5.0 / (total + 1e-6))
    z = np.zeros_like(g)
    _, m, _, _ = _C_tests.ops_adamw(z, g, z, z, 0.0, 0.0, 0.999, 1e-8, 0.0, 1, coef)  # beta1 0: m = clipped gradient
    np.testing.assert_allclose(m, REF["clip/clipped"], rtol=1e-6, atol=1e-7)


def test_clip_and_adamw_in_one_pass_match_torch():
    """clip_grad_norm_(5.0) then AdamW.step(), 6 steps, gradient norms above and below 5."""
    lr, wd, b1, b2, eps = REF["clip_adamw/hyper"]
    p = REF["clip_adamw/p0"].copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    for step, g in enumerate(REF["clip_adamw/grads"], start=1):
        coef = min(1.0, 5.0 / (np.sqrt(_C_tests.ops_sum_squares(g)) + 1e-6))
        p, m, v, _ = _C_tests.ops_adamw(p, g, m, v, lr, b1, b2, eps, wd, step, coef)
        np.testing.assert_allclose(p, REF["clip_adamw/params"][step - 1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("total,warmup", [(20, 2), (37, 4), (10, 0), (5, 5)])
def test_linear_schedule_matches_transformers(total, warmup):
    ref = REF[f"schedule/{total}_{warmup}"]
    ours = [linear_schedule_factor(s, total, warmup) for s in range(total)]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-15)
