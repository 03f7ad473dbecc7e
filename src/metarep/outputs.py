"""A run's outputs: ``config.json``, ``params.npz``, ``history.csv``, ``dynamics.png``,
``summary.json``; :func:`verify_run` to check a folder holds a finished run, :func:`load_run`
to read one back and :func:`plot_run` to draw its figures again.

A run folder is finished exactly when its ``summary.json`` says so: written last, it holds a
``manifest`` with the sha256 of every data file of the run (and of its own content without the
manifest). A run (or an evaluation sealed into it, :func:`seal_evaluation`) removes the marker
before it writes anything, so a folder caught mid-write, a damaged data file, an edited summary or
a folder written before manifests existed all fail :func:`verify_run`.

The figures (``*.png``) are drawn from the data and are not part of that proof: ``summary.json``
records their sha256 apart, under ``figures``, and a missing or damaged figure is drawn again
(:func:`plot_run`, :func:`redraw_stale_figures`), never a reason to refuse or redo a run. Manifests
written before this separation list the figures among the data; those entries are read as figures.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from .config import Config, from_dict
from .files import atomic_write_bytes, write_csv, write_json, write_result
from .models import LinearParams, Relu3Params
from .tasks import LinearRepTasks

SUMMARY = "summary.json"  # the finished-run marker, written last
MANIFEST = "manifest"  # its key: {data file name: sha256 hex}, summary.json's entry digests the rest of the summary
FIGURES = "figures"  # its key: {figure name: sha256 hex}, to tell a stale figure; never checked by verify_run
# (an entry None: not drawn by choice, save_run(figures=False); not stale, `metarep plot` draws it)
RUN_FILES = ("config.json", "params.npz", "history.csv")  # a run's data
RUN_FIGURES = ("dynamics.png",)  # drawn from the data
EVALUATION_FILES = ("evaluation.json", "evaluation.csv")  # an evaluation's data
EVALUATION_FIGURES = ("evaluation.png",)
FIGURE_SUFFIX = ".png"  # a manifest entry with this suffix (old manifests) is a figure, not data
RESULT_FIELDS = ("config", "params", "tasks", "history", "summary", "status", "seeds")  # what save_run reads
TIMING = ("wall_seconds",)  # not a result: left out of the summary's own digest


class NotFinishedRun(ValueError):
    """A folder that does not hold a finished run; the message says what is wrong."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_figure(name: str) -> bool:
    """Whether the run file ``name`` is a figure (drawn from the data) rather than data."""
    return name.endswith(FIGURE_SUFFIX)


def _summary_digest(summary: dict) -> str:
    """sha256 of the summary's content but its manifest, its figures and its timing: identical runs (on
    any machine) have identical manifests, and any other edit shows."""
    body = {k: v for k, v in summary.items() if k not in (MANIFEST, FIGURES, *TIMING)}
    return sha256_bytes(json.dumps(body, sort_keys=True).encode())


def sealed_summary(summary: dict, files: dict[str, bytes], figures: dict[str, bytes] | None = None) -> dict:
    """``summary`` with the ``manifest`` of the data ``files`` (name -> bytes) and of itself, and the
    sha256 of the ``figures`` (name -> bytes) under ``figures``."""
    body = {k: v for k, v in summary.items() if k not in (MANIFEST, FIGURES)}
    manifest = {name: sha256_bytes(data) for name, data in sorted(files.items()) if name != SUMMARY}
    drawn = {name: sha256_bytes(data) for name, data in sorted((figures or {}).items())}
    before = summary.get(FIGURES) if isinstance(summary.get(FIGURES), dict) else {}
    undrawn = {name: None for name, v in before.items() if v is None and name not in drawn}  # still not drawn
    return {
        **body,
        MANIFEST: {**manifest, SUMMARY: _summary_digest(body)},
        FIGURES: dict(sorted({**undrawn, **drawn}.items())),
    }


