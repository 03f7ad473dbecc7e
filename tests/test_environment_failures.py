"""Every environment failure is one line: a full disk, a read-only or vanished folder, a failing plugin,
an unusable Dask scheduler, Ctrl-C anywhere. Exit 2 (130 for Ctrl-C), what survived said, nothing
half-written read as finished, no folder left by a command that did nothing, no noise after the exit.

Faults of the filesystem come from a fake layer: ``os.replace`` (how every file is put in place, by
:func:`metarep.files.atomic_write_bytes`) raises the ``OSError`` of the fault for the files under one
folder. Tests run as root too, where a read-only mode does not stop writes.
"""

import errno
import importlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_RUN, InProcess
from typer.testing import CliRunner

from metarep.checkpoint import CHECKPOINT, load
from metarep.cli import app
from metarep.experiments import runner
from metarep.methods import registry
from metarep.outputs import verify_run

CHECKPOINTED = (*TINY_RUN, "run.checkpoint_every=5")
ARGS = [a for s in CHECKPOINTED for a in ("--set", s)] + ["--no-progress"]
FAULTS = {  # errno -> words of the line
    errno.ENOSPC: "no space left on the device (ENOSPC)",
    errno.EDQUOT: "disk quota exceeded (EDQUOT)",
    errno.EROFS: "the file system is read-only (EROFS)",
    errno.EACCES: "permission denied (EACCES)",
    errno.ENOENT: "no such file or folder",
    errno.EIO: "input/output error (EIO)",
}


def invoke(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line(res, code: int = 2) -> str:
    assert res.exit_code == code, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "Traceback" not in res.output
    return lines[0]


def fault(monkeypatch, under: Path, code: int = errno.ENOSPC, spare: tuple[str, ...] = ()) -> None:
    """From now on, putting a file in place under ``under`` fails with ``code`` (but files named ``spare``)."""
    real = os.replace
    root = str(under)

    def replace(src, dst, *args, **kwargs):
        if str(dst).startswith(root) and Path(dst).name not in spare:
            raise OSError(code, os.strerror(code))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def no_temporary_files(d: Path) -> None:
    assert not [p for p in d.rglob("*.tmp")], list(d.rglob("*"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "r"
    res = invoke("run", *ARGS, "--out", out)
    assert res.exit_code == 0, res.output
    return out


# ------------------------------------------------------------------------------------------------
# a full disk, a read-only or vanished folder


@pytest.mark.parametrize("code", list(FAULTS), ids=[errno.errorcode[c] for c in FAULTS])
def test_run_on_a_failing_filesystem_is_one_line(tmp_path, monkeypatch, code):
    out = tmp_path / "r"
    fault(monkeypatch, out, code)
    line = one_line(invoke("run", *ARGS, "--out", out))
    assert FAULTS[code] in line and str(out / CHECKPOINT) in line  # its first write: the checkpoint at step 5
    assert "no checkpoint is kept" in line and "run the same command again" in line
    assert not (out / "summary.json").exists()
    no_temporary_files(tmp_path)


def test_a_full_disk_when_the_run_is_written_keeps_its_checkpoint_to_resume(tmp_path, monkeypatch, reference):
    out = tmp_path / "r"
    fault(monkeypatch, out, errno.ENOSPC, spare=(CHECKPOINT,))
    line = one_line(invoke("run", *ARGS, "--out", out))
    assert "no space left on the device" in line and "checkpoint at step 15 is kept" in line and "--resume" in line
    assert not (out / "summary.json").exists() and load(out / CHECKPOINT).step == 15
    monkeypatch.undo()  # space freed
    res = invoke("run", *ARGS, "--out", out, "--resume")
    assert res.exit_code == 0, res.output
    verify_run(out)
    assert (out / "history.csv").read_bytes() == (reference / "history.csv").read_bytes()
    with np.load(out / "params.npz") as a, np.load(reference / "params.npz") as b:
        assert all(np.array_equal(a[k], b[k]) for k in b.files)


def test_a_replacement_on_a_full_disk_leaves_the_earlier_run(tmp_path, monkeypatch, reference):
    out = tmp_path / "r"
    shutil.copytree(reference, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and not p.name.startswith(".")}
    fault(monkeypatch, tmp_path, errno.ENOSPC)
    line = one_line(invoke("run", *ARGS, "--set", "task.d=7", "--overwrite", "--out", out))
    assert "no space left on the device" in line and "still holds the earlier run" in line
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and not p.name.startswith(".")} == before
    assert [p.name for p in tmp_path.iterdir()] == ["r"]  # no folder of the replacement left
    verify_run(out)


def test_a_run_whose_folder_vanishes_is_one_line(tmp_path, monkeypatch):
    """A real fault: the folder is removed mid-run, the next checkpoint has nowhere to go."""
    module = importlib.import_module("metarep.train")
    real = module.train
    out = tmp_path / "r"

    def vanishing(cfg, **kwargs):
        def remove(row):
            if row["step"] == 10:
                shutil.rmtree(out)

        return real(cfg, **{**kwargs, "on_eval": remove})

    monkeypatch.setattr(module, "train", vanishing)
    line = one_line(invoke("run", *ARGS, "--out", out))
    assert "no such file or folder" in line and "checkpoint.npz" in line
    assert not (out / "summary.json").exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS], ids=["ENOSPC", "EROFS"])
