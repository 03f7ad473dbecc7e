"""``metarep run --out``: a finished run is never replaced by accident, a folder of other files is never
written into, and a run folder is locked while a run writes it."""

import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_RUN
from typer.testing import CliRunner

from metarep.checkpoint import CHECKPOINT, load
from metarep.cli import app
from metarep.cli.run_folder import HOLDER, LOCK, foreign_entries
from metarep.outputs import verify_run

TINY = [a for s in TINY_RUN for a in ("--set", s)]


def invoke(*args: str):
    return CliRunner().invoke(app, ["run", *TINY, "--no-progress", *args])


def one_error_line(res, code: int = 2) -> str:
    """The one ``error:`` line of a command that exited with ``code`` (no traceback)."""
    assert res.exit_code == code, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "Traceback" not in res.output
    return lines[0]


def snapshot(d: Path) -> dict[str, bytes]:
    """The files of ``d`` (not the lock), by name."""
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file() and p.name not in (LOCK, HOLDER)}


def recorded_d(d: Path) -> int:
    return json.loads((d / "config.json").read_text())["config"]["task"]["d"]


def no_siblings(d: Path) -> None:
    """No folder a replacement writes beside ``d`` is left."""
    assert sorted(p.name for p in d.parent.iterdir() if p.name.startswith(f".{d.name}.")) == []


@pytest.fixture
def finished(tmp_path) -> Path:
    """A folder holding a finished run of TINY_RUN."""
    out = tmp_path / "r"
    res = invoke("--out", str(out))
    assert res.exit_code == 0, res.output
    verify_run(out)
    return out


def stop_at(step: int, monkeypatch) -> None:
    """Make the next ``metarep run`` stop like Ctrl-C after ``step`` (its checkpoint written first)."""
    module = importlib.import_module("metarep.train")  # (the package's attribute `train` is the function)
    real = module.train

    def interrupted(cfg, **kwargs):
        def stop(row):
            if row["step"] == step:
                raise KeyboardInterrupt

        return real(cfg, **{**kwargs, "on_eval": stop})

    monkeypatch.setattr(module, "train", interrupted)


def test_the_same_finished_run_is_said_to_exist_and_kept(finished):
    before = snapshot(finished)
    res = invoke("--out", str(finished))
    assert res.exit_code == 0, res.output
    assert "already holds this run, finished (complete)" in res.output and "--force" in res.output
    assert snapshot(finished) == before


def test_a_finished_run_of_another_config_is_refused_naming_the_keys(finished):
    before = snapshot(finished)
    line = one_error_line(invoke("--set", "task.d=7", "--set", "run.seed=3", "--out", str(finished)))
    assert "another config" in line and "task.d 6 != 7" in line and "run.seed 0 != 3" in line
    assert "--overwrite" in line
    assert snapshot(finished) == before
    line = one_error_line(invoke("--set", "task.d=7", "--force", "--out", str(finished)))
    assert "--overwrite" in line and snapshot(finished) == before


def test_overwrite_replaces_it_once_the_new_run_is_sealed(finished):
    res = invoke("--set", "task.d=7", "--overwrite", "--out", str(finished))
    assert res.exit_code == 0, res.output
    verify_run(finished)
    assert recorded_d(finished) == 7
    no_siblings(finished)


def test_force_makes_the_same_run_again_identically(finished):
    before = snapshot(finished)
    res = invoke("--force", "--out", str(finished))
    assert res.exit_code == 0, res.output
    verify_run(finished)
    after = snapshot(finished)
    for name in ("params.npz", "history.csv"):
        assert after[name] == before[name]
    no_siblings(finished)


def test_an_interrupted_replacement_leaves_the_earlier_run_whole(finished, monkeypatch):
    before = snapshot(finished)
    stop_at(10, monkeypatch)
    res = invoke("--set", "task.d=7", "--overwrite", "--out", str(finished))
    line = one_error_line(res, 130)
    assert "still holds the earlier run" in line
    assert snapshot(finished) == before and recorded_d(finished) == 6
    verify_run(finished)
    no_siblings(finished)


