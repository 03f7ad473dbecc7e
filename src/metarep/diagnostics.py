"""Representation diagnostics for any :class:`~metarep.learner.MetaLearner` (or any feature map):
the real-network analogues of the linear theory's quantities (MATH.md §4–5), measured on held-out
inputs and tracked over training.

Let ``Φ ∈ R^{n×h}`` be the features of ``n`` held-out samples (rows), centred over the samples
(``Φ ← Φ − 1μᵀ``: the head's bias supplies any constant), with singular values ``σ_1 ≥ … ≥ σ_r``.

- **effective rank** ``exp(−Σ p_i log p_i)``, ``p_i = σ_i / Σ_j σ_j`` (Roy & Vetterli 2007): between 1
  (one direction) and ``r`` (all directions equally used).
- **energy outside the top-k principal subspace** ``Σ_{i>k} σ_i² / Σ_i σ_i² = ‖(I − P_k)Φ‖²_F / ‖Φ‖²_F``:
  the share of the features' energy in directions beyond the ``k`` a task family needs; the analogue
  of ``‖B⊥ᵀB‖²_F / ‖B‖²_F`` when the true subspace is unknown.
- **energy outside a reference span** ``‖(I − QQᵀ)Φ‖²_F / ‖Φ‖²_F``, ``Q`` an orthonormal basis of the
  centred reference functions at the same inputs (for sinusoids ``A sin(x + φ)``: ``sin x, cos x``):
  the exact analogue of ``‖B⊥ᵀB‖²_F / ‖B‖²_F`` when the task family's span is known.
- **principal angles** between the top-``k`` subspaces (in sample space, so networks of different
  widths compare) of two feature maps on the same inputs: ``cos θ_i = σ_i(U_Aᵀ U_B)``.
- **head norm** ``‖W‖_F`` of the head's weight parameters (the meta-learned initial head ``w``).

For methods whose inner loop adapts the features (MAML, FO-MAML, Reptile) the diagnostics measure the
meta-learned features, before adaptation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

METRICS = ("effective_rank", "energy_outside_topk", "energy_outside_reference", "feature_energy", "head_norm")


def _centred(phi: Any) -> torch.Tensor:
    """``(n, h)`` float64, each column minus its mean over the samples."""
    phi = torch.as_tensor(phi).detach().to("cpu", torch.float64)
    if phi.ndim != 2 or phi.shape[0] < 2:
        raise ValueError(f"features: must be a matrix (n >= 2 samples, h), got shape {tuple(phi.shape)}")
    return phi - phi.mean(0, keepdim=True)


def effective_rank(phi: Any) -> float:
    """Effective rank ``exp(H(p))``, ``p_i = σ_i / Σσ`` of the centred features ``phi (n, h)``; 0 if all vanish."""
    s = torch.linalg.svdvals(_centred(phi))
    if float(s.sum()) == 0.0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def energy_outside_topk(phi: Any, k: int) -> float:
    """``Σ_{i>k} σ_i² / Σ σ_i²`` of the centred features ``phi (n, h)``: the share outside the top-``k`` subspace."""
    if k < 0:
        raise ValueError(f"k: must be >= 0, got {k}")
    s2 = torch.linalg.svdvals(_centred(phi)) ** 2
    total = float(s2.sum())
    return float(s2[k:].sum()) / total if total > 0 else 0.0


def energy_outside_span(phi: Any, reference: Any) -> float:
    """``‖(I − QQᵀ)Φ‖²_F / ‖Φ‖²_F``: the share of the centred features ``phi (n, h)`` outside the span of the
    centred ``reference (n, r)`` (functions evaluated at the same ``n`` inputs)."""
    P, R = _centred(phi), _centred(reference)
    if R.shape[0] != P.shape[0]:
        raise ValueError(f"reference: {R.shape[0]} samples, features have {P.shape[0]}")
    U, s, _ = torch.linalg.svd(R, full_matrices=False)
    Q = U[:, s > s.max() * 1e-10]  # orthonormal basis of span(R)
    total = float((P**2).sum())
    return float(((P - Q @ (Q.T @ P)) ** 2).sum()) / total if total > 0 else 0.0


def principal_subspace(phi: Any, k: int) -> torch.Tensor:
    """Orthonormal ``(n, k)`` basis of the top-``k`` left singular vectors of the centred features."""
    U = torch.linalg.svd(_centred(phi), full_matrices=False)[0]
    if not 1 <= k <= U.shape[1]:
        raise ValueError(f"k: must be between 1 and {U.shape[1]}, got {k}")
    return U[:, :k]


def principal_angles(phi_a: Any, phi_b: Any, k: int) -> torch.Tensor:
    """Principal angles (radians, ascending) between the top-``k`` subspaces of two feature maps on the same
    inputs, ``phi_a (n, h_a)`` and ``phi_b (n, h_b)``: ``θ_i = arccos σ_i(U_Aᵀ U_B)``, ``(k,)``."""
    if torch.as_tensor(phi_a).shape[0] != torch.as_tensor(phi_b).shape[0]:
        raise ValueError("features: the two feature maps must be evaluated on the same samples")
    c = torch.linalg.svdvals(principal_subspace(phi_a, k).T @ principal_subspace(phi_b, k))
    return torch.arccos(c.clamp(-1.0, 1.0))  # σ descending: θ ascending


def head_norm(head: nn.Module | None) -> float:
    """``‖W‖_F`` over the head's parameters named ``*weight`` (all of its parameters if none is); nan without a head."""
    if head is None:
        return math.nan
    named = dict(head.named_parameters())
    picked = [p for n, p in named.items() if n.split(".")[-1] == "weight"] or list(named.values())
    return float(torch.sqrt(sum((p.detach().double() ** 2).sum() for p in picked)))


