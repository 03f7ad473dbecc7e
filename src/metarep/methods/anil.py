"""ANIL, exact second order (MATH.md §3): adapt the head, differentiate through the adaptation.

Per task ``i``: ``w_i = w − α Bᵀ g_in``, ``v = Bᵀ g_out``; outer gradient
``(g_out w_iᵀ − α (g_in vᵀ + Σ̂_in B v wᵀ),  (I − α Bᵀ Σ̂_in B) v)`` averaged over tasks.
One inner step in closed form; more run through :mod:`metarep.engine`. At ``w = 0`` the exact
infinite-task gradient is shared with MAML (:func:`second_order_expected_grad`).
"""

from __future__ import annotations

import torch

from ..batch import TaskBatch
from ..models import LinearParams
from ..tasks import LinearRepTasks
from ._linear import cov_apply, require_zero_head, task_grad
from .registry import MethodSpec, register


def anil_grad(params: LinearParams, batch: TaskBatch, alpha: float, inner_steps: int = 1) -> LinearParams:
    """Mean exact ANIL outer gradient over the tasks of ``batch``: ``(d, k')`` and ``(k',)``.

    One inner step (``inner_steps`` must be 1; the spec's ``closed_form_steps``).
    """
    B, w = params
    n = batch.num_tasks
    g_in = task_grad(batch.X_in, batch.y_in, B @ w, batch.Xt_in)  # (N, d)
    W = w - alpha * (g_in @ B)  # w_i = w − α Bᵀ g_in
    g_out = task_grad(batch.X_out, batch.y_out, W @ B.T, batch.Xt_out)  # (N, d)
    V = g_out @ B  # v = Bᵀ g_out, (N, k')
    SBv = cov_apply(batch.X_in, V @ B.T, batch.Xt_in)  # Σ̂_in B v, (N, d)
    grad_B = (g_out.T @ W - alpha * (g_in.T @ V) - alpha * SBv.sum(0)[:, None] * w) / n
    grad_w = (V - alpha * (SBv @ B)).mean(0)  # (I − α Bᵀ Σ̂_in B) v
    return LinearParams(grad_B, grad_w)


def second_order_expected_grad(params: LinearParams, tasks: LinearRepTasks, alpha: float, m_in: int) -> LinearParams:
    """Exact ``E[grad]`` of ANIL and of MAML at ``w = 0`` (they coincide there), MATH.md §4::

        E[grad_B] = α (M G + G M − 2S) B,   M = α B Bᵀ,   G = (1 + 1/m_in) S + b I
        E[grad_w] = 0

    Raises ``ValueError`` for a non-zero head, which these formulas do not cover.
    """
    require_zero_head(params, "anil/maml")
    B = params.B
    S = tasks.S.to(B)
    b = (tasks.trace + tasks.sigma2) / m_in
    SB = S @ B
    GB = (1 + 1 / m_in) * SB + b * B  # G B
    MGB = alpha * B @ (B.T @ GB)  # M G B
    GMB = alpha * GB @ (B.T @ B)  # G M B
    return LinearParams(alpha * (MGB + GMB - 2 * SB), torch.zeros_like(params.w))


SPEC = register(
    MethodSpec(
        name="anil",
        label="ANIL",
        kind="meta",
        adapts="head",
        order="second",
        closed_form=anil_grad,
        layouts=("samples", "dual"),
        expected_grad=second_order_expected_grad,
        expected_exact="head w = 0",
        dynamics="second_order",
        regimes=("finite", "minibatch", "fresh", "infinite"),
        models=("linear", "relu2", "relu3"),
    )
)
