"""The Python API of the linear harness: configs built without strings, train(out=...), load_run with the
history, plot_run, run.threads, and files that respect the umask."""

import dataclasses
import hashlib
import math
import os
import subprocess
import sys

import pytest
import torch

import metarep
import metarep.outputs
from metarep.config import ConfigError, load_config
from metarep.files import atomic_write_bytes
from metarep.outputs import NotFinishedRun, verify_run

TINY = ["task.d=6", "task.k=2", "data.tasks=20", "run.steps=12", "run.eval_every=4"]


def test_a_config_from_the_dataclasses_equals_the_one_from_overrides():
    cfg = metarep.Config(
        task=metarep.TaskConfig(d=6, k=2),
        data=metarep.DataConfig(tasks=math.inf),
        method=metarep.MethodConfig(alpha=0.2),
        run=metarep.RunConfig(steps=12, dtype="float64"),
    )
    want = load_config(None, ["task.d=6", "task.k=2", "data.tasks=inf", "method.alpha=0.2", "run.steps=12"])
    assert cfg.infinite and cfg.data.tasks == "inf"
    assert cfg.identity() == dataclasses.replace(want, run=dataclasses.replace(want.run, dtype="float64")).identity()
    with pytest.raises(ConfigError, match=r"^task\.k: must be <= task\.d"):
        metarep.Config(task=metarep.TaskConfig(d=3, k=4))


def test_train_writes_a_finished_run_into_a_new_folder_and_load_run_returns_its_history(tmp_path):
    out = tmp_path / "not" / "yet"
    result = metarep.train(load_config(None, TINY), out=out, progress=False)
    assert result.status == "complete"
    assert verify_run(out)["steps"] == 12
    run = metarep.load_run(out)
    # history.csv holds repr-exact floats: the rows come back equal, not just close
    assert [r["step"] for r in run.history] == [0, 4, 8, 12]
    assert run.history == result.history
    assert torch.equal(run.params.B, result.params.B.cpu())


def test_save_run_creates_missing_folders(tmp_path):
    result = metarep.train(load_config(None, TINY), progress=False)
    path = metarep.save_run(result, tmp_path / "a" / "b")
    assert path == tmp_path / "a" / "b" and verify_run(path)["status"] == "complete"


def test_plot_run_draws_the_same_figure_again_and_the_folder_still_verifies(tmp_path):
    run_dir = tmp_path / "run"
    metarep.train(load_config(None, TINY), out=run_dir, progress=False)
    original = (run_dir / "dynamics.png").read_bytes()
    paths = metarep.plot_run(run_dir, tmp_path / "figs")
    # drawn from history.csv, summary.json and config.json alone: the same bytes as at the end of the run
    assert paths == [tmp_path / "figs" / "dynamics.png"] and paths[0].read_bytes() == original
    (run_dir / "history.csv").write_text((run_dir / "history.csv").read_text().replace("12", "13"))
    with pytest.raises(NotFinishedRun, match="history.csv does not match"):  # a damaged run is not drawn
        metarep.plot_run(run_dir)


def test_plot_run_into_the_run_folder_reseals_it(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    metarep.train(load_config(None, TINY), out=run_dir, progress=False)
    original = (run_dir / "dynamics.png").read_bytes()
    # as after an upgrade that changed the figures: the new one differs, and the folder still verifies
    monkeypatch.setattr(metarep.outputs, "dynamics_title", lambda cfg, summary: "another title")
    assert metarep.plot_run(run_dir) == [run_dir / "dynamics.png"]
    new = (run_dir / "dynamics.png").read_bytes()
    assert new != original
    # the new figure's digest is recorded apart from the data's manifest
    summary = verify_run(run_dir)
    assert summary["figures"]["dynamics.png"] == hashlib.sha256(new).hexdigest()
    assert "dynamics.png" not in summary["manifest"]


def test_train_is_the_function_even_after_its_module_is_imported():
    code = (
        "import metarep, metarep.outputs, metarep.train\n"
        "from metarep import train\n"
        "import sys\n"
        "print(callable(metarep.train), metarep.train is train, type(sys.modules['metarep.train']).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True", "module"]


def test_the_config_classes_are_exported_without_importing_torch():
    code = "import sys, metarep\nmetarep.TaskConfig(d=5), metarep.RunConfig(threads=1)\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_run_threads_sets_torchs_threads_for_the_run_and_restores_them():
    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    seen = []
    cfg = load_config(None, [*TINY, f"run.threads={want}"])
    metarep.train(cfg, progress=False, on_eval=lambda row: seen.append(torch.get_num_threads()))
    assert seen and set(seen) == {want}
    assert torch.get_num_threads() == before
    # how a run is carried out, not what it computes: not part of its identity
    assert cfg.digest() == load_config(None, TINY).digest()


@pytest.mark.parametrize("value", ["-1", "1.5", "true", "100000"])
def test_bad_run_threads_names_the_key(value):
    with pytest.raises(ConfigError, match=r"^run\.threads: must be an integer"):
        load_config(None, [f"run.threads={value}"])


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_written_files_respect_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        atomic_write_bytes(tmp_path / "f.json", b"{}")
        plain = tmp_path / "plain"
        plain.write_bytes(b"")  # what open() gives under the same umask
    finally:
        os.umask(old)
    mode = (tmp_path / "f.json").stat().st_mode & 0o777
    assert mode == 0o666 & ~mask == plain.stat().st_mode & 0o777
