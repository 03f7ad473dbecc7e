"""Method of moments (MATH.md §3): ``B̂`` = top-k eigenvectors of ``mean(y² x xᵀ)`` over all samples.

``E[y² x xᵀ] = 2S + (tr Σ* + σ²) I``, so its top-k eigenspace is span(B*). Needs ``k``.
"""

from __future__ import annotations

import torch

from ..models import LinearParams
from .registry import MethodSpec, register
from .stepper import Stepper, TrainState


def moments_estimate(X: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """Orthonormal ``(d, k)`` basis of the top-k eigenspace of ``mean(y² x xᵀ)``.

    ``X (N, m, d)``, ``y (N, m)``; computed in float64 and returned in ``X``'s dtype.
    """
    d = X.shape[-1]
    Xf = X.reshape(-1, d).to(torch.float64)
    yf = y.reshape(-1).to(torch.float64)
    M = (Xf * (yf**2)[:, None]).T @ Xf / Xf.shape[0]  # mean y² x xᵀ, (d, d)
    _, vecs = torch.linalg.eigh(M)  # ascending eigenvalues
    return vecs[:, -k:].flip(1).to(X.dtype)


def moments_stepper(cfg, tasks, source) -> Stepper:
    """One step is the whole fit: ``B̂`` of width k from all samples of the pool, head 0."""
    k = cfg.task.k

    def step(state: TrainState, data) -> TrainState:
        (batch,) = data  # the whole pool, one chunk
        X, y = batch.merged()
        B_hat = moments_estimate(X, y, k)
        return TrainState(LinearParams(B_hat, torch.zeros(k, dtype=B_hat.dtype, device=B_hat.device)))

    return Stepper(TrainState, step, one_shot=True)


SPEC = register(
    MethodSpec(
        name="moments",
        label="method of moments",
        kind="baseline",
        stepper=moments_stepper,
        layouts=("merged",),
        regimes=("finite",),
        adapt_estimator="ls_top_k",
        learner=False,
    )
)
