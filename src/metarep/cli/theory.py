"""``metarep theory``: the theory's predictions for a config, without training."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .common import CONFIG, SET, m_list, user_errors


@user_errors
def theory(
    config: Path | None = CONFIG,
    set_: list[str] = SET,
    m_test: str = typer.Option("5,10,20,50,100", "--m-test", help="Sample sizes m of the predicted risks (+ m_in)."),
    json_out: bool = typer.Option(False, "--json", help="Print the predictions as JSON."),
) -> None:
    """The theory's predictions (MATH.md §5) for a config, without training."""
    from ..config import load_config

    cfg = load_config(config, set_)
    ms = m_list(m_test)
    from ..theory import format_report, report

    rep = report(cfg, ms)
    typer.echo(json.dumps(rep, indent=2) if json_out else format_report(rep))
