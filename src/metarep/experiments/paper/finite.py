"""Beyond the paper: the floor of FO-ANIL's unlearning with a finite pool of N tasks (MATH.md §8)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ...config import Config, load_config
from ...theory_finite import finite_floor
from ..framework import Experiment, Results, Scale, Series, fmt, md_table, tidy

# three settings: the paper's, and two that change d, m_in and σ² (d as a fraction of the scale's d)
SETTINGS = {
    "paper": (1.0, ()),
    "smaller d, m_in=10, σ²=1": (0.6, ("data.m_in=10", "task.sigma2=1")),
    "m_in=40, σ²=9": (0.7, ("data.m_in=40", "task.sigma2=9")),
}
TARGET_N = 2000  # the prediction is claimed from this N on (MATH.md §8.5)
EVALS = 100  # history rows per run
METRICS = (("perp_norm2", "predicted_perp_floor", "‖B⊥ᵀB‖₂²"), ("perp_fro2", "predicted_perp_fro_floor", "‖B⊥ᵀB‖_F²"))


def _base(scale: Scale, frac: float, extra: tuple[str, ...], n: int) -> tuple[str, ...]:
    d = max(12, round(frac * scale.d))
    return (f"task.d={d}", f"model.width={d}", f"data.tasks={n}", *extra)


def run_length(overrides: tuple[str, ...]) -> tuple[int, int]:
    """``(steps, eval_every)``: :data:`~metarep.theory_finite.RELAXATIONS` relaxation times ``1/(αβ r)``
    of the floor (MATH.md §8.4), at least 1000 steps, in :data:`EVALS` evaluations."""
    f = finite_floor(load_config(None, list(overrides)))
    every = max(10, math.ceil(max(1000.0, f["floor_steps"]) / EVALS / 10) * 10)
    return every * EVALS, every


def finite_series(scale: Scale) -> list[Series]:
    out = []
    for name, (frac, extra) in SETTINGS.items():
        for n in scale.pools:
            base = _base(scale, frac, extra, n)
            steps, every = run_length(base)
            out.append(Series(f"{name} N={n}", (*base, f"run.steps={steps}", f"run.eval_every={every}")))
    return out


@dataclass
class FloorPoint:
    """One setting at one N: the measured floor (mean, sd over seeds), the last value, the prediction."""

    setting: str
    config: Config
    mean: dict[str, float]  # the floor: the a of a + C/t² fitted to the run's last half, mean over seeds
    std: dict[str, float]
    last: dict[str, float]  # the value at the last step, mean over seeds
    predicted: dict[str, float]

    def error(self, key: str) -> float:
        return self.predicted[key] / self.mean[key] - 1

    def tail(self, key: str) -> float:
        """How far the last value still is above the floor, relative to it."""
        return self.last[key] / self.mean[key] - 1


@dataclass
class FloorData:
    points: list[FloorPoint]
    rows: list[dict] = field(default_factory=list)


def extrapolated_floor(history: list[dict], key: str) -> float:
    """The floor of history column ``key``: least squares ``a + C/t²`` on the rows of the last half of
    the run, returns ``a`` (MATH.md §8.4: each direction whose eigenvalue is near 0 approaches its floor
    like 1/t, but there are ever fewer of them, so the sum approaches it like 1/t²)."""
    end = history[-1]["step"]
    rows = [r for r in history if r["step"] >= end / 2 and r["step"] > 0]
    t = np.array([r["step"] for r in rows], dtype=float)
    A = np.stack([np.ones_like(t), 1 / t**2], 1)
    return float(np.linalg.lstsq(A, np.array([r[key] for r in rows], dtype=float), rcond=None)[0][0])


def floor_data(res: Results) -> FloorData:
    data = FloorData([])
    for label, recs in res.items():
        cfg, setting = recs[0].config, label.rsplit(" N=", 1)[0]
        pred = finite_floor(cfg)
        mean, std, last, predicted = {}, {}, {}, {}
        for key, pkey, _ in METRICS:
            v = np.array([extrapolated_floor(r.history, key) for r in recs])
            mean[key], std[key] = float(v.mean()), float(v.std())
            last[key] = float(np.mean([r.summary[key] for r in recs]))
            predicted[key] = pred[pkey]
            n = cfg.data.tasks
            data.rows += tidy("finite", setting, "tasks", n, key, v.mean(), v.std(), len(recs), pred[pkey])
        data.points.append(FloorPoint(setting, cfg, mean, std, last, predicted))
    return data


def draw_floor(fig, data: FloorData) -> None:
    """Both floors against N on log–log axes (measured mean ± sd over seeds, predicted dashed), and the
    prediction's error against N with the ±15% band the prediction is claimed within from N = 2000."""
    fig.set_size_inches(17, 5)
    axes = fig.subplots(1, 3)
    settings = list(dict.fromkeys(p.setting for p in data.points))
    pools = sorted({p.config.data.tasks for p in data.points})
    err_ax = axes[2]
    for ax, (key, _, title), marker in zip(axes, METRICS, ("o", "s")):
        for i, name in enumerate(settings):
            pts = sorted((p for p in data.points if p.setting == name), key=lambda p: p.config.data.tasks)
            n = [p.config.data.tasks for p in pts]
            mean, std = [p.mean[key] for p in pts], [p.std[key] for p in pts]
            label = f"{name} (d={pts[0].config.task.d})"
            ax.errorbar(n, mean, yerr=std, color=f"C{i}", marker="o", ls="none", capsize=3, label=label)
            ax.plot(n, [p.predicted[key] for p in pts], color=f"C{i}", ls="--", lw=1.2)
            err_ax.plot(n, [100 * p.error(key) for p in pts], color=f"C{i}", marker=marker, ls="-", lw=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"floor of {title} (points: measured; dashed: predicted)", fontsize=10)
        ax.legend(fontsize=7)
    err_ax.axhspan(-15, 15, color="0.9", zorder=0)
    err_ax.axvline(TARGET_N, color="0.5", ls=":", lw=1)
    err_ax.axhline(0, color="k", lw=0.8)
    err_ax.set_ylabel("predicted / measured − 1 (%)")
    lo, hi = err_ax.get_ylim()
    err_ax.set_ylim(min(lo, -20), max(hi, 20))
    err_ax.set_title(f"error of the prediction (grey: ±15%; dotted: N = {TARGET_N})", fontsize=10)
    handles = [err_ax.plot([], [], color=f"C{i}", lw=2)[0] for i in range(len(settings))]
    handles += [err_ax.plot([], [], color="k", marker=m, ls="none")[0] for m in ("o", "s")]
    labels = settings + [f"{t}" for _, _, t in METRICS]
    err_ax.legend(handles, labels, fontsize=7)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(pools, [f"{n:g}" for n in pools], minor=False)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("tasks in the pool N")


