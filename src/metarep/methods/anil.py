"""ANIL, exact second order (MATH.md §3): adapt the head, differentiate through the adaptation.

Per task ``i``: ``w_i = w − α Bᵀ g_in``, ``v = Bᵀ g_out``; outer gradient
``(g_out w_iᵀ − α (g_in vᵀ + Σ̂_in B v wᵀ),  (I − α Bᵀ Σ̂_in B) v)`` averaged over tasks.
One inner step; more steps run through :mod:`metarep.methods.generic`.
"""

from __future__ import annotations

from ..batch import TaskBatch
from ..models import LinearParams
from ._linear import cov_apply, task_grad


def anil_grad(params: LinearParams, batch: TaskBatch, alpha: float) -> LinearParams:
    """Mean exact ANIL outer gradient over the tasks of ``batch``: ``(d, k')`` and ``(k',)``."""
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
