"""Every CPU backend op, forward and backward, against a float64 numpy reference
on odd shapes. Backward references are the analytic gradients written out in
float64; the attention reference is additionally checked by finite differences."""
import math
import os

import numpy as np
import pytest

from multienc.engine import _C_tests

import _numeric
from _numeric import me_uniform, rel

RNG = np.random.default_rng(1234)
SHAPES = [(1, 1), (3, 5), (7, 33), (129, 77)]


def f32(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


# ---------------------------------------------------------------- embedding
@pytest.mark.parametrize("N,C,V", [(1, 1, 1), (9, 7, 5), (300, 65, 17)])
def test_embedding_forward_backward(N, C, V):
    table = f32(V, C)
    ids = RNG.integers(0, V, N).astype(np.int32)
    out = _C_tests.ops_embedding_forward(ids, table)
    np.testing.assert_array_equal(out, table[ids])
    dout = f32(N, C)
    for pad in (-1, 0):
        ref = np.zeros((V, C))
        for n in range(N):
            if ids[n] != pad:
                ref[ids[n]] += dout[n].astype(np.float64)
        got = _C_tests.ops_embedding_backward(dout, ids, V, pad)
        assert rel(got, ref) < 1e-6 or np.abs(got - ref).max() < 1e-6
        if pad == 0:
            assert not got[0].any(), "the padding row gets no gradient"


# ---------------------------------------------------------------- layernorm
def ln_ref(x, w, b, eps):
    x = x.astype(np.float64)
    m = x.mean(1, keepdims=True)
    v = ((x - m) ** 2).mean(1, keepdims=True)
    r = 1.0 / np.sqrt(v + eps)
    return (x - m) * r * w + b, m[:, 0], r[:, 0]


def ln_grad_ref(dout, x, w, eps):
    x = x.astype(np.float64)
    dout = dout.astype(np.float64)
    m = x.mean(1, keepdims=True)
    r = 1.0 / np.sqrt(((x - m) ** 2).mean(1, keepdims=True) + eps)
    xh = (x - m) * r
    dn = dout * w
    dx = r * (dn - dn.mean(1, keepdims=True) - xh * (dn * xh).mean(1, keepdims=True))
    return dx, (dout * xh).sum(0), dout.sum(0)


@pytest.mark.parametrize("N,C", SHAPES)
def test_layernorm_forward_backward(N, C):
    x = f32(N, C, scale=3.0) + 1.5
    w, b = f32(C) + 1.0, f32(C)
    eps = 1e-5
    out, mean, rstd = _C_tests.ops_layernorm_forward(x, w, b, eps)
    ref, m, r = ln_ref(x, w, b, eps)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mean, m, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rstd, r, rtol=1e-5)
    dout = f32(N, C)
    dx, dw, db = _C_tests.ops_layernorm_backward(dout, x, mean, rstd, w)
    rdx, rdw, rdb = ln_grad_ref(dout, x, w, eps)
    if C > 1:  # with C == 1 the input gradient is exactly zero
        assert rel(dx, rdx) < 1e-5
    else:
        assert np.abs(dx).max() < 1e-6
    assert rel(dw, rdw) < 1e-5
    assert rel(db, rdb) < 1e-5


# ------------------------------------------------------------------- matmul
@pytest.mark.parametrize("N,C,OC", [(1, 1, 1), (5, 3, 7), (67, 45, 129), (130, 257, 31)])
@pytest.mark.parametrize("bias", [True, False])
def test_matmul_forward_backward(N, C, OC, bias):
    x, w = f32(N, C), f32(OC, C)
    b = f32(OC) if bias else None
    out = _C_tests.ops_matmul_forward(x, w, b)
    ref = x.astype(np.float64) @ w.astype(np.float64).T + (b if bias else 0)
    assert rel(out, ref) < 1e-5
    dout = f32(N, OC)
    dx, dw, db = _C_tests.ops_matmul_backward(dout, x, w)
    d64 = dout.astype(np.float64)
    assert rel(dx, d64 @ w) < 1e-5
    assert rel(dw, d64.T @ x) < 1e-5
    assert rel(db, d64.sum(0)) < 1e-5


# --------------------------------------------------------------------- gelu
def gelu_ref(x, act):
    x = x.astype(np.float64)
    if act == 0:
        erf = np.vectorize(math.erf)
        y = 0.5 * x * (1 + erf(x / math.sqrt(2)))
        dy = 0.5 * (1 + erf(x / math.sqrt(2))) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    else:
        k = math.sqrt(2 / math.pi)
        t = np.tanh(k * (x + 0.044715 * x ** 3))
        y = 0.5 * x * (1 + t)
        dy = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)
    return y, dy


