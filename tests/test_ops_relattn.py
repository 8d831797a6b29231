"""The relative-attention backend ops (attention with an additive score bias, the relative
position bias gathered from a bucket table), forward and backward, against float64 numpy
references; the biased attention's analytic reference is checked by finite differences."""
import math

import numpy as np
import pytest

from multienc.engine import _C_tests

from _numeric import attention_inputs, numeric_grad, query_rows, rel

RNG = np.random.default_rng(4321)


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def split_heads(a, NH):
    B, T, D = a.shape
    return a.reshape(B, T, NH, D // NH).transpose(0, 2, 1, 3)


def merge_heads(a):
    B, NH, T, HS = a.shape
    return a.transpose(0, 2, 1, 3).reshape(B, T, NH * HS)


def keep_scale(B, T, NH, p, seed, site):
    """The dropout factor of every probability: 1/(1-p) where the op's RNG keeps it, else 0."""
    if p == 0:
        return np.ones((B, NH, T, T))
    keep = np.stack([np.stack([_C_tests.ops_rng_uniform(seed, site + b * NH + h, T * T).reshape(T, T) >= p
                               for h in range(NH)]) for b in range(B)])
    return np.where(keep, 1 / (1 - p), 0.0)


def biased_ref(qkv, mask, bias, NH, scale, query_mask, p=0.0, seed=0, site=0):
    """float64, in HF's eager formulation: scores = scale q.k + bias; keys masked additively
    with finfo.min (MPNet) or, query_mask, the scores of a query x key mask filled with
    finfo.min (DeBERTa); softmax; dropout; context. Returns (ctx, P, the dropout factors)."""
    qkv = qkv.astype(np.float64)
    B, T, D3 = qkv.shape
    D = D3 // 3
    q, k, v = (split_heads(qkv[..., i * D:(i + 1) * D], NH) for i in range(3))
    s = scale * (q @ k.transpose(0, 1, 3, 2))
    if bias is not None:
        s = s + bias.astype(np.float64)
    fmin = np.finfo(np.float32).min
    if query_mask:
        m2 = (mask[:, None, :, None] > 0) & (mask[:, None, None, :] > 0)
        s = np.where(m2, s, fmin)
    else:
        s = s + np.where(mask[:, None, None, :] > 0, 0.0, fmin)
    s = s - s.max(-1, keepdims=True)
    P = np.exp(s)
    P /= P.sum(-1, keepdims=True)
    ks = keep_scale(B, T, NH, p, seed, site)
    return merge_heads((P * ks) @ v), P, ks


def biased_grad_ref(dctx, qkv, mask, bias, NH, scale, query_mask, p=0.0, seed=0, site=0):
    """Analytic float64 backward of biased_ref: (dqkv, dscores)."""
    qkv64 = qkv.astype(np.float64)
    D = qkv.shape[2] // 3
    q, k, v = (split_heads(qkv64[..., i * D:(i + 1) * D], NH) for i in range(3))
    _, P, ks = biased_ref(qkv, mask, bias, NH, scale, query_mask, p, seed, site)
    dc = split_heads(dctx.astype(np.float64), NH)
    dv = (P * ks).transpose(0, 1, 3, 2) @ dc
    dP = (dc @ v.transpose(0, 1, 3, 2)) * ks
    dS = P * (dP - (dP * P).sum(-1, keepdims=True))
    if query_mask:  # masked_fill cuts the graph: a filled score has no gradient
        dS = dS * ((mask[:, None, :, None] > 0) & (mask[:, None, None, :] > 0))
    dq = scale * dS @ k
    dk = scale * dS.transpose(0, 1, 3, 2) @ q
    return np.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], -1), dS


def inputs(B, T, NH, HS):
    return attention_inputs(RNG, B, T, NH, HS)


CASES = [(1, 1, 1, 1), (2, 5, 3, 7), (3, 17, 2, 16), (2, 33, 4, 8)]


