"""Command-line interface: ``metarep run``.

Bad input exits with code 2 and a one-line ``error:`` message naming the key; no traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Callable, Optional

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


def _prepare_out(out: Optional[Path], default: Path) -> Path:
    from .io import ensure_writable_dir

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
    config: Optional[Path] = typer.Argument(None, help="TOML config; without one, the paper's setting with FO-ANIL."),
    set_: list[str] = typer.Option([], "--set", help="Override one key: section.key=value (repeatable)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default runs/METHOD-HASH)."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bar (default: on a TTY)."),
) -> None:
    """Train one configuration and write config.json, history.csv, summary.json and dynamics.png."""
    cfg = load_config(config, set_)
    out_dir = _prepare_out(out, Path("runs") / f"{cfg.method.name}-{cfg.digest()}")

    from .outputs import save_run
    from .train import train

    result = train(cfg, progress=progress)
    save_run(result, out_dir)
    s = result.summary
    typer.echo(f"{s['method']} ({s['regime']} tasks): {s['steps']} steps in {s['wall_seconds']:.1f} s -> {out_dir}")
    typer.echo(f"  signal_eigs       {_fmt(s['signal_eigs'])}")
    typer.echo(f"  predicted         {_fmt(s['predicted_signal_eigs'])}")
    typer.echo(f"  perp_norm2        {s['perp_norm2']:.4g}   (t * perp_norm2 = {s['perp_rate']:.4g}, predicted -> {s['predicted_perp_rate']:.4g})")
    typer.echo(f"  subspace_sin      {s['subspace_sin']:.4g}")
    typer.echo(f"  effective_rank    {s['effective_rank']:.4g}")
    if result.status == "diverged":
        fail(result.message, code=1)
    if result.status == "interrupted":
        fail(f"{result.message}; partial results written to {out_dir}", code=130)


@app.command()
def bench(
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    settings: str = typer.Option("paper,large", "--settings", help="Comma-separated: paper, large."),
    streaming_tasks: int = typer.Option(1_000_000, "--streaming-tasks", min=1, help="Fresh tasks in the streaming step."),
) -> None:
    """Time the FO-ANIL step on every path side by side, and the streaming step's peak memory."""
    from .bench import SETTINGS, format_table, run_benchmarks

    names = tuple(x.strip() for x in settings.split(",") if x.strip())
    bad = [n for n in names if n not in SETTINGS]
    if bad or not names:
        fail(f"--settings: allowed values are {', '.join(SETTINGS)}; got {settings!r}")
    res = run_benchmarks(names, streaming_tasks)
    typer.echo(json.dumps(res, indent=2) if json_out else format_table(res))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # outside a run's own handler
        typer.echo("error: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
