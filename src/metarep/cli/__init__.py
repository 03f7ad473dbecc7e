"""Command-line interface: ``metarep run``, ``evaluate``, ``theory``, ``reproduce``, ``sweep``, ``bench``
and ``metarep fewshot ...``.

One module per command (:mod:`.run`, :mod:`.bench`, :mod:`.evaluate`, :mod:`.theory`,
:mod:`.reproduce`, :mod:`.sweep`, :mod:`.fewshot`), the helpers they share in :mod:`.common`; this module only
assembles :data:`app`. Commands import the training stack when they run, not here.

Bad input exits with code 2 and a one-line ``error:`` message naming the key; no traceback.
Figures are built with ``matplotlib.figure.Figure`` (no pyplot), so no backend is chosen here.
"""

from __future__ import annotations

import sys

import typer

from . import bench, evaluate, reproduce, run, sweep, theory
from .common import fail, user_errors
from .fewshot import fewshot_app

__all__ = ["app", "fail", "main", "user_errors"]

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


# the order of `metarep --help`
app.command("run")(run.run)
app.command("bench")(bench.bench)
app.command("evaluate")(evaluate.evaluate)
app.command("theory")(theory.theory)
app.command("reproduce")(reproduce.reproduce)
app.command("sweep")(sweep.sweep)
app.add_typer(fewshot_app, name="fewshot")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # outside a run's own handler
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
