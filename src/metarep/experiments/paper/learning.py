"""Learning the shared representation (§5.1) and unlearning the other directions (§5.2)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...config import Config, DataConfig
from ...methods import registry
from ...plots import log_ticks
from ..framework import (
    Curve,
    Experiment,
    Results,
    Scale,
    Series,
    band,
    curve,
    final,
    final_vec,
    fmt,
    fmt_pm,
    md_table,
    tidy,
)
from .setting import HUGE_M_IN, finite, infinite, method_of, method_overrides, predicted_eigs, predicted_rate

# --------------------------------------------------------------------------------------------
# learning


@dataclass
class EigSeries:
    """The signal eigenvalues of one series: per eigenvalue over steps, final, and predicted."""

    label: str
    config: Config
    curves: list[Curve]  # eigenvalue j of B*ᵀBBᵀB* against steps
    mean: np.ndarray  # final eigenvalues, mean over seeds
    std: np.ndarray
    predicted: np.ndarray  # their limit γ_j/α

    @property
    def rel_error(self) -> float:
        return float((np.abs(self.mean - self.predicted) / self.predicted).max())


@dataclass
class LearningData:
    series: list[EigSeries]
    rows: list[dict] = field(default_factory=list)


def learning_series(s: Scale) -> list[Series]:
    return [Series(f"finite N={s.tasks}", finite(s), evaluate=True), Series("infinite", infinite(s))]


def learning_data(res: Results) -> LearningData:
    data = LearningData([])
    for label, recs in res.items():
        cfg = recs[0].config
        pred = predicted_eigs(cfg)
        curves = [curve(recs, f"signal_eig_{j + 1}") for j in range(cfg.task.k)]
        for j, c in enumerate(curves):
            data.rows += tidy(
                "learning", label, "step", c.x, f"signal_eig_{j + 1}", c.mean, c.std, len(recs), [pred[j]] * len(c.x)
            )
        data.series.append(EigSeries(label, cfg, curves, *final_vec(recs, "signal_eigs"), pred))
    return data


def draw_learning(fig, data: LearningData) -> None:
    axes = fig.subplots(1, len(data.series), squeeze=False)[0]
    for ax, ser in zip(axes, data.series):
        for j, (c, p) in enumerate(zip(ser.curves, ser.predicted)):
            band(ax, c.x, c.mean, c.std, color=f"C{j}", lw=1.5, label=f"λ{j + 1}")
            ax.axhline(p, color=f"C{j}", ls="--", lw=1)
        ax.set_xscale("symlog", linthresh=max(ser.curves[-1].x[1], 1))
        ax.set_xlim(left=0)
        ax.set_title(f"{ser.label} (dashed: predicted limit $\\gamma_j/\\alpha$)")
        ax.set_xlabel("step")
        ax.set_ylabel(r"eigenvalues of $B_*^\top BB^\top B_*$")


def learning_prose(data: LearningData) -> str:
    table = [
        [
            ser.label,
            ", ".join(fmt_pm(m, sd, 4, 2) for m, sd in zip(ser.mean, ser.std)),
            ", ".join(f"{p:.4g}" for p in ser.predicted),
            f"{ser.rel_error:.2e}",
        ]
        for ser in data.series
    ]
    md = md_table(
        ["series", "measured signal eigenvalues (mean ± sd over seeds)", "predicted", "max rel. error"], table
    )
    inf = next((ser for ser in data.series if ser.config.infinite), None)
    fin = next((ser for ser in data.series if not ser.config.infinite), None)
    comments = []
    if inf is not None:
        comments.append(
            f"Infinite tasks: the eigenvalues reach the predicted limit (max relative error {inf.rel_error:.1e})."
        )
    if fin is not None:
        comments.append(
            f"Finite pool of {fin.config.data.tasks} tasks: within {fin.rel_error:.0%}, the gap being the pool's own "
            "estimate of Σ* and its noise, which the infinite-task theory does not model."
        )
    return md + ("\n\n" + " ".join(comments) if comments else "")


LEARNING = Experiment(
    "learning",
    "Learning the shared representation",
    "The eigenvalues of B*ᵀBBᵀB* converge to γ_j/α (MATH.md §5.1), exponentially fast.",
    learning_series,
    learning_data,
    draw_learning,
    learning_prose,
)


# --------------------------------------------------------------------------------------------
# unlearning


@dataclass
class PerpSeries:
    """The energy outside span(B*) of one series, and its unlearning constant."""

    label: str
    norm: Curve  # ‖B⊥ᵀB‖₂² against steps
    rel: Curve  # ‖B⊥ᵀB‖₂² / ‖B*ᵀB‖₂² against steps
    final_norm: float
    final_rel: float
    rate: float  # t·‖B⊥ᵀB‖₂² at the end, mean over seeds
    rate_std: float
    predicted: float | None  # its limit C (None where the C/t law does not apply)
    same_scale: bool  # B on the meta-learners' scale (its absolute energy is comparable)


@dataclass
class UnlearningData:
    series: list[PerpSeries]
    rows: list[dict] = field(default_factory=list)


def unlearning_series(s: Scale) -> list[Series]:
    multitask = method_overrides(registry.get("multitask"), s)
    return [
        Series("infinite m_in=10", infinite(s, "data.m_in=10")),
        Series(f"infinite m_in={DataConfig().m_in}", infinite(s)),  # the default m_in
        Series("infinite m_in=1e9", infinite(s, f"data.m_in={HUGE_M_IN}")),
        Series(f"finite N={s.tasks}", finite(s), evaluate=True),  # the same runs as "learning" and "methods"
        Series(f"multitask N={s.tasks}", finite(s, *multitask), evaluate=True),
    ]


def unlearning_constant(cfg: Config) -> float | None:
    """The predicted C of ``t·‖B⊥ᵀB_t‖₂² → C``: for FO-ANIL's dynamics with infinitely many tasks
    and a finite m_in (with m_in = ∞ nothing is unlearned); None elsewhere."""
    applies = cfg.infinite and cfg.data.m_in < HUGE_M_IN and method_of(cfg).dynamics == "first_order"
    return predicted_rate(cfg) if applies else None


def unlearning_data(res: Results) -> UnlearningData:
    data = UnlearningData([])
    for label, recs in res.items():
        cfg = recs[0].config
        norm, rel = curve(recs, "perp_norm2"), curve(recs, "perp_rel")
        data.rows += tidy("unlearning", label, "step", norm.x, "perp_norm2", norm.mean, norm.std, len(recs))
        data.rows += tidy("unlearning", label, "step", rel.x, "perp_rel", rel.mean, rel.std, len(recs))
        data.series.append(
            PerpSeries(
                label,
                norm,
                rel,
                final(recs, "perp_norm2")[0],
                final(recs, "perp_rel")[0],
                *final(recs, "perp_rate"),
                predicted=unlearning_constant(cfg),
                same_scale=method_of(cfg).is_meta,
            )
        )
    return data


def draw_unlearning(fig, data: UnlearningData) -> None:
    ax1, ax2 = fig.subplots(1, 2)
    for i, ser in enumerate(data.series):
        keep = ser.norm.x > 0
        if ser.same_scale:
            band(ax1, ser.norm.x[keep], ser.norm.mean[keep], ser.norm.std[keep], color=f"C{i}", label=ser.label, lw=1.5)
            if ser.predicted:
                ax1.plot(ser.norm.x[keep], ser.predicted / ser.norm.x[keep], color=f"C{i}", ls="--", lw=1)
        keep = ser.rel.x > 0
        band(ax2, ser.rel.x[keep], ser.rel.mean[keep], ser.rel.std[keep], color=f"C{i}", label=ser.label, lw=1.5)
    ax1.set_xscale("log"), ax1.set_yscale("log")
    ax1.set_title(r"$\|B_\perp^\top B_t\|_2^2$ (dashed: predicted $C/t$)")
    ax2.set_xscale("log"), ax2.set_yscale("log")
    ax2.set_title(r"relative: $\|B_\perp^\top B\|_2^2 / \|B_*^\top B\|_2^2$ (scale-free, incl. multitask)")
    for ax in (ax1, ax2):
        log_ticks(ax)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)


def unlearning_prose(data: UnlearningData) -> str:
    table = [
        [
            ser.label,
            fmt(ser.final_norm),
            fmt(ser.final_rel),
            fmt_pm(ser.rate, ser.rate_std, 4, 2),
            fmt(ser.predicted) if ser.predicted else "–",
            f"{ser.rate / ser.predicted - 1:+.1%}" if ser.predicted else "–",
        ]
        for ser in data.series
    ]
    md = md_table(["series", "final ‖B⊥ᵀB‖₂²", "relative to signal", "t·‖B⊥ᵀB‖₂² (final)", "predicted C", "gap"], table)
    return md + (
        "\n\nIn the infinite regime the energy outside span(B*) decays like C/t with the predicted C; with "
        "m_in = 1e9 (b ≈ 0) it stalls: nothing outside the learned rows is unlearned. A finite pool stalls at a "
        "floor set by N (the theory's 1/t law is for infinitely many tasks), and multi-task learning keeps "
        "its extra directions: its relative energy outside span(B*) stays far above FO-ANIL's."
    )


UNLEARNING = Experiment(
    "unlearning",
    "Unlearning the extra directions",
    "‖B⊥ᵀB_t‖₂² → 0 like C/t with C = m_in/(2α²β(tr Σ* + σ²)) (§5.2); nothing is unlearned when "
    "m_in = ∞; multi-task learning does not unlearn.",
    unlearning_series,
    unlearning_data,
    draw_unlearning,
    unlearning_prose,
)
