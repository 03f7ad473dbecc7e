"""A run folder is finished exactly when its summary's manifest proves it: every damaged data file is
caught, ``evaluate`` refuses it in one line, the runner makes exactly that run again with the same
results, and two processes sharing a store never make a run twice. A missing or damaged figure is
no reason to refuse or redo a run: it is drawn again."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import TINY_RUN
from typer.testing import CliRunner

from metarep import outputs
from metarep.cli import app
from metarep.experiments import runner
from metarep.experiments.runner import RunSpec, is_complete, run_all
from metarep.experiments.sweep_results import run_status
from metarep.outputs import (
    EVALUATION_FIGURES,
    EVALUATION_FILES,
    RUN_FIGURES,
    RUN_FILES,
    SUMMARY,
    NotFinishedRun,
    stale_figures,
    verify_run,
)

TINY = TINY_RUN
SPECS = [RunSpec(TINY, seed, (5, 10), 20) for seed in range(2)]
KEYS = [s.key() for s in SPECS]


class InProcess:
    """An executor that makes each run here, one after the other (no worker processes to start)."""

    def submit_all(self, fn, items, names=None):
        for item in items:
            try:
                yield item, fn(item)
            except Exception as e:  # noqa: BLE001 - handed back like a pool would
                yield item, e

    def close(self, cancel=False):
        pass


@pytest.fixture(scope="module")
def healthy(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("healthy") / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "make_executor", lambda jobs, scheduler: InProcess())
        c = run_all(SPECS, store, progress=False)
    assert (c["ran"], c["failed"]) == (2, 0)
    return store


@pytest.fixture
def store(healthy, tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(runner, "make_executor", lambda jobs, scheduler: InProcess())
    out = tmp_path / "runs"
    shutil.copytree(healthy, out)
    return out


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _on(damage, name: str, d: Path) -> None:
    damage(d / name)


def _edit_summary(d: Path) -> None:
    s = json.loads((d / SUMMARY).read_text())
    s["subspace_sin"] = 0.0  # a number changed by hand, manifest kept
    (d / SUMMARY).write_text(json.dumps(s))


def _old_format(d: Path) -> None:
    s = json.loads((d / SUMMARY).read_text())
    del s["manifest"]  # as written before manifests existed
    (d / SUMMARY).write_text(json.dumps(s))


def _other_config(d: Path) -> None:
    # a run killed while rewriting this folder: the new config.json beside the old files
    shutil.copy(d.parent / KEYS[1] / "config.json", d / "config.json")


def _cut_history(d: Path) -> None:
    lines = (d / "history.csv").read_text().splitlines(keepends=True)
    (d / "history.csv").write_text("".join(lines[:-1]) + lines[-1][:3])


DAMAGE = {
    **{f"delete {n}": functools.partial(_on, Path.unlink, n) for n in (*RUN_FILES, *EVALUATION_FILES, SUMMARY)},
    **{f"truncate {n}": functools.partial(_on, _truncate, n) for n in (*RUN_FILES, *EVALUATION_FILES, SUMMARY)},
    **{f"flip a byte of {n}": functools.partial(_on, _flip, n) for n in (*RUN_FILES, *EVALUATION_FILES)},
    "summary []": lambda d: (d / SUMMARY).write_text("[]"),
    "summary status only": lambda d: (d / SUMMARY).write_text('{"status": "complete"}'),
    "summary numbers edited": _edit_summary,
    "summary without manifest": _old_format,
    "garbage evaluation.json": lambda d: (d / "evaluation.json").write_text("garbage{"),
    "cut history.csv": _cut_history,
    "new config.json beside the old run": _other_config,
}
RUN_DAMAGE = [k for k in DAMAGE if "evaluation" not in k]  # what `metarep evaluate` reads


def test_a_healthy_run_verifies_and_its_summary_only_gains_the_manifest(healthy):
    d = healthy / KEYS[0]
    summary = verify_run(d, EVALUATION_FILES)
    assert set(summary["manifest"]) == {*RUN_FILES, *EVALUATION_FILES, SUMMARY}
    assert summary["status"] == "complete" and is_complete(d, SPECS[0])
    loaded = outputs.load_run(d)
    assert loaded.summary == summary and loaded.config.run.seed == 0
    assert not list(healthy.glob("*.lock/*")) and all(p.is_file() for p in healthy.glob("*.lock"))


@pytest.mark.parametrize("case", list(DAMAGE))
def test_every_damage_is_caught_and_the_records_readers_do_not_crash(store, case):
    d = store / KEYS[0]
    DAMAGE[case](d)
    with pytest.raises(NotFinishedRun, match="not a finished metarep run"):
        verify_run(d, EVALUATION_FILES)
    assert not is_complete(d, SPECS[0])
    status, message = run_status(d, wants_evaluation=True)
    assert status == "failed" and "not a finished metarep run" in message


@pytest.mark.parametrize("case", RUN_DAMAGE)
def test_evaluate_refuses_a_damaged_run_in_one_line(store, tmp_path, case):
    d = store / KEYS[0]
    DAMAGE[case](d)
    res = CliRunner().invoke(app, ["evaluate", str(d), "--tasks", "4", "--out", str(tmp_path / "e")])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert lines[0].startswith(f"error: {d}: not a finished metarep run (") and "Traceback" not in res.output
    assert not (tmp_path / "e" / "evaluation.json").exists()


def _results(store: Path) -> dict:
    """Every file of every run, the summary without its timing."""
    out = {}
    for key in KEYS:
        for p in sorted((store / key).iterdir()):
            if p.name == SUMMARY:
                s = json.loads(p.read_text())
                s.pop("wall_seconds")  # timing, left out of the manifest's own digest
                out[key, p.name] = s
            elif not p.name.startswith("."):
                out[key, p.name] = p.read_bytes()
    return out


@pytest.mark.parametrize(
    "case",
    [
        "delete params.npz",
        "truncate params.npz",
        "flip a byte of history.csv",
        "summary []",
        "summary status only",
        "summary numbers edited",
        "summary without manifest",
        "garbage evaluation.json",
        "delete evaluation.csv",
        "cut history.csv",
        "new config.json beside the old run",
    ],
)
def test_the_runner_makes_exactly_the_damaged_run_again(healthy, store, capsys, case):
    DAMAGE[case](store / KEYS[0])
    c = run_all(SPECS, store, progress=False)
    assert (c["total"], c["ran"], c["skipped"], c["failed"]) == (2, 1, 1, 0)
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and KEYS[0] in notes[0] and "not a finished metarep run" in notes[0]
    assert _results(store) == _results(healthy)


FIGURE_DAMAGE = {
    **{f"delete {n}": functools.partial(_on, Path.unlink, n) for n in (*RUN_FIGURES, *EVALUATION_FIGURES)},
    **{f"truncate {n}": functools.partial(_on, _truncate, n) for n in (*RUN_FIGURES, *EVALUATION_FIGURES)},
    **{f"flip a byte of {n}": functools.partial(_on, _flip, n) for n in (*RUN_FIGURES, *EVALUATION_FIGURES)},
}


def _old_manifest(d: Path) -> None:
    """As written before figures were kept apart: the figures' digests in the manifest, beside the data's."""
    s = json.loads((d / SUMMARY).read_text())
    s["manifest"].update(s.pop("figures"))
    (d / SUMMARY).write_text(json.dumps(s))


def test_figures_are_recorded_apart_from_the_data(healthy):
    s = verify_run(healthy / KEYS[0])
    assert not [n for n in s["manifest"] if n.endswith(".png")]
    assert set(s["figures"]) == {*RUN_FIGURES, *EVALUATION_FIGURES}
    assert stale_figures(healthy / KEYS[0], s) == []


@pytest.mark.parametrize("old", [False, True], ids=["new manifest", "old manifest"])
@pytest.mark.parametrize("case", list(FIGURE_DAMAGE))
def test_a_damaged_figure_is_no_reason_to_refuse_a_run(store, case, old):
    d = store / KEYS[0]
    if old:
        _old_manifest(d)
    FIGURE_DAMAGE[case](d)
    summary = verify_run(d, EVALUATION_FILES)
    assert stale_figures(d, summary) == [case.split()[-1]]
    assert outputs.load_run(d).summary == summary and is_complete(d, SPECS[0])
    assert run_status(d, wants_evaluation=True) == ("complete", "")


@pytest.mark.parametrize("old", [False, True], ids=["new manifest", "old manifest"])
@pytest.mark.parametrize("case", list(FIGURE_DAMAGE))
def test_the_runner_reuses_a_run_with_a_damaged_figure_and_draws_it_again(healthy, store, capsys, case, old):
    if old:
        _old_manifest(store / KEYS[0])
    FIGURE_DAMAGE[case](store / KEYS[0])
    c = run_all(SPECS, store, progress=False)
    assert (c["total"], c["ran"], c["skipped"], c["failed"]) == (2, 0, 2, 0)
    assert "note:" not in capsys.readouterr().err
    d, name = store / KEYS[0], case.split()[-1]
    assert stale_figures(d, verify_run(d, EVALUATION_FILES)) == []  # drawn again, its digest recorded
    got, want = _results(store), _results(healthy)
    if name == "evaluation.png":  # drawn again with the run's folder in its title (a worker's has none)
        assert got.pop((KEYS[0], name)) != want.pop((KEYS[0], name))
        got[KEYS[0], SUMMARY].pop("figures"), want[KEYS[0], SUMMARY].pop("figures")
    # the data untouched, the summary resealed as the run wrote it, dynamics.png the same bytes again
    assert got == want


@pytest.mark.parametrize("case", ["delete dynamics.png", "truncate dynamics.png", "flip a byte of evaluation.png"])
def test_plot_draws_a_missing_or_damaged_figure_again(healthy, store, case):
    d = store / KEYS[0]
    FIGURE_DAMAGE[case](d)
    name = case.split()[-1]
    damaged = None if "delete" in case else (d / name).read_bytes()
    res = CliRunner().invoke(app, ["plot", str(d)])
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"-> {d / 'dynamics.png'}, {d / 'evaluation.png'}")
    drawn = (d / name).read_bytes()
    assert drawn.startswith(b"\x89PNG\r\n\x1a\n") and drawn.endswith(b"IEND\xaeB`\x82") and drawn != damaged
    assert (d / "dynamics.png").read_bytes() == (healthy / KEYS[0] / "dynamics.png").read_bytes()
    assert stale_figures(d, verify_run(d, EVALUATION_FILES)) == []


def test_evaluate_accepts_a_run_without_its_figure(store, tmp_path):
    d = store / KEYS[0]
    (d / "dynamics.png").unlink()
    res = CliRunner().invoke(app, ["evaluate", str(d), "--tasks", "4", "--m-test", "5", "--out", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "e" / "evaluation.json").is_file()


def test_save_run_removes_the_old_marker_before_writing(store, monkeypatch):
    from metarep.train import train

    d = store / KEYS[0]
    result = train(SPECS[1].config(), progress=False)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # stands for a kill between two files

    monkeypatch.setattr(outputs, "plot_dynamics", killed)
    with pytest.raises(KeyboardInterrupt):
        outputs.save_run(result, d)
    assert not (d / SUMMARY).exists()
    with pytest.raises(NotFinishedRun, match=r"\(no summary.json\)"):
        verify_run(d)


@pytest.mark.slow
def test_a_run_killed_while_rewriting_its_out_is_not_finished(store, tmp_path):
    """``metarep run --out --overwrite`` over a finished run, killed (whole process group) as soon as it writes."""
    import signal
    import time

    d = store / KEYS[0]
    sets = [a for o in TINY for a in ("--set", o)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "metarep.cli", "run", *sets, "--set", "run.seed=1", "--out", str(d), "--no-progress"]
        + ["--overwrite"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while (d / SUMMARY).exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        if proc.poll() is None:  # (a replacement keeps the finished run until it is sealed: it may be done)
            os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    if proc.returncode == 0:  # it finished before the kill: then it is the new finished run
        assert outputs.load_run(d).config.run.seed == 1
        return
    assert not is_complete(d, SPECS[0])
    with pytest.raises(NotFinishedRun):
        verify_run(d)


CONCURRENT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    from metarep.experiments.runner import RunSpec, run_all

    TINY = {tiny!r}
    specs = [RunSpec((*TINY, "run.steps=3000", "run.eval_every=1000"), s) for s in range(6)]
    if __name__ == "__main__":
        c = run_all(specs, Path(sys.argv[1]), jobs=1, progress=False)
        print(json.dumps({{k: c[k] for k in ("total", "ran", "skipped", "elsewhere", "failed")}}))
    """
)


@pytest.mark.slow
def test_two_processes_on_one_store_make_each_run_once(tmp_path):
    script = tmp_path / "two_writers.py"
    script.write_text(CONCURRENT.format(tiny=TINY))
    store = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen([sys.executable, str(script), str(store)], stdout=subprocess.PIPE, env=env) for _ in range(2)
    ]
    counts = [json.loads(p.communicate(timeout=300)[0].decode().strip().splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert all(c["total"] == 6 and c["failed"] == 0 and c["ran"] + c["skipped"] == 6 for c in counts)
    assert sum(c["ran"] for c in counts) == 6, counts  # no run made twice
    runs = [p for p in store.iterdir() if p.is_dir()]
    assert len(runs) == 6 and all(verify_run(p)["status"] == "complete" for p in runs)
    assert len(list(store.glob("*.lock"))) == 6
