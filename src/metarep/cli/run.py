"""``metarep run``: train one configuration of the linear harness and write its outputs."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import CONFIG, PROGRESS, SET, fail, fmt_list, fmt_opt, prepare_out, user_errors


@user_errors
def run(
    config: Path | None = CONFIG,
    set_: list[str] = SET,
    out: Path | None = typer.Option(None, "--out", help="Output folder (default runs/METHOD-HASH)."),
    progress: bool | None = PROGRESS,
) -> None:
    """Train one configuration and write config.json, history.csv, summary.json and dynamics.png."""
    from ..config import load_config

    cfg = load_config(config, set_)
    out_dir = prepare_out(out, Path("runs") / f"{cfg.method.name}-{cfg.digest()}")
    from ..outputs import save_run
    from ..theory import step_size_warning
    from ..train import train

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
    typer.echo(f"  signal_eigs       {fmt_list(s['signal_eigs'])}")
    typer.echo(f"  predicted         {fmt_list(s['predicted_signal_eigs'])}")
    typer.echo(
        f"  perp_norm2        {s['perp_norm2']:.4g}   (t * perp_norm2 = {s['perp_rate']:.4g}, "
        f"predicted -> {s['predicted_perp_rate']:.4g})"
    )
    typer.echo(f"  subspace_sin      {s['subspace_sin']:.4g}")
    typer.echo(f"  effective_rank    {s['effective_rank']:.4g}")
    if "predicted_risk_m_in" in s:
        o, sc = fmt_opt(s["predicted_oracle_risk_m_in"]), fmt_opt(s["predicted_scratch_risk_m_in"])
        typer.echo(
            f"  predicted risk    one head step at the limit, m = m_in: {fmt_opt(s['predicted_risk_m_in'])} "
            f"(oracle {o}, scratch {sc})"
        )
    if result.status == "diverged":
        fail(result.message, code=1)
    if result.status == "interrupted":
        fail(f"{result.message}; partial results written to {out_dir}", code=130)