def test_an_unfinished_run_is_resumed_or_started_over_only_when_asked(tmp_path, monkeypatch):
    out = tmp_path / "r"
    stop_at(10, monkeypatch)
    res = invoke("--set", "run.checkpoint_every=5", "--out", str(out))
    assert res.exit_code == 130 and "--resume to continue" in res.output, res.output
    monkeypatch.undo()
    assert load(out / CHECKPOINT).step == 10
    line = one_error_line(invoke("--out", str(out)))
    assert "unfinished" in line and "step 10" in line and "--resume" in line and "--force" in line
    line = one_error_line(invoke("--set", "task.d=7", "--out", str(out)))
    assert "task.d 6 != 7" in line and "--overwrite" in line
    res = invoke("--force", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert verify_run(out)["status"] == "complete" and not (out / CHECKPOINT).exists()
    no_siblings(out)


def test_an_unfinished_run_without_a_usable_checkpoint_is_started_over(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / CHECKPOINT).write_bytes(b"PK\x03\x04 not a whole zip")
    res = invoke("--out", str(out))
    assert res.exit_code == 0, res.output
    assert "note: " in res.output and "damaged checkpoint" in res.output and "starting the run over" in res.output
    assert verify_run(out)["status"] == "complete" and not (out / CHECKPOINT).exists()


@pytest.mark.parametrize("flags", [[], ["--overwrite"], ["--force"], ["--resume"]])
@pytest.mark.parametrize("entry", ["notes.txt", "sub/", ".hidden", "summary.json.bak"])
def test_a_folder_of_other_files_is_never_written_into(tmp_path, flags, entry):
    out = tmp_path / "mine"
    out.mkdir()
    (out / entry.rstrip("/")).mkdir() if entry.endswith("/") else (out / entry).write_text("mine")
    before = sorted(os.listdir(out))
    line = one_error_line(invoke("--out", str(out), *flags))
    assert "--resume" in flags or ("is not empty and holds no metarep run" in line and entry.rstrip("/") in line)
    assert sorted(os.listdir(out)) == before  # not even a lock file


def test_a_run_beside_other_files_is_refused_even_with_its_own_files(finished):
    (finished / "notes.txt").write_text("mine")
    line = one_error_line(invoke("--force", "--out", str(finished)))
    assert "notes.txt" in line
    assert foreign_entries(finished) == ["notes.txt"]


@pytest.mark.parametrize("value", ["", " "])
def test_an_empty_out_is_an_error(tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    line = one_error_line(invoke("--out", value))
    assert "--out" in line and "expected a folder" in line
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "command",
    [
        ["evaluate", "r"],
        ["plot", "r"],
        ["sweep", "s.toml"],
        ["reproduce"],
        ["fewshot", "sinusoid"],
        ["fewshot", "digits"],
        ["fewshot", "images", "pictures"],
    ],
)
def test_an_empty_out_is_an_error_for_every_command(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    line = one_error_line(CliRunner().invoke(app, [*command, "--out", ""]))
    assert "'--out'" in line and "expected a folder, got ''" in line
    assert os.listdir(tmp_path) == []


def test_the_lock_and_holder_files_are_no_part_of_the_run(finished):
    assert (finished / LOCK).exists()  # left by the run: ignored by the rule and by verify_run
    (finished / HOLDER).write_text("999999999 elsewhere\n")  # a holder killed before it could remove it
    summary = verify_run(finished)
    assert LOCK not in summary["manifest"] and HOLDER not in summary["manifest"]
    res = invoke("--force", "--out", str(finished))  # a stale lock file does not hold the folder
    assert res.exit_code == 0, res.output


HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from metarep.cli.run_folder import hold

    with hold(Path(sys.argv[1])):
        print("held", flush=True)
        sys.stdin.read()  # until the test closes it
    """
)


@pytest.mark.slow
def test_a_second_run_on_a_folder_being_written_exits_2_naming_the_holder(finished, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(finished)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        deadline = time.monotonic() + 60
        while not (finished / HOLDER).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        before = snapshot(finished)
        for flags in ([], ["--force"], ["--resume"], ["--set", "task.d=7", "--overwrite"]):
            line = one_error_line(invoke("--out", str(finished), *flags))
            assert "being written by another metarep run" in line and f"process {proc.pid}" in line, line
        assert snapshot(finished) == before
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert not (finished / HOLDER).exists()  # the holder removed its file on release
    res = invoke("--force", "--out", str(finished))
    assert res.exit_code == 0, res.output


@pytest.mark.slow
def test_two_runs_on_one_new_folder_never_both_train_into_it(tmp_path):
    """Started together, each either makes the run, finds it made, or is refused naming the other."""
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "metarep.cli", "run", *TINY, "--no-progress", "--out", str(out)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    made = [r for r in results if r[0] == 0 and "steps in" in r[1]]
    assert len(made) == 1, results
    for code, stdout, stderr in results:
        if code == 2:
            assert "being written by another metarep run" in stderr and len(stderr.strip().splitlines()) == 1
        else:
            assert code == 0 and ("steps in" in stdout or "already holds this run" in stdout), (stdout, stderr)
    verify_run(out)
    with np.load(out / "params.npz", allow_pickle=False) as z:
        assert z["B"].shape == (6, 6)


@pytest.mark.slow
@pytest.mark.parametrize("moment", [".r.new", ".r.new/checkpoint.npz", ".r.new/params.npz"])
def test_a_replacement_killed_at_any_moment_leaves_one_whole_run(tmp_path, moment):
    """kill -9 while ``--overwrite`` writes: the folder holds the earlier run or the new one, both whole
    (or, killed between the two renames of the swap, none, with the earlier run beside it)."""
    out = tmp_path / "r"
    assert invoke("--out", str(out)).exit_code == 0
    sets = [*TINY, "--set", "run.steps=3000", "--set", "run.checkpoint_every=100", "--set", "task.d=7"]
    cmd = [sys.executable, "-m", "metarep.cli", "run", *sets, "--no-progress", "--overwrite", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / moment).exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    finally:
        proc.wait()
    if out.exists():  # whole: the earlier run until the new one is sealed and swapped in
        verify_run(out)
        assert recorded_d(out) == (6 if (tmp_path / ".r.new").exists() else 7)
    else:
        verify_run(tmp_path / ".r.old")
    res = invoke("--set", "task.d=7", "--overwrite", "--out", str(out))  # a stale .r.new is no obstacle
    assert res.exit_code == 0, res.output
    verify_run(out)
    assert recorded_d(out) == 7
    assert not (tmp_path / ".r.new").exists()


# metarep demo --out: the same rules where they apply (its folder holds two runs and demo.json, demo.png)
DEMO = ["demo", "--steps", "100", "--no-progress", *TINY]


def test_demo_refuses_a_folder_of_other_files(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    line = one_error_line(CliRunner().invoke(app, [*DEMO, "--out", str(out)]))
    assert "is not empty and holds no metarep run" in line and "notes.txt" in line
    assert os.listdir(out) == ["notes.txt"]  # not even a lock file


def test_demo_refuses_a_folder_another_process_writes(tmp_path):
    from filelock import FileLock

    out = tmp_path / "demo"
    out.mkdir()
    with FileLock(str(out / LOCK)):
        line = one_error_line(CliRunner().invoke(app, [*DEMO, "--out", str(out)]))
    assert "is being written by another metarep run" in line
    assert not {"infinite", "finite", "demo.json"} & set(os.listdir(out))


def test_demo_writes_again_over_its_own_output(tmp_path):
    out = tmp_path / "demo"
    for _ in range(2):  # the second finds a previous demo's folder: not refused
        res = CliRunner().invoke(app, [*DEMO, "--out", str(out)])
        assert res.exit_code == 0, res.output
    assert {"infinite", "finite", "demo.json", "demo.png"} <= set(os.listdir(out))
    assert not (out / HOLDER).exists()


def _sigterm(*_args, **_kwargs) -> None:
    """SIGTERM to this process; its handler runs before the sleep ends (PEP 475: the sleep is cut by it)."""
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(60)
    raise AssertionError("SIGTERM did not interrupt")


@pytest.mark.parametrize("where", ["lock", "plan"])
def test_a_sigterm_while_the_folder_is_locked_or_planned_exits_143(tmp_path, monkeypatch, where):
    from filelock import FileLock

    from metarep.cli import run_folder

    class Stopped(FileLock):
        def acquire(self, *args, **kwargs):
            _sigterm()

    if where == "lock":
        monkeypatch.setattr(run_folder, "FileLock", Stopped)
    else:
        monkeypatch.setattr(run_folder, "plan", _sigterm)
    previous = signal.getsignal(signal.SIGTERM)
    line = one_error_line(invoke("--out", str(tmp_path / "r")), code=143)
    assert line.startswith("error: interrupted")
    assert signal.getsignal(signal.SIGTERM) is previous  # the command's handlers are gone again
