"""Test-time adaptation (`metarep.evaluate`, `metarep evaluate`, `metarep theory`): closed forms
against Monte-Carlo on the same new tasks, the batched kernels against plain references, the CLI."""

import csv
import json
import math

import pytest
import torch
from conftest import gen
from typer.testing import CliRunner

from metarep import evaluate as ev
from metarep import theory
from metarep.cli import app
from metarep.estimators import NewTasks, SubspaceLS, default_estimators, model_excess_risk
from metarep.methods._linear import adapt_head
from metarep.models import init_model, linear_forward, relu2_forward
from metarep.tasks import LinearRepTasks
from metarep.train import train

D, K, SIGMA2 = 10, 3, 0.5
M_TEST = (2, 8, 16, 40)
LS = {"oracle", "scratch", "ls_span_B", "ls_top_k"}


def _tasks():
    return LinearRepTasks.create(D, K, SIGMA2, "linear", generator=gen(0))


def _learned(width, make_cfg):
    """B, w after 150 infinite-task FO-ANIL steps from the usual initialisation (not yet at the limit)."""
    cfg = make_cfg(
        "data.tasks=inf",
        'run.dtype="float64"',
        f"task.d={D}",
        f"task.k={K}",
        f"task.sigma2={SIGMA2}",
        f"model.width={width}",
        "method.alpha=0.3",
        "run.steps=150",
        "run.eval_every=150",
    )
    r = train(cfg, progress=False)
    return r.params.B, r.params.w, r.tasks


def _ls_dim(name, res):
    return {"oracle": K, "scratch": D, "ls_span_B": res["rank_B"], "ls_top_k": res["top_k"]}[name]


CASES = [
    ("random", 2, False),  # width below k
    ("random", 8, True),  # width above k, head w ≠ 0 (exercises the general closed form)
    ("learned", 2, False),
    ("learned", 14, False),  # width above d
]


@pytest.mark.parametrize("kind,width,head", CASES)
def test_closed_forms_agree_with_monte_carlo(make_cfg, kind, width, head):
    if kind == "random":
        tasks = _tasks()
        B = torch.randn(D, width, generator=gen(1), dtype=torch.float64) / D**0.5
        w = 0.5 * torch.randn(width, generator=gen(2), dtype=torch.float64) if head else None
    else:
        B, w, tasks = _learned(width, make_cfg)
    alpha = 0.3
    B_lim = ev.limit_representation(tasks.B_star, tasks.sigma_diag, SIGMA2, alpha, 10, width)
    res = ev.evaluate(B, w, tasks, alpha=alpha, m_test=M_TEST, n_tasks=4000, generator=gen(3), B_limit=B_lim)
    checked = 0
    for name, e in res["estimators"].items():
        for m, cf, mc, se in zip(M_TEST, e["closed_form"], e["mc_mean"], e["mc_se"]):
            # Least squares within 4 of its dimension has an infinite (or barely finite) variance, so
            # its standard error means nothing there; everywhere else the per-task errors have finite
            # fourth moments and the mean of 4000 of them is normal to good accuracy.
            if name in LS and abs(m - _ls_dim(name, res)) < 5:
                continue
            assert math.isfinite(cf), (name, m)
            # 3 standard errors; seeds are fixed, so this is deterministic.
            assert abs(mc - cf) < 3 * se, (name, m, mc, cf, se)
            assert se < 0.05 * cf  # the check has power: the standard error is under 5% of the value
            checked += 1
    assert checked >= 16


def test_monte_carlo_rejects_a_wrong_closed_form():
    """Power: dropping the finite-m terms of §5.6 (E[Σ̂MΣ̂] → M only) is rejected by the same data."""
    tasks = _tasks()
    B = torch.randn(D, 8, generator=gen(1), dtype=torch.float64) / D**0.5
    alpha, m = 0.3, 4
    res = ev.evaluate(B, None, tasks, alpha=alpha, m_test=[m], n_tasks=4000, generator=gen(3))
    e = res["estimators"]["learned"]
    M = alpha * B @ B.T
    wrong = float(tasks.trace - 2 * torch.sum(M * tasks.S) + torch.sum(M @ M * tasks.S))
    assert abs(e["mc_mean"][0] - e["closed_form"][0]) < 3 * e["mc_se"][0]
    assert abs(e["mc_mean"][0] - wrong) > 10 * e["mc_se"][0]


