"""``metarep reproduce``: the paper's experiments, their figures and REPORT.md."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import PROGRESS, Interrupts, check_scheduler, fail, out_path, prepare_out

RUN_FIGURES = typer.Option(
    False,
    "--run-figures",
    help="Draw each run's dynamics.png and evaluation.png (default: not drawn; metarep plot RUN_DIR draws them).",
)
MAX_SEEDS = 10_000
# the names of metarep.experiments.EXPERIMENTS, for the help without importing torch (a test keeps them equal)
EXPERIMENT_NAMES = ("learning", "unlearning", "methods", "adaptation", "width", "alpha", "relu", "finite", "fewshot")


def reproduce(
    names: list[str] | None = typer.Argument(
        None, metavar="NAMES", help=f"Experiments to run, of {', '.join(EXPERIMENT_NAMES)} (default: all)."
    ),
    quick: bool = typer.Option(False, "--quick", help="A smaller version of every experiment (minutes)."),
    seeds: int = typer.Option(5, "--seeds", help="Seeds per run (>= 1)."),
    jobs: int | None = typer.Option(None, "--jobs", help="Local worker processes (>= 1; default 1)."),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help="Run on the workers of a Dask scheduler, tcp://HOST:PORT (needs pip install 'metarep[dask]').",
    ),
    out: Path = typer.Option(
        Path("reproduction"),
        "--out",
        parser=out_path,
        metavar="<path>",
        help="Output folder; complete runs in it are reused.",
    ),
    progress: bool | None = PROGRESS,
    run_figures: bool = RUN_FIGURES,
) -> None:
    """Reproduce the paper's experiments: one PNG and CSV per experiment, and REPORT.md.

    Ctrl-C (exit 130) or SIGTERM (exit 143) cancels the queued runs and stops the workers within
    seconds; the runs finished so far are kept, and the same command resumes from them.
    """
    from ..experiments import EXPERIMENTS
    from ..experiments import reproduce as run_reproduction
    from ..experiments.executors import ExecutorError

    unknown = [n for n in names or [] if n not in EXPERIMENTS]
    if unknown:
        fail(f"NAME: unknown experiment {unknown[0]!r}; allowed: {', '.join(EXPERIMENTS)}")
    if seeds < 1:
        fail(f"--seeds: must be an integer >= 1, got {seeds}")
    if seeds > MAX_SEEDS:  # every experiment's runs are planned up front
        fail(f"--seeds: {seeds:.3g} seeds per run would take days; at most {MAX_SEEDS} are allowed")
    if jobs is not None and jobs < 1:
        fail(f"--jobs: must be an integer >= 1, got {jobs}")
    check_scheduler(scheduler, jobs)
    prepare_out(out, out)
    with Interrupts() as sig:
        try:
            res = run_reproduction(
                names or None,
                quick=quick,
                seeds=seeds,
                jobs=jobs or 1,
                out=out,
                progress=progress,
                scheduler=scheduler,
                figures=run_figures,
            )
        except ExecutorError as e:
            fail(f"--scheduler: {e}")
        except RuntimeError as e:
            fail(str(e), code=1)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the runner has cancelled the queued runs
            sig.defer()
            sig.stop(*_finished(names or list(EXPERIMENTS), quick, seeds, out / "runs"), out / "runs")
    c = res["counts"]
    typer.echo(f"{c['total']} runs: {c['ran']} ran, {c['skipped']} reused from {out / 'runs'}")
    typer.echo(f"report: {res['report']}")


def _finished(names: list[str], quick: bool, seeds: int, store: Path) -> tuple[int, int]:
    """(complete runs, runs) of the reproduction: what a rerun would reuse, of all it plans."""
    from ..experiments import FULL, QUICK, plan
    from ..experiments.runner import is_complete

    specs = {
        s.key(): s
        for series in plan(names, QUICK if quick else FULL, seeds).values()
        for x in series.values()
        for s in x
    }
    return sum(is_complete(store / k, s) for k, s in specs.items()), len(specs)
