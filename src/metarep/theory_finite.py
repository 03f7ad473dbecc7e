"""The finite-pool floor of FO-ANIL's unlearning (MATH.md §8), without running the dynamics.

With a fixed pool of N tasks, ``‖B⊥ᵀB_t‖`` stops falling at a floor. Linearised around the
infinite-task limit, the part of ``Φ = B⊥ᵀB`` outside the row space of ``Ψ = B*ᵀB`` obeys

    dΦ/dτ = −(N_⊥ + αb ΦΦᵀ) Φ,         τ = αβ · step,

where ``N_⊥`` (``(d−k)×(d−k)``) is the pool's perpendicular block of ``mean_i g_out,i c_iᵀ`` at the
limit: a matrix of i.i.d. centred entries of variance ``v/N`` (a Ginibre matrix). Its fixed point
``Q_∞ = ΦΦᵀ`` follows from the stable invariant subspace of ``N_⊥`` and a Lyapunov equation
(:func:`lyapunov_floor`); ``‖Φ‖₂² = λ_max(Q_∞)`` and ``‖Φ‖_F² = tr Q_∞``, plus a ``1/N`` part in the row
space of ``Ψ`` where the restoring force is linear.

The prediction is **semi-analytic**: the moments ``v`` and ``v_j`` are k-dimensional Gaussian
expectations estimated by Monte Carlo (fixed seed, about 0.3% error), and the two Ginibre constants
by sampling Ginibre matrices of size ``d − k`` (fixed seed, about 1% error; tabulated once for every size
up to :data:`MAX_GINIBRE` and shipped with the package). Nothing is trained.
"""

from __future__ import annotations

import functools
import json
import math
from importlib import resources

import numpy as np
import torch

from .batch import TaskBatch
from .tasks import LinearRepTasks, task_cov_diag
from .theory import gammas, lambda_star, unlearning_b

MOMENT_DRAWS = 2**18  # Monte-Carlo draws of one task's signal coordinates
GINIBRE_SEED = 20240  # fixed: the prediction is a deterministic function of the config
MAX_GINIBRE = 400  # Ginibre sizes beyond this are extrapolated (c₂ → constant, c_F ∝ n)
GINIBRE_TABLE = "data/ginibre.json"  # c₂, c_F for sizes 1..MAX_GINIBRE (benchmarks/tabulate_ginibre.py)
RELAXATIONS = 12.0  # the experiment's run length, in units of 1/(αβ r) (MATH.md §8.4)


def lyapunov_floor(N: np.ndarray, ab: float) -> np.ndarray:
    """Fixed point ``Q_∞`` of ``dQ/dτ = −(N Q + Q Nᵀ) − 2ab Q²`` reached from a full-rank start (MATH.md §8.2).

    With ``R = Q⁻¹`` the flow is linear, ``dR/dτ = NᵀR + RN + 2ab I``: ``R`` stays bounded exactly on
    the span ``W`` of the eigenvectors of ``N`` with ``Re λ < 0`` (the directions pushed outward), where
    ``Lᴴ X + X L = −2ab WᴴW`` (``L = diag λ``), so ``Q_∞ = W X⁻¹ Wᴴ``. ``N (n, n)`` real, diagonalisable
    (true with probability 1 for a random matrix); returns ``(n, n)`` symmetric PSD, float64.
    """
    lam, V = np.linalg.eig(N)
    out = lam.real < 0
    n = N.shape[0]
    if not out.any():
        return np.zeros((n, n))
    W, L = V[:, out], lam[out]
    X = -2 * ab * (W.conj().T @ W) / (L.conj()[:, None] + L[None, :])  # Lᴴ X + X L = −2ab WᴴW
    Q = (W @ np.linalg.solve(X, W.conj().T)).real
    return (Q + Q.T) / 2


@functools.lru_cache(maxsize=64)
def ginibre_constants(n: int) -> tuple[float, float]:
    """``(c₂, c_F) = (E λ_max Q_∞(G), E tr Q_∞(G))`` for ``G`` an ``n×n`` matrix of i.i.d. ``N(0, 1/n)``
    entries (spectral radius → 1) and ``ab = 1`` (MATH.md §8.3). Sampled with a fixed seed, about 1%
    error (:func:`ginibre_sample`); sizes above :data:`MAX_GINIBRE` use the value at that size (``c_F``
    scaled by ``n``). Read from the table shipped with the package (:data:`GINIBRE_TABLE`, the same
    samples), sampled here only for a size it lacks.
    """
    if n <= 0:
        return 0.0, 0.0
    size = min(n, MAX_GINIBRE)
    c2, cF = ginibre_table().get(size) or ginibre_sample(size)
    return c2, cF * n / size


