"""`metarep sweep`: spec validation (one line, exit code 2), the grid, the tables and figures, resuming,
and runs that diverge or fail."""

import csv
import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from metarep import outputs, theory
from metarep.cli import app
from metarep.config import load_config
from metarep.experiments import sweep_plots, sweep_results
from metarep.experiments.runner import RunSpec
from metarep.experiments.sweep import SweepError, _failures, load_sweep, parse_sweep
from metarep.experiments.sweep_spec import toml_value
from metarep.tasks import task_cov_diag

TINY = {"task.d": 8, "data.tasks": 40, "run.steps": 12, "run.eval_every": 4, "run.dtype": "float64"}


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def tiny_set() -> str:
    return "[set]\n" + "".join(f'"{k}" = {toml_value(v)}\n' for k, v in TINY.items())


# --------------------------------------------------------------------------------------------
# validation: every bad spec exits 2 with one line naming the key, before any run starts

BAD_SPECS = [
    ("seed = [0]", "seed: unknown top-level key; allowed: base, seeds, set, grid, evaluate"),
    ('[set]\n"model.widht" = 3', "set: model.widht: unknown key; allowed: width, init_scale, kind"),
    ('[grid]\n"model.widht" = [3, 5]', 'grid "model.widht" = 3: model.widht: unknown key'),
    ('[grid]\n"model.width" = [3, -3]', 'grid "model.width" = -3: model.width: must be an integer >= 1, got -3'),
    ('[grid]\n"method.name" = ["fo_anl"]', 'grid "method.name" = "fo_anl": method.name: must be one of fo_anil'),
    ('[grid]\n"model.width" = []', 'grid "model.width": empty list'),
    ('[grid]\n"model.width" = 5', 'grid "model.width": must be a list of values, e.g. [5]'),
    ('[grid]\n"model.width" = [3, 3]', 'grid "model.width": the value 3 is given twice'),
    ('[grid]\n"width" = [3]', 'grid "width": expected a config key section.key'),
    ('[set]\n"model.width" = [3, 5]', 'set "model.width": takes one value, got the list [3, 5]; a list of values'),
    ('[set]\n"run.seed" = 3', 'set "run.seed": give the seeds as the top-level list'),
    ('[set]\n"model.width" = 3\n[grid]\n"model.width" = [3, 5]', 'grid "model.width": also given in [set]'),
    ("seeds = [0, -1]", "seeds: must be a non-empty list of distinct integers >= 0, got [0, -1]"),
    ("seeds = 3", "seeds: must be a non-empty list of distinct integers >= 0, got 3"),
    ("seeds = [true]", "seeds: must be a non-empty list of distinct integers >= 0, got [true]"),
    ("seeds = []", "seeds: must be a non-empty list"),
    ('base = "nope.toml"', "base: file not found"),
    ("seeds = [0, 1", "SPEC: malformed TOML"),
    ("[evaluate]\nm_test = [0, 10]", "evaluate.m_test: must be a non-empty list of integers >= 1"),
    ("[evaluate]\ntasks = 1", "evaluate.tasks: must be an integer >= 2"),
    ("[evaluate]\nm = [10]", "evaluate.m: unknown key; allowed: m_test, tasks"),
    (
        '[set]\n"data.task_batch" = 100\n[grid]\n"data.tasks" = [200, 50]',
        'grid "data.tasks" = 50: data.task_batch: must be <= data.tasks (50), got 100',
    ),
    (
        '[grid]\n"data.tasks" = ["inf", 100]\n"method.name" = ["fo_anil", "multitask"]',
        'grid "data.tasks" = "inf", "method.name" = "multitask": data.tasks: method multitask needs a fixed pool',
    ),
]


@pytest.mark.parametrize("text, message", BAD_SPECS, ids=[m.split(":")[0] for _, m in BAD_SPECS])
def test_bad_spec_exits_2_with_one_line(tmp_path, text, message):
    spec = write_spec(tmp_path / "bad.toml", text)
    res = invoke("sweep", spec, "--out", tmp_path / "out", "--no-progress")
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert lines[0].startswith("error: ") and message in lines[0], res.output
    assert "Traceback" not in res.output and not (tmp_path / "out").exists()  # nothing started


