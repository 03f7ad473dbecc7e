"""Models (MATH.md §2): the two-layer linear network and its functional form for ``torch.func``."""

from __future__ import annotations

from typing import NamedTuple

import torch


class LinearParams(NamedTuple):
    """Parameters of ``f(x) = xᵀ B w``: ``B (d, k')`` representation, ``w (k',)`` head.

    Gradients and updates use the same tuple, so ``params - β·grad`` is :func:`axpy`.
    """

    B: torch.Tensor
    w: torch.Tensor


def init_linear(
    d: int,
    width: int,
    *,
    init_scale: float = 1.0,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> LinearParams:
    """``B_0`` entries i.i.d. ``N(0, init_scale²/d)``, ``w_0 = 0`` (MATH.md §2)."""
    B = torch.randn(d, width, generator=generator, dtype=torch.float64) * (init_scale / d**0.5)
    return LinearParams(B.to(dtype=dtype, device=device), torch.zeros(width, dtype=dtype, device=device))


def axpy(params: NamedTuple, grads: NamedTuple, step: float) -> NamedTuple:
    """``params - step * grads``, leaf by leaf, same tuple type."""
    return type(params)(*(p - step * g for p, g in zip(params, grads)))


def linear_forward(params: dict[str, torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    """Functional two-layer linear net: ``X (..., n, d)`` -> predictions ``(..., n)``."""
    return (X @ params["B"]) @ params["w"]


def squared_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``‖pred − y‖² / (2n)`` over the last axis (MATH.md §2)."""
    return 0.5 * ((pred - y) ** 2).mean(-1)
