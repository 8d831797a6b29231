"""TrainSettings: everything one ``ModelTrainer.train`` call was asked for, checked once.

The trainer's ``train`` keeps the research code's keyword arguments; they become one frozen
object here, validated with messages that name the argument, and that object is what the
training loop, the log header and the schedule read.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from multienc.engine import check_precision
from multienc.formats import schema
from multienc.formats.checkpoint import checked_field
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
    checkpoint_every: int = 0  # training steps between training checkpoints (0: only on Ctrl-C)
    precision: str = "fp32"  # of the linear layers: "fp32" or "bf16" (multienc.engine.check_precision)

    @classmethod
    def from_arguments(cls, num_lms: int, learning_rate: Union[float, Sequence[float]],
                       decoder_learning_rate: Optional[float], batch_size: int, epochs: int, shuffle_data: bool,
                       num_workers: int, base_path: str, save_best_model: bool, use_linear_scheduler: bool,
                       warmup_fraction: float, weight_decay: float, seed: int, group_by_length: bool,
                       max_grad_norm: float, eval_batch_size: int, progress: bool,
                       checkpoint_every: Optional[int] = None, precision: str = "fp32",
                       device: str = "cpu") -> "TrainSettings":
        """Validate ``train``'s arguments (ValueError naming the argument; NotImplementedError for a
        precision the model's ``device`` cannot run) and freeze them."""
        check_precision(precision, device)
        checkpoint_every = 0 if checkpoint_every is None else checkpoint_every
        for name, v, lo in (("batch_size", batch_size, 1), ("epochs", epochs, 0),
                            ("eval_batch_size", eval_batch_size, 1), ("checkpoint_every", checkpoint_every, 0)):
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
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 1 << 32:
            raise ValueError(f"seed must be a non-negative integer below 2**32, got {seed!r}")
        return cls(learning_rates=group_learning_rates(learning_rate, num_lms, decoder_learning_rate),
                   batch_size=batch_size, epochs=epochs, shuffle_data=bool(shuffle_data), base_path=base_path,
                   save_best_model=bool(save_best_model), use_linear_scheduler=bool(use_linear_scheduler),
                   warmup_fraction=float(warmup_fraction), weight_decay=float(weight_decay), seed=int(seed),
                   group_by_length=bool(group_by_length), max_grad_norm=float(max_grad_norm),
                   eval_batch_size=eval_batch_size, progress=bool(progress), checkpoint_every=checkpoint_every,
                   precision=precision)

    def to_json(self) -> Dict[str, Any]:
        """The settings as a training checkpoint records them (:meth:`from_json` reads them back)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any, source: str) -> "TrainSettings":
        """Settings recorded by :meth:`to_json`, checked (CheckpointError naming ``source`` and the field)."""
        checked_field(data, _SETTINGS_SCHEMA, "training_state.settings", source)
        return cls(**data)


_SETTINGS_SCHEMA = schema.Obj({
    "learning_rates": schema.Arr(schema.Float(0.0, FLOAT32_MAX), min_len=3, max_len=66),
    "batch_size": schema.Int(1, 1 << 31), "epochs": schema.Int(0, 1 << 31), "shuffle_data": schema.Bool(),
    "base_path": schema.Str(), "save_best_model": schema.Bool(), "use_linear_scheduler": schema.Bool(),
    "warmup_fraction": schema.Float(0.0, 1.0), "weight_decay": schema.Float(0.0, FLOAT32_MAX),
    "seed": schema.Int(0, (1 << 32) - 1), "group_by_length": schema.Bool(),
    "max_grad_norm": schema.Either(schema.Float(1e-45), schema.Const(math.inf), what="a number > 0"),
    "eval_batch_size": schema.Int(1, 1 << 31), "progress": schema.Bool(), "checkpoint_every": schema.Int(0, 1 << 31),
    "precision": schema.Const("fp32", "bf16"),
}, required=("learning_rates", "batch_size", "epochs", "shuffle_data", "base_path", "save_best_model",
             "use_linear_scheduler", "warmup_fraction", "weight_decay", "seed", "group_by_length", "max_grad_norm",
             "eval_batch_size", "progress", "checkpoint_every"), closed=True)
