"""Model-agnostic meta-gradients with ``torch.func``: written per task, then ``vmap``-ed.

Any functional model ``forward(params: dict, X (n, d_in)) -> (n,)`` works. A method is a choice of
which parameters the inner loop adapts and whether the outer gradient flows through the
adaptation (second order) or is taken at the adapted point (first order):

| method  | adapts      | order  |
|---------|-------------|--------|
| fo_anil | head        | first  |
| anil    | head        | second |
| fo_maml | everything  | first  |
| maml    | everything  | second |
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.func import grad, vmap

from ..batch import TaskBatch
from ..models import squared_loss

Params = dict[str, torch.Tensor]
Forward = Callable[[Params, torch.Tensor], torch.Tensor]


def adapt(
    forward: Forward, params: Params, X: torch.Tensor, y: torch.Tensor, alpha: float, keys: Sequence[str], steps: int
) -> Params:
    """One task's inner loop: ``steps`` gradient steps of size ``α`` on ``params[keys]`` only.

    Differentiable in ``params`` (second-order methods differentiate through it).
    """

    def inner_loss(sub: Params, rest: Params) -> torch.Tensor:
        return squared_loss(forward({**rest, **sub}, X), y)

    fast = dict(params)
    for _ in range(steps):
        g = grad(inner_loss)({k: fast[k] for k in keys}, fast)
        fast.update({k: fast[k] - alpha * g[k] for k in keys})
    return fast


def meta_grad(
    forward: Forward,
    params: Params,
    batch: TaskBatch,
    *,
    alpha: float,
    adapt_keys: Sequence[str],
    first_order: bool,
    inner_steps: int = 1,
) -> Params:
    """Mean over tasks of the outer gradient, each task's gradient computed by ``torch.func``.

    First order: ``∇L_out`` evaluated at the adapted parameters. Second order: ``∇`` of
    ``θ ↦ L_out(adapt(θ))``. Returns a dict shaped like ``params``.
    """

    def outer_loss(p: Params, X_out: torch.Tensor, y_out: torch.Tensor) -> torch.Tensor:
        return squared_loss(forward(p, X_out), y_out)

    def task_grad(p: Params, X_in, y_in, X_out, y_out) -> Params:
        if first_order:
            return grad(outer_loss)(adapt(forward, p, X_in, y_in, alpha, adapt_keys, inner_steps), X_out, y_out)
        return grad(lambda q: outer_loss(adapt(forward, q, X_in, y_in, alpha, adapt_keys, inner_steps), X_out, y_out))(
            p
        )

    per_task = vmap(task_grad, in_dims=(None, 0, 0, 0, 0))(params, batch.X_in, batch.y_in, batch.X_out, batch.y_out)
    return {k: v.mean(0) for k, v in per_task.items()}
