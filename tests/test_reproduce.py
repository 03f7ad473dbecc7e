"""A reduced reproduction end to end, and resuming an interrupted one."""

import csv
import dataclasses
import json

import pytest
from typer.testing import CliRunner

from metarep import theory
from metarep.cli import app
from metarep.config import load_config
from metarep.experiments import EXPERIMENTS, PAPER, QUICK, Series, framework, reproduce, snapshot
from metarep.experiments.paper.setting import infinite, method_series
from metarep.experiments.runner import RunSpec
from metarep.methods import registry

TINY = QUICK.__class__(
    d=8,
    tasks=60,
    steps=20,
    steps_inf=200,
    eval_every=5,
    eval_every_inf=20,
    eval_tasks=40,
    m_test=(5, 20),
    widths=(2, 5, 8),
    relu_tasks=40,
    relu_steps=10,
    multitask_steps=3,
)


@pytest.mark.slow
def test_smoke_reproduction_and_resume(tmp_path):
    out = tmp_path / "rep"
    res = reproduce(["learning", "width"], seeds=2, jobs=2, out=out, scale=TINY, progress=False)
    c = res["counts"]
    assert c["total"] == 2 * (2 + 3) and c["ran"] == c["total"] and c["skipped"] == 0
    report = (out / "REPORT.md").read_text()
    for name in ("learning", "width"):
        assert (out / f"{name}.png").stat().st_size > 10_000
        assert f"![{name}]({name}.png)" in report
        rows = list(csv.DictReader((out / f"{name}.csv").open()))
        assert rows and {"label", "metric", "mean", "std", "seeds", "predicted"} <= set(rows[0])
    # the infinite regime reaches the predicted limit even at this size: the report says so
    assert "Infinite tasks: the eigenvalues reach the predicted limit" in report
    # each figure is drawn again from its snapshot alone, as the docs' figures are: the same drawing
    # (same code path, same process: the same bytes), and the snapshot holds what was aggregated
    for name in ("learning", "width"):
        assert framework.redraw(PAPER, out / f"{name}.json", tmp_path / f"{name}.png", "") == name
        assert (tmp_path / f"{name}.png").read_bytes() == (out / f"{name}.png").read_bytes()
    _, learning = snapshot.load(out / "learning.json")
    assert [s.label for s in learning.series] == ["finite N=60", "infinite"]
    assert learning.series[1].config.infinite and learning.series[0].curves[0].mean.dtype.kind == "f"

    # an interrupted reproduction: one run lost its result; only that run is made again
    run_dirs = sorted((out / "runs").iterdir())
    (run_dirs[0] / "summary.json").unlink()
    again = reproduce(["learning", "width"], seeds=2, jobs=1, out=out, scale=TINY, progress=False)
    assert again["counts"]["ran"] == 1 and again["counts"]["skipped"] == c["total"] - 1
    assert json.loads((run_dirs[0] / "summary.json").read_text())["status"] == "complete"


def test_run_keys_are_shared_between_identical_configs():
    a = RunSpec(("task.d=8", "method.name=fo_anil"), 0, (5,))
    b = RunSpec(("task.d=8",), 0, (5,))
    assert a.key() == b.key()
    assert a.key() != RunSpec(("task.d=8",), 1, (5,)).key()
    assert a.key() != RunSpec(("task.d=8",), 0).key()


