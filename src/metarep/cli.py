"""Command-line interface: ``metarep run``.

Bad input exits with code 2 and a one-line ``error:`` message naming the key; no traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path

import typer

from .config import ConfigError, load_config
from .methods import MethodError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="metarep: meta-learning shared representations (FO-ANIL, ANIL, MAML and baselines).",
)


@app.callback()
def _root() -> None:
    """metarep: meta-learning shared representations (FO-ANIL, ANIL, MAML and baselines)."""


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on one line to stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(fn: Callable) -> Callable:
    """Turn configuration and method errors into one-line messages with exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ConfigError, MethodError) as e:
            fail(str(e))

    return wrapper


def _prepare_out(out: Path | None, default: Path) -> Path:
    from .files import ensure_writable_dir

    path = out if out is not None else default
    try:
        return ensure_writable_dir(path)
    except OSError as e:
        fail(f"--out: cannot write to {path}: {e.strerror or e}")


def _fmt(xs: list[float]) -> str:
    return "[" + ", ".join(f"{x:.4g}" for x in xs) + "]"


@app.command()
@user_errors
def run(
    config: Path | None = typer.Argument(None, help="TOML config; without one, the paper's setting with FO-ANIL."),
    set_: list[str] = typer.Option([], "--set", help="Override one key: section.key=value (repeatable)."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default runs/METHOD-HASH)."),
    progress: bool | None = typer.Option(None, "--progress/--no-progress", help="Progress bar (default: on a TTY)."),
) -> None:
    """Train one configuration and write config.json, history.csv, summary.json and dynamics.png."""
    cfg = load_config(config, set_)
    out_dir = _prepare_out(out, Path("runs") / f"{cfg.method.name}-{cfg.digest()}")
    from .outputs import save_run
    from .theory import step_size_warning
    from .train import train

    warning, warned = step_size_warning(cfg), []

    def warn_once(_row: object = None) -> None:
        # after the run has started (a config the method rejects gets its one error line only)
        if warning is not None and not warned:
            warned.append(True)
            typer.echo(f"warning: {warning}", err=True)

    result = train(cfg, progress=progress, on_eval=warn_once)
    warn_once()
    save_run(result, out_dir)
    s = result.summary
    typer.echo(f"{s['method']} ({s['regime']} tasks): {s['steps']} steps in {s['wall_seconds']:.1f} s -> {out_dir}")
    typer.echo(f"  signal_eigs       {_fmt(s['signal_eigs'])}")
    typer.echo(f"  predicted         {_fmt(s['predicted_signal_eigs'])}")
    typer.echo(
        f"  perp_norm2        {s['perp_norm2']:.4g}   (t * perp_norm2 = {s['perp_rate']:.4g}, "
        f"predicted -> {s['predicted_perp_rate']:.4g})"
    )
    typer.echo(f"  subspace_sin      {s['subspace_sin']:.4g}")
    typer.echo(f"  effective_rank    {s['effective_rank']:.4g}")
    if "predicted_risk_m_in" in s:
        o, sc = _opt(s["predicted_oracle_risk_m_in"]), _opt(s["predicted_scratch_risk_m_in"])
        typer.echo(
            f"  predicted risk    one head step at the limit, m = m_in: {_opt(s['predicted_risk_m_in'])} "
            f"(oracle {o}, scratch {sc})"
        )
    if result.status == "diverged":
        fail(result.message, code=1)
    if result.status == "interrupted":
        fail(f"{result.message}; partial results written to {out_dir}", code=130)


@app.command()
def bench(
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    settings: str = typer.Option("paper,large", "--settings", help="Comma-separated: paper, large, tall (m > d)."),
    streaming_tasks: int = typer.Option(
        1_000_000, "--streaming-tasks", min=1, help="Fresh tasks in the streaming step."
    ),
) -> None:
    """Time the FO-ANIL step on every path side by side, and the streaming step's peak memory."""
    from .bench import SETTINGS, format_table, run_benchmarks

    names = tuple(x.strip() for x in settings.split(",") if x.strip())
    bad = [n for n in names if n not in SETTINGS]
    if bad or not names:
        fail(f"--settings: allowed values are {', '.join(SETTINGS)}; got {settings!r}")
    res = run_benchmarks(names, streaming_tasks)
    typer.echo(json.dumps(res, indent=2) if json_out else format_table(res))


from .fewshot.cli import fewshot_app  # noqa: E402

app.add_typer(fewshot_app, name="fewshot")


def _opt(x: float | None) -> str:
    return "undefined" if x is None else f"{x:.4g}"


