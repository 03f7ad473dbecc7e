"""Executors: the client-side writer, the run store on a local pool and on a real Dask cluster
(a scheduler and two workers on loopback), a worker killed mid-run, an interrupted sweep resumed,
and the one-line errors of ``--scheduler``."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_RUN
from typer.testing import CliRunner

from metarep import outputs
from metarep.cli import app
from metarep.experiments import executors, runner
from metarep.experiments.runner import RunSpec, is_complete, run_all, write_outputs

TINY = TINY_RUN
SPECS = [RunSpec(TINY, seed) for seed in range(3)] + [RunSpec(TINY, 0, (5, 10), 20)]


def slow(seed: int, steps: int) -> RunSpec:
    """A run of a few seconds (about 0.2 ms a step on one thread)."""
    return RunSpec((*TINY, f"run.steps={steps}", "run.eval_every=1000"), seed)


BIN = Path(sys.executable).parent
DASK = BIN / "dask"
NOT_NUMBERS = {"wall_seconds", "versions", "git_commit"}  # timing and provenance: not results


# --------------------------------------------------------------------------------------------
# fast: the writer, failures counted, the error paths


def test_run_all_refuses_to_run_while_a_worker_imports_the_main_module(tmp_path, monkeypatch):
    """A script without a __main__ guard run with jobs > 1: each spawned worker re-imports it and would call
    run_all again, waiting forever on the runs its parent claimed. It raises instead, naming the fix."""
    import multiprocessing

    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    with pytest.raises(RuntimeError, match="__name__ == .__main__."):
        runner.run_all(SPECS[:1], tmp_path, progress=False)
    assert not any(tmp_path.iterdir())  # nothing claimed or written


def test_write_outputs_replaces_an_earlier_attempt_and_writes_the_summary_last(tmp_path, monkeypatch):
    run_dir = tmp_path / "KEY"
    run_dir.mkdir()
    for name in ("summary.json", "evaluation.json", "evaluation.png", "history.csv"):
        (run_dir / name).write_text("stale")
    files = {"summary.json": b'{"status": "complete"}', "history.csv": b"step\n0\n", "params.npz": b"P"}
    seen = []
    write = runner.atomic_write_bytes

    def spy(path, data):
        present = {p.name for p in run_dir.iterdir() if not p.name.startswith(".")}
        seen.append((Path(path).name, present))
        write(path, data)

    monkeypatch.setattr(runner, "atomic_write_bytes", spy)
    write_outputs(run_dir, files)
    names = [n for n, _ in seen]
    assert names[-1] == "summary.json" and sorted(names) == sorted(files)
    # from the first write on, the folder does not look finished: no summary, no stale evaluation
    for _, present in seen:
        assert not present & {"summary.json", "evaluation.json", "evaluation.png"}
    assert {p.name for p in run_dir.iterdir()} == set(files)
    assert all((run_dir / n).read_bytes() == b for n, b in files.items())
    with pytest.raises(ValueError, match="plain file names"):
        write_outputs(run_dir, {"summary.json": b"{}", "../x": b""})
    with pytest.raises(ValueError, match="summary.json"):
        write_outputs(run_dir, {"history.csv": b""})


class FakeExecutor:
    """Answers every item at once: an exception, a diverged run or a complete one."""

    def __init__(self, answers):
        self.answers, self.closed = answers, None

    def submit_all(self, fn, items, names=None):
        for item in items:
            yield item, self.answers[item.seed]

    def close(self, cancel=False):
        self.closed = cancel


def test_failed_and_diverged_runs_are_listed_and_do_not_stop_the_others(tmp_path, monkeypatch):
    stand_ins = {name: b"stand-in" for name in outputs.RUN_FILES}  # a run's files, sealed by its summary
    done = {**stand_ins, "summary.json": json.dumps(outputs.sealed_summary({"status": "complete"}, stand_ins)).encode()}
    diverged = {
        **stand_ins,
        "summary.json": json.dumps(outputs.sealed_summary({"status": "diverged"}, stand_ins)).encode(),
    }
    answers = {
        0: RuntimeError("worker lost"),
        1: {"status": "diverged", "message": "lower beta", "files": diverged},
        2: {"status": "complete", "message": "", "files": done},
    }
    fake = FakeExecutor(answers)
    monkeypatch.setattr(runner, "make_executor", lambda jobs, scheduler: fake)
    specs = SPECS[:3]
    c = run_all(specs, tmp_path, jobs=1, progress=False)
    keys = [s.key() for s in specs]
    assert (c["total"], c["skipped"], c["ran"], c["failed"]) == (3, 0, 1, 2)
    assert c["failures"] == {keys[0]: "RuntimeError: worker lost", keys[1]: "diverged: lower beta"}
    assert c["errors"] == [f"{k}: {m}" for k, m in c["failures"].items()]
    assert fake.closed is False and c["seconds"] >= 0
    assert is_complete(tmp_path / keys[2], specs[2]) and not is_complete(tmp_path / keys[1], specs[1])
    assert not (tmp_path / keys[0]).exists()


def test_an_interrupt_cancels_the_executor_and_propagates(tmp_path, monkeypatch):
    class Interrupted(FakeExecutor):
        def submit_all(self, fn, items, names=None):
            raise KeyboardInterrupt
            yield

    fake = Interrupted({})
    monkeypatch.setattr(runner, "make_executor", lambda jobs, scheduler: fake)
    with pytest.raises(KeyboardInterrupt):
        run_all(SPECS[:1], tmp_path, progress=False)
    assert fake.closed is True


def test_scheduler_without_dask_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    res = CliRunner().invoke(app, ["reproduce", "--scheduler", "tcp://127.0.0.1:8786", "--out", str(tmp_path)])
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert res.output.startswith("error: --scheduler:") and "pip install 'metarep[dask]'" in res.output
    with pytest.raises(executors.ExecutorError, match=r"metarep\[dask\]"):
        run_all(SPECS[:1], tmp_path, scheduler="tcp://127.0.0.1:8786")


def test_jobs_and_scheduler_are_exclusive(tmp_path):
    args = ["reproduce", "--jobs", "2", "--scheduler", "tcp://127.0.0.1:8786", "--out", str(tmp_path)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and res.output.startswith("error: --jobs and --scheduler are exclusive")


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:{port}", "127.0.0.1"])
def test_unreachable_scheduler_is_one_line(tmp_path, address):
    pytest.importorskip("distributed")
    address = address.format(port=free_port())  # nothing listens there
    started = time.perf_counter()
    res = CliRunner().invoke(
        app, ["reproduce", "learning", "--quick", "--seeds", "1", "--scheduler", address, "--out", str(tmp_path)]
    )
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert res.output.startswith("error: --scheduler: ") and address in res.output
    assert time.perf_counter() - started < executors.CONNECT_TIMEOUT
    assert not list((tmp_path / "runs").glob("*/summary.json"))


# --------------------------------------------------------------------------------------------
# slow: a real scheduler and two workers on loopback


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(procs: list[subprocess.Popen], extra_pids=()) -> None:
    """Stop the processes this module started (each leads its own session), and their children."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
    for p in procs:  # each process group holds one of them and its children (a nanny's worker)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
    for pid in extra_pids:  # a worker we saw, should it have left its group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


