"""The constants of the infinite-task dynamics (MATH.md §4): ``b``, ``Λ*`` and ``γ``.

Shared by the predictions (:mod:`metarep.theory`) and the step-size checks (:mod:`metarep.stepsizes`).
"""

from __future__ import annotations

import torch


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
