"""The linear theory's representation claims measured on real few-shot networks, for one seed.

Two benchmarks, every method that :class:`~metarep.learner.MetaLearner` runs plus the ``pretrain``
baseline, all from the same initialisation, with :mod:`metarep.diagnostics` tracked over training:

- **sinusoid** (MAML's network and protocol, K = 10, :mod:`.sinusoid`): the task family
  ``A sin(x + φ) = (A cos φ) sin x + (A sin φ) cos x`` spans exactly two functions, so the true
  representation is known: the features' energy outside ``span{sin x, cos x}`` (centred, on a grid of
  200 inputs) is the analogue of ``‖B⊥ᵀB‖²_F / ‖B‖²_F``, and the principal angles between the top-2
  feature subspace and that span that of the angle to ``B*``.
- **digits** (5-way 1-shot on held-out digits, :mod:`.digits`): no known truth; effective rank,
  energy outside the top-5 subspace and the angles between the methods' feature subspaces.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from .. import diagnostics as dg
from ..runtime import torch_threads

# ``sizes`` below: any dataclass with the fields of metarep.experiments.framework.FewshotScale
SHOTS = 10  # the sinusoid's K

SINUSOID_METHODS = ("pretrain", "fo_anil", "anil", "fo_maml", "maml", "reptile", "metasgd")  # the baseline first
DIGIT_METHODS = SINUSOID_METHODS + ("protonet",)  # prototypes classify; they do not regress


def measure_sinusoid(sizes: Any, seed: int, names: tuple[str, ...]) -> dict[str, Any]:
    """Train each method on sinusoid tasks (K = 10), tracking the diagnostics (:func:`.sinusoid.run_sinusoid`
    with ``diagnostics_every``); score the 1-step test MSE (infinite where a test task diverged)."""
    from .sinusoid import SPAN, SinusoidConfig, run_sinusoid

    cfg = SinusoidConfig(
        shots=(SHOTS,),
        methods=names[1:],
        iterations=sizes.sinusoid_steps,
        eval_steps=(1,),
        test_tasks=sizes.test_tasks,
        seed=seed,
        diagnostics_every=dg.measure_every(sizes.sinusoid_steps, sizes.points),
    )
    res = run_sinusoid(cfg, plot_tasks=0, threads=None)
    angles = [a for a in res.angles[SHOTS] if SPAN not in (a["a"], a["b"])]
    truth = {a["a"]: a["mean_sin2"] for a in res.angles[SHOTS] if a["b"] == SPAN}
    score = {r["method"]: math.inf if r["mse"] is None else r["mse"] for r in res.rows}
    return {"tracked": res.diagnostics[SHOTS], "angles": angles, "truth": truth, "score": score}


def measure_digits(sizes: Any, seed: int, names: tuple[str, ...]) -> dict[str, Any]:
    """5-way 1-shot digits (:func:`.digits.run_fewshot` with diagnostics); accuracy after 5 inner steps."""
    from .digits import FewShotConfig, run_fewshot, split_by_class
    from .images import load_digits

    cfg = FewShotConfig(
        methods=names[1:],
        iterations=sizes.digits_steps,
        meta_batch=sizes.meta_batch,
        inner_steps=sizes.inner_steps,
        eval_steps=(5,),
        test_tasks=sizes.test_tasks,
        channels=sizes.channels,
        seed=seed,
        diagnostics_every=dg.measure_every(sizes.digits_steps, sizes.points),
    )
    train, test = split_by_class(load_digits(), cfg.test_classes, cfg.rotations)
    res = run_fewshot(train, test, cfg, threads=None)
    score = {r["method"]: r["accuracy"] for r in res.rows}
    return {"tracked": res.diagnostics, "angles": res.angles, "truth": {}, "score": score}


def measure(sizes: Any, seed: int) -> dict[str, Any]:
    """Both benchmarks for one seed, on one thread: ``{"sizes", "seed", "sinusoid", "digits"}``, JSON-able;
    each benchmark's ``methods`` lists what it measured (:data:`SINUSOID_METHODS`, :data:`DIGIT_METHODS`)."""
    with torch_threads(1):
        return {
            "sizes": asdict(sizes),
            "seed": seed,
            "sinusoid": {"methods": list(SINUSOID_METHODS), **measure_sinusoid(sizes, seed, SINUSOID_METHODS)},
            "digits": {"methods": list(DIGIT_METHODS), **measure_digits(sizes, seed, DIGIT_METHODS)},
        }
