"""The theory's predictions (MATH.md §5) as functions of the task distribution and step sizes.

This module is the one place for predictions. Everything here is closed form, in float64, and
needs no training:

- the limit of ``B*ᵀ B Bᵀ B*`` (§5.1, §5.3, §5.5) and of ``M = α B Bᵀ``: :func:`limit_gram`,
  :func:`limit_M`, :func:`predicted_signal_eigs`, :func:`kept_directions`;
- the unlearning constant ``lim t·‖B⊥ᵀB_t‖₂²`` (§5.2): :func:`predicted_perp_rate`;
- the one-step adaptation risk on a new task (§5.6) for any ``(B, w)``: :func:`one_step_risk`,
  and at the limit: :func:`limit_one_step_risk`;
- least squares on a new task: :func:`oracle_risk`, :func:`scratch_risk`, and on any fixed
  subspace: :func:`subspace_ls_risk`;
- a check of the step sizes against the range where the infinite-task dynamics are stable:
  :func:`check_step_sizes`, :func:`step_size_warning`;
- :func:`predictions` (the keys ``metarep run`` puts in ``summary.json``) and :func:`report`
  (what ``metarep theory`` prints, formatted by :mod:`metarep.cli.theory`).

Risks are excess risks ``E‖θ̂ − θ‖²`` (the test loss minus the noise σ², for ``x ~ N(0, I)``). A
risk whose expectation is infinite or undefined is returned as ``nan`` (``null`` in JSON).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from .tasks import task_cov_diag

DEFAULT_M_TEST = (5, 10, 20, 50, 100)


def _f64(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to(torch.float64)


def unlearning_b(trace: float, sigma2: float, m_in: int) -> float:
    """``b = (tr Σ* + σ²) / m_in``."""
    return (trace + sigma2) / m_in


def lambda_star(sigma_diag: torch.Tensor, sigma2: float, m_in: int) -> torch.Tensor:
    """Diagonal of ``Λ* = (1 + 1/m_in) Σ* + b I_k``, ``(k,)``, in the order of ``sigma_diag``."""
    s = _f64(sigma_diag)
    return (1 + 1 / m_in) * s + unlearning_b(float(s.sum()), sigma2, m_in)


def gammas(sigma_diag: torch.Tensor, sigma2: float, m_in: int) -> torch.Tensor:
    """``γ_j = s_j / ((1 + 1/m_in) s_j + b)``, ``(k,)``, in the order of ``sigma_diag`` (MATH.md §5.1)."""
    s = _f64(sigma_diag)
    return s / lambda_star(s, sigma2, m_in)


def kept_directions(sigma_diag: torch.Tensor, width: int) -> torch.Tensor:
    """Indices (into ``sigma_diag``, ascending) of the eigendirections of Σ* that FO-ANIL keeps.

    All ``k`` of them when ``width ≥ k``; the top ``width`` eigenvalues of Σ* when underparametrized
    (MATH.md §5.5). With tied eigenvalues the limit keeps *some* ``width``-dimensional subspace of
    the tied eigenspace, depending on the initialisation; this function then names the tied
    directions with the largest indices (the eigenvalues it implies are the same either way).
    """
    s = _f64(sigma_diag)
    k = s.numel()
    if width >= k:
        return torch.arange(k)
    order = torch.sort(s, stable=True).indices  # ascending; ties keep index order
    return torch.sort(order[k - width :]).values


def limit_gamma(sigma_diag: torch.Tensor, sigma2: float, m_in: int, width: int) -> torch.Tensor:
    """Eigenvalues of ``α B*ᵀ B_∞ B_∞ᵀ B*`` in the order of ``sigma_diag``: ``γ_j`` on the kept
    directions, 0 on the others, ``(k,)``."""
    g = gammas(sigma_diag, sigma2, m_in)
    out = torch.zeros_like(g)
    idx = kept_directions(sigma_diag, width)
    out[idx] = g[idx]
    return out


def limit_gram(sigma_diag: torch.Tensor, sigma2: float, alpha: float, m_in: int, width: int) -> torch.Tensor:
    """``lim B*ᵀ B_t B_tᵀ B* = α⁻¹ Σ* Λ*⁻¹`` (MATH.md §5.1), restricted to the kept directions when
    ``width < k`` (§5.5); ``(k, k)``, diagonal in the coordinates of ``B*``."""
    return torch.diag(limit_gamma(sigma_diag, sigma2, m_in, width) / alpha)


def limit_M(B_star: torch.Tensor, sigma_diag: torch.Tensor, sigma2: float, m_in: int, width: int) -> torch.Tensor:
    """``M_∞ = α B_∞ B_∞ᵀ = B* diag(γ) B*ᵀ`` (MATH.md §5.3), ``(d, d)``; independent of α (§5.4)."""
    Bs = _f64(B_star)
    return (Bs * limit_gamma(sigma_diag, sigma2, m_in, width)) @ Bs.T


def predicted_signal_eigs(sigma_diag: torch.Tensor, sigma2: float, alpha: float, m_in: int, width: int) -> list[float]:
    """Limit of the eigenvalues of ``B*ᵀ B Bᵀ B*`` (ascending), MATH.md §5.1 and §5.5.

    ``γ_j / α`` with ``γ_j = s_j / ((1 + 1/m_in) s_j + b)``. With width ``k' < k`` only the top
    ``k'`` eigendirections of Σ* are learned and the other ``k − k'`` eigenvalues are 0.
    """
    eig = limit_gamma(sigma_diag, sigma2, m_in, width) / alpha
    return torch.sort(eig).values.tolist()


def predicted_perp_rate(trace: float, sigma2: float, alpha: float, beta: float, m_in: int) -> float:
    """``lim t · ‖B⊥ᵀB_t‖₂² = m_in / (2 α² β (tr Σ* + σ²))`` (MATH.md §5.2)."""
    return m_in / (2 * alpha**2 * beta * (trace + sigma2))


# --------------------------------------------------------------------------------------------
# risks on a new task (MATH.md §3 baselines, §5.6)


def one_step_risk(
    M: torch.Tensor, S: torch.Tensor, trace: float, sigma2: float, m: int, u: torch.Tensor | None = None
) -> float:
    """Excess risk ``E‖θ̂ − θ‖²`` of one head step on ``m`` samples of a new task (MATH.md §5.6).

    The head starts at ``w`` with ``u = B w``; one step of size α on ``‖XBw − y‖²/(2m)`` gives
    ``θ̂ = B w' = u + M Xᵀ(y − X u)/m`` with ``M = α B Bᵀ``. Expectation over the task, the inputs
    and the noise, with ``V = S + u uᵀ = E[(θ − u)(θ − u)ᵀ]``::

        E‖θ̂ − θ‖² = tr V − 2 tr(M V) + (1 + 1/m) tr(M² V) + tr(M²) (tr V + σ²) / m

    At ``u = 0`` this is MATH.md's ``tr(M²[(1 + 1/m)S + ((tr Σ* + σ²)/m) I]) − 2 tr(MS) + tr Σ*``.

    **Arguments:** ``M (d, d)`` symmetric, ``S (d, d)`` = ``B* Σ* B*ᵀ``, ``trace`` = tr Σ*,
    ``sigma2`` = σ², ``m ≥ 1`` samples, ``u (d,)`` or ``None`` for a zero head.
    """
    M, S = _f64(M), _f64(S)
    V, trV = S, float(trace)
    if u is not None:
        u = _f64(u)
        V = S + torch.outer(u, u)
        trV = trV + float(u @ u)
    M2 = M @ M
    return float(trV - 2 * torch.sum(M * V) + (1 + 1 / m) * torch.sum(M2 * V) + torch.trace(M2) * (trV + sigma2) / m)


def limit_one_step_risk(sigma_diag: torch.Tensor, sigma2: float, m_in: int, m: int, width: int) -> float:
    """:func:`one_step_risk` at the FO-ANIL limit ``M_∞ = B* diag(γ) B*ᵀ`` (head at 0), diagonal form::

        Σ_j [ γ_j² ((1 + 1/m) s_j + (tr Σ* + σ²)/m) − 2 γ_j s_j + s_j ]

    It depends on neither d, α nor B* (MATH.md §5.4, §5.6).
    """
    s = _f64(sigma_diag)
    g = limit_gamma(s, sigma2, m_in, width)
    c = (float(s.sum()) + sigma2) / m
    return float(torch.sum(g**2 * ((1 + 1 / m) * s + c) - 2 * g * s + s))


def subspace_ls_risk(r: int, tr_PS: float, tr_S: float, sigma2: float, m: int) -> float:
    """Excess risk of least squares restricted to a fixed ``r``-dimensional subspace (projector P).

    ``θ̂ = U ŵ`` with ``U`` an orthonormal basis, ``ŵ`` the (min-norm when ``m < r``) least-squares
    fit of ``y`` on ``X U``. The part of θ outside the subspace, ``ρ = E‖(I − P)θ‖² = tr S − tr PS``,
    acts as extra noise independent of ``X U``, so::

        m > r + 1:  ρ + (ρ + σ²) r / (m − r − 1)
        m < r − 1:  tr(PS) (1 − m/r) + ρ + (ρ + σ²) m / (r − m − 1)      (min-norm)

    and ``nan`` for ``r − 1 ≤ m ≤ r + 1`` (infinite expectation). ``r = 0`` gives ``tr S``. The oracle
    (P = B*B*ᵀ) and scratch (P = I) are the special cases ``ρ = 0``.
    """
    rho = max(tr_S - tr_PS, 0.0)
    if r == 0:
        return float(tr_S)
    if m > r + 1:
        return rho + (rho + sigma2) * r / (m - r - 1)
    if m < r - 1:
        return tr_PS * (1 - m / r) + rho + (rho + sigma2) * m / (r - m - 1)
    return math.nan


def oracle_risk(k: int, trace: float, sigma2: float, m: int) -> float:
    """Least squares on the true representation ``B*`` (MATH.md §3, §5.6): ``σ² k / (m − k − 1)`` for
    ``m > k + 1``; below, the min-norm fit ``tr Σ* (1 − m/k) + σ² m / (k − m − 1)`` for ``m < k − 1``;
    ``nan`` between (infinite expectation)."""
    return subspace_ls_risk(k, trace, trace, sigma2, m)


def scratch_risk(d: int, trace: float, sigma2: float, m: int) -> float:
    """Least squares in R^d on the new task alone (MATH.md §5.6): ``σ² d / (m − d − 1)`` for
    ``m > d + 1``; min-norm ``tr Σ* (1 − m/d) + σ² m / (d − m − 1)`` for ``m < d − 1``; ``nan`` between."""
    return subspace_ls_risk(d, trace, trace, sigma2, m)


# --------------------------------------------------------------------------------------------
# step sizes


@dataclass(frozen=True)
class StepSizeCheck:
    """One stability condition ``value < limit``; ``ok`` says whether it holds."""

    name: str
    value: float
    limit: float
    ok: bool
    what: str


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

    def check(name: str, v: float, lim: float, what: str) -> None:
        out.append(StepSizeCheck(name, v, lim, v < lim, f"{LABELS[name]} = {v:.3g} {what}"))

    lim, more = (0.5 if second else 1.0), " or model.init_scale" + ("" if n == math.inf else ", or use more tasks")
    why = "(above, the signal eigenvalues oscillate, and further out diverge); lower method.beta below"
    check("limit", a * beta * s_max, lim, f"must be < {lim:g} for the limit to be stable {why} {lim / (a * s_max):.3g}")
    e0 = init_curvature(d, width, scale, lam_max, b, n, cfg.data.m_out) * (2 if second else 1)
    check("init", a * a * beta * e0, 2.0, f"must be < 2 so the first steps do not overshoot; lower method.beta{more}")
    n0 = scale**2 * (1 + math.sqrt(width / d)) ** 2  # ‖B_0‖₂², Marchenko–Pastur edge
    if me.inner_steps > 1:
        g_max = float(gammas(s, cfg.task.sigma2, m_in).max())
        v = a * n0 * (1 + math.sqrt(min(d, width) / m_in)) ** 2
        v = max(v, g_max * (1 + math.sqrt(min(cfg.task.k, width) / m_in)) ** 2)
        check("inner", v, 2.0, f"must be < 2 for {me.inner_steps} inner steps to be stable; lower method.alpha")
    elif not cfg.infinite:
        v = a * n0 * (1 + math.sqrt(d / (n * m_in))) ** 2
        why = "or the head, which sampled tasks move off 0, grows at every step; lower method.alpha or model.init_scale"
        check("head", v, 2.0, f"must be < 2 {why} (|B_0|^2 grows like model.width/task.d)")
        if out[-1].ok:
            out.pop()  # listed only when it fails: a single inner step is the theory's case
    return out


def step_size_warning(cfg) -> str | None:
    """One line naming every failed :func:`check_step_sizes` condition, or ``None`` when all hold."""
    bad = [c for c in check_step_sizes(cfg) if not c.ok]
    if not bad:
        return None
    return "step sizes outside the stable range of the infinite-task dynamics: " + "; ".join(c.what for c in bad)


def inner_step_value(alpha: float, B: torch.Tensor, m: int) -> float:
    """``α ‖B‖₂² (1 + √(r/m))²`` for the actual ``B`` (``r`` its rank): several head steps on ``m``
    samples are stable when this is below 2 (see :func:`check_step_sizes`, check 3)."""
    B = _f64(B)
    if B.numel() == 0:
        return 0.0
    sv = torch.linalg.svdvals(B)
    r = int((sv > sv[0] * max(B.shape) * torch.finfo(torch.float64).eps).sum()) if float(sv[0]) > 0 else 0
    return alpha * float(sv[0]) ** 2 * (1 + math.sqrt(r / m)) ** 2


# --------------------------------------------------------------------------------------------
# everything for one config


def _num(x: float) -> float | None:
    """JSON-safe number: ``nan``/``inf`` become ``None``."""
    return float(x) if math.isfinite(x) else None


def predictions(cfg) -> dict[str, object]:
    """Predictions applicable to a :class:`~metarep.config.Config`, for ``summary.json``.

    They are the FO-ANIL infinite-task theory at ``w = 0`` (also the limit of FO-MAML, ANIL and
    MAML at ``w = 0``; the unlearning rate is FO-ANIL's). Keys:

    - ``predicted_signal_eigs``: limit of the eigenvalues of ``B*ᵀBBᵀB*``, ascending (§5.1, §5.5);
    - ``predicted_perp_rate``: ``lim t·‖B⊥ᵀB_t‖₂²`` (§5.2);
    - ``predicted_rank``: rank of ``B_∞``, ``min(k, k')`` (§5.3);
    - ``predicted_risk_m_in``: one-step excess risk at the limit on a new task with ``m = m_in`` (§5.6);
    - ``predicted_oracle_risk_m_in``, ``predicted_scratch_risk_m_in``: the oracle and scratch at
      ``m = m_in`` (``null`` where infinite);
    - ``step_size_warnings``: the failed conditions of :func:`check_step_sizes` (empty when fine).
    """
    t = cfg.task
    s = task_cov_diag(t.k, t.task_cov, cfg.cov_trace)
    a, m = cfg.method.alpha, cfg.data.m_in
    return {
        "predicted_signal_eigs": predicted_signal_eigs(s, t.sigma2, a, m, cfg.width),
        "predicted_perp_rate": predicted_perp_rate(cfg.cov_trace, t.sigma2, a, cfg.method.beta, m),
        "predicted_rank": min(t.k, cfg.width),
        "predicted_risk_m_in": _num(limit_one_step_risk(s, t.sigma2, m, m, cfg.width)),
        "predicted_oracle_risk_m_in": _num(oracle_risk(t.k, cfg.cov_trace, t.sigma2, m)),
        "predicted_scratch_risk_m_in": _num(scratch_risk(t.d, cfg.cov_trace, t.sigma2, m)),
        "step_size_warnings": [c.what for c in check_step_sizes(cfg) if not c.ok],
    }


def report(cfg, m_test: Sequence[int] = DEFAULT_M_TEST) -> dict[str, object]:
    """Every prediction of MATH.md §5 for ``cfg`` (what ``metarep theory`` prints).

    ``risks`` lists, for each ``m`` in ``m_test`` and ``m_in``, the one-step risk at the limit, the
    oracle and scratch (``None`` where infinite or undefined).
    """
    t = cfg.task
    s = task_cov_diag(t.k, t.task_cov, cfg.cov_trace)
    a, beta, m_in, width = cfg.method.alpha, cfg.method.beta, cfg.data.m_in, cfg.width
    g = gammas(s, t.sigma2, m_in)
    kept = kept_directions(s, width)
    ms = sorted({int(x) for x in m_test} | {m_in})
    return {
        "method": cfg.method.name,
        "d": t.d,
        "k": t.k,
        "width": width,
        "sigma2": t.sigma2,
        "sigma_star_diag": s.tolist(),
        "alpha": a,
        "beta": beta,
        "m_in": m_in,
        "b": unlearning_b(float(s.sum()), t.sigma2, m_in),
        "gamma": g.tolist(),
        "kept_directions": [int(i) + 1 for i in kept],  # 1-based indices into Σ*'s diagonal
        "predicted_signal_eigs": predicted_signal_eigs(s, t.sigma2, a, m_in, width),
        "predicted_alpha_signal_eigs": torch.sort(limit_gamma(s, t.sigma2, m_in, width)).values.tolist(),
        "limit_gram_diag": torch.diagonal(limit_gram(s, t.sigma2, a, m_in, width)).tolist(),
        "predicted_rank": min(t.k, width),
        "predicted_perp_rate": predicted_perp_rate(cfg.cov_trace, t.sigma2, a, beta, m_in),
        "risks": [
            {
                "m": m,
                "limit_one_step": _num(limit_one_step_risk(s, t.sigma2, m_in, m, width)),
                "oracle": _num(oracle_risk(t.k, cfg.cov_trace, t.sigma2, m)),
                "scratch": _num(scratch_risk(t.d, cfg.cov_trace, t.sigma2, m)),
            }
            for m in ms
        ],
        "step_size_checks": [asdict(c) for c in check_step_sizes(cfg)],
    }
