"""``metarep sweep``: a grid of runs from a TOML spec, its tables and figures."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import ALLOW_LONG, PROGRESS, Interrupts, check_scheduler, fail, out_path, prepare_out
from .reproduce import RUN_FIGURES


def sweep(
    spec: Path = typer.Argument(..., help="Sweep spec (TOML): base, seeds, [set], [grid], [evaluate]."),
    out: Path | None = typer.Option(
        None,
        "--out",
        parser=out_path,
        metavar="<path>",
        help="Output folder (default sweeps/SPEC_NAME); complete runs in it are reused.",
    ),
    jobs: int | None = typer.Option(None, "--jobs", help="Local worker processes (>= 1; default 1)."),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help="Run on the workers of a Dask scheduler, tcp://HOST:PORT (needs pip install 'metarep[dask]').",
    ),
    progress: bool | None = PROGRESS,
    allow_long: bool = ALLOW_LONG,
    run_figures: bool = RUN_FIGURES,
) -> None:
    """Run every point of a grid over seeds; write results.csv, summary.csv and one figure per metric.

    Ctrl-C (exit 130) or SIGTERM (exit 143) cancels the queued runs and stops the workers within
    seconds; the runs finished so far are kept, and the same command resumes from them.
    """
    if jobs is not None and jobs < 1:
        fail(f"--jobs: must be an integer >= 1, got {jobs}")
    check_scheduler(scheduler, jobs)

    from ..experiments.runner import ExecutorError
    from ..experiments.sweep import SweepError, check_limits, finished_runs, load_sweep, run_sweep

    try:
        plan = load_sweep(spec)
        check_limits(plan, allow_long)  # every grid point's memory and time, before --out is made
    except SweepError as e:
        fail(str(e))
    out_dir = prepare_out(out, Path("sweeps") / spec.stem)
    with Interrupts() as sig:
        try:
            res = run_sweep(
                plan,
                out_dir,
                jobs=jobs or 1,
                scheduler=scheduler,
                progress=progress,
                allow_long=allow_long,
                figures=run_figures,
            )
        except ExecutorError as e:  # Dask missing, or the scheduler cannot be reached
            fail(f"--scheduler: {e}".splitlines()[0])
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the runner has cancelled the queued runs
            sig.defer()
            sig.stop(*finished_runs(plan, out_dir), out_dir / "runs")
    for line in res.problems:
        typer.echo(line, err=True)
    c = res.counts
    diverged = f" ({c['diverged']} diverged)" if c["diverged"] else ""
    typer.echo(f"{c['total']} runs: {c['reused']} reused, {c['ran']} ran, {c['failed']} failed{diverged}")
    typer.echo(f"runs:    {out_dir / 'runs'}")
    typer.echo(f"results: {res.results}")
    typer.echo(f"summary: {res.summary}")
    if res.figures:
        names = ",".join(p.stem for p in res.figures)
        typer.echo(f"figures: {out_dir}/{{{names}}}.png")
    if c["failed"]:
        fail(f"{c['failed']} of {c['total']} runs did not complete (listed above; see results.csv)", code=1)
