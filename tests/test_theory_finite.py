"""The finite-pool floor of FO-ANIL's unlearning (MATH.md §8) against independent computations and runs."""

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from metarep.cli import app
from metarep.experiments import EXPERIMENTS, FULL
from metarep.experiments.paper.finite import extrapolated_floor
from metarep.methods.fo_anil import fo_anil_grad
from metarep.models import LinearParams
from metarep.tasks import LinearRepTasks
from metarep.theory import gammas
from metarep.theory_finite import (
    finite_floor,
    floor_predictions,
    lyapunov_floor,
    pool_floor,
    pool_moments,
    pool_noise,
    predicted_perp_floor,
    predicted_perp_fro_floor,
)
from metarep.train import build, train

# a small setting whose floor a float64 run reaches in about 2500 steps (12 relaxations)
SMALL = ("task.d=8", "task.k=2", "model.width=8", "data.m_in=10", "data.m_out=5", "task.sigma2=4")
SMALL += ('task.task_cov="identity"', "method.alpha=0.2", "data.tasks=2000", 'run.dtype="float64"')


def test_symmetric_noise_gives_the_positive_part():
    """For a symmetric N the floor is [−N]₊/(ab) (MATH.md §8.2)."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((7, 7))
    N = (A + A.T) / 2
    lam, V = np.linalg.eigh(N)
    want = (V * np.maximum(-lam, 0)) @ V.T / 0.3
    assert np.allclose(lyapunov_floor(N, 0.3), want, atol=1e-10)


def test_floor_is_the_fixed_point_the_flow_reaches():
    """dQ/dτ = −(NQ + QNᵀ) − 2ab Q², integrated from Q = I (RK4), ends at lyapunov_floor: a fixed point, PSD, of rank
    the number of eigenvalues of N with negative real part. N has a rotating (complex) outward pair."""
    rng = np.random.default_rng(1)
    V = rng.standard_normal((5, 5))
    blocks = np.zeros((5, 5))
    blocks[:2, :2] = [[-0.6, 0.5], [-0.5, -0.6]]  # λ = −0.6 ± 0.5i, outward
    blocks[2, 2], blocks[3, 3], blocks[4, 4] = -0.3, 0.4, 0.9
    N = V @ blocks @ np.linalg.inv(V)
    ab = 0.7

    def flow(Q):
        return -(N @ Q + Q @ N.T) - 2 * ab * Q @ Q

    Q, h = np.eye(5), 0.01
    for _ in range(8000):  # τ = 80: the slowest rate here is 2·0.3
        k1 = flow(Q)
        k2 = flow(Q + h / 2 * k1)
        k3 = flow(Q + h / 2 * k2)
        k4 = flow(Q + h * k3)
        Q = Q + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    F = lyapunov_floor(N, ab)
    assert np.abs(flow(F)).max() < 1e-10
    assert np.allclose(Q, F, atol=1e-8)
    e = np.linalg.eigvalsh(F)
    assert e.min() > -1e-12 and int((e > 1e-9).sum()) == 3


def test_pool_moments_against_sampling_the_inner_set():
    """v, v_j and u_j (MATH.md §8.1, §8.5) from the O(k) sampler against sampling X_in, y_in (and X_out, y_out)
    themselves; tolerance 4 standard errors of the direct estimate (from its own samples) plus 1% for the
    sampler's error."""
    s, sigma2, m_in, m_out = torch.tensor([0.5, 1.5]), 2.0, 6, 4
    g = gammas(s, sigma2, m_in)
    v, vj, uj = pool_moments(tuple(s.tolist()), tuple(g.tolist()), sigma2, m_in, m_out)
    rng = np.random.default_rng(3)
    r = 200_000
    w = rng.standard_normal((r, 2)) * np.sqrt(s.numpy())
    Z = rng.standard_normal((r, m_in, 2))
    y = np.einsum("rmk,rk->rm", Z, w) + math.sqrt(sigma2) * rng.standard_normal((r, m_in))
    c = np.einsum("rmk,rm->rk", Z, y) / m_in
    e = g.numpy() * c - w
    sa2 = ((e**2).sum(1) + sigma2) / m_out
    Z_out = rng.standard_normal((r, m_out, 2))  # X_out B*; the signal part of g_out is Z_outᵀ(Z_out e − ε)/m_out
    resid = np.einsum("rmk,rk->rm", Z_out, e) - math.sqrt(sigma2) * rng.standard_normal((r, m_out))
    g_out = np.einsum("rmk,rm->rk", Z_out, resid) / m_out
    checks = [(v, sa2 * (y**2).sum(1) / m_in**2)] + [(vj[j], sa2 * c[:, j] ** 2) for j in range(2)]
    for got, x in checks + [(uj[j], g_out[:, j] ** 2 * c[:, j] ** 2) for j in range(2)]:
        se = x.std() / math.sqrt(r)
        assert abs(got - x.mean()) < 4 * se + 0.01 * x.mean()


