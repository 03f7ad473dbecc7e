"""Small helpers shared by the benchmarks: seeds from one integer, a thread-count context, the methods
they accept and the validation of the options they share."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..inner import INNER_OPTIMIZERS

if TYPE_CHECKING:
    from ..learner import MetaLearner


def spawn_seeds(seed: int, names: tuple[str, ...]) -> dict[str, int]:
    """Independent seeds for ``names`` from one ``numpy.random.SeedSequence``."""
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: int(c.generate_state(1, dtype=np.uint64)[0] >> 1) for n, c in zip(names, children)}


def need(ok: bool, key: str, allowed: str, value) -> None:
    """Raise ``ValueError("KEY: must be ALLOWED, got VALUE")`` unless ``ok``."""
    if not ok:
        raise ValueError(f"{key}: must be {allowed}, got {value!r}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def meta_methods() -> tuple[str, ...]:
    """The meta-learning methods :class:`~metarep.learner.MetaLearner` runs, in the registry's order
    (``pretrain``, the benchmarks' baseline, is not one of them)."""
    from ..methods import registry

    return registry.names(learner=True, kind="meta")


def validate_meta_options(cfg) -> None:
    """The options every few-shot benchmark shares: methods, outer loop, inner loop, evaluation."""
    import math

    methods = meta_methods()
    need(
        len(cfg.methods) > 0 and all(m in methods for m in cfg.methods),
        "--methods",
        f"a comma-separated subset of {', '.join(methods)}",
        ",".join(cfg.methods),
    )
    need(_is_int(cfg.iterations) and cfg.iterations >= 1, "--iterations", "an integer >= 1", cfg.iterations)
    need(cfg.meta_batch >= 1, "--meta-batch", ">= 1", cfg.meta_batch)
    need(cfg.inner_lr > 0 and math.isfinite(cfg.inner_lr), "--inner-lr", "> 0", cfg.inner_lr)
    need(cfg.inner_steps >= 1, "--inner-steps", ">= 1", cfg.inner_steps)
    need(cfg.outer_lr > 0 and math.isfinite(cfg.outer_lr), "--outer-lr", "> 0", cfg.outer_lr)
    opt = getattr(cfg, "inner_optimizer", "sgd")
    need(opt in INNER_OPTIMIZERS, "--inner-optimizer", " or ".join(INNER_OPTIMIZERS), opt)
    need(
        len(cfg.eval_steps) > 0 and all(isinstance(s, int) and s >= 0 for s in cfg.eval_steps),
        "--steps",
        "integers >= 0",
        cfg.eval_steps,
    )
    need(cfg.test_tasks >= 2, "--test-tasks", ">= 2", cfg.test_tasks)


def tune_inner_lr(learner: MetaLearner, batch, grid: Sequence[float], steps: Sequence[int]) -> dict[int, float]:
    """For each number of inner steps, the step size from ``grid`` with the best mean query score on ``batch``
    (accuracy for ``cross_entropy``, else the loss; diverging step sizes lose). Restores ``learner.inner_lr``.

    Used to give a baseline its best test-time step size, chosen on meta-training tasks.
    """
    original, best = learner.inner_lr, {}
    try:
        for lr in grid:
            learner.set_params(inner_lr=float(lr))
            for s, res in learner.evaluate(batch, steps=[s for s in steps if s > 0] or [0]).items():
                score = float(res["accuracy"].mean()) if "accuracy" in res else -float(res["loss"].mean())
                score = score if math.isfinite(score) else -math.inf
                if s not in best or score > best[s][0]:
                    best[s] = (score, float(lr))
    finally:
        learner.inner_lr = original
    return {s: lr for s, (_, lr) in best.items()}
