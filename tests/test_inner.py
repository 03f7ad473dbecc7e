"""Learned inner-loop rules and ProtoNets: Meta-SGD's and the learned step size's meta-gradients, and
the momentum/Adam inner optimizers, equal a per-task autograd loop written from their definitions
(float64, 1 and 3 inner steps); prototypes and logits equal a direct computation."""

import pytest
import torch
import torch.nn.functional as F
from conftest import gen
from torch import nn
from torch.func import functional_call

from metarep.learner import MetaLearner
from metarep.methods.protonet import prototypes, squared_euclidean_logits
from metarep.runtime import torch_threads
from metarep.tasks import TaskBatch

ATOL = 1e-10  # float64 sums of a few hundred terms of size O(1): rounding stays below 1e-13


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def _net(seed=0, d_in=3, h=5, out=1):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh()).double(), nn.Linear(h, out).double()


def _batch(T=3, n_in=5, n_out=4, d_in=3, seed=1):
    g = gen(seed)
    X_in = torch.randn(T, n_in, d_in, generator=g, dtype=torch.float64)
    X_out = torch.randn(T, n_out, d_in, generator=g, dtype=torch.float64)
    w = torch.randn(T, d_in, generator=g, dtype=torch.float64)
    f = lambda X: torch.sin(torch.einsum("tnd,td->tn", X, w))  # noqa: E731
    return TaskBatch(X_in, f(X_in), X_out, f(X_out))


def _mse(pred, y):
    return ((pred.squeeze(-1) - y) ** 2).mean()


def _direction(opt, g, state, s):
    """One step's direction of the inner optimizer, written out (metarep.inner's docstring)."""
    if opt == "sgd":
        return g, state
    if opt == "momentum":
        b = [0.9 * b_ + g_ for b_, g_ in zip(state, g)]
        return b, b
    m, v = state
    m = [0.9 * m_ + 0.1 * g_ for m_, g_ in zip(m, g)]
    v = [0.999 * v_ + 0.001 * g_ * g_ for v_, g_ in zip(v, g)]
    d = [(m_ / (1 - 0.9**s)) / (torch.sqrt(v_ / (1 - 0.999**s) + 1e-12) + 1e-8) for m_, v_ in zip(m, v)]
    return d, (m, v)


def _reference(model, keys, alpha, steps, batch, *, second_order, opt="sgd"):
    """Mean meta-gradient over tasks, one task at a time with torch.autograd, from the definitions.

    ``alpha``: a float, a scalar tensor (learned) or {key: tensor} (Meta-SGD). Second order: through
    the inner loop. First order: φ = θ_a − Σ_s α ⊙ d_s with every d_s computed at the detached φ_s.
    Returns {param name: grad} plus {"inner_lr" or "inner_lr:KEY": grad} for learned step sizes.
    """
    params = dict(model.named_parameters())
    lr = {k: (alpha[k] if isinstance(alpha, dict) else alpha) for k in keys}
    learned = (
        {f"inner_lr:{k}": v for k, v in alpha.items()}
        if isinstance(alpha, dict)
        else ({"inner_lr": alpha} if isinstance(alpha, torch.Tensor) else {})
    )
    wrt = {**params, **learned}
    total = {k: torch.zeros_like(v) for k, v in wrt.items()}
    f = lambda p, X: functional_call(model, p, (X,))  # noqa: E731
    for X_in, y_in, X_out, y_out in zip(*batch):
        fast = dict(params)
        state = None
        for s in range(1, steps + 1):
            at = fast if second_order else {k: v.detach().requires_grad_(k in keys) for k, v in fast.items()}
            gs = torch.autograd.grad(_mse(f(at, X_in), y_in), [at[k] for k in keys], create_graph=second_order)
            if state is None:
                zeros = [torch.zeros_like(g) for g in gs]
                state = zeros if opt == "momentum" else (zeros, [z.clone() for z in zeros])
            d, state = _direction(opt, list(gs), state, s)
            fast = {**fast, **{k: fast[k] - lr[k] * d_ for k, d_ in zip(keys, d)}}
        gs = torch.autograd.grad(_mse(f(fast, X_out), y_out), list(wrt.values()), allow_unused=True)
        for k, g in zip(wrt, gs):
            if g is not None:
                total[k] += g
    return {k: v / batch[0].shape[0] for k, v in total.items()}


def _compare(got, ref):
    assert set(got) == set(ref)
    for k in ref:
        assert torch.allclose(got[k], ref[k], rtol=0, atol=ATOL), (k, (got[k] - ref[k]).abs().max())
    assert max(float(v.abs().max()) for v in ref.values()) > 1e-3  # not a comparison of zeros


