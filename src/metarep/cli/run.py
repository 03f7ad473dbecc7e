"""``metarep run``: train one configuration of the linear harness and write its outputs.

Ctrl-C and SIGTERM (what a cluster sends on preemption) stop the training loop alike: the outputs of
the steps made so far are written with status ``interrupted`` and the command exits 130 (Ctrl-C) or
143 (SIGTERM). The handlers are the command's (:class:`Interrupts`), not :func:`metarep.train.train`'s:
``train`` also runs in pool workers, where the parent decides and a SIGTERM must end the process at
once, and in Dask worker threads, where no signal handler can be installed.

Whether ``--out`` may be written (a finished run is never replaced by accident), and the lock held while
it is: :mod:`.run_folder`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from .common import (
    ALLOW_LONG,
    CONFIG,
    PROGRESS,
    SET,
    Interrupts,
    fail,
    fmt_list,
    fmt_opt,
    os_error_line,
    out_path,
    prepare_out,
    user_errors,
)


@user_errors
def run(
    config: Path | None = CONFIG,
    set_: list[str] = SET,
    out: Path | None = typer.Option(
        None, "--out", parser=out_path, metavar="<path>", help="Output folder (default runs/METHOD-HASH)."
    ),
    progress: bool | None = PROGRESS,
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --out from its last checkpoint (same config)."
    ),
    allow_long: bool = ALLOW_LONG,
    force: bool = typer.Option(False, "--force", help="Make the run again when --out already holds it."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace the run of another config in --out (once the new one is written)."
    ),
) -> None:
    """Train one configuration and write config.json, history.csv, summary.json and dynamics.png.

    Exit codes: 0 complete, 1 diverged, 2 invalid input, 130 Ctrl-C and 143 SIGTERM (outputs of the
    steps made so far written with status ``interrupted``). The run writes ``checkpoint.npz`` every
    ``run.checkpoint_every`` steps and when interrupted; ``--resume`` continues from it. A finished run
    in --out is kept (--force makes it again, --overwrite replaces one of another config); a folder
    holding other files is refused.
    """
    from ..config import load_config
    from ..limits import check_run

    cfg = load_config(config, set_)
    check_run(cfg, allow_long)  # the memory and time the run needs, before anything is allocated or created
    out_dir = prepare_out(out, Path("runs") / f"{cfg.method.name}-{cfg.digest()}")
    from ..theory import step_size_warning
    from . import run_folder

    warning, warned = step_size_warning(cfg), []

    def warn_once(_row: object = None) -> None:
        # after the run has started (a config the method rejects gets its one error line only)
        if warning is not None and not warned:
            warned.append(True)
            typer.echo(f"warning: {warning}", err=True)

    # the handlers first: a signal while the lock is taken or the folder planned exits 130 or 143 (root handler)
    with Interrupts() as sig, run_folder.hold(out_dir):
        plan = run_folder.plan(out_dir, cfg, resume, force, overwrite)
        try:
            result = _train(cfg, plan, out_dir, sig, progress=progress, on_eval=warn_once, allow_long=allow_long)
            sig.defer()  # a signal while the files are written is honoured once they are
            warn_once()
            _write(result, plan.target, out_dir)
        except OSError as e:  # a full disk, a read-only or vanished folder: one line, and what is kept
            fail(f"{os_error_line(e)}; {_kept(plan.target, out_dir)}")
    dropped = plan.target != out_dir and result.status == "interrupted"
    if not dropped:
        _report(result, out_dir)
    if result.status == "diverged":
        fail(result.message, code=1)
    if result.status == "interrupted":  # (a signal that came while a complete run was written is moot)
        written = "" if dropped else f"partial results written to {out_dir}; "
        fail(f"{result.message}; {written}{_kept(plan.target, out_dir)}", code=sig.code)


def _train(cfg, plan, out_dir: Path, sig: Interrupts, **kwargs):
    """Train ``cfg`` as ``plan`` says, its checkpoints written into the plan's folder; exit when it is
    stopped before its first step, or when the checkpoint to resume does not fit the run."""
    from ..checkpoint import CHECKPOINT, CheckpointError
    from ..files import atomic_write_bytes
    from ..train import train
    from .run_folder import START_OVER, discard

    try:
        return train(
            cfg,
            checkpoint=lambda data: atomic_write_bytes(plan.target / CHECKPOINT, data),
            resume=plan.resume,
            **kwargs,
        )
    except KeyboardInterrupt:  # before the first step (while building the tasks): nothing to save
        sig.defer()
        discard(plan.target, out_dir)
        fail("interrupted before the first step; nothing written", code=sig.code)
    except CheckpointError as e:  # verified, but not of the state this run builds
        fail(f"--resume: {e}; {START_OVER}")


def _write(result, target: Path, out_dir: Path) -> None:
    """Write the run's files into ``target``. A run replacing the one in ``out_dir`` (``target`` beside it)
    takes its place once written when it finished; interrupted, it is dropped and the earlier run stays."""
    from ..checkpoint import CHECKPOINT
    from ..outputs import save_run
    from .run_folder import discard, swap_in

    if target != out_dir and result.status == "interrupted":
        discard(target, out_dir)
        return
    save_run(result, target)
    if result.status != "interrupted":  # a finished run needs no checkpoint (nor does its manifest list one)
        (target / CHECKPOINT).unlink(missing_ok=True)
    if target != out_dir:
        swap_in(target, out_dir)


def _kept(target: Path, out_dir: Path) -> str:
    """What is left of a run that stopped (interrupted, or its environment failed), in words; a replacement
    that did not take the earlier run's place is removed."""
    from ..checkpoint import CHECKPOINT, load
    from .run_folder import discard

    if target != out_dir:
        discard(target, out_dir)
        return f"{out_dir} still holds the earlier run; nothing of the new one is kept"
    try:
        step = load(out_dir / CHECKPOINT).step
    except (OSError, ValueError):
        return f"no checkpoint is kept in {out_dir}: run the same command again to start over"
    return f"the checkpoint at step {step} is kept in {out_dir}: add --resume to continue"


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