@pytest.mark.parametrize("act", [0, 1])
@pytest.mark.parametrize("n", [1, 17, 5001])
def test_gelu_forward_backward(act, n):
    x = f32(n, scale=3.0)
    x[0] = 0.0
    y, dact = _C_tests.ops_gelu_forward(x, act, True, True)
    ry, rdy = gelu_ref(x, act)
    np.testing.assert_allclose(y, ry, rtol=2e-6, atol=2e-7)
    # the tanh form loses absolute precision in float32 where 1 + tanh(u) cancels (x << 0)
    np.testing.assert_allclose(dact, rdy, rtol=2e-6, atol=2e-7 if act == 0 else 3e-6)
    dout = f32(n)
    dx = _C_tests.ops_gelu_backward(dact, dout)
    np.testing.assert_array_equal(dx, dact * dout)
    # either result alone (an eval forward; DeBERTa's ConvLayer backward) is the same
    y_only, none = _C_tests.ops_gelu_forward(x, act, True, False)
    none2, dact_only = _C_tests.ops_gelu_forward(x, act, False, True)
    assert none is None and none2 is None
    np.testing.assert_array_equal(y_only, y)
    np.testing.assert_array_equal(dact_only, dact)


def ulps_from(got: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """Distance of float32 results from float64 values, in float32 ulps at the exact value."""
    return np.abs(got.astype(np.float64) - exact) / np.spacing(np.abs(exact.astype(np.float32))).astype(np.float64)


def test_vector_erf_is_within_one_ulp():
    """The GELU's vectorised erf against scipy's float64 erf: every float32 result within 1 ulp
    (dense over [-5, 5], random wide inputs, the interval ends, signed zeros, tiny, inf, NaN)."""
    from scipy.special import erf
    x = np.concatenate([np.linspace(-5, 5, 400001, dtype=np.float32), f32(100000, scale=3.0),
                        np.array([0.0, -0.0, 1.0, -1.0, np.nextafter(np.float32(1), np.float32(0)), 4.0,
                                  np.nextafter(np.float32(4), np.float32(0)), 1e-30, -1e-38, 1e-45, 30.0],
                                 np.float32)])
    got = _C_tests.ops_verf(x)
    assert ulps_from(got, erf(x.astype(np.float64))).max() <= 1.0
    np.testing.assert_array_equal(_C_tests.ops_verf(np.array([np.inf, -np.inf], np.float32)), [1.0, -1.0])
    assert np.isnan(_C_tests.ops_verf(np.array([np.nan], np.float32))).all()
    assert np.signbit(_C_tests.ops_verf(np.array([-0.0], np.float32))).all()


def test_vector_exp_is_within_one_ulp():
    """The softmax's vectorised exp against numpy's float64 exp over the float range (results in the
    subnormal range too, from x = -103.9), with underflow to 0 and overflow to inf where float32 has them."""
    x = np.concatenate([np.linspace(-87, 88, 400001, dtype=np.float32),
                        np.linspace(-103.9, -87, 20001, dtype=np.float32), np.clip(f32(100000, scale=20.0), -87, 88),
                        np.array([0.0, 1e-8, -1e-8, 88.72], np.float32)])
    got = _C_tests.ops_vexp(x)
    assert ulps_from(got, np.exp(x.astype(np.float64))).max() <= 1.0
    edge = _C_tests.ops_vexp(np.array([-np.inf, -200.0, 89.0, np.inf, np.nan], np.float32))
    np.testing.assert_array_equal(edge[:4], [0.0, 0.0, np.inf, np.inf])
    assert np.isnan(edge[4])


def test_vector_variants_compute_the_same_bits():
    """AVX-512, AVX2 and the baseline (whichever this CPU has) give identical erf, exp, GELU and its derivative,
    also on vectors whose lanes all fall in one of erf's ranges (|x| / sqrt 2 below 1, at least 4:
    the vector code skips the other ranges' polynomials there) and on vectors that mix them; 1203
    elements, so the last vector is partial at every width."""
    best = _C_tests.cpu_level()
    x = np.concatenate([f32(1003, scale=4.0), f32(64, scale=0.3), 6.0 + f32(64, scale=0.1) ** 2,
                        -6.0 - f32(64, scale=0.1) ** 2,
                        np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 0.7, -2.5, 3.5], np.float32)])
    results = []
    try:
        for level in range(best, -1, -1):
            _C_tests.cpu_level(level)
            results.append([_C_tests.ops_verf(x), _C_tests.ops_vexp(x)]
                           + [r for act in (0, 1) for r in _C_tests.ops_gelu_forward(x, act, True, True)])
    finally:
        _C_tests.cpu_level(2)  # no cap (not `best`: under AddressSanitizer that is 0, a cap the bf16 GEMM obeys)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_row_kernels_compute_the_same_bits_at_every_vector_level():
    """The loops compiled for AVX-512, AVX2 and the baseline (LayerNorm's rows and column blocks, the
    bias gradient's column sums, the attention's products, masked softmax and its backward through
    dropout, with a score bias, padded queries and the score gradients; the windowed attention's
    products; DeBERTa's disentangled terms; AdamW) give identical results, on widths that are no multiple of the vectors or of the
    column blocks and past the single-thread size."""
    best = _C_tests.cpu_level()
    x, w, b = f32(129, 200), f32(200), f32(200)
    dout, mm_in, mm_w = f32(129, 200), f32(129, 70), f32(200, 70)
    qkv, mask = attention_inputs(3, 37, 2, 8)
    bias = f32(3, 2, 37, 37)
    dctx = f32(3, 37, 16)
    posk, posq, idx = f32(20, 16), f32(20, 16), RNG.integers(0, 20, 2 * 37 - 1).astype(np.int32)
    adam = [f32(5000) for _ in range(4)]
    adam[3] = np.abs(adam[3])  # the second moment
    results = []
    try:
        for level in range(best, -1, -1):
            _C_tests.cpu_level(level)
            y, mean, rstd = _C_tests.ops_layernorm_forward(x, w, b, 1e-5)
            ctx, probs = _C_tests.ops_attention_bias_forward(qkv, mask, bias, 2, 0.3, True, 0.2, 3, 9)
            wctx, stats = _C_tests.ops_window_attention_forward(qkv, mask, 2, 2, 0.2, 3, 9)
            dis = _C_tests.ops_disentangled_forward(qkv, posk, posq, idx, 2, 0.2)
            results.append([y, mean, rstd, *_C_tests.ops_layernorm_backward(dout, x, mean, rstd, w),
                            *_C_tests.ops_matmul_backward(dout, mm_in, mm_w), ctx, probs,
                            *_C_tests.ops_attention_bias_backward(dctx, qkv, probs, mask, 2, 0.3, True, 0.2, 3, 9),
                            wctx, stats, _C_tests.ops_window_attention_backward(dctx, qkv, stats, mask, 2, 2, 0.2, 3, 9),
                            dis, *_C_tests.ops_disentangled_backward(bias, qkv, posk, posq, idx, 2, 0.2),
                            *_C_tests.ops_adamw(*adam, 1e-3, 0.9, 0.999, 1e-8, 0.01, 3, 0.5)])
    finally:
        _C_tests.cpu_level(2)  # no cap, as in test_vector_variants_compute_the_same_bits
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------- add
@pytest.mark.parametrize("n", [1, 13, 9000])
def test_add_forward_backward(n):
    a, b = f32(n), f32(n)
    np.testing.assert_array_equal(_C_tests.ops_add_forward(a, b), a + b)
    dout, da0, db0 = f32(n), f32(n), f32(n)
    da, db = _C_tests.ops_add_backward(dout, da0, db0, False)
    np.testing.assert_array_equal(da, dout)
    np.testing.assert_array_equal(db, dout)
    da, db = _C_tests.ops_add_backward(dout, da0, db0, True)
    np.testing.assert_array_equal(da, da0 + dout)
    np.testing.assert_array_equal(db, db0 + dout)


