"""TrainSettings: everything one ``ModelTrainer.train`` call was asked for, checked once.

The trainer's ``train`` keeps the research code's keyword arguments; they become one frozen
object here, validated with messages that name the argument, and that object is what the
training loop, the log header and the schedule read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np

from multienc.training.optim import FLOAT32_MAX, group_learning_rates


@dataclass(frozen=True)
class TrainSettings:
    """One training run's settings (see :meth:`multienc.training.ModelTrainer.train` for each).

    ``learning_rates`` holds one base rate per optimizer group: each language model, the
    combiner, the decoder. ``seed`` is always set (drawn from multienc's generator when the
    caller gave none)."""

    learning_rates: List[float]
    batch_size: int
    epochs: int
    shuffle_data: bool
    base_path: str
    save_best_model: bool
    use_linear_scheduler: bool
    warmup_fraction: float
    weight_decay: float
    seed: int
    group_by_length: bool
    max_grad_norm: float
    eval_batch_size: int
    progress: bool

    @classmethod
    def from_arguments(cls, num_lms: int, learning_rate: Union[float, Sequence[float]],
                       decoder_learning_rate: Optional[float], batch_size: int, epochs: int, shuffle_data: bool,
                       num_workers: int, base_path: str, save_best_model: bool, use_linear_scheduler: bool,
                       warmup_fraction: float, weight_decay: float, seed: int, group_by_length: bool,
                       max_grad_norm: float, eval_batch_size: int, progress: bool) -> "TrainSettings":
        """Validate ``train``'s arguments (ValueError naming the argument) and freeze them."""
        for name, v, lo in (("batch_size", batch_size, 1), ("epochs", epochs, 0),
                            ("eval_batch_size", eval_batch_size, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if num_workers != 0:
            raise ValueError(f"num_workers={num_workers!r}: multienc has no data-loader workers (batches are "
                             f"tokenized in the training loop, the step runs in C on all threads); leave it at 0")
        if isinstance(warmup_fraction, bool) or not isinstance(warmup_fraction, (int, float)) \
                or not 0.0 <= warmup_fraction <= 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1], got {warmup_fraction!r}")
        if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) \
                or not 0.0 <= weight_decay <= FLOAT32_MAX:
            raise ValueError(f"weight_decay must be a finite number >= 0 that float32 can hold, got {weight_decay!r}")
        if isinstance(max_grad_norm, bool) or not isinstance(max_grad_norm, (int, float)) or not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be a number > 0 (inf: no clipping), got {max_grad_norm!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        return cls(learning_rates=group_learning_rates(learning_rate, num_lms, decoder_learning_rate),
                   batch_size=batch_size, epochs=epochs, shuffle_data=bool(shuffle_data), base_path=base_path,
                   save_best_model=bool(save_best_model), use_linear_scheduler=bool(use_linear_scheduler),
                   warmup_fraction=float(warmup_fraction), weight_decay=float(weight_decay), seed=int(seed),
                   group_by_length=bool(group_by_length), max_grad_norm=float(max_grad_norm),
                   eval_batch_size=eval_batch_size, progress=bool(progress))
