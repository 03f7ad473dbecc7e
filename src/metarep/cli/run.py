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

from .common import CONFIG, PROGRESS, SET, Interrupts, fail, fmt_list, fmt_opt, one_line, prepare_out, user_errors


@user_errors
def run(
    config: Path | None = CONFIG,
    set_: list[str] = SET,
    out: Path | None = typer.Option(None, "--out", help="Output folder (default runs/METHOD-HASH)."),
    progress: bool | None = PROGRESS,
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --out from its last checkpoint (same config)."
    ),
) -> None:
    """Train one configuration and write config.json, history.csv, summary.json and dynamics.png.

    Exit codes: 0 complete, 1 diverged, 2 invalid input, 130 Ctrl-C and 143 SIGTERM (outputs of the
    steps made so far written with status ``interrupted``). The run writes ``checkpoint.npz`` every
    ``run.checkpoint_every`` steps and when interrupted; ``--resume`` continues from it.
    """
    from ..config import load_config
    from ..limits import check_run

    cfg = load_config(config, set_)
    check_run(cfg)  # the memory the run needs, before anything is allocated or created
    out_dir = prepare_out(out, Path("runs") / f"{cfg.method.name}-{cfg.digest()}")
    from ..checkpoint import CHECKPOINT, load
    from ..files import atomic_write_bytes
    from ..outputs import save_run
    from ..theory import step_size_warning
    from ..train import train

    if resume:
        _check_resume(cfg, out_dir)

    warning, warned = step_size_warning(cfg), []

    def warn_once(_row: object = None) -> None:
        # after the run has started (a config the method rejects gets its one error line only)
        if warning is not None and not warned:
            warned.append(True)
            typer.echo(f"warning: {warning}", err=True)

    with Interrupts() as sig:
        try:
            result = train(
                cfg,
                progress=progress,
                on_eval=warn_once,
                checkpoint=lambda data: atomic_write_bytes(out_dir / CHECKPOINT, data),
                resume=load(out_dir / CHECKPOINT) if resume else None,
            )
        except KeyboardInterrupt:  # before the first step (while building the tasks): nothing to save
            sig.defer()
            fail("interrupted before the first step; nothing written", code=sig.code)
        sig.defer()  # a signal while the files are written is honoured once they are
        warn_once()
        save_run(result, out_dir)
        if result.status != "interrupted":  # a finished run needs no checkpoint (nor does its manifest list one)
            (out_dir / CHECKPOINT).unlink(missing_ok=True)
    _report(result, out_dir)
    if result.status == "diverged":
        fail(result.message, code=1)
    if result.status == "interrupted":  # (a signal that came while a complete run was written is moot)
        fail(f"{result.message}; partial results written to {out_dir}", code=sig.code)


def _check_resume(cfg, out_dir: Path) -> None:
    """Return when ``out_dir`` holds a checkpoint of ``cfg`` to resume; else exit: 0 (one line) when it
    holds the finished run of ``cfg``, 2 when it holds another config or no checkpoint."""
    import json

    from ..checkpoint import CHECKPOINT, identity_diff, load
    from ..outputs import NotFinishedRun, verify_run

    ck_path, theirs = out_dir / CHECKPOINT, []
    try:
        if (out_dir / "config.json").is_file():
            theirs.append(json.loads((out_dir / "config.json").read_text())["config"])
        ck = load(ck_path) if ck_path.is_file() else None
    except (OSError, ValueError, KeyError, TypeError) as e:
        fail(f"--resume: cannot read {out_dir}: {one_line(str(e), 200)}")
    for other in [*theirs, *([ck.config] if ck is not None else [])]:
        diff = identity_diff(other, cfg.to_dict())
        if diff:
            fail(f"--resume: {out_dir} holds another config: {', '.join(diff)}")
    try:
        status = verify_run(out_dir).get("status")
    except NotFinishedRun:
        status = None
    if status in ("complete", "diverged"):
        typer.echo(f"--resume: {out_dir} already holds the finished run ({status}); nothing to do")
        raise typer.Exit(0)
    if ck is None:
        fail(f"--resume: no {CHECKPOINT} in {out_dir}; nothing to resume (run without --resume to start at step 0)")
    typer.echo(f"resuming {out_dir} from step {ck.step}", err=True)


def _report(result, out_dir: Path) -> None:
    s = result.summary
    typer.echo(f"{s['method']} ({s['regime']} tasks): {s['steps']} steps in {s['wall_seconds']:.1f} s -> {out_dir}")
    typer.echo(f"  signal_eigs       {fmt_list(s['signal_eigs'])}")
    typer.echo(f"  predicted         {fmt_list(s['predicted_signal_eigs'])}")
    c = s["predicted_perp_rate"]  # None where the theory has no unlearning constant (width k' <= k)
    typer.echo(
        f"  perp_norm2        {s['perp_norm2']:.4g}   (t * perp_norm2 = {s['perp_rate']:.4g}, "
        + (f"predicted -> {c:.4g})" if c is not None else "not predicted)")
    )
    if c is None:
        typer.echo(f"  {s['perp_rate_note']}")
    if s.get("predicted_perp_floor") is not None:
        typer.echo(
            f"  floor (N tasks)   predicted perp_norm2 -> {s['predicted_perp_floor']:.4g}, "
            f"perp_fro2 -> {s['predicted_perp_fro_floor']:.4g} (now {s['perp_fro2']:.4g})"
        )
    typer.echo(f"  subspace_sin      {s['subspace_sin']:.4g}")
    typer.echo(f"  effective_rank    {s['effective_rank']:.4g}")
    if "predicted_risk_m_in" in s:
        o, sc = fmt_opt(s["predicted_oracle_risk_m_in"]), fmt_opt(s["predicted_scratch_risk_m_in"])
        typer.echo(
            f"  predicted risk    one head step at the limit, m = m_in: {fmt_opt(s['predicted_risk_m_in'])} "
            f"(oracle {o}, scratch {sc})"
        )
