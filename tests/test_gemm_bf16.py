"""The bf16 GEMM of the CPU backend's bf16 table (csrc/cpu/gemm_bf16.c) against float64 numpy.

The reference rounds A and B to bf16 itself (bit arithmetic on uint32: round to nearest even, NaN
kept as a quiet NaN, float32 subnormals to a zero of the same sign, as vcvtne2ps2bf16 does) and
multiplies in float64; the tolerance is the bound of float32 accumulation over K terms. The
kernel's documented edges are asserted exactly: the rounding (ties, overflow to inf, NaN, signed
zeros, subnormals), and vdpbf16ps's flush of subnormal partial sums to zero (it ignores MXCSR:
inputs DAZ, results FTZ). Results are the same bits on every call and for every thread count."""
import numpy as np
import pytest

from multienc.engine import _C_tests

pytestmark = pytest.mark.skipif(not _C_tests.cpu_has_bf16(),
                                reason="this CPU has no AVX512-BF16 (with AVX-512 F/BW/VL/DQ): no bf16 GEMM")

RNG = np.random.default_rng(1616)
U = 2.0 ** -24  # float32's unit roundoff
TINY = 2.0 ** -126  # vdpbf16ps flushes partial sums below this to zero


def to_bf16(x):
    """x rounded to bf16 (as float32), the rounding the kernel's packing does."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    quiet_nan = (u | 0x00400000) & 0xFFFF0000
    out = np.where((u & 0x7FFFFFFF) > 0x7F800000, quiet_nan,
                   np.where((u & 0x7F800000) == 0, u & 0x80000000, rounded))
    return out.astype(np.uint32).view(np.float32)


def bits(*words):
    return np.array(words, np.uint32).view(np.float32)


def test_reference_rounding():
    """The reference itself, on values whose bf16 is known."""
    got = to_bf16(bits(0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F808001, 0x7F7FFFFF, 0x00000001, 0x80400000,
                       0x7F800001))
    np.testing.assert_array_equal(got.view(np.uint32)[:7],
                                  [0x3F800000, 0x3F820000, 0x3F800000, 0x3F810000, 0x7F800000, 0, 0x80000000])
    assert np.isnan(got[7])


def gemm(A, B, C, ta, tb, M, N, K, alpha=1.0, beta=0.0, threads=0, fn=None):
    out, _ = (fn or _C_tests.ops_gemm_bf16)(A, B, C, ta, tb, M, N, K, alpha, beta, threads, 1)
    return out


def padded(rows, cols, extra_rows, extra_cols, fill):
    """A [rows, cols] matrix of random floats inside a wider, taller array full of `fill`: the
    kernel must use the row length as the leading dimension and never read (or write) the rest."""
    a = np.full((rows + extra_rows, cols + extra_cols), fill, np.float32)
    a[:rows, :cols] = RNG.standard_normal((rows, cols)) * RNG.choice([0.01, 1.0, 100.0])
    return a


def check(M, N, K, ta, tb, alpha, beta, extra=(0, 0), threads=0):
    er, ec = extra
    A = padded(K if ta else M, M if ta else K, er, ec, np.nan)
    B = padded(N if tb else K, K if tb else N, er, ec, np.nan)
    C = padded(M, N, er, ec, 7.0)
    if beta == 0.0:
        C[:M, :N] = np.nan  # not read
    got = gemm(A, B, C, ta, tb, M, N, K, alpha, beta, threads)
    a = to_bf16(A[:K, :M].T if ta else A[:M, :K]).astype(np.float64)
    b = to_bf16(B[:N, :K].T if tb else B[:K, :N]).astype(np.float64)
    c = 0.0 if beta == 0.0 else beta * C[:M, :N].astype(np.float64)
    ref = alpha * (a @ b) + c
    bound = (K + 2) * 2 * U * abs(alpha) * (np.abs(a) @ np.abs(b)) + 2 * U * np.abs(c) + K * TINY
    err = np.abs(got[:M, :N] - ref)
    assert (err <= bound).all(), f"max error {err.max()} (bound there {bound.flat[err.argmax()]})"
    np.testing.assert_array_equal(got[M:], C[M:])  # outside C's M x N: untouched
    np.testing.assert_array_equal(got[:, N:], C[:, N:])
    return got


# Blocking in the kernel: MR = 14 rows, NR = 32 columns, KC = 384 along K, MC = 336 rows, NC = 512
# columns; products of 2e6 flops and more run on several threads (by column panels, or by row
# panels when C is tall and narrow). The shapes cross each edge, with K odd and even.
SHAPES = [(1, 1, 1), (1, 1, 2), (2, 3, 1), (13, 31, 7), (14, 32, 16), (15, 33, 17), (29, 65, 33), (97, 100, 255),
          (300, 129, 31), (337, 47, 385), (28, 64, 769), (5, 530, 768), (150, 290, 301), (43, 7, 1001),
          (20, 1030, 3)]


@pytest.mark.parametrize("ta,tb", [(0, 0), (0, 1), (1, 0), (1, 1)])
@pytest.mark.parametrize("M,N,K", SHAPES)
def test_against_float64(M, N, K, ta, tb):
    check(M, N, K, ta, tb, 1.0, 0.0)


@pytest.mark.parametrize("ta,tb", [(0, 0), (0, 1), (1, 0), (1, 1)])
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (-0.5, 2.0), (2.0, 0.0), (0.25, -1.0)])
def test_alpha_beta_and_leading_dimensions(ta, tb, alpha, beta):
    for M, N, K in [(15, 33, 17), (97, 100, 401), (337, 65, 40)]:
        check(M, N, K, ta, tb, alpha, beta, extra=(3, 5))


@pytest.mark.parametrize("K,alpha", [(0, 1.0), (9, 0.0)])
def test_nothing_to_add_leaves_beta_c(K, alpha):
    """K == 0 or alpha == 0: beta * C, as BLAS (beta 0: zeros, NaN in C ignored; A and B not used)."""
    A, B = np.full((5, max(K, 1)), np.inf, np.float32), np.full((max(K, 1), 6), np.nan, np.float32)
    C = RNG.standard_normal((5, 6)).astype(np.float32)
    np.testing.assert_array_equal(gemm(A, B, C, 0, 0, 5, 6, K, alpha, 0.5), 0.5 * C)
    C[:] = np.nan
    np.testing.assert_array_equal(gemm(A, B, C, 0, 0, 5, 6, K, alpha, 0.0), np.zeros((5, 6), np.float32))


# Values whose bf16 is an edge case, and what one product with 1.0 gives for them.
SPECIAL = bits(0x3F808000,  # 1 + 2^-8, a tie: to even, 1.0
               0x3F818000,  # 1 + 3 * 2^-8, a tie: to even, 1 + 2^-6
               0x3F807FFF, 0x3F808001,  # just below / above a tie: down / up
               0xBF808000, 0xBF808001,  # the same, negative
               0x7F7FFFFF, 0xFF7FFFFF,  # +-max float32: past bf16's max, to +-inf
               0x7F7F7FFF,  # rounds down to bf16's max finite value
               0x7F800000, 0xFF800000,  # +-inf
               0x00000000, 0x80000000,  # +-0
               0x00000001, 0x807FFFFF, 0x00400000,  # subnormals: zero
               0x00800000, 0x00FFFFFF)  # the smallest normal; one that rounds up to 2^-125
EXPECTED = bits(0x3F800000, 0x3F820000, 0x3F800000, 0x3F810000, 0xBF800000, 0xBF810000, 0x7F800000, 0xFF800000,
                0x7F7F0000, 0x7F800000, 0xFF800000, 0, 0, 0, 0, 0, 0x00800000, 0x01000000)


@pytest.mark.parametrize("ta,tb", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_rounding_is_exact(ta, tb):
    """Each value times 1.0 (K = 1) through A and through B. The sum starts at +0, so a zero or
    subnormal input gives +0 whatever its sign (as sgemm's sum does)."""
    x = SPECIAL.reshape(-1, 1)
    one = np.ones((1, 1), np.float32)
    n = len(SPECIAL)
    through_a = gemm(x.T.copy() if ta else x, one, np.zeros((n, 1), np.float32), ta, tb, n, 1, 1)
    through_b = gemm(one, x if tb else x.T.copy(), np.zeros((1, n), np.float32), ta, tb, 1, n, 1)
    for got in (through_a.ravel(), through_b.ravel()):
        np.testing.assert_array_equal(got.view(np.uint32), EXPECTED.view(np.uint32))
    nan = bits(0x7FC00000, 0x7F800001, 0xFFC00001).reshape(-1, 1)  # quiet, signalling, negative
    assert np.isnan(gemm(nan, one, np.zeros((3, 1), np.float32), 0, 0, 3, 1, 1)).all()


def test_subnormal_partial_sums_flush_to_zero():
    """vdpbf16ps flushes a subnormal result to zero (FTZ, whatever MXCSR says), so products or sums
    below 2^-126 are lost; numbers that stay normal are exact."""
    A = np.array([[2.0 ** -63], [2.0 ** -63], [1.5 * 2.0 ** -126]], np.float32)
    B = np.array([[2.0 ** -64, 2.0 ** -63]], np.float32)
    got = gemm(A, B, np.zeros((3, 2), np.float32), 0, 0, 3, 2, 1)
    np.testing.assert_array_equal(got, [[0.0, 2.0 ** -126], [0.0, 2.0 ** -126], [0.0, 0.0]])
    # 1.5 * 2^-126 - 2^-126 = 2^-127 is subnormal
    got = gemm(np.array([[1.5 * 2.0 ** -126, -1.0]], np.float32), np.array([[1.0], [2.0 ** -126]], np.float32),
               np.zeros((1, 1), np.float32), 0, 0, 1, 1, 2)
    assert got[0, 0] == 0.0


@pytest.mark.parametrize("M,N,K", [(301, 290, 777), (100, 700, 300), (1000, 40, 130)])
def test_same_bits_twice_and_for_every_thread_count(M, N, K):
    """The result depends on the inputs, K, alpha and beta only (every element sees the same
    arithmetic wherever it lies in a tile or a thread's part): the same bits for 1, 2 and 3 threads
    and on every call. The shapes split by row panels, by column panels, and tall and narrow."""
    for ta, tb in [(0, 1), (1, 0)]:
        A = RNG.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
        B = RNG.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
        C = RNG.standard_normal((M, N)).astype(np.float32)
        first = gemm(A, B, C, ta, tb, M, N, K, 0.5, 1.0, threads=1)
        for threads in (1, 2, 3, 2):
            np.testing.assert_array_equal(gemm(A, B, C, ta, tb, M, N, K, 0.5, 1.0, threads=threads), first)


def test_capped_cpu_level_has_no_bf16():
    """me_cpu_set_level(1) (AVX2) makes the CPU count as one without AVX512-BF16: no bf16 table.
    (_C_tests holds its own copy of the engine, the one its cpu_level caps. The cap is restored to
    2, no cap: the level itself is 0 under AddressSanitizer, where the bf16 kernel still runs.)"""
    assert _C_tests.cpu_has_bf16()
    try:
        _C_tests.cpu_level(1)
        assert not _C_tests.cpu_has_bf16()
        one = np.ones((1, 1), np.float32)
        with pytest.raises(ValueError, match="AVX512-BF16"):
            gemm(one, one, one, 0, 0, 1, 1, 1)
    finally:
        _C_tests.cpu_level(2)
    assert _C_tests.cpu_has_bf16()
