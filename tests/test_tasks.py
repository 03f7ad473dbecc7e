import pytest
import torch
from conftest import gen

from metarep.tasks import FreshTasks, LinearRepTasks, TaskPool, task_cov_diag


@pytest.mark.parametrize("kind", ["identity", "linear"])
def test_task_cov_trace_defaults_to_k_and_can_be_set(kind):
    s = task_cov_diag(5, kind)
    assert float(s.sum()) == pytest.approx(5.0)
    s2 = task_cov_diag(5, kind, trace=2.5)
    assert float(s2.sum()) == pytest.approx(2.5)
    if kind == "linear":  # ∝ diag(1..k)
        assert torch.allclose(s / s[0], torch.arange(1, 6, dtype=torch.float64))


def test_ground_truth_is_orthonormal_with_complement():
    t = LinearRepTasks.create(12, 4, 1.0, generator=gen(1))
    Q = torch.cat([t.B_star, t.B_perp], 1)
    assert Q.shape == (12, 12)
    assert torch.allclose(Q.T @ Q, torch.eye(12, dtype=torch.float64), atol=1e-12)


def test_sampling_is_seeded_and_matches_moments():
    t = LinearRepTasks.create(6, 2, 0.5, "linear", generator=gen(2))
    a = t.sample(20000, 3, 2, gen(3))
    b = t.sample(20000, 3, 2, gen(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert a.X_in.shape == (20000, 3, 6) and a.y_out.shape == (20000, 2)
    # Var y = E‖θ‖² + σ² = tr Σ* + σ² = 2.5; the standard error of the variance estimate here is
    # about 2.5·sqrt(2/60000) ≈ 0.015, so 0.08 is over five standard errors.
    _, y = a.merged()
    assert float(y.var()) == pytest.approx(2.5, abs=0.08)


def test_float32_sampling_dtype():
    t = LinearRepTasks.create(6, 2, 0.5, generator=gen(2), dtype=torch.float32)
    b = t.sample(4, 3, 2, gen(0))
    assert b.X_in.dtype == torch.float32 and t.B_star.dtype == torch.float64


def test_pool_minibatches_and_fresh_chunks():
    t = LinearRepTasks.create(6, 2, 0.5, generator=gen(2))
    pool = TaskPool(t.sample(10, 3, 2, gen(0)), task_batch=4, generator=gen(1))
    (b,) = list(pool.batches())
    assert b.num_tasks == 4
    pool = TaskPool(t.sample(10, 3, 2, gen(0)), task_batch=None, generator=gen(1), chunk=4)
    chunks = list(pool.batches())
    assert [c.num_tasks for c in chunks] == [4, 4, 2]
    assert torch.equal(torch.cat([c.X_out for c in chunks]), pool.pool.X_out)
    fresh = FreshTasks(t, 10, 3, 2, gen(0), chunk=3)
    sizes = [c.num_tasks for c in fresh.batches()]
    assert sizes == [3, 3, 3, 1]
