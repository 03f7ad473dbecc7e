"""Every registered method on the paper's setting, and their test-time adaptation (§5.6)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from matplotlib.ticker import NullLocator

from ...config import Config
from ...plots import closed_form_line, coinciding, log_ticks
from ..framework import (
    Curve,
    Experiment,
    Results,
    band,
    curve,
    final,
    final_vec,
    fmt,
    fmt_pm,
    md_table,
    risk,
    tidy,
)
from .setting import method_of, method_series

# --------------------------------------------------------------------------------------------
# methods


@dataclass
class MethodRow:
    """What one method learned: final metrics (means over seeds) and two curves."""

    label: str
    config: Config
    signal_eigs: np.ndarray
    perp_norm2: float
    perp_rel: float
    subspace_sin: float
    effective_rank: float
    steps: int
    curves: dict[str, Curve]  # subspace_sin and perp_rel against steps


@dataclass
class MethodsData:
    methods: list[MethodRow]
    rows: list[dict] = field(default_factory=list)


CURVES = ("subspace_sin", "perp_rel")

# What the methods table does not say about a method, keyed by method name; formatted with its config.
NOTES = {
    "reptile": "Reptile runs {cfg.method.inner_steps} inner steps (with 1 it is joint training on the mean task, "
    "which is 0 here).",
    "multitask": "Multi-task learning fits one head per pool task; its B has another scale (Burer–Monteiro "
    "balancing), so compare it through the scale-free columns.",
    "moments": "The method of moments is a one-shot estimate of width k.",
}


def methods_data(res: Results) -> MethodsData:
    data = MethodsData([])
    for label, recs in res.items():
        curves = {key: curve(recs, key) for key in CURVES}
        for key, c in curves.items():
            data.rows += tidy("methods", label, "step", c.x, key, c.mean, c.std, len(recs))
        finals = [final(recs, key)[0] for key in ("perp_norm2", "perp_rel", "subspace_sin", "effective_rank")]
        steps = recs[0].summary["steps"]
        data.methods.append(MethodRow(label, recs[0].config, final_vec(recs, "signal_eigs")[0], *finals, steps, curves))
    return data


# how curves that coincide with an earlier one are drawn on top of it, so that each shows: line style and marker
OVERLAY = (("--", "s"), ("-.", "^"), (":", "v"), ((0, (1, 3)), "D"))
COINCIDE_NOTE = "curves that coincide: dashed,\nwith markers, on the first"


def overlay_style(k: int, n: int) -> dict:
    """The ``k``-th overlaid curve of ``n`` points: its own dashes and marker, markers staggered along it."""
    ls, marker = OVERLAY[k % len(OVERLAY)]
    every = max(n // 4, 1)
    return {"ls": ls, "marker": marker, "ms": 4, "markevery": ((k % 4) * every // 4, every)}


def draw_methods(fig, data: MethodsData) -> None:
    ax1, ax2 = fig.subplots(1, 2)
    same = coinciding([tuple(row.curves[key].mean for key in CURVES) for row in data.methods])
    overlays = 0
    for i, row in enumerate(data.methods):
        label, style = row.label, {}
        if same[i] is not None:
            style = overlay_style(overlays, len(row.curves[CURVES[0]].x))
            label = f"{row.label} (on {data.methods[same[i]].label})"
            overlays += 1
        for ax, key in zip((ax1, ax2), CURVES):
            c = row.curves[key]
            if len(c.x) > 2:
                band(ax, c.x, c.mean, c.std, color=f"C{i}", label=label, lw=1.5, **style)
            else:  # one-shot estimators: their final value as a horizontal line
                ax.axhline(c.mean[-1], color=f"C{i}", ls=":", label=label)
    ax1.set_title("subspace_sin (largest principal angle to B*)")
    ax2.set_title(r"$\|B_\perp^\top B\|_2^2 / \|B_*^\top B\|_2^2$")
    for ax in (ax1, ax2):
        ax.set_yscale("log")
        log_ticks(ax)
        ax.set_xlabel("step")
    title = "method" + (f"\n({COINCIDE_NOTE})" if overlays else "")
    ax2.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), title=title, title_fontsize=7)


def _and(words: list[str]) -> str:
    return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else "".join(words)


def methods_prose(data: MethodsData) -> str:
    table = [
        [
            r.label,
            ", ".join(f"{x:.3g}" for x in r.signal_eigs),
            fmt(r.perp_norm2),
            fmt(r.perp_rel),
            fmt(r.subspace_sin),
            fmt(r.effective_rank),
            str(r.steps),
        ]
        for r in data.methods
    ]
    md = md_table(["method", "signal eigenvalues", "‖B⊥ᵀB‖₂²", "relative", "subspace_sin", "eff. rank", "steps"], table)
    pools = sorted({str(r.config.data.tasks) for r in data.methods})
    comments = [f"Same pool of {' / '.join(pools)} tasks, same seeds."]
    theory = [method_of(r.config).label for r in data.methods if method_of(r.config).dynamics]
    if theory:
        comments.append(
            f"{_and(theory)} learn the same subspace with the same signal eigenvalues (the infinite-task theory "
            "predicts the same limit for each of them at w = 0)."
        )
    comments += [
        NOTES[r.config.method.name].format(cfg=r.config) for r in data.methods if r.config.method.name in NOTES
    ]
    return md + "\n\n" + " ".join(comments)


METHODS = Experiment(
    "methods",
    "Every method on the paper's setting",
    "FO-ANIL, ANIL, FO-MAML and MAML learn the same representation; the baselines differ.",
    method_series,
    methods_data,
    draw_methods,
    methods_prose,
)


# --------------------------------------------------------------------------------------------
# adaptation


# How the adaptation experiment names an evaluate estimator other than "learned" (the method's own head step).
ESTIMATOR_NOTES = {"ls_top_k": "LS on top-k of B", "ls_span_B": "LS on span of B"}
REFERENCES = (("oracle", "oracle"), ("scratch", "scratch"), ("limit", "FO-ANIL limit (theory)"))
REFERENCE_STYLES = (("k", "--"), ("0.5", "--"), ("k", ":"))


@dataclass
class AdaptCurve:
    """Excess risk against m of one estimator; ``own``: the method's own head step from its (B, w)."""

    name: str
    risk: Curve
    own: bool = True


