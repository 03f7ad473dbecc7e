"""Run store and executor for reproductions.

A run is a pure function of its :class:`RunSpec` (a config plus the test-time evaluation to make
of it). Its folder is named by a hash of both, so identical runs requested by two experiments are
made once, and a run whose folder already holds a complete result is skipped: an interrupted
reproduction resumes where it stopped. A folder is complete when it passes
:func:`metarep.outputs.verify_run` (its ``summary.json`` holds the sha256 of every other file); one
that does not (damaged, cut, edited, written before manifests) is made again, with a note on stderr.
Two processes may share a store: each run is claimed with a lock file ``KEY.lock`` beside its folder,
a run locked by the other process is left to it and waited for, so no run is made twice.

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
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from ..config import Config, load_config
from ..files import atomic_write_bytes
from ..methods import registry
from .executors import ExecutorError, make_executor

__all__ = ["ExecutorError", "RunSpec", "execute", "is_complete", "produce", "run_all", "write_outputs"]

SUMMARY = "summary.json"  # written last, with the manifest that makes the folder a finished run
EVALUATION = ("evaluation.json", "evaluation.csv", "evaluation.png")
LOCK_BATCH = 256  # runs claimed (lock files held open) at a time


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
            {"config": cfg.identity(), "m_test": self.m_test, "eval_tasks": self.eval_tasks}, sort_keys=True
        )
        return f"{cfg.method.name}-{cfg.model.kind}-s{self.seed}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def run_state(run_dir: Path, spec: RunSpec) -> tuple[str, str]:
    """``("complete", "")``; ``("absent", "")`` (no folder); ``("unfinished", "STATUS: message")`` (a
    verified run that did not complete); or ``("damaged", why)``: the folder fails
    :func:`~metarep.outputs.verify_run` (evaluation files included when ``spec`` asks for one)."""
    from ..outputs import NotFinishedRun, verify_run

    if not run_dir.is_dir():
        return "absent", ""
    try:
        summary = verify_run(run_dir, EVALUATION if spec.m_test else ())
    except NotFinishedRun as e:
        summary = _verified_or_none(run_dir)
        if spec.m_test and summary is not None and summary.get("status") != "complete":
            return "unfinished", f"{summary.get('status')}: {summary.get('message', '')}"
        return "damaged", " ".join(str(e).split())
    if summary.get("status") != "complete":
        return "unfinished", f"{summary.get('status')}: {summary.get('message', '')}"
    return "complete", ""


def _verified_or_none(run_dir: Path) -> dict | None:
    from ..outputs import NotFinishedRun, verify_run

    try:
        return verify_run(run_dir)
    except NotFinishedRun:
        return None


def is_complete(run_dir: Path, spec: RunSpec) -> bool:
    """True when ``run_dir`` holds a verified complete run (and its evaluation, if one is asked for)."""
    return run_state(Path(run_dir), spec)[0] == "complete"


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
    from ..outputs import load_run, save_run, seal_evaluation
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
            seal_evaluation(out)  # the summary's manifest now covers the evaluation files too
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
    interrupted) is counted and the others go on. A folder that fails verification is made again (one
    note on stderr). Each run is claimed with the lock ``store/KEY.lock``; a run another process holds
    is left to it, waited for, and counted in ``skipped`` and ``elsewhere`` (or ``failed`` if it did
    not complete there). Returns ``total``, ``skipped`` (already complete), ``elsewhere``,
    ``ran``, ``failed``, ``errors`` (one ``"KEY: message"`` line per failed run), ``failures``
    (``{key: message}``) and ``seconds``. The progress bar (runs done / total, time left, and the
    counts) shows on a terminal only (``progress=None``). Ctrl-C cancels the queued runs and
    re-raises. Raises :class:`ExecutorError` when the scheduler cannot be used (Dask missing,
    scheduler unreachable).
    """
    store = Path(store)
    unique = {s.key(): s for s in specs}
    todo = {k: s for k, s in unique.items() if run_state(store / k, s)[0] != "complete"}
    counts: dict = {
        "total": len(unique),
        "skipped": len(unique) - len(todo),
        "elsewhere": 0,
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
        _run_pending(todo, store, executor, fn, counts, bar)
        finished = True
    finally:  # Ctrl-C (or any error here): drop the queued runs and return at once
        executor.close(cancel=not finished)
        bar.close()
    counts["seconds"] = time.perf_counter() - started
    return counts


def _run_pending(pending: dict[str, RunSpec], store: Path, executor, fn, counts: dict, bar) -> None:
    """Claim, make and write the ``pending`` runs; wait for those another process holds."""
    pending, others = dict(pending), set()  # others: keys seen locked by another process
    while pending:
        locks, busy = _claim(pending, store, others, counts, bar)
        others |= busy
        mine = {k: pending.pop(k) for k in list(pending) if k in locks}
        try:
            for spec, res in executor.submit_all(fn, list(mine.values()), names=list(mine)) if mine else ():
                key = spec.key()
                _record(counts, key, store, res)
                locks.pop(key).release()
                bar.set_postfix(_tally(counts), refresh=False)
                bar.update(1)
        finally:
            for lock in locks.values():
                lock.release()
        if busy and not mine:  # all left are another process's: wait for one, then look again
            lock = FileLock(store / f"{min(busy)}.lock")
            with lock:
                pass


def _claim(pending: dict[str, RunSpec], store: Path, others: set, counts: dict, bar) -> tuple[dict, set]:
    """Lock up to :data:`LOCK_BATCH` pending runs (non-blocking); returns ``({key: lock}, keys locked
    elsewhere)``. A run found finished once locked (by the other process) is counted and dropped."""
    locks: dict[str, FileLock] = {}
    busy: set[str] = set()
    for key in list(pending):
        if len(locks) >= LOCK_BATCH:
            break
        lock = FileLock(store / f"{key}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            busy.add(key)
            continue
        state, why = run_state(store / key, pending[key])
        if state == "complete" or (state == "unfinished" and key in others):
            lock.release()
            del pending[key]
            _count_elsewhere(counts, key, why)
            bar.set_postfix(_tally(counts), refresh=False)
            bar.update(1)
            continue
        if state == "damaged":
            print(f"note: making {store / key} again: {why}", file=sys.stderr, flush=True)
        locks[key] = lock
    return locks, busy


def _count_elsewhere(counts: dict, key: str, why: str) -> None:
    """A run made by another process: reused if complete (``why`` empty), else failed with its message."""
    if not why:
        counts["skipped"] += 1
        counts["elsewhere"] += 1
        return
    counts["failed"] += 1
    counts["errors"].append(f"{key}: {why}")
    counts["failures"][key] = why


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
