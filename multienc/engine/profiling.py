"""Where the engine's time goes: the task model's backend calls timed by phase.

    from multienc.engine import op_profile
    with op_profile() as prof:
        trainer.train(...)
    prof.seconds   # {'matrix products': 81.2, 'attention': 6.0, 'other element-wise': 9.1, 'head': 0.2,
                   #  'optimizer': 17.5}

For benchmarks (``benchmarks/bench_seed_job.py``). The timing is process-wide and costs one
clock read per op while on; times of language models that run at the same time add up.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, Iterator

from multienc.engine import _C

__all__ = ["OpProfile", "op_profile"]


class OpProfile:
    """Seconds per phase of the task model's ops (filled in when the ``op_profile`` block ends)."""

    def __init__(self) -> None:
        self.seconds: Dict[str, float] = {}


@contextmanager
def op_profile() -> Iterator[OpProfile]:
    """Time every backend call of task models inside the block, by phase (matrix products,
    attention, other element-wise ops, the head, the optimizer)."""
    result = OpProfile()
    _C.profile_read()  # drop anything counted before
    _C.profile_ops(True)
    try:
        yield result
    finally:
        _C.profile_ops(False)
        result.seconds = _C.profile_read()