class Cluster:
    """``dask scheduler`` and two ``dask worker`` processes (one thread each) on 127.0.0.1."""

    def __init__(self, logs: Path):
        from distributed import Client

        port = free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        self.procs: list[subprocess.Popen] = []
        self.worker_pids: set[int] = set()
        self.logs = logs
        self._start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
        for i in range(2):
            self.add_worker(f"worker{i}")
        self.client = Client(self.address, timeout=30, set_as_default=False)
        self.client.wait_for_workers(2, timeout=60)
        self.worker_pids |= set(self.pids().values())

    def _start(self, name: str, *args: str) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.procs.append(
            subprocess.Popen([str(DASK), *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )

    def add_worker(self, name: str) -> None:
        args = ["--host", "127.0.0.1", "--nworkers", "1", "--nthreads", "1", "--no-dashboard"]
        self._start(name, "worker", self.address, *args)

    def restart(self) -> None:
        """Restart the workers (their nannies start new processes), dropping whatever they were running."""
        self.worker_pids |= set(self.pids().values())
        self.client.restart(timeout=120, wait_for_workers=False)
        self.client.wait_for_workers(2, timeout=120)
        self.worker_pids |= set(self.pids().values())

    def pids(self) -> dict[str, int]:
        return self.client.run(os.getpid)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the scheduler may be gone already
            self.worker_pids |= set(self.pids().values())
        self.client.close()
        stop(self.procs, self.worker_pids)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    pytest.importorskip("distributed")
    c = None
    logs = tmp_path_factory.mktemp("dask-logs")
    try:
        c = Cluster(logs)
        yield c
    finally:
        if c is not None:
            c.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The runs of these tests made on the local pool (two processes, one thread each)."""
    store = tmp_path_factory.mktemp("local")
    c = run_all([*SPECS, slow(0, 30000)], store, jobs=2, progress=False)
    assert c["ran"] == c["total"] == 5
    return store


def numbers(run_dir: Path) -> dict:
    """Every number a run folder holds (summary, history, parameters, evaluation), timing and provenance aside."""
    summary = json.loads((run_dir / "summary.json").read_text())
    out = {"summary": {k: v for k, v in summary.items() if k not in NOT_NUMBERS}}
    with (run_dir / "history.csv").open() as f:
        out["history"] = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    with np.load(run_dir / "params.npz") as z:
        out["params"] = {k: z[k].tolist() for k in z.files}
    cfg = json.loads((run_dir / "config.json").read_text())
    out["config"] = {k: v for k, v in cfg.items() if k not in NOT_NUMBERS}
    if (run_dir / "evaluation.json").is_file():
        ev = json.loads((run_dir / "evaluation.json").read_text())
        out["evaluation"] = {k: v for k, v in ev.items() if k not in NOT_NUMBERS}
        out["evaluation.csv"] = (run_dir / "evaluation.csv").read_text()
    out["files"] = sorted(p.name for p in run_dir.iterdir())
    return out


def assert_same_runs(specs, store, reference_store) -> None:
    for spec in specs:
        key = spec.key()
        got, want = numbers(store / key), numbers(reference_store / key)
        diff = {
            f"{part}.{k}": (got[part].get(k), want[part].get(k))
            for part in ("summary", "config")
            for k in set(got[part]) | set(want[part])
            if got[part].get(k) != want[part].get(k)
        }
        assert got == want, (key, diff)  # the differing summary/config keys, when those differ


@pytest.mark.slow
def test_dask_and_local_pool_make_the_same_runs(cluster, reference, tmp_path):
    c = run_all(SPECS, tmp_path, progress=False, scheduler=cluster.address)
    assert (c["total"], c["ran"], c["skipped"], c["failed"]) == (4, 4, 0, 0) and c["failures"] == {}
    assert_same_runs(SPECS, tmp_path, reference)
    assert {"evaluation.json", "evaluation.csv", "evaluation.png"} <= set(os.listdir(tmp_path / SPECS[-1].key()))
    # and a second call reuses them all, without asking the cluster
    again = run_all(SPECS, tmp_path, progress=False, scheduler=cluster.address)
    assert (again["skipped"], again["ran"]) == (4, 0)


@pytest.mark.slow
def test_a_worker_killed_mid_run_costs_only_that_run(cluster, reference, tmp_path):
    long = slow(0, 30000)
    specs = [*SPECS, long]

    def executing(dask_worker) -> list[str]:  # runs on each worker (a local function travels by value)
        return [str(ts.key) for ts in dask_worker.state.executing]

    result: dict = {}
    thread = threading.Thread(
        target=lambda: result.update(run_all(specs, tmp_path, progress=False, scheduler=cluster.address))
    )
    thread.start()
    try:
        deadline, victim = time.monotonic() + 60, None
        while victim is None and time.monotonic() < deadline:
            running = cluster.client.run(executing)
            victim = next((w for w, keys in running.items() if any(k.startswith(long.key()) for k in keys)), None)
            time.sleep(0.1)
        assert victim, "the long run never started"
        deadline = time.monotonic() + 120  # mid-run: past its first checkpoint (of 30), however fast the machine
        while not (tmp_path / f"{long.key()}.partial" / "checkpoint.npz").exists():
            assert time.monotonic() < deadline, "the long run wrote no checkpoint"
            time.sleep(0.02)
        pid = cluster.pids()[victim]
        cluster.worker_pids.add(pid)
        os.kill(pid, signal.SIGKILL)
    finally:
        thread.join(timeout=120)
    assert not thread.is_alive()
    assert (result["ran"], result["failed"]) == (5, 0), result["errors"]
    assert victim not in cluster.client.scheduler_info()["workers"]  # the run was finished elsewhere
    assert_same_runs(specs, tmp_path, reference)
    cluster.client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed worker
    cluster.worker_pids |= set(cluster.pids().values())


def _running(psutil, pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from metarep.experiments.runner import RunSpec, run_all

    TINY = {tiny!r}
    specs = [RunSpec(TINY, s) for s in range(3)]
    specs += [RunSpec((*TINY, "run.steps={steps}", "run.eval_every=1000"), s) for s in (10, 11)]
    specs += [RunSpec(TINY, 12)]  # queued behind the two long runs
    if __name__ == "__main__":
        scheduler = sys.argv[2] if sys.argv[2] != "-" else None
        print(run_all(specs, Path(sys.argv[1]), jobs=2, progress=False, scheduler=scheduler), flush=True)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["local", "dask"])
def test_an_interrupted_sweep_resumes_with_the_missing_runs(cluster, tmp_path, where):
    """Ctrl-C while two long runs hold both workers: by construction, not by timing, some runs are done (the
    short ones before them), the long ones cannot be (10⁷ steps, hours on any machine) and one waits behind them."""
    import psutil  # a dependency of distributed

    script = tmp_path / "sweep.py"
    script.write_text(SCRIPT.format(tiny=TINY, steps=10**7))
    store = tmp_path / "runs"
    address = cluster.address if where == "dask" else "-"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(store), address], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    long = [RunSpec((*TINY, f"run.steps={10**7}", "run.eval_every=1000"), s) for s in (10, 11)]
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 300  # generous: a machine ten times slower than a busy 2-core one

        def ready() -> bool:  # a run is finished and both long runs hold a worker past their first checkpoint
            return bool(list(store.glob("*/summary.json"))) and all(
                (store / f"{s.key()}.partial" / "checkpoint.npz").exists() for s in long
            )

        while not ready():
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            children |= {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)  # Ctrl-C, to the client only
        _, err = proc.communicate(timeout=120)
        assert proc.returncode != 0 and b"KeyboardInterrupt" in err, (proc.returncode, err.decode()[-2000:])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if where == "dask":  # a Dask task cannot be stopped: restart the workers, which drops the long runs
            cluster.restart()
        deadline = time.monotonic() + 60  # the pool's workers (and its resource tracker) are on their way out
        while (alive := [pid for pid in children if _running(psutil, pid)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not alive, "the local pool's workers outlived the interrupt"
    short = [RunSpec(TINY, s) for s in (0, 1, 2, 12)]
    folders = [d for d in store.iterdir() if (d / "summary.json").exists()]
    done = sum(is_complete(store / s.key(), s) for s in short)
    assert not any(is_complete(store / s.key(), s) for s in long)
    assert done >= 1 and len(folders) == done  # nothing half-written looks finished
    if where == "local":  # the pool takes runs in order: the last short run waited behind the long ones
        assert not is_complete(store / short[-1].key(), short[-1])
    # the long runs are left out of the resumed sweep: they would take hours
    again = run_all(short, store, jobs=2, progress=False, scheduler=cluster.address if where == "dask" else None)
    assert (again["skipped"], again["ran"], again["failed"]) == (done, len(short) - done, 0)
