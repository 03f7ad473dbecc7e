"""Figures, written atomically as PNG.

Figures are built as :class:`matplotlib.figure.Figure` objects, not through ``pyplot``: nothing here
chooses or switches a backend (importing metarep leaves the user's matplotlib set-up alone), and
no figure is kept in a global registry.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from .files import atomic_write_bytes


def figure(**kwargs) -> Figure:
    """A new figure (``Figure(**kwargs)``, e.g. ``figsize``); lay it out with ``fig.subplots(...)``.

    Constrained layout unless ``layout`` says otherwise: titles, labels and a ``suptitle`` get their
    own space instead of overlapping (e.g. a panel's title and the axis offset text ``1e15`` of a
    diverged run).
    """
    kwargs.setdefault("layout", "constrained")
    return Figure(**kwargs)


NUMERICAL_ZERO = 1e-12  # a squared norm of O(1) parameters below this is rounding (float64 or float32)


def floor_zeros(ax, x, y, **kw) -> bool:
    """Plot ``y`` against ``x`` on a log y-axis with values below :data:`NUMERICAL_ZERO` (numerical zeros,
    e.g. 1e-29) drawn at that floor as hollow down-triangles; return whether any was. Say so in the axis
    label (:func:`floor_note`)."""
    y = np.asarray(y, dtype=float)
    low = y < NUMERICAL_ZERO
    line = ax.plot(x, np.maximum(y, NUMERICAL_ZERO), **kw)[0]
    if low.any():
        xs = np.asarray(x, dtype=float)[low]
        ax.plot(xs, [NUMERICAL_ZERO] * len(xs), ls="none", marker="v", ms=8, mfc="white", color=line.get_color())
    return bool(low.any())


def floor_note() -> str:
    """The axis label's note for :func:`floor_zeros`."""
    return f"▽: below {NUMERICAL_ZERO:g} (numerical zero), drawn at {NUMERICAL_ZERO:g}"


def closed_form_line(ax, x, y, label: str, **kw):
    """A closed form against ``m`` (the scratch or oracle risk): not drawn across the ``m`` where it is infinite
    (``nan``, e.g. least squares with ``m`` within one of the dimension, MATH.md §5.6), small markers so that a
    point between two gaps shows, and the label says where it is infinite."""
    y = np.asarray(y, dtype=float)
    gaps = [str(m) for m, v in zip(x, y) if not np.isfinite(v)]
    note = f" (infinite at m = {', '.join(gaps)})" if gaps else ""
    return ax.plot(x, y, marker="o", ms=3, label=label + note, **kw)[0]


def coinciding(curves: list[tuple[np.ndarray, ...]], rtol: float = 0.05) -> list[int | None]:
    """For every curve (a tuple of arrays), the index of an earlier one it coincides with, or None: every
    value within ``rtol`` (relative; 5% is about two pixels on a log axis of a decade per inch), nan where
    the other is nan."""
    out: list[int | None] = []
    for i, c in enumerate(curves):
        out.append(
            next(
                (
                    j
                    for j in range(i)
                    if out[j] is None
                    and all(
                        len(a) == len(b) and np.allclose(a, b, rtol=rtol, atol=0, equal_nan=True)
                        for a, b in zip(c, curves[j], strict=True)
                    )
                ),
                None,
            )
        )
    return out


def _plain(value: float, _pos: object = None) -> str:
    """A tick label as a plain number: 0.5, 20, 1e+04."""
    return f"{value:g}"


def log_ticks(ax, axis: str = "y") -> None:
    """Enough labelled ticks on a log axis, for its current limits: at 1, 2, 3, 5 × 10ⁿ on a short range,
    fewer per decade on a wider one; labels as plain numbers, minor ticks unlabelled.

    Call it once the data are drawn and the limits set.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    decades = math.log10(hi / lo) if 0 < lo < hi else 1.0
    subs = (
        (1.0, 2.0, 3.0, 5.0)
        if decades < 1.2
        else (1.0, 2.0, 5.0)
        if decades < 3.5
        else (1.0, 3.0)
        if decades < 6
        else (1.0,)
    )
    which = ax.yaxis if axis == "y" else ax.xaxis
    which.set_major_locator(LogLocator(base=10, subs=subs, numticks=12 if decades < 6 else 7))
    which.set_major_formatter(FuncFormatter(_plain))
    which.set_minor_formatter(NullFormatter())


def colormap(name: str):
    """A matplotlib colormap by name, e.g. ``colormap("viridis")(0.5)``."""
    return matplotlib.colormaps[name]


def save_figure(fig: Figure, path: str | Path, dpi: int = 120, tight: bool = True) -> None:
    """Render ``fig`` to PNG (Agg) and write it atomically; ``tight``: cropped to its content (a second
    rendering pass; a constrained-layout figure fits its canvas without it)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    atomic_write_bytes(path, buf.getvalue())


