"""NCCL all-reduce of the CUDA backend's gradient buffers, for data-parallel training with one
process per GPU (docs/distributed.md).

The extension ``multienc.engine._C_nccl`` is built only where nvcc and NCCL were found at install
time and imported only here, when a communicator is made: single-GPU and CPU work never need
libnccl. Sums run in place on the device buffers, queued on the CUDA backend's stream, so they
follow the backward that wrote the gradients and precede the optimizer that reads them without a
host synchronisation. Sharing the unique id among the ranks is the caller's job (MPI in
:mod:`multienc.parallel`).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence


def _module() -> Any:
    try:
        from multienc.engine import _C_nccl
    except ImportError as e:
        raise RuntimeError(f"NCCL is not available to multienc: {e}. The module multienc.engine._C_nccl is built "
                           "when nvcc and NCCL (nccl.h, libnccl.so; NCCL_HOME) are found at install time "
                           "(MULTIENC_NCCL=1 makes a missing NCCL an install error)") from None
    return _C_nccl


def nccl_unique_id() -> bytes:
    """A new NCCL unique id, made by rank 0 and shared with the other ranks before they build
    their :class:`NcclCommunicator`."""
    return _module().unique_id()


def nccl_version() -> int:
    """The NCCL library's version code (``major * 10000 + minor * 100 + patch``)."""
    return _module().version()


class NcclCommunicator:
    """One rank of an NCCL communicator over this process's CUDA device (the backend's; create the
    CUDA model or encoder first). Every rank calls the same methods in the same order.

    Args:
        unique_id: :func:`nccl_unique_id` of rank 0, the same bytes on every rank.
        nranks: number of ranks; rank: this process's rank in ``0 .. nranks - 1``.
    """

    def __init__(self, unique_id: bytes, nranks: int, rank: int):
        self._c = _module().Communicator(unique_id, nranks, rank)
        self.rank, self.nranks = rank, nranks

    def all_reduce_grads(self, model: Any, names: Optional[Sequence[str]] = None) -> None:
        """Sum the gradient buffers of ``model`` (a :class:`~multienc.engine.TaskModel` or
        :class:`~multienc.engine.Encoder`) across the ranks, in place, one NCCL all-reduce per buffer
        in one group, queued on the backend's stream (returns before they finish). ``names``: only
        these buffers (``"head"``, ``"lm.<i>"``; an encoder's is ``"encoder"``)."""
        bufs = model.buffer_addresses("grads")
        self._c.all_reduce([(addr, n) for name, addr, n in bufs if names is None or name in names])

    def async_error(self) -> Optional[str]:
        """The communicator's asynchronous error (a failed peer or link), or None."""
        return self._c.async_error()