def ginibre_sample(size: int) -> tuple[float, float]:
    """``(c₂, c_F)`` at ``size`` (:func:`ginibre_constants`) by sampling: ``max(8, min(512, 4096 // size))``
    matrices (about 1% for every size: the spread of λ_max falls like 1/n^(2/3)), seed ``GINIBRE_SEED + size``."""
    reps = max(8, min(512, 4096 // size))
    rng = np.random.default_rng(GINIBRE_SEED + size)
    top, tr = [], []
    for _ in range(reps):
        e = np.linalg.eigvalsh(lyapunov_floor(rng.standard_normal((size, size)) / math.sqrt(size), 1.0))
        top.append(e[-1])
        tr.append(e.sum())
    return float(np.mean(top)), float(np.mean(tr))


@functools.lru_cache(maxsize=1)
def ginibre_table() -> dict[int, tuple[float, float]]:
    """``{size: (c₂, c_F)}`` for sizes 1..:data:`MAX_GINIBRE`, read from :data:`GINIBRE_TABLE` (written by
    ``benchmarks/tabulate_ginibre.py`` with :func:`ginibre_sample`); empty when the file is missing or was
    made with another seed or size limit (the constants are then sampled)."""
    try:
        data = json.loads(resources.files(__package__).joinpath(GINIBRE_TABLE).read_text())
    except (OSError, ValueError):
        return {}
    if data.get("seed") != GINIBRE_SEED or data.get("max_size") != MAX_GINIBRE:
        return {}
    return {n: (float(c2), float(cF)) for n, c2, cF in zip(data["size"], data["c2"], data["cF"], strict=True)}


@functools.lru_cache(maxsize=64)
def pool_moments(
    sigma_diag: tuple[float, ...], gamma: tuple[float, ...], sigma2: float, m_in: int, m_out: int
) -> tuple[float, tuple[float, ...], tuple[float, ...]]:
    """``v = E[s_a² s_b²]``, ``v_j = E[s_a² c_j²]`` and ``u_j = E[g_j² c_j²]`` (``k`` numbers each) of one task
    at the limit (MATH.md §8.1, §8.5).

    In the coordinates of ``B*``: ``w* ~ N(0, Σ*)``, ``Z (m_in, k)`` standard normal, ``y = Z w* + ε``,
    ``c = Zᵀy/m_in``, ``e = γ∘c − w*`` (the adapted regressor's error at the limit), and
    ``s_a² = (‖e‖² + σ²)/m_out``, ``s_b² = ‖y‖²/m_in²``; ``g = B*ᵀg_out`` is the outer gradient's signal part,
    ``E[g_j² | e] = (σ² + ‖e‖² + 2e_j²)/m_out + (1 − 1/m_out) e_j²`` (Gaussian rows of ``X_out B*``).
    Monte Carlo over :data:`MOMENT_DRAWS` tasks,
    fixed seed, float64, ``O(k)`` numbers per task: given ``w*``, ``‖y‖² = τ² χ²_{m_in}`` with
    ``τ² = ‖w*‖² + σ²``, and ``Zᵀy = w*‖y‖²/τ² + ‖y‖ (I − (1 − σ/τ) ŵŵᵀ) ξ``, ``ξ ~ N(0, I_k)``
    (the rows of ``Z`` given ``y``: mean ``w* y_r/τ²``, covariance ``I − w*w*ᵀ/τ²``).
    """
    s, g = np.asarray(sigma_diag), np.asarray(gamma)
    rng = np.random.default_rng(GINIBRE_SEED)
    w = rng.standard_normal((MOMENT_DRAWS, s.size)) * np.sqrt(s)
    tau2 = (w**2).sum(1) + sigma2
    y2 = tau2 * rng.chisquare(m_in, MOMENT_DRAWS)
    xi = rng.standard_normal((MOMENT_DRAWS, s.size))
    w_hat = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-300)
    shrink = 1 - math.sqrt(sigma2) / np.sqrt(tau2)  # A^{1/2} = I − (1 − σ/τ) ŵŵᵀ
    noise = xi - (shrink * (xi * w_hat).sum(1))[:, None] * w_hat
    c = (w * (y2 / tau2)[:, None] + np.sqrt(y2)[:, None] * noise) / m_in
    e = g * c - w
    sa2 = ((e**2).sum(1) + sigma2) / m_out
    g2 = (sigma2 + (e**2).sum(1, keepdims=True) + 2 * e**2) / m_out + (1 - 1 / m_out) * e**2  # E[g_j² | e]
    moments = (sa2[:, None] * c**2).mean(0), (g2 * c**2).mean(0)
    return float((sa2 * y2).mean()) / m_in**2, tuple(moments[0].tolist()), tuple(moments[1].tolist())


def pool_noise(pool: TaskBatch, tasks: LinearRepTasks, alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One sampled pool's noise at the limit (MATH.md §8.1): ``N⊥ = B⊥ᵀFB⊥`` ``(n, n)``,
    ``N_21 = B⊥ᵀFB*`` ``(n, k)`` and ``N_11 = B*ᵀFB*`` ``(k, k)``, float64, with ``F = mean_i g_out,i c_iᵀ``
    at ``P_∞`` and head 0.

    ``pool``: ``X_in (N, m_in, d)``, ``y_in (N, m_in)``, ``X_out (N, m_out, d)``, ``y_out (N, m_out)``.
    """
    X_in, y_in, X_out, y_out = (t.to(torch.float64) for t in pool)
    m_in = X_in.shape[1]
    Bs, Bp = tasks.B_star, tasks.B_perp
    g = gammas(tasks.sigma_diag, tasks.sigma2, m_in)
    c = torch.einsum("nm,nmd->nd", y_in, X_in) / m_in  # c_i = X_inᵀy_in/m_in
    u = ((c @ Bs) * g) @ Bs.T  # α P_∞ c_i with α P_∞ = B* diag(γ) B*ᵀ
    g_out = torch.einsum("nm,nmd->nd", torch.einsum("nmd,nd->nm", X_out, u) - y_out, X_out) / X_out.shape[1]
    F = g_out.T @ c / X_in.shape[0]
    return Bp.T @ F @ Bp, Bp.T @ F @ Bs, Bs.T @ F @ Bs


def pool_floor(pool: TaskBatch, tasks: LinearRepTasks, alpha: float) -> dict[str, float | list[float]]:
    """The floor of one sampled pool (MATH.md §8.2) from its own noise (:func:`pool_noise`) instead of
    its law: :func:`lyapunov_floor` of ``N⊥``, plus the row-space part ``Σ_j ‖N_21[:, j]‖² γ_j / (α s_j²)``;
    and the pool's signal eigenvalues (MATH.md §8.5), those of the symmetric part of
    ``(Σ* − N_11) Λ*⁻¹ / α`` (``γ_j/α`` for infinitely many tasks).
    Returns ``perp_norm2``, ``perp_fro2`` and ``signal_eigs`` (ascending), what the run's metrics read there."""
    s, m_in = tasks.sigma_diag.double(), pool.X_in.shape[1]
    g = gammas(s, tasks.sigma2, m_in)
    N_perp, N_21, N_11 = pool_noise(pool, tasks, alpha)
    e = np.linalg.eigvalsh(lyapunov_floor(N_perp.numpy(), alpha * unlearning_b(float(s.sum()), tasks.sigma2, m_in)))
    rowspace = float((N_21.pow(2).sum(0) * g / (alpha * s**2)).sum())
    M = (torch.diag(s) - N_11) / lambda_star(s, tasks.sigma2, m_in) / alpha  # (Σ* − N_11) Λ*⁻¹ / α, Λ* diagonal
    signal = torch.linalg.eigvalsh((M + M.T) / 2)
    return {"perp_norm2": float(e[-1]), "perp_fro2": float(e.sum()) + rowspace, "signal_eigs": signal.tolist()}


def floor_applies(cfg) -> str | None:
    """``None`` when the prediction covers ``cfg``, else why not (one phrase)."""
    if cfg.method.name != "fo_anil":
        return f"the floor is predicted for fo_anil, not {cfg.method.name}"
    if cfg.infinite or cfg.data.fresh:
        return "no floor: the tasks are not a fixed pool"
    if cfg.data.task_batch is not None and cfg.data.task_batch < cfg.data.tasks:
        return "mini-batches of tasks add step noise the prediction does not model"
    if cfg.method.inner_steps != 1 or cfg.model.kind != "linear":
        return "the prediction is for one inner step of the linear model"
    if cfg.width < cfg.task.d:
        return "the prediction assumes width k' >= d (room for every outward direction)"
    return None


def finite_floor(cfg) -> dict[str, float] | None:
    """The predicted floor of a finite-pool FO-ANIL config (MATH.md §8), or ``None`` where
    :func:`floor_applies` says it does not apply. Keys:

    - ``predicted_perp_floor``: ``‖B⊥ᵀB‖₂² ≈ c₂(n) r / (αb)``, ``n = d − k``, ``r = √(n v / N)``;
    - ``predicted_perp_fro_floor``: ``‖B⊥ᵀB‖_F² ≈ c_F(n) r / (αb) + (n/N) Σ_j v_j γ_j / (α s_j²)``;
    - ``floor_outward``, ``floor_rowspace``: the two parts of the Frobenius floor;
    - ``floor_radius``: ``r``, the spectral radius of the pool's perpendicular noise ``N_⊥``;
    - ``floor_steps``: :data:`RELAXATIONS` relaxation times ``1/(αβ r)``, in steps;
    - ``signal_eig_sd``: the spread over pools of each signal eigenvalue of ``B*ᵀBBᵀB*`` around its limit
      ``γ_j/α`` (first order, ``√(u_j/N)/(α λ*_j)``; unbiased at that order), ascending like
      ``predicted_signal_eigs``; for distinct ``s_j`` (equal ones split instead).
    """
    if floor_applies(cfg) is not None:
        return None
    t, a = cfg.task, cfg.method.alpha
    s = task_cov_diag(t.k, t.task_cov, cfg.cov_trace)
    g = gammas(s, t.sigma2, cfg.data.m_in)
    v, vj, uj = pool_moments(tuple(s.tolist()), tuple(g.tolist()), t.sigma2, cfg.data.m_in, cfg.data.m_out)
    n, N = t.d - t.k, float(cfg.data.tasks)
    ab = a * unlearning_b(float(s.sum()), t.sigma2, cfg.data.m_in)
    r = math.sqrt(n * v / N)
    c2, cF = ginibre_constants(n)
    rowspace = n / N * float((torch.tensor(vj, dtype=torch.float64) * g / (a * s**2)).sum())
    # δ(eigenvalue j) ≈ −(N_11)_jj / (α λ*_j), Var (N_11)_jj = u_j / N (distinct s_j; MATH.md §8.5)
    sd = torch.sqrt(torch.tensor(uj, dtype=torch.float64) / N) / (a * lambda_star(s, t.sigma2, cfg.data.m_in))
    return {
        "predicted_perp_floor": c2 * r / ab,
        "predicted_perp_fro_floor": cF * r / ab + rowspace,
        "floor_outward": cF * r / ab,
        "floor_rowspace": rowspace,
        "floor_radius": r,
        "floor_steps": RELAXATIONS / (a * cfg.method.beta * r) if r > 0 else 0.0,  # d = k: nothing to unlearn
        "signal_eig_sd": sd[torch.argsort(g)].tolist(),  # in the order of predicted_signal_eigs (ascending γ)
    }


def floor_predictions(cfg) -> dict[str, float | None]:
    """The two predicted floors for ``summary.json`` and ``metarep theory`` (``None`` where they do not
    apply), with ``floor_note`` saying why not, or the parts of the prediction where they do."""
    f = finite_floor(cfg)
    if f is None:
        return {"predicted_perp_floor": None, "predicted_perp_fro_floor": None, "floor_note": floor_applies(cfg)}
    return f


def predicted_perp_floor(cfg) -> float | None:
    """Predicted floor of ``‖B⊥ᵀB_t‖₂²`` for a finite pool (MATH.md §8.3); ``None`` where it does not apply."""
    f = finite_floor(cfg)
    return None if f is None else f["predicted_perp_floor"]


def predicted_perp_fro_floor(cfg) -> float | None:
    """Predicted floor of ``‖B⊥ᵀB_t‖_F²`` for a finite pool (MATH.md §8.3); ``None`` where it does not apply."""
    f = finite_floor(cfg)
    return None if f is None else f["predicted_perp_fro_floor"]
