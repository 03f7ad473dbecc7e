"""The theory's predictions (MATH.md §5) as functions of the task distribution and step sizes."""

from __future__ import annotations

import torch

from .tasks import task_cov_diag


def unlearning_b(trace: float, sigma2: float, m_in: int) -> float:
    """``b = (tr Σ* + σ²) / m_in``."""
    return (trace + sigma2) / m_in


def predicted_signal_eigs(sigma_diag: torch.Tensor, sigma2: float, alpha: float, m_in: int, width: int) -> list[float]:
    """Limit of the eigenvalues of ``B*ᵀ B Bᵀ B*`` (ascending), MATH.md §5.1 and §5.5.

    ``γ_j / α`` with ``γ_j = s_j / ((1 + 1/m_in) s_j + b)``. With width ``k' < k`` only the top
    ``k'`` eigendirections of Σ* are learned and the other ``k − k'`` eigenvalues are 0.
    """
    s = torch.sort(sigma_diag.to(torch.float64)).values
    b = unlearning_b(float(s.sum()), sigma2, m_in)
    gamma = s / ((1 + 1 / m_in) * s + b)
    eig = gamma / alpha
    k = s.numel()
    if width < k:
        eig[: k - width] = 0.0
    return eig.tolist()


def predicted_perp_rate(trace: float, sigma2: float, alpha: float, beta: float, m_in: int) -> float:
    """``lim t · ‖B⊥ᵀB_t‖₂² = m_in / (2 α² β (tr Σ* + σ²))`` (MATH.md §5.2)."""
    return m_in / (2 * alpha**2 * beta * (trace + sigma2))


def predictions(cfg) -> dict[str, object]:
    """Predictions applicable to a :class:`~metarep.config.Config` (FO-ANIL dynamics at w = 0)."""
    s = task_cov_diag(cfg.task.k, cfg.task.task_cov, cfg.cov_trace)
    a, m = cfg.method.alpha, cfg.data.m_in
    return {
        "predicted_signal_eigs": predicted_signal_eigs(s, cfg.task.sigma2, a, m, cfg.width),
        "predicted_perp_rate": predicted_perp_rate(cfg.cov_trace, cfg.task.sigma2, a, cfg.method.beta, m),
    }
