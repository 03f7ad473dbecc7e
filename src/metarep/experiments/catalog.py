"""The paper's experiments as declared specs (MATH.md §5, §7).

Each :class:`Experiment` names its runs (a label and config overrides per series, repeated over
seeds) and turns their results into a figure, a tidy table and a report section. The specs are
plain data: copy one, change its overrides, and run it with :func:`metarep.experiments.reproduce`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import theory
from ..tasks import task_cov_diag


@dataclass(frozen=True)
class Scale:
    """Sizes of one reproduction: the full paper setting, or ``--quick``."""

    d: int
    tasks: int
    steps: int  # finite-pool steps
    steps_inf: int  # infinite-regime steps
    eval_every: int
    eval_every_inf: int
    eval_tasks: int
    m_test: tuple[int, ...]
    widths: tuple[int, ...]
    relu_tasks: int
    relu_steps: int
    multitask_steps: int


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
)

METHOD_ORDER = ("fo_anil", "anil", "fo_maml", "maml", "reptile", "multitask", "moments")


@dataclass(frozen=True)
class Series:
    """One curve of an experiment: a label and the config overrides of its runs."""

    label: str
    overrides: tuple[str, ...]
    evaluate: bool = False  # one-step excess risk on new tasks for m in the scale's m_test


@dataclass(frozen=True)
class Experiment:
    """A named experiment: its claim, its series at a scale, and how to present them."""

    name: str
    title: str
    claim: str
    series: Callable[[Scale], list[Series]]
    present: Callable[..., Presentation]


@dataclass
class Presentation:
    """What an experiment shows: a figure (drawn by ``draw(fig)``), tidy rows, a markdown body."""

    draw: Callable
    rows: list[dict] = field(default_factory=list)
    markdown: str = ""


# --------------------------------------------------------------------------------------------
# shared pieces


def paper(scale: Scale, *extra: str) -> tuple[str, ...]:
    """The paper's setting at this scale (width = d, Σ* ∝ diag(1..5), σ² = 4, m_in = 20)."""
    return (
        f"task.d={scale.d}",
        f"model.width={scale.d}",
        f"data.tasks={scale.tasks}",
        f"run.steps={scale.steps}",
        f"run.eval_every={scale.eval_every}",
        *extra,
    )


def infinite(scale: Scale, *extra: str, steps: int | None = None) -> tuple[str, ...]:
    return (
        f"task.d={scale.d}",
        f"model.width={scale.d}",
        "data.tasks=inf",
        'run.dtype="float64"',
        f"run.steps={steps or scale.steps_inf}",
        f"run.eval_every={scale.eval_every_inf}",
        *extra,
    )


def method_series(scale: Scale) -> list[Series]:
    out = []
    for m in METHOD_ORDER:
        extra = [f"method.name={m}"]
        if m == "reptile":
            extra.append("method.inner_steps=5")  # one step is joint training, which learns nothing here
        if m == "multitask":
            extra.append(f"run.steps={scale.multitask_steps}")
        out.append(Series(m, paper(scale, *extra), evaluate=True))
    return out


def sigma_diag(d_k: int = 5) -> np.ndarray:
    return task_cov_diag(d_k, "linear").numpy()


def predicted_eigs(alpha: float = 0.1, m_in: int = 20, width: int = 50) -> np.ndarray:
    return np.array(theory.predicted_signal_eigs(task_cov_diag(5, "linear"), 4.0, alpha, m_in, width))


def predicted_rate(m_in: int, alpha: float = 0.1, beta: float = 0.5) -> float:
    return theory.predicted_perp_rate(5.0, 4.0, alpha, beta, m_in)


def limit_risk(m: int, width: int, m_in: int = 20) -> float:
    return theory.limit_one_step_risk(task_cov_diag(5, "linear"), 4.0, m_in, m, width)


def fmt(x: float, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