def seal(
    out_dir: str | Path,
    summary: dict,
    names: tuple[str, ...] = RUN_FILES,
    figures: tuple[str, ...] = RUN_FIGURES,
) -> None:
    """Write ``summary.json`` into ``out_dir`` with the manifest of the data files ``names`` there (all
    must exist) and the digests of those of the ``figures`` that exist."""
    out = Path(out_dir)
    data = {n: (out / n).read_bytes() for n in names}
    drawn = {n: (out / n).read_bytes() for n in figures if (out / n).is_file()}
    write_json(out / SUMMARY, sealed_summary(summary, data, drawn))


def seal_evaluation(out_dir: str | Path, figure: bool = True) -> None:
    """Rewrite the finished run's ``summary.json`` so its manifest also covers the evaluation files; with
    ``figure=False`` ``evaluation.png`` is recorded as not drawn by choice (``None`` under ``figures``)."""
    summary = verify_run(out_dir)
    if not figure:
        summary = {**summary, FIGURES: {**(summary.get(FIGURES) or {}), **dict.fromkeys(EVALUATION_FIGURES)}}
    seal(out_dir, summary, RUN_FILES + EVALUATION_FILES, RUN_FIGURES + EVALUATION_FIGURES)


def _evaluation_sealed(summary: dict) -> bool:
    """Whether the verified ``summary``'s manifest covers the evaluation's data files."""
    return all(n in summary[MANIFEST] for n in EVALUATION_FILES)


def stale_figures(run_dir: str | Path, summary: dict, undrawn: bool = False) -> list[str]:
    """The figures of the verified run in ``run_dir`` (``summary``: what :func:`verify_run` returned)
    that are missing or differ from the digest recorded when they were drawn: those to draw again.
    A figure not drawn by choice (recorded as ``None``, :func:`save_run` with ``figures=False``) is not
    missing, unless ``undrawn``: then it is to draw too."""
    d = Path(run_dir)
    recorded = {n: v for n, v in summary[MANIFEST].items() if is_figure(n)}  # old manifests
    recorded.update(summary.get(FIGURES) or {})

    def stale(n: str) -> bool:
        if not (d / n).is_file():
            return undrawn or recorded.get(n, "") is not None
        return n in recorded and sha256_bytes((d / n).read_bytes()) != recorded[n]

    return [n for n in RUN_FIGURES + (EVALUATION_FIGURES if _evaluation_sealed(summary) else ()) if stale(n)]


def verify_run(run_dir: str | Path, require: tuple[str, ...] = ()) -> dict:
    """Check that ``run_dir`` holds a finished run whose data files are those its summary's manifest
    names (and, with ``require``, that the manifest covers those data files too); return the summary.

    Raises :class:`NotFinishedRun` saying what is wrong: a missing data file, a digest mismatch, a
    summary that is not a JSON object or has no manifest. Figures are not checked: a missing or damaged
    one is drawn again (:func:`redraw_stale_figures`), also where an old manifest lists it.
    """
    d = Path(run_dir)
    summary = _read_summary(d)
    manifest = summary.get(MANIFEST)
    if not isinstance(manifest, dict) or not all(isinstance(v, str) for v in manifest.values()):
        raise NotFinishedRun(f"{d}: not a finished metarep run ({SUMMARY} has no manifest)")
    missing = [n for n in (*RUN_FILES, SUMMARY, *require) if n not in manifest]
    if missing:
        raise NotFinishedRun(f"{d}: not a finished metarep run (the manifest does not cover {missing[0]})")
    if manifest[SUMMARY] != _summary_digest(summary):
        raise NotFinishedRun(f"{d}: not a finished metarep run ({SUMMARY} does not match its digest)")
    for name, digest in manifest.items():
        if name == SUMMARY or is_figure(name):
            continue
        if Path(name).name != name or not (d / name).is_file():
            raise NotFinishedRun(f"{d}: not a finished metarep run (no {name})")
        if sha256_bytes((d / name).read_bytes()) != digest:
            raise NotFinishedRun(f"{d}: not a finished metarep run ({name} does not match its digest)")
    return summary