def test_fma_peak_is_a_rate_and_names_bad_arguments():
    """benchmarks/bench_encoder.py's hardware yardstick: a finite positive GFLOP/s for any thread
    count; bad arguments a ValueError naming them."""
    for threads in (0, 1, 2):
        rate = _C_tests.fma_peak(threads, 1000)
        assert math.isfinite(rate) and rate > 0
    with pytest.raises(ValueError, match="fma_peak: threads must be >= 0 and iterations >= 1, got -1 and"):
        _C_tests.fma_peak(-1)
    with pytest.raises(ValueError, match="got 1 and 0"):
        _C_tests.fma_peak(1, 0)


def test_bf16_dot_peak_is_a_rate_where_the_cpu_has_avx512_bf16_and_an_error_elsewhere():
    """benchmarks/bench_gemm_bf16.py's yardstick: vdpbf16ps's rate where the CPU has it (by the CPU's
    own flags, as the engine's bf16 check reads them), else a ValueError that says so; bad arguments
    a ValueError naming them either way."""
    with pytest.raises(ValueError, match="bf16_dot_peak: threads must be >= 0 and iterations >= 1, got -1 and"):
        _C_tests.bf16_dot_peak(-1)
    flags = open("/proc/cpuinfo").read().split() if os.path.exists("/proc/cpuinfo") else []
    if "avx512_bf16" in flags:
        for threads in (0, 1, 2):
            rate = _C_tests.bf16_dot_peak(threads, 1000)
            assert math.isfinite(rate) and rate > 0
    else:
        with pytest.raises(ValueError, match="bf16_dot_peak: (this CPU has no AVX512-BF16|x86-64 only)"):
            _C_tests.bf16_dot_peak(1, 1000)


