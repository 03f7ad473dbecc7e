"""Many runs as one program: batched infinite-task runs equal the same runs made alone (float32: within
rtol 1e-5, atol 1e-6, a few ulps of rounding from batched products; in practice mostly bit-identical on
the CPU), a diverging member, resume after an interruption, the grouping rule, and the runner (jobs, Dask)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metarep.config import load_config
from metarep.experiments import batched, runner
from metarep.experiments.runner import RunSpec, is_complete, run_all
from metarep.outputs import verify_run
from metarep.train import train
from metarep.train_batched import train_batch

INF = ('data.tasks="inf"', "task.d=8", "task.k=2", "model.width=4", "run.steps=120", "run.eval_every=40")
RTOL, ATOL = 1e-5, 1e-6  # float32: a batched product rounds a few ulps apart from the lone one's


def cfgs(method: str = "fo_anil", n: int = 3, extra=(), dtype: str = "float32"):
    return [
        load_config(
            None,
            [
                *INF,
                f'method.name="{method}"',
                f'run.dtype="{dtype}"',
                *extra,
                f"run.seed={s}",
                f"data.m_in={5 + 5 * s}",
            ],
        )
        for s in range(n)
    ]


def assert_same(got, want, rtol=RTOL, atol=ATOL) -> None:
    assert got.status == want.status and got.message == want.message
    for a, b in zip(got.params, want.params):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    assert [r["step"] for r in got.history] == [r["step"] for r in want.history]
    for a, b in zip(got.history, want.history):
        np.testing.assert_allclose([a[k] for k in b], list(b.values()), rtol=1e-3, atol=1e-6)
    assert got.seeds == want.seeds


@pytest.mark.parametrize("method", ["fo_anil", "fo_maml", "anil", "maml"])
def test_batched_runs_equal_the_runs_made_alone(method):
    cs = cfgs(method, extra=("method.beta=0.3",))
    for got, want in zip(train_batch(cs), [train(c, progress=False) for c in cs]):
        assert_same(got, want)


def test_float64_batched_runs_match_to_float64_rounding_and_repeat_bit_for_bit():
    cs = cfgs(dtype="float64")
    first = train_batch(cs)
    for got, want in zip(first, [train(c, progress=False) for c in cs]):
        assert_same(got, want, rtol=1e-10, atol=1e-12)
    for a, b in zip(first, train_batch(cs)):  # deterministic: same batch, same numbers
        assert all(torch.equal(x, y) for x, y in zip(a.params, b.params)) and a.history == b.history


def test_a_diverging_member_is_marked_and_the_others_go_on():
    cs = cfgs(n=3)
    cs[1] = load_config(None, [*INF, "run.seed=1", "data.m_in=10", "method.beta=400"])
    got = train_batch(cs)
    want = [train(c, progress=False) for c in cs]
    assert [r.status for r in got] == ["complete", "diverged", "complete"]
    for g, w in zip(got, want):
        assert_same(g, w)


def test_an_interrupted_batch_resumes_from_its_checkpoints(tmp_path, monkeypatch):
    from metarep import train_batched

    specs = [RunSpec((*INF, "run.checkpoint_every=20"), s) for s in range(3)]
    partials = [str(tmp_path / f"p{i}") for i in range(3)]
    whole = batched.produce_batch(specs, partials=[str(tmp_path / f"w{i}") for i in range(3)])
    real = train_batched._after_step

    def stop_at_50(runs, live, B, w, G, step, steps, every):
        if step == 50:
            raise KeyboardInterrupt
        real(runs, live, B, w, G, step, steps, every)

    monkeypatch.setattr(train_batched, "_after_step", stop_at_50)
    cut = batched.produce_batch(specs, partials=partials)
    assert [r["status"] for r in cut] == ["interrupted"] * 3 and all(not r["files"] for r in cut)
    monkeypatch.setattr(train_batched, "_after_step", real)
    (tmp_path / "p2" / "checkpoint.npz").unlink()  # one run starts over: two batches, by checkpoint step
    again = batched.produce_batch(specs, partials=partials)
    assert [r["resumed"] for r in again] == [49, 49, 0]
    for a, b in zip(again, whole):
        assert a["status"] == "complete" and a["files"]["params.npz"] == b["files"]["params.npz"]
        assert a["files"]["history.csv"] == b["files"]["history.csv"]


def test_the_grouping_rule():
    seeds = [RunSpec(INF, s) for s in range(4)]
    scalars = [RunSpec((*INF, "method.alpha=0.2", "method.beta=0.3", "data.m_in=7"), 9)]
    wide = [RunSpec((*INF, "model.width=8"), s) for s in range(2)]
    evaluated = [RunSpec(INF, 0, (5,), 10)]
    finite = [RunSpec(("task.d=8", "task.k=2", "data.tasks=20"), s) for s in range(2)]
    other = [RunSpec((*INF, 'run.dtype="float64"'), 0)]  # another dtype
    groups = batched.group([*seeds, *scalars, *wide, *evaluated, *finite, *other])
    assert groups[0] == (*seeds, *scalars)  # seed, alpha, beta, m_in may differ
    assert groups[1] == tuple(wide)  # another shape: another batch
    assert groups[2:] == [(s,) for s in (*evaluated, *finite, *other)]  # another evaluation; finite; dtype
    halves = batched.group(seeds, parts=2)  # split so that two workers get work
    assert halves == [tuple(seeds[:2]), tuple(seeds[2:])]
    assert batched.group(seeds, max_size=3) == [tuple(seeds[:2]), tuple(seeds[2:])]


def test_run_all_batches_and_each_run_has_its_folder(tmp_path):
    specs = [RunSpec(INF, s, (5,), 10) for s in range(4)] + [RunSpec(("task.d=6", "task.k=2", "data.tasks=20"), 0)]
    c = run_all(specs, tmp_path, jobs=2, progress=False)
    assert (c["total"], c["ran"], c["failed"]) == (5, 5, 0)
    for spec in specs:
        assert is_complete(tmp_path / spec.key(), spec)
        verify_run(tmp_path / spec.key(), ("evaluation.json",) if spec.m_test else ())
    alone = tmp_path / "alone"
    for spec in specs[:2]:
        runner.execute(spec, alone / spec.key())
        with np.load(alone / spec.key() / "params.npz") as a, np.load(tmp_path / spec.key() / "params.npz") as b:
            for k in a.files:
                np.testing.assert_allclose(b[k], a[k], rtol=RTOL, atol=ATOL)
    assert run_all(specs, tmp_path, jobs=2, progress=False)["skipped"] == 5  # resumed: nothing to make


@pytest.mark.slow
def test_run_all_on_dask_batches(tmp_path):
    pytest.importorskip("distributed")
    from test_executors import Cluster

    c = None
    try:
        c = Cluster(tmp_path)
        specs = [RunSpec(INF, s) for s in range(4)]
        counts = run_all(specs, tmp_path / "store", progress=False, scheduler=c.address)
        assert (counts["ran"], counts["failed"]) == (4, 0)
        assert all(is_complete(tmp_path / "store" / s.key(), s) for s in specs)
    finally:
        if c is not None:
            c.close()


def test_batched_metrics_equal_the_metrics_of_each_run():
    """``representation_metrics_batch`` on a random float64 stack equals ``representation_metrics`` run by
    run: the same formulas, batched linear algebra rounding apart by float64 ulps only (rtol 1e-10); a zero
    ``B`` (the B = 0 branches) and a width below ``k`` are among the runs."""
    from types import SimpleNamespace

    from metarep.metrics import representation_metrics, representation_metrics_batch

    g = torch.Generator().manual_seed(0)
    for d, k, width in ((8, 3, 5), (8, 3, 2), (6, 6, 4)):
        Q = torch.linalg.qr(torch.randn(4, d, d, generator=g, dtype=torch.float64)).Q
        B_star, B_perp = Q[..., :k], Q[..., k:]
        B = torch.randn(4, d, width, generator=g, dtype=torch.float64)
        B[2] = 0
        w = torch.randn(4, width, generator=g, dtype=torch.float64)
        got = representation_metrics_batch(B, w, B_star, B_perp)
        for j, m in enumerate(got):
            want = representation_metrics(B[j], w[j], SimpleNamespace(B_star=B_star[j], B_perp=B_perp[j]))
            assert m.keys() == want.keys()
            torch.testing.assert_close(
                torch.tensor([*m.pop("signal_eigs"), *m.values()], dtype=torch.float64),
                torch.tensor([*want.pop("signal_eigs"), *want.values()], dtype=torch.float64),
                rtol=1e-10,
                atol=1e-12,
            )
