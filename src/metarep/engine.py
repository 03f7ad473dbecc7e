"""The functional engine: adaptation and meta-gradients with ``torch.func``, for any functional model.

This is the one place where an inner loop runs and an outer gradient is formed by automatic
differentiation. Every path that is not a hand-written closed form uses it: ``method.impl =
"autodiff"`` and the ReLU models of the linear harness (:mod:`metarep.methods`), ``evaluate``'s
generic path (:mod:`metarep.evaluate`) and :class:`~metarep.learner.MetaLearner`.

Each function is written for one task and ``vmap``-ed over the leading task axis (no Python loop
over tasks). For one task with support set ``(X_in, y_in)``, query set ``(X_out, y_out)``,
parameters ``θ = (θ_a, θ_r)`` of which the inner loop adapts ``θ_a``, step size ``α`` and ``s``
inner steps, ``φ = θ_a − α Σ_s ∇_{θ_a} L(θ_a, θ_r; X_in, y_in)`` (MATH.md §3), and the outer
gradient of the task is, by ``order``:

| order      | outer gradient                                                        |
|------------|-----------------------------------------------------------------------|
| ``first``  | ``∇ L_out`` at ``(φ, θ_r)``, ``φ`` held fixed (FO-ANIL, FO-MAML)       |
| ``second`` | ``∇_θ L_out(φ(θ), θ_r)``, through the inner loop (ANIL, MAML)          |
| ``reptile``| ``θ − φ``, the inner loop run on the support and query sets together  |
| ``pretrain``| ``∇_θ L(θ)`` on support and query sets together (no inner loop)      |

**Inner rules** (:class:`InnerRule`): the step can be ``φ ← φ − α ⊙ d_s`` with ``α`` a number, a
learned scalar or a learned tensor per parameter (Meta-SGD), ``d_s`` the gradient or a momentum/Adam
direction (:mod:`metarep.inner`), and ``φ_0`` a function of the support set (ProtoNets' prototype
head, :mod:`metarep.methods.protonet`). Learned step sizes get their meta-gradient alongside ``θ``:
second order through the inner loop, first order with the directions ``d_s`` held fixed.

**Losses.** The loss is a named parameter (:data:`LOSSES`): ``"half_mse"`` ``‖f(X) − y‖²/(2n)``
is the theory's (MATH.md §2) and the linear harness's; ``"mse"`` (no ½) is the few-shot benchmarks'
and ``MetaLearner``'s default, as in the MAML literature; ``"cross_entropy"`` for classification.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from .batch import TaskBatch

Params = dict[str, torch.Tensor]
Forward = Callable[[Params, torch.Tensor], torch.Tensor]  # one task: (params, X (n, ...)) -> (n, ...)
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # one task: (pred, y) -> scalar
Inputs = Callable[[Params, torch.Tensor], tuple[Params, torch.Tensor]]  # (θ, X) -> (what the forward sees, inputs)


def mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error; a trailing output axis of size 1 in ``pred`` is matched to ``y (n,)``."""
    if pred.shape != y.shape and pred.shape[-1] == 1 and pred.shape[:-1] == y.shape:
        pred = pred.squeeze(-1)
    return ((pred - y) ** 2).mean()


