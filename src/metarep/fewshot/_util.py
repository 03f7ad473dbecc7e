"""Small helpers shared by the benchmarks: seeds from one integer, and a thread-count context."""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch


def spawn_seeds(seed: int, names: tuple[str, ...]) -> dict[str, int]:
    """Independent seeds for ``names`` from one ``numpy.random.SeedSequence``."""
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: int(c.generate_state(1, dtype=np.uint64)[0] >> 1) for n, c in zip(names, children)}


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads (``None``: leave as is), restoring the count afterwards.

    The benchmark networks are small: a single thread is as fast as two on an idle 2-core machine and
    several times faster on a busy one (measured), so the benchmarks default to one.
    """
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
