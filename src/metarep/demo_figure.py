"""The figure of ``metarep demo``: FO-ANIL with infinitely many tasks and with a finite pool, against the theory."""

from __future__ import annotations

import json
from pathlib import Path

from .files import atomic_write_bytes
from .plots import colormap, figure, save_figure

# what plot_demo reads of a summary; of a history row it reads the step, perp_norm2 and signal_eig_j
SUMMARY_KEYS = ("signal_eigs", "predicted_signal_eigs", "predicted_perp_rate", "predicted_perp_floor")


def save_demo_data(path: str | Path, runs: dict[str, tuple[list[dict], dict]], alpha: float, tasks: int, title: str):
    """Write what :func:`plot_demo` draws (``demo.json``: the histories' columns it reads, the summaries' keys
    it reads, ``alpha``, ``tasks``, ``title``), so that :func:`redraw_demo` can draw the figure again."""
    slim = {}
    for name, (hist, summary) in runs.items():
        cols = ["step", "perp_norm2", *(f"signal_eig_{j + 1}" for j in range(len(summary["signal_eigs"])))]
        slim[name] = ([{c: row[c] for c in cols} for row in hist], {k: summary.get(k) for k in SUMMARY_KEYS})
    doc = {"runs": slim, "alpha": alpha, "tasks": tasks, "title": title}
    atomic_write_bytes(Path(path), json.dumps(doc, separators=(",", ":")).encode())


def redraw_demo(data: str | Path, path: str | Path) -> None:
    """Draw the demo's figure into ``path`` from the ``demo.json`` that :func:`save_demo_data` wrote."""
    doc = json.loads(Path(data).read_text(encoding="utf-8"))
    runs = {name: (hist, summary) for name, (hist, summary) in doc["runs"].items()}
    plot_demo(runs, doc["alpha"], doc["tasks"], doc["title"], path)


def plot_demo(runs: dict[str, tuple[list[dict], dict]], alpha: float, tasks: int, title: str, path: str | Path) -> None:
    """Two panels from ``runs = {"infinite": (history, summary), "finite": (history, summary)}``.

    Left, log–log: ``‖B⊥ᵀB_t‖₂²`` of both runs; the theorem's ``C/t`` (dashed, labelled as the
    infinite-task prediction) and, when the summary holds one, the predicted floor of the finite pool
    (dotted). Right: ``α·`` the signal eigenvalues of both runs (solid: infinite, dotted: finite) and
    their predicted limits ``γ_j`` (dashed). ``alpha``: the inner step size; ``tasks``: the pool's N.
    """
    inf_hist, inf_sum = runs["infinite"]
    fin_hist, fin_sum = runs["finite"]
    fig = figure(figsize=(11.5, 4.4))
    ax1, ax2 = fig.subplots(1, 2)
    for (hist, _), color, label in ((runs["infinite"], "C0", "infinitely many tasks"), (runs["finite"], "C3", "")):
        pts = [(r["step"], r["perp_norm2"]) for r in hist if r["step"] > 0 and r["perp_norm2"] > 0]
        ax1.loglog(*zip(*pts), color=color, lw=1.8, label=label or f"pool of N = {tasks} tasks")
    c = inf_sum["predicted_perp_rate"]  # None: no C/t law (width k' <= k)
    xs = [r["step"] for r in inf_hist if r["step"] >= inf_hist[-1]["step"] / 30]  # an asymptote: its late part
    if c is not None:
        ax1.loglog(xs, [c / x for x in xs], color="k", ls="--", lw=1, label=f"theory for N = ∞, large t: {c:.3g} / t")
    floor = fin_sum.get("predicted_perp_floor")
    if floor is not None:
        ax1.axhline(floor, color="C3", ls=":", lw=1.2, label=f"predicted floor of the pool: {floor:.3g}")
    ax1.set_xlabel("outer step t")
    ax1.set_ylabel(r"$\|B_\perp^\top B_t\|_2^2$ (energy outside span $B_*$)")
    ax1.set_title("unlearning: C/t with infinitely many tasks, a floor with N tasks", fontsize=10)
    ax1.legend(loc="lower left", fontsize=8)
    ax1.grid(True, which="major", alpha=0.3)

    k = len(inf_sum["signal_eigs"])
    colors = colormap("viridis")([j / max(k - 1, 1) for j in range(k)])
    for hist, ls in ((inf_hist, "-"), (fin_hist, ":")):
        steps = [r["step"] for r in hist]
        for j in range(k):
            ax2.plot(steps, [alpha * r[f"signal_eig_{j + 1}"] for r in hist], color=colors[j], ls=ls, lw=1.5)
    for j, g in enumerate(inf_sum["predicted_signal_eigs"]):
        ax2.axhline(alpha * g, color=colors[j], ls="--", lw=0.9)
    ax2.set_xscale("symlog", linthresh=10)
    ax2.set_xlim(left=0, right=max(fin_hist[-1]["step"], 10) * 1.05)
    ax2.set_xlabel("outer step t (log scale after 10)")
    ax2.set_ylabel(r"$\alpha\,\times$ eigenvalues of $B_*^\top B B^\top B_*$")
    ax2.set_title("learning: both reach the predicted limits γ_j (dashed)", fontsize=10)
    ax2.plot([], [], color="0.3", ls="-", label="infinitely many tasks")
    ax2.plot([], [], color="0.3", ls=":", label=f"pool of N = {tasks} tasks")
    ax2.legend(loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
