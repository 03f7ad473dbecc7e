"""``metarep bench``: time the FO-ANIL step on every path."""

from __future__ import annotations

import json

import typer

from .common import fail


def bench(
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    settings: str = typer.Option("paper,large", "--settings", help="Comma-separated: paper, large, tall (m > d)."),
    streaming_tasks: int = typer.Option(
        1_000_000, "--streaming-tasks", min=1, help="Fresh tasks in the streaming step."
    ),
) -> None:
    """Time the FO-ANIL step on every path side by side, and the streaming step's peak memory."""
    from ..bench import SETTINGS, format_table, run_benchmarks
    from ..limits import LimitError, check_bench

    names = tuple(x.strip() for x in settings.split(",") if x.strip())
    bad = [n for n in names if n not in SETTINGS]
    if bad or not names:
        fail(f"--settings: allowed values are {', '.join(SETTINGS)}; got {settings!r}")
    try:
        check_bench({n: SETTINGS[n] for n in names}, streaming_tasks)
    except LimitError as e:
        fail(str(e))
    res = run_benchmarks(names, streaming_tasks)
    typer.echo(json.dumps(res, indent=2) if json_out else format_table(res))