def test_bad_base_file_and_options(tmp_path):
    (tmp_path / "base.toml").write_text("[task]\nd = -1\n")
    res = invoke("sweep", write_spec(tmp_path / "s.toml", 'base = "base.toml"'), "--no-progress")
    assert res.exit_code == 2 and "task.d: must be an integer >= 1, got -1" in res.output
    assert res.output.startswith(f"error: base {tmp_path / 'base.toml'}: "), res.output
    (tmp_path / "base.toml").write_text("[task\n")
    res = invoke("sweep", tmp_path / "s.toml")
    assert res.exit_code == 2 and "base: malformed TOML" in res.output
    for args, message in [
        (["--jobs", "0"], "--jobs: must be an integer >= 1"),
        (["--jobs", "2", "--scheduler", "tcp://127.0.0.1:1"], "--jobs and --scheduler are exclusive"),
    ]:
        res = invoke("sweep", tmp_path / "s.toml", *args)
        assert res.exit_code == 2 and res.output.strip() == f"error: {res.output.strip()[7:]}"
        assert message in res.output and len(res.output.strip().splitlines()) == 1
    res = invoke("sweep", tmp_path / "missing.toml")
    assert res.exit_code == 2 and "SPEC: file not found" in res.output


# --------------------------------------------------------------------------------------------
# the grid, the overrides and the base


def test_grid_is_the_product_with_seeds():
    sw = parse_sweep(
        {
            "seeds": [3, 1],
            "set": {"run": {"steps": 5}, "task.sigma2": 1.5},  # dotted keys and quoted keys alike
            "grid": {"model.width": [2, 5, 8], "method.name": ["fo_anil", "anil"], "data.fresh": [False]},
        }
    )
    runs = sw.runs()
    assert len(sw.points()) == 3 * 2 * 1 and len(runs) == 6 * 2
    assert [r.seed for r in runs[:4]] == [3, 1, 3, 1]
    assert [dict(r.point)["model.width"] for r in runs[::4]] == [2, 5, 8]  # the first key varies slowest
    assert runs[0].spec.overrides == (
        "run.steps=5",
        "task.sigma2=1.5",
        "model.width=2",
        'method.name="fo_anil"',
        "data.fresh=false",
    )
    cfg = runs[-1].spec.config()
    assert (cfg.model.width, cfg.method.name, cfg.run.seed, cfg.run.steps, cfg.task.sigma2) == (8, "anil", 1, 5, 1.5)
    assert len({r.key() for r in runs}) == len(runs)


def test_without_grid_one_point_and_default_seed():
    sw = parse_sweep({"set": {"run.steps": 3}})
    assert sw.points() == [()] and [r.seed for r in sw.runs()] == [0] and sw.m_test == ()


@pytest.mark.parametrize("value", [True, 3, 0.1, 1e-05, 1e20, float("inf"), -0.0, "inf", 'a "quoted" \\ name'])
def test_values_round_trip_through_the_overrides(value):
    assert tomllib.loads(f"v = {toml_value(value)}")["v"] == value


def test_base_entries_go_into_the_overrides_not_its_path(tmp_path, monkeypatch):
    (tmp_path / "spec").mkdir()
    (tmp_path / "conf.toml").write_text('[task]\nd = 9\ntask_cov = "identity"\n[data]\ntasks = "inf"\n')
    spec = write_spec(tmp_path / "spec" / "s.toml", 'base = "conf.toml"\n[grid]\n"task.sigma2" = [1.0]')
    with pytest.raises(SweepError, match="base: file not found"):
        load_sweep(spec)  # neither beside the spec nor in the working directory
    monkeypatch.chdir(tmp_path)  # found in the working directory
    run = load_sweep(spec).runs()[0]
    assert run.spec.overrides == ("task.d=9", 'task.task_cov="identity"', 'data.tasks="inf"', "task.sigma2=1.0")
    (tmp_path / "spec" / "conf.toml").write_text("[task]\nd = 7\n")  # the spec's folder comes first
    assert load_sweep(spec).runs()[0].spec.config().task.d == 7
    assert not any("conf.toml" in o for o in run.spec.overrides)


def test_evaluate_defaults_and_runspec():
    sw = parse_sweep({"evaluate": {"m_test": [20, 10, 20]}})
    assert sw.m_test == (10, 20) and sw.eval_tasks == 2000
    assert sw.runs()[0].spec == RunSpec((), 0, (10, 20), 2000)


# --------------------------------------------------------------------------------------------
# tables and figures from run folders


def fake_run(store: Path, key: str, status: str, value: float, evaluation: bool = True) -> None:
    d = store / key
    d.mkdir(parents=True)
    summary = {"status": status, "message": "diverged at step 2; lower method.beta" if status == "diverged" else ""}
    summary.update({k: value for k in sweep_results.METRICS}, signal_eigs=[value] * 5, wall_seconds=1.0)
    names = outputs.RUN_FILES + (outputs.EVALUATION_FILES if evaluation else ())
    for name in names:  # stand-ins: the folder is read only through its sealed summary
        (d / name).write_bytes(b"stand-in")
    if evaluation:
        est = {"learned": {"mc_mean": [value, 2 * value], "mc_se": [0.1, 0.1], "closed_form": [None, value]}}
        (d / "evaluation.json").write_text(json.dumps({"m_test": [5, 10], "estimators": est}))
    outputs.seal(d, summary, names)


