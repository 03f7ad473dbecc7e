"""Figures and files of ``metarep fewshot sinusoid``: adapted curves, test MSE against inner steps, the
representation diagnostics, and the atomic writer of a :class:`~.sinusoid.SinusoidResult`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from .. import diagnostics as dg
from .sinusoid import SinusoidResult, method_label


def plot_curves(result: SinusoidResult, K: int, path: str | Path) -> None:
    """Adapted curves of a few test tasks: one column per method, one row per task."""
    from ..plots import colormap, figure, save_figure

    data = result.curves[K]
    methods = list(data["pred"])
    steps = sorted(result.config.eval_steps)
    n_rows = len(data["tasks"])
    fig = figure(figsize=(3.1 * len(methods), 2.6 * n_rows))
    axes = fig.subplots(n_rows, len(methods), squeeze=False, sharex=True, sharey="row")
    colors = colormap("plasma")(np.linspace(0.1, 0.8, len(steps)))
    for r, task in enumerate(data["tasks"]):
        for c, method in enumerate(methods):
            ax = axes[r][c]
            ax.plot(data["x"], task["y_true"], color="k", lw=2, label="true")
            for s, col in zip(steps, colors):
                ax.plot(
                    data["x"],
                    data["pred"][method][r][s],
                    color=col,
                    lw=1.3,
                    ls="--" if s == 0 else "-",
                    label=f"{s} step{'s' if s != 1 else ''}",
                )
            ax.scatter(task["x_support"], task["y_support"], color="k", marker="^", s=22, zorder=5, label=f"{K} shots")
            if r == 0:
                ax.set_title(method_label(method))
            if c == 0:
                ax.set_ylabel(f"A={task['amplitude']:.2f}, φ={task['phase']:.2f}")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, bbox_to_anchor=(0.5, -0.03))
    fig.suptitle(
        f"Sinusoid regression, K = {K}: curves after 0 / 1 / 10 inner steps (α = {result.config.inner_lr})", fontsize=10
    )
    save_figure(fig, path)


def plot_mse(result: SinusoidResult, path: str | Path) -> None:
    """Test MSE (with its 95% interval) against the number of inner steps, one panel per K."""
    from ..plots import figure, save_figure

    shots = list(result.config.shots)
    fig = figure(figsize=(5.2 * len(shots), 3.8), layout="constrained")
    axes = fig.subplots(1, len(shots), squeeze=False, sharey=True)
    for ax, K in zip(axes[0], shots):
        for i, method in enumerate(result.curves[K]["pred"]):
            rs = sorted(
                (r for r in result.rows if r["shots"] == K and r["method"] == method and r["mse"] is not None),
                key=lambda r: r["steps"],
            )
            ax.errorbar(
                [r["steps"] for r in rs],
                [r["mse"] for r in rs],
                yerr=[r["ci95"] for r in rs],
                marker="o",
                capsize=3,
                color="k" if method == "pretrain" else f"C{i}",
                ls="--" if method == "pretrain" else "-",
                label=method_label(method),
            )
            for r in result.rows:
                if r["shots"] == K and r["method"] == method and r["mse"] is None:
                    ax.annotate(
                        f"{method_label(method)}: diverged on {r['diverged']} tasks",
                        (r["steps"], 1.0),
                        xycoords=("data", "axes fraction"),
                        xytext=(0, -12 * (i + 1)),
                        textcoords="offset points",
                        ha="right",
                        fontsize=7,
                        color="k" if method == "pretrain" else f"C{i}",
                    )
        ax.set_yscale("log")
        ax.set_xlabel("inner steps at test time")
        if shots[0] == K:  # one y-label: shared axis, nothing to collide with the next panel
            ax.set_ylabel("test MSE, mean (95% interval)")
        ax.set_title(f"K = {K}, {result.config.test_tasks} test tasks")
        ax.legend(fontsize=8)
    save_figure(fig, path)


def save_sinusoid(result: SinusoidResult, out_dir: str | Path) -> list[Path]:
    """Write ``results.json``, ``results.csv``, ``mse.png`` and ``curves_K{K}.png`` atomically; with
    diagnostics, also ``diagnostics_K{K}/`` (``diagnostics.csv``, ``angles.csv``, ``diagnostics.png``, see
    :func:`metarep.diagnostics.save_tracked`)."""
    from ..files import write_csv, write_result

    out = Path(out_dir)
    cfg = result.config
    write_csv(out / "results.csv", result.rows)
    plot_mse(result, out / "mse.png")
    paths = [out / "results.csv", out / "mse.png"]
    for K in cfg.shots:
        plot_curves(result, K, out / f"curves_K{K}.png")
        paths.append(out / f"curves_K{K}.png")
    for K, tracked in result.diagnostics.items():
        title = (
            f"Sinusoid K = {K}: features of 200 inputs on [−5, 5] over training (every {cfg.diagnostics_every} "
            "outer steps); the tasks span sin x and cos x, so the energy outside that span is the analogue of "
            "‖B⊥ᵀB‖²"
        )
        paths += dg.save_tracked(tracked, result.angles[K], out / f"diagnostics_K{K}", title, method_label)
    write_result(
        out / "results.json",
        {
            "benchmark": "sinusoid",
            "config": asdict(cfg),
            "seeds": result.seeds,
            "results": result.rows,
            "train_seconds": result.train_seconds,
            "diagnostics": {str(K): t for K, t in result.diagnostics.items()},
            "angles": {str(K): a for K, a in result.angles.items()},
        },
    )
    return [out / "results.json"] + paths
