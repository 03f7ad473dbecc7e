"""What the figures show: gaps where an expectation is infinite, enough labelled ticks on log axes, curves that
coincide drawn so that each shows, numerical zeros on a floor, and titles that do not overlap."""

import math

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from metarep import plots
from metarep.experiments.framework import Curve
from metarep.experiments.paper import methods as paper_methods


def rendered(fig):
    FigureCanvasAgg(fig).draw()
    return fig.canvas.get_renderer()


def labelled_ticks(ax, axis="y"):
    """The tick labels of ``axis`` that are shown inside the axis limits."""
    a = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    return [t.get_text() for t in a.get_ticklabels() if t.get_text() and lo <= t.get_position()[axis == "y"] <= hi]


def test_a_closed_form_is_not_drawn_across_an_infinite_expectation():
    fig = plots.figure()
    ax = fig.subplots()
    line = plots.closed_form_line(ax, [5, 10, 20, 50], [4.9, 5.0, math.nan, 4.1], "scratch", color="0.5")
    y = np.asarray(line.get_ydata(), dtype=float)
    assert np.isnan(y[2]) and np.isfinite(y[[0, 1, 3]]).all()  # nan: matplotlib breaks the line there
    assert line.get_marker() == "o"  # a point between two gaps still shows
    assert line.get_label() == "scratch (infinite at m = 20)"


@pytest.mark.parametrize("lo,hi,least", [(0.3, 8.0, 4), (0.02, 3.0, 4), (1e-12, 1.0, 3)])
def test_log_axes_have_enough_labelled_ticks(lo, hi, least):
    fig = plots.figure()
    ax = fig.subplots()
    ax.plot([1, 2], [lo, hi])
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    plots.log_ticks(ax)
    rendered(fig)
    labels = labelled_ticks(ax)
    assert least <= len(labels) <= 12, labels
    assert all("$" not in t for t in labels)  # plain numbers


def test_coinciding_curves_are_found_within_five_percent():
    a = np.array([1.0, 0.5, 0.2])
    curves = [(a,), (a * 1.03,), (a * 1.2,), (a * 0.97,), (np.array([1.0, math.nan, 0.2]),)]
    assert plots.coinciding(curves) == [None, 0, None, 0, None]


def _method_row(label, mean):
    c = Curve(np.arange(len(mean)) * 10.0, np.asarray(mean), np.zeros(len(mean)))
    return paper_methods.MethodRow(
        label, None, np.ones(2), 0.0, 0.0, 0.0, 0.0, 100, {k: c for k in paper_methods.CURVES}
    )


def test_methods_figure_shows_coinciding_curves_and_keeps_its_legend_off_the_curves():
    mean = np.geomspace(1.0, 0.1, 20)
    data = paper_methods.MethodsData(
        [_method_row("fo_anil", mean), _method_row("anil", mean * 1.01), _method_row("reptile", mean * 3)]
    )
    fig = plots.figure(figsize=(12, 4.4))
    paper_methods.draw_methods(fig, data)
    r = rendered(fig)
    ax1, ax2 = fig.axes
    lines = {ln.get_label(): ln for ln in ax2.get_lines()}
    assert "anil (on fo_anil)" in lines and lines["anil (on fo_anil)"].get_linestyle() == "--"
    assert lines["anil (on fo_anil)"].get_marker() not in (None, "None", "")
    assert lines["fo_anil"].get_linestyle() == "-"
    legend = ax2.get_legend()
    assert "coincide" in legend.get_title().get_text()
    assert legend.get_window_extent(r).x0 >= ax2.get_window_extent(r).x1  # beside the axes, not on the curves
    assert len(labelled_ticks(ax2)) >= 3


