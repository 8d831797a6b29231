"""ProcessGroup: the processes (MPI ranks) of one data-parallel job, with a timeout on every
collective operation and fail-fast error handling (docs/distributed.md).

MPI is reached through mpi4py, imported only when a group is made, so that multienc installs,
imports and runs without MPI. A group wraps an MPI communicator (``COMM_WORLD`` or a part of it
from :meth:`ProcessGroup.split`). Every collective waits at most :attr:`ProcessGroup.timeout`
seconds (``$MULTIENC_COLLECTIVE_TIMEOUT``, default :data:`DEFAULT_TIMEOUT`): a rank that died, hangs
or took another path would otherwise leave the others waiting forever; on expiry the waiting rank
prints what it waited for and aborts the whole job (``MPI_Abort``), so ``mpirun`` / ``srun`` exits
non-zero. A rank that raises inside :meth:`ProcessGroup.fail_fast` (and, in a job of several ranks,
any uncaught exception) prints its error naming the rank and aborts the job at once.
"""
from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Type

import numpy as np

from multienc.engine.nccl import NcclCommunicator, nccl_unique_id

__all__ = ["ProcessGroup", "DEFAULT_TIMEOUT", "TIMEOUT_VARIABLE", "launched_ranks", "shard_range"]

#: seconds a collective operation may wait for the other ranks before the job is aborted
DEFAULT_TIMEOUT = 300.0
#: the environment variable that overrides :data:`DEFAULT_TIMEOUT`
TIMEOUT_VARIABLE = "MULTIENC_COLLECTIVE_TIMEOUT"

#: variables launchers set in every process they start: Open MPI's mpirun, MPICH / Intel MPI's
#: (PMI), Slurm's srun (per job step)
_LAUNCHER_SIZE = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS")


def launched_ranks() -> int:
    """How many processes the launcher (mpirun, mpiexec, srun) started for this job, read from its
    environment variables without starting MPI; 1 when none is set."""
    for name in _LAUNCHER_SIZE:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def shard_range(n: int, rank: int, size: int) -> Tuple[int, int]:
    """Rows ``[lo, hi)`` of ``n`` that rank ``rank`` of ``size`` takes: contiguous blocks in rank
    order whose lengths differ by at most one (the first ranks get the shorter ones)."""
    return n * rank // size, n * (rank + 1) // size


def _timeout_from_environment() -> float:
    raw = os.environ.get(TIMEOUT_VARIABLE)
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(f"{TIMEOUT_VARIABLE}={raw!r}: expected a number of seconds > 0")
    return value


def _mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise RuntimeError(
            f"distributed training needs mpi4py and an MPI library ({e}): install an MPI (Debian/Ubuntu: "
            "apt-get install openmpi-bin libopenmpi-dev) and then `pip install mpi4py`, and start the ranks "
            "with mpirun -n N (or srun)") from None
    return MPI


class _Watchdog:
    """One thread per group that aborts the job when an armed deadline passes."""

    def __init__(self, group: "ProcessGroup"):
        self._group = group
        self._cond = threading.Condition()
        self._what: Optional[str] = None
        self._deadline = 0.0
        self._thread = threading.Thread(target=self._run, name="multienc-collective-watchdog", daemon=True)
        self._thread.start()

    def arm(self, what: str) -> None:
        with self._cond:
            self._what, self._deadline = what, time.monotonic() + self._group.timeout
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._what = None

    def _run(self) -> None:
        with self._cond:
            while True:
                if self._what is None:
                    self._cond.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                what = self._what
                break
        self._group.abort(f"{what} did not complete within {self._group.timeout:g} s: another rank failed, was "
                          f"killed or is stuck ({TIMEOUT_VARIABLE} sets this timeout)")


