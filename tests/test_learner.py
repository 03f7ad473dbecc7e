"""MetaLearner: the vectorised torch.func meta-gradient equals a plain per-task autograd loop for
every method, clear errors for models vmap cannot run, and small end-to-end fits."""

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import gen
from torch import nn
from torch.func import functional_call

from metarep.fewshot._util import tune_inner_lr
from metarep.learner import MetaLearner
from metarep.methods import outer_grad_fn, registry
from metarep.models import LinearParams
from metarep.runtime import torch_threads
from metarep.stats import mean_ci
from metarep.tasks import LinearRepTasks, TaskBatch


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):  # tiny networks: one thread is faster, and steady on a busy machine
        yield


def _net(seed=0, d_in=3, h=6, out=1):
    torch.manual_seed(seed)
    features = nn.Sequential(nn.Linear(d_in, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh()).double()
    head = nn.Linear(h, out).double()
    return features, head


def _regression_batch(T=4, n_in=5, n_out=3, d_in=3, seed=1):
    g = gen(seed)
    X_in, X_out = (
        torch.randn(T, n_in, d_in, generator=g, dtype=torch.float64),
        torch.randn(T, n_out, d_in, generator=g, dtype=torch.float64),
    )
    w = torch.randn(T, d_in, generator=g, dtype=torch.float64)
    return TaskBatch(
        X_in, torch.sin(torch.einsum("tnd,td->tn", X_in, w)), X_out, torch.sin(torch.einsum("tnd,td->tn", X_out, w))
    )


def _classification_batch(T=3, ways=3, n_in=6, n_out=6, d_in=3, seed=2):
    g = gen(seed)
    return TaskBatch(
        torch.randn(T, n_in, d_in, generator=g, dtype=torch.float64),
        torch.randint(0, ways, (T, n_in), generator=g),
        torch.randn(T, n_out, d_in, generator=g, dtype=torch.float64),
        torch.randint(0, ways, (T, n_out), generator=g),
    )


def _mse(pred, y):
    return ((pred.squeeze(-1) - y) ** 2).mean()


def _loop_reference(model, keys, method, alpha, steps, batch, loss_fn):
    """Each method written plainly, one task at a time, with ``torch.autograd``."""
    params = dict(model.named_parameters())
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    f = lambda p, X: functional_call(model, p, (X,))  # noqa: E731
    for X_in, y_in, X_out, y_out in zip(*batch):
        if method == "reptile":
            X, y = torch.cat([X_in, X_out]), torch.cat([y_in, y_out])
            fast = {k: v.detach().clone() for k, v in params.items()}
            for _ in range(steps):
                sub = [fast[k].requires_grad_(True) for k in keys]
                gs = torch.autograd.grad(loss_fn(f(fast, X), y), sub)
                fast.update({k: (fast[k] - alpha * g).detach() for k, g in zip(keys, gs)})
            for k in keys:
                total[k] += params[k].detach() - fast[k]
            continue
        if method in ("anil", "maml"):  # through the inner loop
            fast = dict(params)
            for _ in range(steps):
                gs = torch.autograd.grad(loss_fn(f(fast, X_in), y_in), [fast[k] for k in keys], create_graph=True)
                fast.update({k: fast[k] - alpha * g for k, g in zip(keys, gs)})
            gs = torch.autograd.grad(loss_fn(f(fast, X_out), y_out), list(params.values()), allow_unused=True)
            for k, g in zip(params, gs):
                if g is not None:
                    total[k] += g
            continue
        # first order: adapt detached copies; the adapted parameters' own gradient goes to θ_a
        fast = {k: v.detach().clone() for k, v in params.items()}
        for _ in range(steps):
            sub = [fast[k].requires_grad_(True) for k in keys]
            gs = torch.autograd.grad(loss_fn(f(fast, X_in), y_in), sub)
            fast.update({k: (fast[k] - alpha * g).detach() for k, g in zip(keys, gs)})
        outer = {k: (fast[k].requires_grad_(True) if k in keys else params[k]) for k in params}
        gs = torch.autograd.grad(loss_fn(f(outer, X_out), y_out), list(outer.values()), allow_unused=True)
        for k, g in zip(params, gs):
            if g is not None:
                total[k] += g
    return {k: v / batch[0].shape[0] for k, v in total.items()}


@pytest.mark.parametrize("method", ["fo_anil", "anil", "fo_maml", "maml", "reptile"])
@pytest.mark.parametrize("steps", [1, 3])
def test_vectorised_meta_grad_equals_per_task_loop(method, steps):
    features, head = _net()
    learner = MetaLearner(features, head, method=method, inner_lr=0.3, inner_steps=steps)
    batch = _regression_batch()
    fast = learner.meta_grad(batch)
    keys = learner.adapt_keys_
    assert keys == (
        ("head.weight", "head.bias")
        if registry.get(method).adapts == "head"
        else tuple(n for n, _ in learner.model_.named_parameters())
    )
    ref = _loop_reference(learner.model_, keys, method, 0.3, steps, batch, _mse)
    assert set(fast) == set(ref)
    for k in ref:
        assert fast[k].shape == ref[k].shape
        assert torch.allclose(fast[k], ref[k], rtol=0, atol=1e-10), (k, (fast[k] - ref[k]).abs().max())
    assert max(float(v.abs().max()) for v in ref.values()) > 1e-3  # not a comparison of zeros
    assert float(fast["features.0.weight"].abs().max()) > 1e-4  # the features get a gradient too


@pytest.mark.parametrize("method", ["fo_anil", "anil", "maml"])
def test_cross_entropy_and_plain_model_with_named_head(method):
    """Classification, and a plain nn.Sequential whose last layer is named as the adapted part."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    adapt = ["2"] if method != "maml" else None
    learner = MetaLearner(model, method=method, inner_lr=0.5, inner_steps=2, loss="cross_entropy", adapt_params=adapt)
    batch = _classification_batch()
    fast = learner.meta_grad(batch)
    keys = learner.adapt_keys_
    assert keys == (("2.weight", "2.bias") if adapt else ("0.weight", "0.bias", "2.weight", "2.bias"))
    ref = _loop_reference(model, keys, method, 0.5, 2, batch, F.cross_entropy)
    for k in ref:
        assert torch.allclose(fast[k], ref[k], rtol=0, atol=1e-10), k


def test_head_only_fast_path_equals_full_path():
    """Features computed once (split model) == the whole model's forward with the head named."""
    features, head = _net(5)
    batch = _regression_batch(seed=7)
    split = MetaLearner(features, head, method="anil", inner_lr=0.2, inner_steps=2)
    plain = MetaLearner(nn.Sequential(features, head), method="anil", inner_lr=0.2, inner_steps=2, adapt_params=["1"])
    a, b = split.meta_grad(batch), plain.meta_grad(batch)
    rename = {"features.": "0.", "head.": "1."}
    for k, v in a.items():
        kk = next(k.replace(p, q, 1) for p, q in rename.items() if k.startswith(p))
        assert torch.allclose(v, b[kk], atol=1e-12)
    assert split._head_only and not plain._head_only


@pytest.mark.parametrize("method, steps", [("fo_anil", 2), ("anil", 1), ("fo_maml", 1), ("maml", 1), ("reptile", 3)])
def test_agrees_with_the_linear_harness_on_linear_model(method, steps):
    """Each method on ``x ↦ xᵀBw`` as nn.Linear layers, with the theory's loss ``loss="half_mse"``, gives
    the linear harness's gradient: its closed form (an independent path) and the engine."""
    t = LinearRepTasks.create(8, 3, 0.2, "linear", generator=gen(0))
    batch = t.sample(6, 5, 4, gen(1))
    g = gen(2)
    B, w = (
        torch.randn(8, 4, generator=g, dtype=torch.float64) / 8**0.5,
        torch.randn(4, generator=g, dtype=torch.float64),
    )
    features, head = nn.Linear(8, 4, bias=False).double(), nn.Linear(4, 1, bias=False).double()
    with torch.no_grad():
        features.weight.copy_(B.T)
        head.weight.copy_(w[None])
    learner = MetaLearner(features, head, method=method, inner_lr=0.2, inner_steps=steps, loss="half_mse")
    ours = learner.meta_grad(batch)
    for impl in ("closed_form", "autodiff"):
        ref = outer_grad_fn(method, 0.2, steps, impl)(LinearParams(B, w), batch)
        assert torch.allclose(ours["features.weight"], ref.B.T, atol=1e-12)
        assert torch.allclose(ours["head.weight"][0], ref.w, atol=1e-12)


def test_batchnorm_tracking_stats_is_refused_with_the_fix():
    features = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU())
    learner = MetaLearner(features, nn.Linear(4, 1))
    with pytest.raises(ValueError, match="track_running_stats=False") as e:
        learner.meta_grad(_regression_batch())
    assert "features.1" in str(e.value) and "GroupNorm" in str(e.value)
    # without running statistics it works (batch statistics per task)
    ok = MetaLearner(
        nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.ReLU()).double(),
        nn.Linear(4, 1).double(),
    )
    assert all(torch.isfinite(v).all() for v in ok.meta_grad(_regression_batch()).values())