# ------------------------------------------------------------------ dropout
def test_rng_is_uniform_and_counter_based():
    u = _C_tests.ops_rng_uniform(7, 3, 200000)
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.005
    assert abs(np.mean(u < 0.1) - 0.1) < 0.003
    np.testing.assert_array_equal(u[:1000], _C_tests.ops_rng_uniform(7, 3, 1000))
    assert np.mean(u[:1000] == _C_tests.ops_rng_uniform(8, 3, 1000)) < 0.01
    assert np.mean(u[:1000] == _C_tests.ops_rng_uniform(7, 4, 1000)) < 0.01


def test_rng_is_splitmix64():
    for seed, site in ((7, 3), (2 ** 63 + 5, 2 ** 64 - 1)):
        np.testing.assert_array_equal(_C_tests.ops_rng_uniform(seed, site, 4099),
                                      me_uniform(seed, site, np.arange(4099)))


# p * 2^24 not an integer, an integer, tiny, the largest float32 below 1, and exactly element 3's draw
# (kept: u >= p) and the float just above it (dropped)
U3 = me_uniform(11, 5, np.arange(4))[3]


@pytest.mark.parametrize("p", [0.3, 0.5, 1e-7, float(np.nextafter(np.float32(1), np.float32(0))), float(U3),
                               float(np.nextafter(U3, np.float32(1)))])
@pytest.mark.parametrize("n", [1, 7, 13, 10007])
def test_dropout_vector_variants_draw_the_rngs_mask(n, p):
    """Every vector level keeps exactly the elements whose me_uniform >= p (_numeric.me_uniform), with
    the tails and, above 4096 elements, the per-thread chunks starting mid-vector (AVX-512 compares
    the RNG's integer against ceil(p 2^24) instead of the float against p)."""
    best = _C_tests.cpu_level()
    x = f32(n)
    p32 = np.float32(p)
    KEEP_SCALE = np.float32(1.0) / (np.float32(1.0) - p32)  # the op's float arithmetic
    keep = me_uniform(11, 5, np.arange(n)) >= p32
    try:
        for level in range(best, -1, -1):
            _C_tests.cpu_level(level)
            y = _C_tests.ops_dropout_forward(x, p, 11, 5)
            np.testing.assert_array_equal(y, np.where(keep, x * KEEP_SCALE, np.float32(0.0)))
            rows = np.array([1, 0, 2], np.int32)[: min(3, n)]
            full = np.resize(x, (3, n))
            got = _C_tests.ops_dropout_rows(full[rows], rows, p, 11, 5, False)
            for m, r in enumerate(rows):
                want_row = me_uniform(11, 5, r * n + np.arange(n)) >= p32
                np.testing.assert_array_equal(got[m], np.where(want_row, full[r] * KEEP_SCALE, 0.0))
    finally:
        _C_tests.cpu_level(2)  # no cap, as in test_vector_variants_compute_the_same_bits


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("n", [1, 7, 10007])
def test_dropout_forward_backward(p, n):
    x = f32(n)
    keep = _C_tests.ops_rng_uniform(11, 5, n) >= p
    scale = 0.0 if p >= 1 else 1.0 / (1.0 - p)
    ref = np.where(keep, x.astype(np.float64) * scale, 0.0)
    y = _C_tests.ops_dropout_forward(x, p, 11, 5)
    np.testing.assert_allclose(y, ref, rtol=1e-6)
    dout = f32(n)
    dx = _C_tests.ops_dropout_backward(dout, p, 11, 5)
    np.testing.assert_allclose(dx, np.where(keep, dout.astype(np.float64) * scale, 0.0), rtol=1e-6)


