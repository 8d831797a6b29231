"""Independent numeric references for the tests: central finite differences in float64 (the check
of analytic gradients), the dropout RNG in numpy, attention inputs and query-row subsets."""
import numpy as np


def numeric_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d f() / d x by central differences, perturbing ``x`` in place (restored after)."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        a = f()
        x[i] = old - eps
        b = f()
        x[i] = old
        g[i] = (a - b) / (2 * eps)
    return g


def rel(a, b) -> float:
    """Relative error ||a - b|| / ||b|| in float64 (b == 0 counts as a tiny norm)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def attention_inputs(rng: np.random.Generator, B: int, T: int, NH: int, HS: int):
    """A fused qkv [B, T, 3 NH HS] (float32 normals) and a mask [B, T] padding each row after a
    random length (the last row unpadded when B > 1)."""
    qkv = rng.standard_normal((B, T, 3 * NH * HS)).astype(np.float32)
    mask = np.ones((B, T), np.int32)
    for b in range(B):
        mask[b, rng.integers(1, T + 1):] = 0
    if B > 1:
        mask[-1] = 1
    return qkv, mask


def query_rows(rng: np.random.Generator, mask: np.ndarray, every: bool = False):
    """A random subset of positions per sentence (ascending; some sentences may have none; every:
    all of them) as the attention_rows ops take them: qstart [B+1], qpos [M], and their flat rows
    b*T + t."""
    B, T = mask.shape
    picks = [np.arange(T) if every else np.sort(rng.choice(T, rng.integers(0, min(T, 3) + 1), replace=False))
             for _ in range(B)]
    qstart = np.concatenate([[0], np.cumsum([len(x) for x in picks])]).astype(np.int32)
    qpos = np.concatenate(picks).astype(np.int32)
    flat = np.concatenate([b * T + x for b, x in enumerate(picks)]).astype(np.int64)
    return qstart, qpos, flat


def me_uniform(seed: int, site: int, index: np.ndarray) -> np.ndarray:
    """numpy port of csrc/backend.h me_uniform, from its documented steps (uint64 arithmetic wraps
    as in C): the SplitMix64 finaliser of a per-site key stepped by the golden gamma, as float32."""
    with np.errstate(over="ignore"):
        gamma = np.uint64(0x9E3779B97F4A7C15)
        z = np.uint64(seed) * gamma + np.uint64(site) * np.uint64(0xD1B54A32D192ED03)
        z ^= z >> np.uint64(31)
        z = z + (np.asarray(index).astype(np.uint64) + np.uint64(1)) * gamma
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / 16777216.0)