class ProcessGroup:
    """The ranks of one data-parallel job. Make it with :meth:`world` (every process mpirun / srun
    started) or :meth:`split`; every rank must call the same collectives in the same order.

    Args:
        comm: an mpi4py communicator.
        timeout: seconds any collective may wait (default: ``$MULTIENC_COLLECTIVE_TIMEOUT``, else
            :data:`DEFAULT_TIMEOUT`).
    """

    def __init__(self, comm: Any, timeout: Optional[float] = None):
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        self._comm = comm
        self._mpi = _mpi()
        #: this process's rank in the group, and the number of ranks
        self.rank: int = comm.Get_rank()
        self.size: int = comm.Get_size()
        #: seconds a collective operation may wait before the job is aborted
        self.timeout: float = float(timeout) if timeout is not None else _timeout_from_environment()
        self._world_rank = self._mpi.COMM_WORLD.Get_rank()
        # the helper thread of start_sum and the watchdog's abort call MPI beside the main thread
        self._threads = self._mpi.Query_thread() == self._mpi.THREAD_MULTIPLE
        self._watchdog: Optional[_Watchdog] = None
        self._pool: Optional[ThreadPoolExecutor] = None
        self._pending: List[Future] = []
        self._nccl: Optional[NcclCommunicator] = None
        #: seconds spent in gradient all-reduces (in the helper thread) and waiting for them (exposed)
        self.reduce_seconds = 0.0
        self.reduce_wait_seconds = 0.0

    @classmethod
    def world(cls, timeout: Optional[float] = None) -> "ProcessGroup":
        """Every process of the job (``MPI.COMM_WORLD``). In a job of several ranks, an exception that
        nothing catches then aborts the whole job after printing it with its rank (instead of leaving
        the other ranks waiting)."""
        group = cls(_mpi().COMM_WORLD, timeout)
        if group.size > 1:
            _install_excepthook(group)
        return group

    def __repr__(self) -> str:
        return f"ProcessGroup(rank={self.rank}, size={self.size}, timeout={self.timeout:g})"

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the rank that writes logs, loss.tsv and checkpoints."""
        return self.rank == 0

    def shard(self, n: int) -> Tuple[int, int]:
        """This rank's rows ``[lo, hi)`` of a batch of ``n`` (:func:`shard_range`)."""
        return shard_range(n, self.rank, self.size)

    def split(self, group_size: int) -> "ProcessGroup":
        """Consecutive ranks in groups of ``group_size`` (the last may be smaller): the group this rank
        belongs to, with the same timeout (collective over this group)."""
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"group_size must be an integer >= 1, got {group_size!r}")
        comm = self.timed("split", lambda: self._comm.Split(self.rank // group_size, self.rank))
        return ProcessGroup(comm, self.timeout)

    # ------------------------------------------------------------ errors
    def abort(self, message: str) -> None:
        """Print ``message`` naming this rank to stderr and end the whole job (``MPI_Abort``)."""
        sys.stderr.write(f"multienc: rank {self._world_rank}: {message}\n")
        sys.stderr.flush()
        self._mpi.COMM_WORLD.Abort(1)

    @contextmanager
    def fail_fast(self, collective_errors: Sequence[Type[BaseException]] = ()) -> Iterator[None]:
        """Run the block; an exception that is not one of ``collective_errors`` (errors that every
        rank raises at the same point, which propagate normally) ends the whole job at once with its
        traceback and this rank's number, when the group has several ranks."""
        try:
            yield
        except tuple(collective_errors):
            raise
        except BaseException as e:  # every other exception: the peers would wait for this rank forever
            if self.size == 1:
                raise
            self.abort("failed:\n" + "".join(traceback.format_exception(type(e), e, e.__traceback__)))

    # ------------------------------------------------------------ collectives
    def timed(self, what: str, call: Any) -> Any:
        """``call()`` under this group's timeout: when it has not returned after :attr:`timeout`
        seconds, the job is aborted with a message naming ``what`` and this rank."""
        if self.size == 1:
            return call()
        if self._watchdog is None:
            self._watchdog = _Watchdog(self)
        self._watchdog.arm(what)
        try:
            return call()
        finally:
            self._watchdog.disarm()

    def barrier(self, what: str = "barrier") -> None:
        """Wait for every rank."""
        self.timed(what, self._comm.Barrier)

    def wait_all(self) -> None:
        """A barrier without the timeout, for work of very unequal length (a rank that fails still
        ends the job: its error aborts it, and mpirun / srun end the job of a rank that dies)."""
        self._comm.Barrier()

    def allreduce_sum(self, value: float, what: str = "sum") -> float:
        """The sum of ``value`` over the ranks (float64), the same on every rank."""
        buf = np.array([value], np.float64)
        self.timed(what, lambda: self._comm.Allreduce(self._mpi.IN_PLACE, buf, op=self._mpi.SUM))
        return float(buf[0])

    def allgather(self, obj: Any, what: str = "gather") -> List[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        return self.timed(what, lambda: self._comm.allgather(obj))

    def broadcast(self, obj: Any, root: int = 0, what: str = "broadcast") -> Any:
        """Rank ``root``'s ``obj`` (picklable) on every rank."""
        return self.timed(what, lambda: self._comm.bcast(obj, root=root))

    def broadcast_arrays(self, arrays: Sequence[np.ndarray], root: int = 0, what: str = "broadcast") -> None:
        """Overwrite each array in place with rank ``root``'s (same shapes and dtypes on every rank)."""
        for a in arrays:
            self.timed(what, lambda a=a: self._comm.Bcast(a, root=root))

    def check_same(self, value: Any, what: str) -> None:
        """Raise RuntimeError on every rank when ``value`` (picklable, comparable) differs between ranks."""
        values = self.allgather(value, f"comparing {what}")
        if any(v != values[0] for v in values):
            raise RuntimeError(f"the ranks disagree on {what}: " + ", ".join(
                f"rank {r}: {v}" for r, v in enumerate(values)))

    def nccl(self) -> NcclCommunicator:
        """This group's NCCL communicator over the CUDA backend's device (made on first use, a
        collective: rank 0's unique id is broadcast)."""
        if self._nccl is None:
            uid = self.broadcast(nccl_unique_id() if self.rank == 0 else None, what="the NCCL unique id")
            self._nccl = self.timed("the NCCL set-up", lambda: NcclCommunicator(uid, self.size, self.rank))
        return self._nccl

    # ------------------------------------------------------------ gradient sums
    def start_sum(self, buffer: np.ndarray) -> None:
        """Start summing ``buffer`` (a float32 array, e.g. a view of a gradient buffer) across the ranks
        in place, in a helper thread (mpi4py releases the GIL), so that it overlaps whatever this thread
        computes next; :meth:`finish_sums` waits (the timeout counts from there). One MPI all-reduce per
        buffer, in call order; no other collective may run before :meth:`finish_sums`."""
        if self.size == 1:
            return
        if not self._threads:  # MPI without THREAD_MULTIPLE: sum now, no overlap
            self.timed("the gradient all-reduce", lambda: self._sum(buffer))
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="multienc-allreduce")
        self._pending.append(self._pool.submit(self._sum, buffer))

    def _sum(self, buffer: np.ndarray) -> None:
        t0 = time.perf_counter()
        self._comm.Allreduce(self._mpi.IN_PLACE, buffer, op=self._mpi.SUM)
        self.reduce_seconds += time.perf_counter() - t0

    def finish_sums(self) -> None:
        """Wait for the sums :meth:`start_sum` started (their errors are raised here)."""
        if not self._pending:
            return
        t0 = time.perf_counter()
        try:
            self.timed("the gradient all-reduce", lambda: [f.result() for f in self._pending])
        finally:
            self._pending = []
            self.reduce_wait_seconds += time.perf_counter() - t0


def _install_excepthook(group: ProcessGroup) -> None:
    """An uncaught exception on one rank aborts the job (with its traceback and rank) instead of
    leaving the other ranks in a collective until their timeout. Once per process."""
    if getattr(sys.excepthook, "multienc_aborts", False):
        return
    previous = sys.excepthook

    def hook(kind: Type[BaseException], value: BaseException, tb: Any) -> None:
        previous(kind, value, tb)
        group.abort("ended with the uncaught exception above")

    hook.multienc_aborts = True  # type: ignore[attr-defined]
    sys.excepthook = hook
