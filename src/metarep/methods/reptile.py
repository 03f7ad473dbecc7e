"""Reptile: a few plain gradient steps on all parameters using all samples of each task, then move
towards the mean adapted parameters.

Per task ``i``, ``s`` inner steps of size α on ``‖X_i B w − y_i‖²/(2m)`` give ``(B_i, w_i)``. The
returned "gradient" is ``(B, w) − mean_i (B_i, w_i)``, so the outer step ``θ ← θ − β·grad`` is the
Reptile interpolation ``θ ← θ + β (mean φ_i − θ)`` (β = 1 jumps to the mean).
"""

from __future__ import annotations

import torch

from ..models import LinearParams
from ..tasks import TaskBatch
from ._linear import task_grad
from .generic import Forward, Params, adapt


def reptile_grad(params: LinearParams, batch: TaskBatch, alpha: float, inner_steps: int = 1) -> LinearParams:
    """Reptile direction ``(B, w) − mean_i (B_i, w_i)`` for the linear model, ``(d, k')`` and ``(k',)``."""
    X, y = batch.merged()  # all m = m_in + m_out samples of each task
    B, w = params
    g = task_grad(X, y, B @ w)  # first step: u = B w is shared by all tasks
    Bi = B - alpha * g[:, :, None] * w  # B_i = B − α g wᵀ, (N, d, k')
    Wi = w - alpha * (g @ B)  # w_i = w − α Bᵀ g, (N, k')
    for _ in range(inner_steps - 1):
        g = task_grad(X, y, torch.einsum("ndk,nk->nd", Bi, Wi))
        Bi, Wi = Bi - alpha * g[:, :, None] * Wi[:, None, :], Wi - alpha * torch.einsum("ndk,nd->nk", Bi, g)
    return LinearParams(B - Bi.mean(0), w - Wi.mean(0))


def reptile_generic(
    forward: Forward, params: Params, batch: TaskBatch, *, alpha: float, inner_steps: int = 1
) -> Params:
    """Reptile direction for any functional model, the inner loop ``vmap``-ed over tasks."""
    X, y = batch.merged()
    keys = tuple(params)

    def task_fast(X_t: torch.Tensor, y_t: torch.Tensor) -> Params:
        return adapt(forward, params, X_t, y_t, alpha, keys, inner_steps)

    fast = torch.func.vmap(task_fast)(X, y)
    return {k: params[k] - fast[k].mean(0) for k in keys}
