"""multienc's own random generator for weight initialisation.

New combiners and task heads draw their initial weights from it, so a program
that calls ``multienc.set_seed(s)`` (or starts fresh: the default seed is 0)
builds the same model every run. The trainer's ``seed=`` re-draws a model's
untrained head from its own seed.
"""
from __future__ import annotations

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
