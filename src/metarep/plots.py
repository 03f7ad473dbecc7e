"""Figures (matplotlib, Agg backend), written atomically as PNG."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .io import atomic_write_bytes  # noqa: E402


def save_figure(fig, path: str | Path, dpi: int = 120) -> None:
    """Render ``fig`` to PNG and write it atomically; closes the figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_dynamics(history: list[dict], summary: dict, title: str, path: str | Path) -> None:
    """Signal eigenvalues and ``‖B⊥ᵀB‖₂²`` over the steps, with the predicted limits drawn in.

    Left: eigenvalues of ``B*ᵀBBᵀB*`` (solid) and their predicted limits (dashed).
    Right, log–log: ``‖B⊥ᵀB_t‖₂²`` and the predicted asymptote ``C / t`` (dashed).
    """
    steps = [r["step"] for r in history]
    k = len(summary["signal_eigs"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.cm.viridis([j / max(k - 1, 1) for j in range(k)])
    for j in range(k):
        ax1.plot(steps, [r[f"signal_eig_{j + 1}"] for r in history], color=colors[j], lw=1.6)
        ax1.axhline(summary["predicted_signal_eigs"][j], color=colors[j], ls="--", lw=1)
    ax1.set_xscale("symlog", linthresh=max(steps[1] if len(steps) > 1 else 1, 1))
    ax1.set_xlim(left=0)
    ax1.set_xlabel("step (log scale after the first evaluation)")
    ax1.set_ylabel(r"eigenvalues of $B_*^\top B B^\top B_*$")
    ax1.set_title("learning: signal eigenvalues (dashed: predicted limit)")

    pos = [(s, r["perp_norm2"]) for s, r in zip(steps, history) if s > 0 and r["perp_norm2"] > 0]
    if pos:
        xs, ys = zip(*pos)
        ax2.loglog(xs, ys, color="C3", lw=1.6, label=r"$\|B_\perp^\top B_t\|_2^2$")
        c = summary["predicted_perp_rate"]
        ax2.loglog(xs, [c / s for s in xs], color="k", ls="--", lw=1, label=f"predicted {c:.3g} / t")
        ax2.set_ylim(min(min(ys), c / xs[-1]) / 3, max(ys) * 3)
        ax2.legend(loc="lower left")
    ax2.set_xlabel("step")
    ax2.set_title("unlearning: energy outside span(B*)")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
