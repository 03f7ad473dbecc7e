"""The paper's seven experiments (MATH.md §5, §7), one beyond it, the finite-pool floor (``finite``,
MATH.md §8), and its claims measured on real few-shot networks (``fewshot``), declared on
:mod:`..framework`.

Each experiment names its runs and turns them into numbers, a figure and prose; every prediction it
shows is computed from the config of its runs (:mod:`.setting`), and the method lists come from
the method registry (:mod:`metarep.methods.registry`).
"""

from __future__ import annotations

from ..framework import Experiment, Study
from .fewshot import FEWSHOT
from .finite import FINITE
from .learning import LEARNING, UNLEARNING
from .methods import ADAPTATION, METHODS
from .relu import RELU
from .setting import FULL, QUICK, QUICK_NOTE, describe_setting
from .width import ALPHA, WIDTH

__all__ = ["EXPERIMENTS", "FULL", "PAPER", "QUICK", "QUICK_NOTE"]

EXPERIMENTS: dict[str, Experiment] = {
    e.name: e for e in (LEARNING, UNLEARNING, METHODS, ADAPTATION, WIDTH, ALPHA, RELU, FINITE, FEWSHOT)
}

PAPER = Study(
    title='metarep: reproduction of "First-order ANIL provably learns representations despite overparametrization"',
    experiments=EXPERIMENTS,
    setting=describe_setting,
    notes="Curves are means over seeds with ±1 sd bands; predictions (dashed) are MATH.md §5.",
)