@pytest.mark.slow
def test_predictions_follow_the_config_of_the_runs(tmp_path):
    # another setting than the defaults: the predicted limits and the report's header move with it
    extra = ("task.sigma2=1.0", "data.m_in=10", "method.alpha=0.2")
    learning = dataclasses.replace(EXPERIMENTS["learning"], series=lambda s: [Series("infinite", infinite(s, *extra))])
    study = dataclasses.replace(PAPER, experiments={"learning": learning})
    framework.reproduce(study, None, TINY, seeds=1, out=tmp_path, progress=False, command="test")
    cfg = load_config(None, [*infinite(TINY, *extra), "run.seed=0"])
    want = theory.predictions(cfg)["predicted_signal_eigs"]
    assert want != theory.predictions(load_config(None, infinite(TINY)))["predicted_signal_eigs"]
    rows = list(csv.DictReader((tmp_path / "learning.csv").open()))
    for j, p in enumerate(want):
        got = [float(r["predicted"]) for r in rows if r["metric"] == f"signal_eig_{j + 1}"]
        assert got and got == pytest.approx([p] * len(got), rel=1e-12)
    report = (tmp_path / "REPORT.md").read_text()
    assert "σ² = 1," in report and "m_in = 10," in report and "α = 0.2," in report


def test_a_registered_method_joins_the_method_experiments():
    spec = registry.MethodSpec(
        name="fo_test_only",
        label="FO-TEST",
        kind="meta",
        adapts="head",
        order="first",
        series_overrides=lambda scale: (f"method.inner_steps={scale.multitask_steps}",),
    )
    registry.register(spec)
    try:
        series = {s.label: s for s in method_series(TINY)}
        names = registry.names(harness=True)
        assert list(series) == [n for n in names if registry.get(n).runs_in("finite")]
        assert "fo_test_only" in series
        assert series["fo_test_only"].overrides[-2:] == ("method.name=fo_test_only", "method.inner_steps=3")
        assert series["reptile"].overrides[-1] == "method.inner_steps=5"
        assert series["multitask"].overrides[-1] == "run.steps=3"
        for name in ("methods", "adaptation"):
            assert "fo_test_only" in {s.label for s in EXPERIMENTS[name].series(TINY)}
    finally:
        registry.unregister("fo_test_only")
    assert "fo_test_only" not in {s.label for s in method_series(TINY)}


@pytest.mark.parametrize(
    "args,key",
    [
        (["nosuch"], "NAME"),
        (["--seeds", "0"], "--seeds"),
        (["--jobs", "0"], "--jobs"),
    ],
)
def test_reproduce_bad_input(tmp_path, args, key):
    res = CliRunner().invoke(app, ["reproduce", *args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and res.output.startswith("error: ") and key in res.output


def test_the_report_keeps_the_sections_of_every_experiment_in_the_folder(tmp_path):
    for name in ("alpha", "learning"):  # e.g. `reproduce learning` then `reproduce alpha` into one folder
        (tmp_path / f"{name}.md").write_text(f"## section of {name}\n")
    (tmp_path / "notes.md").write_text("## not an experiment\n")
    report = framework.write_report(PAPER, tmp_path).read_text()
    assert report.startswith(f"# {PAPER.title}\n")
    # in the study's order, whatever the order they were made in; nothing else
    assert report.index("## section of learning") < report.index("## section of alpha")
    assert "[`learning`](learning.md), [`alpha`](alpha.md)" in report and "not an experiment" not in report


def test_missing_numbers_read_as_a_dash():
    assert framework.fmt_pm(float("nan"), float("nan")) == "–" == framework.fmt_pm(None, 0.1)
    assert framework.fmt_pm(1.23456, float("nan")) == "1.23"
    assert framework.fmt_pm(1.23456, 0.0123) == "1.23 ± 0.01"
    assert framework.fmt_pm(1.23456, 0.0123, 4, 2) == "1.235 ± 0.012"


@pytest.mark.slow
def test_a_partial_reproduction_does_not_replace_the_report(tmp_path):
    reproduce(["learning"], seeds=1, out=tmp_path, scale=TINY, progress=False)
    reproduce(["width"], seeds=1, out=tmp_path, scale=TINY, progress=False)
    report = (tmp_path / "REPORT.md").read_text()
    assert "![learning](learning.png)" in report and "![width](width.png)" in report
    assert "`metarep reproduce learning --seeds 1`" in report and "`metarep reproduce width --seeds 1`" in report
    assert "nan" not in report
