"""The overhead around the steps (issue 24, item 3): the tabulated Ginibre constants of the finite-pool
floor, and runs of reproductions and sweeps that draw their figure only when asked."""

from __future__ import annotations

import json
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import TINY_RUN, InProcess

from metarep import outputs, theory_finite
from metarep.experiments import runner
from metarep.experiments.runner import RunSpec, run_all
from metarep.outputs import plot_run, stale_figures, verify_run
from metarep.theory_finite import GINIBRE_SEED, MAX_GINIBRE, ginibre_constants, ginibre_sample, ginibre_table

ROOT = Path(__file__).resolve().parents[1]


def test_the_table_covers_every_size_and_ships_with_the_package():
    table = ginibre_table()
    assert sorted(table) == list(range(1, MAX_GINIBRE + 1))
    data = json.loads((ROOT / "src" / "metarep" / theory_finite.GINIBRE_TABLE).read_text())
    assert (data["seed"], data["max_size"]) == (GINIBRE_SEED, MAX_GINIBRE)
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "data/*.json" in package_data["metarep"]


@pytest.mark.parametrize("n", [1, 2, 9, 45])
def test_table_entries_are_the_samples_of_the_same_seed(n):
    # the same sampling as on demand (to the eigen-solvers' rounding): predictions do not change
    assert ginibre_table()[n] == pytest.approx(ginibre_sample(n), rel=1e-9)


@pytest.mark.parametrize("n", [9, 45])
def test_table_entries_agree_with_fresh_samples_within_the_stated_error(n, monkeypatch):
    monkeypatch.setattr(theory_finite, "GINIBRE_SEED", GINIBRE_SEED + 7919)  # other matrices
    fresh = ginibre_sample(n)
    # about 1% sampling error for each: their difference within 4% (about 3 standard deviations)
    assert ginibre_table()[n] == pytest.approx(fresh, rel=0.04)


def test_the_table_is_used(monkeypatch):
    def sampled(size):
        raise AssertionError(f"sampled size {size} instead of reading the table")

    monkeypatch.setattr(theory_finite, "ginibre_sample", sampled)
    ginibre_constants.cache_clear()
    try:
        assert ginibre_constants(45) == ginibre_table()[45]
        c2, cF = ginibre_table()[MAX_GINIBRE]
        assert ginibre_constants(2 * MAX_GINIBRE) == (c2, cF * 2)  # extrapolated from the largest size
    finally:
        ginibre_constants.cache_clear()


def test_sizes_outside_the_table_are_sampled(monkeypatch):
    monkeypatch.setattr(theory_finite, "ginibre_table", dict)  # no table (missing, or of another seed)
    ginibre_constants.cache_clear()
    try:
        assert ginibre_constants(9) == ginibre_sample(9)
    finally:
        ginibre_constants.cache_clear()


SPEC = RunSpec(TINY_RUN, 0, figures=False)


def test_runs_of_a_reproduction_draw_their_figure_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "make_executor", lambda jobs, scheduler: InProcess())
    drawn: list[Path] = []
    draw = outputs.plot_dynamics
    monkeypatch.setattr(outputs, "plot_dynamics", lambda *a: drawn.append(Path(a[-1])) or draw(*a))
    store = tmp_path / "runs"
    assert run_all([SPEC], store, progress=False)["ran"] == 1
    d = store / SPEC.key()
    summary = verify_run(d)
    assert not (d / "dynamics.png").exists() and summary["figures"] == {"dynamics.png": None}
    assert stale_figures(d, summary) == [] and stale_figures(d, summary, undrawn=True) == ["dynamics.png"]
    assert SPEC.key() == replace(SPEC, figures=True).key()  # the same run, drawn or not

    assert run_all([SPEC], store, progress=False)["skipped"] == 1  # reused: not drawn by choice, left so
    assert not drawn and not (d / "dynamics.png").exists()
    assert run_all([replace(SPEC, figures=True)], store, progress=False)["skipped"] == 1  # asked: drawn now
    assert drawn == [d / "dynamics.png"] and stale_figures(d, verify_run(d)) == []


def test_plot_draws_a_figure_not_drawn_by_choice(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "make_executor", lambda jobs, scheduler: InProcess())
    store = tmp_path / "runs"
    run_all([SPEC], store, progress=False)
    d = store / SPEC.key()
    assert plot_run(d) == [d / "dynamics.png"]
    assert verify_run(d)["figures"]["dynamics.png"] == outputs.sha256_bytes((d / "dynamics.png").read_bytes())
    (d / "dynamics.png").unlink()  # drawn once, then lost: missing, drawn again by the runner
    assert stale_figures(d, verify_run(d)) == ["dynamics.png"]


def test_an_evaluated_run_of_a_reproduction_draws_no_evaluation_figure_unless_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "make_executor", lambda jobs, scheduler: InProcess())
    spec = RunSpec(TINY_RUN, 0, (5, 10), 20, figures=False)
    store = tmp_path / "runs"
    assert run_all([spec], store, progress=False)["ran"] == 1
    d = store / spec.key()
    summary = verify_run(d, require=("evaluation.json", "evaluation.csv"))
    assert not (d / "evaluation.png").exists() and not (d / "dynamics.png").exists()
    assert summary["figures"] == {"dynamics.png": None, "evaluation.png": None}
    assert stale_figures(d, summary) == [] and sorted(stale_figures(d, summary, undrawn=True)) == [
        "dynamics.png",
        "evaluation.png",
    ]
    assert sorted(p.name for p in plot_run(d)) == ["dynamics.png", "evaluation.png"]  # drawn on request
    assert stale_figures(d, verify_run(d)) == []