@pytest.mark.parametrize("B,T,NH,HS", CASES)
@pytest.mark.parametrize("bias_rows", [None, 1, "B"])
@pytest.mark.parametrize("query_mask", [False, True])
@pytest.mark.parametrize("p", [0.0, 0.3])
def test_attention_bias_forward_backward(B, T, NH, HS, bias_rows, query_mask, p):
    qkv, mask = inputs(B, T, NH, HS)
    bias = None if bias_rows is None else f32(B if bias_rows == "B" else 1, NH, T, T)
    scale = 1 / math.sqrt(HS * 3)
    ctx, probs = _C_tests.ops_attention_bias_forward(qkv, mask, bias, NH, scale, query_mask, p, 5, 100)
    rctx, rP, _ = biased_ref(qkv, mask, bias, NH, scale, query_mask, p, 5, 100)
    np.testing.assert_allclose(probs, rP, atol=2e-6)
    np.testing.assert_allclose(ctx, rctx, rtol=1e-4, atol=2e-5)
    dctx = f32(*ctx.shape)
    dqkv, dscores = _C_tests.ops_attention_bias_backward(dctx, qkv, probs, mask, NH, scale, query_mask, p, 5, 100)
    rdqkv, rdS = biased_grad_ref(dctx, qkv, mask, bias, NH, scale, query_mask, p, 5, 100)
    for got, ref in ((dqkv, rdqkv), (dscores, rdS)):
        if np.linalg.norm(ref) > 0:
            assert rel(got, ref) < 1e-4
        else:
            assert np.abs(got).max() < 1e-6


@pytest.mark.parametrize("B,T,NH,HS", CASES)
@pytest.mark.parametrize("p", [0.0, 0.3])
@pytest.mark.parametrize("family", ["mpnet", "deberta"])
def test_attention_rows_with_a_bias(B, T, NH, HS, p, family):
    """A last layer read at a few rows, against the float64 reference's rows: MPNet's (queries
    [M, D], keys and values [B, T, 2D], the shared bias [NH, T, T] read at the rows' positions) and
    DeBERTa's (keys and values in a fused qkv [B, T, 3D], a bias per sentence, the scale
    1/sqrt(3 HS) and the query mask: a padded query row, which the random rows include, is uniform
    over the keys and passes back nothing); the score gradient at the read rows and 0 in every
    other row."""
    qkv, mask = inputs(B, T, NH, HS)
    D = NH * HS
    deberta = family == "deberta"
    bias = f32(B if deberta else 1, NH, T, T)
    scale = 1 / math.sqrt(HS * (3 if deberta else 1))
    qstart, qpos, flat = query_rows(RNG, mask)
    picks = [qpos[qstart[b]:qstart[b + 1]] for b in range(B)]
    q = qkv.reshape(B * T, 3 * D)[flat, :D]
    kv = qkv if deberta else np.ascontiguousarray(qkv[..., D:])
    ctx, probs = _C_tests.ops_attention_rows_forward(q, kv, mask, bias, qstart, qpos, NH, scale, deberta, p, 5, 100)
    rctx, rP, _ = biased_ref(qkv, mask, bias, NH, scale, deberta, p, 5, 100)
    np.testing.assert_allclose(ctx, rctx.reshape(B * T, D)[flat], rtol=1e-4, atol=2e-5)
    for b in range(B):
        m = qstart[b + 1] - qstart[b]
        block = probs[qstart[b] * NH * T:qstart[b + 1] * NH * T].reshape(NH, m, T)
        np.testing.assert_allclose(block, rP[b][:, picks[b]], atol=2e-6)
    dctx = f32(len(flat), D)
    dq, dkv, dscores = _C_tests.ops_attention_rows_backward(dctx, q, kv, probs, mask, qstart, qpos, NH, scale, deberta,
                                                            p, 5, 100)
    full = np.zeros((B * T, D), np.float32)
    full[flat] = dctx  # the rows nobody reads pass back nothing
    rdqkv, rdS = biased_grad_ref(full.reshape(B, T, D), qkv, mask, bias, NH, scale, deberta, p, 5, 100)
    rdqkv = rdqkv.reshape(B * T, 3 * D)
    dkv = dkv.reshape(B * T, -1)
    if deberta:  # a fused qkv: nothing written outside dkv's k and v blocks
        assert not dkv[:, :D].any()
        dkv = dkv[:, D:]
    for got, want in ((dq, rdqkv[flat, :D]), (dkv, rdqkv[:, D:]), (dscores, rdS)):
        if np.linalg.norm(want) > 0:
            assert rel(got, want) < 1e-4
        else:
            assert got.size == 0 or np.abs(got).max() < 1e-6
    unread = np.ones((B, T), bool)
    for b, x in enumerate(picks):
        unread[b, x] = False
    assert not dscores.transpose(0, 2, 1, 3)[unread].any()


def test_attention_bias_without_bias_is_plain_attention():
    qkv, mask = inputs(3, 9, 2, 5)
    plain = _C_tests.ops_attention_forward(qkv, mask, 2, 0.2, 3, 7)
    biased = _C_tests.ops_attention_bias_forward(qkv, mask, None, 2, 1 / math.sqrt(5), False, 0.2, 3, 7)
    for a, b in zip(plain, biased):
        np.testing.assert_array_equal(a, b)


