"""Batched linear-algebra kernels shared by the closed-form methods.

Every kernel is a batched matrix–vector product over the task axis: the task tensors are read
once per call and ``X @ B`` (an ``N×m×k'`` tensor) is never formed. Both products are written as
a weighted sum of contiguous rows per task, :func:`row_sums`: ``Xᵀ r = Σ_j r_j X[j, :]`` over the
rows of ``X (N, m, d)``, and ``X u = Σ_e u_e Xt[e, :]`` over the rows of the transposed copy
``Xt (N, d, m)`` where it is stored (:class:`metarep.tasks.DualBatch`). On the CPU that sum is one
``embedding_bag`` call, which ran at the speed of reading the data where batched ``bmm`` took
2–5× longer (``metarep bench``).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=32)
def _bags(n: int, a: int, device: torch.device) -> torch.Tensor:
    """Row indices ``(n, a)``: bag ``i`` holds rows ``i·a … i·a + a − 1`` (int32 where it fits)."""
    dtype = torch.int32 if n * a < 2**31 else torch.int64
    return torch.arange(n * a, dtype=dtype, device=device).view(n, a)


def row_sums(A: torch.Tensor, c: torch.Tensor, bags: bool | None = None) -> torch.Tensor:
    """``Σ_j c[i, j] · A[i, j, :]`` per task ``i``: ``A (N, a, b)``, ``c (N, a)`` -> ``(N, b)``.

    ``bags``: one ``embedding_bag`` call (default on the CPU) or a batched vector–matrix product
    (default elsewhere; the form checked on CUDA).
    """
    n, a, b = A.shape
    if not (A.device.type == "cpu" if bags is None else bags):
        return (c.unsqueeze(1) @ A).squeeze(1)
    return F.embedding_bag(_bags(n, a, A.device), A.reshape(n * a, b), mode="sum", per_sample_weights=c)


def predict(X: torch.Tensor, u: torch.Tensor, Xt: torch.Tensor | None = None) -> torch.Tensor:
    """``X u`` for ``X (N, m, d)`` and ``u (d,)`` shared or ``(N, d)`` per task -> ``(N, m)``.

    ``Xt (N, d, m)``: the same numbers as ``X`` transposed, where stored.
    """
    if Xt is not None:
        return row_sums(Xt, u.expand(X.shape[0], -1))  # Σ_e u_e Xᵀ[e, :] per task
    if u.dim() == 1:
        return X @ u
    # an elementwise product and a reduction beat bmm's many tiny (m×d)(d×1) products on the CPU;
    # the temporary is as large as X, and X comes in bounded chunks
    return (X * u.unsqueeze(1)).sum(-1)


def xt_apply(X: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """``Xᵀ r`` per task: ``X (N, m, d)``, ``r (N, m)`` -> ``(N, d)``."""
    return row_sums(X, r)


def task_grad(X: torch.Tensor, y: torch.Tensor, u: torch.Tensor, Xt: torch.Tensor | None = None) -> torch.Tensor:
    """Gradient in ``u`` of ``‖X u − y‖² / (2m)`` per task: ``Xᵀ(X u − y) / m``, ``(N, d)``."""
    return xt_apply(X, (predict(X, u, Xt) - y) / X.shape[1])


def cov_apply(X: torch.Tensor, a: torch.Tensor, Xt: torch.Tensor | None = None) -> torch.Tensor:
    """``Σ̂ a = Xᵀ X a / m`` per task, ``a (d,)`` or ``(N, d)`` -> ``(N, d)``."""
    return xt_apply(X, predict(X, a, Xt) / X.shape[1])


def adapt_head(
    B: torch.Tensor,
    w: torch.Tensor,
    X: torch.Tensor,
    y: torch.Tensor,
    alpha: float,
    steps: int,
    Xt: torch.Tensor | None = None,
) -> torch.Tensor:
    """Inner loop on the head only: ``w ← w − α Bᵀ g_in`` repeated ``steps`` times.

    Returns the adapted heads ``(N, k')``. The first step shares ``u = B w`` across tasks.
    """
    W = torch.addmm(w, task_grad(X, y, B @ w, Xt), B, alpha=-alpha)  # w_i = w − α Bᵀ g_in, (N, k')
    for _ in range(steps - 1):
        W = torch.addmm(W, task_grad(X, y, W @ B.T, Xt), B, alpha=-alpha)
    return W


def require_zero_head(params, method: str) -> None:
    """Raise ``ValueError`` unless the head ``params.w`` is 0, where the infinite-task formulas of
    ``method`` hold (MATH.md §4)."""
    if bool(params.w.ne(0).any()):
        raise ValueError(
            f"method.name: the infinite-task update of {method} is exact only at head w = 0 (MATH.md §4); "
            "this state has a non-zero head; use data.tasks = N"
        )
