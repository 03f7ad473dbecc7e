"""The figures of a sweep: each metric against the first grid key, one line per value of the others.

Solid lines (markers on a categorical axis) are means over the complete seeds with a ±1 sd band
(error bars); dashed lines (dash markers) are the theory's predictions where it gives one:
``signal_eig_j`` against ``predicted_signal_eig_j``, ``perp_rate`` against ``predicted_perp_rate``
and ``risk_mM`` against ``predicted_risk_mM`` (the one-step risk at the FO-ANIL limit, MATH.md §5),
for the runs the theory describes (:func:`prediction_of`). A missing value (no complete seed, an
undefined closed form) leaves a gap.
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from ..plots import NUMERICAL_ZERO, colormap, figure, floor_note, log_ticks, save_figure
from .sweep_results import METRICS, display
from .sweep_spec import Sweep

BAND = 0.2
DESCRIPTIONS = {
    "perp_norm2": r"$\|B_\perp^\top B\|_2^2$, energy outside span($B_*$)",
    "perp_fro2": r"$\|B_\perp^\top B\|_F^2$, energy outside span($B_*$)",
    "perp_rel": r"$\|B_\perp^\top B\|_2^2 \,/\, \|B_*^\top B\|_2^2$",
    "perp_rate": r"$t \cdot \|B_\perp^\top B\|_2^2$ (unlearning rate)",
    "subspace_sin": r"sine of the largest principal angle to $B_*$",
    "span_energy": r"$\|B_*^\top B\|_F^2 \,/\, \|B\|_F^2$, energy inside span($B_*$)",
    "effective_rank": "effective rank of B",
    "head_norm": r"head norm $\|w\|$",
}


def describe(metric: str) -> str:
    """What ``metric`` is, for a title or an axis label."""
    if metric in DESCRIPTIONS:
        return DESCRIPTIONS[metric]
    if m := re.fullmatch(r"signal_eig_(\d+)", metric):
        return rf"eigenvalue {m.group(1)} (ascending) of $B_*^\top B B^\top B_*$"
    if m := re.fullmatch(r"risk_m(\d+)", metric):
        return f"excess risk on new tasks after one head step, m = {m.group(1)} (Monte-Carlo)"
    return metric


def prediction_of(metric: str, theory: str = "first_order", overparametrized: bool = True) -> str | None:
    """The column of the theory's prediction of ``metric`` for a run whose dynamics is of class
    ``theory`` (see :func:`~metarep.experiments.sweep_results.theory_class`), if there is one.

    The limits (signal eigenvalues, one-step risks) hold for both classes; the unlearning rate is
    FO-ANIL's (first order), and only for width k' > k: with k' <= k, ``B⊥ᵀB`` vanishes
    exponentially (MATH.md §4: ``Ψᵀ Λ* Ψ`` is then positive definite), not like ``1/t``.
    """
    if theory == "none" or (metric == "perp_rate" and (theory != "first_order" or not overparametrized)):
        return None
    if metric == "perp_rate" or re.fullmatch(r"signal_eig_\d+|risk_m\d+", metric):
        return f"predicted_{metric}"
    return None


def figure_metrics(sweep: Sweep, k_max: int) -> list[str]:
    """The metrics drawn, one figure each."""
    return [*METRICS, *(f"signal_eig_{j}" for j in range(1, k_max + 1)), *(f"risk_m{m}" for m in sweep.m_test)]


def draw_all(sweep: Sweep, summary: list[dict[str, Any]], out: Path) -> list[Path]:
    """``out/METRIC.png`` for every metric (none without a grid key: a single point has no axis)."""
    if not sweep.keys or not summary:
        return []
    k_max = sum(1 for c in summary[0] if re.fullmatch(r"signal_eig_\d+_mean", c))
    paths = []
    for metric in figure_metrics(sweep, k_max):
        path = out / f"{metric}.png"
        draw_metric(sweep, summary, metric, path)
        paths.append(path)
    return paths


def _numeric(values: tuple[Any, ...]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def _series(sweep: Sweep, summary: list[dict[str, Any]], metric: str) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Per combination of the grid keys after the first: its label and the mean, sd and prediction
    along the first key's values (in the grid's order)."""
    xvalues, rest = sweep.grid[0][1], sweep.grid[1:]
    index = {tuple(str(r[k]) for k in sweep.keys): r for r in summary}
    out = []
    for combo in itertools.product(*(v for _, v in rest)):
        found = [index.get(tuple(str(display(v)) for v in (x, *combo))) for x in xvalues]
        arrays = {
            "mean": np.array([r[f"{metric}_mean"] if r else math.nan for r in found], dtype=float),
            "sd": np.array([r[f"{metric}_sd"] if r else math.nan for r in found], dtype=float),
            "pred": np.array([_prediction(r, metric) for r in found], dtype=float),
        }
        arrays["pred"][~np.isfinite(arrays["mean"])] = math.nan  # a prediction where something was measured
        label = ", ".join(_label(v) for v in combo)
        if not np.isfinite(arrays["mean"]).any():
            label = f"{label} (no complete run)".lstrip()
        out.append((label, arrays))
    return out


def _label(v: Any) -> str:
    """A grid value in a legend or on a tick: floats to 6 significant digits (``1e+06``)."""
    return f"{v:.6g}" if isinstance(v, float) else str(display(v))


def _colors(n: int) -> list:
    """The default cycle for up to 10 lines, else evenly spaced viridis colours."""
    return [f"C{i}" for i in range(10)] if n <= 10 else list(colormap("viridis")(np.linspace(0, 0.95, n)))


