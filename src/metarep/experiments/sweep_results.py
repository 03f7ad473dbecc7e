"""The tables of a sweep: ``results.csv`` (one row per run) and ``summary.csv`` (mean and sd over seeds).

A run's status is ``complete`` (its summary says so, and its evaluation exists when the sweep asks
for one), ``diverged`` (its summary says so, with the message of the step that diverged) or
``failed`` (no finished result: the runner's error). Only complete runs have final metrics; the
other rows leave them empty (nan), and ``summary.csv`` averages over the complete seeds only.
Undefined values (a closed form whose expectation is infinite, a signal eigenvalue beyond a run's
k) are nan. The predictions are those of ``summary.json`` (the FO-ANIL infinite-task theory at
``w = 0``); the ``theory`` column says whether they describe the run's method, and ``width``
and ``k`` are the run's resolved k' and k.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .. import theory
from ..metrics import SCALAR_METRICS
from ..tasks import task_cov_diag
from .sweep_spec import Sweep, SweepRun

NAN = math.nan
METRICS = SCALAR_METRICS
PREDICTIONS = (
    "predicted_perp_rate",
    "predicted_rank",
    "predicted_risk_m_in",
    "predicted_oracle_risk_m_in",
    "predicted_scratch_risk_m_in",
)


def num(v: Any) -> float:
    """``v`` as a float; nan for ``None`` and anything that is not a number."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return NAN
    return float(v)


def display(v: Any) -> Any:
    """A grid value as written in the tables (booleans as in TOML)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return v


def risk_columns(m: int) -> tuple[str, str, str, str]:
    """Monte-Carlo mean, its standard error and closed form of the ``learned`` estimator, and the prediction."""
    return f"risk_m{m}", f"risk_m{m}_se", f"risk_m{m}_closed_form", f"predicted_risk_m{m}"


def measured_columns(sweep: Sweep, k_max: int) -> list[str]:
    """Columns measured on a run (averaged over seeds in ``summary.csv``)."""
    cols = [*METRICS, *(f"signal_eig_{j}" for j in range(1, k_max + 1))]
    for m in sweep.m_test:
        cols += risk_columns(m)[:3]
    return [*cols, "wall_seconds"]


def predicted_columns(sweep: Sweep, k_max: int) -> list[str]:
    """Columns the theory predicts from a run's config (equal over seeds)."""
    return [
        *PREDICTIONS,
        *(f"predicted_signal_eig_{j}" for j in range(1, k_max + 1)),
        *(risk_columns(m)[3] for m in sweep.m_test),
    ]


def _read_json(path: Path) -> dict | None:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def verified_summary(run_dir: Path) -> tuple[dict, str]:
    """The summary of a run folder that passes :func:`~metarep.outputs.verify_run` and ``""``, or ``{}``
    and why it does not (nothing of an unverified folder is read)."""
    from ..outputs import NotFinishedRun, verify_run

    try:
        return verify_run(run_dir), ""
    except NotFinishedRun as e:
        return {}, str(e)


def evaluated(summary: dict) -> bool:
    """Whether the verified ``summary``'s manifest covers the evaluation's data files (its figure is
    drawn from them, and not needed)."""
    return all(name in summary.get("manifest", {}) for name in ("evaluation.json", "evaluation.csv"))


def run_status(run_dir: Path, wants_evaluation: bool, failure: str = "") -> tuple[str, str]:
    """``(status, message)`` of a run folder after the runner: complete, diverged or failed."""
    summary, why = verified_summary(run_dir)
    status = summary.get("status")
    if status == "complete" and (not wants_evaluation or evaluated(summary)):
        return "complete", ""
    if status == "diverged":
        return "diverged", _one_line(summary.get("message", ""))
    if failure:
        return "failed", _one_line(failure)
    if status == "complete":
        return "failed", "the evaluation did not finish"
    if status:
        return "failed", _one_line(f"{status}: {summary.get('message', '')}")
    if run_dir.is_dir() and why:
        return "failed", _one_line(why)
    return "failed", "no result in the run folder"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def collect(sweep: Sweep, runs: list[SweepRun], store: Path, failures: dict[str, str]) -> list[dict[str, Any]]:
    """One row of ``results.csv`` per run, in the order of ``runs``."""
    configs = {id(r): r.spec.config() for r in runs}
    k_max = max(c.task.k for c in configs.values())
    rows = []
    for run in runs:
        key = run.key()
        run_dir = store / key
        status, message = run_status(run_dir, bool(sweep.m_test), failures.get(key, ""))
        summary = verified_summary(run_dir)[0]
        row: dict[str, Any] = {k: display(v) for k, v in run.point}
        cfg = configs[id(run)]
        row.update(seed=run.seed, status=status, theory=theory_class(cfg), width=cfg.width, k=cfg.task.k)
        row.update(_measured(summary if status == "complete" else {}, k_max))
        row.update(_predicted(cfg, summary, k_max))
        if sweep.m_test:
            ev = _read_json(run_dir / "evaluation.json") if status == "complete" and evaluated(summary) else None
            row.update(_risks(cfg, ev, sweep.m_test))
        row["wall_seconds"] = num(summary.get("wall_seconds"))
        row["message"] = message
        row["run_dir"] = f"{store.name}/{key}"
        rows.append(row)
    return rows


