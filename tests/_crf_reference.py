"""Float64 reference of a linear-chain CRF by enumerating every tag sequence (pytorch-crf's
model: start, emission, transition and end scores), shared by the CRF tests."""
import itertools

import numpy as np


def path_score(em, y, trans, start, end):
    """Score of one tag sequence y (len L) of one sentence's emissions em [>= L, C]."""
    s = start[y[0]] + end[y[-1]] + sum(em[k, t] for k, t in enumerate(y))
    return s + sum(trans[a, b] for a, b in zip(y[:-1], y[1:]))


def brute_force(em, tags, lengths, trans, start, end):
    """(loss, dem, dtrans, dstart, dend, best paths) by enumerating all C**L sequences, float64.

    The gradient of log Z is the expectation of each feature's count under the CRF's distribution,
    so the reference gradients are expected minus gold feature counts, divided by the word count.
    """
    em, trans, start, end = (np.asarray(x, np.float64) for x in (em, trans, start, end))
    B, K, C = em.shape
    N = int(np.sum(lengths))
    loss = 0.0
    dem, dtr, dst, den = np.zeros_like(em), np.zeros_like(trans), np.zeros(C), np.zeros(C)
    best = np.full((B, K), -1)
    for b in range(B):
        L = int(lengths[b])
        if L == 0:
            continue
        seqs = list(itertools.product(range(C), repeat=L))
        scores = np.array([path_score(em[b], y, trans, start, end) for y in seqs])
        logz = np.logaddexp.reduce(scores)
        p = np.exp(scores - logz)
        gold = tuple(int(t) for t in tags[b, :L])
        loss += logz - path_score(em[b], gold, trans, start, end)
        for y, w in itertools.chain(zip(seqs, p), [(gold, -1.0)]):
            for k, t in enumerate(y):
                dem[b, k, t] += w
            dst[y[0]] += w
            den[y[-1]] += w
            for a, c in zip(y[:-1], y[1:]):
                dtr[a, c] += w
        best[b, :L] = seqs[int(np.argmax(scores))]  # first maximum = lowest ids (lexicographic)
    inv = 1.0 / N if N else 0.0
    return loss * inv, dem * inv, dtr * inv, dst * inv, den * inv, best
