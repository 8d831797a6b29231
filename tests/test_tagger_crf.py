"""The CRF op pair (negative log-likelihood by the forward algorithm, gradients by
forward-backward) and Viterbi decoding against float64 references that enumerate
every tag sequence (independent of the dynamic programmes being tested)."""

import numpy as np
import pytest

from _crf_reference import brute_force

from multienc.engine import _C_tests


def random_case(rng, B, K, C, scale=1.0):
    em = (rng.standard_normal((B, K, C)) * scale).astype(np.float32)
    lengths = rng.integers(0, K + 1, B).astype(np.int32)
    lengths[0] = K
    tags = rng.integers(0, C, (B, K)).astype(np.int32)
    for b, L in enumerate(lengths):
        tags[b, L:] = -1  # padding: never read
    trans = (rng.standard_normal((C, C)) * scale).astype(np.float32)
    start = (rng.standard_normal(C) * scale).astype(np.float32)
    end = (rng.standard_normal(C) * scale).astype(np.float32)
    return em, tags, lengths, trans, start, end


@pytest.mark.parametrize("B,K,C,seed", [(1, 1, 2, 0), (3, 4, 3, 1), (4, 5, 2, 2), (2, 3, 5, 3), (5, 4, 4, 4)])
def test_crf_loss_and_gradients_match_enumeration(B, K, C, seed):
    rng = np.random.default_rng(seed)
    case = random_case(rng, B, K, C)
    loss, dem, dtr, dst, den = _C_tests.ops_crf(*case)
    ref = brute_force(*case)
    assert abs(loss - ref[0]) < 1e-5 * max(1.0, abs(ref[0]))
    for got, want in zip((dem, dtr, dst, den), ref[1:5]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    em, tags, lengths = case[:3]
    for b, L in enumerate(lengths):
        assert not dem[b, L:].any(), "rows past the length get no gradient"


def test_crf_gradient_matches_finite_differences_of_the_loss():
    """A second, independent check of the backward: central differences of the forward op."""
    rng = np.random.default_rng(11)
    em, tags, lengths, trans, start, end = random_case(rng, 3, 4, 3)
    _, dem, dtr, dst, den = _C_tests.ops_crf(em, tags, lengths, trans, start, end)

    def f(e, t, s, n):
        return brute_force(e, tags, lengths, t, s, n)[0]

    args = [em.astype(np.float64), trans.astype(np.float64), start.astype(np.float64), end.astype(np.float64)]
    for which, got in enumerate((dem, dtr, dst, den)):
        x = args[which]
        num = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            old = x[idx]
            x[idx] = old + 1e-6
            hi = f(*args)
            x[idx] = old - 1e-6
            lo = f(*args)
            x[idx] = old
            num[idx] = (hi - lo) / 2e-6
        np.testing.assert_allclose(got, num, rtol=1e-4, atol=1e-6)


def test_crf_large_scores_stay_finite():
    """Log-space sums: emissions of +-200 neither overflow nor lose the gradient."""
    rng = np.random.default_rng(5)
    case = random_case(rng, 2, 4, 3, scale=200.0)
    loss, dem, *_ = _C_tests.ops_crf(*case)
    ref = brute_force(*case)
    assert np.isfinite(loss) and np.isfinite(dem).all()
    assert abs(loss - ref[0]) < 1e-5 * max(1.0, abs(ref[0]))
    np.testing.assert_allclose(dem, ref[1], atol=1e-5)


@pytest.mark.parametrize("B,K,C,seed", [(4, 5, 3, 0), (6, 3, 4, 1), (3, 6, 2, 2)])
def test_viterbi_matches_enumeration(B, K, C, seed):
    rng = np.random.default_rng(seed)
    em, tags, lengths, trans, start, end = random_case(rng, B, K, C)
    path = _C_tests.ops_crf_viterbi(em, lengths, trans, start, end)
    best = brute_force(em, tags, lengths, trans, start, end)[5]
    np.testing.assert_array_equal(path, best)


def test_viterbi_ties_pick_the_lowest_tag():
    em = np.zeros((1, 3, 3), np.float32)
    z = np.zeros((3, 3), np.float32)
    path = _C_tests.ops_crf_viterbi(em, np.array([3], np.int32), z, np.zeros(3, np.float32), np.zeros(3, np.float32))
    assert path.tolist() == [[0, 0, 0]]


def test_crf_empty_sentences_and_bad_arguments():
    em = np.ones((2, 3, 2), np.float32)
    z2, z = np.zeros((2, 2), np.float32), np.zeros(2, np.float32)
    loss, dem, dtr, dst, den = _C_tests.ops_crf(em, np.zeros((2, 3), np.int32), np.array([0, 0], np.int32), z2, z, z)
    assert loss == 0.0 and not dem.any() and not dtr.any() and not dst.any() and not den.any()
    with pytest.raises(ValueError, match=r"lengths\[1\] = 4 is outside 0..3"):
        _C_tests.ops_crf(em, np.zeros((2, 3), np.int32), np.array([1, 4], np.int32), z2, z, z)
    with pytest.raises(ValueError, match=r"tags\[0, 1\] = 2 is outside 0..1"):
        _C_tests.ops_crf(em, np.array([[0, 2, 0], [0, 0, 0]], np.int32), np.array([3, 1], np.int32), z2, z, z)
    with pytest.raises(ValueError, match="shape mismatch"):
        _C_tests.ops_crf_viterbi(em, np.array([1, 1], np.int32), np.zeros((3, 3), np.float32), z, z)
