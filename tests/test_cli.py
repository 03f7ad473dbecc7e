"""`metarep run`: outputs, determinism, and one-line errors with exit code 2 on bad input."""

import csv
import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from metarep.cli import app
from metarep.metrics import signal_eigs
from metarep.outputs import load_run, read_history

SMALL = ["--set", "task.d=12", "--set", "data.tasks=50", "--set", "run.steps=30", "--set", "run.eval_every=10"]
SUMMARY_KEYS = {
    "steps",
    "signal_eigs",
    "predicted_signal_eigs",
    "perp_norm2",
    "perp_fro2",
    "predicted_perp_rate",
    "subspace_sin",
    "head_norm",
    "wall_seconds",
    "status",
}


def invoke(*args):
    return CliRunner().invoke(app, list(args))


@pytest.mark.slow
def test_run_writes_every_output(tmp_path):
    out = tmp_path / "r"
    res = invoke("run", *SMALL, "--out", str(out))
    assert res.exit_code == 0, res.output
    for name in ("config.json", "history.csv", "summary.json", "dynamics.png"):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= SUMMARY_KEYS and summary["status"] == "complete" and summary["steps"] == 30
    assert len(summary["signal_eigs"]) == 5 == len(summary["predicted_signal_eigs"])
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [int(r["step"]) for r in rows] == [0, 10, 20, 30]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["task"]["d"] == 12 and cfg["config"]["model"]["width"] == 12
    assert {"torch", "metarep", "python"} <= set(cfg["versions"]) and "git_commit" in cfg and "seeds" in cfg
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
    run = load_run(out)
    assert run.params.B.shape == (12, 12) and run.config.task.d == 12 and run.summary["steps"] == 30
    sig = signal_eigs(run.params.B, run.tasks.B_star).tolist()
    assert sig == pytest.approx(summary["signal_eigs"], rel=1e-6)


@pytest.mark.slow
def test_config_file_and_overrides(tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text('[task]\nd = 10\nk = 3\ntask_cov = "identity"\n[data]\ntasks = "inf"\n[run]\nsteps = 20\n')
    out = tmp_path / "r"
    res = invoke("run", str(conf), "--set", "model.width=4", "--out", str(out))
    assert res.exit_code == 0, res.output
    s = json.loads((out / "summary.json").read_text())
    assert s["regime"] == "infinite" and len(s["signal_eigs"]) == 3
    assert json.loads((out / "config.json").read_text())["config"]["model"]["width"] == 4


@pytest.mark.slow
def test_same_seed_same_numbers(tmp_path):
    outs = []
    for name in ("a", "b"):
        res = invoke("run", *SMALL, "--out", str(tmp_path / name))
        assert res.exit_code == 0
        s = json.loads((tmp_path / name / "summary.json").read_text())
        s.pop("wall_seconds")
        outs.append(s)
    assert outs[0] == outs[1]
    res = invoke("run", *SMALL, "--set", "run.seed=1", "--out", str(tmp_path / "c"))
    s = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert s["signal_eigs"] != outs[0]["signal_eigs"]


BAD = [
    (["--set", "task.d=0"], "task.d"),
    (["--set", "task.d=-3"], "task.d"),
    (["--set", "task.k=60"], "task.k"),
    (["--set", "model.width=0"], "model.width"),
    (["--set", "method.alpha=0"], "method.alpha"),
    (["--set", "method.beta=-0.5"], "method.beta"),
    (["--set", "method.name=sgd"], "method.name"),
    (["--set", "method.lr=1"], "method.lr"),
    (["--set", "nosuch.key=1"], "nosuch"),
    (["--set", "data.m_in=0"], "data.m_in"),
    (["--set", "data.tasks=abc"], "data.tasks"),
    (["--set", "data.tasks=0"], "data.tasks"),
    (["--set", "run.dtype=float16"], "run.dtype"),
    (["--set", "run.steps=-1"], "run.steps"),
    (["--set", "task.sigma2=-1"], "task.sigma2"),
    (["--set", "task.task_cov=diag"], "task.task_cov"),
    (["--set", "nodot=1"], "--set"),
]


@pytest.mark.parametrize("args,key", BAD)
def test_bad_values_exit_2_naming_the_key(tmp_path, args, key):
    res = invoke("run", *args, "--out", str(tmp_path / "r"))
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0], res.output
    assert not (tmp_path / "r" / "summary.json").exists()


