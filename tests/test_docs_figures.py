"""The docs' figures and result tables come from committed data, drawn and written by today's code.

``docs/_gen/figures.py`` draws every figure the pages show from ``docs/data/`` (``make docs`` does it
before building the site); ``docs/_gen/blocks.py`` writes the tables and numbers that come from result
files into the pages. Here: every figure draws from its data, no page shows an image that is not drawn
that way, and every generated block of every page is what its generator makes of the data today.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_gen_{name}", DOCS / "_gen" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


figures = _load("figures")
blocks = _load("blocks")


@pytest.mark.parametrize("figure", sorted(figures.FIGURES))
def test_every_docs_figure_is_drawn_from_its_committed_data(figure, tmp_path):
    data, _ = figures.FIGURES[figure]
    assert (DOCS / data).is_file(), f"{figure}: its data {data} is not committed"
    path = figures.draw(figure, tmp_path)
    assert path == tmp_path / figure and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 20_000  # a drawn figure, not an empty canvas


def test_every_image_of_the_pages_is_a_drawn_figure():
    shown = set()
    for page in blocks.pages():
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+\.png)\)", page.read_text(encoding="utf-8")):
            base = DOCS if page.parent == DOCS else DOCS.parent
            shown.add((base / target).resolve().relative_to(DOCS).as_posix())
    assert shown, "no images found: the pattern no longer matches the pages"
    assert shown <= set(figures.FIGURES), f"images not drawn from data: {sorted(shown - set(figures.FIGURES))}"


@pytest.mark.parametrize("page", blocks.pages(), ids=lambda p: p.name)
def test_generated_blocks_are_what_their_data_gives_today(page):
    text = page.read_text(encoding="utf-8")
    assert blocks.render(text) == text, f"{page.name}: a generated block is stale; run `make docs-blocks`"


def test_every_generator_is_used_and_an_unknown_one_fails():
    used = {name for page in blocks.pages() for name in blocks.used(page.read_text(encoding="utf-8"))}
    assert used == set(blocks.BLOCKS)
    with pytest.raises(KeyError, match="no generator 'nope'"):
        blocks.render("<!-- generated: nope -->\nx\n<!-- end generated -->\n")
    # a block is made anew from nothing, and its hand-edited content does not survive
    fresh = blocks.render("<!-- generated: finite-within -->\n<!-- end generated -->\n")
    assert fresh == blocks.render(fresh.replace("9.4%", "1.0%")) and "within" in fresh


def test_the_finite_table_reads_its_numbers_from_the_data(tmp_path):
    """Change the data, and the table and the sentence change with it."""
    import json
    import shutil

    (tmp_path / "data").mkdir()
    shutil.copy(DOCS / "data" / "finite-full.json", tmp_path / "data" / "finite-full.json")
    doc = json.loads((tmp_path / "data" / "finite-full.json").read_text())
    point = doc["aggregate"]["fields"]["points"][-1]["fields"]  # the last setting at the largest N
    point["mean"]["perp_norm2"] = point["predicted"]["perp_norm2"] / 1.5  # a 50% miss
    (tmp_path / "data" / "finite-full.json").write_text(json.dumps(doc))
    assert "+50.0%" in blocks.finite_table(tmp_path) and "+50.0%" not in blocks.finite_table(DOCS)
    assert "within 50.0% of the measured mean for `‖·‖₂²`" in blocks.finite_within(tmp_path)