def test_other_modules_vmap_cannot_run_and_dropout():
    sn = nn.Sequential(nn.utils.parametrizations.spectral_norm(nn.Linear(3, 4)), nn.Tanh())
    with pytest.raises(ValueError, match="spectral_norm"):
        MetaLearner(sn, nn.Linear(4, 1), method="maml").meta_grad(_regression_batch())
    # dropout draws different masks per task inside vmap
    drop = MetaLearner(
        nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Tanh()).double(), nn.Linear(4, 1).double(), method="maml"
    )
    assert all(torch.isfinite(v).all() for v in drop.meta_grad(_regression_batch()).values())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="sgd"), "method"),
        (dict(inner_lr=0), "inner_lr"),
        (dict(inner_steps=0), "inner_steps"),
        (dict(loss="hinge"), "loss"),
        (dict(adapt_params=["nope"]), "adapt_params"),
        (dict(optimizer=42), "optimizer"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    features, head = _net()
    with pytest.raises(ValueError, match=match):
        MetaLearner(features, head, **kwargs).fit(_regression_batch(), iterations=1)


def test_plain_model_needs_named_head_for_anil():
    with pytest.raises(ValueError, match="adapt_params"):
        MetaLearner(nn.Sequential(nn.Linear(3, 1)), method="fo_anil").meta_grad(_regression_batch())


@pytest.mark.parametrize(
    "opt", [None, torch.optim.SGD, functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9), "instance"]
)
def test_optimizers_and_fit_returns_self(opt):
    features, head = _net(1)
    if opt == "instance":
        opt = torch.optim.Adam(list(features.parameters()) + list(head.parameters()), lr=1e-2)
    learner = MetaLearner(features, head, method="fo_maml", inner_lr=0.1, optimizer=opt, outer_lr=0.05)
    before = [p.detach().clone() for p in head.parameters()]
    assert learner.fit(_regression_batch(), iterations=3, progress=False) is learner
    assert [h["step"] for h in learner.history_] == [1, 2, 3] and learner.n_iter_ == 3
    assert any(not torch.equal(a, b) for a, b in zip(before, head.parameters()))


