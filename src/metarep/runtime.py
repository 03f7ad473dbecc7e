"""Where and how a run executes: its device and its CPU threads (``run.device``, ``run.threads``).

Neither changes what a run computes beyond floating-point rounding, so neither is part of a run's
identity. Nothing here imports torch until a CUDA device is checked or threads are set: the config
layer that validates these keys stays light.

The thread policy, the one place that decides how many torch intra-op threads a piece of work gets
(:func:`choose_threads`): an explicit count wins; otherwise a step that processes fewer than
:data:`PARALLEL_MIN_NUMBERS` numbers gets one thread (its per-call overhead and the threads'
synchronisation outweigh the arithmetic), and a larger one gets the thread budget: the cores this
process may use, or what a pool or Dask worker was given (:func:`limit_threads`; one per worker when
the workers fill the cores). The count depends only on the work's size and the machine's cores, never
on the load of the moment, so the same config gives the same numbers on the same machine.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

MAX_THREADS = 1024
AUTO = 0  # a thread count of 0: the policy decides (run.threads, threads= of the Python API)
# Numbers of a step's inputs (tasks x samples x numbers per sample; a run of the linear model: tasks x
# (m_in + m_out) x d) from which extra threads pay: between the largest fast step that gained nothing
# from a second core (1.5e6, `metarep bench`'s threads table) and the paper step (7.5e6) that ran 2.5x
# faster on two (issue 24, idle 2-core machine); docs/performance.md has the measurement.
PARALLEL_MIN_NUMBERS = 2**22
_budget: int = 0  # threads of a worker process (limit_threads); 0: the cores


def cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def thread_budget() -> int:
    """The most threads the policy gives a piece of work here: a worker's share, else the cores."""
    return _budget or cores()


def auto_threads(numbers: float) -> int:
    """Threads for a step that processes ``numbers`` numbers: one below :data:`PARALLEL_MIN_NUMBERS`,
    else :func:`thread_budget`."""
    return 1 if numbers < PARALLEL_MIN_NUMBERS else thread_budget()


def choose_threads(requested: int | None, numbers: float) -> int:
    """The policy: ``requested`` when it is a count (``>= 1``), else :func:`auto_threads` of the step's
    size (``0`` or ``None``: decide)."""
    return requested if requested else auto_threads(numbers)


def check_threads(threads: object, name: str = "threads") -> None:
    """``TypeError``/``ValueError`` naming ``name`` unless ``threads`` is ``None`` or an integer from 0 to
    :data:`MAX_THREADS` (the ``threads=`` of the Python API)."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError(f"{name}: expected an integer or None, got {type(threads).__name__}")
    if not 0 <= threads <= MAX_THREADS:
        raise ValueError(f"{name}: must be an integer from 0 to {MAX_THREADS} (0: chosen for the work), got {threads}")


def threads_for(requested: int | None, numbers: float) -> contextlib.AbstractContextManager[None]:
    """:func:`torch_threads` of :func:`choose_threads`; ``requested=None`` leaves torch's count alone."""
    if requested is None:
        return contextlib.nullcontext()
    return torch_threads(choose_threads(requested, numbers))


def worker_threads(jobs: int, scheduler: str | None = None) -> int:
    """Threads of each of ``jobs`` local worker processes (the cores shared out, at least one), or one
    per Dask worker (a worker process per core)."""
    return 1 if scheduler else max(1, cores() // max(1, jobs))


def limit_threads(n: int) -> None:
    """In a worker process: ``n`` threads at most for every piece of work it runs, and torch's count
    set to ``n`` (``0``: leave both). For worker processes only; a library call never uses it."""
    global _budget
    if not n:
        return
    import torch

    _budget = n
    torch.set_num_threads(n)


def check_device(device: object) -> None:
    """``cpu``, or ``cuda``/``cuda:N`` for a device this torch build has; ``ValueError`` naming
    ``run.device`` otherwise (torch is imported only for CUDA)."""
    allowed = "'cpu' or 'cuda[:N]'"
    if device == "cpu":
        return
    if not isinstance(device, str) or not (device == "cuda" or device.startswith("cuda:")):
        raise ValueError(f"run.device: must be {allowed}, got {device!r}")
    index = device.partition(":")[2]
    if device != "cuda" and not (index.isascii() and index.isdigit()):
        raise ValueError(f"run.device: must be {allowed} with N a device number, got {device!r}")
    import torch

    if not torch.cuda.is_available():
        raise ValueError(f"run.device: {device!r} needs CUDA, which this torch build lacks or cannot use; use 'cpu'")
    count = torch.cuda.device_count()
    if index and int(index) >= count:
        raise ValueError(f"run.device: {device!r}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the body with ``n`` torch intra-op threads (``0``: leave the count as it is), restoring the
    count afterwards. Pick ``n`` with :func:`choose_threads`."""
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
