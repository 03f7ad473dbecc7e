"""The width of the network (§5.3, §5.5) and α-invariance (§5.4), with infinitely many tasks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from matplotlib.ticker import NullLocator

from ...config import Config, MethodConfig
from ...plots import floor_note, floor_zeros, log_ticks
from ..framework import Experiment, Results, Scale, Series, final, final_vec, fmt, m_index, md_table, risk, tidy
from .setting import infinite, limit_risk, predicted_eigs

# --------------------------------------------------------------------------------------------
# width


@dataclass
class WidthData:
    """Per width (ascending as run): final metrics, one-step risk at m = m_in and its prediction."""

    k: int
    widths: list[int] = field(default_factory=list)
    perp_norm2: list[float] = field(default_factory=list)
    effective_rank: list[float] = field(default_factory=list)
    risk: list[float] = field(default_factory=list)  # closed form at the final B, mean over seeds
    risk_pred: list[float] = field(default_factory=list)  # at the limit
    eig_err: list[float] = field(default_factory=list)  # max relative error of the signal eigenvalues
    rows: list[dict] = field(default_factory=list)


def width_series(s: Scale) -> list[Series]:
    return [Series(f"width {w}", (*infinite(s), f"model.width={w}"), evaluate=True) for w in s.widths]


def width_data(res: Results) -> WidthData:
    first = next(iter(res.values()))
    data = WidthData(first[0].config.task.k)
    for recs in res.values():
        cfg = recs[0].config
        i = m_index(recs, cfg.data.m_in)
        pred = predicted_eigs(cfg)
        eig = final_vec(recs, "signal_eigs")[0]
        data.widths.append(cfg.width)
        data.perp_norm2.append(final(recs, "perp_norm2")[0])
        data.effective_rank.append(final(recs, "effective_rank")[0])
        data.risk.append(risk(recs, "learned").mean[i])
        data.risk_pred.append(limit_risk(cfg, recs[0].evaluation["m_test"][i]))
        data.eig_err.append(float(np.max(np.abs(eig - pred) / np.maximum(pred, 1e-12))))
    zeros = [0] * len(data.widths)
    for key in ("perp_norm2", "effective_rank", "risk"):
        pred = data.risk_pred if key == "risk" else None
        data.rows += tidy("width", key, "width", data.widths, key, getattr(data, key), zeros, len(first), pred)
    return data


def draw_width(fig, data: WidthData) -> None:
    axes = fig.subplots(1, 3)
    axes[0].set_yscale("log")
    if floor_zeros(axes[0], data.widths, data.perp_norm2, marker="o"):
        axes[0].set_ylabel(floor_note(), fontsize=8)
    log_ticks(axes[0])
    axes[0].set_title(r"final $\|B_\perp^\top B\|_2^2$")
    axes[1].plot(data.widths, data.effective_rank, "o-")
    axes[1].axhline(data.k, color="k", ls=":", lw=1, label="k")
    axes[1].set_title("effective rank of B")
    axes[1].legend()
    axes[2].plot(data.widths, data.risk, "o-", label="measured (closed form at final B)")
    axes[2].plot(data.widths, data.risk_pred, "k--", label="predicted at the limit")
    axes[2].set_title("one-step excess risk at m = m_in")
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("width k'")
        ax.set_xticks(data.widths, [str(w) for w in data.widths])
        ax.minorticks_off()


def width_prose(data: WidthData) -> str:
    cols = zip(data.widths, data.perp_norm2, data.effective_rank, data.risk, data.risk_pred, data.eig_err)
    table = [[str(w), fmt(p), fmt(e), fmt(r), fmt(rp), f"{err:.1e}"] for w, p, e, r, rp, err in cols]
    md = md_table(
        ["width k'", "‖B⊥ᵀB‖₂²", "eff. rank", "one-step risk (m=m_in)", "predicted", "signal eig. rel. error"], table
    )
    return md + (
        "\n\nInfinite tasks. Below k the run keeps the top-k' directions of Σ* (the underparametrized "
        "prediction, §5.5) and pays for the missing ones in risk; from k' = k on, the risk reaches the same "
        "limit whatever the width: the extra directions are unlearned (slowly, like 1/t, which is the "
        "remaining ‖B⊥ᵀB‖₂² and the small excess over the prediction at the widest widths)."
    )


WIDTH = Experiment(
    "width",
    "Width of the network",
    "Below k the top-k' directions of Σ* are kept (§5.5); from k on, overparametrization does not "
    "hurt: rank k and the same one-step risk (§5.3).",
    width_series,
    width_data,
    draw_width,
    width_prose,
)


# --------------------------------------------------------------------------------------------
# alpha


ALPHAS = (0.05, 0.1, 0.2)


@dataclass
class AlphaRow:
    """One step size: α times the final signal eigenvalues, the one-step risk at m = m_in, the steps."""

    label: str
    alpha: float
    scaled_eigs: np.ndarray
    risk: float
    steps: int


@dataclass
class AlphaData:
    runs: list[AlphaRow]
    gammas: np.ndarray  # predicted α · signal eigenvalues (the same for every α)
    risk_pred: float  # predicted one-step risk at m = m_in
    rows: list[dict] = field(default_factory=list)


def alpha_series(s: Scale) -> list[Series]:
    """One series per α in :data:`ALPHAS`, steps scaled like 1/α (the scale's at the default α)."""
    ref = MethodConfig().alpha
    return [
        Series(f"alpha {a}", (*infinite(s, steps=int(s.steps_inf * ref / a)), f"method.alpha={a}"), evaluate=True)
        for a in ALPHAS
    ]


def alpha_data(res: Results) -> AlphaData:
    first: Config = next(iter(res.values()))[0].config
    data = AlphaData([], predicted_eigs(first, alpha=1.0), limit_risk(first, first.data.m_in))
    for label, recs in res.items():
        cfg = recs[0].config
        a, k = cfg.method.alpha, cfg.task.k
        eig = final_vec(recs, "signal_eigs")[0] * a
        r = float(risk(recs, "learned").mean[m_index(recs, cfg.data.m_in)])
        data.runs.append(AlphaRow(label, a, eig, r, recs[0].summary["steps"]))
        gam = predicted_eigs(cfg, alpha=1.0)  # γ_j = α · (γ_j/α)
        data.rows += tidy("alpha", label, "j", list(range(1, k + 1)), "alpha_signal_eig", eig, [0] * k, len(recs), gam)
    return data


def draw_alpha(fig, data: AlphaData) -> None:
    ax1, ax2 = fig.subplots(1, 2)
    alphas = [r.alpha for r in data.runs]
    for j, g in enumerate(data.gammas):
        ax1.plot(alphas, [r.scaled_eigs[j] for r in data.runs], "o-", color=f"C{j}")
        ax1.axhline(g, color=f"C{j}", ls="--", lw=1)
    ax1.set_xscale("log")
    ax1.set_title(r"$\alpha\cdot$ eigenvalues of $B_*^\top BB^\top B_*$ (dashed: $\gamma_j$)")
    rp = data.risk_pred
    ax2.plot(alphas, [r.risk for r in data.runs], "o-", label="measured")
    ax2.axhline(rp, color="k", ls="--", label="predicted")
    ax2.set_ylim(0.95 * rp, 1.05 * rp)  # ±5% of the prediction
    ax2.ticklabel_format(axis="y", useOffset=False)
    ax2.set_xscale("log")
    ax2.set_title("one-step excess risk at m = m_in")
    ax2.legend()
    for ax in (ax1, ax2):  # ticks at the step sizes run, written plainly
        ax.set_xticks(alphas, [f"{a:g}" for a in alphas])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("α")


def alpha_prose(data: AlphaData) -> str:
    table = [[str(r.alpha), ", ".join(f"{x:.5g}" for x in r.scaled_eigs), fmt(r.risk), str(r.steps)] for r in data.runs]
    table.append(["*predicted*", ", ".join(f"{x:.5g}" for x in data.gammas), fmt(data.risk_pred), "–"])
    md = md_table(["α", "α · signal eigenvalues", "one-step risk (m=m_in)", "steps"], table)
    return md + (
        "\n\nInfinite tasks, steps scaled like 1/α. α·B_∞B_∞ᵀ, hence the adapted predictor after one step "
        "of size α, does not depend on α (§5.4); only the speed does."
    )


ALPHA = Experiment(
    "alpha",
    "α-invariance",
    "α·B_∞B_∞ᵀ, and so the adapted predictor, does not depend on α (§5.4).",
    alpha_series,
    alpha_data,
    draw_alpha,
    alpha_prose,
)