def _read_summary(d: Path) -> dict:
    try:
        summary = json.loads((d / SUMMARY).read_text())
    except FileNotFoundError:
        raise NotFinishedRun(f"{d}: not a finished metarep run (no {SUMMARY})") from None
    except (OSError, ValueError) as e:
        raise NotFinishedRun(f"{d}: not a finished metarep run ({SUMMARY} is not readable JSON: {e})") from None
    if not isinstance(summary, dict):
        raise NotFinishedRun(f"{d}: not a finished metarep run ({SUMMARY} is not an object)")
    return summary


class LoadedRun(NamedTuple):
    """A finished run read back from its folder."""

    config: Config
    params: LinearParams  # final (B, w) (and C for relu3), in the run's dtype, on the CPU
    tasks: LinearRepTasks  # the run's ground truth (B*, Σ*, σ²)
    summary: dict
    history: list[dict[str, float]]  # the rows of history.csv: step and metrics every run.eval_every steps


def save_params(path: str | Path, result: Any) -> None:
    """Final parameters and ground truth of a :class:`~metarep.train.RunResult` as ``.npz`` (read back
    without unpickling)."""
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
    """Read the config, final parameters, ground truth, summary and history of a finished run.

    Raises :class:`NotFinishedRun` when ``run_dir`` does not hold a finished run (:func:`verify_run`).
    """
    d = Path(run_dir)
    summary = verify_run(d)
    cfg = from_dict(json.loads((d / "config.json").read_text())["config"])
    with np.load(d / "params.npz", allow_pickle=False) as z:
        arr = {k: torch.from_numpy(z[k].copy()) for k in z.files}
    dtype = getattr(torch, cfg.run.dtype)  # run.dtype names a torch dtype (float32, float64)
    params = LinearParams(arr["B"].to(dtype), arr["w"].to(dtype))
    if cfg.model.kind == "relu3":
        params = Relu3Params(params.B, params.w, arr["C"].to(dtype))
    tasks = LinearRepTasks(arr["B_star"], arr["sigma_diag"], cfg.task.sigma2, dtype)
    return LoadedRun(cfg, params, tasks, summary, read_history(d))


