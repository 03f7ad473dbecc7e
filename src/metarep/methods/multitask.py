"""Multi-task learning in Burer–Monteiro form (MATH.md §3, Tripuraneni, Jin & Jordan 2021).

A shared ``B (d, k')`` and one free head per training task, stacked in ``W (N, k')``, minimise::

    F(B, W) = Σ_i ‖X_i B w_i − y_i‖² / (2 N m) + (λ/8) ‖BᵀB − WᵀW‖_F²

on all ``m`` samples of each task (no inner/outer split). Trained by gradient steps or L-BFGS.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ._linear import predict, task_grad


class MultitaskParams(NamedTuple):
    """Shared representation ``B (d, k')`` and per-task heads ``W (N, k')``."""

    B: torch.Tensor
    W: torch.Tensor


def multitask_loss(params: MultitaskParams, X: torch.Tensor, y: torch.Tensor, balance: float) -> torch.Tensor:
    """``F(B, W)`` for ``X (N, m, d)``, ``y (N, m)``; a scalar."""
    B, W = params
    fit = 0.5 * ((predict(X, W @ B.T) - y) ** 2).mean()  # Σ_i ‖X_i B w_i − y_i‖²/(2Nm)
    D = B.T @ B - W.T @ W
    return fit + balance / 8 * (D**2).sum()


def multitask_grad(params: MultitaskParams, X: torch.Tensor, y: torch.Tensor, balance: float) -> MultitaskParams:
    """Closed-form gradient of :func:`multitask_loss`: ``(d, k')`` and ``(N, k')``.

    With ``g_i = X_iᵀ(X_i B w_i − y_i)/m`` and ``D = BᵀB − WᵀW``:
    ``∂F/∂B = Σ_i g_i w_iᵀ / N + (λ/2) B D``,  ``∂F/∂w_i = Bᵀ g_i / N − (λ/2) D w_i``.
    """
    B, W = params
    n = X.shape[0]
    G = task_grad(X, y, W @ B.T)  # (N, d)
    D = B.T @ B - W.T @ W
    return MultitaskParams(G.T @ W / n + balance / 2 * B @ D, G @ B / n - balance / 2 * W @ D)


def multitask_stepper(X: torch.Tensor, y: torch.Tensor, balance: float, optimizer: str, lr: float):
    """A function ``params -> params`` making one gradient step of size ``lr`` on ``F``, or up to
    20 L-BFGS iterations (strong-Wolfe line search, curvature history kept across steps)."""
    if optimizer == "gd":

        def gd(params: MultitaskParams) -> MultitaskParams:
            g = multitask_grad(params, X, y, balance)
            return MultitaskParams(params.B - lr * g.B, params.W - lr * g.W)

        return gd

    state: dict[str, object] = {}

    def lbfgs(params: MultitaskParams) -> MultitaskParams:
        if "opt" not in state:  # L-BFGS keeps its curvature history across steps
            state["p"] = [params.B.clone().requires_grad_(True), params.W.clone().requires_grad_(True)]
            state["opt"] = torch.optim.LBFGS(
                state["p"], lr=1.0, max_iter=20, history_size=20, line_search_fn="strong_wolfe"
            )
        B, W = state["p"]

        def closure() -> torch.Tensor:
            state["opt"].zero_grad()
            g = multitask_grad(MultitaskParams(B.detach(), W.detach()), X, y, balance)
            B.grad, W.grad = g.B, g.W
            return multitask_loss(MultitaskParams(B.detach(), W.detach()), X, y, balance)

        state["opt"].step(closure)
        return MultitaskParams(B.detach().clone(), W.detach().clone())

    return lbfgs


def init_heads(n: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """Heads start at 0, as the meta-learning head does."""
    return torch.zeros(n, width, dtype=like.dtype, device=like.device)
