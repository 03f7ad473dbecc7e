"""Reproduce the paper: declared experiments, run over seeds on a local process pool or a Dask cluster, aggregated
into one PNG and one tidy CSV per experiment and a ``REPORT.md`` (``metarep reproduce``).

:mod:`.framework` is the machinery (experiments, aggregation, report), :mod:`.runner` the run store,
:mod:`.executors` where runs are made (local processes, Dask), and :mod:`.paper` declares the paper's experiments.
"""

from __future__ import annotations

from pathlib import Path

from . import framework
from .framework import Experiment, Scale, Series, Study
from .paper import EXPERIMENTS, FULL, PAPER, QUICK, QUICK_NOTE
from .runner import RunSpec

__all__ = [
    "EXPERIMENTS",
    "FULL",
    "PAPER",
    "QUICK",
    "Experiment",
    "RunSpec",
    "Scale",
    "Series",
    "Study",
    "plan",
    "reproduce",
]


def plan(names: list[str], scale: Scale, seeds: int) -> dict[str, dict[str, list[RunSpec]]]:
    """``{experiment: {series label: [RunSpec per seed]}}`` for the named experiments of the paper."""
    return framework.plan([EXPERIMENTS[n] for n in names], scale, seeds)


def reproduce(
    names: list[str] | None = None,
    *,
    quick: bool = False,
    seeds: int = 5,
    jobs: int = 1,
    out: str | Path = "reproduction",
    progress: bool | None = None,
    scale: Scale | None = None,
    scheduler: str | None = None,
    figures: bool = False,
) -> dict:
    """Run (or resume) the paper's named experiments and write their figures, tables and ``REPORT.md``.

    Runs live in ``out/runs/`` keyed by a hash of their config; complete ones are skipped.
    ``scale`` overrides the sizes (default: :data:`FULL`, or :data:`QUICK` with ``quick``). Runs are
    made on ``jobs`` local processes, or with ``scheduler`` (``tcp://HOST:PORT``) on a Dask cluster.
    ``figures``: draw each run's ``dynamics.png`` (off: ``metarep plot RUN_DIR`` draws it later).
    Returns ``{"counts": ..., "experiments": [...], "report": path}``.
    """
    return framework.reproduce(
        PAPER,
        names,
        scale or (QUICK if quick else FULL),
        seeds=seeds,
        jobs=jobs,
        out=out,
        progress=progress,
        scheduler=scheduler,
        command=" ".join(["metarep reproduce", *(names or []), *(["--quick"] if quick else []), f"--seeds {seeds}"]),
        tag="quick" if quick else "",
        note=QUICK_NOTE if quick else "",
        figures=figures,
    )
