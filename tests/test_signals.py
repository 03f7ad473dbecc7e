"""Ctrl-C and SIGTERM: `metarep run` writes its outputs as interrupted (exit 130 / 143), `reproduce`
stops its workers within seconds with one line and resumes; step-size warnings for settings that diverge."""

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metarep.cli.run import Interrupts
from metarep.config import load_config
from metarep.theory import check_step_sizes, step_size_warning

METAREP = [sys.executable, "-m", "metarep.cli"]


def _start(args: list[str], tmp_path: Path) -> subprocess.Popen:
    """A command in its own session (so that its whole process group can be signalled, like a terminal does)."""
    return subprocess.Popen(
        args,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _wait_for_stderr(p: subprocess.Popen, timeout: float = 60.0) -> bytes:
    """Block until the process writes something on stderr (the progress bar: the loop has started)."""
    ready, _, _ = select.select([p.stderr], [], [], timeout)
    assert ready, "the command did not start its loop in time"
    return os.read(p.stderr.fileno(), 4096)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _group(pgid: int) -> list[int]:
    """The processes of the process group ``pgid``."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid:
                out.append(int(d.name))
    return out


# ------------------------------------------------------------------------------------------------
# metarep run


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signalled_run_writes_its_outputs_as_interrupted(tmp_path, sig, code):
    from metarep.outputs import load_run

    out = tmp_path / "r"
    args = ["run", "--set", "task.d=10", "--set", "run.steps=10000000", "--progress", "--out", str(out)]
    p = _start([*METAREP, *args], tmp_path)
    try:
        _wait_for_stderr(p)
        time.sleep(0.5)  # a few steps
        os.killpg(p.pid, sig)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == code, err.decode()
    assert b"Traceback" not in err and b"interrupted after step" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["steps"] >= 1
    for name in ("config.json", "history.csv", "params.npz", "dynamics.png"):
        assert (out / name).is_file()
    assert load_run(out) is not None


def test_interrupts_turn_sigterm_into_keyboard_interrupt_and_restore_the_handlers():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with Interrupts() as sig, pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises at once
    assert sig.code == 143
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    with Interrupts() as sig:
        sig.defer()
        os.kill(os.getpid(), signal.SIGINT)  # recorded, not raised
        time.sleep(0.05)
    assert sig.code == 130


# ------------------------------------------------------------------------------------------------
# metarep reproduce

# the `reproduce --quick` command on a tiny scale whose runs take about a second each
DRIVER = """
import dataclasses, sys
import metarep.experiments as ex
ex.QUICK = dataclasses.replace(ex.QUICK, d=8, tasks=60, steps=4000, steps_inf=6000, eval_every=1000,
                               eval_every_inf=1000, eval_tasks=40, m_test=(5, 20))
from metarep.cli import main
sys.argv[0] = "metarep"
main()
"""


@pytest.mark.slow
def test_ctrl_c_stops_a_reproduction_within_seconds_and_it_resumes(tmp_path):
    out = tmp_path / "rep"
    args = [sys.executable, "-c", DRIVER, "reproduce", "learning", "--quick", "--seeds", "4", "--jobs", "2"]
    args += ["--out", str(out), "--no-progress"]
    p = _start(args, tmp_path)
    try:
        deadline = time.monotonic() + 90
        while not list(out.glob("runs/*/summary.json")):  # at least one run finished, others running or queued
            assert time.monotonic() < deadline and p.poll() is None, p.stderr.read().decode()
            time.sleep(0.1)
        members = [pid for pid in _group(p.pid) if pid != p.pid]
        assert len(members) >= 2  # the two workers (and multiprocessing's resource tracker)
        t0 = time.monotonic()
        os.killpg(p.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        _, err = p.communicate(timeout=30)
        latency = time.monotonic() - t0
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    lines = err.decode().strip().splitlines()
    assert p.returncode == 130, err.decode()
    assert len(lines) == 1, err.decode()
    assert lines[0].startswith("interrupted: ") and "run the same command again" in lines[0], lines
    assert latency < 10, latency
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in members) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in members if _alive(pid)], "worker processes left behind"
    finished, total = (int(x) for x in lines[0].split()[1:4:2])
    assert total == 8 and 1 <= finished < total, lines
    assert len(list(out.glob("runs/*/summary.json"))) >= finished

    again = subprocess.run(args, cwd=tmp_path, capture_output=True, timeout=120)
    assert again.returncode == 0, again.stderr.decode()
    done = [x for x in again.stdout.decode().splitlines() if x.startswith(f"{total} runs:")]
    assert done == [f"{total} runs: {total - finished} ran, {finished} reused from {out / 'runs'}"], again.stdout


# ------------------------------------------------------------------------------------------------
# step sizes


@pytest.mark.parametrize(
    "overrides,check",
    [
        (("data.tasks=1",), "init"),  # one task: the pool's curvature is the task's own Σ̂ terms
        (("data.tasks=1",), "head"),
        (("data.tasks=5",), "pool"),  # a few tasks: the head grows at the limit whatever the step sizes
        (("data.tasks=20",), "pool"),
        (("method.beta=1.5",), "step"),  # the outer step on the head overshoots (bound 0.82)
        (("task.d=10", "model.width=1000", "method.alpha=0.005"), "step"),  # k' ≫ d: κ ≥ 81 for all of B_0
        (("task.d=10", "model.width=1000"), "head"),  # k' ≫ d: ‖B_0‖² ≈ k'/d, the head blows up
        (("task.d=10", "model.width=1000", "data.fresh=true"), "head"),
    ],
)
def test_settings_that_diverge_get_a_step_size_warning(overrides, check):
    cfg = load_config(None, list(overrides))
    assert check in {c.name for c in check_step_sizes(cfg) if not c.ok}
    assert step_size_warning(cfg) is not None


@pytest.mark.parametrize(
    "overrides",
    [
        (),
        ("data.tasks=inf",),
        ("data.fresh=true",),
        ("task.d=10", "model.width=1000", "data.tasks=inf"),
        ("data.tasks=50",),  # stable over 3000 steps
        ("method.beta=0.75",),  # stable over 1500 steps (β = 1 diverges after ~400)
        ("data.tasks=20", "method.name=anil"),  # the second-order head does not grow: (I - αK)²
    ],
)
def test_the_default_and_stable_settings_get_no_warning(overrides):
    # the infinite regime keeps the head at 0 exactly: k' ≫ d does not diverge there
    assert step_size_warning(load_config(None, list(overrides))) is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        ("data.tasks=1",),
        ("data.tasks=20",),
        ("task.d=10", "model.width=1000"),
        ("task.d=10", "model.width=1000", "method.alpha=0.005"),
        ("method.beta=50",),
        ("method.beta=3",),
    ],
)
def test_the_warned_settings_do_diverge_and_say_what_the_warning_said(overrides):
    from metarep.stepsizes import step_size_advice
    from metarep.train import train

    cfg = load_config(None, [*overrides, "run.steps=300", "run.eval_every=100"])
    result = train(cfg, progress=False)
    assert result.status == "diverged"
    advice = step_size_advice(cfg)
    assert advice is not None and result.message.endswith(advice)  # one source of advice
    assert advice in step_size_warning(cfg)


def test_each_fix_meets_its_check():
    # the advised value, applied, passes the check it was given for (limit, init: β; head: α; pool: N)
    for overrides in [("method.beta=50",), ("task.d=10", "model.width=1000"), ("data.tasks=20",)]:
        cfg = load_config(None, list(overrides))
        for c in [c for c in check_step_sizes(cfg) if not c.ok]:
            value = int(c.bound) if c.at_least else c.bound * 0.999
            fixed = load_config(None, [*overrides, f"{c.knob}={value}"])
            assert c.name not in {x.name for x in check_step_sizes(fixed) if not x.ok}, (overrides, c)


@pytest.mark.slow
def test_a_killed_reproduction_resumes_its_runs_from_their_checkpoints_bit_identically(tmp_path):
    import numpy as np

    args = [sys.executable, "-c", DRIVER, "reproduce", "learning", "--quick", "--seeds", "2", "--jobs", "2"]
    reference = subprocess.run([*args, "--out", str(tmp_path / "ref")], cwd=tmp_path, capture_output=True, timeout=300)
    assert reference.returncode == 0, reference.stderr.decode()

    out = tmp_path / "rep"
    p = _start([*args, "--out", str(out)], tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("runs/*.partial/checkpoint.npz")):  # a run is mid-way, past a checkpoint
            assert time.monotonic() < deadline and p.poll() is None, p.stderr.read().decode()
            time.sleep(0.02)
        os.killpg(p.pid, signal.SIGKILL)  # no handler runs: what the checkpoints hold is all there is
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    again = subprocess.run([*args, "--out", str(out)], cwd=tmp_path, capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr.decode()
    assert "continues from its checkpoint at step" in again.stderr.decode(), again.stderr.decode()
    assert not list(out.glob("runs/*.partial")), "checkpoints of finished runs are removed"
    runs = sorted(d.name for d in (tmp_path / "ref" / "runs").iterdir() if d.is_dir())
    assert runs == sorted(d.name for d in (out / "runs").iterdir() if d.is_dir())
    for name in runs:
        with (
            np.load(tmp_path / "ref/runs" / name / "params.npz") as a,
            np.load(out / "runs" / name / "params.npz") as b,
        ):
            assert sorted(a.files) == sorted(b.files)
            for k in a.files:
                assert np.array_equal(a[k], b[k]), (name, k)
        history = [(d / "runs" / name / "history.csv").read_bytes() for d in (tmp_path / "ref", out)]
        assert history[0] == history[1], name