def test_padded_query_rows_are_uniform_with_no_gradient():
    qkv, mask = inputs(2, 6, 2, 4)
    mask[0] = [1, 1, 1, 0, 0, 0]  # three real keys whatever length inputs drew (one key alone has no gradient)
    _, probs = _C_tests.ops_attention_bias_forward(qkv, mask, f32(2, 2, 6, 6), 2, 0.5, True, 0.0, 0, 0)
    np.testing.assert_allclose(probs[0, :, 3:], np.full((2, 3, 6), 1 / 6), rtol=1e-6)
    _, dscores = _C_tests.ops_attention_bias_backward(f32(2, 6, 8), qkv, probs, mask, 2, 0.5, True, 0.0, 0, 0)
    assert not dscores[0, :, 3:].any()
    assert dscores[0, :, :3].any()


def test_biased_reference_matches_finite_differences():
    B, T, NH, HS = 2, 4, 2, 3
    qkv, mask = inputs(B, T, NH, HS)
    mask[0, 2:] = 0
    bias = RNG.standard_normal((B, NH, T, T))
    R = RNG.standard_normal((B, T, NH * HS))
    for query_mask in (False, True):
        rq, rS = biased_grad_ref(R, qkv, mask, bias, NH, 0.4, query_mask)
        eps = 1e-6
        for arr, ref, idxs in ((qkv.astype(np.float64), rq, [(0, 0, 0), (1, 2, 5), (0, 1, 7), (1, 3, 14)]),
                               (bias, rS, [(0, 0, 0, 1), (0, 1, 1, 0), (1, 1, 3, 2), (0, 0, 3, 1)])):
            for idx in idxs:
                a, b = arr.copy(), arr.copy()
                a[idx] += eps
                b[idx] -= eps
                args = ((a, bias), (b, bias)) if arr.ndim == 3 else ((qkv, a), (qkv, b))
                la, lb = ((biased_ref(x, mask, y, NH, 0.4, query_mask)[0] * R).sum() for x, y in args)
                fd = (la - lb) / (2 * eps)
                assert abs(fd - ref[idx]) < 1e-6 * max(1.0, abs(fd))


def relbias_ref(table, buckets, T):
    NH = table.shape[1]
    rel_idx = np.arange(T)[None, :] - np.arange(T)[:, None] + T - 1
    return table[buckets[rel_idx]].transpose(2, 0, 1).reshape(NH, T, T)


@pytest.mark.parametrize("B,T,NH,NB", [(1, 1, 1, 1), (2, 7, 3, 5), (3, 40, 4, 32)])
def test_relbias_forward_backward(B, T, NH, NB):
    table = f32(NB, NH)
    buckets = RNG.integers(0, NB, 2 * T - 1).astype(np.int32)
    bias = _C_tests.ops_relbias_forward(table, buckets)
    np.testing.assert_array_equal(bias, relbias_ref(table, buckets, T))
    dbias = f32(B, NH, T, T)
    ref = np.zeros((NB, NH))
    rel_idx = np.arange(T)[None, :] - np.arange(T)[:, None] + T - 1
    for h in range(NH):
        np.add.at(ref[:, h], buckets[rel_idx].ravel().repeat(1), dbias[:, h].astype(np.float64).sum(0).ravel())
    got = _C_tests.ops_relbias_backward(dbias, buckets, NB)
    assert rel(got, ref) < 1e-6


def test_relbias_rejects_bad_buckets():
    with pytest.raises(ValueError, match="bucket out of range"):
        _C_tests.ops_relbias_forward(f32(4, 2), np.array([0, 4, 1], np.int32))
    with pytest.raises(ValueError, match="odd length"):
        _C_tests.ops_relbias_forward(f32(4, 2), np.array([0, 1], np.int32))


