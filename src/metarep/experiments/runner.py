"""Run store and executor for reproductions.

A run is a pure function of its :class:`RunSpec` (a config plus the test-time evaluation to make
of it). Its folder is named by a hash of both, so identical runs requested by two experiments are
made once, and a run whose folder already holds a complete result is skipped: an interrupted
reproduction resumes where it stopped.

A worker makes a run with :func:`produce`, in a private temporary folder, and returns its files as
bytes; the client writes them into the store with :func:`write_outputs`, ``summary.json`` last. So
workers need no filesystem shared with the client, and a run folder never looks finished before all
its files are there. Runs execute on an executor (:mod:`.executors`): a local process pool, or the
workers of a Dask scheduler.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ..config import Config, load_config
from ..files import atomic_write_bytes
from ..methods import registry
from .executors import ExecutorError, make_executor

__all__ = ["ExecutorError", "RunSpec", "execute", "is_complete", "produce", "run_all", "write_outputs"]

SUMMARY = "summary.json"  # written last: a folder holding one is a finished run
EVALUATION = ("evaluation.json", "evaluation.csv", "evaluation.png")


@dataclass(frozen=True)
class RunSpec:
    """One training run (``overrides`` on the defaults, plus ``run.seed``) and its evaluation.

    ``m_test``: sample sizes of the one-step excess-risk evaluation (empty: none);
    ``eval_tasks``: new tasks of that evaluation.
    """

    overrides: tuple[str, ...]
    seed: int
    m_test: tuple[int, ...] = ()
    eval_tasks: int = 1000

    def config(self) -> Config:
        return load_config(None, [*self.overrides, f"run.seed={self.seed}"])

    def key(self) -> str:
        cfg = self.config()
        blob = json.dumps(
            {"config": cfg.to_dict(), "m_test": self.m_test, "eval_tasks": self.eval_tasks}, sort_keys=True
        )
        return f"{cfg.method.name}-{cfg.model.kind}-s{self.seed}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def is_complete(run_dir: Path, spec: RunSpec) -> bool:
    """True when ``run_dir`` holds a complete run (and its evaluation, if one is asked for)."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    if summary.get("status") != "complete":
        return False
    return not spec.m_test or (run_dir / "evaluation.json").is_file()


def produce(spec: RunSpec, threads: int = 0, plugins: tuple[str, ...] = ()) -> dict:
    """Train and (if ``spec.m_test``) evaluate one run in a private temporary folder; return its outputs.

    A pure function of its arguments, for a worker on any machine: ``threads`` sets torch's intra-op
    threads (0: leave them), ``plugins`` are modules to import first (methods registered outside
    metarep in the client). Returns ``{"status", "message", "files": {filename: bytes}}``, the files
    being those :func:`~metarep.outputs.save_run` and :func:`~metarep.evaluate.save_evaluation`
    write (``params.npz``, ``history.csv``, ``config.json``, ``summary.json``, ``dynamics.png``, and
    ``evaluation.json/csv/png``).
    """
    import torch

    from ..evaluate import evaluate_run, save_evaluation
    from ..outputs import load_run, save_run
    from ..train import train

    registry.load_plugins(plugins)
    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="metarep-run-") as tmp:
        out = Path(tmp)
        result = train(spec.config(), progress=False)
        save_run(result, out)
        if result.status == "complete" and spec.m_test:
            ev = evaluate_run(load_run(out), m_test=spec.m_test, n_tasks=spec.eval_tasks, progress=False)
            save_evaluation(ev, out)
        files = {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file() and not p.name.startswith(".")}
    return {"status": result.status, "message": result.message, "files": files}


def write_outputs(run_dir: str | Path, files: dict[str, bytes]) -> None:
    """Write a run's ``files`` (from :func:`produce`) into ``run_dir``, each atomically, ``summary.json`` last.

    The markers of an earlier attempt go first (``summary.json``, then the evaluation files), so the
    folder reads as unfinished until the new ``summary.json`` is in place.
    """
    if SUMMARY not in files:
        raise ValueError(f"a run's outputs must hold {SUMMARY}; got {sorted(files)}")
    bad = [name for name in files if not name or Path(name).name != name or name.startswith(".")]
    if bad:
        raise ValueError(f"a run's output names must be plain file names; got {bad[0]!r}")
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY).unlink(missing_ok=True)
    for name in EVALUATION:
        (out / name).unlink(missing_ok=True)
    for name, data in files.items():
        if name != SUMMARY:
            atomic_write_bytes(out / name, data)
    atomic_write_bytes(out / SUMMARY, files[SUMMARY])


