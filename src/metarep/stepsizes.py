"""Step-size checks: α and β against the range where the dynamics are stable (MATH.md §4).

The one source of step-size advice: ``metarep theory`` lists the checks, ``metarep run`` warns with
:func:`step_size_warning` before a run that fails one, and a run that diverges says
:func:`step_size_advice` (the same bound) when a check predicted it. Heuristics, each with the
mechanism it guards against, calibrated on the paper's setting (see :func:`check_step_sizes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .constants import gammas, unlearning_b
from .tasks import task_cov_diag


@dataclass(frozen=True)
class StepSizeCheck:
    """One stability condition ``value < limit``; ``ok`` says whether it holds. ``knob`` is the
    config key whose change meets it and ``bound`` the value to go below (``at_least``: above)."""

    name: str
    value: float
    limit: float
    ok: bool
    what: str
    knob: str
    bound: float
    at_least: bool = False

    @property
    def fix(self) -> str:
        """``"lower method.beta below 6"`` or ``"use data.tasks of at least 40"``."""
        if self.at_least:
            return f"use {self.knob} of at least {self.bound:.3g}"
        return f"lower {self.knob} below {self.bound:.3g}"


def init_curvature(
    d: int, width: int, init_scale: float, lam_max: float, b: float, tasks: float = math.inf, m_out: int = 1
) -> float:
    """Typical ``‖B_0ᵀ G B_0‖₂`` for ``B_0`` entries ``N(0, init_scale²/d)``, ``G = (1 + 1/m_in)S + bI``:
    ``init_scale² · max(b (1 + √(k'/d))², λ_max (√(k'/d) + √(1/d))²)`` (the bulk edge of the
    Marchenko–Pastur law on the ``b`` part, and the largest spike from span(B*)), within about 20%
    of the sampled value for the paper's setting. With a pool of N = ``tasks``, ``G`` is the pool's
    ``mean_i Σ̂_out,i ⊗ c_i c_iᵀ`` (``c_i = X_inᵀy_in/m_in``), not its expectation: the ``b`` part of
    ``mean_i c_i c_iᵀ`` is a Wishart of N vectors in ``R^d``, edge ``b (1 + √(d/N))²`` (one task:
    ``‖c‖² ≈ d b``), times ``(1 + √(d/(N m_out)))²`` for the pooled ``Σ̂_out``; N = ∞ gives ``G``."""
    r = width / d
    b_pool = b * (1 + math.sqrt(d / tasks)) ** 2
    out = (1 + math.sqrt(d / (tasks * m_out))) ** 2
    return init_scale**2 * out * max(b_pool * (1 + math.sqrt(r)) ** 2, lam_max * (math.sqrt(r) + math.sqrt(1 / d)) ** 2)


LABELS = {
    "limit": "alpha*beta*s_max",
    "init": "alpha^2*beta*|B_0^T G B_0|",
    "inner": "alpha*|B|^2*|Sigma_in|_span(B)",
    "head": "alpha*|B_0|^2*|Sigma_in|",
    "step": "max beta*kappa*(1-alpha*kappa), kappa in spec(B_0^T Sigma B_0)",
    "pool": "alpha*|B_inf|^2*|Sigma_pool|",
}


def check_step_sizes(cfg) -> list[StepSizeCheck]:
    """Check α and β against the range where the infinite-task dynamics at ``w = 0`` are stable.

    With ``h = αβ``, ``s_max`` the largest eigenvalue of Σ*, ``λ_max = (1 + 1/m_in) s_max + b``:

    1. ``limit`` (local stability of the limit). Linearising ``B ← B − βα(MG − S)B`` (FO-ANIL,
       FO-MAML) around ``N = αΨΨᵀ = Σ*Λ*⁻¹`` gives, for each entry of a perturbation ``E`` of
       ``N``, ``E_ij ← (1 − h(s_i + s_j)) E_ij``; the limit is stable iff ``h · s_max < 1``.
       Beyond, the signal eigenvalues oscillate without converging, and further out (about
       ``h · s_max > 2`` on the paper's setting) they diverge. For ANIL and MAML (``MG + GM − 2S``) the factor is
       ``1 − h(λ_i + λ_j)(γ_i + γ_j)``, hence ``h · s_max < 1/2``. The directions outside span(B*)
       contract by ``1 − h s_j`` and ``1 − α²β b φ²``, which this condition already covers near
       the limit.
    2. ``init`` (the first steps). The cubic term ``α²β B BᵀG B`` must not overshoot at the
       initialisation: a direction of ``B`` is multiplied by about ``1 + h s − α²β e`` with ``e`` an
       eigenvalue of ``B_0ᵀ G B_0``, so ``α²β ‖B_0ᵀGB_0‖₂ < 2`` (twice that for ANIL and MAML),
       with the typical value of :func:`init_curvature` (a heuristic: a large ``model.init_scale``
       or a large α makes the first steps blow up). For a finite pool of N tasks ``G`` is the pool's
       curvature, which a small N makes large (one task: the outer loss's Hessian is that task's
       ``Σ̂`` terms, not their expectation).
    3. ``inner`` (with ``method.inner_steps > 1``). Gradient descent on the head with
       ``Σ̂_in`` is stable when ``α ‖B‖₂² ‖Σ̂_in restricted to span(B)‖ < 2``, with
       ``‖Σ̂‖ ≈ (1 + √(r/m_in))²`` for an ``r``-dimensional span; checked at the initialisation
       (``r = min(d, k')``) and at the limit (``α‖B_∞‖² = γ_max``, ``r = min(k, k')``), the larger
       value reported. A single inner step (the theory's case) cannot diverge at ``w = 0``.
    4. ``head`` (one inner step, finite and fresh tasks; listed when it fails). Only infinite tasks
       keep ``w = 0`` exactly: sampled tasks kick the head off 0 at every step, and the outer update
       maps it by the step's mean of ``I − α BᵀΣ̂_in B``, which expands it where ``α κ > 2``,
       ``κ = ‖B_0‖₂² ‖Σ̂_pool‖``, ``‖B_0‖₂² ≈ init_scale² (1 + √(k'/d))²`` (≈ k'/d when k' ≫ d),
       ``‖Σ̂_pool‖ ≈ (1 + √(d/(N m_in)))²``; beyond, w then B blow up within a few steps.

       ``step`` (listed when it fails): the outer step on the head must not overshoot,
       :func:`head_step_value` ``< 2``.
    5. ``pool`` (first-order methods on a fixed pool; listed when it fails): the head at the limit,
       :func:`pool_head_value` ``< 1``. No step size helps; more tasks do.

    Each check names the one change that meets it (``fix``); :func:`step_size_advice` folds them
    into the single line of advice that warnings and divergence messages give.

    Methods without these dynamics (reptile, multitask, moments) get no checks. In the finite and
    fresh regimes the expected update is the same, so checks 1–3 apply there as heuristics.
    """
    from .methods import registry

    me = cfg.method
    # a spec's dynamics class (MATH.md §4): "first_order", B ← B − βα(MG − S)B (FO-ANIL, and FO-MAML
    # at w = 0), or "second_order", B ← B − βα(MG + GM − 2S)B (ANIL, and MAML at w = 0)
    dynamics = registry.get(me.name).dynamics
    if dynamics is None:
        return []
    s = task_cov_diag(cfg.task.k, cfg.task.task_cov, cfg.cov_trace)
    a, beta, m_in, d, width, scale = me.alpha, me.beta, cfg.data.m_in, cfg.task.d, cfg.width, cfg.model.init_scale
    s_max = float(s.max())
    b = unlearning_b(float(s.sum()), cfg.task.sigma2, m_in)
    lam_max = (1 + 1 / m_in) * s_max + b
    second = dynamics == "second_order"
    n = math.inf if cfg.infinite else float(cfg.data.tasks)
    out: list[StepSizeCheck] = []

    def check(name: str, v: float, lim: float, what: str, knob: str, now: float) -> None:
        # every value here grows linearly in its knob: it meets the limit below now * lim / v
        bound = now * lim / v if v > 0 else math.inf
        out.append(
            StepSizeCheck(name, v, lim, v < lim, f"{LABELS[name]} = {v:.3g} must be < {lim:g} {what}", knob, bound)
        )

    lim = 0.5 if second else 1.0
    check(
        "limit", a * beta * s_max, lim, "for the limit to be stable (above, it oscillates, then diverges)", BETA, beta
    )
    e0 = init_curvature(d, width, scale, lam_max, b, n, cfg.data.m_out) * (2 if second else 1)
    check("init", a * a * beta * e0, 2.0, "so that the first steps do not overshoot", BETA, beta)
    n0 = scale**2 * (1 + math.sqrt(width / d)) ** 2  # ‖B_0‖₂², Marchenko–Pastur edge
    if me.inner_steps > 1:
        g_max = float(gammas(s, cfg.task.sigma2, m_in).max())
        v = a * n0 * (1 + math.sqrt(min(d, width) / m_in)) ** 2
        v = max(v, g_max * (1 + math.sqrt(min(cfg.task.k, width) / m_in)) ** 2)
        check("inner", v, 2.0, f"for {me.inner_steps} inner steps to be stable", ALPHA, a)
    elif not cfg.infinite:
        pool = (1 + math.sqrt(d / (n * m_in))) ** 2  # ‖Σ̂_pool‖
        check("head", a * n0 * pool, 2.0, "or the head, moved off 0 by sampled tasks, grows (|B_0|^2 ~ k'/d)", ALPHA, a)
        if out[-1].ok:
            out.pop()  # listed only when it fails: a single inner step is the theory's case
        v = head_step_value(a, beta, n0 * pool, scale**2 * (1 - math.sqrt(width / d)) ** 2 * pool, 2 if second else 1)
        check("step", v, 2.0, "so that the outer step on the head does not overshoot", BETA, beta)
        if out[-1].ok:
            out.pop()
    if not cfg.infinite and not cfg.data.fresh and not second:
        v = pool_head_value(s, cfg.task.sigma2, m_in, n)
        what = "or the head grows at the limit, whatever the step sizes"
        out.append(
            StepSizeCheck(
                "pool",
                v,
                1.0,
                v < 1.0,
                f"{LABELS['pool']} = {v:.3g} must be < 1 {what}",
                "data.tasks",
                min_pool_tasks(s, cfg.task.sigma2, m_in),
                at_least=True,
            )
        )
        if out[-1].ok:
            out.pop()  # listed only when it fails
    return out


BETA, ALPHA = "method.beta", "method.alpha"


def head_step_value(alpha: float, beta: float, kappa_hi: float, kappa_lo: float, power: int = 1) -> float:
    """``max βκ(1 − ακ)^power`` over the eigenvalues ``κ ∈ [kappa_lo, kappa_hi]`` of ``K = B_0ᵀΣ̂B_0``.

    One outer step maps the head by ``1 − βκ(1 − ακ)`` along each eigenvector of ``K`` for the
    first-order methods (MATH.md §4: ``E[grad_w] = K(I − αK)w``) and by ``1 − βκ(1 − ακ)²`` for the
    second-order ones (``(I − αK)`` once more from differentiating through the inner step, ``power=2``);
    it overshoots where that exceeds 2. ``B_0``'s squared singular values fill the Marchenko–Pastur
    band ``init_scale² (1 ± √(k'/d))²`` (times ``‖Σ̂_pool‖``). On the paper's setting FO-ANIL is
    stable at β = 0.75 and diverges at β = 1 (after ~400 steps), 1.5 and 3, for a bound of 0.82; with
    d = 10 and k' = 1000 it diverges at α = 0.01 and 0.005, where the band's lower edge is large.
    """
    peak = 1 / ((power + 1) * alpha)  # where κ(1 − ακ)^power is largest
    kappa = min(max(peak, kappa_lo), kappa_hi)
    return beta * kappa * (1 - alpha * kappa) ** power


def pool_head_value(s: torch.Tensor, sigma2: float, m_in: int, tasks: float) -> float:
    """``α ‖BᵀΣ̂_pool B‖₂`` at the limit of a pool of N = ``tasks`` tasks (check 5 of :func:`check_step_sizes`).

    The first-order head moves as ``w ← (I − β K (I − α K)) w`` with ``K = BᵀΣ̂B`` (MATH.md §4:
    ``E[grad_w] = Bᵀ(u − αPu)``), so it grows wherever ``α κ > 1``. Infinite tasks keep ``w = 0``; a
    pool moves it off 0 and is fitted with its own task covariance ``S_pool`` (top eigenvalue about
    ``s_max (1 + √(k/N))²``), so that ``α‖B_∞‖² = γ(s_pool)`` (MATH.md §5.1), seen through the pooled
    ``Σ̂`` restricted to the k learned directions (edge ``(1 + √(k/(N m_in)))²``). Neither α nor β
    changes it (only how fast it acts). Second-order methods (``(I − αK)² ``) have no such growth.
    On the paper's setting: 1.00 at N = 30 (diverges after ~50 steps), 0.95 at N = 50 (stable over
    3000 steps).
    """
    k = len(s)
    s_pool = float(s.max()) * (1 + math.sqrt(k / tasks)) ** 2
    b = unlearning_b(float(s.sum()), sigma2, m_in)
    return s_pool / ((1 + 1 / m_in) * s_pool + b) * (1 + math.sqrt(k / (tasks * m_in))) ** 2


def min_pool_tasks(s: torch.Tensor, sigma2: float, m_in: int) -> int:
    """The fewest tasks N with :func:`pool_head_value` below 1 (it falls as N grows)."""
    hi = 1
    while pool_head_value(s, sigma2, m_in, hi) >= 1 and hi < 2**40:
        hi *= 2
    lo = hi // 2 + 1 if hi > 1 else 1
    while lo < hi:  # bisection on [hi/2, hi]
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if pool_head_value(s, sigma2, m_in, mid) >= 1 else (lo, mid)
    return lo


def step_size_advice(cfg) -> str | None:
    """One line of advice for ``cfg``'s failed checks, the tightest bound per key (``"lower
    method.beta below 6 (now 50)"``); None when every check holds."""
    bad = [c for c in check_step_sizes(cfg) if not c.ok]
    if not bad:
        return None
    tightest: dict[str, StepSizeCheck] = {}
    for c in bad:
        t = tightest.get(c.knob)
        if t is None or (c.bound > t.bound if c.at_least else c.bound < t.bound):
            tightest[c.knob] = c
    return "; or ".join(f"{c.fix} (now {_now(cfg, c.knob):g})" for c in tightest.values())


def _now(cfg, knob: str) -> float:
    section, key = knob.split(".")
    return float(getattr(getattr(cfg, section), key))


def step_size_warning(cfg) -> str | None:
    """One line: every failed :func:`check_step_sizes` condition, then :func:`step_size_advice`;
    ``None`` when all hold."""
    bad = [c for c in check_step_sizes(cfg) if not c.ok]
    if not bad:
        return None
    return "step sizes outside the stable range: " + "; ".join(c.what for c in bad) + f". {step_size_advice(cfg)}"
