"""``metarep demo``: the paper's claim in one minute, where it holds and what a finite pool changes.

Two FO-ANIL runs on the paper's setting (MATH.md §7), each a normal run folder:

- ``infinite/``: infinitely many tasks (the exact expected update), the regime of the theorem; the
  signal eigenvalues reach their predicted limits and ``t·‖B⊥ᵀB_t‖₂²`` approaches its predicted constant;
- ``finite/``: a pool of ``data.tasks`` = 5000 tasks, as in the paper's experiment: the subspace is
  learned as fast, but unlearning stops at a floor set by the pool size.

``demo.png`` draws both against the theory, and the console says what to see.
"""

from __future__ import annotations

from pathlib import Path

import typer

from .common import ALLOW_LONG, PROGRESS, SET, Interrupts, fail, prepare_out, user_errors

INFINITE_STEPS = 20000  # long enough for t·‖B⊥ᵀB_t‖₂² to approach its limit
NAMES = ("infinite", "finite", "demo.json", "demo.png")  # what a demo writes in --out


@user_errors
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Folder for the two runs and demo.png."),
    steps: int = typer.Option(INFINITE_STEPS, "--steps", min=100, help="Steps of the infinite-task run."),
    set_: list[str] = SET,
    progress: bool | None = PROGRESS,
    allow_long: bool = ALLOW_LONG,
) -> None:
    """Run FO-ANIL with infinitely many tasks and with a pool of 5000, and draw both against the theory.

    ``--set`` changes the setting of both runs (e.g. ``--set task.d=20``); the finite run keeps its
    ``run.steps``, the infinite one runs ``--steps``. ``--out`` must be new, empty or a previous demo's
    folder (anything else is refused, as by ``metarep run``); it is locked while the demo writes it.
    """
    from ..config import load_config
    from ..demo_figure import plot_demo, save_demo_data
    from ..outputs import save_run
    from ..train import train

    infinite = ["data.tasks=inf", f"run.steps={steps}", f"run.eval_every={max(steps // 2000, 1)}"]
    configs = {"infinite": load_config(None, [*set_, *infinite]), "finite": load_config(None, set_)}
    fin = configs["finite"]
    if fin.infinite or fin.data.fresh or fin.method.name != "fo_anil":
        fail("--set: the demo is FO-ANIL on a pool of tasks beside infinitely many; keep method.name and data.tasks")
    from ..limits import check_run

    for cfg in configs.values():  # both runs' memory and time, before anything is trained or created
        check_run(cfg, allow_long)
    out_dir = prepare_out(out, out)
    from .run_folder import hold

    with hold(out_dir, NAMES):  # a folder of other files is refused, and one demo writes it at a time
        results = {}
        with Interrupts() as sig:
            for name, cfg in configs.items():
                what = "infinitely many tasks" if name == "infinite" else f"a pool of {cfg.data.tasks} tasks"
                typer.echo(f"FO-ANIL, {what}, {cfg.run.steps} steps ...", err=True)
                try:
                    results[name] = train(cfg, progress=progress, allow_long=allow_long)
                except KeyboardInterrupt:
                    sig.defer()
                    fail("interrupted", code=sig.code)
                run_dir = out_dir / name
                run_dir.mkdir(exist_ok=True)
                sig.defer()
                save_run(results[name], run_dir)
                if results[name].status != "complete":
                    fail(f"{name}: {results[name].message}", code=sig.code if sig.code else 1)
        title = (
            f"FO-ANIL, d = {fin.task.d}, k = {fin.task.k}, width k' = {fin.width}, σ² = {fin.task.sigma2:g}, "
            f"α = {fin.method.alpha:g}, β = {fin.method.beta:g}\nthe subspace is learned in both regimes; "
            "the extra directions are unlearned like C/t only with infinitely many tasks"
        )
        runs = {n: (r.history, r.summary) for n, r in results.items()}
        save_demo_data(out_dir / "demo.json", runs, fin.method.alpha, fin.data.tasks, title)
        plot_demo(runs, fin.method.alpha, fin.data.tasks, title, out_dir / "demo.png")
        for line in summary_lines(results["infinite"].summary, results["finite"].summary, configs["finite"].data.tasks):
            typer.echo(line)
        typer.echo(f"runs and figure: {out_dir}/ (demo.png and its data demo.json, infinite/, finite/)")


def summary_lines(inf: dict, fin: dict, tasks: int) -> list[str]:
    """What the two runs show, in a few lines (the numbers from their summaries)."""
    eigs = ", ".join(f"{x:.3g}" for x in inf["signal_eigs"])
    pred = ", ".join(f"{x:.3g}" for x in inf["predicted_signal_eigs"])
    fin_eigs = ", ".join(f"{x:.3g}" for x in fin["signal_eigs"])
    c = inf["predicted_perp_rate"]
    lines = [
        "",
        "Learning (both regimes): the eigenvalues of B*ᵀBBᵀB* reach the predicted limit",
        f"  predicted {pred}",
        f"  infinite  {eigs}",
        f"  finite    {fin_eigs}",
        "Unlearning, infinitely many tasks (the theorem's regime): ‖B⊥ᵀB_t‖₂² falls like C/t",
        f"  t·‖B⊥ᵀB_t‖₂² = {inf['perp_rate']:.4g} at t = {inf['steps']}, "
        + (f"predicted limit C = {c:.4g}" if c is not None else inf["perp_rate_note"]),
        f"Unlearning, a pool of N = {tasks} tasks: it stops at a floor (the C/t law is for N = ∞)",
        f"  ‖B⊥ᵀB‖₂² = {fin['perp_norm2']:.3g} at t = {fin['steps']}",
    ]
    if fin.get("predicted_perp_floor") is not None:
        lines[-1] += f", predicted floor for this N: {fin['predicted_perp_floor']:.3g}"
    lines.append("  (more tasks lower the floor; `metarep theory --set data.tasks=N` predicts it)")
    return lines