def test_results_summary_and_figures_from_run_folders(tmp_path):
    sw = parse_sweep(
        {
            "seeds": [0, 1, 2],
            "set": {"task.d": 8},
            "grid": {"method.name": ["fo_anil", "multitask"], "model.width": [3, 8]},
            "evaluate": {"m_test": [5, 10], "tasks": 20},
        }
    )
    runs, store = sw.runs(), tmp_path / "runs"
    for i, run in enumerate(runs):  # the last run failed without a result; one diverged
        if i == len(runs) - 1:
            continue
        fake_run(store, run.key(), "diverged" if i == 4 else "complete", float(i), evaluation=i != 4)
    failures = _failures({"errors": [f"{runs[-1].key()}: RuntimeError: boom"]})
    rows = sweep_results.collect(sw, runs, store, failures)
    assert len(rows) == 12 and [r["status"] for r in rows].count("complete") == 10
    assert rows[4]["status"] == "diverged" and "lower method.beta" in rows[4]["message"]
    assert math.isnan(rows[4]["perp_norm2"])  # no final metrics of a run that did not complete
    assert rows[-1]["status"] == "failed" and rows[-1]["message"] == "RuntimeError: boom"
    assert rows[0]["risk_m10"] == 0.0 and math.isnan(rows[1]["risk_m5_closed_form"]) and rows[1]["risk_m10"] == 2.0
    assert rows[0]["theory"] == "first_order" and rows[-1]["theory"] == "none" and rows[0]["width"] == 3
    cfg = load_config(None, ["task.d=8", "model.width=3"])
    s = task_cov_diag(cfg.task.k, cfg.task.task_cov, cfg.cov_trace)
    assert rows[0]["predicted_risk_m10"] == theory.limit_one_step_risk(s, cfg.task.sigma2, cfg.data.m_in, 10, 3)
    assert rows[0]["predicted_risk_m_in"] == theory.predictions(cfg)["predicted_risk_m_in"]  # no summary: the theory
    # width 3 <= k = 5: no unlearning constant; width 8: the theory's
    want = theory.unlearning_constant(load_config(None, ["task.d=8", "model.width=8"]))["predicted_perp_rate"]
    assert math.isnan(rows[0]["predicted_perp_rate"]) and rows[3]["predicted_perp_rate"] == want > 0
    summary = sweep_results.summarize(sw, rows)
    assert len(summary) == 4 and [s["complete"] for s in summary] == [3, 2, 3, 2]
    assert math.isnan(summary[0]["predicted_perp_rate"]) and summary[1]["predicted_perp_rate"] == want
    assert summary[0]["perp_norm2_mean"] == pytest.approx(1.0) and summary[0]["perp_norm2_sd"] == pytest.approx(1.0)
    assert summary[1]["perp_norm2_mean"] == pytest.approx(4.0)  # seeds 3 and 5; 4 diverged
    paths = sweep_plots.draw_all(sw, summary, tmp_path)
    names = {p.name for p in paths}
    assert {"perp_norm2.png", "signal_eig_5.png", "risk_m10.png"} <= names and len(names) == 8 + 5 + 2
    assert all(p.stat().st_size > 5_000 for p in paths)


def test_a_sweep_has_no_unlearning_constant_where_the_width_is_at_most_k(tmp_path):
    spec = write_spec(tmp_path / "s.toml", "seeds = [0]\n" + tiny_set() + '[grid]\n"model.width" = [3, 8]\n')
    out = tmp_path / "out"
    res = invoke("sweep", spec, "--out", out, "--no-progress")
    assert res.exit_code == 0, res.output
    rows = read_csv(out / "results.csv")
    assert [r["model.width"] for r in rows] == ["3", "8"] and all(r["status"] == "complete" for r in rows)
    narrow = json.loads((out / rows[0]["run_dir"] / "summary.json").read_text())
    assert narrow["predicted_perp_rate"] is None and "width k'=3 ≤ k=5" in narrow["perp_rate_note"]
    assert rows[0]["predicted_perp_rate"] == "nan" == read_csv(out / "summary.csv")[0]["predicted_perp_rate"]
    wide = json.loads((out / rows[1]["run_dir"] / "summary.json").read_text())
    assert float(rows[1]["predicted_perp_rate"]) == wide["predicted_perp_rate"] > 0


def test_runner_failures_are_read_from_either_form():
    assert _failures({"failures": {"k1": "OSError: gone"}, "errors": ["k2: ValueError: x: y"]}) == {
        "k1": "OSError: gone",
        "k2": "ValueError: x: y",
    }
    assert _failures({"ran": 3}) == {}