def plot_dynamics(history: list[dict], summary: dict, title: str, path: str | Path) -> None:
    """Signal eigenvalues and ``‖B⊥ᵀB‖₂²`` over the steps, with the predicted limits drawn in.

    Left: eigenvalues of ``B*ᵀBBᵀB*`` (solid) and their predicted limits (dashed).
    Right, log–log: ``‖B⊥ᵀB_t‖₂²`` and the predicted asymptote ``C / t`` (dashed); with a finite pool
    also ``‖B⊥ᵀB_t‖_F²`` and the predicted floors of both (dotted, MATH.md §8).
    """
    steps = [r["step"] for r in history]
    k = len(summary["signal_eigs"])
    fig = figure(figsize=(11, 4.2))
    ax1, ax2 = fig.subplots(1, 2)
    colors = colormap("viridis")([j / max(k - 1, 1) for j in range(k)])
    for j in range(k):
        ax1.plot(steps, [r[f"signal_eig_{j + 1}"] for r in history], color=colors[j], lw=1.6)
        ax1.axhline(summary["predicted_signal_eigs"][j], color=colors[j], ls="--", lw=1)
    ax1.set_xscale("symlog", linthresh=max(steps[1] if len(steps) > 1 else 1, 1))
    ax1.set_xlim(left=0)
    ax1.set_xlabel("step (log scale after the first evaluation)")
    ax1.set_ylabel(r"eigenvalues of $B_*^\top B B^\top B_*$")
    ax1.set_title("learning: signal eigenvalues (dashed: predicted limit)")

    pos = [(s, r["perp_norm2"]) for s, r in zip(steps, history) if s > 0 and r["perp_norm2"] > 0]
    if pos:
        xs, ys = zip(*pos)
        ax2.loglog(xs, ys, color="C3", lw=1.6, label=r"$\|B_\perp^\top B_t\|_2^2$")
        lo, hi = min(ys), max(ys)
        c = summary.get("predicted_perp_rate")  # None: no C/t law (width k' <= k), nothing drawn
        if c is not None:
            infinite = summary.get("regime") == "infinite"  # the C/t law is the infinite-task theorem's
            label = f"predicted {c:.3g} / t" if infinite else f"{c:.3g} / t: the law for infinitely many tasks"
            ax2.loglog(xs, [c / s for s in xs], color="k", ls="--", lw=1, label=label)
            lo = min(lo, c / xs[-1])
        floor, fro_floor = summary.get("predicted_perp_floor"), summary.get("predicted_perp_fro_floor")
        if floor and fro_floor:  # a finite pool: the predicted floors (MATH.md §8)
            fro = [r["perp_fro2"] for s, r in zip(steps, history) if s > 0 and r["perp_norm2"] > 0]
            ax2.loglog(xs, fro, color="C0", lw=1.2, alpha=0.8, label=r"$\|B_\perp^\top B_t\|_F^2$")
            ax2.axhline(floor, color="C3", ls=":", lw=1.2, label=f"predicted floor {floor:.3g}")
            ax2.axhline(fro_floor, color="C0", ls=":", lw=1.2, label=f"predicted floor {fro_floor:.3g}")
            lo, hi = min(lo, floor), max(hi, *fro)
        ax2.set_ylim(lo / 3, hi * 3)
        ax2.legend(loc="lower left", fontsize=7.5)
    ax2.set_xlabel("step")
    ax2.set_title("unlearning: energy outside span(B*)")
    box = _predictions_text(summary)
    if box:
        ax2.text(
            0.98,
            0.97,
            box,
            transform=ax2.transAxes,
            ha="right",
            va="top",
            fontsize=7.5,
            multialignment="left",
            bbox=dict(boxstyle="round", fc="white", ec="0.7", alpha=0.9),
        )
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path, tight=False)  # one rendering pass: drawn by every run


def _predictions_text(summary: dict) -> str:
    """The theory's one-step risks at ``m = m_in`` and any step-size warning, for a figure's text box."""

    def num(key: str) -> str:
        v = summary.get(key)
        return "undefined" if v is None else f"{v:.3g}"

    lines = []
    if "predicted_risk_m_in" in summary:
        lines.append("predicted excess risk on a new task, m = m_in:")
        lines.append(f"  one head step at the limit {num('predicted_risk_m_in')}")
        lines.append(f"  oracle {num('predicted_oracle_risk_m_in')}, scratch {num('predicted_scratch_risk_m_in')}")
    if summary.get("step_size_warnings"):
        lines.append("WARNING: step sizes outside the stable range")
    return "\n".join(lines)


