"""The experiment framework: declared experiments, run over seeds, aggregated into figures, tidy
tables and a report.

An :class:`Experiment` names its runs (a label and config overrides per :class:`Series`, repeated
over seeds) and presents their results in three steps: ``aggregate`` turns the records of every
series into numbers (its tidy rows are the experiment's CSV), ``draw`` makes the figure from those
numbers and ``prose`` writes the report section's body. A :class:`Study` is a collection of
experiments with the report's title and introduction; :func:`reproduce` runs one.

This module knows nothing of any particular study: the runs are metarep configs, made and stored
by :mod:`.runner`, and every number an experiment shows comes from its runs (their configs,
histories, summaries and evaluations).
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..config import Config, from_dict
from ..files import atomic_write_bytes, write_csv
from ..plots import figure, save_figure
from . import snapshot
from .runner import RunSpec, run_all

BAND = 0.2  # alpha of the shaded spread over seeds


@dataclass(frozen=True)
class FewshotScale:
    """Sizes of the few-shot representation measurements (:mod:`metarep.fewshot.representations`):
    outer steps on sinusoids and digits, measurements per curve, test tasks, the digits network and
    loop (conv channels, episodes per step, inner steps), and at most how many seeds are used."""

    sinusoid_steps: int = 3000
    digits_steps: int = 500
    points: int = 15
    test_tasks: int = 600
    channels: int = 32
    meta_batch: int = 16
    inner_steps: int = 5
    max_seeds: int = 3


@dataclass(frozen=True)
class Scale:
    """Sizes of one reproduction (how many tasks, steps, widths, ... its series use)."""

    d: int
    tasks: int
    steps: int  # finite-pool steps
    steps_inf: int  # infinite-regime steps
    eval_every: int
    eval_every_inf: int
    eval_tasks: int
    m_test: tuple[int, ...]
    widths: tuple[int, ...]
    relu_tasks: int
    relu_steps: int
    multitask_steps: int
    fewshot: FewshotScale = FewshotScale()
    pools: tuple[int, ...] = (500, 1000, 2000)  # pool sizes N of the finite-pool floor (experiment `finite`)


@dataclass(frozen=True)
class Series:
    """One curve of an experiment: a label and the config overrides of its runs."""

    label: str
    overrides: tuple[str, ...]
    evaluate: bool = False  # one-step excess risk on new tasks for m in the scale's m_test


@dataclass(frozen=True)
class Record:
    """One finished run: its config, its history rows, its summary and its evaluation (or None)."""

    config: Config
    history: list[dict[str, float]]
    summary: dict
    evaluation: dict | None


Results = dict[str, list[Record]]  # series label -> one record per seed


@dataclass(frozen=True)
class Experiment:
    """A named experiment: its claim, its series at a scale, and how to present their results.

    - ``series(scale)``: the runs, as :class:`Series`;
    - ``aggregate(results)``: the numbers, any object with a ``rows`` attribute (tidy rows, see
      :func:`tidy`: the experiment's CSV) and whatever ``draw`` and ``prose`` read;
    - ``draw(fig, aggregate)``: the figure;
    - ``prose(aggregate)``: the markdown body of the report section (tables and comments);
    - ``compute(scale, seeds, out, progress)``: for an experiment whose measurements are not metarep
      config runs (``series`` is then empty): makes them (reusing what ``out`` already holds) and returns
      what ``aggregate`` reads in place of the runs' records.
    """

    name: str
    title: str
    claim: str
    series: Callable[[Scale], list[Series]]
    aggregate: Callable[[Results], Any]
    draw: Callable[[Any, Any], None]
    prose: Callable[[Any], str]
    compute: Callable[[Scale, int, Path, bool | None], Any] | None = None


@dataclass(frozen=True)
class Study:
    """Experiments reproduced together: the report's title, its experiments and its introduction.

    ``setting(configs)`` describes the setting of the runs (one sentence of the report's header);
    ``notes`` follows it (how to read the figures).
    """

    title: str
    experiments: dict[str, Experiment]
    setting: Callable[[list[Config]], str] = lambda configs: ""
    notes: str = ""


# --------------------------------------------------------------------------------------------
# planning, running and writing


def plan(experiments: Sequence[Experiment], scale: Scale, seeds: int) -> dict[str, dict[str, list[RunSpec]]]:
    """``{experiment: {series label: [RunSpec per seed]}}`` for ``experiments``."""
    return {
        exp.name: {
            s.label: [
                RunSpec(s.overrides, seed, scale.m_test if s.evaluate else (), scale.eval_tasks)
                for seed in range(seeds)
            ]
            for s in exp.series(scale)
        }
        for exp in experiments
    }


def load_record(run_dir: Path) -> Record:
    """The :class:`Record` of a complete run folder, verified before it is read (its evaluation: only
    when the summary's manifest covers it). Raises :class:`~metarep.outputs.NotFinishedRun` if not."""
    from ..outputs import EVALUATION_FILES, read_history, verify_run

    summary = verify_run(run_dir)
    history = read_history(run_dir)
    ev = run_dir / "evaluation.json"
    evaluated = all(name in summary["manifest"] for name in EVALUATION_FILES)
    return Record(
        config=from_dict(json.loads((run_dir / "config.json").read_text())["config"]),
        history=history,
        summary=summary,
        evaluation=json.loads(ev.read_text()) if evaluated else None,
    )


def reproduce(
    study: Study,
    names: Sequence[str] | None,
    scale: Scale,
    *,
    seeds: int,
    jobs: int = 1,
    out: str | Path,
    progress: bool | None = None,
    scheduler: str | None = None,
    command: str = "",
    tag: str = "",
    note: str = "",
    figures: bool = False,
) -> dict:
    """Run (or resume) the named experiments of ``study`` and write their figures, tables and ``REPORT.md``.

    Runs live in ``out/runs/`` keyed by a hash of their config; complete ones are skipped. They are
    made on ``jobs`` local processes, or on the workers of the Dask ``scheduler`` (``tcp://HOST:PORT``).
    ``command`` is how the report says it was made, ``tag`` marks the figure titles (``"(tag)"``),
    ``note`` follows the setting in the header; ``figures``: draw each run's ``dynamics.png`` (off: recorded
    as not drawn, ``metarep plot RUN_DIR`` draws it). Returns ``{"counts": ..., "experiments": [...],
    "report": path}``.
    """
    names = list(names or study.experiments)
    experiments = [study.experiments[n] for n in names]
    runs = plan(experiments, scale, seeds)
    out = Path(out)
    store = out / "runs"
    counts = run_all(
        [replace(spec, figures=figures) for series in runs.values() for specs in series.values() for spec in specs],
        store,
        jobs=jobs,
        progress=progress,
        scheduler=scheduler,
    )
    if counts["failed"]:
        raise RuntimeError(f"{counts['failed']} run(s) did not complete, first: {counts['errors'][0]}")
    records: dict[str, Record] = {}  # run key -> record; runs shared between experiments load once

    def record(spec: RunSpec) -> Record:
        key = spec.key()
        if key not in records:
            try:
                records[key] = load_record(store / key)
            except ValueError as e:  # NotFinishedRun: changed since the runner checked it
                raise RuntimeError(f"{e}; run the command again to make it again") from None
        return records[key]

    made = (
        f"Made {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} by `{command}` "
        f"({counts['total']} runs of {len(names)} experiment{'s' if len(names) > 1 else ''}, "
        f"{counts['skipped']} reused from an earlier call)"
    )
    for exp in experiments:
        if exp.compute is not None:  # measurements that are not metarep runs: their section says its setting
            res, setting = exp.compute(scale, seeds, out, progress), ""
        else:
            res = {label: [record(spec) for spec in specs] for label, specs in runs[exp.name].items()}
            setting = study.setting([r.config for rs in res.values() for r in rs]) + note
        section = present(exp, res, out, tag)
        heading, _, body = section.partition("\n\n")
        provenance = _sentence(". ".join(filter(None, [made, setting])))
        atomic_write_bytes(out / f"{exp.name}.md", f"{heading}\n\n*{provenance}*\n\n{body}".encode())
    report = write_report(study, out)
    return {"counts": counts, "experiments": names, "report": str(report)}


def write_report(study: Study, out: Path) -> Path:
    """``out/REPORT.md``: the study's title and notes, then the section (``out/NAME.md``) of every experiment of
    ``study`` that has one in ``out``, in the study's order; the sections of earlier calls that ran other
    experiments into ``out`` are kept, each saying how and when it was made."""
    present_names = [n for n in study.experiments if (out / f"{n}.md").is_file()]
    index = ", ".join(f"[`{n}`]({n}.md)" for n in present_names)
    header = f"# {study.title}\n\n" + " ".join(filter(None, [study.notes, f"Experiments: {index}."])) + "\n"
    sections = [(out / f"{n}.md").read_text() for n in present_names]
    report = out / "REPORT.md"
    atomic_write_bytes(report, (header + "\n" + "\n".join(sections)).encode())
    return report


def _sentence(text: str) -> str:
    return text + "." if text and not text.endswith(".") else text


def present(exp: Experiment, res: Results, out: Path, tag: str = "") -> str:
    """Write ``exp``'s figure, CSV and snapshot (``NAME.json``: the numbers the figure is drawn from, see
    :mod:`.snapshot`) into ``out``; returns its report section."""
    agg = exp.aggregate(res)
    snapshot.save(out / f"{exp.name}.json", exp.name, agg)
    draw_figure(exp, agg, out / f"{exp.name}.png", tag)
    write_csv(out / f"{exp.name}.csv", rows_with_x(agg.rows))
    name = exp.name
    return (
        f"## {exp.title} (`{name}`)\n\n**Claim.** {exp.claim}\n\n![{name}]({name}.png)\n\n"
        f"{exp.prose(agg)}\n\nData: [`{name}.csv`]({name}.csv).\n"
    )


def draw_figure(exp: Experiment, agg: Any, path: Path, tag: str = "") -> None:
    """Draw ``exp``'s figure of the aggregate ``agg`` into ``path``."""
    fig = figure(figsize=(12, 4.4))
    exp.draw(fig, agg)
    fig.suptitle(exp.title + (f" ({tag})" if tag else ""), fontsize=11)
    save_figure(fig, path)


def redraw(study: Study, snapshot_path: str | Path, png: str | Path, tag: str = "") -> str:
    """Draw the figure of an experiment of ``study`` again from its snapshot (``NAME.json``, written by
    :func:`present`) into ``png``, with today's plotting code and without its runs; returns its name."""
    name, agg = snapshot.load(snapshot_path)
    if name not in study.experiments:
        raise ValueError(f"{snapshot_path}: experiment {name!r} is not one of {', '.join(study.experiments)}")
    draw_figure(study.experiments[name], agg, Path(png), tag)
    return name


# --------------------------------------------------------------------------------------------
# aggregation over seeds


class Curve(NamedTuple):
    """Mean and standard deviation over seeds of a quantity, against ``x``."""

    x: Any  # steps (array) or sample sizes (list)
    mean: np.ndarray
    std: np.ndarray


def curve(records: list[Record], key: str) -> Curve:
    """Steps, mean and standard deviation over seeds of history column ``key``."""
    n = min(len(r.history) for r in records)
    steps = np.array([row["step"] for row in records[0].history[:n]])
    vals = np.array([[row[key] for row in r.history[:n]] for r in records])
    return Curve(steps, vals.mean(0), vals.std(0))


def final(records: list[Record], key: str) -> tuple[float, float]:
    """Mean and standard deviation over seeds of a final summary value (scalar)."""
    v = np.array([r.summary[key] for r in records], dtype=float)
    return float(v.mean()), float(v.std())


def final_vec(records: list[Record], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over seeds of a final summary vector."""
    v = np.array([r.summary[key] for r in records], dtype=float)
    return v.mean(0), v.std(0)


def risk(records: list[Record], estimator: str, source: str = "auto") -> Curve:
    """m, mean and spread over seeds of one estimator's excess risk.

    ``source``: ``closed_form``, ``mc_mean``, or ``auto`` (closed form where it exists, else MC).
    """
    ev = [r.evaluation for r in records]
    ms = ev[0]["m_test"]
    vals = []
    for e in ev:
        est = e["estimators"][estimator]
        row = []
        for i in range(len(ms)):
            cf, mc = est["closed_form"][i], est["mc_mean"][i]
            v = cf if (source == "closed_form" or (source == "auto" and cf is not None)) else mc
            row.append(np.nan if v is None else v)
        vals.append(row)
    a = np.array(vals, dtype=float)
    return Curve(ms, a.mean(0), a.std(0))


def m_index(records: list[Record], m: int) -> int:
    """Index of sample size ``m`` in the records' evaluation (the first one when it was not evaluated)."""
    ms = records[0].evaluation["m_test"]
    return ms.index(m) if m in ms else 0


def tidy(experiment: str, label: str, x_name: str, x, metric: str, mean, std, n: int, predicted=None) -> list[dict]:
    """Tidy rows, one per x: experiment, label, ``x_name``, metric, mean, std, seeds, predicted."""
    xs = np.atleast_1d(x)
    means, stds = np.atleast_1d(mean), np.atleast_1d(std)
    preds = np.atleast_1d(predicted) if predicted is not None else [None] * len(xs)
    return [
        {
            "experiment": experiment,
            "label": label,
            x_name if x_name else "x": float(a),
            "metric": metric,
            "mean": float(m),
            "std": float(s),
            "seeds": n,
            "predicted": "" if p is None else float(p),
        }
        for a, m, s, p in zip(xs, means, stds, preds)
    ]


def rows_with_x(rows: list[dict]) -> list[dict]:
    """Put every tidy row's x under one column name ``x`` with ``x_name`` beside it."""
    fixed = ("experiment", "label", "metric", "mean", "std", "seeds", "predicted")
    out = []
    for r in rows:
        x_name = next(k for k in r if k not in fixed)
        out.append(
            {
                "experiment": r["experiment"],
                "label": r["label"],
                "x_name": x_name,
                "x": r[x_name],
                "metric": r["metric"],
                "mean": r["mean"],
                "std": r["std"],
                "seeds": r["seeds"],
                "predicted": r["predicted"],
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# drawing and writing


def band(ax, x, mean, std, **kw):
    """A line with a shaded ±1 sd band in its colour."""
    line = ax.plot(x, mean, **kw)[0]
    ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=BAND, lw=0)
    return line


def fmt(x: float, digits: int = 4) -> str:
    """``x`` to ``digits`` significant digits; ``–`` for None, nan and inf."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}"


def fmt_pm(mean: float, sd: float, digits: int = 3, sd_digits: int = 1) -> str:
    """``mean ± sd`` to the given significant digits; ``–`` when the mean is None, nan or inf (and the
    mean alone when only the spread is)."""
    if fmt(mean) == "–":
        return "–"
    return fmt(mean, digits) if fmt(sd) == "–" else f"{mean:.{digits}g} ± {sd:.{sd_digits}g}"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
