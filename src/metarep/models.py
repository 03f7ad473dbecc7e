"""Models (MATH.md §2): the two-layer linear network, the ReLU networks, and their functional forms
for ``torch.func`` (the loss lives with the engine, :mod:`metarep.engine`)."""

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


class Relu3Params(NamedTuple):
    """Parameters of ``f(x) = wᵀ relu(Cᵀ relu(Bᵀx))``: ``B (d, k')``, ``w (k',)``, ``C (k', k')``."""

    B: torch.Tensor
    w: torch.Tensor
    C: torch.Tensor


def init_model(
    kind: str,
    d: int,
    width: int,
    *,
    init_scale: float = 1.0,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> NamedTuple:
    """Initial parameters of ``kind``: ``B`` as in :func:`init_linear`, ``w = 0``; for ``relu3``
    also ``C`` with entries ``N(0, 2/k')`` (He initialisation)."""
    p = init_linear(d, width, init_scale=init_scale, generator=generator, dtype=dtype, device=device)
    if kind != "relu3":
        return p
    C = torch.randn(width, width, generator=generator, dtype=torch.float64) * (2.0 / width) ** 0.5
    return Relu3Params(p.B, p.w, C.to(dtype=dtype, device=device))


def axpy(params: NamedTuple, grads: NamedTuple, step: float) -> NamedTuple:
    """``params - step * grads``, leaf by leaf, same tuple type."""
    return type(params)(*(p - step * g for p, g in zip(params, grads)))


def linear_forward(params: dict[str, torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    """Functional two-layer linear net: ``X (..., n, d)`` -> predictions ``(..., n)``."""
    return (X @ params["B"]) @ params["w"]


def relu2_forward(params: dict[str, torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    """Two-layer ReLU net ``wᵀ relu(Bᵀx)``: ``X (..., n, d)`` -> ``(..., n)``."""
    return torch.relu(X @ params["B"]) @ params["w"]


def relu3_forward(params: dict[str, torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    """Three-layer ReLU net ``wᵀ relu(Cᵀ relu(Bᵀx))``: ``X (..., n, d)`` -> ``(..., n)``."""
    return torch.relu(torch.relu(X @ params["B"]) @ params["C"]) @ params["w"]


FORWARDS = {"linear": linear_forward, "relu2": relu2_forward, "relu3": relu3_forward}