def theory_class(cfg) -> str:
    """The theory's class of the run's infinite-task dynamics (MATH.md §4): ``first_order`` (FO-ANIL,
    FO-MAML), ``second_order`` (ANIL, MAML), or ``none`` (a baseline, Reptile, a ReLU model: the
    predictions, FO-ANIL's, do not describe the run)."""
    from ..methods import registry

    dynamics = registry.get(cfg.method.name).dynamics
    return dynamics if dynamics and cfg.model.kind == "linear" else "none"


def _measured(summary: dict, k_max: int) -> dict[str, float]:
    out = {k: num(summary.get(k)) for k in METRICS}
    eigs = summary.get("signal_eigs") or []
    out.update({f"signal_eig_{j + 1}": num(eigs[j]) if j < len(eigs) else NAN for j in range(k_max)})
    return out


def _predicted(cfg, summary: dict, k_max: int) -> dict[str, float]:
    """The predictions of the run's summary (or, without one, of :func:`metarep.theory.predictions`)."""
    preds = summary if "predicted_signal_eigs" in summary else theory.predictions(cfg)
    out = {k: num(preds.get(k)) for k in PREDICTIONS}
    eigs = preds.get("predicted_signal_eigs") or []
    out.update({f"predicted_signal_eig_{j + 1}": num(eigs[j]) if j < len(eigs) else NAN for j in range(k_max)})
    return out


def _risks(cfg, ev: dict | None, m_test: tuple[int, ...]) -> dict[str, float]:
    """Per ``m``: the ``learned`` estimator's Monte-Carlo mean, standard error and closed form, and the
    predicted one-step risk at the FO-ANIL limit (MATH.md §5.6; ``predicted_risk_m_in`` at ``m = m_in``)."""
    t = cfg.task
    s = task_cov_diag(t.k, t.task_cov, cfg.cov_trace)
    out: dict[str, float] = {}
    learned = (ev or {}).get("estimators", {}).get("learned", {})
    ms = (ev or {}).get("m_test", [])
    for m in m_test:
        mean, se, closed, predicted = risk_columns(m)
        i = ms.index(m) if m in ms else None
        for col, field in ((mean, "mc_mean"), (se, "mc_se"), (closed, "closed_form")):
            out[col] = num(learned.get(field, [])[i]) if i is not None else NAN
        risk = theory.limit_one_step_risk(s, t.sigma2, cfg.data.m_in, m, cfg.width)
        out[predicted] = risk if math.isfinite(risk) else NAN
    return out


def summarize(sweep: Sweep, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per grid point: the grid values, ``seeds``, ``complete`` (seeds that completed), then
    ``COLUMN_mean`` and ``COLUMN_sd`` (sample standard deviation, nan with one seed) over the
    complete seeds of every measured column, then the predictions."""
    k_max = sum(1 for c in rows[0] if c.startswith("signal_eig_"))
    measured, predicted = measured_columns(sweep, k_max), predicted_columns(sweep, k_max)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(str(r[k]) for k in sweep.keys), []).append(r)
    out = []
    for rs in groups.values():
        done = [r for r in rs if r["status"] == "complete"]
        row: dict[str, Any] = {k: rs[0][k] for k in sweep.keys}
        row.update(seeds=len(rs), complete=len(done), **{c: rs[0][c] for c in ("theory", "width", "k")})
        for c in measured:
            v = np.array([r[c] for r in done], dtype=float)
            row[f"{c}_mean"] = float(v.mean()) if len(v) else NAN
            row[f"{c}_sd"] = float(v.std(ddof=1)) if len(v) > 1 else NAN
        row.update({p: rs[0][p] for p in predicted})
        out.append(row)
    return out
