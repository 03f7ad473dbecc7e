"""Where and how a run executes: its device and its CPU threads (``run.device``, ``run.threads``).

Neither changes what a run computes beyond floating-point rounding, so neither is part of a run's
identity. Nothing here imports torch until a CUDA device is checked or threads are set: the config
layer that validates these keys stays light.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

MAX_THREADS = 1024


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
    count afterwards.

    The linear harness is small: on a 2-core machine with one core busy, a paper-setting step took
    30 ms with two threads and 11 ms with one (6.4 ms with two on an idle machine).
    """
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
