"""Checkpoints are verified like runs: a digest of all their arrays, checked wherever one is resumed.

A damaged, truncated, emptied or edited checkpoint gives ``metarep run --resume`` one line and exit 2
saying how to start over, and never a traceback nor a wrong run; the runner (sweep, reproduce) starts
such a run over with a note.
"""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_RUN, InProcess
from typer.testing import CliRunner

from metarep.checkpoint import CHECKPOINT, DIGEST, CheckpointError, load
from metarep.cli import app
from metarep.config import load_config
from metarep.experiments import runner
from metarep.experiments.runner import RunSpec, run_all
from metarep.experiments.worker import partial_dir
from metarep.outputs import verify_run
from metarep.train import train

CHECKPOINTED = (*TINY_RUN, "run.checkpoint_every=5")
ARGS = [a for s in CHECKPOINTED for a in ("--set", s)] + ["--no-progress"]


def checkpoint_bytes(overrides=CHECKPOINTED, stop: int = 10) -> bytes:
    """The checkpoint a run of ``overrides`` writes when stopped after ``stop`` steps."""

    def stop_at(row):
        if row["step"] == stop:
            raise KeyboardInterrupt

    written: list[bytes] = []
    train(load_config(None, list(overrides)), progress=False, checkpoint=written.append, on_eval=stop_at)
    return written[-1]


