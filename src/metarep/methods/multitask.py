"""Multi-task learning in Burer–Monteiro form (MATH.md §3, Tripuraneni, Jin & Jordan 2021).

A shared ``B (d, k')`` and one free head per training task, stacked in ``W (N, k')``, minimise::

    F(B, W) = Σ_i ‖X_i B w_i − y_i‖² / (2 N m) + (λ/8) ‖BᵀB − WᵀW‖_F²

on all ``m`` samples of each task (no inner/outer split). Trained by gradient steps or L-BFGS.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ._linear import predict, task_grad
from .registry import MethodSpec, register
from .stepper import Stepper, TrainState


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


class LbfgsState(NamedTuple):
    """L-BFGS's state, carried from step to step: the leaves it updates ``[B, W]`` and the optimizer
    holding its curvature history."""

    leaves: list[torch.Tensor]
    optimizer: torch.optim.LBFGS


def init_lbfgs(params: MultitaskParams) -> LbfgsState:
    """Fresh L-BFGS state at ``params``: up to 20 iterations a step, strong-Wolfe line search."""
    leaves = [params.B.clone().requires_grad_(True), params.W.clone().requires_grad_(True)]
    opt = torch.optim.LBFGS(leaves, lr=1.0, max_iter=20, history_size=20, line_search_fn="strong_wolfe")
    return LbfgsState(leaves, opt)


def lbfgs_step(opt: LbfgsState, X: torch.Tensor, y: torch.Tensor, balance: float) -> MultitaskParams:
    """One L-BFGS step (up to 20 iterations) on ``F``; updates ``opt`` in place, returns the new parameters."""
    B, W = opt.leaves

    def closure() -> torch.Tensor:
        opt.optimizer.zero_grad()
        g = multitask_grad(MultitaskParams(B.detach(), W.detach()), X, y, balance)
        B.grad, W.grad = g.B, g.W
        return multitask_loss(MultitaskParams(B.detach(), W.detach()), X, y, balance)

    opt.optimizer.step(closure)
    return MultitaskParams(B.detach().clone(), W.detach().clone())


def init_heads(n: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """Heads start at 0, as the meta-learning head does."""
    return torch.zeros(n, width, dtype=like.dtype, device=like.device)


def multitask_stepper(cfg, tasks, source) -> Stepper:
    """Gradient steps of size ``method.beta`` on ``F`` (``method.optimizer = "gd"``), or L-BFGS
    steps whose curvature history is part of the training state (``"lbfgs"``). Every step reads the
    whole pool, all ``m`` samples of each task (layout ``merged``)."""
    me = cfg.method

    def init(p) -> TrainState:
        params = MultitaskParams(p.B, init_heads(source.num_tasks, p.B.shape[1], p.B))
        return TrainState(params, init_lbfgs(params) if me.optimizer == "lbfgs" else None)

    def step(state: TrainState, data) -> TrainState:
        (batch,) = data  # the whole pool, one chunk
        X, y = batch.merged()
        if state.opt is not None:
            return TrainState(lbfgs_step(state.opt, X, y, me.balance), state.opt)
        g = multitask_grad(state.params, X, y, me.balance)
        return TrainState(MultitaskParams(state.params.B - me.beta * g.B, state.params.W - me.beta * g.W), None)

    return Stepper(init, step)


SPEC = register(
    MethodSpec(
        name="multitask",
        label="multi-task",
        kind="baseline",
        stepper=multitask_stepper,
        layouts=("merged",),
        regimes=("finite",),
        adapt_estimator="ls_top_k",  # its B has another scale: adapt by least squares on its top-k directions
        series_overrides=lambda scale: (f"run.steps={scale.multitask_steps}",),
        learner=False,
    )
)
