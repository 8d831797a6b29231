"""One data-parallel training step of a task model (docs/distributed.md).

Every rank builds the inputs of the whole batch (the same on every rank: same data order, same
padding) and computes its shard, a contiguous block of sentences in rank order. The shard keeps
the whole batch's padded length, so dropout keeps the units the whole batch would keep there
(:meth:`~multienc.engine.TaskModel.forward_backward` with ``row0``), and its loss gradient is
scaled by its share of the batch's counted rows, so that the gradients summed across the ranks are
those of the whole batch's mean loss, as one process computes them. Each gradient buffer (the
head's, then each trainable LM's, as its backward finishes) is summed across the ranks by one
all-reduce that overlaps the next LM's backward (CPU: MPI in a helper thread; CUDA: NCCL on the
backend's stream); then every rank applies the same clipping and AdamW step to the same sums.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Sequence, Tuple

import numpy as np

from multienc.engine import TaskModel
from multienc.engine.task_model import Inputs
from multienc.parallel.group import ProcessGroup

__all__ = ["data_parallel_step", "loss_count", "shard_batch"]


def loss_count(targets: np.ndarray) -> int:
    """How many values a batch's mean loss averages over: the rows with a target (class or tag id
    >= 0) for cross-entropy and the CRF (its words), every value for regression (float targets)."""
    if np.issubdtype(targets.dtype, np.floating):
        return int(targets.size)
    return int(np.count_nonzero(targets >= 0))


def shard_batch(inputs: Inputs, targets: np.ndarray, extra: Dict[str, Any], lo: int, hi: int
                ) -> Tuple[Inputs, np.ndarray, Dict[str, Any]]:
    """Sentences ``lo .. hi - 1`` of a batch's task-model inputs, targets (one row or ``K`` rows per
    sentence) and per-sentence extra arguments (``lengths``), keeping the padded length."""
    B = inputs[0][0].shape[0]
    part = [tuple(None if a is None else a[lo:hi] for a in lm) for lm in inputs]
    rows = targets.reshape(B, -1)[lo:hi]
    return (part, rows if targets.ndim == 2 else rows.reshape(-1),
            {k: v[lo:hi] if isinstance(v, np.ndarray) else v for k, v in extra.items()})


def data_parallel_step(task_model: TaskModel, group: ProcessGroup, device: str, inputs: Inputs,
                       targets: np.ndarray, extra: Dict[str, Any], learning_rates: Sequence[float],
                       weight_decay: Sequence[float], trainable: Sequence[bool], seed: int,
                       max_grad_norm: float) -> Tuple[float, float]:
    """One step on this rank's shard of the batch ``inputs`` / ``targets`` / ``extra`` (the whole
    batch, identical on every rank). Returns (the whole batch's mean loss, gradient norm before
    clipping), the same on every rank. ValueError ("... no update was made") on every rank when
    the loss or the norm is not finite."""
    B = inputs[0][0].shape[0]
    lo, hi = group.shard(B)
    total = loss_count(targets)
    part, part_targets, part_extra = shard_batch(inputs, targets, extra, lo, hi)
    count = loss_count(part_targets)
    names = ["head"] + [f"lm.{i}" for i, t in enumerate(trainable) if t]
    if device == "cpu":
        views = dict(task_model.buffers("grads"))
        if hi > lo:
            loss = task_model.forward_backward(part, part_targets, trainable, seed=seed, row0=lo,
                                               grad_scale=count / total if total else 0.0, **part_extra)
            group.start_sum(views["head"])
            for name in names[1:]:
                task_model.backward_lm(int(name[3:]))
                group.start_sum(views[name])
        else:  # fewer sentences than ranks: this rank adds zeros
            loss = 0.0
            task_model.zero_grads(trainable)
            for name in names:
                group.start_sum(views[name])
        group.finish_sums()
    else:
        if hi > lo:
            loss = task_model.forward_backward(part, part_targets, trainable, seed=seed, row0=lo,
                                               grad_scale=count / total if total else 0.0, **part_extra)
            for name in names[1:]:
                task_model.backward_lm(int(name[3:]))
        else:
            loss = 0.0
            task_model.zero_grads(trainable)
        group.nccl().all_reduce_grads(task_model, names)
    mean = group.allreduce_sum(loss * count / total if total else 0.0, "the loss")
    if not math.isfinite(mean):
        raise ValueError(f"the loss is {'NaN' if math.isnan(mean) else 'infinite'}; no update was made")
    if device == "cpu":
        return mean, task_model.update(learning_rates, weight_decay, trainable, max_grad_norm)
    # the update waits for NCCL's sums on the stream: a dead peer would block it without the timeout
    return mean, group.timed("the gradient all-reduce (NCCL)",
                             lambda: task_model.update(learning_rates, weight_decay, trainable, max_grad_norm))
