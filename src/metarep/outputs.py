"""A run's outputs: ``config.json``, ``params.npz``, ``history.csv``, ``dynamics.png``,
``summary.json``; and :func:`load_run` to read a finished run back."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .config import Config, from_dict
from .files import atomic_write_bytes, write_csv, write_json, write_result
from .models import LinearParams, Relu3Params
from .plots import plot_dynamics
from .tasks import LinearRepTasks
from .train import DTYPES, RunResult


class LoadedRun(NamedTuple):
    """A finished run read back from its folder."""

    config: Config
    params: LinearParams  # final (B, w) (and C for relu3), in the run's dtype, on the CPU
    tasks: LinearRepTasks  # the run's ground truth (B*, Σ*, σ²)
    summary: dict


def save_params(path: str | Path, result: RunResult) -> None:
    """Final parameters and ground truth as ``.npz`` (read back without unpickling)."""
    buf = io.BytesIO()
    B, head = (p.detach().cpu() for p in result.params[:2])
    arrays = {
        "B": B.numpy(),
        # one head (k',); for multitask the mean of its per-task heads, which are kept as "W" (N, k')
        "w": (head if head.dim() == 1 else head.mean(0)).numpy(),
        **({"W": head.numpy()} if head.dim() == 2 else {}),
        # further layers of non-linear models (e.g. C of relu3), under their field names
        **{k: v.detach().cpu().numpy() for k, v in result.params._asdict().items() if k not in ("B", "w", "W")},
        "B_star": result.tasks.B_star.cpu().numpy(),
        "sigma_diag": result.tasks.sigma_diag.cpu().numpy(),
    }
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_run(run_dir: str | Path) -> LoadedRun:
    """Read the config, final parameters, ground truth and summary of a finished run.

    Raises ``FileNotFoundError`` when ``run_dir`` does not hold a finished run.
    """
    d = Path(run_dir)
    for name in ("config.json", "params.npz", "summary.json"):
        if not (d / name).is_file():
            raise FileNotFoundError(f"{d}: not a finished metarep run (no {name})")
    cfg = from_dict(json.loads((d / "config.json").read_text())["config"])
    with np.load(d / "params.npz", allow_pickle=False) as z:
        arr = {k: torch.from_numpy(z[k].copy()) for k in z.files}
    dtype = DTYPES[cfg.run.dtype]
    params = LinearParams(arr["B"].to(dtype), arr["w"].to(dtype))
    if cfg.model.kind == "relu3":
        params = Relu3Params(params.B, params.w, arr["C"].to(dtype))
    tasks = LinearRepTasks(arr["B_star"], arr["sigma_diag"], cfg.task.sigma2, dtype)
    return LoadedRun(cfg, params, tasks, json.loads((d / "summary.json").read_text()))


def save_run(result: RunResult, out_dir: str | Path) -> Path:
    """Write every output of ``result`` into ``out_dir`` (which must exist), each file atomically.

    ``summary.json`` is written last, so a folder holding one is a finished run; its ``status``
    says whether the run completed, diverged or was interrupted.
    """
    out = Path(out_dir)
    cfg = result.config
    write_result(out / "config.json", {"config": cfg.to_dict(), "digest": cfg.digest(), "seeds": result.seeds})
    save_params(out / "params.npz", result)
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
