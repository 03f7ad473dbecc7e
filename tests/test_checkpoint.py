"""Checkpoints and ``metarep run --resume``: a resumed run ends bit-identical to an uninterrupted one."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from metarep.checkpoint import CHECKPOINT, load
from metarep.cli import app
from metarep.config import load_config
from metarep.experiments.runner import RunSpec
from metarep.outputs import save_run, verify_run
from metarep.train import train

BASE = ["task.d=10", "task.k=2", "run.eval_every=3", "run.checkpoint_every=4", "run.steps=13"]
REGIMES = {
    "finite": ["data.tasks=40"],
    "minibatch": ["data.tasks=40", "data.task_batch=7"],
    "fresh": ["data.tasks=20", "data.fresh=true"],
    "infinite": ["data.tasks=inf"],
    "multitask_lbfgs": ["method.name=multitask", "data.tasks=30", "run.steps=9"],
    "multitask_gd": ["method.name=multitask", "method.optimizer=gd", "data.tasks=30", "method.beta=0.05"],
}


def invoke(*args):
    return CliRunner().invoke(app, list(args))


def same_outputs(a, b):
    with np.load(a / "params.npz", allow_pickle=False) as za, np.load(b / "params.npz", allow_pickle=False) as zb:
        assert za.files == zb.files
        for k in za.files:
            assert np.array_equal(za[k], zb[k]), k
    assert (a / "history.csv").read_bytes() == (b / "history.csv").read_bytes()


def test_identity_leaves_digest_and_run_keys_unchanged():
    # recorded before run.checkpoint_every existed
    assert load_config().digest() == "e695f75fe7"
    assert load_config(None, ["run.checkpoint_every=7"]).digest() == "e695f75fe7"
    assert (
        RunSpec(("method.name=multitask", "data.tasks=50"), 3, (10, 20), 500).key() == "multitask-linear-s3-4498463c82"
    )
    assert RunSpec((), 0).key() == "fo_anil-linear-s0-7725ddbf77"
    assert "checkpoint_every" not in load_config().identity()["run"]


@pytest.mark.parametrize("regime", list(REGIMES))
def test_resume_is_bit_identical(tmp_path, regime):
    cfg = load_config(None, BASE + REGIMES[regime])
    ref, cut, periodic = tmp_path / "ref", tmp_path / "cut", tmp_path / "periodic"
    for d in (ref, cut, periodic):
        d.mkdir()
    save_run(train(cfg, progress=False), ref)

    kept = {}

    def stop_at_6(row):  # an interrupt after step 6; the periodic checkpoint of step 4 is copied first
        if row["step"] == 6:
            kept["ck"] = (cut / CHECKPOINT).read_bytes()
            raise KeyboardInterrupt

    first = train(cfg, progress=False, checkpoint=(cut / CHECKPOINT).write_bytes, on_eval=stop_at_6)
    assert first.status == "interrupted"
    assert load(cut / CHECKPOINT).step == 6
    (periodic / CHECKPOINT).write_bytes(kept["ck"])
    assert load(periodic / CHECKPOINT).step == 4
    for d in (cut, periodic):
        result = train(cfg, progress=False, resume=load(d / CHECKPOINT))
        assert result.status == "complete"
        save_run(result, d)
        same_outputs(ref, d)


def test_checkpoint_reads_without_pickle(tmp_path):
    cfg = load_config(None, BASE + REGIMES["multitask_lbfgs"])
    path = tmp_path / CHECKPOINT
    train(
        cfg,
        progress=False,
        checkpoint=path.write_bytes,
        on_eval=lambda row: row["step"] == 6 and (_ for _ in ()).throw(KeyboardInterrupt),
    )
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"][()]))
        assert z["rng"].dtype == np.uint8
    assert meta["step"] == 6 and len(meta["history"]) == 3


def test_resume_cli(tmp_path):
    out = tmp_path / "r"
    args = [f"--set={s}" for s in BASE + REGIMES["minibatch"]]
    res = invoke("run", *args, "--out", str(out), "--resume")
    assert res.exit_code == 2 and "no checkpoint.npz" in res.output
    res = invoke("run", *args, "--out", str(out))
    assert res.exit_code == 0, res.output
    assert not (out / CHECKPOINT).exists()
    verify_run(out)
    res = invoke("run", *args, "--out", str(out), "--resume")
    assert res.exit_code == 0 and "already holds the finished run" in res.output
    res = invoke("run", *args, "--set", "method.alpha=0.2", "--out", str(out), "--resume")
    assert res.exit_code == 2
    assert "holds another config: method.alpha 0.1 != 0.2" in res.output
    res = invoke("run", *args, "--set", "run.checkpoint_every=0", "--out", str(out), "--resume")
    assert res.exit_code == 0, res.output  # the cadence of checkpoints is not part of the config's identity


@pytest.mark.slow
def test_sigkill_then_resume(tmp_path):
    sets = ["task.d=30", "data.tasks=200", "run.steps=4000", "run.eval_every=50", "run.checkpoint_every=100"]
    args = [a for s in sets for a in ("--set", s)]
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert invoke("run", *args, "--out", str(ref)).exit_code == 0
    cmd = [sys.executable, "-m", "metarep.cli", "run", *args, "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / CHECKPOINT).exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert (out / CHECKPOINT).exists(), "no checkpoint appeared"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "summary.json").exists()
    killed_at = load(out / CHECKPOINT).step
    assert 0 < killed_at < 4000
    res = invoke("run", *args, "--out", str(out), "--resume")
    assert res.exit_code == 0, res.output
    same_outputs(ref, out)
    verify_run(out)
    shutil.rmtree(tmp_path)
