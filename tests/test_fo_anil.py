"""FO-ANIL: the batched closed form against the generic torch.func path and a plain loop."""

import pytest
import torch
from conftest import gen, linear_problem

from metarep.methods import outer_grad_fn
from metarep.methods.fo_anil import fo_anil_grad
from metarep.models import LinearParams
from metarep.tasks import LinearRepTasks


def _setup(width: int, d: int = 10, k: int = 4, n: int = 7):
    return linear_problem(width, d, k, n)


def _loop_reference(params, batch, alpha, steps):
    """FO-ANIL written plainly, one task at a time, with autograd."""
    gB, gw = torch.zeros_like(params.B), torch.zeros_like(params.w)
    for X_in, y_in, X_out, y_out in zip(*batch):
        B = params.B.clone().requires_grad_(True)
        w = params.w.clone().requires_grad_(True)
        wi = w.detach().clone()
        for _ in range(steps):
            wi = wi.requires_grad_(True)
            (g,) = torch.autograd.grad(0.5 * ((X_in @ B.detach() @ wi - y_in) ** 2).mean(), wi)
            wi = (wi - alpha * g).detach()
        # first order: the outer gradient w.r.t. w is the gradient at the adapted head
        wi = w + (wi - w).detach()
        loss = 0.5 * ((X_out @ B @ wi - y_out) ** 2).mean()
        b_, w_ = torch.autograd.grad(loss, (B, w))
        gB += b_
        gw += w_
    n = batch.num_tasks
    return LinearParams(gB / n, gw / n)


@pytest.mark.parametrize("width", [2, 4, 9, 13])
@pytest.mark.parametrize("steps", [1, 3])
def test_closed_form_equals_torch_func_and_loop(width, steps):
    params, batch = _setup(width)
    closed = fo_anil_grad(params, batch, 0.2, steps)
    auto = outer_grad_fn("fo_anil", 0.2, steps, impl="autodiff")(params, batch)
    loop = _loop_reference(params, batch, 0.2, steps)
    for a, b, c in zip(closed, auto, loop):
        assert a.shape == b.shape
        assert torch.allclose(a, b, rtol=0, atol=1e-10)  # float64 round-off, far inside 1e-6
        assert torch.allclose(a, c, rtol=0, atol=1e-10)
    assert float(closed.B.abs().max()) > 1e-3  # the comparison is not between zeros


def test_float32_closed_form_close_to_float64():
    params, batch = _setup(6)
    g64 = fo_anil_grad(params, batch, 0.2)
    p32 = LinearParams(*(x.float() for x in params))
    b32 = type(batch)(*(x.float() for x in batch))
    g32 = fo_anil_grad(p32, b32, 0.2)
    for a, b in zip(g64, g32):
        assert torch.allclose(a, b.double(), atol=1e-5)


def test_chunked_steps_equal_one_batch():
    """A step over a pool in chunks, or over fresh tasks generated in chunks, is the one-batch mean."""
    from metarep.methods import chunked_mean
    from metarep.tasks import FreshTasks, TaskPool

    params, batch = _setup(6, n=11)
    fn = lambda p, b: fo_anil_grad(p, b, 0.2)  # noqa: E731
    whole = fn(params, batch)
    chunked = chunked_mean(fn, TaskPool(batch, None, gen(0), chunk=4))(params)
    for a, b in zip(whole, chunked):
        assert torch.allclose(a, b, atol=1e-12)
    t = LinearRepTasks.create(10, 4, 0.3, generator=gen(0))
    fresh = FreshTasks(t, 11, 5, 3, gen(3), chunk=4)
    chunks = list(FreshTasks(t, 11, 5, 3, gen(3), chunk=4).batches())
    same = type(batch)(*(torch.cat(x) for x in zip(*chunks)))
    for a, b in zip(fn(params, same), chunked_mean(fn, fresh)(params)):
        assert torch.allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 3])
def test_gram_path_equals_sample_path_when_m_exceeds_d(steps):
    from metarep.methods import chunked_mean
    from metarep.methods.fo_anil import fo_anil_grad_gram
    from metarep.tasks import GramBatch, TaskPool

    t = LinearRepTasks.create(6, 2, 0.3, generator=gen(0))
    batch = t.sample(9, 12, 8, gen(1))  # m_in = 12, m_out = 8 > d = 6
    g = gen(2)
    params = LinearParams(
        torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    )
    ref = fo_anil_grad(params, batch, 0.2, steps)
    got = fo_anil_grad_gram(params, GramBatch.from_batch(batch), 0.2, steps)
    pooled = chunked_mean(
        lambda p, b: fo_anil_grad_gram(p, b, 0.2, steps), TaskPool(batch, None, gen(0), chunk=4, layout="gram")
    )(params)
    for r, a, b in zip(ref, got, pooled):
        assert torch.allclose(a, r, atol=1e-12) and torch.allclose(b, r, atol=1e-12)


@pytest.mark.slow
def test_run_switches_to_gram_for_large_m(make_cfg):
    from metarep.methods import pool_layout
    from metarep.train import train

    cfg = make_cfg("task.d=8", "data.m_in=12", "data.m_out=10", "data.tasks=200", "run.steps=50", 'run.dtype="float64"')
    assert pool_layout(cfg) == "gram" and pool_layout(make_cfg("task.d=8", "data.m_in=12", "data.m_out=5")) == "dual"
    fast = train(cfg, progress=False).params
    slow = train(
        make_cfg(
            "task.d=8",
            "data.m_in=12",
            "data.m_out=10",
            "data.tasks=200",
            "run.steps=50",
            'run.dtype="float64"',
            'method.impl="autodiff"',
        ),
        progress=False,
    ).params
    assert torch.allclose(fast.B, slow.B, atol=1e-10)


@pytest.mark.parametrize("name", ["fo_anil", "anil", "fo_maml", "maml"])
def test_two_layout_pool_equals_sample_pool_in_chunks_and_minibatches(name):
    """The pool stored in two layouts (what `metarep run` uses) gives the same steps as the pool
    as sampled, whole, in chunks and in random mini-batches."""
    from metarep.methods import chunked_mean
    from metarep.tasks import TaskPool

    params, batch = linear_problem(12, 10, 4, 11)  # width 12 > 2d/3: FO-ANIL's wide-head form
    fn = outer_grad_fn(name, 0.2)
    for chunk, task_batch in ((None, None), (4, None), (3, 7)):
        pools = [TaskPool(batch, task_batch, gen(5), chunk=chunk, layout=lay) for lay in ("samples", "dual")]
        a, b = (chunked_mean(fn, p)(params) for p in pools)
        for x, y in zip(a, b):
            assert torch.allclose(x, y, rtol=0, atol=1e-12)


def test_default_runs_store_the_pool_in_two_layouts(make_cfg):
    from metarep.methods import pool_layout

    assert pool_layout(make_cfg()) == "dual"
    assert pool_layout(make_cfg('method.name="reptile"')) == "samples"
    assert pool_layout(make_cfg("data.fresh=true")) == "samples"
    assert pool_layout(make_cfg('method.impl="autodiff"')) == "samples"
    assert pool_layout(make_cfg("data.tasks=3000000")) == "samples"  # a second copy would take 18 GB
