"""The tables and numbers of the docs that come from result files, generated into the pages.

A page holds a generated block between two comments::

    <!-- generated: NAME (docs/_gen/blocks.py, from data/FILE; `make docs-blocks` writes it) -->
    ...markdown made by BLOCKS[NAME] from the committed data...
    <!-- end generated -->

``make docs-blocks`` (``python docs/_gen/blocks.py``) writes every block from its data with today's
code; ``tests/test_docs_figures.py`` fails while a page's block differs from what its generator makes,
or names a generator that does not exist. So a number in such a block is never typed by hand: measure
again (the command is in ``docs/data/README.md``), commit the data, run ``make docs-blocks``.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- generated: ([\w-]+)[^>]*-->\n)(.*?)(<!-- end generated -->)", re.S)  # content in blank lines


# --------------------------------------------------------------------------------------------
# the floor of unlearning against N (data/finite-full.json: the snapshot of `reproduce finite`)


def _floor_points(docs: Path):
    from metarep.experiments import snapshot

    _, data = snapshot.load(docs / "data" / "finite-full.json")
    seeds = {(r["label"], r["tasks"]): r["seeds"] for r in data.rows}
    return data, seeds


def finite_table(docs: Path) -> str:
    """The table of MATH.md §8.5: measured floor (mean ± sd over seeds), predicted, error, per setting and N."""
    from metarep.experiments.framework import fmt, md_table
    from metarep.experiments.paper.finite import METRICS

    data, seeds = _floor_points(docs)
    rows = []
    for p in data.points:
        n = p.config.data.tasks
        row = [f"{p.setting} (d={p.config.task.d})", str(n), str(seeds[(p.setting, float(n))])]
        for key, _, _ in METRICS:
            row += [f"{fmt(p.mean[key])} ± {fmt(p.std[key], 2)}", fmt(p.predicted[key]), f"{p.error(key):+.1%}"]
        rows.append(row)
    head = ["setting", "N", "seeds"]
    for _, _, title in METRICS:
        head += [f"{title} measured", "predicted", "error"]
    return md_table(head, rows)


def finite_within(docs: Path) -> str:
    """One sentence: how far the prediction is from the measured mean at N ≥ 2000 (both norms)."""
    from metarep.experiments.paper.finite import METRICS, TARGET_N

    data, _ = _floor_points(docs)
    points = [p for p in data.points if p.config.data.tasks >= TARGET_N]
    worst = [max(abs(p.error(key)) for p in points) for key, _, _ in METRICS]
    top = max(p.config.data.tasks for p in points)
    settings = len({p.setting for p in points})
    return (
        f"From N = {TARGET_N} to {top:,}".replace(",", " ")
        + f", on all {_words(settings)} settings, the prediction is within {worst[0]:.1%} of the measured mean "
        f"for `‖·‖₂²` and {worst[1]:.1%} for `‖·‖_F²`."
    )


# --------------------------------------------------------------------------------------------
# few-shot benchmarks (data/fewshot-*.csv: the results.csv of `metarep fewshot ...`)


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _label(method: str) -> str:
    from metarep.methods import registry

    return "pretrained baseline" if method == "pretrain" else registry.label(method)


def sinusoid_tables(docs: Path) -> str:
    """One table per K of `metarep fewshot sinusoid`: MSE ± 95% interval per method and test-time steps,
    the best of each column after some steps in bold, the median where a few tasks blew up (an interval
    wider than half the mean) or where some task's loss diverged."""
    rows = _read_csv(docs / "data" / "fewshot-sinusoid.csv")
    tasks = _read_json(docs / "data" / "fewshot-sinusoid.json")["config"]["test_tasks"]
    out = []
    for shots in sorted({int(r["shots"]) for r in rows}, reverse=True):
        mine = [r for r in rows if int(r["shots"]) == shots]
        steps = sorted({int(r["steps"]) for r in mine})
        methods = list(dict.fromkeys(r["method"] for r in mine))
        cell = {(r["method"], int(r["steps"])): r for r in mine}
        best = {s: min((float(cell[m, s]["mse"]) for m in methods if cell[m, s]["mse"]), default=None) for s in steps}
        best[0] = None  # before any step every method predicts about the mean function: no winner to mark
        table = [f"| K = {shots} | " + " | ".join(f"{s} step{'s' if s != 1 else ''}" for s in steps) + " |"]
        table.append("|---|" + "---|" * len(steps))
        for m in methods:
            cells = [_mse_cell(cell[m, s], best[s], tasks) for s in steps]
            table.append(f"| {_label(m)} | " + " | ".join(cells) + " |")
        out.append("\n".join(table))
    return "\n\n".join(out)


