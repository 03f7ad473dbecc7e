"""General grids of runs (``metarep sweep``): run a validated spec, then write its tables and figures.

:func:`load_sweep` reads and validates a spec (:mod:`.sweep_spec`); :func:`run_sweep` makes its
runs in ``OUT/runs/`` with the run store and runner of ``metarep reproduce`` (a complete run is
reused, so an interrupted sweep resumes; a run that diverged is deterministic and is not made
again), then writes ``OUT/results.csv`` and ``OUT/summary.csv`` (:mod:`.sweep_results`), one
``OUT/METRIC.png`` per metric (:mod:`.sweep_plots`) and ``OUT/sweep.json`` (the resolved spec,
the counts and provenance). A run that fails or diverges does not stop the others; Ctrl-C stops
them all (the runner cancels the queued runs and re-raises), and :func:`finished_runs` says how far
the sweep got.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..files import write_csv, write_result
from . import sweep_plots, sweep_results
from .runner import RunSpec, is_complete, run_all
from .sweep_spec import Sweep, SweepError, SweepRun, load_sweep, parse_sweep, toml_value

__all__ = [
    "Sweep",
    "SweepError",
    "SweepOutcome",
    "SweepRun",
    "check_limits",
    "finished_runs",
    "load_sweep",
    "parse_sweep",
    "run_sweep",
]


@dataclass(frozen=True)
class SweepOutcome:
    """What :func:`run_sweep` made.

    ``counts``: distinct runs ``total``, ``reused`` (complete before this call), ``ran`` (completed
    now), ``failed`` (not complete: diverged or failed, now or before) and of those ``diverged``;
    ``problems``: one line per run that did not complete, with its message; ``rows``: the rows of
    ``results.csv``.
    """

    counts: dict[str, int]
    problems: list[str]
    results: Path
    summary: Path
    figures: list[Path]
    rows: list[dict[str, Any]]


def run_sweep(
    sweep: Sweep,
    out: str | Path,
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    progress: bool | None = None,
    allow_long: bool = False,
    figures: bool = False,
) -> SweepOutcome:
    """Make (or reuse) every run of ``sweep`` in ``out/runs/`` and write the sweep's outputs into ``out``.

    ``jobs`` local worker processes, or the Dask cluster at ``scheduler`` (``tcp://HOST:PORT``;
    :class:`~metarep.experiments.executors.ExecutorError` when it cannot be used). :func:`check_limits`
    first: :class:`SweepError` for a grid point beyond the memory, or the time unless ``allow_long``.
    ``figures``: draw each run's ``dynamics.png`` (off: recorded as not drawn, ``metarep plot RUN_DIR`` draws it).
    """
    check_limits(sweep, allow_long)
    out = Path(out)
    store = out / "runs"
    runs = sweep.runs()
    unique: dict[str, RunSpec] = {}
    for run in runs:
        unique.setdefault(run.key(), run.spec)
    settled = {k for k in unique if _diverged(store / k)}
    todo = [replace(s, figures=figures) for k, s in unique.items() if k not in settled]
    counts = _execute(todo, store, jobs, scheduler, progress)
    rows = sweep_results.collect(sweep, runs, store, _failures(counts))
    summary = sweep_results.summarize(sweep, rows)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "results.csv", rows)
    write_csv(out / "summary.csv", summary)
    figures = sweep_plots.draw_all(sweep, summary, out)
    tally, problems = _tally(runs, rows, counts.get("skipped", 0))
    write_result(out / "sweep.json", {"sweep": sweep.to_dict(), "counts": tally})
    return SweepOutcome(tally, problems, out / "results.csv", out / "summary.csv", figures, rows)


def check_limits(sweep: Sweep, allow_long: bool = False) -> None:
    """Refuse a sweep with a grid point whose run (or evaluation) would not fit in memory or, unless
    ``allow_long``, take too long (:mod:`metarep.limits`): :class:`SweepError` naming the point, before any
    worker starts."""
    from .. import limits
    from ..evaluate import check_evaluation

    points = {run.point: run.spec for run in sweep.runs()}  # the seed changes neither memory nor time
    for point, spec in points.items():
        cfg = spec.config()
        try:
            limits.check_run(cfg, allow_long)
            if spec.m_test:
                check_evaluation(cfg, spec.m_test, spec.eval_tasks, allow_long=allow_long)
        except limits.LimitError as e:
            where = ", ".join(f'"{k}" = {toml_value(v)}' for k, v in point)
            raise SweepError(f"grid {where}: {e}" if point else str(e)) from None


def finished_runs(sweep: Sweep, out: str | Path) -> tuple[int, int]:
    """``(finished, total)`` distinct runs of ``sweep`` in ``out/runs/``: finished ones (complete, or
    diverged: deterministic, not made again) are those a rerun would not make; for the line an
    interrupted sweep ends with."""
    store = Path(out) / "runs"
    unique = {run.key(): run.spec for run in sweep.runs()}
    done = sum(is_complete(store / k, s) or _diverged(store / k) for k, s in unique.items())
    return done, len(unique)


def _diverged(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "summary.json").read_text()).get("status") == "diverged"
    except (OSError, ValueError, AttributeError):
        return False


def _execute(specs: list[RunSpec], store: Path, jobs: int, scheduler: str | None, progress: bool | None) -> dict:
    """:func:`~metarep.experiments.runner.run_all` on ``specs`` (nothing to start when there are none)."""
    if not specs:
        return {"total": 0, "skipped": 0, "ran": 0, "failed": 0, "errors": []}
    return run_all(specs, store, jobs, progress, scheduler=scheduler)


def _failures(counts: dict) -> dict[str, str]:
    """Run key -> error message, from the runner's ``failures`` (or its ``errors`` lines ``KEY: message``)."""
    failures = dict(counts.get("failures") or {})
    for line in counts.get("errors", []):
        key, _, message = str(line).partition(": ")
        failures.setdefault(key, message)
    return failures


def _tally(runs: list[SweepRun], rows: list[dict[str, Any]], reused: int) -> tuple[dict[str, int], list[str]]:
    """Counts over the distinct runs, and one line per run that did not complete."""
    first: dict[str, tuple[SweepRun, dict[str, Any]]] = {}
    for run, row in zip(runs, rows):
        first.setdefault(row["run_dir"], (run, row))
    statuses = [row["status"] for _, row in first.values()]
    complete = statuses.count("complete")
    problems = [
        f"{row['status']}: {run.label()} ({row['run_dir']}): {row['message']}"
        for run, row in first.values()
        if row["status"] != "complete"
    ]
    counts = {
        "total": len(first),
        "reused": reused,
        "ran": complete - reused,
        "failed": len(first) - complete,
        "diverged": statuses.count("diverged"),
    }
    return counts, problems