def plot_risk(result: dict, labels: dict[str, str], title: str, path: str | Path) -> None:
    """Excess risk on new tasks against ``m``, log–log (written by ``metarep evaluate``).

    Monte-Carlo means with ±2 standard errors (markers) and closed forms (lines) of every estimator
    in ``result["estimators"]``. Points whose expectation is infinite (least squares with ``m``
    next to its dimension) are left out of the axis range and marked with a triangle at the top.
    """
    from matplotlib.ticker import NullLocator

    ms = result["m_test"]
    est = result["estimators"]
    styles = {
        "learned": ("C0", "o", "-"),
        "limit": ("k", "x", ":"),
        "oracle": ("C2", "s", "-"),
        "scratch": ("C3", "v", "-"),
        "ls_span_B": ("C1", "D", "--"),
        "ls_top_k": ("C4", "P", "-"),
    }
    # y range from the finite closed forms and the Monte-Carlo means where a closed form exists
    vals = []
    for e in est.values():
        for cf, mc in zip(e["closed_form"], e["mc_mean"]):
            for v in (cf, mc) if math.isfinite(cf) else ():
                if v > 0:
                    vals.append(v)
    vals += [v for v in est["learned"]["mc_mean"] if v > 0] if "learned" in est else []
    lo, hi = (min(vals) / 2, max(vals) * 2) if vals else (None, None)
    fig = figure(figsize=(7.5, 5))
    ax = fig.subplots()
    any_off, drawn, hollow = False, [], []
    for i, (name, e) in enumerate(est.items()):
        color, marker, ls = styles.get(name, (f"C{i}", "o", "-"))
        same = _same_values(e, drawn)  # e.g. LS on span(B) with rank d is scratch: drawn hollow around it
        drawn.append(e)
        face = {"mfc": "none", "ms": 10, "mew": 1.5} if same else {"ms": 5}
        if same:
            hollow.append(labels.get(name, name))
        ys = [cf if math.isfinite(cf) else math.nan for cf in e["closed_form"]]  # nan breaks the line
        if any(math.isfinite(v) for v in ys):
            ax.plot(ms, ys, color=color, ls=ls, lw=1.2, alpha=0.8)
        inside = [(m, v, s) for m, v, s in zip(ms, e["mc_mean"], e["mc_se"]) if hi is None or v <= hi]
        if inside:
            xm, ym, sm = zip(*inside)
            ax.errorbar(
                xm,
                ym,
                yerr=[2 * s for s in sm],
                color=color,
                marker=marker,
                ls="none",
                capsize=2,
                label=labels.get(name, name) + (" (same values: hollow)" if same else ""),
                **face,
            )
        off = [m for m, v in zip(ms, e["mc_mean"]) if hi is not None and v > hi]
        if off:
            any_off = True
            ax.plot(off, [hi / 1.15] * len(off), color=color, marker="^", ls="none", alpha=0.6, **face)
    ax.set_xscale("log")
    ax.set_yscale("log")
    if lo is not None:
        ax.set_ylim(lo, hi)
    log_ticks(ax)
    ax.set_xticks(ms)
    ax.set_xticklabels([str(m) for m in ms])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("m: samples of the new task")
    ax.set_ylabel(r"excess risk $E\|\hat\theta - \theta\|^2$")
    ax.set_title(
        f"{result['n_tasks']} new tasks per m; markers: Monte-Carlo ± 2 SE, lines: closed form"
        + ("\n(triangles at the top: off the chart, infinite expectation)" if any_off else ""),
        fontsize=8.5,
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def _same_values(e: dict, earlier: list[dict]) -> bool:
    """Whether estimator ``e`` has the Monte-Carlo means and closed forms of one of ``earlier`` (to a relative
    1e-6: the same estimator computed two ways, e.g. least squares on span(B) with B of rank d, and scratch)."""

    def close(a: float, b: float) -> bool:
        return math.isclose(a, b, rel_tol=1e-6) or not (math.isfinite(a) or math.isfinite(b))

    def same(x: dict, y: dict) -> bool:
        return all(close(a, b) for k in ("mc_mean", "closed_form") for a, b in zip(x[k], y[k], strict=True))

    return any(same(e, o) for o in earlier)