def test_pool_noise_entries_have_variance_v_over_n():
    """The entries of N⊥ over 60 sampled pools of N = 300 tasks: mean 0, variance v/N (MATH.md §8.1). The tolerance
    is 4 standard errors of the sample variance, computed from the squared entries themselves."""
    tasks = LinearRepTasks.create(7, 2, 1.0, "linear", generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    n_tasks, m_in, m_out = 300, 8, 5
    entries = torch.cat(
        [pool_noise(tasks.sample(n_tasks, m_in, m_out, gen), tasks, 0.1)[0].flatten() for _ in range(60)]
    )
    g = gammas(tasks.sigma_diag, tasks.sigma2, m_in)
    v = pool_moments(tuple(tasks.sigma_diag.tolist()), tuple(g.tolist()), tasks.sigma2, m_in, m_out)[0]
    sq = entries.numpy() ** 2
    se = sq.std() / math.sqrt(sq.size)
    assert abs(sq.mean() - v / n_tasks) < 4 * se
    assert abs(entries.mean().item()) < 4 * math.sqrt(v / n_tasks / entries.numel())


def test_ginibre_prediction_is_the_mean_over_pools(make_cfg):
    """finite_floor (the noise's law) against the mean of pool_floor (each pool's own noise) over 24 pools, no
    training: within 3 standard errors of that mean (from the pools' spread) plus 3% for the Ginibre constants'
    sampling and the central-limit approximation at N = 2000."""
    cfg = make_cfg("task.d=20", "task.k=3", "model.width=20", "data.m_in=10", "task.sigma2=1", "data.tasks=2000")
    tasks = LinearRepTasks.create(20, 3, 1.0, "linear", generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(2)
    pools = [pool_floor(tasks.sample(2000, 10, 10, gen), tasks, 0.1) for _ in range(24)]
    want = finite_floor(cfg)
    for key, pkey in (("perp_norm2", "predicted_perp_floor"), ("perp_fro2", "predicted_perp_fro_floor")):
        x = np.array([p[key] for p in pools])
        assert abs(x.mean() - want[pkey]) < 3 * x.std() / math.sqrt(x.size) + 0.03 * want[pkey]


@pytest.mark.slow
def test_signal_eigenvalues_spread_over_pools_as_predicted(make_cfg):
    """Over 120 pools of N = 8000 tasks (no training), each pool's signal eigenvalues (pool_floor, the symmetric
    part of (Σ* − N_11)Λ*⁻¹/α) are centred on γ_j/α (within 4 standard errors: unbiased at first order; at
    N = 2000 the second order already shows, the eigenvalues repelling each other by up to 3.7 standard errors)
    and spread with finite_floor's signal_eig_sd (within 20%: the sd of 120 samples is known to about 6.5%;
    measured 0.90–1.05 of it at N = 500–8000). Σ* = diag(0.5, 1, 1.5): distinct s_j."""
    n_tasks = 8000
    cfg = make_cfg("task.d=8", "task.k=3", "model.width=8", "data.m_in=10", "data.m_out=5", "task.sigma2=1",
                   f"data.tasks={n_tasks}")  # fmt: skip
    tasks = LinearRepTasks.create(8, 3, 1.0, "linear", generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(4)
    pools = [pool_floor(tasks.sample(n_tasks, 10, 5, gen), tasks, 0.1)["signal_eigs"] for _ in range(120)]
    eigs, want = np.array(pools), finite_floor(cfg)
    limit = np.sort(gammas(tasks.sigma_diag, tasks.sigma2, 10).numpy()) / 0.1
    sd = eigs.std(0)
    assert np.all(np.abs(eigs.mean(0) - limit) < 4 * sd / math.sqrt(len(eigs)))
    assert sd == pytest.approx(want["signal_eig_sd"], rel=0.2)


@pytest.mark.slow
def test_a_run_stops_at_its_pools_floor(make_cfg):
    """A float64 FO-ANIL run against the floor predicted from its own pool (MATH.md §8.2). The spectral norm is
    settled after 10 relaxations (over three pools the run was 0.9–2.2% below); the Frobenius norm still approaches
    its floor, so its extrapolated floor (a + C/t²) is compared, within 15%: over three pools (n = d − k = 6) it was
    +9%, +4% and −1% off, and −5% to +11% after twice the steps (a single small pool's floor moves that much as
    the head drifts; the mean over pools is the law's, test_ginibre_prediction_is_the_mean_over_pools)."""
    cfg = make_cfg(*SMALL, "run.steps=2500", "run.eval_every=50")
    tasks, _, _, source, _ = build(cfg)
    want = pool_floor(source.pool, tasks, cfg.method.alpha)
    r = train(cfg, progress=False)
    assert abs(r.summary["perp_norm2"] / want["perp_norm2"] - 1) < 0.05
    assert abs(extrapolated_floor(r.history, "perp_fro2") / want["perp_fro2"] - 1) < 0.15
    # the signal eigenvalues leave γ/α by O(1/√N); the pool's own N_11 predicts where (MATH.md §8.5): over three
    # pools (N = 2000) the error of the prediction was 4–16% of the deviation from γ/α, 9% at N = 500
    measured = torch.tensor(r.summary["signal_eigs"], dtype=torch.float64)
    limit = torch.tensor(r.summary["predicted_signal_eigs"], dtype=torch.float64)
    err = torch.linalg.vector_norm(measured - torch.tensor(want["signal_eigs"], dtype=torch.float64))
    assert err < 0.3 * torch.linalg.vector_norm(measured - limit)
    # the head drifts off 0 with a finite pool, yet the floor is FO-ANIL's at w = 0: freezing w changes nothing
    B, w = build(cfg)[1].params
    for _ in range(2500):
        B = B - cfg.method.beta * fo_anil_grad(LinearParams(B, w), source.pool, cfg.method.alpha)[0]
    frozen = float(torch.linalg.matrix_norm(tasks.B_perp.T @ B, 2) ** 2)
    assert abs(frozen / r.summary["perp_norm2"] - 1) < 0.05


def test_predictions_scale_like_one_over_root_n_and_one_over_alpha(make_cfg):
    """The floors ∝ r/(αb) with r = √(n v/N) (MATH.md §8.3): four times the tasks halve the outward part and
    quarter the row-space part; twice α halves both (γ, v and b do not depend on α); β does not enter."""
    base = ("task.d=12", "data.tasks=1000")
    a, b = finite_floor(make_cfg(*base)), finite_floor(make_cfg("task.d=12", "data.tasks=4000"))
    assert b["predicted_perp_floor"] == pytest.approx(a["predicted_perp_floor"] / 2, rel=1e-9)
    assert b["floor_outward"] == pytest.approx(a["floor_outward"] / 2, rel=1e-9)
    assert b["floor_rowspace"] == pytest.approx(a["floor_rowspace"] / 4, rel=1e-9)
    c = finite_floor(make_cfg(*base, "method.alpha=0.2"))
    assert c["predicted_perp_fro_floor"] == pytest.approx(a["predicted_perp_fro_floor"] / 2, rel=1e-9)
    assert finite_floor(make_cfg(*base, "method.beta=0.25"))["predicted_perp_floor"] == a["predicted_perp_floor"]
    assert predicted_perp_floor(make_cfg(*base)) == a["predicted_perp_floor"]
    assert predicted_perp_fro_floor(make_cfg(*base)) == a["predicted_perp_fro_floor"]


@pytest.mark.parametrize(
    "extra,why",
    [
        (("method.name=anil",), "fo_anil"),
        (("data.tasks=inf",), "fixed pool"),
        (("data.task_batch=10",), "mini-batches"),
        (("model.width=6",), "width"),
        (("method.inner_steps=2",), "one inner step"),
    ],
)
def test_not_predicted_outside_its_assumptions(make_cfg, extra, why):
    cfg = make_cfg("task.d=12", "data.tasks=100", *extra)
    assert finite_floor(cfg) is None and predicted_perp_floor(cfg) is None
    out = floor_predictions(cfg)
    assert out["predicted_perp_fro_floor"] is None and why in out["floor_note"]


def test_theory_command_prints_the_floor(make_cfg):
    runner = CliRunner()
    res = runner.invoke(app, ["theory", "--set", "task.d=12", "--set", "data.tasks=3000", "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    want = finite_floor(make_cfg("task.d=12", "data.tasks=3000"))
    assert rep["predicted_perp_floor"] == pytest.approx(want["predicted_perp_floor"], rel=1e-12)
    assert rep["predicted_perp_fro_floor"] == pytest.approx(want["predicted_perp_fro_floor"], rel=1e-12)
    text = runner.invoke(app, ["theory", "--set", "task.d=12", "--set", "data.tasks=3000"]).output
    assert f"{want['predicted_perp_floor']:.4g}" in text and "floor of ‖B⊥ᵀB‖_F²" in text
    assert rep["signal_eig_sd"] == pytest.approx(want["signal_eig_sd"], rel=1e-12) and len(rep["signal_eig_sd"]) == 5
    assert "lim eig: sd over pools" in text
    inf = json.loads(runner.invoke(app, ["theory", "--set", "data.tasks=inf", "--json"]).output)
    assert "predicted_perp_floor" not in inf


def test_a_finite_run_summary_has_the_floors(make_cfg):
    cfg = make_cfg("task.d=8", "task.k=2", "data.tasks=50", "run.steps=3", "run.eval_every=3")
    s = train(cfg, progress=False).summary
    assert s["predicted_perp_floor"] == finite_floor(cfg)["predicted_perp_floor"]
    assert s["predicted_perp_fro_floor"] == finite_floor(cfg)["predicted_perp_fro_floor"]
    assert (
        "predicted_perp_floor"
        not in train(make_cfg("task.d=8", "data.tasks=inf", "run.steps=2"), progress=False).summary
    )


def test_extrapolated_floor_recovers_a_one_over_t_squared_approach():
    history = [{"step": t, "perp_fro2": 3.0 + 2.5e5 / t**2} for t in range(100, 2001, 100)]
    assert extrapolated_floor(history, "perp_fro2") == pytest.approx(3.0, rel=1e-9)
    # only the last half counts: an early transient of another shape does not move it
    early = [{**r, "perp_fro2": r["perp_fro2"] + (50.0 if r["step"] < 1000 else 0.0)} for r in history]
    assert extrapolated_floor(early, "perp_fro2") == pytest.approx(3.0, rel=1e-9)


def test_finite_experiment_runs_until_the_floor_at_the_requested_sizes():
    series = EXPERIMENTS["finite"].series(FULL)
    pools = sorted({int(o.split("=")[1]) for s in series for o in s.overrides if o.startswith("data.tasks=")})
    assert pools == [500, 1000, 2000, 5000, 10000, 20000, 50000]
    for s in series[:3]:
        from metarep.config import load_config

        cfg = load_config(None, list(s.overrides))
        assert cfg.run.steps >= finite_floor(cfg)["floor_steps"]  # at least 12 relaxation times
