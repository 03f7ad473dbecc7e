"""Infinite tasks: the exact expected outer gradient over the task distribution (MATH.md §4).

For Gaussian inputs ``E[Σ̂ A Σ̂] = (1 + 1/m) A + (tr A / m) I``; only ``m_in`` enters.
"""

from __future__ import annotations

import torch

from .models import LinearParams
from .tasks import LinearRepTasks


def fo_anil_expected_grad(params: LinearParams, tasks: LinearRepTasks, alpha: float, m_in: int) -> LinearParams:
    """Exact ``E[grad]`` of FO-ANIL at any ``(B, w)``; shapes ``(d, k')`` and ``(k',)``.

    With ``u = B w``, ``P = B Bᵀ``, ``V = u uᵀ + S``::

        E[grad_B] = u wᵀ − α V B − α P u wᵀ
                    + α² P [(1 + 1/m_in) V + (tr V / m_in) I] B + α² (σ²/m_in) P B
        E[grad_w] = Bᵀ (u − α P u)
    """
    B, w = params
    S = tasks.S.to(B)
    u = B @ w  # (d,)
    VB = torch.outer(u, u @ B) + S @ B  # V B
    tr_V = u @ u + tasks.trace
    Pu = B @ (B.T @ u)
    inner = (1 + 1 / m_in) * VB + ((tr_V + tasks.sigma2) / m_in) * B  # [(1+1/m)V + (trV+σ²)/m I] B
    grad_B = (
        torch.outer(u, w)
        - alpha * VB
        - alpha * torch.outer(Pu, w)
        + alpha**2 * (B @ (B.T @ inner))  # α² P [...] B, σ² term folded into `inner`
    )
    grad_w = B.T @ (u - alpha * Pu)
    return LinearParams(grad_B, grad_w)


def _require_zero_head(params: LinearParams, method: str) -> None:
    if bool(params.w.ne(0).any()):
        raise ValueError(
            f"method.name: the infinite-task update of {method} is exact only at head w = 0 (MATH.md §4); "
            "this state has a non-zero head; use data.tasks = N"
        )


def second_order_expected_grad(params: LinearParams, tasks: LinearRepTasks, alpha: float, m_in: int) -> LinearParams:
    """Exact ``E[grad]`` of ANIL and of MAML at ``w = 0`` (they coincide there), MATH.md §4::

        E[grad_B] = α (M G + G M − 2S) B,   M = α B Bᵀ,   G = (1 + 1/m_in) S + b I
        E[grad_w] = 0

    Raises ``ValueError`` for a non-zero head, which these formulas do not cover.
    """
    _require_zero_head(params, "anil/maml")
    B = params.B
    S = tasks.S.to(B)
    b = (tasks.trace + tasks.sigma2) / m_in
    SB = S @ B
    GB = (1 + 1 / m_in) * SB + b * B  # G B
    MGB = alpha * B @ (B.T @ GB)  # M G B
    GMB = alpha * GB @ (B.T @ B)  # G M B
    return LinearParams(alpha * (MGB + GMB - 2 * SB), torch.zeros_like(params.w))


def fo_maml_expected_grad(params: LinearParams, tasks: LinearRepTasks, alpha: float, m_in: int) -> LinearParams:
    """Exact ``E[grad]`` of FO-MAML at ``w = 0``, where it equals FO-ANIL's (``B_i = B``)."""
    _require_zero_head(params, "fo_maml")
    return fo_anil_expected_grad(params, tasks, alpha, m_in)
