"""The method registry: every consumer derives from the specs, and a method registered from a module
outside the package runs through metarep.train, a reproduce series and MetaLearner."""

import importlib
import sys

import pytest
import torch
from conftest import linear_problem
from torch import nn

from metarep.config import ConfigError
from metarep.methods import outer_grad_fn, pool_layout, registry
from metarep.models import LinearParams

SMALL = ("task.d=8", "task.k=2", "model.width=4", "data.tasks=40", "data.m_in=6", "data.m_out=4", "run.steps=30")


@pytest.fixture
def fo_boil():
    """Register the plugin's method for one test, and remove it afterwards."""
    sys.modules.pop("plugins.fo_boil", None)
    module = importlib.import_module("plugins.fo_boil")
    yield module.SPEC
    registry.unregister("fo_boil")


def _boil_reference(params, batch, alpha):
    """First-order BOIL by its definition, one task at a time: B_i = B − α ∇_B L_in(B, w), gradient of
    L_out at (B_i, w)."""

    def loss(B, w, X, y):
        return 0.5 * ((X @ B @ w - y) ** 2).mean()

    gB, gw = torch.zeros_like(params.B), torch.zeros_like(params.w)
    for X_in, y_in, X_out, y_out in zip(*batch):
        B = params.B.clone().requires_grad_(True)
        (dB,) = torch.autograd.grad(loss(B, params.w, X_in, y_in), (B,))
        Bi = (params.B - alpha * dB).requires_grad_(True)
        w = params.w.clone().requires_grad_(True)
        b_, w_ = torch.autograd.grad(loss(Bi, w, X_out, y_out), (Bi, w))
        gB += b_
        gw += w_
    return LinearParams(gB / batch.num_tasks, gw / batch.num_tasks)


def test_builtin_specs_drive_config_layout_and_theory(make_cfg):
    assert registry.names(harness=True) == ("fo_anil", "anil", "fo_maml", "maml", "reptile", "multitask", "moments")
    assert "pretrain" in registry.names(learner=True) and "pretrain" not in registry.names(harness=True)
    with pytest.raises(ConfigError, match="method.name: must be one of"):
        make_cfg('method.name="pretrain"')
    with pytest.raises(ConfigError, match="has no infinite-task update"):
        make_cfg('method.name="reptile"', 'data.tasks="inf"')
    assert pool_layout(make_cfg('method.name="multitask"')) == "merged"
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.get("fo_anil"))
    with pytest.raises(ValueError, match="order must be"):
        registry.MethodSpec(name="bad", label="bad", kind="meta", order="third")


def test_outside_method_runs_through_train(fo_boil, make_cfg):
    params, batch = linear_problem(5, 7)
    got = outer_grad_fn("fo_boil", 0.2)(params, batch)  # no closed form: the engine
    ref = _boil_reference(params, batch, 0.2)
    assert torch.allclose(got.B, ref.B, atol=1e-12) and torch.allclose(got.w, ref.w, atol=1e-12)
    assert float(ref.B.abs().max()) > 1e-3  # not a comparison of zeros

    from metarep.train import build, train

    cfg = make_cfg('method.name="fo_boil"', *SMALL, "run.steps=3", 'run.dtype="float64"')
    res = train(cfg, progress=False)
    assert res.status == "complete" and res.summary["method"] == "fo_boil"
    _, state, _, pool, _ = build(cfg)  # the same initialisation and pool; θ ← θ − β·grad by hand
    p = state.params
    for _ in range(3):
        g = _boil_reference(p, pool.pool, cfg.method.alpha)
        p = LinearParams(p.B - cfg.method.beta * g.B, p.w - cfg.method.beta * g.w)
    assert torch.allclose(res.params.B, p.B, atol=1e-12) and torch.allclose(res.params.w, p.w, atol=1e-12)
    assert float((res.params.B - state.params.B).abs().max()) > 1e-3  # it moved
    with pytest.raises(ConfigError, match="model.kind"):  # the spec's default: the linear model only
        make_cfg('method.name="fo_boil"', 'model.kind="relu2"')
    with pytest.raises(ConfigError, match="infinite"):
        make_cfg('method.name="fo_boil"', 'data.tasks="inf"')


def test_outside_method_runs_through_metalearner(fo_boil):
    from metarep.learner import MetaLearner

    torch.manual_seed(0)
    features, head = nn.Linear(7, 5, bias=False).double(), nn.Linear(5, 1, bias=False).double()
    params, batch = linear_problem(5, 7)
    with torch.no_grad():
        features.weight.copy_(params.B.T)
        head.weight.copy_(params.w[None])
    learner = MetaLearner(features, head, method="fo_boil", inner_lr=0.2, loss="half_mse")
    g = learner.meta_grad(batch)
    assert learner.adapt_keys_ == ("features.weight",)
    ref = _boil_reference(params, batch, 0.2)
    assert torch.allclose(g["features.weight"], ref.B.T, atol=1e-12)
    assert torch.allclose(g["head.weight"][0], ref.w, atol=1e-12)
    learner.fit(batch, iterations=3)
    assert len(learner.history_) == 3


@pytest.mark.slow
def test_outside_method_runs_in_a_reproduce_series(fo_boil, tmp_path):
    from metarep.experiments import EXPERIMENTS, QUICK, reproduce

    tiny = {
        "d": 6,
        "tasks": 30,
        "steps": 10,
        "eval_every": 5,
        "eval_tasks": 20,
        "m_test": (5, 20),
        "multitask_steps": 2,
    }
    scale = QUICK.__class__(**{**QUICK.__dict__, **tiny})
    labels = [s.label for s in EXPERIMENTS["methods"].series(scale)]
    assert "fo_boil" in labels
    res = reproduce(["methods"], seeds=1, out=tmp_path, progress=False, scale=scale)
    assert res["counts"]["failed"] == 0
    assert "fo_boil" in (tmp_path / "methods.csv").read_text()
    assert "fo_boil" in (tmp_path / "REPORT.md").read_text()


@pytest.mark.slow
def test_command_line_loads_methods_named_in_metarep_plugins(tmp_path):
    """``METAREP_PLUGINS`` makes ``metarep run`` see a method defined outside the package; a module
    that cannot be imported is a one-line error with exit code 2."""
    import os
    import subprocess
    from pathlib import Path

    exe = Path(sys.executable).parent / "metarep"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "METAREP_PLUGINS": "plugins.fo_boil"}
    args = [str(exe), "run", "--no-progress", "--out", str(tmp_path / "r"), "--set", 'method.name="fo_boil"']
    args += [f"--set={s}" for s in SMALL]
    p = subprocess.run(args, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert '"method": "fo_boil"' in (tmp_path / "r" / "summary.json").read_text()
    p = subprocess.run(args, env={**env, "METAREP_PLUGINS": "no_such_module"}, capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0
    assert p.stderr.startswith("error: METAREP_PLUGINS: cannot import 'no_such_module'")
