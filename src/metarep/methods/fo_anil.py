"""First-order ANIL (MATH.md §3): adapt the head on the inner set, differentiate the outer loss
at the adapted head as if the adaptation were constant.

Per task ``i``:  ``w_i = w − α Bᵀ g_in``,  ``g_out = X_outᵀ(X_out B w_i − y_out) / m_out``;
outer gradient ``(g_out w_iᵀ, Bᵀ g_out)`` averaged over tasks.
"""

from __future__ import annotations

import torch

from ..models import LinearParams
from ..tasks import GramBatch, TaskBatch
from ._linear import adapt_head, row_sums, task_grad


def fo_anil_terms(
    params: LinearParams, batch: TaskBatch, alpha: float, inner_steps: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-task pieces of the FO-ANIL gradient: ``g_out (N, d)`` and adapted heads ``W (N, k')``."""
    B, w = params
    W = adapt_head(B, w, batch.X_in, batch.y_in, alpha, inner_steps, batch.Xt_in)  # w_i
    g_out = task_grad(batch.X_out, batch.y_out, W @ B.T, batch.Xt_out)  # X_outᵀ(X_out B w_i − y_out)/m_out
    return g_out, W


def fo_anil_grad(params: LinearParams, batch: TaskBatch, alpha: float, inner_steps: int = 1) -> LinearParams:
    """Mean FO-ANIL outer gradient over the tasks of ``batch``: ``(d, k')`` and ``(k',)``."""
    B, w = params
    n, (d, k) = batch.num_tasks, B.shape
    if inner_steps == 1 and 3 * k > 2 * d:  # a wide head: two (N×d×d) products instead of three (N×d×k')
        u = B @ w
        g_in = task_grad(batch.X_in, batch.y_in, u, batch.Xt_in)  # (N, d)
        U = torch.addmm(u, g_in, B @ B.T, alpha=-alpha)  # B w_i = u − α B Bᵀ g_in
        g_out = task_grad(batch.X_out, batch.y_out, U, batch.Xt_out)  # (N, d)
        s = g_out.sum(0)
        grad_B = (torch.outer(s, w) - alpha * (g_out.T @ g_in) @ B) / n  # mean g_out w_iᵀ, w_iᵀ = wᵀ − α g_inᵀ B
        return LinearParams(grad_B, s @ B / n)
    g_out, W = fo_anil_terms(params, batch, alpha, inner_steps)
    grad_B = g_out.T @ W / n  # mean_i g_out w_iᵀ
    grad_w = g_out.mean(0) @ B  # mean_i Bᵀ g_out
    return LinearParams(grad_B, grad_w)


def fo_anil_grad_gram(params: LinearParams, batch: GramBatch, alpha: float, inner_steps: int = 1) -> LinearParams:
    """:func:`fo_anil_grad` from per-task second moments, for ``m > d``: ``g = Σ̂ u − Xᵀy/m``.

    ``Σ̂`` is symmetric, so ``Σ̂ u = Σ_e u_e Σ̂[e, :]``, a weighted sum of its rows (:func:`row_sums`).
    """
    B, w = params
    n = batch.num_tasks
    W, U = w, (B @ w).expand(n, -1)  # the heads and B w_i, shared before the inner steps
    for _ in range(inner_steps):
        g_in = row_sums(batch.G_in, U) - batch.c_in  # Σ̂_in B w_i − X_inᵀy_in/m
        W = torch.addmm(W, g_in, B, alpha=-alpha)  # w_i ← w_i − α Bᵀ g_in
        U = W @ B.T
    g_out = row_sums(batch.G_out, U) - batch.c_out  # Σ̂_out B w_i − X_outᵀy_out/m
    return LinearParams(g_out.T @ W / n, g_out.mean(0) @ B)