def _mse_cell(r: dict, best: float | None, tasks: int) -> str:
    if not r["mse"]:
        return f"diverged on {r['diverged']} of {tasks} tasks (median {float(r['median']):.2g})"
    mse, ci = float(r["mse"]), float(r["ci95"])
    text = f"{mse:.4g} ± {ci:.4g}" if mse >= 10 else f"{mse:.3f} ± {ci:.3f}"
    if ci > mse / 2:  # a heavy tail: the typical task is the median
        text += f" (median {float(r['median']):.2g})"
    return f"**{text}**" if mse == best else text


def digits_table(docs: Path) -> str:
    """The table of `metarep fewshot digits`: accuracy ± 95% interval per method and test-time steps,
    and one sentence of margins against the tuned baseline."""
    rows = _read_csv(docs / "data" / "fewshot-digits.csv")
    steps = sorted({int(r["steps"]) for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cell = {(r["method"], int(r["steps"])): r for r in rows}
    best = {s: max(float(cell[m, s]["accuracy"]) for m in methods) for s in steps}
    table = ["| accuracy | " + " | ".join(f"{s} step{'s' if s != 1 else ''}" for s in steps) + " |"]
    table.append("|---|" + "---|" * len(steps))
    for m in methods:
        alpha = float(cell[m, steps[0]]["inner_lr"])
        name = "no meta-learning (best step size)" if m == "pretrain" else f"{_label(m)} (α = {alpha:g})"
        cells = []
        for s in steps:
            acc, ci = 100 * float(cell[m, s]["accuracy"]), 100 * float(cell[m, s]["ci95"])
            text = f"{acc:.1f} ± {ci:.1f}%"
            cells.append(f"**{text}**" if float(cell[m, s]["accuracy"]) == best[s] else text)
        table.append(f"| {name} | " + " | ".join(cells) + " |")
    margins = []
    for m in methods:
        if m == "pretrain":
            continue
        diffs = ", ".join(
            f"{100 * (float(cell[m, s]['accuracy']) - float(cell['pretrain', s]['accuracy'])):+.1f} at {s}"
            for s in steps
        )
        margins.append(f"{_label(m)} {diffs}")
    return (
        "\n".join(table)
        + "\n\nPoints of accuracy against the tuned baseline, per number of steps: "
        + "; ".join(margins)
        + "."
    )


# --------------------------------------------------------------------------------------------
# make test-stress (data/test-stress.json: the build/test-stress.json that tests/stress.sh writes)


def stress_results(docs: Path) -> str:
    """What the last recorded `make test-stress` gave: per thread count, pytest's summary and the time."""
    doc = _read_json(docs / "data" / "test-stress.json")
    runs = "; ".join(
        f"torch threads forced to {r['threads']}: {r['summary'] or 'no summary'}, {r['seconds'] / 60:.0f} minutes"
        f" in all (order seed {r['seed']})"
        for r in doc["runs"]
    )
    verdict = "passed" if all(r["exit"] == 0 for r in doc["runs"]) else "FAILED"
    return f"Last recorded run ({doc['date']}, {doc['cores']} cores, all {doc['busy']} kept busy): {verdict}. {runs}."


# --------------------------------------------------------------------------------------------
# the GPU (data/cuda-check.json: the cuda_check.json of benchmarks/cuda_check.py)


def cuda_table(docs: Path) -> str:
    """The FO-ANIL step on the GPU against its memory floor and the CPU, and many runs alone vs batched."""
    doc = _read_json(docs / "data" / "cuda-check.json")
    head = ["setting", "fast step", "as one CUDA graph", "memory floor", "fast / floor", "graph / floor", "CPU / GPU"]
    rows = []
    for name, t in doc["timings"].items():
        graph = t["graph_ms"]
        g = isinstance(graph, (int, float))
        rows.append(
            [
                name,
                f"{t['fast_ms']:.3f} ms",
                f"{graph:.3f} ms" if g else str(graph),
                f"{t['floor_ms']:.3f} ms",
                f"{t['fast_ms'] / t['floor_ms']:.1f}",
                f"{graph / t['floor_ms']:.1f}" if g else "–",
                f"{t['cpu_fast_ms'] / t['fast_ms']:.1f}",
            ]
        )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    runs = []
    for key, b in doc["batched"].items():
        if key.startswith(("cuda_", "cpu_")):
            device = "GPU" if key.startswith("cuda") else "the GPU machine's CPU (all cores)"
            runs.append(
                f"{b['seeds']} seeds on {device}: {b['alone_runs_per_minute']:.0f} runs/min alone, "
                f"{b['batched_runs_per_minute']:.0f} batched (x{b['speedup']:.1f})"
            )
    return (
        "\n".join(lines)
        + f"\n\n{doc['device']}, torch {doc['torch']}; the CPU column is the same step on that machine's CPU. "
        + f"Many infinite-task runs of the paper's setting ({_first(doc)['steps']} steps each): "
        + "; ".join(runs)
        + f". Batched equals alone on the GPU to {doc['batched']['equal_alone_max_abs_diff']:.1e} (float64)."
    )


def _first(doc: dict) -> dict:
    return next(b for k, b in doc["batched"].items() if k.startswith("cuda_"))


def _words(n: int) -> str:
    return {2: "two", 3: "three", 4: "four", 5: "five"}.get(n, str(n))


BLOCKS: dict[str, Callable[[Path], str]] = {
    "finite-table": finite_table,
    "finite-within": finite_within,
    "fewshot-sinusoid": sinusoid_tables,
    "fewshot-digits": digits_table,
    "stress-results": stress_results,
    "cuda": cuda_table,
}


# --------------------------------------------------------------------------------------------
# reading and writing the pages


def pages(docs: Path = DOCS) -> list[Path]:
    """The pages that may hold generated blocks: docs/*.md and the README."""
    return [*sorted(docs.glob("*.md")), docs.parent / "README.md"]


def render(text: str, docs: Path = DOCS) -> str:
    """``text`` with every generated block made anew. Raises ``KeyError`` for an unknown generator."""

    def fill(m: re.Match) -> str:
        if m.group(2) not in BLOCKS:
            raise KeyError(f"no generator {m.group(2)!r} in docs/_gen/blocks.py (known: {', '.join(BLOCKS)})")
        return m.group(1) + "\n" + BLOCKS[m.group(2)](docs).strip("\n") + "\n\n" + m.group(4)

    return BLOCK.sub(fill, text)


def used(text: str) -> list[str]:
    """The names of the generated blocks in ``text``."""
    return [m.group(2) for m in BLOCK.finditer(text)]


if __name__ == "__main__":
    sys.path.insert(0, str(DOCS.parent / "src"))
    for page in pages():
        text = page.read_text(encoding="utf-8")
        new = render(text)
        if new != text:
            page.write_text(new, encoding="utf-8")
            print(f"wrote the generated blocks of {page.relative_to(DOCS.parent)}")
