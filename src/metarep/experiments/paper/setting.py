"""The paper's setting (MATH.md §7): its sizes, the overrides of its runs, and its predictions
(MATH.md §5) computed from the config of a run."""

from __future__ import annotations

from collections import Counter

import numpy as np

from ... import theory
from ...config import Config
from ...methods import registry
from ...tasks import task_cov_diag
from ..framework import FewshotScale, Scale, Series

FULL = Scale(
    d=50,
    tasks=5000,
    steps=3000,
    steps_inf=20000,
    eval_every=10,
    eval_every_inf=50,
    eval_tasks=2000,
    m_test=(5, 10, 20, 50, 100),
    widths=(2, 3, 5, 10, 25, 50, 100),
    relu_tasks=2000,
    relu_steps=1000,
    multitask_steps=50,
    pools=(500, 1000, 2000, 5000, 10000, 20000, 50000),
)
QUICK = Scale(
    d=20,
    tasks=1000,
    steps=300,
    steps_inf=3000,
    eval_every=10,
    eval_every_inf=25,
    eval_tasks=400,
    m_test=(5, 10, 20, 50),
    widths=(2, 3, 5, 10, 20, 40),
    relu_tasks=500,
    relu_steps=200,
    multitask_steps=40,
    fewshot=FewshotScale(
        sinusoid_steps=200,
        digits_steps=50,
        points=8,
        test_tasks=200,
        channels=16,
        meta_batch=8,
        inner_steps=2,
        max_seeds=2,
    ),
    pools=(500, 1000),
)
QUICK_NOTE = f" (quick: a smaller version of the paper's d = {FULL.d}, N = {FULL.tasks})"
HUGE_M_IN = 10**9  # stands for m_in = ∞ (b ≈ 0)


# --------------------------------------------------------------------------------------------
# runs


def finite(scale: Scale, *extra: str) -> tuple[str, ...]:
    """The paper's setting at this scale (a finite pool, width = d; the rest are config defaults)."""
    return (
        f"task.d={scale.d}",
        f"model.width={scale.d}",
        f"data.tasks={scale.tasks}",
        f"run.steps={scale.steps}",
        f"run.eval_every={scale.eval_every}",
        *extra,
    )


def infinite(scale: Scale, *extra: str, steps: int | None = None) -> tuple[str, ...]:
    """The same with infinitely many tasks (the exact expected update, float64)."""
    return (
        f"task.d={scale.d}",
        f"model.width={scale.d}",
        "data.tasks=inf",
        'run.dtype="float64"',
        f"run.steps={steps or scale.steps_inf}",
        f"run.eval_every={scale.eval_every_inf}",
        *extra,
    )


def method_overrides(spec: registry.MethodSpec, scale: Scale) -> tuple[str, ...]:
    """Overrides that run method ``spec`` in an experiment (its name and its own overrides)."""
    return (f"method.name={spec.name}", *spec.series_overrides(scale))


def method_series(scale: Scale) -> list[Series]:
    """Every registered method of the linear harness on the paper's finite pool, labelled by name."""
    return [
        Series(spec.name, finite(scale, *method_overrides(spec, scale)), evaluate=True)
        for spec in registry.specs(harness=True)
        if spec.runs_in("finite")
    ]


def method_of(cfg: Config) -> registry.MethodSpec:
    """The registered spec of the method a config runs."""
    return registry.get(cfg.method.name)


# --------------------------------------------------------------------------------------------
# predictions (MATH.md §5) from a run's config


def sigma_star(cfg: Config):
    """Diagonal of Σ* (float64 tensor)."""
    return task_cov_diag(cfg.task.k, cfg.task.task_cov, cfg.cov_trace)


def predicted_eigs(cfg: Config, alpha: float | None = None) -> np.ndarray:
    """Limit of the eigenvalues of ``B*ᵀBBᵀB*``, ascending (§5.1, §5.5); ``alpha`` replaces the
    config's α (``alpha=1``: the α-invariant ``γ_j``, §5.4)."""
    a = cfg.method.alpha if alpha is None else alpha
    return np.array(theory.predicted_signal_eigs(sigma_star(cfg), cfg.task.sigma2, a, cfg.data.m_in, cfg.width))


def predicted_rate(cfg: Config) -> float | None:
    """``lim t·‖B⊥ᵀB_t‖₂²`` (§5.2); None for width k' <= k (:func:`metarep.theory.unlearning_constant`)."""
    return theory.unlearning_constant(cfg)["predicted_perp_rate"]


def limit_risk(cfg: Config, m: int) -> float:
    """One-step excess risk at the limit on a new task with ``m`` samples (§5.6)."""
    return theory.limit_one_step_risk(sigma_star(cfg), cfg.task.sigma2, cfg.data.m_in, m, cfg.width)


# --------------------------------------------------------------------------------------------
# the report's description of the setting


def _num(x: float) -> str:
    return f"{x:g}"


def _sigma_text(cfg: Config) -> str:
    shape = f"diag(1..{cfg.task.k})" if cfg.task.task_cov == "linear" else f"I_{cfg.task.k}"
    return f"Σ* ∝ {shape} with trace {_num(cfg.cov_trace)}"


def _common(values: list[str]) -> str:
    """The most common value, and the others in brackets."""
    counts = Counter(values)
    common = counts.most_common(1)[0][0]
    others = [v for v in counts if v != common]
    return common + (f" (also {', '.join(others)})" if others else "")


def describe_setting(configs: list[Config]) -> str:
    """``Setting: d = …, k = …``: each value as most runs have it, with the other values of some runs."""
    if not configs:
        return ""
    pools = [_num(c.data.tasks) for c in configs if not c.infinite]
    parts = [
        f"d = {_common([_num(c.task.d) for c in configs])}",
        f"k = {_common([_num(c.task.k) for c in configs])}",
        f"σ² = {_common([_num(c.task.sigma2) for c in configs])}",
        _common([_sigma_text(c) for c in configs]),
        f"m_in = {_common([_num(c.data.m_in) for c in configs])}",
        f"m_out = {_common([_num(c.data.m_out) for c in configs])}",
        f"α = {_common([_num(c.method.alpha) for c in configs])}",
        f"β = {_common([_num(c.method.beta) for c in configs])}",
        f"width k' = {_common([_num(c.width) for c in configs])}",
    ]
    tasks = f"finite pool N = {_common(pools)}" if pools else ""
    if any(c.infinite for c in configs):
        tasks += " or infinitely many tasks" if pools else "infinitely many tasks"
    return "Setting: " + ", ".join([*parts, tasks])