def test_several_head_steps_and_the_generic_model_path_agree():
    """`steps` head steps: the batched linear kernel and the torch.func path on any model (here the
    linear one) give the same risk on the same tasks, up to the test-point noise of the generic path."""
    tasks = _tasks()
    B = torch.randn(D, 6, generator=gen(1), dtype=torch.float64) / D**0.5
    w = 0.3 * torch.randn(6, generator=gen(2), dtype=torch.float64)
    kw = dict(alpha=0.3, m_test=[5, 20], steps=3, n_tasks=2000, chunk=1000)
    exact = ev.evaluate(B, w, tasks, generator=gen(4), **kw)
    generic = ev.evaluate(B, w, tasks, generator=gen(4), forward=linear_forward, test_points=30, **kw)
    a, b = exact["estimators"]["learned"], generic["estimators"]["learned"]
    assert all(math.isnan(x) for x in a["closed_form"] + b["closed_form"])  # no closed form for 3 steps
    for i in range(2):
        # the same tasks: the difference is only the generic path's test-point noise, within 3
        # combined standard errors
        assert abs(a["mc_mean"][i] - b["mc_mean"][i]) < 3 * math.hypot(a["mc_se"][i], b["mc_se"][i])
    assert exact["estimators"]["oracle"] == generic["estimators"]["oracle"]


def test_adapt_head_matches_a_plain_loop():
    tasks = _tasks()
    X, y = tasks.sample_data(tasks.sample_thetas(7, gen(1)), 6, gen(2))
    B = torch.randn(D, 4, generator=gen(3), dtype=torch.float64)
    w = torch.randn(4, generator=gen(4), dtype=torch.float64)
    got = adapt_head(B, w, X, y, 0.05, steps=3)
    for i in range(7):
        wi = w.clone()
        for _ in range(3):
            Z = X[i] @ B
            wi = wi - 0.05 * Z.T @ (Z @ wi - y[i]) / 6
        assert torch.allclose(got[i], wi, atol=1e-12)


def test_model_excess_risk_matches_a_plain_loop():
    """The engine's vmapped head steps on a ReLU net, against autograd one task at a time."""
    tasks = _tasks()
    theta = tasks.sample_thetas(5, gen(1))
    X, y = tasks.sample_data(theta, 8, gen(2))
    X_test = torch.randn(5, 11, D, generator=gen(3), dtype=torch.float64)
    p = init_model("relu2", D, 6, generator=gen(4), dtype=torch.float64)._asdict()
    p["w"] = torch.randn(6, generator=gen(5), dtype=torch.float64)
    got = model_excess_risk(relu2_forward, p, X, y, theta, X_test, 0.2, steps=2)
    for i in range(5):
        wi = p["w"].clone().requires_grad_(True)
        for _ in range(2):
            loss = 0.5 * ((relu2_forward({**p, "w": wi}, X[i]) - y[i]) ** 2).mean()
            wi = (wi - 0.2 * torch.autograd.grad(loss, wi)[0]).detach().requires_grad_(True)
        want = ((relu2_forward({**p, "w": wi}, X_test[i]) - X_test[i] @ theta[i]) ** 2).mean()
        assert torch.allclose(got[i], want.detach(), rtol=1e-12, atol=0)