def execute(spec: RunSpec, run_dir: str | Path, threads: int = 0, plugins: tuple[str, ...] = ()) -> str:
    """Make one run (:func:`produce`) and write it into ``run_dir`` (:func:`write_outputs`); returns its status."""
    res = produce(spec, threads, plugins)
    write_outputs(run_dir, res["files"])
    return res["status"]


def run_all(
    specs: list[RunSpec],
    store: Path,
    jobs: int = 1,
    progress: bool | None = None,
    scheduler: str | None = None,
) -> dict:
    """Make every spec whose folder in ``store`` is not complete, on ``jobs`` local worker processes or,
    with ``scheduler`` (``tcp://HOST:PORT``), on the workers of that Dask scheduler.

    Each worker runs :func:`produce` and returns the run's files, which are written here into
    ``store/KEY/`` (:func:`write_outputs`). A run that raises or does not complete (diverged,
    interrupted) is counted and the others go on. Returns ``total``, ``skipped`` (already complete),
    ``ran``, ``failed``, ``errors`` (one ``"KEY: message"`` line per failed run), ``failures``
    (``{key: message}``) and ``seconds``. The progress bar (runs done / total, time left, and the
    counts) shows on a terminal only (``progress=None``). Ctrl-C cancels the queued runs and
    re-raises. Raises :class:`ExecutorError` when the scheduler cannot be used (Dask missing,
    scheduler unreachable).
    """
    store = Path(store)
    unique = {s.key(): s for s in specs}
    todo = {k: s for k, s in unique.items() if not is_complete(store / k, s)}
    counts: dict = {
        "total": len(unique),
        "skipped": len(unique) - len(todo),
        "ran": 0,
        "failed": 0,
        "errors": [],
        "failures": {},
        "seconds": 0.0,
    }
    if not todo:
        return counts
    started = time.perf_counter()
    store.mkdir(parents=True, exist_ok=True)
    # one torch thread per local job (cores shared out); on Dask one per run: a worker process per core
    threads = 1 if scheduler else max(1, (os.cpu_count() or 1) // jobs)
    fn = functools.partial(produce, threads=threads, plugins=registry.plugin_modules())
    executor = make_executor(jobs, scheduler)
    bar = tqdm(
        total=len(unique),
        initial=counts["skipped"],
        unit="run",
        desc="runs",
        disable=(not progress) if progress is not None else None,
    )
    bar.set_postfix(_tally(counts), refresh=False)
    finished = False
    try:
        for spec, res in executor.submit_all(fn, list(todo.values()), names=list(todo)):
            _record(counts, spec.key(), store, res)
            bar.set_postfix(_tally(counts), refresh=False)
            bar.update(1)
        finished = True
    finally:  # Ctrl-C (or any error here): drop the queued runs and return at once
        executor.close(cancel=not finished)
        bar.close()
    counts["seconds"] = time.perf_counter() - started
    return counts


def _tally(counts: dict) -> dict[str, int]:
    return {"reused": counts["skipped"], "ran": counts["ran"], "failed": counts["failed"]}


def _record(counts: dict, key: str, store: Path, res) -> None:
    """Write a finished run's files and count it: ``ran`` if complete, else ``failed`` with its message."""
    if isinstance(res, BaseException):
        message = f"{type(res).__name__}: {res}"
    else:
        try:
            write_outputs(store / key, res["files"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            res = {"status": "failed", "message": f"cannot write the run's outputs: {type(e).__name__}: {e}"}
        message = "" if res["status"] == "complete" else f"{res['status']}: {res['message']}"
    if not message:
        counts["ran"] += 1
        return
    counts["failed"] += 1
    counts["errors"].append(f"{key}: {message}")
    counts["failures"][key] = message
