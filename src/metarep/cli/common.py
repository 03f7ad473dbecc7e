"""What every command shares: one-line errors with exit code 2, the output-folder check, option parsers
and number formatting.

Nothing here imports torch or the training stack: ``metarep --help`` stays fast.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import typer

# options several commands declare alike
PROGRESS = typer.Option(None, "--progress/--no-progress", help="Progress bar (default: on a TTY).")
CONFIG = typer.Argument(None, help="TOML config; without one, the paper's setting with FO-ANIL.")
SET = typer.Option([], "--set", help="Override one key: section.key=value (repeatable).")


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on one line to stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(fn: Callable) -> Callable:
    """Turn configuration and method errors into one-line messages with exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ..config import ConfigError
        from ..methods import MethodError

        try:
            return fn(*args, **kwargs)
        except (ConfigError, MethodError) as e:
            fail(str(e))

    return wrapper


def prepare_out(out: Path | None, default: Path) -> Path:
    """``out`` (or ``default``) created and checked writable; exit 2 with one line naming ``--out`` if not."""
    from ..files import ensure_writable_dir

    path = out if out is not None else default
    try:
        return ensure_writable_dir(path)
    except OSError as e:
        fail(f"--out: cannot write to {path}: {e.strerror or e}")


def check_scheduler(scheduler: str | None, jobs: int | None) -> None:
    """Exit 2 with one line when ``--scheduler`` is given with ``--jobs``, or when Dask is not installed."""
    if scheduler is None:
        return
    if jobs is not None:
        fail("--jobs and --scheduler are exclusive: --jobs sizes the local pool, the Dask workers size a cluster")
    from ..experiments.executors import ExecutorError, require_dask

    try:
        require_dask()
    except ExecutorError as e:
        fail(f"--scheduler: {e}")


def m_list(text: str, option: str = "--m-test") -> list[int]:
    """Parse ``5,10,20`` into sorted distinct sample sizes ``>= 1``; exit 2 with one line otherwise."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        ms = [int(p) for p in parts]
    except ValueError:
        ms = []
    if not ms or min(ms) < 1:
        fail(f"{option}: expected comma-separated integers >= 1 (e.g. 5,10,20), got {text!r}")
    return sorted(set(ms))


def int_list(value: str, option: str) -> tuple[int, ...]:
    """Parse ``0,1,10`` into integers in the given order (no range check); exit 2 with one line otherwise."""
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        fail(f"{option}: expected comma-separated integers, got {value!r}")
    if not out:
        fail(f"{option}: expected at least one integer, got {value!r}")
    return out


def name_list(value: str) -> tuple[str, ...]:
    """Parse ``a, b,c`` into ``("a", "b", "c")``."""
    return tuple(v.strip() for v in value.split(",") if v.strip())


def fmt_list(xs: list[float]) -> str:
    """``[0.792, 1.43]``: four significant digits."""
    return "[" + ", ".join(f"{x:.4g}" for x in xs) + "]"


def fmt_opt(x: float | None) -> str:
    """Four significant digits, or ``undefined`` for ``None``."""
    return "undefined" if x is None else f"{x:.4g}"
