"""Representation metrics (MATH.md §6). All are invariant to ``B → B O`` for orthogonal ``O``.

Computed in float64 whatever the run's dtype.
"""

from __future__ import annotations

import math

import torch

from .tasks import LinearRepTasks


def signal_eigs(B: torch.Tensor, B_star: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of ``B*ᵀ B Bᵀ B*`` ascending, ``(..., k)``; leading axes of ``B`` and ``B*`` are runs."""
    Psi = B_star.mT @ B.to(B_star)
    return torch.linalg.eigvalsh(Psi @ Psi.mT)


def _perp_norms(B: torch.Tensor, B_perp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(‖B⊥ᵀB‖₂², ‖B⊥ᵀB‖_F²)`` as tensors over the leading (run) axes."""
    Phi = B_perp.mT @ B.to(B_perp)
    if Phi.numel() == 0:
        zero = Phi.new_zeros(Phi.shape[:-2])
        return zero, zero
    s = torch.linalg.svdvals(Phi)
    return s[..., 0] ** 2, (s**2).sum(-1)


def perp_norms(B: torch.Tensor, B_perp: torch.Tensor) -> tuple[float, float]:
    """``(‖B⊥ᵀB‖₂², ‖B⊥ᵀB‖_F²)``."""
    top, fro = _perp_norms(B, B_perp)
    return float(top), float(fro)


def _subspace_sin(B: torch.Tensor, B_star: torch.Tensor) -> torch.Tensor:
    B = B.to(B_star)
    k = min(B_star.shape[-1], B.shape[-1])
    U = torch.linalg.svd(B, full_matrices=False).U[..., :k]
    resid = U - B_star @ (B_star.mT @ U)  # (I − B*B*ᵀ) U
    return torch.linalg.matrix_norm(resid, ord=2).clamp(max=1.0)


def subspace_sin(B: torch.Tensor, B_star: torch.Tensor) -> float:
    """Sine of the largest principal angle between span(B*) and the top-k left singular vectors of B.

    With width ``k' < k`` the top-``k'`` directions are compared (is span(B) inside span(B*)?).
    """
    return float(_subspace_sin(B, B_star))


def _span_energy(B: torch.Tensor, B_star: torch.Tensor) -> torch.Tensor:
    B = B.to(B_star)
    total = (B**2).sum((-2, -1))
    inside = ((B_star.mT @ B) ** 2).sum((-2, -1))
    return torch.where(total > 0, inside / total, 0.0)


def span_energy(B: torch.Tensor, B_star: torch.Tensor) -> float:
    """Fraction of B's energy inside span(B*): ``‖B*ᵀB‖_F² / ‖B‖_F²`` (0 for B = 0)."""
    return float(_span_energy(B, B_star))


def _rank_entropy(B: torch.Tensor) -> torch.Tensor:
    """``−Σ p_i log p_i``, ``p_i = s_i / Σ s`` over singular values of B; ``−inf`` for B = 0 (rank ``e^−∞ = 0``)."""
    s = torch.linalg.svdvals(B.to(torch.float64))
    total = s.sum(-1)
    p = s / total.unsqueeze(-1)
    h = -torch.where(p > 0, p * p.log(), 0.0).sum(-1)
    return torch.where(total > 0, h, -math.inf)


def effective_rank(B: torch.Tensor) -> float:
    """Entropy effective rank ``exp(−Σ p_i log p_i)``, ``p_i = s_i / Σ s`` over singular values of B."""
    return math.exp(float(_rank_entropy(B)))


def _head_norm(w: torch.Tensor) -> torch.Tensor:
    """``‖w‖`` of one head ``(..., k')`` per leading (run) index."""
    return torch.linalg.vector_norm(w.to(torch.float64), dim=-1)


def head_norm(w: torch.Tensor) -> float:
    """``‖w‖`` for one head ``(k',)``; the root-mean-square head norm for one head per task ``(N, k')``."""
    if w.dim() == 1:
        return float(_head_norm(w))
    w = w.to(torch.float64)
    return float((w**2).sum(1).mean().sqrt()) if w.numel() else 0.0


# the scalar columns of a run's history and summary, besides the signal eigenvalues (and perp_rate,
# which the training loop adds: t · perp_norm2)
SCALAR_METRICS = (
    "perp_norm2",
    "perp_fro2",
    "perp_rel",
    "perp_rate",
    "subspace_sin",
    "span_energy",
    "effective_rank",
    "head_norm",
)


def _metrics(sig: list[float], perp2: float, perpF: float, sin: float, energy: float, entropy: float, head: float):
    return {
        "signal_eigs": sig,
        "perp_norm2": perp2,
        "perp_fro2": perpF,
        "perp_rel": perp2 / sig[-1] if sig[-1] > 0 else math.inf,  # ‖B⊥ᵀB‖₂² / ‖B*ᵀB‖₂², scale-free
        "subspace_sin": sin,
        "span_energy": energy,
        "effective_rank": math.exp(entropy),
        "head_norm": head,
    }


def representation_metrics(B: torch.Tensor, w: torch.Tensor, tasks: LinearRepTasks) -> dict[str, object]:
    """All metrics of MATH.md §6 for one state, as plain Python numbers and lists."""
    perp2, perpF = perp_norms(B, tasks.B_perp)
    sig = signal_eigs(B, tasks.B_star).tolist()
    sin, energy = subspace_sin(B, tasks.B_star), span_energy(B, tasks.B_star)
    return _metrics(sig, perp2, perpF, sin, energy, float(_rank_entropy(B)), head_norm(w))


def representation_metrics_batch(
    B: torch.Tensor, w: torch.Tensor, B_star: torch.Tensor, B_perp: torch.Tensor
) -> list[dict[str, object]]:
    """:func:`representation_metrics` of ``R`` stacked runs at once: ``B (R, d, k')``, one head each
    ``w (R, k')``, their ground truths ``B_star (R, d, k)``, ``B_perp (R, d, d−k)``; one dict per run.

    The same formulas on a leading run axis (batched linear algebra, so equal to the lone run's numbers to
    float64 rounding), read back to the host in one transfer."""
    cols = [
        signal_eigs(B, B_star),
        *(x.unsqueeze(-1) for x in _perp_norms(B, B_perp)),
        _subspace_sin(B, B_star).unsqueeze(-1),
        _span_energy(B, B_star).unsqueeze(-1),
        _rank_entropy(B).unsqueeze(-1),
        _head_norm(w).to(B_star).unsqueeze(-1),
    ]
    k = cols[0].shape[-1]
    return [_metrics(r[:k], *r[k:]) for r in torch.cat(cols, -1).tolist()]
