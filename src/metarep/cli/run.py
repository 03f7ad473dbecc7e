"""``metarep run``: train one configuration of the linear harness and write its outputs.

Ctrl-C and SIGTERM (what a cluster sends on preemption) stop the training loop alike: the outputs of
the steps made so far are written with status ``interrupted`` and the command exits 130 (Ctrl-C) or
143 (SIGTERM). The handlers are the command's (:class:`Interrupts`), not :func:`metarep.train.train`'s:
``train`` also runs in pool workers, where the parent decides and a SIGTERM must end the process at
once, and in Dask worker threads, where no signal handler can be installed.
"""

from __future__ import annotations

from pathlib import Path

import typer

from .common import CONFIG, PROGRESS, SET, Interrupts, fail, fmt_list, fmt_opt, prepare_out, user_errors


@user_errors
def run(
    config: Path | None = CONFIG,
    set_: list[str] = SET,
    out: Path | None = typer.Option(None, "--out", help="Output folder (default runs/METHOD-HASH)."),
    progress: bool | None = PROGRESS,
) -> None:
    """Train one configuration and write config.json, history.csv, summary.json and dynamics.png.

    Exit codes: 0 complete, 1 diverged, 2 invalid input, 130 Ctrl-C and 143 SIGTERM (outputs of the
    steps made so far written with status ``interrupted``).
    """
    from ..config import load_config
    from ..limits import check_run

    cfg = load_config(config, set_)
    check_run(cfg)  # the memory the run needs, before anything is allocated or created
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

    with Interrupts() as sig:
        try:
            result = train(cfg, progress=progress, on_eval=warn_once)
        except KeyboardInterrupt:  # before the first step (while building the tasks): nothing to save
            sig.defer()
            fail("interrupted before the first step; nothing written", code=sig.code)
        sig.defer()  # a signal while the files are written is honoured once they are
        warn_once()
        save_run(result, out_dir)
    _report(result, out_dir)
    if result.status == "diverged":
        fail(result.message, code=1)
    if result.status == "interrupted":  # (a signal that came while a complete run was written is moot)
        fail(f"{result.message}; partial results written to {out_dir}", code=sig.code)


def _report(result, out_dir: Path) -> None:
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