def features_of(learner: Any, X: torch.Tensor) -> torch.Tensor:
    """The learner's current features of held-out inputs, one task at a time as in training.

    ``X (T, n, *input)`` -> ``(T·n, h)``; ``learner`` is a :class:`~metarep.learner.MetaLearner` (its
    ``features`` module, the head split off) or any module / callable ``(n, *input) -> (n, h)``.
    """
    fn = getattr(learner, "features", learner)
    if getattr(learner, "head", 0) is None:
        raise ValueError("learner: has no separate head (head=None), so its features are not defined")
    module = fn if isinstance(fn, nn.Module) else None
    was_training = module.training if module is not None else False
    try:
        if module is not None:
            module.train(False)
        with torch.no_grad():
            dtype = next(module.parameters()).dtype if module is not None else X.dtype
            x = X.to(dtype) if X.is_floating_point() else X
            phi = torch.func.vmap(fn, randomness="different")(x)
    finally:
        if module is not None:
            module.train(was_training)
    return phi.reshape(-1, phi.shape[-1])


MEASUREMENTS = 25  # measurements over training when a command is asked for diagnostics


def measure_every(iterations: int, points: int = MEASUREMENTS) -> int:
    """Outer steps between two measurements, so that ``iterations`` steps are measured about ``points`` times."""
    return max(1, iterations // points)


def _head_from_support(learner: Any) -> bool:
    """Whether ``learner``'s method builds its head from each task's support set (its own head unused)."""
    method = getattr(learner, "method", None)
    if not isinstance(method, str):
        return False
    from .methods import registry

    return registry.get(method).start is not None


def measure(
    learner: Any, X: torch.Tensor, k: int, reference: torch.Tensor | None = None, head: nn.Module | None = None
) -> dict[str, float]:
    """Every diagnostic of :data:`METRICS` for ``learner``'s features of ``X (T, n, *input)``.

    ``reference (T·n, r)``: functions of the task family at the same inputs (``energy_outside_reference``
    is nan without it); ``head``: defaults to ``learner.head``, none (``head_norm`` nan) for a method whose
    head is built from each task's support set (ProtoNets). ``feature_energy`` is ``‖Φ‖²_F / n``.
    """
    phi = features_of(learner, X)
    c = _centred(phi)
    if head is None and not _head_from_support(learner):  # ProtoNets: the head is built per task, none to measure
        head = getattr(learner, "head", None)
    return {
        "effective_rank": effective_rank(phi),
        "energy_outside_topk": energy_outside_topk(phi, k),
        "energy_outside_reference": math.nan if reference is None else energy_outside_span(phi, reference),
        "feature_energy": float((c**2).sum()) / c.shape[0],
        "head_norm": head_norm(head),
    }


@dataclass(frozen=True)
class Probe:
    """Held-out inputs to measure on: ``X (T, n, *input)``, ``k`` for the top-k energy, an optional
    ``reference (T·n, r)`` (see :func:`measure`)."""

    X: torch.Tensor
    k: int
    reference: torch.Tensor | None = None


def fit_tracked(
    learner: Any,
    batches: Iterable | tuple,
    iterations: int,
    every: int,
    probe: Probe,
    *,
    progress: bool | None = False,
    allow_long: bool = False,
) -> list[dict[str, float]]:
    """``learner.fit`` for ``iterations`` outer steps in chunks of ``every``, measuring ``probe`` before the first
    step and after each chunk. Same training as one ``fit`` call on the same ``batches`` (an iterable of
    batches, or one batch used at every step; ``allow_long`` as ``fit``'s). Returns one row per
    measurement: ``step`` and the :data:`METRICS`."""
    from .limits import check_fit

    check_fit(iterations, allow_long=allow_long)
    if every < 1:
        raise ValueError(f"every: must be >= 1, got {every}")
    one_batch = isinstance(batches, tuple) and all(isinstance(t, torch.Tensor) for t in batches)
    stream = batches if one_batch else iter(batches)  # a list continues where the last chunk stopped
    rows = [{"step": 0, **measure(learner, probe.X, probe.k, probe.reference)}]
    done = 0
    while done < iterations:
        n = min(every, iterations - done)
        learner.fit(stream, iterations=n, progress=progress, allow_long=allow_long)
        done += n
        rows.append({"step": done, **measure(learner, probe.X, probe.k, probe.reference)})
    return rows


def angles_table(features: Mapping[str, torch.Tensor], k: int) -> list[dict[str, Any]]:
    """Principal angles (degrees) between every pair of named feature matrices on the same inputs:
    rows ``a``, ``b``, ``k``, ``mean_sin2`` (``Σ sin²θ_i / k``, 0 = same subspace, 1 = orthogonal), ``max_deg``."""
    names, rows = list(features), []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            th = principal_angles(features[a], features[b], k)
            rows.append(
                {
                    "a": a,
                    "b": b,
                    "k": k,
                    "mean_sin2": float((th.sin() ** 2).mean()),
                    "max_deg": float(th.max() * 180 / math.pi),
                }
            )
    return rows


# ---------------------------------------------------------------------- tables and figures

PANELS = (
    ("energy_outside_reference", "energy outside the task span\n" + r"$\|(I-QQ^\top)\Phi\|_F^2/\|\Phi\|_F^2$"),
    ("energy_outside_topk", "energy outside the top-k subspace\n" + r"$\sum_{i>k}\sigma_i^2/\sum_i\sigma_i^2$"),
    ("effective_rank", "effective rank of the features"),
    ("head_norm", r"head norm $\|W\|_F$"),
    ("feature_energy", r"feature energy $\|\Phi\|_F^2/n$"),
)


def tidy_tracked(tracked: Mapping[str, list[dict[str, float]]]) -> list[dict[str, Any]]:
    """Rows ``method, step, metric, value`` of tracked diagnostics (``{method: rows of fit_tracked}``)."""
    return [
        {"method": m, "step": int(r["step"]), "metric": key, "value": r[key]}
        for m, rows in tracked.items()
        for r in rows
        for key in METRICS
    ]


def draw_tracked(axes, curves: Mapping[str, tuple[Any, Mapping[str, Any]]], panels=PANELS, spread=None) -> None:
    """One panel per ``(metric, title)`` of ``panels`` on ``axes``: a line per method.

    ``curves``: ``{label: (steps, {metric: values})}``; ``spread``: the same with ± bands (optional).
    Panels whose metric is nan for every method are left with a note.
    """
    import numpy as np

    for ax, (key, title) in zip(axes, panels):
        drawn = False
        for i, (label, (steps, vals)) in enumerate(curves.items()):
            y = np.asarray(vals[key], dtype=float)
            if not np.isfinite(y).any():
                continue
            style = {"color": "k", "ls": "--"} if "pretrain" in label or "no meta" in label else {"color": f"C{i}"}
            ax.plot(steps, y, lw=1.5, label=label, **style)
            if spread is not None:
                s = np.asarray(spread[label][1][key], dtype=float)
                ax.fill_between(steps, y - s, y + s, color=ax.lines[-1].get_color(), alpha=0.2, lw=0)
            drawn = True
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("outer step")
        if not drawn:
            ax.text(0.5, 0.5, "not measured here", ha="center", va="center", transform=ax.transAxes, color="gray")
    next((ax for ax in axes if ax.lines), axes[0]).legend(fontsize=7)


def save_tracked(
    tracked: Mapping[str, list[dict[str, float]]], angles: list[dict], out, title: str, label=lambda m: m
) -> list:
    """Write ``diagnostics.csv`` (tidy), ``angles.csv`` and ``diagnostics.png`` into ``out``; returns the paths.

    ``label(method)``: how the figure names a method.
    """
    from pathlib import Path

    from .files import write_csv
    from .plots import figure, save_figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "diagnostics.csv", tidy_tracked(tracked))
    paths = [out / "diagnostics.csv"]
    if angles:
        write_csv(out / "angles.csv", angles)
        paths.append(out / "angles.csv")
    curves = {
        label(m): ([r["step"] for r in rows], {k: [r[k] for r in rows] for k in METRICS}) for m, rows in tracked.items()
    }
    panels = [p for p in PANELS if any(math.isfinite(r[p[0]]) for rows in tracked.values() for r in rows)]
    fig = figure(figsize=(4 * len(panels), 3.8))
    draw_tracked(fig.subplots(1, len(panels), squeeze=False)[0], curves, panels)
    fig.suptitle(title, fontsize=10, y=1.04)
    save_figure(fig, out / "diagnostics.png")
    return [*paths, out / "diagnostics.png"]


def summary_lines(tracked: Mapping[str, list[dict[str, float]]], k: int, label=lambda m: m) -> list[str]:
    """A table for a terminal: each method's effective rank, top-``k`` energy and head norm, first -> last."""
    columns = {"effective_rank": "effective rank", "energy_outside_topk": f"energy outside top-{k}"}
    if any(math.isfinite(r["energy_outside_reference"]) for rows in tracked.values() for r in rows):
        columns["energy_outside_reference"] = "energy outside the task span"
    columns["head_norm"] = "head norm"
    lines = [
        f"  features of held-out tasks, first -> last measurement (k = {k}):",
        f"  {'':18}" + "".join(f"{title:>{max(22, len(title) + 4)}}" for title in columns.values()),
    ]
    for method, rows in tracked.items():
        a, b = rows[0], rows[-1]
        cells = [f"{f'{a[key]:.3g} -> {b[key]:.3g}':>{max(22, len(t) + 4)}}" for key, t in columns.items()]
        lines.append(f"  {label(method):18}" + "".join(cells))
    return lines