@pytest.fixture(scope="module")
def good() -> bytes:
    return checkpoint_bytes()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run, to compare a run started over with."""
    out = tmp_path_factory.mktemp("ref") / "r"
    res = CliRunner().invoke(app, ["run", *ARGS, "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def arrays_of(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def edit_meta(data: bytes, change) -> bytes:
    """The checkpoint with its metadata changed by ``change(meta)``, the other arrays (its digest too) kept."""
    arrays = arrays_of(data)
    meta = json.loads(str(arrays["meta"][()]))
    change(meta)
    arrays["meta"] = np.array(json.dumps(meta))
    return npz(arrays)


def edit_arrays(data: bytes, change) -> bytes:
    arrays = arrays_of(data)
    change(arrays)
    return npz(arrays)


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def without_digest(data: bytes) -> bytes:
    """The checkpoint as the version before digests wrote it."""

    def old(arrays):
        del arrays[DIGEST]
        meta = json.loads(str(arrays["meta"][()]))
        arrays["meta"] = np.array(json.dumps({**meta, "version": 1}))

    return edit_arrays(data, old)


# name -> (damage, words the error names)
DAMAGE = {
    "empty": (lambda b: b"", "empty"),
    "truncated to half": (lambda b: b[: len(b) // 2], "damaged checkpoint"),
    "one byte short": (lambda b: b[:-1], "damaged checkpoint"),
    "first 100 bytes": (lambda b: b[:100], "damaged checkpoint"),
    "not a zip": (lambda b: b"hello, not a checkpoint\n", "damaged checkpoint"),
    "a byte flipped in the middle": (lambda b: flip(b, len(b) // 2), "checkpoint"),
    "a byte flipped near the end": (lambda b: flip(b, len(b) - 30), "checkpoint"),
    "step edited": (lambda b: edit_meta(b, lambda m: m.update(step=5)), "does not match its digest"),
    "history row dropped": (lambda b: edit_meta(b, lambda m: m["history"].pop()), "does not match its digest"),
    "config edited": (lambda b: edit_meta(b, lambda m: m["config"]["run"].update(steps=40)), "digest"),
    "parameter edited": (lambda b: edit_arrays(b, lambda a: a.update(t0=a["t0"] + 1)), "does not match its digest"),
    "rng edited": (lambda b: edit_arrays(b, lambda a: a.update(rng=a["rng"][::-1].copy())), "digest"),
    "array removed": (lambda b: edit_arrays(b, lambda a: a.pop("t0")), "does not match its digest"),
    "array added": (lambda b: edit_arrays(b, lambda a: a.update(extra=np.zeros(3))), "does not match its digest"),
    "digest forged": (lambda b: edit_arrays(b, lambda a: a.update(digest=np.array("0" * 64))), "digest"),
    "no digest (older version)": (without_digest, "without a digest"),
    "no meta": (lambda b: edit_arrays(b, lambda a: a.pop("meta")), "not a metarep checkpoint"),
}


def test_an_intact_checkpoint_loads(good, tmp_path):
    path = tmp_path / CHECKPOINT
    path.write_bytes(good)
    ck = load(path)
    assert ck.step == 10 and [r["step"] for r in ck.history] == [0, 10] and ck.rng is not None


@pytest.mark.parametrize("name", list(DAMAGE))
def test_load_refuses_a_damaged_checkpoint(good, tmp_path, name):
    damage, words = DAMAGE[name]
    path = tmp_path / CHECKPOINT
    path.write_bytes(damage(good))
    with pytest.raises(CheckpointError, match=words) as e:
        load(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def same_checkpoint(a, b) -> bool:
    return (
        (a.step, a.history, a.config, a.state) == (b.step, b.history, b.config, b.state)
        and a.arrays.keys() == b.arrays.keys()
        and all(np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays)
        and np.array_equal(a.rng, b.rng)
    )


def test_any_flipped_byte_is_refused_or_changes_nothing(good, tmp_path):
    """Never a wrong run: a flip either makes the checkpoint refused, or hit bytes that carry no content
    (a zip header's timestamp): then what is read is the original."""
    path = tmp_path / CHECKPOINT
    path.write_bytes(good)
    original = load(path)
    positions = sorted(set(range(0, len(good), max(1, len(good) // 300))) | {0, len(good) - 1})
    refused = 0
    for at in positions:
        path.write_bytes(flip(good, at))
        try:
            ck = load(path)
        except CheckpointError:
            refused += 1
            continue
        assert same_checkpoint(ck, original), f"byte {at} flipped gave another checkpoint"
    assert refused > len(positions) // 2


@pytest.mark.parametrize("name", list(DAMAGE))
def test_resume_from_a_damaged_checkpoint_is_one_line_saying_how_to_start_over(good, tmp_path, name):
    damage, words = DAMAGE[name]
    out = tmp_path / "r"
    out.mkdir()
    bad = damage(good)
    (out / CHECKPOINT).write_bytes(bad)
    res = CliRunner().invoke(app, ["run", *ARGS, "--out", str(out), "--resume"])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --resume: "), res.output
    assert "Traceback" not in res.output and words in lines[0]
    assert "remove it, or run without --resume to start over at step 0" in lines[0]
    assert (out / CHECKPOINT).read_bytes() == bad and sorted(p.name for p in out.iterdir() if p.name[0] != ".") == [
        CHECKPOINT
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["truncated to half", "step edited", "no digest (older version)"])
def test_without_resume_a_damaged_checkpoint_is_started_over_to_the_right_run(good, reference, tmp_path, name):
    out = tmp_path / "r"
    out.mkdir()
    (out / CHECKPOINT).write_bytes(DAMAGE[name][0](good))
    res = CliRunner().invoke(app, ["run", *ARGS, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "starting the run over at step 0" in res.output
    verify_run(out)
    assert (out / "history.csv").read_bytes() == (reference / "history.csv").read_bytes()
    with np.load(out / "params.npz") as a, np.load(reference / "params.npz") as b:
        assert all(np.array_equal(a[k], b[k]) for k in b.files)
    assert not (out / CHECKPOINT).exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["step edited", "truncated to half", "empty"])
def test_the_runner_starts_a_run_with_a_damaged_checkpoint_over(good, tmp_path, monkeypatch, capsys, name):
    monkeypatch.setattr(runner, "make_executor", lambda jobs, scheduler: InProcess())
    spec = RunSpec(CHECKPOINTED, 0)
    ref = tmp_path / "ref"
    assert run_all([spec], ref, progress=False)["ran"] == 1
    store = tmp_path / "runs"
    partial = partial_dir(store / spec.key())
    partial.mkdir(parents=True)
    (partial / CHECKPOINT).write_bytes(DAMAGE[name][0](good))
    counts = run_all([spec], store, progress=False)
    assert (counts["ran"], counts["failed"]) == (1, 0), counts
    err = capsys.readouterr().err
    assert "the run starts over at step 0" in err and "continues from its checkpoint" not in err, err
    assert "Traceback" not in err
    key = spec.key()
    assert (store / key / "history.csv").read_bytes() == (ref / key / "history.csv").read_bytes()
    with np.load(store / key / "params.npz") as a, np.load(ref / key / "params.npz") as b:
        assert all(np.array_equal(a[k], b[k]) for k in b.files)
    assert not partial.exists()
