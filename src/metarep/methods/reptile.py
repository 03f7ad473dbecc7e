"""Reptile: a few plain gradient steps on all parameters using all samples of each task, then move
towards the mean adapted parameters.

Per task ``i``, ``s`` inner steps of size α on ``‖X_i B w − y_i‖²/(2m)`` give ``(B_i, w_i)``. The
returned "gradient" is ``(B, w) − mean_i (B_i, w_i)``, so the outer step ``θ ← θ − β·grad`` is the
Reptile interpolation ``θ ← θ + β (mean φ_i − θ)`` (β = 1 jumps to the mean). The closed form
covers any number of inner steps; any other model runs through :mod:`metarep.engine`.
"""

from __future__ import annotations

import torch

from ..batch import TaskBatch
from ..models import LinearParams
from ._linear import task_grad
from .registry import MethodSpec, register


def reptile_grad(params: LinearParams, batch: TaskBatch, alpha: float, inner_steps: int = 1) -> LinearParams:
    """Reptile direction ``(B, w) − mean_i (B_i, w_i)`` for the linear model, ``(d, k')`` and ``(k',)``.

    ``B_i`` is never formed: after ``s`` steps ``B_i = B − α Σ_r g_r w_rᵀ`` (a rank-``s`` change per
    task), so ``B_i w = B w − α Σ_r g_r (w_r·w)`` and ``B_iᵀ g = Bᵀ g − α Σ_r w_r (g_r·g)``.
    """
    X, y = batch.merged()  # all m = m_in + m_out samples of each task
    B, w = params
    n = X.shape[0]
    G: list[torch.Tensor] = []  # g_r per step, (N, d)
    Ws: list[torch.Tensor] = []  # w_r per step, (N, k')
    Wi = w.expand(n, -1)
    for _ in range(inner_steps):
        U = Wi @ B.T - alpha * sum((Wr * Wi).sum(1, keepdim=True) * Gr for Gr, Wr in zip(G, Ws))  # B_i w_i
        g = task_grad(X, y, U)  # (N, d)
        BTg = g @ B - alpha * sum((Gr * g).sum(1, keepdim=True) * Wr for Gr, Wr in zip(G, Ws))  # B_iᵀ g
        G.append(g)
        Ws.append(Wi)
        Wi = Wi - alpha * BTg  # w_i ← w_i − α B_iᵀ g   (B_i ← B_i − α g w_iᵀ, kept as G, Ws)
    mean_dB = sum(Gr.T @ Wr for Gr, Wr in zip(G, Ws)) / n  # mean_i Σ_r g_r w_rᵀ
    return LinearParams(alpha * mean_dB, w - Wi.mean(0))


SPEC = register(
    MethodSpec(
        name="reptile",
        label="Reptile",
        kind="meta",
        adapts="all",
        order="reptile",
        closed_form=reptile_grad,
        closed_form_steps=None,
        layouts=("samples",),  # it reads all m samples of a task at once (TaskBatch.merged)
        # one inner step is joint training on the mean task, which learns nothing on these tasks
        series_overrides=lambda scale: ("method.inner_steps=5",),
    )
)