def half_mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``‖pred − y‖² / (2n)``, the theory's loss (MATH.md §2): half of :func:`mse`."""
    return 0.5 * mse(pred, y)


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits (n, C)`` against integer labels ``y (n,)``."""
    return F.cross_entropy(logits, y)


LOSSES: dict[str, Loss] = {"half_mse": half_mse, "mse": mse, "cross_entropy": cross_entropy}


def get_loss(loss: str | Loss) -> Loss:
    """The loss function named ``loss`` in :data:`LOSSES`, or ``loss`` itself if it is callable."""
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"loss: must be one of {', '.join(LOSSES)} or a callable, got {loss!r}")
    return LOSSES[loss]


def split(params: Params, keys: Sequence[str]) -> tuple[Params, Params]:
    """``(θ_a, θ_r)``: the parameters named in ``keys`` and the rest."""
    return {k: v for k, v in params.items() if k in keys}, {k: v for k, v in params.items() if k not in keys}


def adapt_keys(names: Sequence[str], adapts: str, head: Callable[[str], bool]) -> tuple[str, ...]:
    """The parameter names an inner loop adapts: ``"head"``, ``"features"`` (all but the head) or ``"all"``.

    ``head(name)`` says whether a parameter belongs to the head.
    """
    if adapts == "all":
        return tuple(names)
    want_head = adapts == "head"
    return tuple(n for n in names if head(n) == want_head)


Start = Callable[[Params, torch.Tensor, torch.Tensor], Params]  # one task: (θ_a, X, y) -> φ_0
ALPHA_KEY = "inner_lr"  # meta_grad's key for the gradient of a learned step size ("inner_lr:NAME" per parameter)


@dataclass(frozen=True)
class InnerRule:
    """How the inner loop steps (MATH.md §3 with a learned or preconditioned step):
    ``φ_{s+1} = φ_s − α ⊙ d_s``, ``d_s, state_{s+1} = transform(g_s, state_s)``, ``g_s = ∇_φ L_in(φ_s)``.

    **Arguments:**

    - ``alpha``: the step size: a number; a 0-dim tensor (one step size for every parameter, learned
      when it requires grad); or ``{name: tensor}`` for every adapted parameter, each broadcastable
      to it (Meta-SGD: the parameter's shape).
    - ``transform``: ``None`` (``d_s = g_s``, plain SGD) or a gradient transformation without learning
      rate, ``init(grads) -> state`` and ``update(grads, state, params=..., inplace=False) -> (d, state)``
      (:class:`metarep.inner.Momentum`, :class:`metarep.inner.Adam`; torchopt's transformations have
      the same protocol). Its state is created from the first gradient, so that under ``vmap`` each
      task has its own.
    - ``start``: ``None`` (``φ_0 = θ_a``) or ``(θ_a, X_in, y_in) -> φ_0`` for one task (ProtoNets'
      prototype head, :mod:`metarep.methods.protonet`).
    """

    alpha: float | torch.Tensor | Params
    transform: Any = None
    start: Start | None = None

    def step(self, key: str) -> float | torch.Tensor:
        return self.alpha[key] if isinstance(self.alpha, dict) else self.alpha

    def learned(self) -> dict[str, torch.Tensor]:
        """The step sizes that require grad, by the name :func:`meta_grad` gives their gradient."""
        a = self.alpha
        if isinstance(a, torch.Tensor):
            return {ALPHA_KEY: a} if a.requires_grad else {}
        if isinstance(a, dict):
            return {f"{ALPHA_KEY}:{k}": v for k, v in a.items() if v.requires_grad}
        return {}


def as_rule(alpha: float | InnerRule) -> InnerRule:
    """``alpha`` as a rule: a number is plain SGD with that step size."""
    return alpha if isinstance(alpha, InnerRule) else InnerRule(float(alpha))


def _detached(p: Params) -> Params:
    return {k: v.detach() for k, v in p.items()}


def inner_path(
    forward: Forward,
    loss: Loss,
    sub: Params,
    rest: Params,
    X: torch.Tensor,
    y: torch.Tensor,
    alpha: float | InnerRule,
    counts: Sequence[int],
    first_order: bool = False,
) -> list[Params]:
    """One task's inner loop, ``φ`` after each number of steps in ``counts`` (non-decreasing, >= 0).

    Differentiable in ``sub``, ``rest`` and the rule's step sizes (second-order methods differentiate
    through it). ``first_order``: each ``g_s`` (and the transform's state) is taken at the detached
    ``φ_s``, so that ``φ = θ_a − Σ_s α ⊙ d_s`` with the ``d_s`` held fixed: the first-order
    gradient reaches ``θ_a`` unchanged and a learned ``α`` through ``−Σ_s d_s``.
    """
    rule = as_rule(alpha)

    def inner_loss(s: Params, r: Params, X_: torch.Tensor, y_: torch.Tensor) -> torch.Tensor:
        return loss(forward({**r, **s}, X_), y_)

    if rule.start is not None:
        sub = rule.start(sub, X, y)
    out, state, done = [], None, 0
    for count in counts:
        for _ in range(count - done):
            at = _detached(sub) if first_order else sub
            g = grad(inner_loss)(at, rest, X, y)
            if rule.transform is not None:
                state = rule.transform.init(g) if state is None else state
                g, state = rule.transform.update(g, state, params=at, inplace=False)
            sub = {k: sub[k] - rule.step(k) * g[k] for k in sub}  # φ ← φ − α ⊙ d
        done = max(done, count)
        out.append(sub)
    return out


def inner_loop(
    forward: Forward,
    loss: Loss,
    sub: Params,
    rest: Params,
    X: torch.Tensor,
    y: torch.Tensor,
    alpha: float | InnerRule,
    steps: int,
) -> Params:
    """One task's inner loop: ``steps`` gradient steps ``φ ← φ − α ∇_φ L(φ, θ_r; X, y)`` from ``sub``
    (or the rule's step, :class:`InnerRule`). Differentiable in ``sub`` and ``rest``."""
    return inner_path(forward, loss, sub, rest, X, y, alpha, [steps])[0]


def adapt_path(
    forward: Forward,
    loss: Loss,
    sub: Params,
    rest: Params,
    X: torch.Tensor,
    y: torch.Tensor,
    alpha: float | InnerRule,
    counts: Sequence[int],
    sub_batched: bool = False,
    first_order: bool = False,
) -> list[Params]:
    """:func:`inner_path` for every task of ``X (T, n, ...)``, ``y (T, n, ...)``: ``φ`` after each
    number of steps in ``counts``, each with a leading task axis. ``sub`` is shared by the tasks, or
    per task with ``sub_batched``."""

    def run(s: Params, r: Params, X_: torch.Tensor, y_: torch.Tensor) -> list[Params]:
        return inner_path(forward, loss, s, r, X_, y_, alpha, counts, first_order)

    in_dims = (0 if sub_batched else None, None, 0, 0)
    return vmap(run, in_dims=in_dims, randomness="different")(sub, rest, X, y)


def adapt_batch(
    forward: Forward,
    loss: Loss,
    sub: Params,
    rest: Params,
    X: torch.Tensor,
    y: torch.Tensor,
    alpha: float | InnerRule,
    steps: int,
    sub_batched: bool = False,
    first_order: bool = False,
) -> Params:
    """:func:`inner_loop` for every task of ``X (T, n, ...)``, ``y (T, n, ...)``; returns ``φ`` with a
    leading task axis. ``sub`` is shared by the tasks, or per task with ``sub_batched``."""
    return adapt_path(forward, loss, sub, rest, X, y, alpha, [steps], sub_batched, first_order)[0]


def task_losses(
    forward: Forward, loss: Loss, sub: Params, rest: Params, X: torch.Tensor, y: torch.Tensor, sub_batched: bool
) -> torch.Tensor:
    """Loss of every task at its parameters ``(sub, rest)``, ``(T,)``."""

    def one(s: Params, r: Params, X_: torch.Tensor, y_: torch.Tensor) -> torch.Tensor:
        return loss(forward({**r, **s}, X_), y_)

    return vmap(one, in_dims=(0 if sub_batched else None, None, 0, 0), randomness="different")(sub, rest, X, y)


def _identity_inputs(params: Params, X: torch.Tensor) -> tuple[Params, torch.Tensor]:
    return params, X


def meta_grad(
    forward: Forward,
    loss: Loss,
    params: Params,
    batch: TaskBatch,
    *,
    keys: Sequence[str],
    order: str,
    alpha: float | InnerRule,
    steps: int,
    inputs: Inputs | None = None,
) -> tuple[Params, float]:
    """Mean outer gradient over the tasks of ``batch`` (shaped like ``params``) and the mean outer loss.

    **Arguments:**

    - ``forward``, ``loss``: one task's model and loss (see the module table for ``order``).
    - ``params``: ``θ``; for ``first``, ``second`` and ``pretrain`` leaves that require grad.
    - ``batch``: ``(X_in, y_in, X_out, y_out)`` with a leading task axis.
    - ``keys``: the names of ``θ_a``; ``alpha`` (a number or an :class:`InnerRule`), ``steps``: the
      inner loop. Step sizes of the rule that require grad get their gradient too, under
      ``"inner_lr"`` (one for all parameters) or ``"inner_lr:NAME"`` (per parameter) in the result.
    - ``inputs``: ``(θ, X) -> (θ', Z)``: what the inner loop's ``forward`` sees. The default is
      ``(θ, X)``; a network whose inner loop adapts only its head passes the head's parameters and
      the features of ``X``, computed once per batch (:class:`~metarep.learner.MetaLearner`).

    The loss is the mean query loss after adaptation (for ``reptile`` at ``φ``, the query set being
    part of the inner data; for ``pretrain`` at ``θ`` on all data).
    """
    X_in, y_in, X_out, y_out = batch.X_in, batch.y_in, batch.X_out, batch.y_out  # any layout with samples
    inputs = inputs or _identity_inputs
    names = list(params)
    rule = as_rule(alpha)
    learned = rule.learned()
    if learned and order not in ("first", "second"):
        raise ValueError(f"order: {order!r} has no gradient with respect to the inner step size")

    if order == "reptile":  # inner SGD on all the task's data, then g = θ − mean_i φ_i
        with torch.no_grad():
            p0 = {k: v.detach() for k, v in params.items()}
            X_all, y_all = torch.cat([X_in, X_out], 1), torch.cat([y_in, y_out], 1)
            inner_p, Z_all = inputs(p0, X_all)
            sub, rest = split(inner_p, keys)
            phi = adapt_batch(forward, loss, sub, rest, Z_all, y_all, rule, steps)
            value = task_losses(forward, loss, phi, rest, Z_all[:, X_in.shape[1] :], y_out, True).mean()
            grads = {k: (p0[k] - phi[k].mean(0)) if k in phi else torch.zeros_like(p0[k]) for k in names}
        return grads, float(value)

    if order == "pretrain":
        X_all, y_all = torch.cat([X_in, X_out], 1), torch.cat([y_in, y_out], 1)
        inner_p, Z_all = inputs(params, X_all)
        sub, rest = split(inner_p, keys)
        value = task_losses(forward, loss, sub, rest, Z_all, y_all, False).mean()
    elif order == "first":
        # φ_i from detached parameters; the straight-through form θ_a + (φ_i − θ_a).detach() puts
        # ∇L_out(φ_i) on θ_a, and the rest of θ gets its gradient at φ_i (MATH.md §3, FO-ANIL row).
        # A learned α: φ_i = θ_a − Σ_s α ⊙ d_s with the steps d_s held fixed (inner_path, first_order).
        with torch.no_grad():
            p0 = {k: v.detach() for k, v in params.items()}
            inner_p0, Z_in = inputs(p0, X_in)
            sub0, rest0 = split(inner_p0, keys)
            if not learned:
                phi = adapt_batch(forward, loss, sub0, rest0, Z_in, y_in, rule, steps)
        inner_p, Z_out = inputs(params, X_out)
        sub, rest = split(inner_p, keys)
        if learned:
            phi = adapt_batch(forward, loss, sub, rest0, Z_in, y_in, rule, steps, first_order=True)
        else:
            phi = {k: sub[k] + (phi[k] - sub[k]).detach() for k in sub}
        value = task_losses(forward, loss, phi, rest, Z_out, y_out, True).mean()
    elif order == "second":  # differentiate through the inner loop (and through the support features)
        inner_p, Z_in = inputs(params, X_in)
        sub, rest = split(inner_p, keys)
        phi = adapt_batch(forward, loss, sub, rest, Z_in, y_in, rule, steps)
        _, Z_out = inputs(params, X_out)
        value = task_losses(forward, loss, phi, rest, Z_out, y_out, True).mean()
    else:
        raise ValueError(f"order: must be first, second, reptile or pretrain, got {order!r}")

    wrt = {**{k: params[k] for k in names}, **learned}
    gs = torch.autograd.grad(value, list(wrt.values()), allow_unused=True)
    grads = {k: (torch.zeros_like(wrt[k]) if g is None else g) for k, g in zip(wrt, gs)}
    return grads, float(value.detach())
