"""The theory's predictions (MATH.md §5): the worked example of §5.6, the underparametrized limit
against an infinite-regime run, and the step-size check against runs that do and do not settle."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import gen
from typer.testing import CliRunner

from metarep import theory
from metarep.cli import app
from metarep.tasks import LinearRepTasks, task_cov_diag
from metarep.train import train

# MATH.md §5.6: d = 50, k = 5, σ² = 4, Σ* ∝ diag(1..5) with trace 5, m_in = 20, at the limit.
S_EX = task_cov_diag(5, "linear", 5.0)
EXAMPLE = {10: 2.625, 20: 1.584, 50: 0.960}


@pytest.mark.parametrize("m,want", sorted(EXAMPLE.items()))
def test_one_step_risk_at_the_limit_matches_the_worked_example(m, want):
    got = theory.limit_one_step_risk(S_EX, 4.0, 20, m, width=50)
    # MATH.md quotes 3-4 significant digits; 0.5% is well above that rounding and far below any
    # formula error (a wrong γ or a missing 1/m term moves these by > 5%).
    assert got == pytest.approx(want, rel=5e-3)


def test_oracle_and_scratch_match_the_worked_example():
    assert theory.oracle_risk(5, 5.0, 4.0, 20) == pytest.approx(1.429, rel=5e-3)  # σ²k/(m−k−1)
    assert theory.scratch_risk(50, 5.0, 4.0, 20) == pytest.approx(5.759, rel=5e-3)  # min-norm, m < d
    assert theory.scratch_risk(50, 5.0, 4.0, 100) == pytest.approx(4.0 * 50 / 49)  # OLS, m > d + 1
    for m in (49, 50, 51):  # infinite expectation next to d
        assert math.isnan(theory.scratch_risk(50, 5.0, 4.0, m))
    assert math.isnan(theory.oracle_risk(5, 5.0, 4.0, 6))


@pytest.mark.parametrize("alpha", [0.03, 0.1, 1.0])
def test_matrix_form_at_the_limit_equals_the_diagonal_form_for_any_alpha(alpha):
    """one_step_risk(M = α B_∞B_∞ᵀ) with B_∞ rotated by an orthogonal O equals the diagonal form:
    α-invariance (§5.4) and B → BO invariance, exact up to rounding (1e-10)."""
    tasks = LinearRepTasks.create(50, 5, 4.0, "linear", generator=gen(0))
    g = theory.limit_gamma(tasks.sigma_diag, 4.0, 20, 50)
    B_inf = tasks.B_star * (g / alpha).sqrt()  # (d, k)
    rot, _ = torch.linalg.qr(torch.randn(5, 5, generator=gen(1), dtype=torch.float64))
    B_inf = B_inf @ rot
    M = alpha * B_inf @ B_inf.T
    assert torch.allclose(M, theory.limit_M(tasks.B_star, tasks.sigma_diag, 4.0, 20, 50), atol=1e-12)
    for m in (10, 20, 50):
        full = theory.one_step_risk(M, tasks.S, tasks.trace, 4.0, m)
        assert full == pytest.approx(theory.limit_one_step_risk(tasks.sigma_diag, 4.0, 20, m, 50), rel=1e-10)
    gram = tasks.B_star.T @ B_inf @ B_inf.T @ tasks.B_star
    assert torch.allclose(gram, theory.limit_gram(tasks.sigma_diag, 4.0, alpha, 20, 50), atol=1e-10)


def test_one_step_risk_with_a_head_reduces_to_zero_head_and_grows_with_the_offset():
    tasks = LinearRepTasks.create(8, 3, 0.5, "linear", generator=gen(0))
    B = torch.randn(8, 4, generator=gen(1), dtype=torch.float64) / 8**0.5
    M = 0.3 * B @ B.T
    r0 = theory.one_step_risk(M, tasks.S, tasks.trace, 0.5, 7)
    assert theory.one_step_risk(M, tasks.S, tasks.trace, 0.5, 7, torch.zeros(8, dtype=torch.float64)) == r0
    u = B @ torch.ones(4, dtype=torch.float64)
    assert theory.one_step_risk(M, tasks.S, tasks.trace, 0.5, 7, u) > r0  # θ is centred: an offset only hurts
    # Zero representation: θ̂ = u, risk = tr Σ* + ‖u‖².
    Z = torch.zeros(8, 8, dtype=torch.float64)
    assert theory.one_step_risk(Z, tasks.S, tasks.trace, 0.5, 7, u) == pytest.approx(tasks.trace + float(u @ u))


def test_subspace_least_squares_special_cases():
    # P = I and P = B*B*ᵀ are scratch and the oracle; an empty subspace predicts 0.
    assert theory.subspace_ls_risk(10, 3.0, 3.0, 0.5, 30) == pytest.approx(0.5 * 10 / 19)
    assert theory.subspace_ls_risk(0, 0.0, 3.0, 0.5, 30) == 3.0
    # A subspace missing part of θ pays that part, and more the fewer the samples.
    assert theory.subspace_ls_risk(4, 2.0, 3.0, 0.5, 30) > theory.subspace_ls_risk(4, 2.0, 3.0, 0.5, 300) > 1.0


def test_predictions_in_the_summary_keys(make_cfg):
    p = theory.predictions(make_cfg())
    assert p["predicted_risk_m_in"] == pytest.approx(1.584, rel=5e-3)
    assert p["predicted_oracle_risk_m_in"] == pytest.approx(1.429, rel=5e-3)
    assert p["predicted_scratch_risk_m_in"] == pytest.approx(5.759, rel=5e-3)
    assert p["predicted_rank"] == 5 and p["step_size_warnings"] == []
    # m_in = d: scratch's expectation is infinite, written null.
    assert theory.predictions(make_cfg("task.d=20"))["predicted_scratch_risk_m_in"] is None
    rep = theory.report(make_cfg("model.width=3"), [10, 50])
    assert [r["m"] for r in rep["risks"]] == [10, 20, 50] and rep["kept_directions"] == [3, 4, 5]


@pytest.mark.parametrize("width", [3, 5])
def test_no_unlearning_constant_where_the_width_is_at_most_k(make_cfg, width):
    """k' <= k: nothing outside span(B*) to unlearn like C/t (MATH.md §5.2), so no constant, and why."""
    cfg = make_cfg(f"model.width={width}")
    for rep in (theory.predictions(cfg), theory.report(cfg)):
        assert rep["predicted_perp_rate"] is None
        assert rep["perp_rate_note"].startswith(f"no unlearning constant: width k'={width} ≤ k=5")
    res = CliRunner().invoke(app, ["theory", "--set", f"model.width={width}", "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert rep["predicted_perp_rate"] is None and f"k'={width} ≤ k=5" in rep["perp_rate_note"]
    res = CliRunner().invoke(app, ["theory", "--set", f"model.width={width}"])
    (line,) = [x for x in res.output.splitlines() if "(unlearning)" in x]
    assert line.split("(unlearning)")[1].strip() == f"-  {rep['perp_rate_note']}"


def test_the_unlearning_constant_where_the_width_exceeds_k(make_cfg):
    cfg = make_cfg("model.width=6")
    want = theory.predicted_perp_rate(cfg.cov_trace, cfg.task.sigma2, cfg.method.alpha, cfg.method.beta, 20)
    for rep in (theory.predictions(cfg), theory.report(cfg)):
        assert rep["predicted_perp_rate"] == want > 0 and "perp_rate_note" not in rep
    res = CliRunner().invoke(app, ["theory", "--set", "model.width=6"])
    assert f"(unlearning)    {want:.4g}" in res.output


def test_underparametrized_prediction_matches_an_infinite_run(make_cfg):
    """k' = 3 < k = 5: FO-ANIL keeps the top-3 eigendirections of Σ* with eigenvalues γ_j/α (§5.5)."""
    cfg = make_cfg(
        "data.tasks=inf", 'run.dtype="float64"', "task.d=10", "model.width=3", "run.steps=1500", "run.eval_every=500"
    )
    r = train(cfg, progress=False)
    got, want = np.array(r.summary["signal_eigs"]), np.array(r.summary["predicted_signal_eigs"])
    assert want[0] == want[1] == 0.0 and want[2] > 0
    # The dynamics converge geometrically; after 1500 steps they sit at the limit to ~1e-15 (1e-8 leaves
    # room for rounding, and is far below the gap to any other fixed point, e.g. keeping s_2 instead of s_3).
    assert np.max(np.abs(got - want)) < 1e-8 * want.max()
    kept = theory.kept_directions(r.tasks.sigma_diag, 3)
    assert kept.tolist() == [2, 3, 4]
    U = torch.linalg.svd(r.params.B, full_matrices=False).U  # (d, 3)
    Bk = r.tasks.B_star[:, kept]
    assert float(torch.linalg.matrix_norm(U - Bk @ (Bk.T @ U), ord=2)) < 1e-6  # span(B) = span(B* e_3..e_5)
    M = cfg.method.alpha * r.params.B @ r.params.B.T
    lim = theory.limit_M(r.tasks.B_star, r.tasks.sigma_diag, cfg.task.sigma2, cfg.data.m_in, 3)
    assert torch.allclose(M, lim, atol=1e-8)


def _settles(cfg) -> bool:
    r = train(cfg, progress=False)
    if r.status != "complete":
        return False
    got, want = np.array(r.summary["signal_eigs"]), np.array(r.summary["predicted_signal_eigs"])
    return bool(np.max(np.abs(got - want)) < 1e-6 * want.max())


@pytest.mark.parametrize(
    "override,stable",
    [
        ("method.beta=0.5", True),  # the defaults
        ("method.beta=5.5", True),  # αβ s_max = 0.92 < 1
        ("method.beta=7", False),  # αβ s_max = 1.17 > 1: the eigenvalues oscillate around the limit
        ("model.init_scale=8", True),  # first-step overshoot estimate 1.2 < 2
        ("model.init_scale=13", False),  # estimate 3.2 > 2: diverges within a few steps
    ],
)
def test_step_size_warning_fires_where_the_infinite_dynamics_do_not_settle(make_cfg, override, stable):
    cfg = make_cfg(
        "data.tasks=inf", 'run.dtype="float64"', "task.d=10", override, "run.steps=1000", "run.eval_every=500"
    )
    assert (theory.step_size_warning(cfg) is None) == stable
    assert _settles(cfg) == stable


def test_step_size_check_thresholds(make_cfg):
    checks = {c.name: c for c in theory.check_step_sizes(make_cfg())}
    assert set(checks) == {"limit", "init"} and all(c.ok for c in checks.values())
    assert checks["limit"].value == pytest.approx(0.1 * 0.5 * 5 / 3)  # α β s_max
    # The limit check is sharp at β = 1/(α s_max) = 6 (FO-ANIL) and half that for ANIL (infinite
    # tasks: the head stays at 0; with a pool the outer step on the head binds first, at β ≈ 0.82).
    assert theory.step_size_warning(make_cfg("data.tasks=inf", "method.beta=5.99")) is None
    assert "method.beta" in theory.step_size_warning(make_cfg("data.tasks=inf", "method.beta=6.01"))
    finite = {c.name: c for c in theory.check_step_sizes(make_cfg("method.beta=5.99"))}
    assert finite["limit"].ok and not finite["step"].ok and finite["step"].bound == pytest.approx(0.822, abs=1e-3)
    anil = {c.name: c for c in theory.check_step_sizes(make_cfg("method.name=anil", "method.beta=3.5"))}
    assert anil["limit"].limit == 0.5 and not anil["limit"].ok
    assert "inner" in {c.name for c in theory.check_step_sizes(make_cfg("method.inner_steps=5"))}
    assert theory.check_step_sizes(make_cfg("method.name=moments")) == []