def test_estimators_follow_the_table():
    """One estimator per key of ESTIMATORS, in order; the subspace fit is the plain least squares on X U."""
    tasks = _tasks()
    B = torch.randn(D, 4, generator=gen(1), dtype=torch.float64)
    U = ev.orthonormal_span(B)
    B_lim = ev.limit_representation(tasks.B_star, tasks.sigma_diag, SIGMA2, 0.3, 10, 4)
    kw = dict(alpha=0.3, steps=1, U=U, top_k=K)
    ests = default_estimators(B, torch.zeros(4, dtype=torch.float64), tasks, B_limit=B_lim, **kw)
    assert tuple(e.name for e in ests) == ev.ESTIMATORS
    assert "limit" not in [e.name for e in default_estimators(B, B.new_zeros(4), tasks, **kw)]
    theta = tasks.sample_thetas(6, gen(2))
    X, y = tasks.sample_data(theta, 20, gen(3))
    new = NewTasks(theta, X, y).first(9)
    assert new.X.shape == (6, 9, D) and torch.allclose(new.project(U), X[:, :9] @ U, rtol=1e-12, atol=1e-12)
    got = SubspaceLS("ls_span_B", U, tasks).fit(new)
    want = (torch.linalg.pinv(X[:, :9] @ U) @ y[:, :9].unsqueeze(-1)).squeeze(-1) @ U.T
    assert torch.allclose(got, want, atol=1e-10)
    for e in ests:
        assert e.excess_risk(new).shape == (6,)
        assert math.isfinite(e.closed_form(20)) and math.isnan(e.closed_form(D)) == (e.name == "scratch")


@pytest.mark.parametrize("m,r", [(12, 5), (5, 12), (7, 7)])
def test_min_norm_lstsq_matches_the_pseudo_inverse(m, r):
    Z = torch.randn(9, m, r, generator=gen(1), dtype=torch.float64)
    y = torch.randn(9, m, generator=gen(2), dtype=torch.float64)
    want = (torch.linalg.pinv(Z) @ y.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(ev.min_norm_lstsq(Z, y), want, atol=1e-8, rtol=1e-6)
    # A singular Gram matrix (a repeated column) falls back to the SVD solver.
    Zs = torch.cat([Z[..., :1], Z[..., :1], Z[..., 1:]], -1)
    got = ev.min_norm_lstsq(Zs, y)
    assert torch.allclose(got, (torch.linalg.pinv(Zs) @ y.unsqueeze(-1)).squeeze(-1), atol=1e-7)


def test_rank_of_span_and_top_directions():
    B = torch.randn(D, 2, generator=gen(1), dtype=torch.float64)
    B = torch.cat([B, B @ torch.randn(2, 3, generator=gen(2), dtype=torch.float64)], 1)  # rank 2, width 5
    U = ev.orthonormal_span(B)
    assert U.shape == (D, 2) and torch.allclose(U.T @ U, torch.eye(2, dtype=torch.float64), atol=1e-12)
    res = ev.evaluate(B, None, _tasks(), alpha=0.1, m_test=[20], n_tasks=50, generator=gen(3))
    assert res["rank_B"] == 2 and res["top_k"] == 2
    assert ev.orthonormal_span(torch.zeros(D, 3)).shape == (D, 0)


# --------------------------------------------------------------------------------------------
# CLI


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    res = invoke(
        "run",
        "--set",
        "task.d=12",
        "--set",
        "data.tasks=50",
        "--set",
        "run.steps=30",
        "--set",
        "run.eval_every=10",
        "--out",
        out,
    )
    assert res.exit_code == 0, res.output
    assert "warning" not in res.output  # the defaults are inside the stable range
    return out


def test_run_summary_has_the_predictions(run_dir):
    s = json.loads((run_dir / "summary.json").read_text())
    for key in (
        "predicted_signal_eigs",
        "predicted_perp_rate",
        "predicted_rank",
        "predicted_risk_m_in",
        "predicted_oracle_risk_m_in",
        "predicted_scratch_risk_m_in",
        "step_size_warnings",
    ):
        assert key in s
    assert s["predicted_risk_m_in"] == pytest.approx(1.584, rel=5e-3)  # does not depend on d (§5.6)
    assert s["predicted_scratch_risk_m_in"] == pytest.approx(theory.scratch_risk(12, 5.0, 4.0, 20))


def test_evaluate_writes_three_files(run_dir, tmp_path):
    out = tmp_path / "ev"
    res = invoke("evaluate", run_dir, "--m-test", "3,20", "--tasks", "300", "--out", out)
    assert res.exit_code == 0, res.output
    assert "oracle" in res.output and "m=20" in res.output
    for name in ("evaluation.json", "evaluation.csv", "evaluation.png"):
        assert (out / name).stat().st_size > 0
    data = json.loads((out / "evaluation.json").read_text())
    assert data["m_test"] == [3, 20] and data["n_tasks"] == 300 and data["steps"] == 1
    assert set(data["estimators"]) == set(ev.ESTIMATORS)
    # m = 3 < k − 1: the min-norm oracle tr Σ*(1 − m/k) + σ² m/(k − m − 1) = 2 + 12
    assert data["estimators"]["oracle"]["closed_form"] == pytest.approx([14.0, theory.oracle_risk(5, 5.0, 4.0, 20)])
    assert data["estimators"]["scratch"]["closed_form"][1] == pytest.approx(4.0 * 12 / 7)  # σ² d/(m − d − 1)
    rows = list(csv.DictReader((out / "evaluation.csv").open()))
    assert len(rows) == 2 * len(ev.ESTIMATORS) and {r["estimator"] for r in rows} == set(ev.ESTIMATORS)
    # --json prints the same structure; default output folder is the run folder
    res = invoke("evaluate", run_dir, "--m-test", "20", "--tasks", "50", "--steps", "2", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)  # stderr may carry a warning that 2 head steps are unstable
    assert data["steps"] == 2 and data["estimators"]["learned"]["closed_form"] == [None]
    assert (run_dir / "evaluation.json").is_file()


@pytest.mark.parametrize(
    "args,key",
    [
        (["--m-test", "a,b"], "--m-test"),
        (["--m-test", "0,5"], "--m-test"),
        (["--m-test", ""], "--m-test"),
        (["--steps", "0"], "--steps"),
        (["--tasks", "1"], "--tasks"),
        (["--alpha", "0"], "--alpha"),
    ],
)
def test_evaluate_bad_options_exit_2(run_dir, tmp_path, args, key):
    res = invoke("evaluate", run_dir, *args, "--out", tmp_path / "e")
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0], res.output
    assert not (tmp_path / "e" / "evaluation.json").exists()


