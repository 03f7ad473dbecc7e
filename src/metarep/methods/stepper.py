"""What the training loop runs: a :class:`Stepper`, a pair of functions over an explicit state.

``init(params) -> state`` and ``step(state, data) -> state``, where ``data`` is one step's tasks
(an iterable of chunks of a :class:`~metarep.batch.TaskBatch` or of a pool layout; ``None`` in the
infinite-task regime). Everything a step carries over (the parameters and the outer update's
state, e.g. multitask's L-BFGS history) is in the :class:`TrainState`; nothing hides in a closure.

The outer update is its own piece, in the shape of optax's ``GradientTransformation``: a pair of
pure functions ``init(params) -> opt_state`` and ``update(grads, opt_state, params) -> (params,
opt_state)``. :func:`sgd` (``θ ← θ − β·grad``) is the default of every meta-learning method.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from ..models import axpy

StepData = Iterable | None  # one step's tasks, in chunks; None in the infinite-task regime
GradFn = Callable[[NamedTuple, Any], NamedTuple]  # (params, batch) -> mean gradient over its tasks


class TrainState(NamedTuple):
    """The state a training step reads and returns: model parameters and the outer update's state."""

    params: NamedTuple  # (B, w), (B, w, C) for relu3, or (B, W) with one head per task (multitask)
    opt: Any = None


class Stepper(NamedTuple):
    """``init(params) -> TrainState``; ``step(state, data) -> TrainState``; ``one_shot``: one step is the whole fit."""

    init: Callable[[NamedTuple], TrainState]
    step: Callable[[TrainState, StepData], TrainState]
    one_shot: bool = False


class OuterUpdate(NamedTuple):
    """``init(params) -> opt_state``; ``update(grads, opt_state, params) -> (params, opt_state)``."""

    init: Callable[[NamedTuple], Any]
    update: Callable[[NamedTuple, Any, NamedTuple], tuple[NamedTuple, Any]]


def sgd(lr: float) -> OuterUpdate:
    """Plain gradient descent ``θ ← θ − lr · grad`` (the outer step β of MATH.md §3); no state."""
    return OuterUpdate(init=lambda params: None, update=lambda grads, state, params: (axpy(params, grads, lr), state))


def mean_over_chunks(batch_grad: GradFn, params: NamedTuple, chunks: Iterable) -> NamedTuple:
    """Mean gradient over all tasks of one step, whether they come in one batch or in chunks."""
    total, n = None, 0
    for batch in chunks:
        g, c = batch_grad(params, batch), batch.num_tasks
        total = type(g)(*(x * c for x in g)) if total is None else axpy(total, g, -c)
        n += c
    return type(total)(*(x / n for x in total))


def meta_stepper(grad: Callable[[NamedTuple, StepData], NamedTuple], outer: OuterUpdate) -> Stepper:
    """The stepper of a meta-learning method: ``grad(params, data)``, then the outer update."""

    def init(params: NamedTuple) -> TrainState:
        return TrainState(params, outer.init(params))

    def step(state: TrainState, data: StepData) -> TrainState:
        params, opt = outer.update(grad(state.params, data), state.opt, state.params)
        return TrainState(params, opt)

    return Stepper(init, step)
