"""Test-time adaptation on new tasks, next to the theory, the oracle and scratch (MATH.md §3, §5.6).

What a learned representation is worth is measured on tasks never seen in training: start the head
at the learned ``w`` (``B`` fixed), take ``steps`` gradient steps of size α on
``‖X B w − y‖² / (2m)`` with the ``m`` samples of the new task, and measure the excess risk
``‖θ̂ − θ‖²`` of ``θ̂ = B w_adapted``. On the same new tasks, the estimators compared are
(one class each in :mod:`metarep.estimators`, which also holds their formulas):

| key | estimator | closed form |
|---|---|---|
| ``learned`` | the run's ``(B, w)``, ``steps`` head steps | :func:`~metarep.theory.one_step_risk` (1 step) |
| ``limit`` | the FO-ANIL limit ``B_∞ = B* diag(√(γ/α))`` of the run's config, head at 0 | same, at ``M_∞`` |
| ``oracle`` | least squares on ``span(B*)`` (min-norm when ``m < k``) | :func:`~metarep.theory.oracle_risk` |
| ``scratch`` | least squares in ``R^d`` (min-norm when ``m < d``) | :func:`~metarep.theory.scratch_risk` |
| ``ls_span_B`` | least squares on the column space of ``B`` (rank ``r``) | :func:`~metarep.theory.subspace_ls_risk` |
| ``ls_top_k`` | least squares on the top-``k`` left singular directions of ``B`` | same |

Each gets a Monte-Carlo mean of ``‖θ̂ − θ‖²`` over ``n_tasks`` new tasks with its standard error,
and a closed form where one exists (``nan``, written ``null``, where the expectation is infinite,
e.g. least squares with ``m`` within one of the dimension, or for ``steps > 1``). Everything is
computed in float64, batched over tasks (no Python loop over tasks), in chunks of bounded memory.
For every ``m`` the tasks are the same; the first ``m`` samples of each task are used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from . import limits, theory
from .estimators import (
    Estimator,
    Forward,
    NewTasks,
    default_estimators,
    limit_representation,
    min_norm_lstsq,
    model_excess_risk,
    orthonormal_span,
)
from .eval_outputs import LABELS, format_table, label, rows, save_evaluation, to_json
from .progress import progress_bar
from .stats import mean_se
from .tasks import LinearRepTasks

__all__ = [
    "ESTIMATORS",
    "LABELS",
    "default_estimators",
    "eval_seed",
    "evaluate",
    "evaluate_run",
    "format_table",
    "label",
    "limit_representation",
    "min_norm_lstsq",
    "model_excess_risk",
    "orthonormal_span",
    "rows",
    "save_evaluation",
    "to_json",
]

ESTIMATORS = ("learned", "limit", "oracle", "scratch", "ls_span_B", "ls_top_k")


# --------------------------------------------------------------------------------------------
# evaluation


def _check_args(m_test: Sequence[int], steps: int, n_tasks: int) -> list[int]:
    """``m_test`` as a list of ints; ``ValueError`` naming the first bad argument."""
    m_test = [int(m) for m in m_test]
    if not m_test or min(m_test) < 1:
        raise ValueError("m_test: sample sizes must be integers >= 1")
    if steps < 1:
        raise ValueError("steps: must be >= 1")
    if n_tasks < 2:
        raise ValueError("n_tasks: must be >= 2 (a standard error needs two tasks)")
    return m_test


def _summary(est: Estimator, errs: Sequence[torch.Tensor], m_test: Sequence[int]) -> dict[str, list[float]]:
    """``{"closed_form", "mc_mean", "mc_se"}`` of one estimator from its per-task risks, aligned with ``m_test``."""
    stats = [mean_se(e) for e in errs]
    return {
        "closed_form": [est.closed_form(m) for m in m_test],
        "mc_mean": [s[0] for s in stats],
        "mc_se": [s[1] for s in stats],
    }


def monte_carlo(
    estimators: Sequence[Estimator],
    tasks: LinearRepTasks,
    m_test: Sequence[int],
    *,
    n_tasks: int,
    chunk: int,
    generator: torch.Generator,
    test_points: int = 0,
    progress: bool | None = None,
) -> dict[str, list[torch.Tensor]]:
    """Per-task excess risk of every estimator on the same ``n_tasks`` new tasks: ``{name: [(n_tasks,) per m]}``.

    Chunk by chunk of ``chunk`` tasks, in float64: ``θ``, then ``m_max`` samples per task from
    ``generator``; each estimator sees the first ``m`` of them. ``test_points > 0``: also that many
    fresh test inputs per task (for estimators with ``test_inputs``), from their own stream
    seeded first by ``generator``, so the tasks do not depend on whether they are drawn.
    """
    f64, m_max = torch.float64, max(m_test)
    sampler = LinearRepTasks(tasks.B_star, tasks.sigma_diag, tasks.sigma2, f64)
    test_gen = torch.Generator(device=generator.device)
    test_gen.manual_seed(int(torch.randint(2**62, (1,), generator=generator, device=generator.device)))
    errs: dict[str, list[list[torch.Tensor]]] = {e.name: [[] for _ in m_test] for e in estimators}
    bar = progress_bar(n_tasks, enabled=progress, desc="evaluate", unit="task")
    done = 0
    while done < n_tasks:
        c = min(chunk, n_tasks - done)
        theta = sampler.sample_thetas(c, generator)
        X, y = sampler.sample_data(theta, m_max, generator)
        X_test = None
        if test_points > 0:
            X_test = torch.randn(c, test_points, tasks.d, generator=test_gen, dtype=f64, device=theta.device)
        batch = NewTasks(theta, X, y, X_test)
        for i, m in enumerate(m_test):
            for est in estimators:
                errs[est.name][i].append(est.excess_risk(batch.first(m)))
        done += c
        bar.update(c)
    bar.close()
    return {name: [torch.cat(e) for e in per_m] for name, per_m in errs.items()}


def evaluate(
    B: torch.Tensor,
    w: torch.Tensor | None,
    tasks: LinearRepTasks,
    *,
    alpha: float,
    m_test: Sequence[int],
    steps: int = 1,
    n_tasks: int = 2000,
    generator: torch.Generator,
    B_limit: torch.Tensor | None = None,
    top_k: int | None = None,
    rank_rtol: float | None = None,
    forward: Forward | None = None,
    params: dict[str, torch.Tensor] | None = None,
    test_points: int = 100,
    progress: bool | None = None,
    chunk: int | None = None,
) -> dict[str, object]:
    """Excess risk of every estimator of the module table on ``n_tasks`` new tasks, for each ``m``.

    **Arguments:**

    - ``B (d, k')``, ``w (k',)``: the learned initialisation (``w = None``: head at 0).
    - ``tasks``: the ground truth the new tasks are drawn from.
    - ``alpha``: head step size; ``steps``: number of head steps (≥ 1).
    - ``m_test``: sample sizes ``m ≥ 1``; ``n_tasks ≥ 2`` new tasks, shared by every ``m``.
    - ``B_limit (d, k)``: the theory's limit for the ``limit`` estimator (omitted when ``None``).
    - ``top_k``: directions kept by ``ls_top_k`` (default ``tasks.k``).
    - ``rank_rtol``: relative tolerance of the numerical rank of ``B`` (see :func:`orthonormal_span`).
    - ``forward``, ``params``: a model other than ``xᵀBw`` (e.g. a ReLU net whose first layer is
      ``B`` and head ``params["w"]``): ``learned`` is then estimated by :func:`model_excess_risk`
      on ``test_points`` fresh inputs per task, without a closed form. ``None``: the linear model,
      whose risk ``‖Bw − θ‖²`` is exact per task.
    - ``chunk``: tasks per chunk (default: about 2²² numbers of inputs per chunk).

    Returns ``{"m_test", "n_tasks", "steps", "alpha", "rank_B", "top_k", "estimators"}`` where
    ``estimators[name] = {"closed_form": [...], "mc_mean": [...], "mc_se": [...]}`` (lists aligned
    with ``m_test``, ``nan`` where there is no closed form).
    """
    m_test = _check_args(m_test, steps, n_tasks)
    U = orthonormal_span(B, rank_rtol)  # from B in its own dtype (numerical rank)
    B = B.detach().to(torch.float64)
    U = U.to(B.device)
    w = B.new_zeros(B.shape[1]) if w is None else w.detach().to(B)
    k = tasks.k if top_k is None else int(top_k)
    estimators = default_estimators(
        B, w, tasks, alpha=alpha, steps=steps, U=U, top_k=k, B_limit=B_limit, forward=forward, params=params
    )
    t = test_points if any(e.test_inputs for e in estimators) else 0
    chunk = chunk or max(1, limits.EVAL_CHUNK_NUMBERS // ((max(m_test) + t) * tasks.d))
    errs = monte_carlo(
        estimators, tasks, m_test, n_tasks=n_tasks, chunk=chunk, generator=generator, test_points=t, progress=progress
    )
    return {
        "m_test": m_test,
        "n_tasks": n_tasks,
        "steps": steps,
        "alpha": alpha,
        "rank_B": int(U.shape[1]),
        "top_k": int(U[:, :k].shape[1]),
        "estimators": {e.name: _summary(e, errs[e.name], m_test) for e in estimators},
    }


# --------------------------------------------------------------------------------------------
# runs and outputs


def eval_seed(run_seed: int, seed: int) -> int:
    """Seed of the new tasks, independent of the run's own streams (truth, init, data)."""
    return int(np.random.SeedSequence([0x65_76_61_6C, run_seed, seed]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _run_model(run, B: torch.Tensor) -> tuple[str, Forward | None, dict[str, torch.Tensor] | None]:
    """``(kind, forward, parameters other than B and w)`` of a run's model; ``forward = None`` for the
    linear one. :class:`~metarep.config.ConfigError` if the run folder lacks a parameter of the model."""
    kind = getattr(run.config.model, "kind", "linear")
    if kind == "linear":
        return kind, None, None
    from . import models
    from .config import ConfigError

    forward = models.FORWARDS[kind]
    extra = {k: v for k, v in run.params._asdict().items() if k not in ("B", "w")}
    try:  # the run folder must hold every parameter of the model
        forward({"B": B, "w": B.new_zeros(B.shape[1]), **extra}, B.new_zeros(1, B.shape[0]))
    except (KeyError, RuntimeError) as e:
        raise ConfigError(f"model.kind: the run's parameters do not fit a {kind!r} model ({e})") from None
    return kind, forward, extra


def _head_step_warnings(alpha: float, B: torch.Tensor, m: int, steps: int) -> list[str]:
    """A warning when ``steps > 1`` head steps of size ``alpha`` on ``m`` samples may diverge."""
    if steps <= 1:
        return []
    v = theory.inner_step_value(alpha, B, m)
    if v < 2:
        return []
    return [f"alpha*|B|^2*(1+sqrt(r/m))^2 = {v:.3g} >= 2 at m = {m}: {steps} head steps may be unstable; lower --alpha"]


def _require_finite(res: dict, alpha: float) -> None:
    """Raise :class:`~metarep.limits.InputError` when the adapted estimator's risks overflowed."""
    means = res["estimators"]["learned"]["mc_mean"]
    bad = [m for m, r in zip(res["m_test"], means, strict=True) if not math.isfinite(r)]
    if bad:
        where = ", ".join(map(str, bad))
        raise limits.InputError(f"--alpha: head steps of {alpha:g} give non-finite risks (overflow) at m = {where}")


def check_evaluation(cfg, m_test: Sequence[int], n_tasks: int, steps: int = 1, allow_long: bool = False) -> None:
    """:func:`metarep.limits.check_evaluate` of an evaluation of a run of ``cfg`` (a model other than the
    linear one also draws 100 test points per task): :class:`~metarep.limits.LimitError` when it would not
    fit in memory or, unless ``allow_long``, take too long."""
    linear = getattr(cfg.model, "kind", "linear") == "linear"
    limits.check_evaluate(
        cfg.task.d,
        _check_args(m_test, steps, n_tasks),
        n_tasks,
        test_points=0 if linear else 100,
        steps=steps,
        width=cfg.width,
        allow_long=allow_long,
    )


def evaluate_run(
    run,
    *,
    m_test: Sequence[int] = theory.DEFAULT_M_TEST,
    steps: int = 1,
    n_tasks: int = 2000,
    alpha: float | None = None,
    seed: int = 0,
    progress: bool | None = None,
    allow_long: bool = False,
) -> dict[str, object]:
    """:func:`evaluate` on a finished run (a :class:`~metarep.outputs.LoadedRun`), with provenance.

    The head step is the run's α unless ``alpha`` is given. A run with one head per task
    (multitask) is adapted from a zero head. The ``limit`` estimator is the FO-ANIL limit of the
    run's config (its α, ``m_in`` and width). Refused first by :func:`check_evaluation` (memory; time
    unless ``allow_long``).
    """
    cfg, tasks = run.config, run.tasks
    check_evaluation(cfg, m_test, n_tasks, steps, allow_long)
    B, w = run.params[0], run.params[1]
    a = cfg.method.alpha if alpha is None else float(alpha)
    head = "run"
    if w is None or w.dim() != 1 or w.shape[0] != B.shape[1]:
        w, head = None, "zero (the run has no single head)"
    kind, forward, extra = _run_model(run, B)
    B_lim = limit_representation(
        tasks.B_star, tasks.sigma_diag, tasks.sigma2, cfg.method.alpha, cfg.data.m_in, cfg.width
    )
    g = torch.Generator().manual_seed(eval_seed(cfg.run.seed, seed))
    res = evaluate(
        B,
        w,
        tasks,
        alpha=a,
        m_test=m_test,
        steps=steps,
        n_tasks=n_tasks,
        generator=g,
        B_limit=B_lim,
        forward=forward,
        params=extra,
        progress=progress,
    )
    _require_finite(res, a)
    notes = _head_step_warnings(a, B, min(res["m_test"]), steps)
    return {
        "method": cfg.method.name,
        "model": kind,
        "d": cfg.task.d,
        "k": cfg.task.k,
        "width": cfg.width,
        "sigma2": cfg.task.sigma2,
        "m_in": cfg.data.m_in,
        "run_alpha": cfg.method.alpha,
        "head": head,
        "seed": seed,
        **res,
        "warnings": notes,
    }
