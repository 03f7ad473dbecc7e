"""``metarep reproduce``: the paper's experiments, their figures and REPORT.md."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import PROGRESS, check_scheduler, fail, prepare_out


def reproduce(
    names: list[str] | None = typer.Argument(None, help="Experiments to run (default: all)."),
    quick: bool = typer.Option(False, "--quick", help="A smaller version of every experiment (minutes)."),
    seeds: int = typer.Option(5, "--seeds", help="Seeds per run (>= 1)."),
    jobs: int | None = typer.Option(None, "--jobs", help="Local worker processes (>= 1; default 1)."),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help="Run on the workers of a Dask scheduler, tcp://HOST:PORT (needs pip install 'metarep[dask]').",
    ),
    out: Path = typer.Option(Path("reproduction"), "--out", help="Output folder; complete runs in it are reused."),
    progress: bool | None = PROGRESS,
) -> None:
    """Reproduce the paper's experiments: one PNG and CSV per experiment, and REPORT.md."""
    from ..experiments import EXPERIMENTS
    from ..experiments import reproduce as run_reproduction
    from ..experiments.executors import ExecutorError

    unknown = [n for n in names or [] if n not in EXPERIMENTS]
    if unknown:
        fail(f"NAME: unknown experiment {unknown[0]!r}; allowed: {', '.join(EXPERIMENTS)}")
    if seeds < 1:
        fail(f"--seeds: must be an integer >= 1, got {seeds}")
    if jobs is not None and jobs < 1:
        fail(f"--jobs: must be an integer >= 1, got {jobs}")
    check_scheduler(scheduler, jobs)
    prepare_out(out, out)
    try:
        res = run_reproduction(
            names or None, quick=quick, seeds=seeds, jobs=jobs or 1, out=out, progress=progress, scheduler=scheduler
        )
    except ExecutorError as e:
        fail(f"--scheduler: {e}")
    except RuntimeError as e:
        fail(str(e), code=1)
    c = res["counts"]
    typer.echo(f"{c['total']} runs: {c['ran']} ran, {c['skipped']} reused from {out / 'runs'}")
    typer.echo(f"report: {res['report']}")
