"""Several processes: the ranks of a data-parallel job (:class:`~multienc.parallel.group.ProcessGroup`,
MPI through mpi4py, imported only when a group is made) and one data-parallel training step
(:func:`~multienc.parallel.step.data_parallel_step`: CPU gradients summed with MPI, CUDA gradients
with NCCL). See docs/distributed.md.

Uses :mod:`multienc.engine` and nothing else of multienc.
"""
from multienc.parallel.group import DEFAULT_TIMEOUT, TIMEOUT_VARIABLE, ProcessGroup, launched_ranks, shard_range
from multienc.parallel.step import data_parallel_step, loss_count, shard_batch

__all__ = ["ProcessGroup", "DEFAULT_TIMEOUT", "TIMEOUT_VARIABLE", "launched_ranks", "shard_range",
           "data_parallel_step", "loss_count", "shard_batch"]
