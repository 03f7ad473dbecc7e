"""The exact infinite-task update (MATH.md §4) against Monte-Carlo averages of finite updates."""

import pytest
import torch
from conftest import gen

from metarep.methods.fo_anil import fo_anil_expected_grad, fo_anil_terms
from metarep.models import LinearParams
from metarep.tasks import LinearRepTasks

D, K, M_IN, M_OUT, ALPHA = 8, 3, 4, 3, 0.3


def _mc_fo_anil(params, tasks, n_tasks, chunk=50_000, seed=5):
    """Mean and standard error of per-task FO-ANIL gradients over ``n_tasks`` fresh tasks."""
    g = gen(seed)
    s1 = [torch.zeros_like(p) for p in params]
    s2 = [torch.zeros_like(p) for p in params]
    for _ in range(n_tasks // chunk):
        batch = tasks.sample(chunk, M_IN, M_OUT, g)
        g_out, W = fo_anil_terms(params, batch, ALPHA)
        per_task = (g_out[:, :, None] * W[:, None, :], g_out @ params.B)  # g_out w_iᵀ, Bᵀ g_out
        for a, b, x in zip(s1, s2, per_task):
            a += x.sum(0)
            b += (x**2).sum(0)
    mean = [a / n_tasks for a in s1]
    se = [((b / n_tasks - m**2) / n_tasks).sqrt() for b, m in zip(s2, mean)]
    return mean, se


@pytest.mark.slow
@pytest.mark.parametrize("width", [2, 6, 11])  # below k, above k, above d
@pytest.mark.parametrize("zero_head", [False, True])
def test_expected_update_matches_monte_carlo(width, zero_head):
    tasks = LinearRepTasks.create(D, K, 0.5, "linear", generator=gen(0))
    g = gen(1)
    B = 1.5 * torch.randn(D, width, generator=g, dtype=torch.float64) / D**0.5
    w = torch.zeros(width, dtype=torch.float64) if zero_head else torch.randn(width, generator=g, dtype=torch.float64)
    params = LinearParams(B, w)
    exact = fo_anil_expected_grad(params, tasks, ALPHA, M_IN)
    mean, se = _mc_fo_anil(params, tasks, 400_000)
    for e, m, s in zip(exact, mean, se):
        if zero_head and e.dim() == 1:
            assert torch.equal(e, torch.zeros_like(e))  # E[grad_w] = Bᵀ(u − αPu) = 0 at w = 0
            continue
        z = (m - e) / s
        # Each entry is a mean of 400k i.i.d. terms, so z is standard normal; with at most ~90
        # entries, |z| > 5 has probability < 1e-4. The check has power: the standard error is
        # under 3% of the gradient's size.
        assert float(z.abs().max()) < 5.0, float(z.abs().max())
        assert float(s.max()) < 0.03 * float(e.abs().max())


def test_expected_update_at_zero_head_is_the_compact_form():
    """At w = 0: E[grad_B] = α (M G − S) B with M = αBBᵀ, G = (1 + 1/m)S + bI (MATH.md §4)."""
    tasks = LinearRepTasks.create(D, K, 0.5, "identity", generator=gen(0))
    B = torch.randn(D, 5, generator=gen(1), dtype=torch.float64) / D**0.5
    exact = fo_anil_expected_grad(LinearParams(B, torch.zeros(5, dtype=torch.float64)), tasks, ALPHA, M_IN)
    S = tasks.S
    b = (tasks.trace + tasks.sigma2) / M_IN
    G = (1 + 1 / M_IN) * S + b * torch.eye(D, dtype=torch.float64)
    M = ALPHA * B @ B.T
    assert torch.allclose(exact.B, ALPHA * (M @ G - S) @ B, atol=1e-13)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["anil", "maml", "fo_maml"])
@pytest.mark.parametrize("width", [2, 6])
def test_second_order_expected_update_matches_monte_carlo_at_zero_head(name, width):
    """E[grad_B] = α(MG + GM − 2S)B for ANIL and MAML (FO-MAML: the FO-ANIL form) at w = 0.

    The standard error comes from the spread of 100 chunk means of 4000 tasks each.
    """
    from metarep.methods import expected_grad_fn, outer_grad_fn

    tasks = LinearRepTasks.create(D, K, 0.5, "linear", generator=gen(0))
    B = 1.5 * torch.randn(D, width, generator=gen(1), dtype=torch.float64) / D**0.5
    params = LinearParams(B, torch.zeros(width, dtype=torch.float64))
    exact = expected_grad_fn(name, ALPHA, 1, M_IN, tasks)(params)
    assert torch.equal(exact.w, torch.zeros_like(exact.w))
    fn, g = outer_grad_fn(name, ALPHA), gen(7)
    means = torch.stack([fn(params, tasks.sample(4000, M_IN, M_OUT, g)).B for _ in range(100)])
    z = (means.mean(0) - exact.B) / (means.std(0) / 10)
    # 100 chunk means: z is close to Student-t with 99 d.o.f.; |z| < 5 over ≤ 48 entries fails
    # with probability ~1e-4. Power: the standard error is under 5% of the gradient's size.
    assert float(z.abs().max()) < 5.0, float(z.abs().max())
    assert float((means.std(0) / 10).max()) < 0.05 * float(exact.B.abs().max())


def test_infinite_update_refuses_non_zero_head_for_second_order_methods():
    from metarep.methods import MethodError, expected_grad_fn

    tasks = LinearRepTasks.create(D, K, 0.5, generator=gen(0))
    params = LinearParams(torch.randn(D, 4, dtype=torch.float64), torch.ones(4, dtype=torch.float64))
    for name in ("anil", "maml", "fo_maml"):
        with pytest.raises(MethodError, match="w = 0"):
            expected_grad_fn(name, ALPHA, 1, M_IN, tasks)(params)
    with pytest.raises(MethodError, match="infinite"):
        expected_grad_fn("reptile", ALPHA, 1, M_IN, tasks)