@dataclass
class AdaptationData:
    methods: list[AdaptCurve]
    references: list[AdaptCurve]  # closed forms of the first series (nan where infinite)
    m_test: list[int]
    rows: list[dict] = field(default_factory=list)


def adaptation_data(res: Results) -> AdaptationData:
    any_recs = next(iter(res.values()))
    data = AdaptationData([], [], any_recs[0].evaluation["m_test"])
    for label, recs in res.items():
        est = method_of(recs[0].config).adapt_estimator
        own = est == "learned"
        name = label if own else f"{label} ({ESTIMATOR_NOTES.get(est, est)})"
        c = risk(recs, est, "auto" if own else "closed_form")
        data.rows += tidy("adaptation", name, "m", c.x, "excess_risk", c.mean, c.std, len(recs))
        data.methods.append(AdaptCurve(name, c, own))
    for est, name in REFERENCES:
        c = risk(any_recs, est, "closed_form")
        data.rows += tidy("adaptation", name, "m", c.x, "excess_risk", c.mean, c.std, len(any_recs))
        data.references.append(AdaptCurve(name, c))
    return data


def draw_adaptation(fig, data: AdaptationData) -> None:
    ax = fig.subplots(1, 1)
    same = coinciding([(a.risk.mean,) for a in data.methods])
    overlays = 0
    for i, a in enumerate(data.methods):
        label, style = a.name, {"ls": "-" if a.own else ":", "marker": "o", "ms": 4}
        if same[i] is not None:
            style = overlay_style(overlays, len(a.risk.x)) | {"markevery": None, "ms": 4 + 2 * (overlays + 1)}
            style["mfc"] = "none"
            label = f"{a.name} (on {data.methods[same[i]].name})"
            overlays += 1
        ax.errorbar(a.risk.x, a.risk.mean, yerr=a.risk.std, color=f"C{i}", lw=1.3, capsize=2, label=label, **style)
    for a, (c, ls) in zip(data.references, REFERENCE_STYLES):
        closed_form_line(ax, a.risk.x, a.risk.mean, a.name, color=c, ls=ls, lw=1.8)
    ax.set_xscale("log"), ax.set_yscale("log")
    log_ticks(ax)
    ax.set_xticks(data.m_test, [str(m) for m in data.m_test])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("m (samples of the new task)")
    ax.set_ylabel(r"excess risk $E\|\hat\theta-\theta\|^2$")
    ax.set_title("one head step from the learned initialisation, on new tasks")
    title = "estimator" + ("\n(curves that coincide: hollow,\nlarger markers, on the first)" if overlays else "")
    handles, labels = ax.get_legend_handles_labels()
    first = len(data.references)  # the closed-form lines come first: list the methods first
    order = list(range(first, len(handles))) + list(range(first))
    ax.legend(
        [handles[i] for i in order],
        [labels[i] for i in order],
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.02, 1),
        title=title,
        title_fontsize=7,
    )


def adaptation_prose(data: AdaptationData) -> str:
    table = [[a.name] + [fmt_pm(m, s) for m, s in zip(a.risk.mean, a.risk.std)] for a in data.methods]
    table += [[f"*{a.name}*"] + [fmt(m) for m in a.risk.mean] for a in data.references]
    md = md_table(["estimator"] + [f"m={m}" for m in data.m_test], table)
    return md + (
        "\n\nOne gradient step on the head (step α) from each meta-learned initialisation, on new tasks "
        "(closed form for the linear model; mean ± sd over seeds). The baselines have no initialisation "
        "made for one step (multi-task's B has another scale, the moments' B is orthonormal), so they adapt "
        "by least squares on the top-k directions of their B (closed form given B; – where infinite). "
        "Oracle: least squares on B*; "
        "scratch: least squares in R^d, min-norm below d (closed forms; – where the expectation is infinite, "
        "m within one of the dimension)."
    )


ADAPTATION = Experiment(
    "adaptation",
    "Test-time adaptation",
    "One head step from FO-ANIL's initialisation comes close to the oracle and far below scratch (§5.6).",
    method_series,
    adaptation_data,
    draw_adaptation,
    adaptation_prose,
)
