"""Run store and executor for reproductions.

A run is a pure function of its :class:`RunSpec` (a config plus the test-time evaluation to make
of it). Its folder is named by a hash of both, so identical runs requested by two experiments are
made once, and a run whose folder already holds a complete result is skipped: an interrupted
reproduction resumes where it stopped. A folder is complete when it passes
:func:`metarep.outputs.verify_run` (its ``summary.json`` holds the sha256 of every data file); one
that does not (damaged, cut, edited, written before manifests) is made again, with a note on stderr.
Figures are not data: a reused run whose figure is missing or damaged has it drawn again
(:func:`metarep.outputs.redraw_stale_figures`), it is not made again; one not drawn by choice
(``RunSpec.figures`` false, as reproductions and sweeps make them by default) is drawn only when asked.
Two processes may share a store: each run is claimed with a lock file ``KEY.lock`` beside its folder,
a run locked by the other process is left to it and waited for, so no run is made twice.

A worker makes a run with :func:`produce`, in a private temporary folder, and returns its files as
bytes; the client writes them into the store with :func:`write_outputs`, ``summary.json`` last. So
workers need no filesystem shared with the client, and a run folder never looks finished before all
its files are there. Runs execute on an executor (:mod:`.executors`): a local process pool, or the
workers of a Dask scheduler.

While it trains, a worker writes the run's checkpoint (every ``run.checkpoint_every`` steps, and when it
is stopped) to ``KEY.partial/checkpoint.npz`` beside the run's folder, under the run's lock; a run made
again after an interrupted or killed reproduction continues from there (bit-identical to an
uninterrupted run), and the folder goes once the run is written. Workers that do not share the store's
filesystem (Dask on other machines) start such runs from step 0.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import shutil
import sys
import time
from pathlib import Path

from filelock import FileLock, Timeout

from ..files import atomic_write_bytes
from ..methods import registry
from ..progress import progress_bar
from ..runtime import worker_threads
from . import batched
from .batched import produce_batch_in
from .executors import ExecutorError, make_executor
from .worker import RunSpec, partial_dir, produce

__all__ = ["ExecutorError", "RunSpec", "execute", "is_complete", "produce", "run_all", "write_outputs"]

SUMMARY = "summary.json"  # written last, with the manifest that makes the folder a finished run
EVALUATION_DATA = ("evaluation.json", "evaluation.csv")  # what a run with an evaluation must hold (as outputs')
EVALUATION = (*EVALUATION_DATA, "evaluation.png")  # an earlier attempt's evaluation files, removed first
LOCK_BATCH = 256  # runs claimed (lock files held open) at a time


def run_state(run_dir: Path, spec: RunSpec) -> tuple[str, str]:
    """``("complete", "")``; ``("absent", "")`` (no folder); ``("unfinished", "STATUS: message")`` (a
    verified run that did not complete); or ``("damaged", why)``: the folder fails
    :func:`~metarep.outputs.verify_run` (evaluation data included when ``spec`` asks for one). Figures
    do not count: a complete run with a missing or damaged figure is complete."""
    from ..outputs import NotFinishedRun, verify_run

    if not run_dir.is_dir():
        return "absent", ""
    try:
        summary = verify_run(run_dir, EVALUATION_DATA if spec.m_test else ())
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
    """Make one run (:func:`produce`, resuming its checkpoint if any) and write it into ``run_dir``
    (:func:`write_outputs`); returns its status."""
    partial = partial_dir(Path(run_dir))
    res = produce(spec, threads, plugins, str(partial))
    if res["files"]:
        write_outputs(run_dir, res["files"])
        shutil.rmtree(partial, ignore_errors=True)
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
    re-raises. Raises :class:`RuntimeError` when called while a worker process imports the main module
    (a script without ``if __name__ == "__main__":``), and :class:`ExecutorError` when the scheduler cannot
    be used (Dask missing, scheduler unreachable), :class:`~.executors.SchedulerLost` when it goes away
    mid-run (the runs written before are kept).
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):  # as multiprocessing's own check
        raise RuntimeError(
            "run_all: called while a new worker process imports the main module (a script run with jobs > 1 "
            'starts its workers that way): put the call under `if __name__ == "__main__":`'
        )
    store = Path(store)
    unique = {s.key(): s for s in specs}
    todo = {k: s for k, s in unique.items() if run_state(store / k, s)[0] != "complete"}
    for key in unique.keys() - todo.keys():  # reused: only its figures may need drawing again
        _redraw_figures(store, key, unique[key].figures)
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
    executor = make_executor(jobs, scheduler)  # a scheduler that cannot be used leaves no store behind
    try:
        store.mkdir(parents=True, exist_ok=True)
    except OSError:
        executor.close(cancel=True)
        raise
    # one torch thread per local job (cores shared out); on Dask one per run: a worker process per core
    threads = worker_threads(jobs, scheduler)
    # runs that train as one program go as one batch (.batched); each still gets its own folder and lock
    fn = functools.partial(produce_batch_in, str(store.resolve()), threads=threads, plugins=registry.plugin_modules())
    bar = progress_bar(len(unique), enabled=progress, desc="runs", unit="run", initial=counts["skipped"], leave=True)
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
            for spec, res in batched.submit(executor, fn, list(mine.values())) if mine else ():
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
            if state == "complete":  # a checkpoint left by a writer stopped between its last two steps
                shutil.rmtree(partial_dir(store / key), ignore_errors=True)
            lock.release()
            del pending[key]
            _count_elsewhere(counts, key, why)
            bar.set_postfix(_tally(counts), refresh=False)
            bar.update(1)
            continue
        if state == "damaged":
            print(f"note: making {store / key} again: {why}", file=sys.stderr, flush=True)
        if (step := _checkpoint_step(partial_dir(store / key))) is not None:
            print(f"note: {store / key} continues from its checkpoint at step {step}", file=sys.stderr, flush=True)
        locks[key] = lock
    return locks, busy


def _redraw_figures(store: Path, key: str, undrawn: bool = True) -> None:
    """Draw again the missing or damaged figures of the complete run ``store/KEY`` (with ``undrawn``, also
    those not drawn by choice: :attr:`RunSpec.figures`), under its lock (left to the other process if it
    holds it). A figure is never a reason to make a run again, nor to fail: a figure that cannot be drawn
    gets one note on stderr."""
    from ..outputs import NotFinishedRun, redraw_stale_figures, stale_figures, verify_run

    run_dir = store / key
    try:
        if not stale_figures(run_dir, verify_run(run_dir), undrawn):
            return
    except (NotFinishedRun, OSError):
        return
    lock = FileLock(store / f"{key}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return
    try:
        redraw_stale_figures(run_dir, undrawn)
    except (OSError, ValueError, KeyError) as e:  # NotFinishedRun included: changed since it was checked
        print(f"note: cannot draw the figures of {run_dir} again: {e}", file=sys.stderr, flush=True)
    finally:
        lock.release()


def _checkpoint_step(partial: Path) -> int | None:
    """The step of the checkpoint in ``partial``; None when there is none, or when it cannot be used
    (damaged, edited, of an older version: :func:`metarep.checkpoint.load`): then it is removed, with a
    note on stderr, and the run starts over at step 0 (as the worker would, finding it damaged)."""
    from ..checkpoint import CHECKPOINT, CheckpointError, load

    path = partial / CHECKPOINT
    try:
        return load(path).step if path.is_file() else None
    except CheckpointError as e:
        print(f"note: {' '.join(str(e).split())}; the run starts over at step 0", file=sys.stderr, flush=True)
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
    except OSError:
        pass
    return None


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
            if res["files"]:  # (none from a worker stopped mid-run: its checkpoint stays for next time)
                write_outputs(store / key, res["files"])
                shutil.rmtree(partial_dir(store / key), ignore_errors=True)
        except (OSError, ValueError, KeyError, TypeError) as e:
            res = {"status": "failed", "message": f"cannot write the run's outputs: {type(e).__name__}: {e}"}
        message = "" if res["status"] == "complete" else f"{res['status']}: {res['message']}"
    if not message:
        counts["ran"] += 1
        return
    counts["failed"] += 1
    counts["errors"].append(f"{key}: {message}")
    counts["failures"][key] = message
