"""``metarep plot``: draw a finished run's figures again from its folder."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import fail, one_line, os_error_line, out_path, prepare_out


def plot(
    run_dir: Path = typer.Argument(..., help="Folder of a finished run (written by metarep run or reproduce)."),
    out: Path | None = typer.Option(
        None,
        "--out",
        parser=out_path,
        metavar="<path>",
        help="Output folder (default: RUN_DIR, whose summary is resealed).",
    ),
) -> None:
    """Draw dynamics.png (and evaluation.png, if the run was evaluated) again from the run's history,
    summary and evaluation, e.g. after an upgrade of metarep changed the figures, or when one is missing
    or damaged (figures are drawn from the data; only the data must be intact).

    Exit codes: 0 done; 2 RUN_DIR does not hold a finished run (its data), or --out is not writable.
    """
    from ..outputs import NotFinishedRun, plot_run, verify_run

    try:
        verify_run(run_dir)
    except NotFinishedRun as e:
        fail(str(e))
    dest = prepare_out(out, run_dir)
    try:
        paths = plot_run(run_dir, dest)
    except OSError as e:  # a full disk, a read-only or vanished folder
        fail(f"{run_dir}: cannot draw its figures: {os_error_line(e)}")
    except (ValueError, KeyError) as e:
        fail(f"{run_dir}: cannot draw its figures ({type(e).__name__}: {one_line(str(e), 200)})")
    typer.echo("-> " + ", ".join(str(p) for p in paths))
