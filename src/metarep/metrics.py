"""Representation metrics (MATH.md §6). All are invariant to ``B → B O`` for orthogonal ``O``.

Computed in float64 whatever the run's dtype.
"""

from __future__ import annotations

import math

import torch

from .tasks import LinearRepTasks


def signal_eigs(B: torch.Tensor, B_star: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of ``B*ᵀ B Bᵀ B*`` ascending, ``(k,)``."""
    Psi = B_star.T @ B.to(B_star)
    return torch.linalg.eigvalsh(Psi @ Psi.T)


def perp_norms(B: torch.Tensor, B_perp: torch.Tensor) -> tuple[float, float]:
    """``(‖B⊥ᵀB‖₂², ‖B⊥ᵀB‖_F²)``."""
    Phi = B_perp.T @ B.to(B_perp)
    if Phi.numel() == 0:
        return 0.0, 0.0
    s = torch.linalg.svdvals(Phi)
    return float(s[0] ** 2), float((s**2).sum())


def subspace_sin(B: torch.Tensor, B_star: torch.Tensor) -> float:
    """Sine of the largest principal angle between span(B*) and the top-k left singular vectors of B.

    With width ``k' < k`` the top-``k'`` directions are compared (is span(B) inside span(B*)?).
    """
    B = B.to(B_star)
    k = min(B_star.shape[1], B.shape[1])
    U = torch.linalg.svd(B, full_matrices=False).U[:, :k]
    resid = U - B_star @ (B_star.T @ U)  # (I − B*B*ᵀ) U
    return float(torch.linalg.matrix_norm(resid, ord=2).clamp(max=1.0))


def span_energy(B: torch.Tensor, B_star: torch.Tensor) -> float:
    """Fraction of B's energy inside span(B*): ``‖B*ᵀB‖_F² / ‖B‖_F²`` (0 for B = 0)."""
    B = B.to(B_star)
    total = float((B**2).sum())
    return float(((B_star.T @ B) ** 2).sum()) / total if total > 0 else 0.0


def effective_rank(B: torch.Tensor) -> float:
    """Entropy effective rank ``exp(−Σ p_i log p_i)``, ``p_i = s_i / Σ s`` over singular values of B."""
    s = torch.linalg.svdvals(B.to(torch.float64))
    total = float(s.sum())
    if total == 0.0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return math.exp(float(-(p * p.log()).sum()))


def head_norm(w: torch.Tensor) -> float:
    """``‖w‖`` for one head ``(k',)``; the root-mean-square head norm for one head per task ``(N, k')``."""
    w = w.to(torch.float64)
    if w.dim() == 1:
        return float(torch.linalg.vector_norm(w))
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


def representation_metrics(B: torch.Tensor, w: torch.Tensor, tasks: LinearRepTasks) -> dict[str, object]:
    """All metrics of MATH.md §6 for one state, as plain Python numbers and lists."""
    perp2, perpF = perp_norms(B, tasks.B_perp)
    sig = signal_eigs(B, tasks.B_star).tolist()
    return {
        "signal_eigs": sig,
        "perp_norm2": perp2,
        "perp_fro2": perpF,
        "perp_rel": perp2 / sig[-1] if sig[-1] > 0 else math.inf,  # ‖B⊥ᵀB‖₂² / ‖B*ᵀB‖₂², scale-free
        "subspace_sin": subspace_sin(B, tasks.B_star),
        "span_energy": span_energy(B, tasks.B_star),
        "effective_rank": effective_rank(B),
        "head_norm": head_norm(w),
    }
