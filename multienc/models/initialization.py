"""Initial weights of new layers (combiner, decoder, CRF), drawn as torch draws them, from
multienc's own random generator.

New combiners and task heads draw their initial weights from the generator, so a program
that calls ``multienc.set_seed(s)`` (or starts fresh: the default seed is 0) builds the same
model every run. The trainer's ``seed=`` re-draws a model's untrained head from its own seed.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

_generator = np.random.default_rng(0)


def set_seed(seed: int) -> None:
    """Re-seed the generator that new heads and combiners initialise from."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    _generator = np.random.default_rng(int(seed))


def generator() -> np.random.Generator:
    """The current generator."""
    return _generator


def linear_init(rng: np.random.Generator, out_features: int, in_features: int) -> Tuple[np.ndarray, np.ndarray]:
    """torch.nn.Linear's default initialisation: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias."""
    bound = 1.0 / np.sqrt(in_features)
    w = rng.uniform(-bound, bound, (out_features, in_features)).astype(np.float32)
    b = rng.uniform(-bound, bound, out_features).astype(np.float32)
    return w, b


def xavier_uniform(rng: np.random.Generator, out_features: int, in_features: int) -> np.ndarray:
    """torch.nn.init.xavier_uniform_ (gain 1)."""
    a = np.sqrt(6.0 / (in_features + out_features))
    return rng.uniform(-a, a, (out_features, in_features)).astype(np.float32)