def _m_list(text: str, option: str = "--m-test") -> list[int]:
    """Parse ``5,10,20`` into sample sizes ``>= 1``; exit 2 with one line otherwise."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        ms = [int(p) for p in parts]
    except ValueError:
        ms = []
    if not ms or min(ms) < 1:
        fail(f"{option}: expected comma-separated integers >= 1 (e.g. 5,10,20), got {text!r}")
    return sorted(set(ms))


@app.command("evaluate")
@user_errors
def evaluate_cmd(
    run_dir: Path = typer.Argument(..., help="Folder of a finished run (written by metarep run)."),
    m_test: str = typer.Option("5,10,20,50,100", "--m-test", help="Comma-separated sample sizes m of the new tasks."),
    steps: int = typer.Option(1, "--steps", help="Gradient steps on the head (closed form for 1 step)."),
    tasks: int = typer.Option(2000, "--tasks", help="New tasks per m for the Monte-Carlo estimates (>= 2)."),
    alpha: float | None = typer.Option(None, "--alpha", help="Head step size (default: the run's method.alpha)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the new tasks."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: RUN_DIR)."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON instead of a table."),
    progress: bool | None = typer.Option(None, "--progress/--no-progress", help="Progress bar (default: on a TTY)."),
) -> None:
    """Excess risk on new tasks after head steps from the run's final parameters, next to the closed
    form, the FO-ANIL limit, the oracle, scratch and least squares on the learned representation.
    Writes evaluation.json, evaluation.csv and evaluation.png."""
    import math

    ms = _m_list(m_test)
    if steps < 1:
        fail(f"--steps: must be an integer >= 1, got {steps}")
    if tasks < 2:
        fail(f"--tasks: must be an integer >= 2 (a standard error needs two tasks), got {tasks}")
    if alpha is not None and not (math.isfinite(alpha) and alpha > 0):
        fail(f"--alpha: must be a finite number > 0, got {alpha}")
    if seed < 0:
        fail(f"--seed: must be an integer >= 0, got {seed}")

    from .evaluate import evaluate_run, format_table, save_evaluation, to_json
    from .outputs import load_run

    try:
        loaded = load_run(run_dir)
    except FileNotFoundError as e:
        fail(str(e))
    except (ValueError, KeyError, OSError) as e:
        fail(f"{run_dir}: not a readable metarep run ({type(e).__name__}: {e})".splitlines()[0])
    out_dir = _prepare_out(out, run_dir)
    if loaded.summary.get("status", "complete") != "complete":
        status = loaded.summary.get("status")
        typer.echo(f"warning: the run's status is {status!r}; evaluating its last state", err=True)
    res = evaluate_run(loaded, m_test=ms, steps=steps, n_tasks=tasks, alpha=alpha, seed=seed, progress=progress)
    cfg = loaded.config
    title = (
        f"{cfg.method.name} run {run_dir.name}: d={cfg.task.d}, k={cfg.task.k}, width={cfg.width}, "
        f"σ²={cfg.task.sigma2}, m_in={cfg.data.m_in}; head step α={res['alpha']:g} × {steps}"
    )
    paths = save_evaluation(res, out_dir, title)
    for w in res["warnings"]:
        typer.echo(f"warning: {w}", err=True)
    if json_out:
        typer.echo(json.dumps(to_json(res), indent=2))
        return
    plural = "s" if steps > 1 else ""
    typer.echo(
        f"excess risk E|theta_hat - theta|^2 on {tasks} new tasks per m: Monte-Carlo mean ± standard error "
        f"[closed form; - where none]  (head step alpha = {res['alpha']:g}, {steps} step{plural})"
    )
    typer.echo(format_table(res))
    typer.echo(f"-> {paths['json']}, {paths['csv'].name}, {paths['png'].name}")


@app.command("theory")
@user_errors
def theory_cmd(
    config: Path | None = typer.Argument(None, help="TOML config; without one, the paper's setting with FO-ANIL."),
    set_: list[str] = typer.Option([], "--set", help="Override one key: section.key=value (repeatable)."),
    m_test: str = typer.Option("5,10,20,50,100", "--m-test", help="Sample sizes m of the predicted risks (+ m_in)."),
    json_out: bool = typer.Option(False, "--json", help="Print the predictions as JSON."),
) -> None:
    """The theory's predictions (MATH.md §5) for a config, without training."""
    cfg = load_config(config, set_)
    ms = _m_list(m_test)
    from .theory import format_report, report

    rep = report(cfg, ms)
    typer.echo(json.dumps(rep, indent=2) if json_out else format_report(rep))


@app.command()
def reproduce(
    names: list[str] | None = typer.Argument(None, help="Experiments to run (default: all)."),
    quick: bool = typer.Option(False, "--quick", help="A smaller version of every experiment (minutes)."),
    seeds: int = typer.Option(5, "--seeds", help="Seeds per run (>= 1)."),
    jobs: int = typer.Option(1, "--jobs", help="Worker processes (>= 1)."),
    out: Path = typer.Option(Path("reproduction"), "--out", help="Output folder; complete runs in it are reused."),
    progress: bool | None = typer.Option(None, "--progress/--no-progress", help="Progress bar (default: on a TTY)."),
) -> None:
    """Reproduce the paper's experiments: one PNG and CSV per experiment, and REPORT.md."""
    from .experiments import EXPERIMENTS
    from .experiments import reproduce as run_reproduction

    unknown = [n for n in names or [] if n not in EXPERIMENTS]
    if unknown:
        fail(f"NAME: unknown experiment {unknown[0]!r}; allowed: {', '.join(EXPERIMENTS)}")
    if seeds < 1:
        fail(f"--seeds: must be an integer >= 1, got {seeds}")
    if jobs < 1:
        fail(f"--jobs: must be an integer >= 1, got {jobs}")
    _prepare_out(out, out)
    try:
        res = run_reproduction(names or None, quick=quick, seeds=seeds, jobs=jobs, out=out, progress=progress)
    except RuntimeError as e:
        fail(str(e), code=1)
    c = res["counts"]
    typer.echo(f"{c['total']} runs: {c['ran']} ran, {c['skipped']} reused from {out / 'runs'}")
    typer.echo(f"report: {res['report']}")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # outside a run's own handler
        typer.echo("error: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