def read_history(run_dir: str | Path) -> list[dict[str, float]]:
    """The rows of a run folder's ``history.csv``, every value a float."""
    with (Path(run_dir) / "history.csv").open(newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def save_run(result: Any, out_dir: str | Path, figures: bool = True) -> Path:
    """Write every output of a :class:`~metarep.train.RunResult` into ``out_dir`` (created if missing),
    each file atomically; return the folder.

    An earlier ``summary.json`` goes first; the new one is written last, with the manifest of the
    data files and the digest of ``dynamics.png`` (:func:`seal`), so a folder that passes
    :func:`verify_run` is a finished run; its ``status`` says whether the run completed, diverged or
    was interrupted. With ``figures=False`` (reproductions and sweeps by default) ``dynamics.png`` is not
    drawn, and recorded as not drawn (``None`` under ``figures``): :func:`plot_run` draws it later. A ``result``
    that is not a ``RunResult``, or an ``out_dir`` that is not a path, raises
    ``TypeError`` before anything is created.
    """
    if not all(hasattr(result, a) for a in RESULT_FIELDS):  # a RunResult (not imported: train imports outputs)
        raise TypeError(f"result: expected a metarep.RunResult (from metarep.train), got {type(result).__name__}")
    if not isinstance(out_dir, (str, Path)) or not str(out_dir):
        got = repr(out_dir) if isinstance(out_dir, str) else type(out_dir).__name__
        raise TypeError(f"out_dir: expected a folder (a non-empty str or pathlib.Path), got {got}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY).unlink(missing_ok=True)
    cfg = result.config
    write_result(out / "config.json", {"config": cfg.to_dict(), "digest": cfg.digest(), "seeds": result.seeds})
    save_params(out / "params.npz", result)
    write_csv(out / "history.csv", result.history)
    summary = {**result.summary, "message": result.message}
    if figures:
        plot_dynamics(result.history, result.summary, dynamics_title(cfg, result.summary), out / "dynamics.png")
    else:  # not drawn by choice, and so recorded: not a missing figure
        (out / "dynamics.png").unlink(missing_ok=True)
        summary[FIGURES] = dict.fromkeys(RUN_FIGURES)
    seal(out, summary)
    return out


def plot_dynamics(history: list[dict], summary: dict, title: str, path: str | Path) -> None:
    """:func:`metarep.plots.plot_dynamics`, importing matplotlib only when a figure is drawn."""
    from .plots import plot_dynamics as draw

    draw(history, summary, title, path)


def dynamics_title(cfg: Config, summary: dict) -> str:
    """The title of a run's ``dynamics.png``: method, regime, sizes, step sizes and a status other than complete."""
    status = summary.get("status", "complete")
    return (
        f"{cfg.method.name}, {summary['regime']} tasks"
        f"{'' if cfg.infinite else f' (N={cfg.data.tasks})'}, d={cfg.task.d}, k={cfg.task.k}, "
        f"width={cfg.width}, α={cfg.method.alpha}, β={cfg.method.beta}, m_in={cfg.data.m_in}"
        + ("" if status == "complete" else f"  [{status.upper()}]")
    )


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> list[Path]:
    """Draw the figures of the finished run in ``run_dir`` again from its files; return their paths.

    ``dynamics.png`` from ``history.csv`` and ``summary.json``, and ``evaluation.png`` from
    ``evaluation.json`` when the run was evaluated (``metarep evaluate``). Into ``out`` (created if
    missing), or by default into ``run_dir`` itself, whose summary is then sealed again with the new
    figures' digests. A missing or damaged figure does not matter: it is drawn anew.
    Raises :class:`NotFinishedRun` when ``run_dir`` does not hold a finished run (its data).
    """
    d = Path(run_dir)
    summary = verify_run(d)
    dest = d if out is None else Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    paths = _draw(d, summary, RUN_FIGURES + EVALUATION_FIGURES, dest)
    if dest.resolve() == d.resolve():
        _reseal_figures(d, summary)
    return paths


def redraw_stale_figures(run_dir: str | Path, undrawn: bool = False) -> list[Path]:
    """Draw again the figures of the finished run in ``run_dir`` that are missing or damaged
    (:func:`stale_figures`; with ``undrawn`` also those not drawn by choice), and reseal its summary with
    their digests; return the paths drawn (none when every figure is intact).

    Raises :class:`NotFinishedRun` when ``run_dir`` does not hold a finished run (its data).
    """
    d = Path(run_dir)
    summary = verify_run(d)
    stale = stale_figures(d, summary, undrawn)
    if not stale:
        return []
    paths = _draw(d, summary, tuple(stale), d)
    _reseal_figures(d, summary)
    return paths


def _draw(d: Path, summary: dict, names: tuple[str, ...], dest: Path) -> list[Path]:
    """Draw the figures ``names`` of the verified run in ``d`` into ``dest``: ``dynamics.png``, and
    ``evaluation.png`` when ``d`` holds an ``evaluation.json``; return their paths."""
    from .eval_outputs import plot_evaluation

    cfg = from_dict(json.loads((d / "config.json").read_text())["config"])
    paths = []
    if "dynamics.png" in names:
        paths.append(dest / "dynamics.png")
        plot_dynamics(read_history(d), summary, dynamics_title(cfg, summary), paths[-1])
    if "evaluation.png" in names and (d / "evaluation.json").is_file():  # metarep evaluate (sealed by reproduce)
        paths.append(plot_evaluation(json.loads((d / "evaluation.json").read_text()), cfg, d.name, dest))
    return paths


def _reseal_figures(d: Path, summary: dict) -> None:
    """Seal the verified run in ``d`` again with the digests of its figures as they are now (its data
    are as verified)."""
    ev = _evaluation_sealed(summary)
    seal(d, summary, RUN_FILES + (EVALUATION_FILES if ev else ()), RUN_FIGURES + (EVALUATION_FIGURES if ev else ()))