# ---------------------------------------------------------------- attention
def allowed_keys(mask, window=-1):
    """[B, 1, T, T] bool: key j is real and, with window >= 0, |i - j| <= window (HF's padding and
    bidirectional sliding-window masks together)."""
    B, T = mask.shape
    ok = np.broadcast_to(mask[:, None, None, :] > 0, (B, 1, T, T))
    if window >= 0:
        i, j = np.arange(T)[:, None], np.arange(T)[None, :]
        ok = ok & (np.abs(i - j) <= window)
    return ok


def attention_ref(qkv, mask, NH, p=0.0, seed=0, site=0, window=-1):
    """float64 reference in HF's eager formulation (additive finfo.min mask; `window` as
    allowed_keys)."""
    qkv = qkv.astype(np.float64)
    B, T, D3 = qkv.shape
    D = D3 // 3
    HS = D // NH
    q = qkv[..., :D].reshape(B, T, NH, HS).transpose(0, 2, 1, 3)
    k = qkv[..., D:2 * D].reshape(B, T, NH, HS).transpose(0, 2, 1, 3)
    v = qkv[..., 2 * D:].reshape(B, T, NH, HS).transpose(0, 2, 1, 3)
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(HS)
    s = s + np.where(allowed_keys(mask, window), 0.0, np.finfo(np.float32).min)
    s = s - s.max(-1, keepdims=True)
    P = np.exp(s)
    P /= P.sum(-1, keepdims=True)
    Pd = P
    if p > 0:
        keep = np.stack([np.stack([_C_tests.ops_rng_uniform(seed, site + b * NH + h, T * T).reshape(T, T) >= p
                                   for h in range(NH)]) for b in range(B)])
        Pd = np.where(keep, P / (1 - p), 0.0)
    ctx = (Pd @ v).transpose(0, 2, 1, 3).reshape(B, T, D)
    return ctx, P


def attention_inputs(B, T, NH, HS):
    return _numeric.attention_inputs(RNG, B, T, NH, HS)


# (2, 40, 2, 24): whole 16 x 16 blocks of the transposed K and V with edges on both sides
@pytest.mark.parametrize("B,T,NH,HS", [(1, 1, 1, 1), (2, 5, 3, 7), (3, 17, 2, 16), (2, 33, 4, 8), (2, 40, 2, 24)])
@pytest.mark.parametrize("p", [0.0, 0.3])
def test_attention_forward(B, T, NH, HS, p):
    qkv, mask = attention_inputs(B, T, NH, HS)
    ctx, probs = _C_tests.ops_attention_forward(qkv, mask, NH, p, 5, 100)
    rctx, rP = attention_ref(qkv, mask, NH, p, 5, 100)
    np.testing.assert_allclose(probs, rP, atol=2e-6)
    np.testing.assert_allclose(ctx, rctx, rtol=1e-4, atol=2e-5)


def test_attention_fully_masked_row_is_uniform_as_in_hf():
    qkv, mask = attention_inputs(2, 6, 2, 4)
    mask[0] = 0
    _, probs = _C_tests.ops_attention_forward(qkv, mask, 2, 0.0, 0, 0)
    np.testing.assert_allclose(probs[0], np.full((2, 6, 6), 1 / 6), rtol=1e-6)
    _, rP = attention_ref(qkv, mask, 2)
    np.testing.assert_allclose(probs, rP, atol=2e-6)


def attention_grad_ref(dctx, qkv, mask, NH, p=0.0, seed=0, site=0, window=-1):
    """Analytic float64 backward of attention_ref."""
    qkv64 = qkv.astype(np.float64)
    B, T, D3 = qkv.shape
    D = D3 // 3
    HS = D // NH
    split = lambda a: a.reshape(B, T, NH, HS).transpose(0, 2, 1, 3)  # noqa: E731
    q, k, v = split(qkv64[..., :D]), split(qkv64[..., D:2 * D]), split(qkv64[..., 2 * D:])
    _, P = attention_ref(qkv, mask, NH, window=window)
    scale_p = np.ones_like(P)
    if p > 0:
        keep = np.stack([np.stack([_C_tests.ops_rng_uniform(seed, site + b * NH + h, T * T).reshape(T, T) >= p
                                   for h in range(NH)]) for b in range(B)])
        scale_p = np.where(keep, 1 / (1 - p), 0.0)
    Pd = P * scale_p
    dc = split(dctx.astype(np.float64))
    dv = Pd.transpose(0, 1, 3, 2) @ dc
    dP = (dc @ v.transpose(0, 1, 3, 2)) * scale_p
    dS = P * (dP - (dP * P).sum(-1, keepdims=True)) / math.sqrt(HS)
    dq = dS @ k
    dk = dS.transpose(0, 1, 3, 2) @ q
    merge = lambda a: a.transpose(0, 2, 1, 3).reshape(B, T, D)  # noqa: E731
    return np.concatenate([merge(dq), merge(dk), merge(dv)], -1)


