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

import torch

from .. import diagnostics as dg
from ..runtime import torch_threads
from ._util import tune_inner_lr

# ``sizes`` below: any dataclass with the fields of metarep.experiments.framework.FewshotScale
SHOTS = 10  # the sinusoid's K
SIN_K = 2  # dimension of the sinusoid family's span
GRID = 200  # inputs of the sinusoid probe


METHODS = ("pretrain", "fo_anil", "anil", "fo_maml", "maml", "reptile", "metasgd")  # the baseline first


def sinusoid_reference(x: torch.Tensor) -> torch.Tensor:
    """``(n,) -> (n, 2)``: ``sin x, cos x``, the functions every sinusoid task is a combination of."""
    return torch.stack([torch.sin(x), torch.cos(x)], 1)


def measure_sinusoid(sizes: Any, seed: int, names: tuple[str, ...]) -> dict[str, Any]:
    """Train each method on sinusoid tasks (K = 10), tracking the diagnostics; score the 1-step test MSE."""
    from .sinusoid import BASELINE_LR_GRID, SinusoidConfig, SinusoidTasks, _generator, _seeds, make_learner

    cfg = SinusoidConfig(shots=(SHOTS,), methods=names[1:], iterations=sizes.sinusoid_steps, seed=seed)
    seeds, tasks = _seeds(seed), SinusoidTasks()
    x = torch.linspace(*tasks.x_range, GRID)
    probe = dg.Probe(x[None, :, None], SIN_K, sinusoid_reference(x))
    test = tasks.sample(sizes.test_tasks, SHOTS, 100, _generator(seeds["test"] + SHOTS))[0]
    tracked, angles, truth, score = {}, {}, {}, {}
    for method in names:
        learner = make_learner(method, cfg, seeds["init"])
        stream = tasks.batches(cfg.meta_batch, SHOTS, SHOTS, _generator(seeds["train"] + SHOTS))
        every = max(1, sizes.sinusoid_steps // sizes.points)
        tracked[method] = dg.fit_tracked(learner, stream, sizes.sinusoid_steps, every, probe)
        phi = dg.features_of(learner, probe.X)
        angles[method] = phi
        truth[method] = float((dg.principal_angles(phi, probe.reference, SIN_K).sin() ** 2).mean())
        if method == "pretrain":  # its best test-time step size, chosen on meta-training tasks
            val = tasks.sample(200, SHOTS, 100, _generator(seeds["train"] + 10_000 + SHOTS))[0]
            learner.set_params(inner_lr=tune_inner_lr(learner, val, BASELINE_LR_GRID, (1,))[1])
        loss = learner.evaluate(test, steps=(1,))[1]["loss"]
        score[method] = float(loss.mean()) if bool(torch.isfinite(loss).all()) else math.inf
    return {"tracked": tracked, "angles": dg.angles_table(angles, SIN_K), "truth": truth, "score": score}


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
        diagnostics_every=max(1, sizes.digits_steps // sizes.points),
    )
    train, test = split_by_class(load_digits(), cfg.test_classes, cfg.rotations)
    res = run_fewshot(train, test, cfg, threads=None)
    score = {r["method"]: r["accuracy"] for r in res.rows}
    return {"tracked": res.diagnostics, "angles": res.angles, "truth": {}, "score": score}


def measure(sizes: Any, seed: int) -> dict[str, Any]:
    """Both benchmarks for one seed, on one thread: ``{"sizes", "seed", "sinusoid", "digits"}``, JSON-able."""
    names = METHODS
    with torch_threads(1):
        return {
            "sizes": asdict(sizes),
            "seed": seed,
            "methods": list(names),
            "sinusoid": measure_sinusoid(sizes, seed, names),
            "digits": measure_digits(sizes, seed, names),
        }