def test_evaluate_needs_a_finished_run(tmp_path):
    for target in (tmp_path / "missing", tmp_path):
        res = invoke("evaluate", target)
        lines = res.output.strip().splitlines()
        assert res.exit_code == 2 and len(lines) == 1 and "not a finished metarep run" in lines[0], res.output


def test_theory_command(tmp_path):
    res = invoke("theory")
    assert res.exit_code == 0 and "1.584" in res.output and "5.759" in res.output and "WARNING" not in res.output
    res = invoke("theory", "--json", "--set", "model.width=3", "--m-test", "10,50")
    rep = json.loads(res.stdout)
    assert rep["kept_directions"] == [3, 4, 5] and [r["m"] for r in rep["risks"]] == [10, 20, 50]
    res = invoke("theory", "--set", "method.beta=8")
    assert res.exit_code == 0 and "WARNING limit" in res.output
    res = invoke("theory", "--set", "task.d=0")
    assert res.exit_code == 2 and res.output.startswith("error: task.d")
    res = invoke("theory", "--m-test", "x")
    assert res.exit_code == 2 and res.output.startswith("error: --m-test")


def test_run_warns_on_unstable_step_sizes(tmp_path):
    res = invoke(
        "run",
        "--set",
        "data.tasks=inf",
        "--set",
        "task.d=8",
        "--set",
        "method.beta=7",
        "--set",
        "run.steps=5",
        "--out",
        tmp_path / "r",
    )
    assert res.exit_code == 0, res.output
    warnings = [x for x in res.output.splitlines() if x.startswith("warning:")]
    assert len(warnings) == 1 and "method.beta" in warnings[0]
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert len(s["step_size_warnings"]) == 1
