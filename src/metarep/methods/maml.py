"""MAML, exact second order (MATH.md §3): adapt head and representation, differentiate through it.

Per task ``i``, with ``B_i = B − α g_in wᵀ``, ``w_i = w − α Bᵀ g_in``, ``g_out`` at ``B_i w_i``, the
gradients at the adapted point are ``G_B = g_out w_iᵀ`` and ``G_w = B_iᵀ g_out``. Pulling them back
through the inner step (``d g_in = Σ̂_in d(Bw)``) gives, with ``z = Σ̂_in (G_B w + B G_w)``::

    grad_B = G_B − α g_in G_wᵀ − α z wᵀ
    grad_w = G_w − α G_Bᵀ g_in − α Bᵀ z        (G_Bᵀ g_in = w_i (g_out·g_in))

One inner step in closed form; more run through :mod:`metarep.engine`. At ``w = 0`` its exact
infinite-task gradient is ANIL's (:func:`metarep.methods.anil.second_order_expected_grad`).
"""

from __future__ import annotations

from ..batch import TaskBatch
from ..models import LinearParams
from ._linear import cov_apply, task_grad
from .anil import second_order_expected_grad
from .registry import MethodSpec, register


def maml_grad(params: LinearParams, batch: TaskBatch, alpha: float, inner_steps: int = 1) -> LinearParams:
    """Mean exact MAML outer gradient over the tasks of ``batch``: ``(d, k')`` and ``(k',)`` (one inner step)."""
    B, w = params
    n = batch.num_tasks
    g_in = task_grad(batch.X_in, batch.y_in, B @ w, batch.Xt_in)  # (N, d)
    W = w - alpha * (g_in @ B)  # w_i
    U = W @ B.T - alpha * (W @ w)[:, None] * g_in  # B_i w_i
    g_out = task_grad(batch.X_out, batch.y_out, U, batch.Xt_out)  # (N, d)
    go_gi = (g_out * g_in).sum(1, keepdim=True)  # g_out·g_in, (N, 1)
    Gw = g_out @ B - alpha * go_gi * w  # G_w = B_iᵀ g_out, (N, k')
    z = cov_apply(batch.X_in, g_out * (W @ w)[:, None] + Gw @ B.T, batch.Xt_in)  # Σ̂_in (G_B w + B G_w)
    grad_B = (g_out.T @ W - alpha * (g_in.T @ Gw) - alpha * z.sum(0)[:, None] * w) / n
    grad_w = (Gw - alpha * go_gi * W - alpha * (z @ B)).mean(0)
    return LinearParams(grad_B, grad_w)


SPEC = register(
    MethodSpec(
        name="maml",
        label="MAML",
        kind="meta",
        adapts="all",
        order="second",
        closed_form=maml_grad,
        layouts=("samples", "dual"),
        expected_grad=second_order_expected_grad,
        expected_exact="head w = 0",
        dynamics="second_order",
        regimes=("finite", "minibatch", "fresh", "infinite"),
        models=("linear", "relu2", "relu3"),
    )
)
