"""Optimizer settings computed in Python once per step (scalars only): the
linear warmup/decay schedule and the per-group learning rates. The AdamW
update itself runs in C inside the training step."""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

#: the largest learning rate the float32 optimizer update can represent
FLOAT32_MAX = 3.4028234663852886e38


def linear_schedule_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of HF ``get_linear_schedule_with_warmup`` at optimizer step ``step`` (0-based).

    ``step / max(1, warmup)`` while warming up, then a linear decay to 0 at ``total_steps``.
    """
    if step < warmup_steps:
        return float(step) / float(max(1, warmup_steps))
    return max(0.0, float(total_steps - step) / float(max(1, total_steps - warmup_steps)))


def group_learning_rates(learning_rate: Union[float, Sequence[float]], num_lms: int,
                         decoder_learning_rate: Optional[float] = None) -> List[float]:
    """Base learning rates of the optimizer groups: each LM, the combiner, the decoder.

    ``learning_rate`` is one rate for every LM or a list with one rate per LM. The
    combiner and the decoder (new, randomly initialised layers) take
    ``decoder_learning_rate`` when given, else the largest LM rate.
    """
    rates = [learning_rate] if isinstance(learning_rate, (int, float)) else list(learning_rate)
    if not rates or not all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in rates):
        raise ValueError(f"learning_rate must be a number or a list of numbers, got {learning_rate!r}")
    if len(rates) not in (1, num_lms):
        raise ValueError(f"learning_rate has {len(rates)} values but the model has {num_lms} language "
                         f"models: give one rate, or one per language model")
    for name, values in (("learning_rate", rates), ("decoder_learning_rate",
                                                    [] if decoder_learning_rate is None else [decoder_learning_rate])):
        for r in values:
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 <= r <= FLOAT32_MAX:
                raise ValueError(f"{name} must be a finite number >= 0 that float32 can hold "
                                 f"(at most {FLOAT32_MAX:.4g}), got {r!r}")
    lm_rates = [float(r) for r in rates] * (num_lms if len(rates) == 1 else 1)
    head = float(decoder_learning_rate) if decoder_learning_rate is not None else max(lm_rates)
    return lm_rates + [head, head]
