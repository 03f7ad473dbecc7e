"""An evaluation's outputs (``metarep evaluate``): the estimators' labels, ``evaluation.json``,
``evaluation.csv``, ``evaluation.png`` and the console table.

An evaluation result is the dict :func:`metarep.evaluate.evaluate_run` returns: ``m_test``, and for
every estimator ``closed_form``, ``mc_mean`` and ``mc_se`` lists aligned with it (``nan`` where
there is no closed form, written ``null`` in JSON).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .files import write_csv, write_result

LABELS = {
    "learned": "{method} ({steps} head step{s})",
    "limit": "FO-ANIL limit (theory)",
    "oracle": "oracle (LS on B*)",
    "scratch": "scratch (LS in R^d)",
    "ls_span_B": "LS on span(B) (r={rank_B})",
    "ls_top_k": "LS on top-{top_k} of B",
}
TABLE_WIDTH = 100  # columns of the console table
NONE = "–"  # a number that does not exist (no closed form, an infinite expectation)


def label(result: dict, name: str) -> str:
    """Human-readable name of estimator ``name`` in ``result``."""
    if name == "ls_span_B" and result["rank_B"] == result.get("d"):
        return f"LS on span(B) (r={result['rank_B']} = d: scratch)"
    method = result.get("method", "learned")
    if result.get("model", "linear") != "linear":
        method = f"{method}, {result['model']}"
    return LABELS[name].format(
        method=method,
        steps=result["steps"],
        s="" if result["steps"] == 1 else "s",
        rank_B=result["rank_B"],
        top_k=result["top_k"],
    )


def _json_num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def to_json(result: dict) -> dict:
    """``result`` with ``nan``/``inf`` replaced by ``None`` (strict JSON)."""
    est = {
        name: {key: [_json_num(v) for v in vals] for key, vals in e.items()} for name, e in result["estimators"].items()
    }
    return {**result, "estimators": est}


def from_json(data: dict) -> dict:
    """An ``evaluation.json`` read back as a result: ``None`` becomes ``nan`` again (inverse of :func:`to_json`)."""
    est = {
        name: {key: [math.nan if v is None else float(v) for v in vals] for key, vals in e.items()}
        for name, e in data["estimators"].items()
    }
    return {**data, "estimators": est}


def rows(result: dict) -> list[dict[str, object]]:
    """Tidy rows ``m, estimator, closed_form, mc_mean, mc_se, n_tasks`` (empty closed form where none)."""
    out = []
    for name, e in result["estimators"].items():
        for i, m in enumerate(result["m_test"]):
            cf = e["closed_form"][i]
            out.append(
                {
                    "m": m,
                    "estimator": name,
                    "closed_form": "" if not math.isfinite(cf) else cf,
                    "mc_mean": e["mc_mean"][i],
                    "mc_se": e["mc_se"][i],
                    "n_tasks": result["n_tasks"],
                }
            )
    return out


def evaluation_title(config: Any, run_name: str, alpha: float, steps: int) -> str:
    """The title of ``evaluation.png``: the run (a :class:`~metarep.config.Config` and its folder's
    name) and the head steps."""
    t = config.task
    return (
        f"{config.method.name} run {run_name}: d={t.d}, k={t.k}, width={config.width}, σ²={t.sigma2}, "
        f"m_in={config.data.m_in}; head step α={alpha:g} × {steps}"
    )


def save_evaluation(result: dict, out_dir: str | Path, title: str = "", figure: bool = True) -> dict[str, Path]:
    """Write ``evaluation.json``, ``evaluation.csv`` and (unless ``figure`` is False) ``evaluation.png`` into
    ``out_dir`` (atomic); ``metarep plot`` draws a figure left out later."""
    out = Path(out_dir)
    paths = {"json": out / "evaluation.json", "csv": out / "evaluation.csv", "png": out / "evaluation.png"}
    write_result(paths["json"], to_json(result))
    write_csv(paths["csv"], rows(result))
    if figure:
        from .plots import plot_risk

        plot_risk(result, {name: label(result, name) for name in result["estimators"]}, title, paths["png"])
    return paths


def plot_evaluation(data: dict, config: Any, run_name: str, out_dir: str | Path) -> Path:
    """Draw ``evaluation.png`` into ``out_dir`` again from the content of an ``evaluation.json``."""
    from .plots import plot_risk

    result = from_json(data)
    path = Path(out_dir) / "evaluation.png"
    title = evaluation_title(config, run_name, result["alpha"], result["steps"])
    plot_risk(result, {name: label(result, name) for name in result["estimators"]}, title, path)
    return path


def _cell(e: dict, i: int) -> str:
    """``MC±SE [closed form]`` of one estimator at the ``i``-th ``m``; ``–`` for numbers that do not exist."""
    mc, se, cf = e["mc_mean"][i], e["mc_se"][i], e["closed_form"][i]
    mean = f"{mc:.4g}±{se:.2g}" if math.isfinite(mc) else NONE
    return f"{mean} [{cf:.4g}]" if math.isfinite(cf) else f"{mean} [{NONE}]"


def format_table(result: dict, width: int = TABLE_WIDTH) -> str:
    """Plain-text table: one row per estimator, one column per ``m``, cells ``MC ± SE [closed form]``.

    The columns are cut into blocks (separated by a blank line) so that no line is longer than
    ``width`` characters, unless a single column is.
    """
    ms = result["m_test"]
    names = list(result["estimators"])
    labels = {n: label(result, n) for n in names}
    cells = {n: [_cell(result["estimators"][n], i) for i in range(len(ms))] for n in names}
    lw = max(len(v) for v in labels.values())
    cw = [max(len(f"m={m}"), *(len(cells[n][i]) for n in names)) + 2 for i, m in enumerate(ms)]
    blocks, start = [], 0
    while start < len(ms):
        stop = start + 1
        while stop < len(ms) and lw + sum(cw[start : stop + 1]) <= width:
            stop += 1
        cols = range(start, stop)
        lines = ["".ljust(lw) + "".join(f"m={ms[i]}".rjust(cw[i]) for i in cols)]
        lines += [labels[n].ljust(lw) + "".join(cells[n][i].rjust(cw[i]) for i in cols) for n in names]
        blocks.append("\n".join(lines))
        start = stop
    return "\n\n".join(blocks)
