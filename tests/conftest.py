import os

import pytest
import torch

from metarep.config import load_config

# `make test-stress` forces torch's intra-op threads of the test process (and, through OMP_NUM_THREADS, of
# the processes it starts) to 1 and to 4: the suite must hold whatever the thread count
if os.environ.get("METAREP_TEST_THREADS"):
    torch.set_num_threads(int(os.environ["METAREP_TEST_THREADS"]))

# a run small enough for end-to-end tests of the runner (about a second)
TINY_RUN = (
    "task.d=6",
    "task.k=2",
    "model.width=6",
    "data.tasks=20",
    "data.m_in=5",
    "data.m_out=4",
    "run.steps=20",
    "run.eval_every=10",
)


@pytest.fixture
def make_cfg():
    """Config from ``section.key=value`` overrides on top of the defaults."""

    def make(*overrides: str):
        return load_config(None, list(overrides))

    return make


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def linear_problem(width: int, d: int, k: int = 4, n: int = 7):
    """float64 parameters with a non-zero head and a batch of ``n`` tasks (5 inner, 3 outer samples)."""
    from metarep.models import LinearParams
    from metarep.tasks import LinearRepTasks

    t = LinearRepTasks.create(d, k, 0.3, "linear", generator=gen(0))
    batch = t.sample(n, 5, 3, gen(1))
    g = gen(2)
    params = LinearParams(
        torch.randn(d, width, generator=g, dtype=torch.float64) / d**0.5,
        torch.randn(width, generator=g, dtype=torch.float64),
    )
    return params, batch


class InProcess:
    """An executor that makes each run here, one after the other (no worker processes to start)."""

    def submit_all(self, fn, items, names=None):
        for item in items:
            yield item, fn(item)

    def close(self, cancel=False):
        pass
