"""Inner-loop rules of :class:`~metarep.learner.MetaLearner`: differentiable inner optimizers and
step sizes learned in the outer loop (the :class:`metarep.engine.InnerRule` it runs).

**Inner optimizers.** ``"sgd"`` is ``φ ← φ − α g``. ``"momentum"`` and ``"adam"`` are written here
as out-of-place tensor algebra (no in-place update, no state shared between tasks), so
``torch.func.grad``/``vmap`` and the second-order meta-gradient go through them. Per task, step
``s = 1, 2, …`` from ``b = m = v = 0``::

    momentum:  b ← μ b + g,                          d = b             (μ = 0.9, PyTorch's SGD form)
    adam:      m ← β₁ m + (1 − β₁) g,  v ← β₂ v + (1 − β₂) g²,
               d = m̂ / (√(v̂ + ε_root) + ε),  m̂ = m / (1 − β₁ˢ),  v̂ = v / (1 − β₂ˢ)
    then       φ ← φ − α ⊙ d

with Adam's ``β = (0.9, 0.999)``, ``ε = 1e-8`` and ``ε_root = 1e-12``: the derivative of ``√v`` is
infinite where ``v = 0`` (a parameter whose gradient is exactly zero, e.g. behind a dead ReLU), and
``ε_root`` keeps the second-order meta-gradient finite there (torchopt's convention).

*Why not torchopt's functional optimizers.* They were tried first (torchopt 0.7.3, its latest
release, Nov 2023, with torch 2.13): the compiled extension does not load against torch 2.13 and its
autograd functions do not support ``torch.func``; the pure-Python ``scale_by_adam`` adds in place to
its moment state, which fails under ``vmap`` when the state is created from the shared parameters
("output with shape [3] doesn't match the broadcast shape [4, 3]") and, with a per-task state, falls
back to torch's per-task loop for ``addcmul_`` (no batching rule). The algebra above is a few lines
and is tested against a hand-written loop (tests/test_inner.py). Any object with the same protocol
(``init(grads) -> state``, ``update(grads, state, params=..., inplace=False) -> (d, state)``, no
learning rate in it) can be passed as ``inner_optimizer``; torchopt's transformations have it.

**Learned step sizes.** ``learn_inner_lr=True``: one scalar ``α`` learned with the parameters (every
method with a meta-gradient); method ``metasgd`` (Li et al., 2017): one ``α`` per parameter entry,
``φ = θ − α ⊙ ∇L_in(θ)``. Both start at ``inner_lr`` and are not constrained to be positive.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .engine import InnerRule, Params, Start

INNER_OPTIMIZERS = ("sgd", "momentum", "adam")


class Momentum:
    """Heavy-ball momentum ``b ← μ b + g``, direction ``d = b`` (the state is ``b``)."""

    def __init__(self, momentum: float = 0.9):
        self.momentum = momentum

    def init(self, grads: Params) -> Params:
        return {k: torch.zeros_like(v) for k, v in grads.items()}

    def update(self, grads: Params, state: Params, params: Params | None = None, inplace: bool = False):
        b = {k: self.momentum * state[k] + g for k, g in grads.items()}
        return b, b

    def __repr__(self) -> str:
        return f"Momentum(momentum={self.momentum})"


class Adam:
    """Adam's direction ``m̂ / (√(v̂ + ε_root) + ε)`` with bias-corrected moments (module docstring)."""

    def __init__(self, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 1e-12):
        self.b1, self.b2, self.eps, self.eps_root = b1, b2, eps, eps_root

    def init(self, grads: Params) -> tuple[Params, Params, int]:
        return {k: torch.zeros_like(v) for k, v in grads.items()}, {k: torch.zeros_like(v) for k, v in grads.items()}, 0

    def update(self, grads: Params, state: tuple[Params, Params, int], params=None, inplace: bool = False):
        m, v, s = state
        b1, b2, s = self.b1, self.b2, s + 1
        m = {k: b1 * m[k] + (1 - b1) * g for k, g in grads.items()}  # m ← β₁ m + (1 − β₁) g
        v = {k: b2 * v[k] + (1 - b2) * g * g for k, g in grads.items()}  # v ← β₂ v + (1 − β₂) g²
        c1, c2 = 1 - b1**s, 1 - b2**s  # bias corrections
        d = {k: (m[k] / c1) / (torch.sqrt(v[k] / c2 + self.eps_root) + self.eps) for k in grads}
        return d, (m, v, s)

    def __repr__(self) -> str:
        return f"Adam(b1={self.b1}, b2={self.b2}, eps={self.eps}, eps_root={self.eps_root})"


def is_transform(obj: Any) -> bool:
    """Whether ``obj`` has the gradient-transformation protocol (``init`` and ``update``)."""
    return not isinstance(obj, str) and callable(getattr(obj, "init", None)) and callable(getattr(obj, "update", None))


def check_inner_optimizer(opt: Any) -> None:
    """``ValueError`` unless ``opt`` is one of :data:`INNER_OPTIMIZERS` or a gradient transformation."""
    if not (opt in INNER_OPTIMIZERS or is_transform(opt)):
        raise ValueError(
            f"inner_optimizer: must be one of {', '.join(INNER_OPTIMIZERS)} or an object with init(grads) and "
            f"update(grads, state, params=None, inplace=False), got {opt!r}"
        )


def make_transform(opt: Any) -> Any:
    """The direction ``d_s`` of the inner optimizer ``opt``: ``None`` for SGD, else a transformation."""
    check_inner_optimizer(opt)
    if is_transform(opt):
        return opt
    return {"sgd": None, "momentum": Momentum(), "adam": Adam()}[opt]


def learned_step_sizes(
    kind: str | None, params: dict[str, torch.Tensor], keys: tuple[str, ...], init: float
) -> torch.Tensor | dict[str, nn.Parameter] | None:
    """New learnable step sizes, each filled with ``init``: ``"scalar"`` (one), ``"per_parameter"``
    (one per entry of every adapted parameter, Meta-SGD), or ``None`` (none learned)."""
    if kind is None:
        return None
    p = params[keys[0]]
    if kind == "scalar":
        return nn.Parameter(torch.tensor(float(init), dtype=p.dtype, device=p.device))
    return {k: nn.Parameter(torch.full_like(params[k].detach(), float(init))) for k in keys}


def step_size_tensors(alpha: Any) -> list[torch.Tensor]:
    """The learned step-size tensors of :func:`learned_step_sizes`'s result, in a fixed order."""
    if alpha is None:
        return []
    return [alpha] if isinstance(alpha, torch.Tensor) else list(alpha.values())


def make_rule(alpha: Any, fixed: float, transform: Any, start: Start | None, detach: bool = False) -> InnerRule:
    """The inner rule with learned step sizes ``alpha`` (or the number ``fixed`` when ``None``)."""
    if alpha is None:
        a: Any = float(fixed)
    elif isinstance(alpha, torch.Tensor):
        a = alpha.detach() if detach else alpha
    else:
        a = {k: (v.detach() if detach else v) for k, v in alpha.items()}
    return InnerRule(a, transform, start)
