"""First-order MAML (MATH.md §3): adapt head and representation, take the outer gradient at the
adapted point.

Per task ``i``: ``B_i = B − α g_in wᵀ``, ``w_i = w − α Bᵀ g_in``, ``g_out`` at ``u_i = B_i w_i``;
outer gradient ``(g_out w_iᵀ, B_iᵀ g_out)``. ``B_i`` is never formed: ``B_i w_i = B w_i − α g_in (w·w_i)``
and ``B_iᵀ g_out = Bᵀ g_out − α w (g_in·g_out)``. One inner step in closed
form; more run through :mod:`metarep.engine`. At ``w = 0`` its infinite-task gradient is FO-ANIL's.
"""

from __future__ import annotations

from ..batch import TaskBatch
from ..models import LinearParams
from ..tasks import LinearRepTasks
from ._linear import require_zero_head, task_grad
from .fo_anil import fo_anil_expected_grad
from .registry import MethodSpec, register


def fo_maml_grad(params: LinearParams, batch: TaskBatch, alpha: float, inner_steps: int = 1) -> LinearParams:
    """Mean FO-MAML outer gradient over the tasks of ``batch``: ``(d, k')`` and ``(k',)`` (one inner step)."""
    B, w = params
    g_in = task_grad(batch.X_in, batch.y_in, B @ w, batch.Xt_in)  # (N, d)
    W = w - alpha * (g_in @ B)  # w_i
    U = W @ B.T - alpha * (W @ w)[:, None] * g_in  # u_i = B_i w_i, (N, d)
    g_out = task_grad(batch.X_out, batch.y_out, U, batch.Xt_out)
    n = batch.num_tasks
    grad_B = g_out.T @ W / n  # mean g_out w_iᵀ
    grad_w = g_out.mean(0) @ B - alpha * (g_in * g_out).sum(1).mean() * w  # mean B_iᵀ g_out
    return LinearParams(grad_B, grad_w)


def fo_maml_expected_grad(params: LinearParams, tasks: LinearRepTasks, alpha: float, m_in: int) -> LinearParams:
    """Exact ``E[grad]`` of FO-MAML at ``w = 0``, where it equals FO-ANIL's (``B_i = B``)."""
    require_zero_head(params, "fo_maml")
    return fo_anil_expected_grad(params, tasks, alpha, m_in)


SPEC = register(
    MethodSpec(
        name="fo_maml",
        label="FO-MAML",
        kind="meta",
        adapts="all",
        order="first",
        closed_form=fo_maml_grad,
        layouts=("samples", "dual"),
        expected_grad=fo_maml_expected_grad,
        expected_exact="head w = 0",
        dynamics="first_order",
        regimes=("finite", "minibatch", "fresh", "infinite"),
        models=("linear", "relu2", "relu3"),
    )
)