def disentangled_ref(qkv, posk, posq, idx, NH, scale):
    """float64 in transformers' formulation: the products with every relative row (bmm), then
    torch.gather at the row of each (i, j) (c2p at q's row i, p2c at k's row j, transposed)."""
    B, T, D3 = qkv.shape
    D = D3 // 3
    q, k = (split_heads(qkv[..., i * D:(i + 1) * D].astype(np.float64), NH) for i in range(2))
    rows = idx[np.arange(T)[None, :] - np.arange(T)[:, None] + T - 1]  # [i, j]
    out = np.zeros((B, NH, T, T))
    for pos, x, transpose in ((posk, q, False), (posq, k, True)):
        if pos is None:
            continue
        p = pos.astype(np.float64).reshape(-1, NH, D // NH).transpose(1, 0, 2)  # [NH, S2, HS]
        full = x @ p.transpose(0, 2, 1)[None]  # [B, NH, T, S2]
        g = rows.T if transpose else rows  # p2c gathers at [j, i] and is transposed back
        gathered = np.take_along_axis(full, np.broadcast_to(g, (B, NH, T, T)), -1)
        out += (gathered.transpose(0, 1, 3, 2) if transpose else gathered) * scale
    return out


def disentangled_grad_ref(dbias, qkv, posk, posq, idx, NH, scale):
    B, T, D3 = qkv.shape
    D = D3 // 3
    HS = D // NH
    q, k = (split_heads(qkv[..., i * D:(i + 1) * D].astype(np.float64), NH) for i in range(2))
    rows = idx[np.arange(T)[None, :] - np.arange(T)[:, None] + T - 1]
    S2 = (posk if posk is not None else posq).shape[0]
    onehot = np.eye(S2)[rows]  # [i, j, S2]
    g = dbias.astype(np.float64) * scale
    dq = dk = np.zeros_like(q)
    res = []
    for pos, x, sub in ((posk, q, "bhij,ijr->bhir"), (posq, k, "bhij,ijr->bhjr")):
        if pos is None:
            res.append(None)
            continue
        p = pos.astype(np.float64).reshape(S2, NH, HS).transpose(1, 0, 2)
        G = np.einsum(sub, g, onehot)  # [B, NH, T, S2]: gradient of the full products
        dx = G @ p[None]
        if pos is posk:
            dq = dx
        else:
            dk = dx
        res.append(np.einsum("bhtr,bhtd->rhd", G, x).reshape(S2, D))
    dqkv = np.concatenate([merge_heads(dq), merge_heads(dk), np.zeros((B, T, D))], -1)
    return dqkv, res[0], res[1]


@pytest.mark.parametrize("B,T,NH,HS,S2", [(1, 1, 1, 1, 2), (2, 5, 3, 7, 8), (3, 17, 2, 16, 12), (2, 40, 4, 8, 64)])
@pytest.mark.parametrize("terms", ["c2p+p2c", "c2p", "p2c"])
def test_disentangled_forward_backward(B, T, NH, HS, S2, terms):
    qkv = f32(B, T, 3 * NH * HS)
    posk = f32(S2, NH * HS) if "c2p" in terms else None
    posq = f32(S2, NH * HS) if "p2c" in terms else None
    idx = RNG.integers(0, S2, 2 * T - 1).astype(np.int32)
    scale = 1 / math.sqrt(HS * 3)
    bias = _C_tests.ops_disentangled_forward(qkv, posk, posq, idx, NH, scale)
    np.testing.assert_allclose(bias, disentangled_ref(qkv, posk, posq, idx, NH, scale), rtol=1e-5, atol=1e-5)
    dbias = f32(B, NH, T, T)
    got = _C_tests.ops_disentangled_backward(dbias, qkv, posk, posq, idx, NH, scale)
    ref = disentangled_grad_ref(dbias, qkv, posk, posq, idx, NH, scale)
    for g, r in zip(got, ref):
        if r is None:
            assert g is None
        else:
            assert rel(g, r) < 1e-5


@pytest.mark.parametrize("terms", ["c2p+p2c", "c2p", "p2c"])
def test_disentangled_with_monotone_buckets_over_several_row_blocks(terms):
    """idx as DeBERTa builds it (non-increasing in j - i, merged distances, clamped at both ends)
    and T = 70: the op's row blocks each reach a different range of relative rows."""
    B, T, NH, HS, S = 2, 70, 3, 8, 16
    r = np.arange(-(T - 1), T)
    merged = np.sign(r) * np.where(np.abs(r) < 8, np.abs(r), 8 + (np.abs(r) - 8) // 3)
    idx = np.clip(S - merged, 0, 2 * S - 1).astype(np.int32)
    qkv = f32(B, T, 3 * NH * HS)
    posk = f32(2 * S, NH * HS) if "c2p" in terms else None
    posq = f32(2 * S, NH * HS) if "p2c" in terms else None
    scale = 1 / math.sqrt(HS * 3)
    bias = _C_tests.ops_disentangled_forward(qkv, posk, posq, idx, NH, scale)
    np.testing.assert_allclose(bias, disentangled_ref(qkv, posk, posq, idx, NH, scale), rtol=1e-5, atol=1e-5)
    dbias = f32(B, NH, T, T)
    got = _C_tests.ops_disentangled_backward(dbias, qkv, posk, posq, idx, NH, scale)
    again = _C_tests.ops_disentangled_backward(dbias, qkv, posk, posq, idx, NH, scale)
    for g, r_, a in zip(got, disentangled_grad_ref(dbias, qkv, posk, posq, idx, NH, scale), again):
        if r_ is None:
            assert g is None
        else:
            assert rel(g, r_) < 1e-5
            np.testing.assert_array_equal(g, a)  # a fixed summation order: the same bits


def test_disentangled_grad_reference_matches_finite_differences():
    B, T, NH, HS, S2 = 2, 4, 2, 3, 6
    qkv = RNG.standard_normal((B, T, 3 * NH * HS))
    posk, posq = RNG.standard_normal((S2, NH * HS)), RNG.standard_normal((S2, NH * HS))
    idx = np.array([0, 5, 2, 3, 1, 4, 5], np.int32)
    R = RNG.standard_normal((B, NH, T, T))
    ref = disentangled_grad_ref(R, qkv, posk, posq, idx, NH, 0.7)
    args = [qkv, posk, posq]
    for a, idxs in ((0, [(0, 0, 0), (1, 3, 8)]), (1, [(0, 0), (5, 4), (3, 1)]), (2, [(2, 5), (4, 0)])):
        for ix in idxs:
            vals = []
            for sign in (1, -1):
                pert = [x.copy() for x in args]
                pert[a][ix] += sign * 1e-6
                vals.append((disentangled_ref(*pert, idx, NH, 0.7) * R).sum())
            fd = (vals[0] - vals[1]) / 2e-6
            assert abs(fd - ref[a][ix]) < 1e-6 * max(1.0, abs(fd))


@pytest.mark.parametrize("N,C", [(1, 1), (7, 33), (300, 65)])
def test_mask_rows_forward_backward(N, C):
    x = f32(N, C)
    mask = RNG.integers(0, 2, N).astype(np.int32)
    ref = x.astype(np.float64) * mask[:, None]
    np.testing.assert_array_equal(_C_tests.ops_mask_rows_forward(x, mask), ref)
    np.testing.assert_array_equal(_C_tests.ops_mask_rows_backward(x, mask), ref)  # d(x * m)/dx = m
    with pytest.raises(ValueError, match="0 or 1"):
        _C_tests.ops_mask_rows_forward(x, np.full(N, 2, np.int32))


def conv1d_ref(inp, w, bias, G):
    """float64 Conv1d over time (PyTorch's cross-correlation, zero padding (K-1)/2, groups)."""
    B, T, C = inp.shape
    K = w.shape[2]
    pad = (K - 1) // 2
    CG = C // G
    x = np.pad(inp.astype(np.float64), ((0, 0), (pad, pad), (0, 0)))
    out = np.zeros((B, T, C)) + (0 if bias is None else bias.astype(np.float64))
    for oc in range(C):
        g = oc // CG
        for k in range(K):
            out[:, :, oc] += x[:, k:k + T, g * CG:(g + 1) * CG] @ w[oc, :, k].astype(np.float64)
    return out


@pytest.mark.parametrize("B,T,C,K,G", [(1, 1, 1, 1, 1), (2, 5, 6, 3, 1), (3, 9, 8, 5, 2), (2, 17, 12, 3, 4)])
def test_conv1d_forward_backward(B, T, C, K, G):
    inp, w, bias = f32(B, T, C), f32(C, C // G, K), f32(C)
    out = _C_tests.ops_conv1d_forward(inp, w, bias, G)
    assert rel(out, conv1d_ref(inp, w, bias, G)) < 1e-6
    assert rel(_C_tests.ops_conv1d_forward(inp, w, None, G), conv1d_ref(inp, w, None, G)) < 1e-6
    dout = f32(B, T, C)
    dinp, dw, dbias = _C_tests.ops_conv1d_backward(dout, inp, w, G)
    # the map is linear in inp and in (w, bias): its gradients are d<dout, conv(.)> by finite differences,
    # exact up to rounding in float64
    loss = lambda i, ww, bb: (conv1d_ref(i, ww, bb, G) * dout).sum()  # noqa: E731
    inp64, w64, b64 = inp.astype(np.float64), w.astype(np.float64), bias.astype(np.float64)
    assert rel(dinp, numeric_grad(lambda: loss(inp64, w64, b64), inp64)) < 1e-5
    assert rel(dw, numeric_grad(lambda: loss(inp64, w64, b64), w64)) < 1e-5
    assert rel(dbias, dout.astype(np.float64).sum((0, 1))) < 1e-6
