"""The theory's predictions (MATH.md §5) as functions of the task distribution and step sizes.

This module is the one place for predictions. Everything here is closed form, in float64, and
needs no training:

- the limit of ``B*ᵀ B Bᵀ B*`` (§5.1, §5.3, §5.5) and of ``M = α B Bᵀ``: :func:`limit_gram`,
  :func:`limit_M`, :func:`predicted_signal_eigs`, :func:`kept_directions`;
- the unlearning constant ``lim t·‖B⊥ᵀB_t‖₂²`` (§5.2): :func:`predicted_perp_rate`, for a config
  :func:`unlearning_constant` (none for width ``k' ≤ k``: :func:`unlearning_note`);
- the one-step adaptation risk on a new task (§5.6) for any ``(B, w)``: :func:`one_step_risk`,
  and at the limit: :func:`limit_one_step_risk`;
- least squares on a new task: :func:`oracle_risk`, :func:`scratch_risk`, and on any fixed
  subspace: :func:`subspace_ls_risk`;
- the constants ``b``, ``Λ*``, ``γ`` of :mod:`metarep.constants`, and the step-size checks of
  :mod:`metarep.stepsizes` (:func:`check_step_sizes`, :func:`step_size_warning`), re-exported;
- :func:`predictions` (the keys ``metarep run`` puts in ``summary.json``) and :func:`report`
  (what ``metarep theory`` prints, formatted by :mod:`metarep.cli.theory`).

Risks are excess risks ``E‖θ̂ − θ‖²`` (the test loss minus the noise σ², for ``x ~ N(0, I)``). A
risk whose expectation is infinite or undefined is returned as ``nan`` (``null`` in JSON).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict

import torch

from .constants import _f64, gammas, lambda_star, unlearning_b
from .stepsizes import check_step_sizes, step_size_advice, step_size_warning
from .tasks import task_cov_diag

__all__ = ["check_step_sizes", "gammas", "lambda_star", "step_size_advice", "step_size_warning", "unlearning_b"]

DEFAULT_M_TEST = (5, 10, 20, 50, 100)


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


def unlearning_note(width: int, k: int) -> str | None:
    """``None`` when the unlearning constant (MATH.md §5.2) exists for width ``k'``, else why not (one line).

    It needs ``k' > k``: only then can ``B`` keep directions outside ``span(B*)`` that are unlearned
    like ``C/t``. With ``k' ≤ k``, ``Ψᵀ Λ* Ψ`` is positive definite at the limit (MATH.md §4), so
    ``B⊥ᵀB_t`` vanishes exponentially and there is no constant to predict.
    """
    if width > k:
        return None
    return (
        f"no unlearning constant: width k'={width} ≤ k={k}, nothing outside the shared subspace is learned; "
        "‖B⊥ᵀB_t‖₂² vanishes exponentially, not like C/t"
    )


def unlearning_constant(cfg) -> dict[str, float | str | None]:
    """The unlearning constant of a :class:`~metarep.config.Config`: ``predicted_perp_rate``
    (:func:`predicted_perp_rate`), ``None`` where :func:`unlearning_note` says there is none, with
    ``perp_rate_note`` saying why (only then). The one place that decides whether it is predicted."""
    note = unlearning_note(cfg.width, cfg.task.k)
    if note is not None:
        return {"predicted_perp_rate": None, "perp_rate_note": note}
    m = cfg.method
    return {"predicted_perp_rate": predicted_perp_rate(cfg.cov_trace, cfg.task.sigma2, m.alpha, m.beta, cfg.data.m_in)}


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
    - ``predicted_perp_rate``: ``lim t·‖B⊥ᵀB_t‖₂²`` (§5.2); ``null`` for width ``k' ≤ k``, with
      ``perp_rate_note`` saying why (:func:`unlearning_constant`);
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
        **unlearning_constant(cfg),
        "predicted_rank": min(t.k, cfg.width),
        "predicted_risk_m_in": _num(limit_one_step_risk(s, t.sigma2, m, m, cfg.width)),
        "predicted_oracle_risk_m_in": _num(oracle_risk(t.k, cfg.cov_trace, t.sigma2, m)),
        "predicted_scratch_risk_m_in": _num(scratch_risk(t.d, cfg.cov_trace, t.sigma2, m)),
        "step_size_warnings": [c.what for c in check_step_sizes(cfg) if not c.ok],
    }


def report(cfg, m_test: Sequence[int] = DEFAULT_M_TEST) -> dict[str, object]:
    """Every prediction of MATH.md §5 for ``cfg`` (what ``metarep theory`` prints).

    ``risks`` lists, for each ``m`` in ``m_test`` and ``m_in``, the one-step risk at the limit, the
    oracle and scratch (``None`` where infinite or undefined). ``predicted_perp_rate`` is ``None`` for
    width ``k' ≤ k``, with ``perp_rate_note`` saying why (:func:`unlearning_constant`).
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
        **unlearning_constant(cfg),
        "risks": [
            {
                "m": m,
                "limit_one_step": _num(limit_one_step_risk(s, t.sigma2, m_in, m, width)),
                "oracle": _num(oracle_risk(t.k, cfg.cov_trace, t.sigma2, m)),
                "scratch": _num(scratch_risk(t.d, cfg.cov_trace, t.sigma2, m)),
            }
            for m in ms
        ],
        "step_size_checks": [{**asdict(c), "fix": c.fix} for c in check_step_sizes(cfg)],
        "step_size_advice": step_size_advice(cfg),
    }