def floor_prose(data: FloorData) -> str:
    rows = []
    for p in data.points:
        row = [p.setting, str(p.config.data.tasks), str(p.config.run.steps)]
        for k, _, _ in METRICS:
            row += [
                f"{fmt(p.mean[k])} ± {fmt(p.std[k], 2)}",
                fmt(p.predicted[k]),
                f"{p.error(k):+.1%}",
                f"{p.tail(k):+.1%}",
            ]
        rows.append(row)
    head = ["setting", "N", "steps"]
    for _, _, t in METRICS:
        head += [f"floor of {t}", "predicted", "error", "last step above floor"]
    md = md_table(head, rows)
    notes = []
    for k, _, t in METRICS:
        for points, where in (
            ([p for p in data.points if p.config.data.tasks >= TARGET_N], f"N ≥ {TARGET_N}"),
            ([p for p in data.points if p.config.data.tasks < TARGET_N], f"N < {TARGET_N}"),
        ):
            if points:
                worst = max(points, key=lambda p: abs(p.error(k)))
                notes.append(
                    f"{where}: the predicted floor of {t} is within {abs(worst.error(k)):.1%} of the measured one "
                    f"(worst: {worst.setting}, N = {worst.config.data.tasks}, {worst.error(k):+.1%})."
                )
    return (
        md
        + "\n\n"
        + " ".join(notes)
        + "\n\nA run lasts 12 relaxation times 1/(αβr) of the floor, r the spectral radius of the pool's noise "
        "(MATH.md §8.4). The measured floor is the a of a + C/t² fitted to the last half of each run (the sum "
        'over the directions whose eigenvalue is near 0 approaches it like 1/t²), mean ± sd over seeds; "last '
        'step above floor" is how far the value at the last step still is above it. Error = predicted / '
        "measured − 1. FO-ANIL only: in ANIL and MAML the second-order terms make the pool's noise symmetric, "
        "and in FO-MAML the head's drift enters the inner step, so the same mechanism does not carry over "
        "as it stands (MATH.md §8.6)."
    )


FINITE = Experiment(
    "finite",
    "The floor of unlearning with N tasks",
    "With a fixed pool of N tasks, ‖B⊥ᵀB‖₂² and ‖B⊥ᵀB‖_F² stop at a floor ∝ 1/√N that MATH.md §8 predicts "
    "without training: the outward directions of the pool's Ginibre-like noise, balanced by the cubic unlearning.",
    finite_series,
    floor_data,
    draw_floor,
    floor_prose,
)