@pytest.mark.parametrize("steps", [1, 3])
def test_metasgd_meta_grad_equals_per_task_loop(steps):
    features, head = _net()
    learner = MetaLearner(features, head, method="metasgd", inner_lr=0.2, inner_steps=steps)
    batch = _batch()
    got = learner.meta_grad(batch)
    keys = learner.adapt_keys_
    assert keys == tuple(n for n, _ in learner.model_.named_parameters())  # every parameter adapts
    alpha = learner.inner_lr_
    assert set(alpha) == set(keys) and all(alpha[k].shape == learner.model_.get_parameter(k).shape for k in keys)
    with torch.no_grad():  # per-entry step sizes that differ, so that the test sees them entry by entry
        for k in keys:
            alpha[k].mul_(1 + 0.5 * torch.rand(alpha[k].shape, generator=gen(7), dtype=torch.float64))
    got = learner.meta_grad(batch)
    _compare(got, _reference(learner.model_, keys, alpha, steps, batch, second_order=True))
    assert float(got[f"inner_lr:{keys[0]}"].abs().max()) > 1e-4  # α gets a gradient


@pytest.mark.parametrize("method", ["fo_anil", "anil", "fo_maml", "maml"])
@pytest.mark.parametrize("steps", [1, 3])
def test_learned_scalar_step_size_meta_grad_equals_per_task_loop(method, steps):
    features, head = _net(1)
    learner = MetaLearner(features, head, method=method, inner_lr=0.3, inner_steps=steps, learn_inner_lr=True)
    batch = _batch(seed=2)
    got = learner.meta_grad(batch)
    assert learner.inner_lr_.shape == () and learner.inner_lr_.requires_grad
    second = method in ("anil", "maml")
    ref = _reference(learner.model_, learner.adapt_keys_, learner.inner_lr_, steps, batch, second_order=second)
    _compare(got, ref)
    assert abs(float(got["inner_lr"])) > 1e-4
    # without learning it, the parameters' gradient is the fixed-step method's
    fixed = MetaLearner(*_net(1), method=method, inner_lr=0.3, inner_steps=steps).meta_grad(batch)
    for k, v in fixed.items():
        assert torch.allclose(v, got[k], rtol=0, atol=ATOL), k


@pytest.mark.parametrize("opt", ["momentum", "adam"])
@pytest.mark.parametrize("method", ["maml", "fo_maml", "anil"])
def test_inner_optimizers_equal_a_hand_loop(opt, method):
    features, head = _net(2)
    learner = MetaLearner(features, head, method=method, inner_lr=0.05, inner_steps=3, inner_optimizer=opt)
    batch = _batch(seed=3)
    got = learner.meta_grad(batch)
    ref = _reference(learner.model_, learner.adapt_keys_, 0.05, 3, batch, second_order=method != "fo_maml", opt=opt)
    _compare(got, ref)
    # adapt/evaluate run the same rule: the adapted parameters and query losses of a hand loop
    ev = learner.evaluate(batch, steps=(0, 1, 3))
    for t in range(batch.num_tasks):
        phi = learner.adapt(batch.X_in[t], batch.y_in[t], steps=3)
        p = {k: v.detach() for k, v in learner.model_.named_parameters()}
        keys, state = learner.adapt_keys_, None
        for s in range(1, 4):
            at = {k: v.requires_grad_(k in keys) for k, v in ({k: v.detach() for k, v in p.items()}).items()}
            gs = torch.autograd.grad(
                _mse(functional_call(learner.model_, at, (batch.X_in[t],)), batch.y_in[t]), [at[k] for k in keys]
            )
            if state is None:
                zeros = [torch.zeros_like(g) for g in gs]
                state = zeros if opt == "momentum" else (zeros, [z.clone() for z in zeros])
            d, state = _direction(opt, list(gs), state, s)
            p = {**p, **{k: (p[k] - 0.05 * d_).detach() for k, d_ in zip(keys, d)}}
        for k in p:
            assert torch.allclose(phi[k], p[k], rtol=0, atol=1e-12), k
        loss = _mse(functional_call(learner.model_, p, (batch.X_out[t],)), batch.y_out[t])
        assert float(ev[3]["loss"][t]) == pytest.approx(float(loss), abs=1e-12)
    assert not torch.allclose(ev[3]["loss"], ev[1]["loss"])  # the steps count


