"""First-order ANIL (MATH.md §3): adapt the head on the inner set, differentiate the outer loss
at the adapted head as if the adaptation were constant.

Per task ``i``:  ``w_i = w − α Bᵀ g_in``,  ``g_out = X_outᵀ(X_out B w_i − y_out) / m_out``;
outer gradient ``(g_out w_iᵀ, Bᵀ g_out)`` averaged over tasks. The batched closed form covers
any number of inner steps and every pool layout; the infinite-task gradient is exact at any head.
"""

from __future__ import annotations

import torch

from ..models import LinearParams
from ..tasks import GramBatch, LinearRepTasks, TaskBatch
from ._linear import adapt_head, row_sums, task_grad
from .registry import MethodSpec, register


def fo_anil_terms(
    params: LinearParams, batch: TaskBatch, alpha: float, inner_steps: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-task pieces of the FO-ANIL gradient: ``g_out (N, d)`` and adapted heads ``W (N, k')``."""
    B, w = params
    W = adapt_head(B, w, batch.X_in, batch.y_in, alpha, inner_steps, batch.Xt_in)  # w_i
    g_out = task_grad(batch.X_out, batch.y_out, W @ B.T, batch.Xt_out)  # X_outᵀ(X_out B w_i − y_out)/m_out
    return g_out, W


def fo_anil_grad(params: LinearParams, batch: TaskBatch, alpha: float, inner_steps: int = 1) -> LinearParams:
    """Mean FO-ANIL outer gradient over the tasks of ``batch``: ``(d, k')`` and ``(k',)``.

    ``batch``: samples (:class:`TaskBatch`, :class:`~metarep.tasks.DualBatch`) or per-task second
    moments (:class:`GramBatch`, read by :func:`fo_anil_grad_gram`).
    """
    if isinstance(batch, GramBatch):
        return fo_anil_grad_gram(params, batch, alpha, inner_steps)
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


def fo_anil_expected_grad(params: LinearParams, tasks: LinearRepTasks, alpha: float, m_in: int) -> LinearParams:
    """Exact infinite-task ``E[grad]`` of FO-ANIL at any ``(B, w)`` (MATH.md §4); ``(d, k')``, ``(k',)``.

    For Gaussian inputs ``E[Σ̂ A Σ̂] = (1 + 1/m) A + (tr A / m) I``; only ``m_in`` enters. With
    ``u = B w``, ``P = B Bᵀ``, ``V = u uᵀ + S``::

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


SPEC = register(
    MethodSpec(
        name="fo_anil",
        label="FO-ANIL",
        kind="meta",
        adapts="head",
        order="first",
        closed_form=fo_anil_grad,
        closed_form_steps=None,  # any number of inner steps
        layouts=("samples", "dual", "gram"),
        expected_grad=fo_anil_expected_grad,
        expected_exact="any head",
        dynamics="first_order",
        regimes=("finite", "minibatch", "fresh", "infinite"),
        models=("linear", "relu2", "relu3"),
    )
)
