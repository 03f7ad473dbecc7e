"""A reduced reproduction end to end, and resuming an interrupted one."""

import csv
import json

import pytest
from typer.testing import CliRunner

from metarep.cli import app
from metarep.experiments import QUICK, reproduce
from metarep.experiments.runner import RunSpec

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
