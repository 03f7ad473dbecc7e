"""Write a run's outputs: ``config.json``, ``history.csv``, ``summary.json``, ``dynamics.png``."""

from __future__ import annotations

from pathlib import Path

from .io import git_commit, versions, write_csv, write_json
from .plots import plot_dynamics
from .train import RunResult


def save_run(result: RunResult, out_dir: str | Path) -> Path:
    """Write every output of ``result`` into ``out_dir`` (which must exist), each file atomically.

    ``summary.json`` is written last, so a folder holding one is a finished run; its ``status``
    says whether the run completed, diverged or was interrupted.
    """
    out = Path(out_dir)
    cfg = result.config
    write_json(
        out / "config.json",
        {"config": cfg.to_dict(), "digest": cfg.digest(), "seeds": result.seeds, "versions": versions(), "git_commit": git_commit()},
    )
    write_csv(out / "history.csv", result.history)
    title = (
        f"{cfg.method.name}, {result.summary['regime']} tasks"
        f"{'' if cfg.infinite else f' (N={cfg.data.tasks})'}, d={cfg.task.d}, k={cfg.task.k}, "
        f"width={cfg.width}, α={cfg.method.alpha}, β={cfg.method.beta}, m_in={cfg.data.m_in}"
        + ("" if result.status == "complete" else f"  [{result.status.upper()}]")
    )
    plot_dynamics(result.history, result.summary, title, out / "dynamics.png")
    write_json(out / "summary.json", {**result.summary, "message": result.message})
    return out