def test_evaluate_and_plot_on_a_failing_filesystem_are_one_line(tmp_path, monkeypatch, reference, code):
    run_dir = tmp_path / "r"
    shutil.copytree(reference, run_dir)
    fault(monkeypatch, tmp_path, code)
    line = one_line(invoke("evaluate", run_dir, "--tasks", "20", "--m-test", "5", "--no-progress"))
    assert FAULTS[code] in line and "evaluation" in line
    line = one_line(invoke("plot", run_dir, "--out", tmp_path / "figs"))
    assert FAULTS[code] in line
    verify_run(run_dir)  # the run is as it was
    no_temporary_files(tmp_path)


def test_a_sweep_on_a_full_disk_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "make_executor", lambda jobs, scheduler: InProcess())
    spec = tmp_path / "s.toml"
    spec.write_text('[set]\n"task.d" = 6\n"run.steps" = 10\n"data.tasks" = 20\n[grid]\n"method.alpha" = [0.1]\n')
    out = tmp_path / "sw"
    fault(monkeypatch, out, errno.ENOSPC)
    line = one_line(invoke("sweep", spec, "--out", out, "--no-progress"))
    assert "no space left on the device" in line
    assert not [p for p in out.rglob("summary.json")]  # no run reads as finished
    no_temporary_files(tmp_path)


# ------------------------------------------------------------------------------------------------
# Ctrl-C anywhere


def test_ctrl_c_in_a_command_without_its_own_handler_is_one_line_exit_130(tmp_path, monkeypatch, reference):
    import metarep.evaluate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(metarep.evaluate, "evaluate_run", interrupted)
    line = one_line(invoke("evaluate", reference, "--tasks", "20", "--m-test", "5", "--no-progress"), 130)
    assert line.startswith("error: interrupted;") and "written before are whole and kept" in line


def test_ctrl_c_before_a_run_starts_is_one_line_exit_130(tmp_path, monkeypatch):
    from metarep.cli import run_folder

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_folder, "plan", interrupted)
    out = tmp_path / "r"
    line = one_line(invoke("run", *ARGS, "--out", out), 130)
    assert line.startswith("error: interrupted;")
    monkeypatch.undo()
    res = invoke("run", *ARGS, "--out", out)  # the lock was released
    assert res.exit_code == 0, res.output


def test_ctrl_c_mid_run_says_how_to_resume(tmp_path, monkeypatch):
    module = importlib.import_module("metarep.train")
    real = module.train

    def stopped(cfg, **kwargs):
        def stop(row):
            if row["step"] == 10:
                raise KeyboardInterrupt

        return real(cfg, **{**kwargs, "on_eval": stop})

    monkeypatch.setattr(module, "train", stopped)
    out = tmp_path / "r"
    res = invoke("run", *ARGS, "--out", out)
    assert res.exit_code == 130
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("error: interrupted after step 10;") and "checkpoint at step 10" in last
    assert "--resume" in last and "Traceback" not in res.output


# ------------------------------------------------------------------------------------------------
# plugins that fail


PLUGINS = {
    "raises_runtime": ('raise RuntimeError("first line\\nthe last line")', "RuntimeError: the last line"),
    "divides_by_zero": ("1 / 0", "ZeroDivisionError: division by zero"),
    "has_a_syntax_error": ("x = (", "SyntaxError: '(' was never closed"),
    "exits_0": ("import sys\nsys.exit(0)", "SystemExit: 0"),
    "exits_3": ("import sys\nsys.exit(3)", "SystemExit: 3"),
    "imports_nothing": ("import no_such_module_at_all", "cannot import 'imports_nothing'"),
    "raises_keyerror": ("{}['k']", "KeyError: 'k'"),
}


