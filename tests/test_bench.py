"""`metarep bench`: every timed path computes the same gradient, and the report has every path."""

import pytest
import torch
from conftest import linear_problem

from metarep import bench
from metarep.methods import chunked_mean, generic_linear_grad
from metarep.methods.fo_anil import fo_anil_grad
from metarep.tasks import DualBatch, TaskPool


def test_timed_paths_compute_the_same_gradient():
    params, batch = linear_problem(7, 6, 2, 9)  # float64: the paths differ by round-off only
    ref = fo_anil_grad(params, batch, 0.2)
    others = [
        bench.fo_anil_loop(params, batch, 0.2),
        bench.fo_anil_grad_xb(params, batch, 0.2),
        generic_linear_grad("fo_anil", 0.2, 1)(params, batch),
        fo_anil_grad(params, DualBatch.from_batch(batch), 0.2),
        chunked_mean(lambda q, b: fo_anil_grad(q, b, 0.2), TaskPool(batch, None, torch.Generator(), 4, "dual"))(params),
    ]
    for got in others:
        for a, b in zip(got, ref):
            assert torch.allclose(a, b, rtol=0, atol=1e-12), float((a - b).abs().max())


def test_bench_setting_reports_every_path(monkeypatch):
    monkeypatch.setitem(bench.SETTINGS, "tiny", dict(d=6, k=2, width=6, n=40, m_in=8, m_out=8))  # m > d: Gram too
    res = bench.bench_setting("tiny", rounds=2, loop_tasks=10)
    expected = {
        "loop",
        "vmap",
        "closed_xb",
        "fast",
        "fast_1chunk",
        "fast_samples",
        "floor",
        "floor_dual",
        "gram",
        "infinite",
    }
    assert set(res["seconds"]) == expected
    assert all(t > 0 for t in res["seconds"].values())
    assert res["ratio_to_fast"]["fast"] == 1.0
    text = bench.format_table(
        {
            "threads": 1,
            "torch": "x",
            "settings": {"tiny": res},
            "streaming": {"tasks": 1, "chunk": 1, "seconds": 0.0, "peak_rss_mb": 1.0, "full_tensor_mb": 1.0},
        }
    )
    assert all(k in text for k in expected)


def test_median_times_interleaves_and_counts_calls():
    order: list[str] = []
    times = bench.median_times({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, 2, {"b": 3})
    # one warm-up each, then per round: a once, b once untimed and three times timed
    assert order == ["a", "b"] + ["a", "b", "b", "b", "b"] * 2
    assert set(times) == {"a", "b"}


def test_runs_per_minute_reports_alone_and_batched():
    res = bench.runs_per_minute(seeds=3, steps=20, base=("task.d=8", "model.width=8", "task.k=2"), alone_max=2)
    assert (res["seeds"], res["steps"]) == (3, 20)
    assert res["alone_runs_per_minute"] > 0 and res["batched_runs_per_minute"] > 0
    assert res["speedup"] == pytest.approx(res["batched_runs_per_minute"] / res["alone_runs_per_minute"])
    streaming = {"tasks": 1, "chunk": 1, "seconds": 0.0, "peak_rss_mb": 1.0, "full_tensor_mb": 1.0}
    text = bench.format_table({"threads": 1, "torch": "x", "settings": {}, "streaming": streaming, "batched_runs": res})
    assert "many runs (3 seeds" in text and "batched" in text