def _sine_tasks(T, n_in, n_out, g):
    amp = 0.5 + 2 * torch.rand(T, 1, 1, generator=g)
    ph = 3.0 * torch.rand(T, 1, 1, generator=g)
    X = 10 * torch.rand(T, n_in + n_out, 1, generator=g) - 5
    y = (amp * torch.sin(X + ph)).squeeze(-1)
    return TaskBatch(X[:, :n_in], y[:, :n_in], X[:, n_in:], y[:, n_in:])


@pytest.mark.parametrize("method", ["fo_anil", "maml", "reptile"])
def test_fit_on_a_task_stream_makes_adaptation_work(method):
    torch.manual_seed(0)
    features, head = nn.Sequential(nn.Linear(1, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU()), nn.Linear(32, 1)
    learner = MetaLearner(
        features, head, method=method, inner_lr=0.05, inner_steps=3 if method == "reptile" else 1, outer_lr=1e-2
    )
    g = gen(0)
    test = _sine_tasks(200, 10, 20, gen(99))
    before = learner.evaluate(test, steps=(0, 1))
    stream = (_sine_tasks(10, 10, 10, g) for _ in range(80))
    learner.fit(stream, progress=False)  # runs until the generator is exhausted
    assert learner.n_iter_ == 80 and len(learner.history_) == 80
    after = learner.evaluate(test, steps=(0, 1, 3))
    assert float(after[1]["loss"].mean()) < 0.8 * float(before[1]["loss"].mean())
    assert float(after[3]["loss"].mean()) < 0.9 * float(after[0]["loss"].mean())  # adaptation helps


def test_adapt_predict_and_evaluate_agree():
    features, head = _net(2)
    learner = MetaLearner(features, head, method="anil", inner_lr=0.3, inner_steps=2)
    batch = _regression_batch(T=3)
    ev = learner.evaluate(batch, steps=(0, 2, 4))
    for t in range(3):
        for s in (0, 2, 4):
            p = learner.adapt(batch.X_in[t], batch.y_in[t], steps=s)
            pred = learner.predict(batch.X_out[t], p)
            assert pred.shape == (3,)  # like the targets (n,), not the head's (n, 1)
            assert float(_mse(pred, batch.y_out[t])) == pytest.approx(float(ev[s]["loss"][t]), abs=1e-12)
    # only the head moved
    p = learner.adapt(batch.X_in[0], batch.y_in[0])
    assert torch.equal(p["features.0.weight"], features[0].weight.detach()) and not torch.equal(
        p["head.weight"], head.weight
    )


def test_diverging_fit_stops_with_the_step_size_to_lower():
    features, head = nn.Linear(3, 6).double(), nn.Linear(6, 1).double()  # linear: nothing saturates
    learner = MetaLearner(features, head, method="fo_maml", inner_lr=1e200, outer_lr=1e-3)
    with pytest.raises(FloatingPointError, match="lower inner_lr"):
        learner.fit(_regression_batch(), iterations=20)
    assert learner.history_ and not math.isfinite(learner.history_[-1]["loss"])


def test_set_params_and_tune_inner_lr():
    features, head = _net(4)
    learner = MetaLearner(features, head, method="pretrain", inner_lr=0.1, adapt_params="head")
    assert learner.get_params()["inner_lr"] == 0.1 and learner.set_params(inner_lr=0.2) is learner
    with pytest.raises(ValueError, match="unknown"):
        learner.set_params(alpha=1)
    batch = _regression_batch(T=20)
    best = tune_inner_lr(learner, batch, [1e-4, 0.1, 1.0, 1e9], steps=(1, 5))
    assert learner.inner_lr == 0.2 and set(best) == {1, 5}
    for s, lr in best.items():
        scores = {
            g: float(learner.set_params(inner_lr=g).evaluate(batch, steps=(s,))[s]["loss"].mean())
            for g in (1e-4, 0.1, 1.0)
        }
        assert lr == min(scores, key=scores.get)
    assert learner.set_params(method="fo_anil").__dict__.get("model_") is None  # structural change resets


def test_mean_ci():
    m, h = mean_ci([1.0, 2.0, 3.0, 4.0])
    assert m == 2.5 and h == pytest.approx(1.96 * (5 / 3) ** 0.5 / 2)


def test_wrong_input_dimension_names_the_shapes_and_repr():
    features, head = _net()  # inputs of dimension 3
    learner = MetaLearner(features, head, method="maml")
    assert repr(learner).startswith("MetaLearner(method='maml', inner_lr=0.01, inner_steps=1, loss='mse'")
    assert "not fitted" in repr(learner) and "Sequential(4 modules) -> Linear(in_features=6" in repr(learner)
    wrong = _regression_batch(d_in=5)
    for call in (
        lambda: learner.fit(wrong, iterations=1),
        lambda: learner.evaluate(wrong),
        lambda: learner.adapt(wrong.X_in[0], wrong.y_in[0]),
        lambda: learner.predict(wrong.X_in[0]),
    ):
        with pytest.raises(ValueError, match=r"X: each sample has shape \(5,\), but the model's first layer expects"):
            call()
    with pytest.raises(ValueError, match=r"expects \(\.\.\., 3\)"):
        learner.predict(wrong.X_in[0])
    learner.fit(_regression_batch(), iterations=2, progress=False)
    assert "fitted: 2 steps, last loss" in repr(learner)
    opts = MetaLearner(features, head, method="metasgd", inner_optimizer="adam", learn_inner_lr=True)
    assert "inner_optimizer='adam'" in repr(opts) and "learn_inner_lr=True" in repr(opts)


def test_predict_keeps_the_targets_shape():
    features, head = _net(out=2)
    two = MetaLearner(features, head, method="fo_maml")
    b = _regression_batch()
    b2 = TaskBatch(b.X_in, torch.stack([b.y_in, b.y_in], -1), b.X_out, torch.stack([b.y_out, b.y_out], -1))
    assert two.predict(b.X_out[0], two.adapt(b2.X_in[0], b2.y_in[0])).shape == (3, 2)
    one = MetaLearner(*_net(), method="fo_maml")
    b1 = TaskBatch(b.X_in, b.y_in[..., None], b.X_out, b.y_out[..., None])  # targets (n, 1): kept (n, 1)
    assert one.predict(b.X_out[0], one.adapt(b1.X_in[0], b1.y_in[0])).shape == (3, 1)
    p = one.adapt(b.X_in[0], b.y_in[0])  # targets (n,): (n,), so the naive MSE does not broadcast
    assert one.predict(b.X_out[0], p).shape == (3,)
