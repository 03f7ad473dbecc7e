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
    threads: bool = typer.Option(
        True, "--threads/--no-threads", help="The threads table: steps at 1 thread and all cores, idle and busy."
    ),
    chunks: bool = typer.Option(
        True, "--chunks/--no-chunks", help="The chunks table: the step at several chunk sizes."
    ),
    batched: bool = typer.Option(
        True, "--batched/--no-batched", help="Runs per minute of 64 seeds made alone and as one batched program."
    ),
) -> None:
    """Time the FO-ANIL step on every path side by side, and the streaming step's peak memory; the steps at one
    thread and at all cores (idle and with the other cores busy) and at several chunk sizes; runs per minute of
    many seeds made alone and batched."""
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
    res = run_benchmarks(names, streaming_tasks, threads, chunks, batched)
    typer.echo(json.dumps(res, indent=2) if json_out else format_table(res))