def _prediction(row: dict[str, Any] | None, metric: str) -> float:
    column = prediction_of(metric, row["theory"], row["width"] > row["k"]) if row else None
    return row[column] if column else math.nan


def _darker(color) -> tuple[float, float, float]:
    """``color`` darkened, so that a prediction stays visible where it lies on the measured line."""
    return tuple(0.6 * c for c in to_rgb(color))


def _log_scale(values: np.ndarray) -> bool:
    """All positive and spanning more than a factor 10."""
    v = values[np.isfinite(values)]
    return len(v) > 1 and bool((v > 0).all()) and v.max() / v.min() > 10


def draw_metric(sweep: Sweep, summary: list[dict[str, Any]], metric: str, path: Path) -> None:
    """One figure: ``metric`` against the first grid key; one line per value of the other keys."""
    xkey, xvalues = sweep.grid[0]
    numeric = _numeric(xvalues)
    xs = np.array(xvalues, dtype=float) if numeric else np.arange(len(xvalues), dtype=float)
    series = _series(sweep, summary, metric)
    every = np.concatenate([np.concatenate([a["mean"], a["pred"]]) for _, a in series])
    ylog = _log_scale(every)
    colors = _colors(len(series))
    fig = figure(figsize=(7.4, 4.6))
    ax = fig.subplots()
    order = np.argsort(xs)
    width = 0.6 / max(len(series), 1)
    handles = []
    has_pred = floored = False
    for i, (label, a) in enumerate(series):
        color = colors[i]
        mean, sd, pred = a["mean"][order], a["sd"][order], a["pred"][order]
        low = ylog & (mean < NUMERICAL_ZERO)  # numerical zeros (e.g. 1e-29): drawn at a floor, hollow triangles
        floored, mean = floored or bool(low.any()), np.where(low, NUMERICAL_ZERO, mean)
        lo = np.maximum(mean - sd, mean / 10) if ylog else mean - sd
        if numeric:
            x = xs[order]
            (line,) = ax.plot(x, mean, color=color, marker="o", ms=4, lw=1.6, label=label)
            ax.fill_between(x, lo, mean + np.nan_to_num(sd), color=color, alpha=BAND, lw=0)
            if np.isfinite(pred).any():
                ax.plot(
                    x, pred, color=_darker(color), ls="--", lw=1.3, marker="_", ms=12, zorder=3
                )  # marker: a lone point shows
        else:
            x = xs[order] + (i - (len(series) - 1) / 2) * width
            yerr = [np.nan_to_num(mean - lo), np.nan_to_num(sd)]
            line = ax.errorbar(x, mean, yerr=yerr, color=color, fmt="o", ms=5, capsize=3)
            if np.isfinite(pred).any():
                ax.plot(x, pred, color=_darker(color), marker="_", ms=16, mew=2, ls="none", zorder=3)
        if low.any():
            ax.plot(x[low], mean[low], ls="none", marker="v", ms=8, mfc="white", color=color, zorder=4)
        has_pred = has_pred or bool(np.isfinite(pred).any())
        handles.append((line, label))
    _axes(ax, xkey, xvalues, xs, numeric, ylog, metric + (f"\n{floor_note()}" if floored else ""))
    _legends(ax, sweep, handles, numeric, has_pred)
    fig.suptitle(f"{metric}: {describe(metric)}", fontsize=10.5)
    save_figure(fig, path)


def _axes(ax, xkey: str, xvalues, xs: np.ndarray, numeric: bool, ylog: bool, metric: str) -> None:
    if numeric and _log_scale(xs):
        ax.set_xscale("log")
    if ylog:
        ax.set_yscale("log")
        log_ticks(ax)
    if not numeric or len(xs) <= 12:
        ax.set_xticks(xs)
        ax.set_xticklabels([_label(v) for v in xvalues])
        ax.xaxis.set_minor_locator(NullLocator())
    if not numeric:
        ax.set_xlim(xs.min() - 0.6, xs.max() + 0.6)
    ax.set_xlabel(xkey)
    ax.set_ylabel(metric)
    ax.grid(True, which="major", alpha=0.3)


def _legends(ax, sweep: Sweep, handles: list, numeric: bool, has_pred: bool) -> None:
    n = len(sweep.seeds)
    spread = "±1 sd band" if numeric else "error bars ±1 sd"
    style = [
        Line2D([], [], color="0.3", marker="o", ms=4, lw=1.6 if numeric else 0, label=f"mean over {n} seeds, {spread}")
    ]
    if has_pred:
        kw = (
            {"ls": "--", "lw": 1.2, "marker": "_", "ms": 12}
            if numeric
            else {"marker": "_", "ms": 16, "mew": 2, "ls": "none"}
        )
        style.append(Line2D([], [], color="0.3", label="predicted (infinite-task theory, MATH.md §5)", **kw))
    if len(sweep.keys) > 1:
        first = ax.legend(
            [h for h, _ in handles],
            [lab for _, lab in handles],
            title=", ".join(sweep.keys[1:]),
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            fontsize=8,
            title_fontsize=8.5,
        )
        ax.add_artist(first)
    below = len(sweep.keys) > 1  # under the legend of the lines, else at the top
    ax.legend(
        handles=style,
        loc="lower left" if below else "upper left",
        bbox_to_anchor=(1.02, 0.0 if below else 1.0),
        fontsize=8,
    )