def test_fit_learns_the_step_sizes_and_the_rule_is_validated():
    features, head = _net(3)
    learner = MetaLearner(features, head, method="maml", inner_lr=0.1, learn_inner_lr=True, outer_lr=0.01)
    learner.fit(_batch(T=4, seed=4), iterations=3, progress=False)
    assert float(learner.inner_lr_.detach()) != 0.1 and learner.inner_lr == 0.1  # learned; the initial value is kept
    opt_params = {id(p) for g in learner.optimizer_.param_groups for p in g["params"]}
    assert id(learner.inner_lr_) in opt_params
    meta = MetaLearner(*_net(3), method="metasgd", inner_lr=0.1, optimizer=torch.optim.Adam(_net(3)[0].parameters()))
    with pytest.raises(ValueError, match="optimizer"):  # an instance must hold the model's parameters
        meta.fit(_batch(), iterations=1)
    f2, h2 = _net(3)
    inst = torch.optim.SGD(list(f2.parameters()) + list(h2.parameters()), lr=0.01)
    MetaLearner(f2, h2, method="metasgd", optimizer=inst).fit(_batch(), iterations=1)
    assert len(inst.param_groups) == 2  # the step sizes joined the given optimizer as a new group
    for kwargs, match in [
        (dict(method="reptile", learn_inner_lr=True), "learn_inner_lr"),
        (dict(method="maml", inner_optimizer="rmsprop"), "inner_optimizer"),
        (dict(method="protonet"), "loss"),
        (dict(method="maml", learn_inner_lr=1), "learn_inner_lr"),
    ]:
        with pytest.raises(ValueError, match=match):
            MetaLearner(*_net(), **kwargs).fit(_batch(), iterations=1)


# ---------------------------------------------------------------------------------------------- ProtoNets


def _episodes(T=3, ways=3, shots=2, queries=2, d_in=4, seed=5):
    g = gen(seed)
    y_in = torch.arange(ways).repeat_interleave(shots).expand(T, -1)
    y_out = torch.arange(ways).repeat_interleave(queries).expand(T, -1)
    centers = 2 * torch.randn(T, ways, d_in, generator=g, dtype=torch.float64)
    X_in = centers.gather(1, y_in[..., None].expand(-1, -1, d_in)) + torch.randn(
        T, ways * shots, d_in, generator=g, dtype=torch.float64
    )
    X_out = centers.gather(1, y_out[..., None].expand(-1, -1, d_in)) + torch.randn(
        T, ways * queries, d_in, generator=g, dtype=torch.float64
    )
    return TaskBatch(X_in, y_in.clone(), X_out, y_out.clone())


def test_prototypes_and_logits_equal_a_direct_computation():
    g = gen(6)
    Z, Q = torch.randn(7, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 2, 0, 2, 1])
    C = prototypes(Z, y, 4)
    for k in range(3):
        assert torch.allclose(C[k], Z[y == k].mean(0), atol=1e-15)
    assert torch.equal(C[3], torch.zeros(4, dtype=torch.float64))  # absent class: zero prototype
    logits = squared_euclidean_logits(Q, C)
    assert torch.allclose(logits, -(torch.cdist(Q, C) ** 2), atol=1e-12)
    assert torch.allclose(logits[1, 2], -((Q[1] - Z[y == 2].mean(0)) ** 2).sum(), atol=1e-14)


def test_protonet_on_the_metalearner_api_equals_the_direct_computation():
    torch.manual_seed(0)
    features = nn.Sequential(nn.Linear(4, 6), nn.Tanh()).double()
    head = nn.Linear(6, 3).double()
    learner = MetaLearner(features, head, method="protonet", loss="cross_entropy")
    batch = _episodes()
    got = learner.meta_grad(batch)
    # direct: cross-entropy of −‖f(x) − c_k‖² on the queries, one episode at a time, by autograd
    params = dict(learner.model_.features.named_parameters())
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    accs = []
    for X_in, y_in, X_out, y_out in zip(*batch):
        Z_in, Z_out = features(X_in), features(X_out)
        C = torch.stack([Z_in[y_in == k].mean(0) for k in range(3)])
        logits = -((Z_out[:, None] - C[None]) ** 2).sum(-1)
        accs.append(float((logits.argmax(-1) == y_out).double().mean()))
        for k, g in zip(params, torch.autograd.grad(F.cross_entropy(logits, y_out), list(params.values()))):
            total[k] += g / batch.num_tasks
    for k, v in total.items():
        assert torch.allclose(got[f"features.{k}"], v, rtol=0, atol=1e-12), k
    assert float(max(v.abs().max() for v in total.values())) > 1e-3
    assert torch.equal(got["head.weight"], torch.zeros_like(head.weight))  # the head's own weights are unused
    ev = learner.evaluate(batch, steps=(0, 2))
    assert ev[0]["accuracy"].tolist() == pytest.approx(accs)
    assert not torch.allclose(ev[2]["loss"], ev[0]["loss"])  # test-time steps fine-tune the prototype head
    p = learner.adapt(batch.X_in[0], batch.y_in[0])  # steps default to 0: the prototype head
    direct = squared_euclidean_logits(features(batch.X_out[0]), prototypes(features(batch.X_in[0]), batch.y_in[0], 3))
    pred = learner.predict(batch.X_out[0], p)
    assert torch.allclose(pred.softmax(-1), direct.softmax(-1), atol=1e-12)  # the same up to a per-row shift
    learner.fit(batch, iterations=2, progress=False)
    assert len(learner.history_) == 2
