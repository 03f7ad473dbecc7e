"""The documentation's figures, drawn from committed data (``docs/data/``) by today's plotting code.

No figure of the docs is stored: ``make docs`` (``make docs-figures``) draws every one into
``docs/assets/`` (git-ignored) before the site is built, so a change to a plot shows in the docs at once.
``tests/test_docs_figures.py`` draws them all too. Each entry of :data:`FIGURES` names the figure, the
data it is drawn from and how:

- ``data/reproduce/NAME.json``: the snapshot (``metarep.experiments.snapshot``) that
  ``metarep reproduce NAME --quick --seeds 2`` writes beside ``NAME.png``;
- ``data/finite-full.json``: the snapshot of the full ``finite`` experiment (N = 500 to 50 000);
- ``data/demo.json``: what ``metarep demo`` writes beside ``demo.png``.

Run as a script: ``python docs/_gen/figures.py [OUT_DIR]`` (default: ``docs/``) draws them under OUT_DIR.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
REPRODUCED = ("learning", "unlearning", "methods", "adaptation", "width", "alpha", "relu")

# figure (relative to docs/) -> (its data, relative to docs/; the tag in the title of an experiment's figure)
FIGURES: dict[str, tuple[str, str | None]] = {
    "assets/demo.png": ("data/demo.json", None),
    "assets/finite-full.png": ("data/finite-full.json", ""),
    **{f"assets/reproduce/{n}.png": (f"data/reproduce/{n}.json", "quick") for n in REPRODUCED},
}


def draw(figure: str, out: Path, docs: Path = DOCS) -> Path:
    """Draw ``figure`` (a key of :data:`FIGURES`) from its data under ``docs`` into ``out / figure``."""
    from metarep.demo_figure import redraw_demo
    from metarep.experiments.framework import redraw
    from metarep.experiments.paper import PAPER

    data, tag = FIGURES[figure]
    path = out / figure
    path.parent.mkdir(parents=True, exist_ok=True)
    if tag is None:
        redraw_demo(docs / data, path)
    else:
        redraw(PAPER, docs / data, path, tag)
    return path


def draw_all(out: Path = DOCS, docs: Path = DOCS) -> list[Path]:
    """Draw every figure of :data:`FIGURES` under ``out``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    return [draw(f, out, docs) for f in FIGURES]


if __name__ == "__main__":
    sys.path.insert(0, str(DOCS.parent / "src"))
    for p in draw_all(Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS):
        print(f"drew {p.relative_to(DOCS) if p.is_relative_to(DOCS) else p}")
