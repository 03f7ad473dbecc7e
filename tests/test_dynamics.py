"""Infinite-task FO-ANIL dynamics against the theory's predictions (MATH.md §5)."""

import numpy as np
import pytest
import torch

from metarep.train import build, train

INF = ("data.tasks=inf", 'run.dtype="float64"')


@pytest.mark.slow
@pytest.mark.parametrize("cov", ["identity", "linear"])
@pytest.mark.parametrize("width", [5, 50])  # k' = k and k' = d
def test_signal_eigs_converge_to_prediction(make_cfg, cov, width):
    cfg = make_cfg(*INF, f'task.task_cov="{cov}"', f"model.width={width}", "run.steps=2000", "run.eval_every=500")
    s = train(cfg, progress=False).summary
    got, want = np.array(s["signal_eigs"]), np.array(s["predicted_signal_eigs"])
    assert np.max(np.abs(got - want) / want) < 1e-6
    assert s["head_norm"] == 0.0  # w_0 = 0 stays exactly 0 in the infinite regime
    assert s["subspace_sin"] < 1e-6


@pytest.mark.slow
def test_unlearning_rate_approaches_prediction(make_cfg):
    """t · ‖B⊥ᵀB_t‖₂² → m_in / (2α²β(tr Σ* + σ²)), approached like C·t/(t + C/s_0)."""
    cfg = make_cfg(*INF, "run.steps=4000", "run.eval_every=1000")
    r = train(cfg, progress=False)
    rates = [row["perp_rate"] for row in r.history[1:]]
    c = r.summary["predicted_perp_rate"]
    assert abs(rates[-1] / c - 1) < 0.05
    assert all(abs(b / c - 1) < abs(a / c - 1) for a, b in zip(rates, rates[1:]))  # getting closer


@pytest.mark.slow
def test_huge_m_in_unlearns_nothing_outside_the_learned_rows(make_cfg):
    """With b = 0, Φ_t Q = Φ_0 Q exactly, Q the projector on the null space of Ψ_0 (MATH.md §5.2)."""

    def null_part(cfg):
        tasks, state, _, _, _ = build(cfg)
        p0 = state.params
        pt = train(cfg, progress=False).params
        Psi0 = tasks.B_star.T @ p0.B
        _, _, Vh = torch.linalg.svd(Psi0)
        Q = Vh[cfg.task.k :].T @ Vh[cfg.task.k :]  # (k', k'), rank k' − k
        return tasks.B_perp.T @ p0.B @ Q, tasks.B_perp.T @ pt.B @ Q

    base = (*INF, "run.steps=1500", "run.eval_every=500")
    before, after = null_part(make_cfg(*base, "data.m_in=1000000000000"))
    assert float(torch.linalg.norm(before)) > 1.0  # there is something to unlearn
    assert float(torch.linalg.norm(after - before)) < 1e-6 * float(torch.linalg.norm(before))
    before, after = null_part(make_cfg(*base, "data.m_in=20"))
    assert float(torch.linalg.norm(after)) < 0.5 * float(torch.linalg.norm(before))


@pytest.mark.slow
def test_width_one_below_k_keeps_top_direction(make_cfg):
    cfg = make_cfg(*INF, "model.width=1", "run.steps=3000", "run.eval_every=1000")
    s = train(cfg, progress=False).summary
    got, want = np.array(s["signal_eigs"]), np.array(s["predicted_signal_eigs"])
    assert np.allclose(got, want, rtol=1e-6, atol=1e-9)
    assert want[-1] > 0 and np.all(want[:-1] == 0)


@pytest.mark.slow
def test_finite_pool_learns_the_subspace(make_cfg):
    cfg = make_cfg("data.tasks=2000", "task.d=20", "model.width=20", "run.steps=600", "run.eval_every=100")
    r = train(cfg, progress=False)
    assert r.history[0]["subspace_sin"] > 0.9
    assert r.summary["subspace_sin"] < 0.3
    got, want = np.array(r.summary["signal_eigs"]), np.array(r.summary["predicted_signal_eigs"])
    # Near, not at, the limit: N tasks estimate Σ* with relative error about sqrt(2/N) ≈ 3% per
    # eigenvalue, and a finite pool is partly fitted; 15% is several times that.
    assert np.all(np.abs(got - want) / want < 0.15)


@pytest.mark.slow
def test_fresh_tasks_match_pool_on_average(make_cfg):
    cfg = make_cfg(
        "data.tasks=1000", "data.fresh=true", "task.d=10", "model.width=10", "run.steps=300", "run.eval_every=100"
    )
    r = train(cfg, progress=False)
    assert r.summary["subspace_sin"] < 0.5 and r.summary["regime"] == "fresh"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["anil", "maml", "fo_maml"])
def test_other_methods_reach_the_fo_anil_limit_in_the_infinite_regime(make_cfg, name):
    """MATH.md §5.1: ANIL and MAML converge to the same B*ᵀBBᵀB* limit as FO-ANIL."""
    cfg = make_cfg(*INF, f"method.name={name}", "task.d=20", "model.width=20", "run.steps=3000", "run.eval_every=1000")
    s = train(cfg, progress=False).summary
    got, want = np.array(s["signal_eigs"]), np.array(s["predicted_signal_eigs"])
    assert np.max(np.abs(got - want) / want) < 1e-6
    assert s["head_norm"] == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("optimizer,steps", [("lbfgs", 30), ("gd", 1500)])
def test_multitask_baseline_learns_the_subspace(make_cfg, optimizer, steps):
    cfg = make_cfg(
        "method.name=multitask",
        f'method.optimizer="{optimizer}"',
        "task.d=10",
        "model.width=10",
        "data.tasks=300",
        f"run.steps={steps}",
        "run.eval_every=50",
        'run.dtype="float64"',
        "method.beta=0.1",
    )
    r = train(cfg, progress=False)
    assert r.history[0]["subspace_sin"] > 0.8
    assert r.summary["subspace_sin"] < 0.3, r.summary["subspace_sin"]
    assert r.params.W.shape == (300, 10)


def test_moments_is_one_shot(make_cfg):
    cfg = make_cfg("method.name=moments", "task.d=10", "data.tasks=3000", "run.steps=50")
    r = train(cfg, progress=False)
    assert r.summary["steps"] == 1 and r.params.B.shape == (10, 5)
    assert r.summary["subspace_sin"] < 0.5
