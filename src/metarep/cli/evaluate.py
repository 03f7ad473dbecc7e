"""``metarep evaluate``: test-time adaptation of a finished run on new tasks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from .common import ALLOW_LONG, PROGRESS, fail, m_list, out_path, prepare_out, user_errors


@user_errors
def evaluate(
    run_dir: Path = typer.Argument(..., help="Folder of a finished run (written by metarep run)."),
    m_test: str = typer.Option("5,10,20,50,100", "--m-test", help="Comma-separated sample sizes m of the new tasks."),
    steps: int = typer.Option(1, "--steps", help="Gradient steps on the head (closed form for 1 step)."),
    tasks: int = typer.Option(2000, "--tasks", help="New tasks per m for the Monte-Carlo estimates (>= 2)."),
    alpha: float | None = typer.Option(None, "--alpha", help="Head step size (default: the run's method.alpha)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the new tasks."),
    out: Path | None = typer.Option(
        None, "--out", parser=out_path, metavar="<path>", help="Output folder (default: RUN_DIR)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON instead of a table."),
    progress: bool | None = PROGRESS,
    allow_long: bool = ALLOW_LONG,
) -> None:
    """Excess risk on new tasks after head steps from the run's final parameters, next to the closed
    form, the FO-ANIL limit, the oracle, scratch and least squares on the learned representation.
    Writes evaluation.json, evaluation.csv and evaluation.png."""
    ms = m_list(m_test)
    if steps < 1:
        fail(f"--steps: must be an integer >= 1, got {steps}")
    if tasks < 2:
        fail(f"--tasks: must be an integer >= 2 (a standard error needs two tasks), got {tasks}")
    if alpha is not None and not (math.isfinite(alpha) and alpha > 0):
        fail(f"--alpha: must be a finite number > 0, got {alpha}")
    if seed < 0:
        fail(f"--seed: must be an integer >= 0, got {seed}")

    from ..eval_outputs import NONE, evaluation_title, format_table, save_evaluation, to_json
    from ..evaluate import check_evaluation, evaluate_run
    from ..outputs import NotFinishedRun, load_run

    try:
        loaded = load_run(run_dir)
    except NotFinishedRun as e:  # missing or damaged file, edited or unsealed summary
        fail(" ".join(str(e).split()))
    except (ValueError, KeyError, OSError) as e:
        fail(f"{run_dir}: not a readable metarep run ({type(e).__name__}: {e})".splitlines()[0])
    check_evaluation(loaded.config, ms, tasks, steps, allow_long)  # memory and time, before --out is made
    out_dir = prepare_out(out, run_dir)
    if loaded.summary.get("status", "complete") != "complete":
        status = loaded.summary.get("status")
        typer.echo(f"warning: the run's status is {status!r}; evaluating its last state", err=True)
    res = evaluate_run(
        loaded, m_test=ms, steps=steps, n_tasks=tasks, alpha=alpha, seed=seed, progress=progress, allow_long=allow_long
    )
    paths = save_evaluation(res, out_dir, evaluation_title(loaded.config, run_dir.name, res["alpha"], steps))
    for w in res["warnings"]:
        typer.echo(f"warning: {w}", err=True)
    if json_out:
        typer.echo(json.dumps(to_json(res), indent=2))
        return
    plural = "s" if steps > 1 else ""
    typer.echo(
        f"excess risk E|theta_hat - theta|^2 on {tasks} new tasks per m, head step alpha = {res['alpha']:g} "
        f"({steps} step{plural}):\nMonte-Carlo mean ± standard error [closed form; {NONE} where none]"
    )
    typer.echo(format_table(res))
    typer.echo(f"-> {paths['json']}, {paths['csv'].name}, {paths['png'].name}")