def test_evaluation_figure_draws_an_estimator_equal_to_another_hollow():
    ms = [5, 10, 20, 50, 100]
    cf = [4.95, 5.03, 5.76, math.nan, 4.08]
    est = {
        "learned": {
            "closed_form": [5.0, 2.8, 1.7, 1.0, 0.8],
            "mc_mean": [4.9, 2.7, 1.6, 1.0, 0.76],
            "mc_se": [0.1] * 5,
        },
        "scratch": {"closed_form": cf, "mc_mean": [4.74, 4.82, 5.61, 5.9e4, 4.06], "mc_se": [0.1] * 5},
        "ls_span_B": {"closed_form": cf, "mc_mean": [4.74, 4.82, 5.61 * (1 + 1e-9), 5.9e4, 4.06], "mc_se": [0.1] * 5},
    }
    captured = []
    result = {"m_test": ms, "estimators": est, "n_tasks": 10}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots, "save_figure", lambda fig, path, **kw: captured.append(fig))
        plots.plot_risk(result, {n: n for n in est}, "title", "unused.png")
    (fig,) = captured
    ax = fig.axes[0]
    rendered(fig)
    faces = {c.get_label(): c.lines[0].get_markerfacecolor() for c in ax.containers}
    assert faces["ls_span_B (same values: hollow)"] == "none" and faces["scratch"] != "none"
    assert len(labelled_ticks(ax)) >= 3


def test_numerical_zeros_are_drawn_at_a_floor_and_said_so():
    fig = plots.figure()
    ax = fig.subplots()
    ax.set_yscale("log")
    assert plots.floor_zeros(ax, [2, 3, 5, 10], [1e-29, 0.0, 1e-31, 0.05], marker="o")
    line, marks = ax.get_lines()
    assert min(line.get_ydata()) == plots.NUMERICAL_ZERO and list(marks.get_xdata()) == [2, 3, 5]
    assert "numerical zero" in plots.floor_note()
    assert not plots.floor_zeros(ax, [1, 2], [0.1, 0.2])


def test_a_diverged_runs_title_does_not_overlap_the_panel_titles(tmp_path):
    history = [
        {"step": s, "signal_eig_1": v, "signal_eig_2": 2 * v, "perp_norm2": v, "perp_rate": s * v}
        for s, v in [(0, 1.0), (1, 1e6), (2, 1e12), (3, 2.8e15)]
    ]
    summary = {"signal_eigs": [1.0, 2.0], "predicted_signal_eigs": [4.0, 5.0], "predicted_perp_rate": 2.2}
    captured = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots, "save_figure", lambda fig, path, **kw: captured.append(fig))
        plots.plot_dynamics(history, summary, "fo_anil, infinite tasks, d=50  [DIVERGED]", tmp_path / "d.png")
    (fig,) = captured
    r = rendered(fig)
    top = fig._suptitle.get_window_extent(r)
    for ax in fig.axes:
        for text in (ax.title, ax.yaxis.get_offset_text()):
            if text.get_text():
                assert not top.overlaps(text.get_window_extent(r)), text.get_text()


@pytest.mark.parametrize("c", [None, 2.2])
def test_dynamics_draws_the_c_over_t_line_only_where_the_theory_predicts_one(tmp_path, c):
    history = [
        {"step": s, "signal_eig_1": 1.0, "signal_eig_2": 2.0, "perp_norm2": 1.0 / (s + 1), "perp_rate": s / (s + 1)}
        for s in (0, 10, 20, 30)
    ]
    summary = {"signal_eigs": [1.0, 2.0], "predicted_signal_eigs": [4.0, 5.0], "predicted_perp_rate": c}
    captured = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots, "save_figure", lambda fig, path, **kw: captured.append(fig))
        plots.plot_dynamics(history, summary, "fo_anil, infinite tasks", tmp_path / "d.png")
    (fig,) = captured
    dashed = [line for line in fig.axes[1].get_lines() if line.get_linestyle() == "--"]
    if c is None:
        assert dashed == [] and len(fig.axes[1].get_lines()) == 1  # the measured curve only
    else:
        (line,) = dashed
        assert np.allclose(line.get_ydata(), [c / s for s in (10, 20, 30)]) and "2.2 / t" in line.get_label()
