"""The thread policy (metarep.runtime) and the chunk sizes (metarep.limits): the decisions, not the speed."""

import pytest
import torch
from torch import nn

import metarep
from metarep import limits, runtime
from metarep.config import load_config
from metarep.learner import MetaLearner
from metarep.tasks import TaskBatch, TaskPool

TINY = ["task.d=6", "task.k=2", "data.tasks=20", "run.steps=6", "run.eval_every=3"]


@pytest.fixture
def cores(monkeypatch):
    """Pretend the process may use 4 cores, with no worker budget set."""
    monkeypatch.setattr(runtime, "cores", lambda: 4)
    monkeypatch.setattr(runtime, "_budget", 0)


def test_a_small_step_gets_one_thread_and_a_large_one_all_cores(cores):
    assert runtime.auto_threads(runtime.PARALLEL_MIN_NUMBERS - 1) == 1
    assert runtime.auto_threads(runtime.PARALLEL_MIN_NUMBERS) == 4
    paper = load_config(None, [])  # N = 5000, m = 30, d = 50: 7.5e6 numbers a step
    assert runtime.choose_threads(paper.run.threads, limits.step_batch_numbers(paper)) == 4
    for small in (TINY, ["data.tasks=inf"], ["data.tasks=1000"]):
        cfg = load_config(None, small)
        assert runtime.choose_threads(cfg.run.threads, limits.step_batch_numbers(cfg)) == 1, small


def test_an_explicit_count_wins(cores):
    assert runtime.choose_threads(3, 1.0) == 3
    assert runtime.choose_threads(1, 1e12) == 1
    assert load_config(None, []).run.threads == 0  # the default: the policy decides


def test_workers_get_their_share_of_the_cores(cores, monkeypatch):
    assert runtime.worker_threads(1, "tcp://host:8786") == 1  # Dask: a worker process per core
    assert [runtime.worker_threads(j) for j in (1, 2, 3, 4, 8)] == [4, 2, 1, 1, 1]
    before = torch.get_num_threads()
    try:
        runtime.limit_threads(1)  # in a worker process: a large step gets its share, no more
        assert runtime.auto_threads(1e12) == 1 and torch.get_num_threads() == 1
        assert runtime.choose_threads(2, 1e12) == 2  # run.threads in the run's config still applies
    finally:
        torch.set_num_threads(before)


def _train_threads(overrides):
    seen = []
    cfg = load_config(None, overrides)
    metarep.train(cfg, progress=False, on_eval=lambda row: seen.append(torch.get_num_threads()))
    return set(seen)


def test_train_uses_the_policy_and_restores_the_count(cores, monkeypatch):
    before = torch.get_num_threads()
    assert _train_threads(TINY) == {1}
    assert torch.get_num_threads() == before
    monkeypatch.setattr(runtime, "cores", lambda: 2)
    monkeypatch.setattr(runtime, "PARALLEL_MIN_NUMBERS", 100)  # the tiny step counts as large
    assert _train_threads(TINY) == {2}
    assert _train_threads([*TINY, "run.threads=1"]) == {1}
    assert torch.get_num_threads() == before


def test_results_do_not_depend_on_the_thread_count():
    """The fast path (a dual pool) and the metrics give the same numbers at 1 and 2 threads; the same
    config twice gives identical ones."""
    args = ["task.d=20", "task.k=3", "data.tasks=3000", "run.steps=5", "run.eval_every=1", "run.dtype=float64"]
    one, two = (metarep.train(load_config(None, [*args, f"run.threads={n}"]), progress=False) for n in (1, 2))
    for a, b in zip(one.history, two.history):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-15), k
    again = metarep.train(load_config(None, [*args, "run.threads=2"]), progress=False)
    assert again.history == two.history


def _learner_and_batch():
    torch.manual_seed(0)
    learner = MetaLearner(nn.Sequential(nn.Linear(1, 8), nn.ReLU()), nn.Linear(8, 1), method="fo_anil")
    g = torch.Generator().manual_seed(0)
    X = torch.randn(4, 5, 6, 1, generator=g)
    return learner, TaskBatch(X[0], X[1, ..., 0], X[2], X[3, ..., 0])


@pytest.mark.parametrize(("threads", "expected"), [(0, 1), (3, 3), (None, "before")])
def test_metalearner_fit_picks_threads_for_small_models(cores, threads, expected):
    learner, batch = _learner_and_batch()
    seen = []

    def loss(pred, y):
        seen.append(torch.get_num_threads())
        return ((pred - y) ** 2).mean()

    learner.loss = loss
    before = torch.get_num_threads()
    learner.fit(batch, iterations=2, progress=False, threads=threads)
    assert set(seen) == {before if expected == "before" else expected}
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(("threads", "error"), [(-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_metalearner_fit_refuses_bad_threads(threads, error):
    learner, batch = _learner_and_batch()
    with pytest.raises(error, match="^threads: "):
        learner.fit(batch, iterations=1, progress=False, threads=threads)


def test_a_pool_runs_in_one_chunk_when_its_temporaries_fit_the_budget(monkeypatch):
    assert limits.pool_chunk(5000, 30, 50) == 5000  # the paper's pool as sampled: 30 MB
    assert limits.pool_chunk(20000, 1, 200) == 20000  # the large one in two layouts: vectors of d
    big = limits.pool_chunk(20000, 30, 200)  # 480 MB: chunks of POOL_CHUNK_NUMBERS numbers
    assert big == limits.POOL_CHUNK_NUMBERS // (30 * 200) < 20000
    assert limits.pool_chunk(20000, 30, 200, number_bytes=2) == 20000
    g = torch.Generator().manual_seed(0)
    batch = TaskBatch(torch.zeros(40, 3, 2), torch.zeros(40, 3), torch.zeros(40, 2, 2), torch.zeros(40, 2))
    assert TaskPool(batch, None, g).chunk == 40
    monkeypatch.setattr(limits, "ONE_CHUNK_BYTES", 100)
    monkeypatch.setattr(limits, "POOL_CHUNK_NUMBERS", 50)
    assert TaskPool(batch, None, g).chunk == 5  # 50 numbers // (5 samples x d = 2)
    assert TaskPool(batch, None, g, layout="dual").chunk == 25


def test_the_memory_estimate_counts_the_chunk_temporaries(monkeypatch):
    cfg = load_config(None, ["method.name=reptile", "data.tasks=2000"])  # the samples' layout and temporaries
    one = limits.run_bytes(cfg)["tasks"]
    monkeypatch.setattr(limits, "ONE_CHUNK_BYTES", 1)
    monkeypatch.setattr(limits, "POOL_CHUNK_NUMBERS", 30 * 50)  # one task a chunk
    assert limits.run_bytes(cfg)["tasks"] < one