@pytest.mark.parametrize("B,T,NH,HS", [(1, 1, 1, 1), (2, 5, 3, 7), (3, 17, 2, 16), (2, 40, 2, 24)])
@pytest.mark.parametrize("p", [0.0, 0.3])
def test_attention_backward(B, T, NH, HS, p):
    qkv, mask = attention_inputs(B, T, NH, HS)
    ctx, probs = _C_tests.ops_attention_forward(qkv, mask, NH, p, 9, 40)
    dctx = f32(*ctx.shape)
    dqkv = _C_tests.ops_attention_backward(dctx, qkv, probs, mask, NH, p, 9, 40)
    ref = attention_grad_ref(dctx, qkv, mask, NH, p, 9, 40)
    if np.linalg.norm(ref) > 0:
        assert rel(dqkv, ref) < 1e-4
    else:
        assert np.abs(dqkv).max() < 1e-6


def query_rows(mask, every=False):
    return _numeric.query_rows(RNG, mask, every)


@pytest.mark.parametrize("B,T,NH,HS", [(1, 1, 1, 1), (2, 5, 3, 7), (3, 17, 2, 16)])
@pytest.mark.parametrize("p", [0.0, 0.3])
def test_attention_for_some_query_rows(B, T, NH, HS, p):
    """Queries of a few positions, keys and values of all (a last layer read at its CLS rows only):
    the float64 reference's rows, forward and backward, with the same dropout masks."""
    qkv, mask = attention_inputs(B, T, NH, HS)
    D = NH * HS
    qstart, qpos, flat = query_rows(mask)
    q = qkv.reshape(B * T, 3 * D)[flat, :D]
    kv = np.ascontiguousarray(qkv[..., D:])
    ctx, probs = _C_tests.ops_attention_rows_forward(q, kv, mask, None, qstart, qpos, NH, HS ** -0.5, False, p, 5,
                                                     100)
    rctx, rP = attention_ref(qkv, mask, NH, p, 5, 100)
    np.testing.assert_allclose(ctx, rctx.reshape(B * T, D)[flat], rtol=1e-4, atol=2e-5)
    for b in range(B):
        m = qstart[b + 1] - qstart[b]
        block = probs[qstart[b] * NH * T:qstart[b + 1] * NH * T].reshape(NH, m, T)
        np.testing.assert_allclose(block, rP[b][:, qpos[qstart[b]:qstart[b + 1]]], atol=2e-6)
    dctx = f32(len(flat), D)
    dq, dkv, _ = _C_tests.ops_attention_rows_backward(dctx, q, kv, probs, mask, qstart, qpos, NH, HS ** -0.5, False,
                                                        p, 5, 100)
    full = np.zeros((B * T, D), np.float32)
    full[flat] = dctx  # the rows nobody reads pass back nothing
    ref = attention_grad_ref(full.reshape(B, T, D), qkv, mask, NH, p, 5, 100).reshape(B * T, 3 * D)
    for got, want in ((dq, ref[flat, :D]), (dkv.reshape(B * T, 2 * D), ref[:, D:])):
        if np.linalg.norm(want) > 0:
            assert rel(got, want) < 1e-4
        else:
            assert got.size == 0 or np.abs(got).max() < 1e-6


def test_attention_for_every_row_is_the_full_attention():
    qkv, mask = attention_inputs(2, 6, 2, 4)
    D = 8
    qstart, qpos, flat = query_rows(mask, every=True)
    ctx, probs = _C_tests.ops_attention_rows_forward(qkv.reshape(12, 3 * D)[:, :D], np.ascontiguousarray(qkv[..., D:]),
                                               mask, None, qstart, qpos, 2, 0.5, False, 0.2, 1, 2)
    fctx, fprobs = _C_tests.ops_attention_forward(qkv, mask, 2, 0.2, 1, 2)
    np.testing.assert_array_equal(ctx, fctx.reshape(12, D))
    np.testing.assert_array_equal(probs, fprobs.ravel())


@pytest.mark.parametrize("p", [0.0, 0.4])
def test_dropout_of_some_rows_keeps_the_full_tensors_mask(p):
    full = f32(9, 13)
    rows = np.array([0, 4, 8], np.int32)
    want = _C_tests.ops_dropout_forward(full.ravel(), p, 3, 7).reshape(9, 13)[rows]
    np.testing.assert_array_equal(_C_tests.ops_dropout_rows(full[rows], rows, p, 3, 7, False), want)
    np.testing.assert_array_equal(_C_tests.ops_dropout_rows(full[rows], rows, p, 3, 7, True), want)