def test_malformed_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[task\nd = 3\n")
    res = invoke("run", str(bad))
    assert res.exit_code == 2 and "malformed TOML" in res.output and len(res.output.strip().splitlines()) == 1
    res = invoke("run", str(tmp_path / "missing.toml"))
    assert res.exit_code == 2 and "not found" in res.output


def test_unwritable_out_is_an_error_without_traceback(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "metarep.cli", "run", *SMALL, "--out", str(blocker / "sub")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: --out") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_divergence_stops_and_says_which_step_size(tmp_path):
    out = tmp_path / "r"
    res = invoke(
        "run",
        "--set",
        "data.tasks=inf",
        "--set",
        "method.beta=500",
        "--set",
        "run.steps=200",
        "--set",
        "task.d=10",
        "--out",
        str(out),
    )
    assert res.exit_code == 1
    assert "diverged" in res.output and "method.beta" in res.output
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "diverged" and s["steps"] < 200
    assert all(v == v for v in s["signal_eigs"])  # the last finite state, no NaN


@pytest.mark.parametrize(
    "args",
    [
        ["--set", "method.name=multitask", "--set", "data.tasks=inf"],
        ["--set", "method.name=moments", "--set", "data.fresh=true"],
        ["--set", "method.name=reptile", "--set", "data.tasks=inf"],
        ["--set", "method.name=anil", "--set", "data.tasks=inf", "--set", "method.inner_steps=2"],
        ["--set", "method.impl=jit"],
        ["--set", "method.optimizer=adam"],
    ],
)
def test_method_regime_mismatch_exits_2(tmp_path, args):
    res = invoke("run", *args, "--out", str(tmp_path / "r"))
    assert res.exit_code == 2 and res.output.startswith("error: "), res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_huge_but_finite_parameters_count_as_divergence(tmp_path):
    """Parameters that explode without reaching inf still stop the run cleanly (no linalg crash)."""
    out = tmp_path / "r"
    res = invoke(
        "run",
        "--set",
        "task.d=10",
        "--set",
        "model.init_scale=16",
        "--set",
        "data.tasks=inf",
        "--set",
        "run.steps=300",
        "--out",
        str(out),
    )
    assert res.exit_code == 1 and "diverged" in res.output
    assert json.loads((out / "summary.json").read_text())["status"] == "diverged"


@pytest.mark.slow
def test_demo_runs_both_regimes_and_says_what_a_finite_pool_changes(tmp_path):
    from metarep.outputs import verify_run

    out = tmp_path / "demo"
    sets = ["--set", "task.d=10", "--set", "model.width=10", "--set", "data.tasks=200", "--set", "run.steps=200"]
    res = subprocess.run(
        [sys.executable, "-m", "metarep.cli", "demo", "--out", str(out), "--steps", "300", *sets, "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert "falls like C/t" in res.stdout and "stops at a floor (the C/t law is for N = ∞)" in res.stdout
    assert verify_run(out / "infinite")["regime"] == "infinite"
    assert verify_run(out / "finite")["regime"] == "finite"
    assert (out / "demo.png").stat().st_size > 10_000
    # demo.json holds what the figure is drawn from: the figure is drawn again from it alone
    from metarep.demo_figure import redraw_demo

    doc = json.loads((out / "demo.json").read_text())
    assert len(doc["runs"]["infinite"][0]) == len(read_history(out / "infinite")) and doc["tasks"] == 200
    redraw_demo(out / "demo.json", tmp_path / "again.png")
    assert (tmp_path / "again.png").stat().st_size > 10_000
    bad = subprocess.run(
        [sys.executable, "-m", "metarep.cli", "demo", "--out", str(tmp_path / "x"), "--set", "data.tasks=inf"],
        capture_output=True,
    )
    assert bad.returncode == 2 and bad.stderr.decode().count("\n") == 1 and not (tmp_path / "x").exists()


def test_version_and_help():
    from metarep import __version__
    from metarep.cli.reproduce import EXPERIMENT_NAMES
    from metarep.experiments import EXPERIMENTS

    res = invoke("--version")
    assert res.exit_code == 0 and res.output.strip() == f"metarep {__version__}"
    assert tuple(EXPERIMENTS) == EXPERIMENT_NAMES  # the help's list is the experiments' list
    res = invoke("reproduce", "--help")
    assert res.exit_code == 0 and all(name in res.output for name in EXPERIMENTS)
    res = invoke("--help")
    assert res.exit_code == 0 and all(c in res.output for c in ("run", "evaluate", "plot", "reproduce", "--version"))


@pytest.mark.parametrize("args", [["--help"], ["reproduce", "--help"], ["run", "--help"], ["--version"]])
def test_help_and_version_do_not_import_torch(args):
    code = (
        "import sys\nfrom metarep.cli import app\n"
        f"try:\n    app({args!r})\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stderr.strip().splitlines()[-1] == "False", proc.stderr


def test_plot_redraws_a_runs_figures_and_evaluate_fits_100_columns(tmp_path):
    from metarep.outputs import verify_run

    run_dir = tmp_path / "r"
    assert invoke("run", *SMALL, "--set", "run.steps=10", "--out", str(run_dir)).exit_code == 0
    res = invoke("evaluate", str(run_dir), "--tasks", "20", "--m-test", "2,5,11,12,13,30,100", "--no-progress")
    assert res.exit_code == 0, res.output
    table = res.stdout.splitlines()[:-1]  # the last line names the files written
    assert max(len(line) for line in table) <= 100 and len(table) > 10
    assert res.output.count("m=13") == 1 and "nan" not in res.output  # every column once; no number is "nan"
    res = invoke("plot", str(run_dir), "--out", str(tmp_path / "figs"))
    assert res.exit_code == 0, res.output
    for name in ("dynamics.png", "evaluation.png"):  # the same data, the same titles: the same figures
        assert (tmp_path / "figs" / name).read_bytes() == (run_dir / name).read_bytes()
    assert invoke("plot", str(run_dir)).exit_code == 0 and verify_run(run_dir)
    res = invoke("plot", str(tmp_path / "figs"))
    assert res.exit_code == 2 and res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize("width,predicted", [(3, False), (5, False), (6, True)])
def test_run_reports_an_unlearning_constant_only_where_the_width_exceeds_k(tmp_path, width, predicted):
    from metarep import theory
    from metarep.config import load_config

    out = tmp_path / "r"
    res = invoke("run", *SMALL, "--set", "run.steps=10", "--set", f"model.width={width}", "--out", str(out))
    assert res.exit_code == 0, res.output
    s = json.loads((out / "summary.json").read_text())
    (perp,) = [line for line in res.output.splitlines() if line.strip().startswith("perp_norm2")]
    if predicted:
        cfg = load_config(None, [*SMALL[1::2], f"model.width={width}"])
        assert s["predicted_perp_rate"] == theory.unlearning_constant(cfg)["predicted_perp_rate"] > 0
        assert "perp_rate_note" not in s and f"predicted -> {s['predicted_perp_rate']:.4g})" in perp
        return
    assert s["predicted_perp_rate"] is None and f"width k'={width} ≤ k=5" in s["perp_rate_note"]
    assert perp.endswith("not predicted)") and f"  {s['perp_rate_note']}" in res.output.splitlines()
