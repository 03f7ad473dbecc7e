"""FO-ANIL on two- and three-layer ReLU networks (the paper's appendix; no theory)."""

from __future__ import annotations

from dataclasses import dataclass, field

from matplotlib.ticker import NullLocator

from ...config import Config
from ...plots import closed_form_line, log_ticks
from ..framework import (
    Curve,
    Experiment,
    Results,
    Scale,
    Series,
    band,
    curve,
    fmt,
    fmt_pm,
    md_table,
    risk,
    tidy,
)
from .setting import method_of

KINDS = ("linear", "relu2", "relu3")
REFERENCES = (("oracle", "k"), ("scratch", "0.5"))  # closed forms, and their colours


@dataclass
class ReluRow:
    """One model kind: first-layer energy in span(B*) against steps, and one-step risk against m (MC)."""

    label: str
    span: Curve
    risk: Curve


@dataclass
class ReluData:
    config: Config  # of the first series
    models: list[ReluRow]
    references: dict[str, Curve]  # oracle and scratch (nan where infinite)
    rows: list[dict] = field(default_factory=list)

    @property
    def m_test(self) -> list[int]:
        return next(iter(self.references.values())).x


def relu_series(s: Scale) -> list[Series]:
    base = (
        f"task.d={s.d}",
        f"model.width={s.d}",
        f"data.tasks={s.relu_tasks}",
        f"run.steps={s.relu_steps}",
        f"run.eval_every={max(1, s.relu_steps // 50)}",
    )
    return [Series(kind, (*base, f"model.kind={kind}"), evaluate=True) for kind in KINDS]


def relu_data(res: Results) -> ReluData:
    any_recs = next(iter(res.values()))
    refs = {est: risk(any_recs, est, "closed_form") for est, _ in REFERENCES}
    data = ReluData(any_recs[0].config, [], refs)
    for label, recs in res.items():
        span, rk = curve(recs, "span_energy"), risk(recs, "learned", "mc_mean")
        data.rows += tidy("relu", label, "step", span.x, "span_energy", span.mean, span.std, len(recs))
        data.rows += tidy("relu", label, "m", rk.x, "excess_risk", rk.mean, rk.std, len(recs))
        data.models.append(ReluRow(label, span, rk))
    return data


def draw_relu(fig, data: ReluData) -> None:
    ax1, ax2 = fig.subplots(1, 2)
    for i, row in enumerate(data.models):
        band(ax1, row.span.x, row.span.mean, row.span.std, color=f"C{i}", label=row.label)
        ax2.errorbar(
            row.risk.x, row.risk.mean, yerr=row.risk.std, color=f"C{i}", marker="o", ms=4, capsize=2, label=row.label
        )
    for est, c in REFERENCES:
        ref = data.references[est]
        closed_form_line(ax2, ref.x, ref.mean, f"{est}, closed form", color=c, ls="--")
    ax1.set_title(r"first-layer energy in span(B*): $\|B_*^\top B\|_F^2/\|B\|_F^2$")
    ax1.set_xlabel("step")
    ax1.axhline(data.config.task.k / data.config.task.d, color="k", ls=":", lw=1, label="random (k/d)")
    ax1.legend(fontsize=7)
    ax2.set_xscale("log"), ax2.set_yscale("log")
    log_ticks(ax2)
    ax2.set_xticks(data.m_test, [str(m) for m in data.m_test])
    ax2.xaxis.set_minor_locator(NullLocator())
    ax2.set_xlabel("m (samples of the new task)")
    ax2.set_title("one head step on new tasks: excess risk (Monte-Carlo)")
    ax2.legend(fontsize=7)


def relu_prose(data: ReluData) -> str:
    table = [
        [r.label, f"{r.span.mean[0]:.3f} → {r.span.mean[-1]:.3f}"]
        + [fmt_pm(m, s) for m, s in zip(r.risk.mean, r.risk.std)]
        for r in data.models
    ]
    table += [[f"*{est}*", "–"] + [fmt(x) for x in ref.mean] for est, ref in data.references.items()]
    md = md_table(["model", "span energy (start → end)"] + [f"risk m={m}" for m in data.m_test], table)
    cfg = data.config
    return md + (
        f"\n\n{method_of(cfg).label} on a pool of {cfg.data.tasks} tasks with two- and three-layer ReLU networks "
        "(wᵀrelu(Bᵀx), wᵀrelu(Cᵀrelu(Bᵀx))); the head adapts. No theory covers these; the measurement is "
        "whether the first layer concentrates its energy in span(B*) (a random B has k/d of it) and what one "
        "head step then buys on new tasks."
    )


RELU = Experiment(
    "relu",
    "ReLU networks",
    "FO-ANIL on two- and three-layer ReLU networks concentrates the first layer on span(B*).",
    relu_series,
    relu_data,
    draw_relu,
    relu_prose,
)