@pytest.mark.parametrize("window", [-1, 1])
def test_attention_backward_matches_finite_differences(window):
    """The analytic reference itself is checked against central differences (every row has an
    allowed key: a row without one is uniform, and its HF gradient is autograd's, not a derivative)."""
    B, T, NH, HS = 2, 4, 2, 3
    qkv, mask = attention_inputs(B, T, NH, HS)
    if window >= 0:
        mask[:] = 1
        mask[0, -1] = 0
    qkv = qkv.astype(np.float64)
    R = RNG.standard_normal((B, T, NH * HS))
    loss = lambda a: (attention_ref(a, mask, NH, window=window)[0] * R).sum()  # noqa: E731
    ref = attention_grad_ref(R, qkv, mask, NH, window=window)
    eps = 1e-6
    for idx in [(0, 0, 0), (1, 2, 5), (0, 3, 7), (1, 1, 14), (0, 2, 17)]:
        a, b = qkv.copy(), qkv.copy()
        a[idx] += eps
        b[idx] -= eps
        fd = (loss(a) - loss(b)) / (2 * eps)
        assert abs(fd - ref[idx]) < 1e-6 * max(1.0, abs(fd))


# ----------------------------------------- rotary, gated unit, windowed attention (ModernBERT)
def rope_ref(x, cos, sin, NH):
    """float64 HF apply_rotary_pos_emb on the q and k blocks of x [B, T, 3D]: q * cos + rotate_half(q) * sin."""
    x = x.astype(np.float64).copy()
    B, T, D3 = x.shape
    D = D3 // 3
    HS = D // NH
    c = np.concatenate([cos, cos], -1).astype(np.float64)[None, :, None, :]
    s = np.concatenate([sin, sin], -1).astype(np.float64)[None, :, None, :]
    for blk in (slice(0, D), slice(D, 2 * D)):
        h = x[..., blk].reshape(B, T, NH, HS)
        rot = np.concatenate([-h[..., HS // 2:], h[..., :HS // 2]], -1)
        x[..., blk] = (h * c + rot * s).reshape(B, T, D)
    return x


@pytest.mark.parametrize("B,T,NH,HS", [(1, 1, 1, 2), (2, 7, 3, 4), (3, 40, 2, 16)])
def test_rope_forward_backward(B, T, NH, HS):
    qkv = f32(B, T, 3 * NH * HS)
    angle = np.arange(T)[:, None] * RNG.uniform(0.01, 1.0, HS // 2)[None, :]
    cos, sin = np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)
    got = _C_tests.ops_rope_forward(qkv, cos, sin, NH)
    np.testing.assert_allclose(got, rope_ref(qkv, cos, sin, NH), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got[..., 2 * NH * HS:], qkv[..., 2 * NH * HS:])  # v untouched
    # backward: the gradient of sum(rope(x) * G) with respect to x, from the reference's Jacobian
    G = f32(B, T, 3 * NH * HS)
    dx = _C_tests.ops_rope_backward(G, cos, sin, NH)
    basis = np.eye(3 * NH * HS)
    jac = np.stack([rope_ref(np.broadcast_to(e, (B, T, 3 * NH * HS)), cos, sin, NH) for e in basis], -1)
    ref = np.einsum("btij,bti->btj", jac, G.astype(np.float64))
    np.testing.assert_allclose(dx, ref, rtol=1e-6, atol=1e-6)


def test_rope_tables_follow_the_float32_recipe():
    """inv_freq = 1 / theta^(2i/HS) rounded to float32, angle t * inv_freq in float32, cos and sin of it
    (the comparison with torch itself is tests/test_modernbert.py's, on transformers' own tables)."""
    T, HS, theta = 300, 16, 10000.0
    cos, sin = _C_tests.ops_rope_tables(T, HS, theta)
    e = (np.arange(0, HS, 2, dtype=np.float32) / np.float32(HS)).astype(np.float64)
    inv = (np.float32(1.0) / np.power(np.float64(theta), e).astype(np.float32)).astype(np.float32)
    angle = (np.arange(T, dtype=np.float32)[:, None] * inv[None, :]).astype(np.float64)
    np.testing.assert_allclose(cos, np.cos(angle), atol=6e-8)
    np.testing.assert_allclose(sin, np.sin(angle), atol=6e-8)


@pytest.mark.parametrize("act", [0, 1])
@pytest.mark.parametrize("N,C", [(1, 1), (5, 3), (67, 129)])
def test_glu_forward_backward(act, N, C):
    inp = f32(N, 2 * C, scale=2.0)
    a, g = inp[:, :C].astype(np.float64), inp[:, C:].astype(np.float64)
    y, dy = gelu_ref(a, act)
    out = _C_tests.ops_glu_forward(inp, act)
    np.testing.assert_allclose(out, y * g, rtol=1e-5, atol=1e-6)
    dout = f32(N, C)
    dinp, again = _C_tests.ops_glu_backward(inp, dout, act)
    np.testing.assert_allclose(dinp[:, :C], dy * g * dout, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dinp[:, C:], y * dout, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(again, out)  # the forward's output, recomputed on the way


WINDOW_CASES = [(1, 1, 1, 2, -1), (2, 5, 3, 4, 1), (2, 40, 2, 8, 4), (3, 70, 2, 6, 8), (2, 64, 2, 8, -1),
                (2, 33, 1, 4, 40)]


@pytest.mark.parametrize("B,T,NH,HS,window", WINDOW_CASES)
@pytest.mark.parametrize("p", [0.0, 0.3])
def test_window_attention_forward(B, T, NH, HS, window, p):
    qkv, mask = attention_inputs(B, T, NH, HS)
    ctx, stats = _C_tests.ops_window_attention_forward(qkv, mask, NH, window, p, 5, 100)
    rctx, _ = attention_ref(qkv, mask, NH, p, 5, 100, window=window)
    np.testing.assert_allclose(ctx, rctx, rtol=1e-4, atol=2e-5)
    assert stats.shape == (B, NH, T, 2)


@pytest.mark.parametrize("B,T,NH,HS,window", WINDOW_CASES)
@pytest.mark.parametrize("p", [0.0, 0.3])
def test_window_attention_backward(B, T, NH, HS, window, p):
    qkv, mask = attention_inputs(B, T, NH, HS)
    ctx, stats = _C_tests.ops_window_attention_forward(qkv, mask, NH, window, p, 9, 40)
    dctx = f32(*ctx.shape)
    dqkv = _C_tests.ops_window_attention_backward(dctx, qkv, stats, mask, NH, window, p, 9, 40)
    ref = attention_grad_ref(dctx, qkv, mask, NH, p, 9, 40, window=window)
    assert rel(dqkv, ref) < 1e-4


@pytest.mark.parametrize("p", [0.0, 0.3])
def test_window_attention_rows_without_a_key_are_uniform_as_in_hf(p):
    """Short sequences padded far past the window: their padded queries see no real key in the
    window, so HF's eager softmax (all scores finfo.min) is uniform over all T keys."""
    B, T, NH, HS, window = 2, 30, 2, 4, 3
    qkv, mask = attention_inputs(B, T, NH, HS)
    mask[0] = 0
    mask[0, :4] = 1
    mask[1] = 0  # a row of padding only
    ctx, stats = _C_tests.ops_window_attention_forward(qkv, mask, NH, window, p, 1, 2)
    rctx, rP = attention_ref(qkv, mask, NH, p, 1, 2, window=window)
    np.testing.assert_allclose(rP[0, :, 20], np.full((NH, T), 1 / T))
    np.testing.assert_allclose(ctx, rctx, rtol=1e-4, atol=2e-5)
    dctx = f32(*ctx.shape)
    dqkv = _C_tests.ops_window_attention_backward(dctx, qkv, stats, mask, NH, window, p, 1, 2)
    assert rel(dqkv, attention_grad_ref(dctx, qkv, mask, NH, p, 1, 2, window=window)) < 1e-4


def test_window_attention_without_window_equals_attention():
    """window -1 (and one covering the whole sequence) is the BERT attention op's function."""
    qkv, mask = attention_inputs(3, 17, 2, 8)
    ref, probs = _C_tests.ops_attention_forward(qkv, mask, 2, 0.2, 3, 4)
    for window in (-1, 16, 100):
        ctx, stats = _C_tests.ops_window_attention_forward(qkv, mask, 2, window, 0.2, 3, 4)
        np.testing.assert_allclose(ctx, ref, rtol=1e-5, atol=1e-6)
    dctx = f32(*ref.shape)
    np.testing.assert_allclose(_C_tests.ops_window_attention_backward(dctx, qkv, stats, mask, 2, -1, 0.2, 3, 4),
                               _C_tests.ops_attention_backward(dctx, qkv, probs, mask, 2, 0.2, 3, 4),
                               rtol=1e-4, atol=1e-5)
