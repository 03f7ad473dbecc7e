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
    from ..theory import report
    from ..theory_finite import floor_predictions

    rep = report(cfg, ms)
    if not cfg.infinite:
        rep["tasks"] = cfg.data.tasks
        rep.update(floor_predictions(cfg))
    typer.echo(json.dumps(rep, indent=2) if json_out else format_report(rep))


def format_report(rep: dict) -> str:
    """:func:`report` as a plain-text table (``metarep theory``)."""

    def fl(xs) -> str:
        return "[" + ", ".join(f"{x:.4g}" for x in xs) + "]"

    def opt(x) -> str:
        return "-" if x is None else f"{x:.4g}"

    k, width = rep["k"], rep["width"]
    kept = (
        "all k"
        if width >= k
        else (f"top {width} of Σ*: {', '.join(map(str, rep['kept_directions']))} (underparametrized)")
    )
    lines = [
        f"FO-ANIL theory, infinite tasks, head w = 0 (MATH.md §5); method {rep['method']}",
        f"  d={rep['d']}, k={k}, width k'={width}, σ²={rep['sigma2']:g}, Σ* diag {fl(rep['sigma_star_diag'])}",
        f"  α={rep['alpha']:g}, β={rep['beta']:g}, m_in={rep['m_in']}",
        f"  b = (tr Σ* + σ²)/m_in            {rep['b']:.4g}",
        f"  γ_j = s_j/((1+1/m_in)s_j + b)    {fl(rep['gamma'])}",
        f"  directions learned               {kept}",
        f"  lim eig B*ᵀBBᵀB* (= γ/α)         {fl(rep['predicted_signal_eigs'])}",
        f"  α × those (α-invariant)          {fl(rep['predicted_alpha_signal_eigs'])}",
        f"  rank of B_∞                      {rep['predicted_rank']}",
        f"  lim t·‖B⊥ᵀB_t‖₂² (unlearning)    {_perp_rate(rep)}",
        "",
        *_floor_lines(rep),
        "excess risk E‖θ̂ − θ‖² on a new task with m samples ('-': infinite or undefined):",
        f"  {'m':>6}  {'one step at limit':>17}  {'oracle':>9}  {'scratch':>9}",
    ]
    for r in rep["risks"]:
        mark = "  (m = m_in)" if r["m"] == rep["m_in"] else ""
        lines.append(
            f"  {r['m']:>6}  {opt(r['limit_one_step']):>17}  {opt(r['oracle']):>9}  {opt(r['scratch']):>9}{mark}"
        )
    lines.append("")
    checks = rep["step_size_checks"]
    if not checks:
        lines.append(f"step sizes: no stability check for method {rep['method']}")
    else:
        lines.append("step sizes (stability of the infinite-task dynamics):")
        for c in checks:
            relation = "<" if c["ok"] else ">="
            lines.append(
                f"  {'ok     ' if c['ok'] else 'WARNING'} {c['name']:<6} {c['value']:.3g} {relation} {c['limit']:g}"
                + ("" if c["ok"] else f": {c['what']}; {c['fix']}")
            )
        if rep.get("step_size_advice"):
            lines.append(f"  advice: {rep['step_size_advice']}")
    return "\n".join(lines)


def _perp_rate(rep: dict) -> str:
    """The unlearning constant, or ``-`` and why there is none (:func:`metarep.theory.unlearning_constant`)."""
    c = rep["predicted_perp_rate"]
    return f"-  {rep['perp_rate_note']}" if c is None else f"{c:.4g}"


def _floor_lines(rep: dict) -> list[str]:
    """The finite-pool floor (MATH.md §8), when the config has a pool of N tasks."""
    if "tasks" not in rep:
        return []
    head = f"finite pool of N = {rep['tasks']} tasks: floor of unlearning (MATH.md §8)"
    if rep.get("predicted_perp_floor") is None:
        return [head, f"  not predicted: {rep['floor_note']}", ""]
    return [
        head,
        f"  floor of ‖B⊥ᵀB‖₂²                {rep['predicted_perp_floor']:.4g}",
        f"  floor of ‖B⊥ᵀB‖_F²               {rep['predicted_perp_fro_floor']:.4g}"
        f"  (outward {rep['floor_outward']:.4g} + row space of B*ᵀB {rep['floor_rowspace']:.4g})",
        f"  noise radius r = √((d−k) v / N)  {rep['floor_radius']:.4g}",
        f"  steps to reach it (12/(αβr))     {rep['floor_steps']:.0f}",
        f"  {'lim eig: sd over pools':33}" + ", ".join(f"{v:.3g}" for v in rep["signal_eig_sd"]),
        "",
    ]
