"""Every backend op, forward and backward, on the CUDA backend against the CPU
backend on random odd shapes: relative error <= 1e-5 for element-wise ops,
<= 1e-4 through matrix products (fp32, no TF32). Dropout masks and the
embedding gradient must be bit-identical to the CPU's, and every op must
repeat bit-for-bit on the GPU."""
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
