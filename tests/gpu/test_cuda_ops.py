"""Every backend op, forward and backward, on the CUDA backend against the CPU
backend on random odd shapes: relative error <= 1e-5 for element-wise ops and
the training step's ops (pooling, combination, losses, CRF, norms, AdamW),
<= 1e-4 through matrix products (fp32, no TF32). Dropout masks, the
embedding gradient and the CRF's Viterbi paths must be identical to the CPU's,
and every op must repeat bit-for-bit on the GPU."""
import numpy as np
import pytest

from multienc.engine import _C_tests

import _numeric

GPU = "cuda"
RNG = np.random.default_rng(20240917)
ELEMENTWISE, GEMM = 1e-5, 1e-4


def rel(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


def f32(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def both(op, *args, tol):
    """Run op on CPU and GPU (twice), check agreement and GPU repeatability; return GPU result."""
    cpu = op(*args, "cpu")
    gpu = op(*args, GPU)
    again = op(*args, GPU)
    cpu_t = cpu if isinstance(cpu, tuple) else (cpu,)
    gpu_t = gpu if isinstance(gpu, tuple) else (gpu,)
    again_t = again if isinstance(again, tuple) else (again,)
    for i, (c, g, a) in enumerate(zip(cpu_t, gpu_t, again_t)):
        if c is None:  # an output the arguments did not ask for
            assert g is None and a is None, i
            continue
        assert g.shape == c.shape and g.dtype == c.dtype
        assert np.isfinite(g).all(), f"output {i} not finite"
        np.testing.assert_array_equal(g, a, err_msg=f"output {i} differs between two GPU runs")
        if np.linalg.norm(c) > 0:
            assert rel(g, c) <= tol, (i, rel(g, c))
        else:
            assert np.abs(g).max() <= 1e-6, i
    return gpu


@pytest.mark.parametrize("N,C,V", [(1, 1, 1), (9, 7, 5), (300, 65, 17), (2053, 33, 3)])
def test_embedding(N, C, V):
    table = f32(V, C)
    ids = RNG.integers(0, V, N).astype(np.int32)
    np.testing.assert_array_equal(_C_tests.ops_embedding_forward(ids, table, GPU), table[ids])
    dout = f32(N, C)
    for pad in (-1, 0):
        cpu = _C_tests.ops_embedding_backward(dout, ids, V, pad, "cpu")
        gpu = _C_tests.ops_embedding_backward(dout, ids, V, pad, GPU)
        np.testing.assert_array_equal(gpu, cpu)  # same per-row order of additions


def test_embedding_backward_long_runs_of_one_id():
    """More occurrences of an id than the kernel gathers per pass (token types)."""
    N, C = 5000, 19
    ids = np.zeros(N, np.int32)
    ids[::7] = 1
    dout = f32(N, C)
    np.testing.assert_array_equal(_C_tests.ops_embedding_backward(dout, ids, 2, -1, GPU),
                                  _C_tests.ops_embedding_backward(dout, ids, 2, -1, "cpu"))


@pytest.mark.parametrize("N,C", [(1, 1), (3, 5), (7, 33), (129, 77), (1000, 768)])
def test_layernorm(N, C):
    x = f32(N, C, scale=3.0) + 1.5
    w, b = f32(C) + 1.0, f32(C)
    out, mean, rstd = both(_C_tests.ops_layernorm_forward, x, w, b, 1e-5, tol=ELEMENTWISE)
    dout = f32(N, C)
    both(_C_tests.ops_layernorm_backward, dout, x, mean, rstd, w, tol=ELEMENTWISE)


@pytest.mark.parametrize("N,C,OC", [(1, 1, 1), (5, 3, 7), (67, 45, 129), (130, 257, 31), (512, 768, 2304)])
@pytest.mark.parametrize("bias", [True, False])
def test_matmul(N, C, OC, bias):
    x, w = f32(N, C), f32(OC, C)
    b = f32(OC) if bias else None
    both(_C_tests.ops_matmul_forward, x, w, b, tol=GEMM)
    both(_C_tests.ops_matmul_backward, f32(N, OC), x, w, tol=GEMM)


@pytest.mark.parametrize("act", [0, 1])
@pytest.mark.parametrize("n", [1, 17, 5001, 1 << 20])
def test_gelu(act, n):
    x = f32(n, scale=3.0)
    _, dact = both(_C_tests.ops_gelu_forward, x, act, True, True, tol=ELEMENTWISE)
    assert _C_tests.ops_gelu_forward(x, act, False, True, GPU)[0] is None
    both(_C_tests.ops_gelu_backward, dact, f32(n), tol=ELEMENTWISE)


@pytest.mark.parametrize("n", [1, 13, 9000])
def test_add(n):
    a, b = f32(n), f32(n)
    np.testing.assert_array_equal(_C_tests.ops_add_forward(a, b, GPU), a + b)
    dout, da0, db0 = f32(n), f32(n), f32(n)
    for acc in (False, True):
        da, db = _C_tests.ops_add_backward(dout, da0, db0, acc, GPU)
        np.testing.assert_array_equal(da, da0 + dout if acc else dout)
        np.testing.assert_array_equal(db, db0 + dout if acc else dout)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("n", [1, 7, 10007, 3 << 20])
def test_dropout_masks_are_the_cpu_masks(p, n):
    x = f32(n)
    for op in (_C_tests.ops_dropout_forward, _C_tests.ops_dropout_backward):
        np.testing.assert_array_equal(op(x, p, 11, 5, GPU), op(x, p, 11, 5, "cpu"))
    seed = (1 << 63) + 12345  # the full 64-bit seed and site reach the device
    np.testing.assert_array_equal(_C_tests.ops_dropout_forward(x, 0.3, seed, 1 << 45, GPU),
                                  _C_tests.ops_dropout_forward(x, 0.3, seed, 1 << 45, "cpu"))


def attention_inputs(B, T, NH, HS):
    return _numeric.attention_inputs(RNG, B, T, NH, HS)


@pytest.mark.parametrize("B,T,NH,HS", [(1, 1, 1, 1), (2, 5, 3, 7), (3, 17, 2, 16), (2, 33, 4, 8),
                                       (4, 128, 12, 64), (2, 77, 5, 13)])
@pytest.mark.parametrize("p", [0.0, 0.3])
def test_attention(B, T, NH, HS, p):
    qkv, mask = attention_inputs(B, T, NH, HS)
    ctx, probs = both(_C_tests.ops_attention_forward, qkv, mask, NH, p, 5, 100, tol=GEMM)
    _, cpu_probs = _C_tests.ops_attention_forward(qkv, mask, NH, p, 5, 100, "cpu")
    assert np.abs(probs - cpu_probs).max() <= 5e-6  # each side within 2e-6 of float64 (tests/test_ops.py)
    both(_C_tests.ops_attention_backward, f32(*ctx.shape), qkv, cpu_probs, mask, NH, p, 5, 100, tol=GEMM)


def test_attention_fully_masked_row_is_uniform():
    qkv, mask = attention_inputs(2, 6, 2, 4)
    mask[0] = 0
    _, probs = _C_tests.ops_attention_forward(qkv, mask, 2, 0.0, 0, 0, GPU)
    np.testing.assert_allclose(probs[0], np.full((2, 6, 6), 1 / 6), rtol=1e-6)


def test_rejects_unknown_gpu_index():
    with pytest.raises((RuntimeError, ValueError), match="cuda:99"):
        _C_tests.ops_add_forward(np.ones(2, np.float32), np.ones(2, np.float32), "cuda:99")


# ----------------------------------------------------------------- the training step's ops


@pytest.mark.parametrize("B,T,K,C", [(1, 1, 1, 1), (3, 7, 1, 5), (4, 11, 2, 17), (16, 40, 1, 768)])
def test_pool(B, T, K, C):
    h, w = f32(B, T, C), f32(B, K, T)
    both(_C_tests.ops_pool_forward, h, w, tol=GEMM)
    both(_C_tests.ops_pool_backward, f32(B, K, C), w, tol=GEMM)


def test_concat():
    parts = [f32(5, 3), f32(5, 8), f32(5, 1)]
    np.testing.assert_array_equal(_C_tests.ops_concat_forward(parts, GPU), np.concatenate(parts, 1))
    g = f32(5, 12)
    np.testing.assert_array_equal(_C_tests.ops_concat_backward(g, 3, 8, GPU), g[:, 3:11])


@pytest.mark.parametrize("n,R,C", [(1, 1, 1), (2, 5, 7), (3, 16, 768), (5, 33, 129)])
@pytest.mark.parametrize("dme", [False, True])
def test_combine(n, R, C, dme):
    x = f32(n, R, C)
    scores = f32(n, R, scale=2.0) if dme else None
    _, alpha = both(_C_tests.ops_combine_forward, x, scores, tol=ELEMENTWISE)
    dx, dscores = both(_C_tests.ops_combine_backward, f32(R, C), x, alpha, dme, tol=ELEMENTWISE)
    assert (dscores is None) == (not dme)


def scalars(op, *args, tol):
    """op's (loss, arrays...) on CPU and GPU (twice): the loss within tol, the arrays as both()."""
    cpu, gpu, again = op(*args, "cpu"), op(*args, GPU), op(*args, GPU)
    assert gpu[0] == again[0] and np.isfinite(gpu[0])
    assert abs(gpu[0] - cpu[0]) <= tol * max(abs(cpu[0]), 1e-30), (gpu[0], cpu[0])
    for i, (c, g, a) in enumerate(zip(cpu[1:], gpu[1:], again[1:])):
        np.testing.assert_array_equal(g, a, err_msg=f"output {i + 1} differs between two GPU runs")
        assert rel(g, c) <= tol if np.linalg.norm(c) > 0 else not g.any(), i + 1
    return gpu


@pytest.mark.parametrize("R,C", [(1, 2), (7, 3), (33, 9), (2000, 17)])
def test_cross_entropy(R, C):
    logits = f32(R, C, scale=3.0)
    targets = RNG.integers(0, C, R).astype(np.int32)
    targets[::3] = -1  # ignored rows
    _, probs, dlogits = scalars(_C_tests.ops_cross_entropy, logits, targets, tol=ELEMENTWISE)
    assert not dlogits[targets < 0].any()
    ignored = np.full(R, -1, np.int32)  # no counted row: loss 0, no gradient
    loss, _, dlogits = _C_tests.ops_cross_entropy(logits, ignored, GPU)
    assert loss == 0.0 and not dlogits.any()


@pytest.mark.parametrize("R,C", [(1, 1), (16, 1), (37, 5), (3000, 3)])
def test_mse(R, C):
    scalars(_C_tests.ops_mse, f32(R, C), f32(R, C), tol=ELEMENTWISE)


def crf_case(B, K, C):
    em = f32(B, K, C, scale=2.0)
    lengths = RNG.integers(0, K + 1, B).astype(np.int32)
    lengths[0] = K
    tags = RNG.integers(0, C, (B, K)).astype(np.int32)
    for b, L in enumerate(lengths):
        tags[b, L:] = -1
    return em, tags, lengths, f32(C, C), f32(C), f32(C)


@pytest.mark.parametrize("B,K,C", [(1, 1, 2), (3, 4, 3), (16, 40, 9), (130, 25, 17)])
def test_crf(B, K, C):
    em, tags, lengths, trans, start, end = crf_case(B, K, C)
    scalars(_C_tests.ops_crf, em, tags, lengths, trans, start, end, tol=ELEMENTWISE)
    cpu = _C_tests.ops_crf_viterbi(em, lengths, trans, start, end, "cpu")
    np.testing.assert_array_equal(_C_tests.ops_crf_viterbi(em, lengths, trans, start, end, GPU), cpu)
    no_words = np.zeros(B, np.int32)
    loss, dem, dtr, dst, den = _C_tests.ops_crf(em, tags, no_words, trans, start, end, GPU)
    assert loss == 0.0 and not dem.any() and not dtr.any() and not dst.any() and not den.any()


@pytest.mark.parametrize("n", [1, 255, 4097, 3 << 20])
def test_sum_squares_and_scale(n):
    x = f32(n)
    cpu, gpu = _C_tests.ops_sum_squares(x, "cpu"), _C_tests.ops_sum_squares(x, GPU)
    assert gpu == _C_tests.ops_sum_squares(x, GPU)
    assert abs(gpu - cpu) <= 1e-12 * cpu  # both in double, only the order of the sums differs
    np.testing.assert_array_equal(_C_tests.ops_scale(x.copy(), 0.37, GPU), _C_tests.ops_scale(x.copy(), 0.37, "cpu"))


@pytest.mark.parametrize("V,C,n", [(1, 1, 1), (50, 7, 13), (30522, 768, 400)])
def test_sum_squares_rows(V, C, n):
    x = f32(V, C)
    rows = RNG.choice(V, n, replace=False).astype(np.int32)
    cpu, gpu = _C_tests.ops_sum_squares_rows(x, rows, "cpu"), _C_tests.ops_sum_squares_rows(x, rows, GPU)
    assert gpu == _C_tests.ops_sum_squares_rows(x, rows, GPU)
    assert abs(gpu - cpu) <= 1e-12 * cpu
    assert _C_tests.ops_sum_squares_rows(x, rows[:0], GPU) == 0.0


@pytest.mark.parametrize("n", [1, 1000, (1 << 20) + 3])
@pytest.mark.parametrize("step,grad_scale", [(1, 1.0), (7, 0.25)])
def test_adamw(n, step, grad_scale):
    p, g, m, v = f32(n), f32(n), f32(n, scale=0.1), np.abs(f32(n, scale=0.01))
    args = (1e-3, 0.9, 0.999, 1e-8, 0.01, step, grad_scale)
    cpu = _C_tests.ops_adamw(p.copy(), g.copy(), m.copy(), v.copy(), *args, "cpu")
    gpu = _C_tests.ops_adamw(p.copy(), g.copy(), m.copy(), v.copy(), *args, GPU)
    again = _C_tests.ops_adamw(p.copy(), g.copy(), m.copy(), v.copy(), *args, GPU)
    for i, (c, x, y) in enumerate(zip(cpu, gpu, again)):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_allclose(x, c, rtol=2e-6, atol=1e-9, err_msg=f"output {i}")
    assert not gpu[3].any()  # the gradient is left zeroed
