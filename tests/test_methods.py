"""Every method's batched closed form against autodiff of the method's own definition, written
plainly one task at a time, and against the generic torch.func path."""

import pytest
import torch
from conftest import gen, linear_problem

from metarep.methods import outer_grad_fn
from metarep.methods.moments import moments_estimate
from metarep.methods.multitask import MultitaskParams, multitask_grad, multitask_loss
from metarep.metrics import subspace_sin
from metarep.models import LinearParams
from metarep.tasks import DualBatch, LinearRepTasks

ALPHA = 0.2


def _setup(width: int, d: int = 9, k: int = 4, n: int = 6):
    return linear_problem(width, d, k, n)


def _loss(B, w, X, y):
    return 0.5 * ((X @ B @ w - y) ** 2).mean()


def _reference(name, params, batch, steps):
    """Each method's definition, one task at a time, differentiated by autograd."""
    gB, gw = torch.zeros_like(params.B), torch.zeros_like(params.w)
    for X_in, y_in, X_out, y_out in zip(*batch):
        B = params.B.clone().requires_grad_(True)
        w = params.w.clone().requires_grad_(True)
        if name == "reptile":
            X, y = torch.cat([X_in, X_out]), torch.cat([y_in, y_out])
            Bi, wi = B, w
            for _ in range(steps):
                dB, dw = torch.autograd.grad(_loss(Bi, wi, X, y), (Bi, wi), create_graph=True)
                Bi, wi = Bi - ALPHA * dB, wi - ALPHA * dw
            gB += (B - Bi).detach()
            gw += (w - wi).detach()
            continue
        second_order = name in ("anil", "maml")
        adapt_B = name in ("fo_maml", "maml")
        Bi, wi = B, w
        for _ in range(steps):
            if adapt_B:
                dB, dw = torch.autograd.grad(_loss(Bi, wi, X_in, y_in), (Bi, wi), create_graph=second_order)
                Bi = Bi - ALPHA * dB
            else:
                (dw,) = torch.autograd.grad(_loss(Bi, wi, X_in, y_in), (wi,), create_graph=second_order)
            wi = wi - ALPHA * dw
        if second_order:
            b_, w_ = torch.autograd.grad(_loss(Bi, wi, X_out, y_out), (B, w))
        else:  # first order: the gradient at the adapted point
            Bi, wi = Bi.detach().requires_grad_(True), wi.detach().requires_grad_(True)
            b_, w_ = torch.autograd.grad(_loss(Bi, wi, X_out, y_out), (Bi, wi))
        gB += b_
        gw += w_
    n = batch.num_tasks
    return LinearParams(gB / n, gw / n)


@pytest.mark.parametrize("name", ["fo_anil", "anil", "fo_maml", "maml", "reptile"])
@pytest.mark.parametrize("width", [2, 4, 11])  # below k, equal, above d
@pytest.mark.parametrize("steps", [1, 2])
def test_closed_form_and_torch_func_equal_plain_definition(name, width, steps):
    params, batch = _setup(width)
    ref = _reference(name, params, batch, steps)
    closed = outer_grad_fn(name, ALPHA, steps)(params, batch)
    dual = outer_grad_fn(name, ALPHA, steps)(params, DualBatch.from_batch(batch))  # the pool's two layouts
    auto = outer_grad_fn(name, ALPHA, steps, impl="autodiff")(params, batch)
    for r, c, c2, a in zip(ref, closed, dual, auto):
        # float64: the paths differ only by round-off (~1e-15 relative); 1e-9 leaves ample room
        # while any algebra slip is of the size of the gradient itself (> 1e-3 here).
        for got in (c, c2, a):
            assert torch.allclose(got, r, rtol=0, atol=1e-9), float((got - r).abs().max())
    assert float(ref.B.abs().max()) > 1e-3


def test_second_order_terms_matter():
    """ANIL ≠ FO-ANIL and MAML ≠ FO-MAML away from w = 0: the comparison above has power."""
    params, batch = _setup(4)
    for so, fo in (("anil", "fo_anil"), ("maml", "fo_maml")):
        a, b = outer_grad_fn(so, ALPHA)(params, batch), outer_grad_fn(fo, ALPHA)(params, batch)
        assert float((a.B - b.B).abs().max()) > 1e-3


@pytest.mark.parametrize("width", [3, 7])
def test_multitask_gradient_equals_autograd(width):
    t = LinearRepTasks.create(6, 2, 0.3, generator=gen(0))
    X, y = t.sample(5, 4, 3, gen(1)).merged()
    g = gen(2)
    p = MultitaskParams(
        torch.randn(6, width, generator=g, dtype=torch.float64), torch.randn(5, width, generator=g, dtype=torch.float64)
    )
    B, W = (x.clone().requires_grad_(True) for x in p)
    ref = torch.autograd.grad(multitask_loss(MultitaskParams(B, W), X, y, 0.7), (B, W))
    got = multitask_grad(p, X, y, 0.7)
    for r, c in zip(ref, got):
        assert torch.allclose(c, r, atol=1e-12)


def test_moments_population_matrix_and_consistency():
    """mean(y² x xᵀ) → 2S + (tr Σ* + σ²) I, and the estimated subspace sharpens as N grows."""
    t = LinearRepTasks.create(10, 3, 0.5, "linear", generator=gen(0))
    sins = []
    for n in (30, 300, 3000, 30000):
        X, y = t.sample(n, 10, 0, gen(n)).merged()
        sins.append(subspace_sin(moments_estimate(X, y, 3), t.B_star))
    assert all(b < a for a, b in zip(sins, sins[1:])), sins
    assert sins[-1] < 0.1


def test_row_sums_both_forms_equal_the_definition():
    from metarep.methods._linear import row_sums

    g = gen(3)
    A = torch.randn(7, 4, 5, generator=g, dtype=torch.float64)
    for c in (torch.randn(7, 4, generator=g, dtype=torch.float64), torch.randn(4, dtype=torch.float64).expand(7, -1)):
        ref = torch.stack([sum(c[i, j] * A[i, j] for j in range(4)) for i in range(7)])
        for bags in (True, False):
            assert torch.allclose(row_sums(A, c, bags), ref, rtol=0, atol=1e-13)