@pytest.mark.parametrize("name", list(PLUGINS))
def test_a_failing_plugin_module_is_one_plugin_error_naming_it(tmp_path, monkeypatch, name):
    source, words = PLUGINS[name]
    (tmp_path / f"{name}.py").write_text(source + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(registry.PluginError) as e:
        registry.load_plugins([name])
    assert str(e.value).startswith("METAREP_PLUGINS: ") and repr(name) in str(e.value) and words in str(e.value)
    assert "\n" not in str(e.value) and name not in sys.modules


@pytest.mark.slow
@pytest.mark.parametrize("name", ["raises_runtime", "exits_0"])
def test_a_failing_plugin_stops_the_command_with_one_line(tmp_path, name):
    source, words = PLUGINS[name]
    (tmp_path / f"{name}.py").write_text(source + "\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "METAREP_PLUGINS": name}
    out = tmp_path / "out"
    for args in (["run", *ARGS, "--out", str(out)], ["bench", "--settings", "paper"]):
        p = subprocess.run([sys.executable, "-m", "metarep.cli", *args], env=env, capture_output=True, text=True)
        assert p.returncode == 2, (p.stdout, p.stderr)
        assert p.stderr.strip().splitlines() == [f"error: METAREP_PLUGINS: importing {name!r} failed: {words}"]
        assert not out.exists()


# ------------------------------------------------------------------------------------------------
# Dask schedulers that cannot be used

needs_dask = pytest.mark.skipif(importlib.util.find_spec("distributed") is None, reason="Dask is not installed")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sweep_spec(tmp_path) -> Path:
    spec = tmp_path / "s.toml"
    spec.write_text('[set]\n"task.d" = 6\n"run.steps" = 10\n')
    return spec


@pytest.mark.parametrize(
    "address,words",
    [
        ("", "expected the address of a Dask scheduler"),
        ("   ", "expected the address of a Dask scheduler"),
        ("udp://127.0.0.1:8786", "unknown protocol udp://"),
        ("inproc://somewhere", "unknown protocol inproc://"),
        ("tcp://", "no host"),
        ("tcp://host:port", "expected a scheduler address like tcp://HOST:PORT"),
        ("tcp://127.0.0.1:{closed}", "cannot reach the Dask scheduler"),
    ],
)
@pytest.mark.parametrize("command", ["sweep", "reproduce"])
@needs_dask
def test_a_bad_scheduler_is_one_line_and_leaves_no_folder(tmp_path, sweep_spec, command, address, words):
    out = tmp_path / "out"
    address = address.format(closed=closed_port())
    args = [sweep_spec] if command == "sweep" else ["learning", "--quick", "--seeds", "1"]
    line = one_line(invoke(command, *args, "--scheduler", address, "--out", out, "--no-progress"))
    assert line.startswith("error: --scheduler: ") and words in line, line
    assert not out.exists()


SILENT = textwrap.dedent(
    """
    import gc, socket, sys, threading, time
    from metarep.experiments.executors import DaskExecutor, ExecutorError

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []

    def serve():  # accepts, then either says nothing at all or answers garbage
        while True:
            conn, _ = server.accept()
            held.append(conn)
            if sys.argv[1] == "garbage":
                conn.sendall(b"\\xff" * 4096)

    threading.Thread(target=serve, daemon=True).start()
    t0 = time.monotonic()
    try:
        DaskExecutor(f"tcp://127.0.0.1:{server.getsockname()[1]}", timeout=1)
    except ExecutorError as e:
        print("one line:", e, flush=True)
    gc.collect()
    time.sleep(2)  # where the client's finalizer used to complain
    print(f"seconds {time.monotonic() - t0:.1f}", flush=True)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("service", ["silent", "garbage"])
@needs_dask
def test_a_service_that_is_no_scheduler_is_one_line_without_noise_later(service):
    p = subprocess.run([sys.executable, "-c", SILENT, service], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stderr == "", p.stderr  # no "Exception ignored in Client.__del__", no TimeoutError
    lines = p.stdout.strip().splitlines()
    assert lines[0].startswith("one line: cannot reach the Dask scheduler at tcp://127.0.0.1:"), lines
    assert float(lines[-1].split()[1]) < 120