def test_predictions_are_drawn_where_the_theory_applies():
    assert sweep_plots.prediction_of("signal_eig_2", "second_order") == "predicted_signal_eig_2"
    assert sweep_plots.prediction_of("risk_m10") == "predicted_risk_m10"
    assert sweep_plots.prediction_of("perp_rate", "first_order") == "predicted_perp_rate"
    assert sweep_plots.prediction_of("perp_rate", "first_order", overparametrized=False) is None
    assert sweep_plots.prediction_of("perp_rate", "second_order") is None
    assert sweep_plots.prediction_of("signal_eig_1", "none") is None
    assert sweep_plots.prediction_of("perp_norm2") is None


# --------------------------------------------------------------------------------------------
# end to end through the local executor


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_sweep_end_to_end_resume_and_divergence(tmp_path):
    spec = write_spec(
        tmp_path / "s.toml",
        "seeds = [0, 1]\n"
        + tiny_set()
        + '[grid]\n"model.width" = [2, 8]\n"method.beta" = [0.5, 1e6]\n[evaluate]\nm_test = [5]\ntasks = 20\n',
    )
    out = tmp_path / "out"
    res = invoke("sweep", spec, "--out", out, "--no-progress")
    assert res.exit_code == 1, res.output
    assert "8 runs: 0 reused, 4 ran, 4 failed (4 diverged)" in res.output
    diverged = [line for line in res.output.splitlines() if line.startswith("diverged: ")]
    assert len(diverged) == 4 and all(
        "method.beta=1000000.0" in line and "lower method.beta" in line for line in diverged
    )
    assert res.output.strip().splitlines()[-1].startswith("error: 4 of 8 runs did not complete")

    rows = read_csv(out / "results.csv")
    assert len(rows) == 8
    want = {"model.width", "method.beta", "seed", "status", "theory", "perp_norm2", "perp_rate", "signal_eig_5"}
    want |= {"predicted_perp_rate", "predicted_risk_m_in", "predicted_signal_eig_5", "risk_m5", "risk_m5_se"}
    want |= {"risk_m5_closed_form", "predicted_risk_m5", "wall_seconds", "message", "run_dir"}
    assert want <= set(rows[0])
    assert [r["status"] for r in rows] == ["complete", "complete", "diverged", "diverged"] * 2
    assert rows[2]["perp_norm2"] == "nan" and "lower method.beta" in rows[2]["message"]

    # the numbers are those of `metarep run` with the same config
    r = rows[1]  # width 2, beta 0.5, seed 1
    sets = [f"{k}={toml_value(v)}" for k, v in TINY.items()] + ["model.width=2", "method.beta=0.5", "run.seed=1"]
    single = tmp_path / "single"
    assert invoke("run", *[a for s in sets for a in ("--set", s)], "--out", single, "--no-progress").exit_code == 0
    s = json.loads((single / "summary.json").read_text())
    for key in ("perp_norm2", "perp_rate", "subspace_sin", "effective_rank"):
        assert float(r[key]) == pytest.approx(s[key], rel=1e-9), key
    assert r["predicted_perp_rate"] == "nan" and s["predicted_perp_rate"] is None  # width 2 <= k: no constant
    assert float(r["signal_eig_2"]) == pytest.approx(s["signal_eigs"][1], rel=1e-9)
    assert float(r["predicted_signal_eig_5"]) == pytest.approx(s["predicted_signal_eigs"][4], rel=1e-12)

    # summary.csv: the mean and sd over the complete seeds
    summary = read_csv(out / "summary.csv")
    assert len(summary) == 4 and [s["complete"] for s in summary] == ["2", "0", "2", "0"]
    vals = [float(x["perp_norm2"]) for x in rows[:2]]
    assert float(summary[0]["perp_norm2_mean"]) == pytest.approx(np.mean(vals), rel=1e-12)
    assert float(summary[0]["perp_norm2_sd"]) == pytest.approx(np.std(vals, ddof=1), rel=1e-9)
    assert summary[1]["perp_norm2_mean"] == "nan"
    for metric in sweep_plots.figure_metrics(load_sweep(spec), 5):
        assert (out / f"{metric}.png").stat().st_size > 5_000, metric

    # resume: every run is reused (the diverged ones are not made again)
    again = invoke("sweep", spec, "--out", out, "--no-progress")
    assert again.exit_code == 1 and "8 runs: 4 reused, 0 ran, 4 failed (4 diverged)" in again.output
    (out / rows[0]["run_dir"] / "summary.json").unlink()  # an interrupted run is made again, alone
    third = invoke("sweep", spec, "--out", out, "--no-progress")
    assert "8 runs: 3 reused, 1 ran, 4 failed (4 diverged)" in third.output
    assert read_csv(out / "results.csv")[0]["perp_norm2"] == rows[0]["perp_norm2"]


def test_example_spec_is_valid():
    root = Path(__file__).resolve().parents[1]
    sw = load_sweep(root / "examples" / "sweep.toml")
    assert len(sw.runs()) == 36 and sw.base == root / "examples" / ".." / "configs" / "paper.toml"
