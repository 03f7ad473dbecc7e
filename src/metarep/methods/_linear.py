"""Batched linear-algebra kernels shared by the closed-form methods.

Every kernel is a batched matrix–vector product over the task axis: the task tensors are read
once per call and ``X @ B`` (an ``N×m×k'`` tensor) is never formed. The forms below were the
fastest measured on a 2-core CPU (``metarep bench``): vector–matrix products over contiguous rows,
``rᵀ X`` per task for ``Xᵀ r`` and ``uᵀ Xᵀ`` for ``X u`` where the transposed copy ``Xt`` is stored
(:class:`metarep.tasks.DualBatch`); without ``Xt``, ``X u`` is an elementwise product and a sum.
"""

from __future__ import annotations

import torch


def predict(X: torch.Tensor, u: torch.Tensor, Xt: torch.Tensor | None = None) -> torch.Tensor:
    """``X u`` for ``X (N, m, d)`` and ``u (d,)`` shared or ``(N, d)`` per task -> ``(N, m)``.

    ``Xt (N, d, m)``: the same numbers as ``X`` transposed, where stored.
    """
    if Xt is not None:
        return (u.unsqueeze(-2) @ Xt).squeeze(-2)  # uᵀ Xᵀ per task
    if u.dim() == 1:
        return X @ u
    # an elementwise product and a reduction beat bmm's many tiny (m×d)(d×1) products on the CPU;
    # the temporary is as large as X, and X comes in bounded chunks
    return (X * u.unsqueeze(1)).sum(-1)


def residual(X: torch.Tensor, y: torch.Tensor, u: torch.Tensor, Xt: torch.Tensor | None = None) -> torch.Tensor:
    """``(X u − y) / m`` per task, ``(N, m)``; ``u (d,)`` or ``(N, d)``; ``Xt`` as in :func:`predict`."""
    n, m = y.shape
    if Xt is None:
        return (predict(X, u) - y) / m
    U = u.expand(n, 1, -1) if u.dim() == 1 else u.unsqueeze(1)  # (N, 1, d)
    return torch.baddbmm(y.unsqueeze(1), U, Xt, beta=-1 / m, alpha=1 / m).squeeze(1)  # (uᵀXᵀ − yᵀ)/m


def xt_apply(X: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """``Xᵀ r`` per task: ``X (N, m, d)``, ``r (N, m)`` -> ``(N, d)``."""
    return (r.unsqueeze(1) @ X).squeeze(1)  # rᵀ X per task


def task_grad(X: torch.Tensor, y: torch.Tensor, u: torch.Tensor, Xt: torch.Tensor | None = None) -> torch.Tensor:
    """Gradient in ``u`` of ``‖X u − y‖² / (2m)`` per task: ``Xᵀ(X u − y) / m``, ``(N, d)``."""
    return xt_apply(X, residual(X, y, u, Xt))


def cov_apply(X: torch.Tensor, a: torch.Tensor, Xt: torch.Tensor | None = None) -> torch.Tensor:
    """``Σ̂ a = Xᵀ X a / m`` per task, ``a (d,)`` or ``(N, d)`` -> ``(N, d)``."""
    return xt_apply(X, predict(X, a, Xt) / X.shape[1])


def adapt_head(
    B: torch.Tensor, w: torch.Tensor, X: torch.Tensor, y: torch.Tensor, alpha: float, steps: int,
    Xt: torch.Tensor | None = None,
) -> torch.Tensor:
    """Inner loop on the head only: ``w ← w − α Bᵀ g_in`` repeated ``steps`` times.

    Returns the adapted heads ``(N, k')``. The first step shares ``u = B w`` across tasks.
    """
    W = torch.addmm(w, task_grad(X, y, B @ w, Xt), B, alpha=-alpha)  # w_i = w − α Bᵀ g_in, (N, k')
    for _ in range(steps - 1):
        W = torch.addmm(W, task_grad(X, y, W @ B.T, Xt), B, alpha=-alpha)
    return W
