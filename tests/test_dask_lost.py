"""A Dask scheduler lost while a sweep runs on it: one line on stderr, no traceback, exit code != 0."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_RUN
from test_executors import Cluster

pytestmark = pytest.mark.slow


def test_a_scheduler_killed_mid_sweep_is_one_line(tmp_path):
    pytest.importorskip("distributed")
    logs = tmp_path / "logs"
    logs.mkdir()
    spec = tmp_path / "s.toml"
    values = dict(kv.split("=") for kv in (*TINY_RUN, "run.steps=10000000", "run.eval_every=1000"))
    sets = "\n".join(f'"{k}" = {v}' for k, v in values.items())
    spec.write_text(f"seeds = [0]\n[set]\n{sets}\n")
    out = tmp_path / "out"
    cluster = Cluster(logs)
    proc = None
    try:
        cmd = [str(Path(sys.executable).parent / "metarep"), "sweep", str(spec), "--out", str(out), "--no-progress"]
        cmd += ["--scheduler", cluster.address, "--allow-long"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 300  # generous: a machine ten times slower than a busy 2-core one
        while not list((out / "runs").glob("*.partial/checkpoint.npz")):  # the run holds a worker, by construction
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        scheduler = cluster.procs[0]
        os.killpg(scheduler.pid, signal.SIGKILL)
        scheduler.wait(timeout=30)
        _, err = proc.communicate(timeout=180)
        lines = err.decode().splitlines()
        assert proc.returncode in (1, 2), (proc.returncode, err.decode())
        assert len(lines) == 1 and lines[0].startswith("error: "), err.decode()
        assert b"Traceback" not in err and b"Exception ignored" not in err
        assert "scheduler" in lines[0] and "run the same command again" in lines[0], lines
    finally:
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        cluster.close()
