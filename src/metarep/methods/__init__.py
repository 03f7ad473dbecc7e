"""Meta-learning methods. Each method is one short module with the update it implements; this
registry maps a method name to its outer-gradient function on a batch of tasks (finite and fresh
regimes) and to its exact expected gradient (infinite regime) where MATH.md §4 gives one.

Every outer-gradient function has the signature ``grad(params, batch) -> params-shaped grads``.
"""

from __future__ import annotations

from typing import Callable

from ..models import LinearParams, linear_forward
from ..tasks import LinearRepTasks, TaskBatch
from .fo_anil import fo_anil_grad
from .generic import meta_grad

GradFn = Callable[[LinearParams, TaskBatch], LinearParams]
ExpectedGradFn = Callable[[LinearParams], LinearParams]

# name -> (adapted parameters, first order) for the generic torch.func path.
GENERIC_SPEC: dict[str, tuple[tuple[str, ...], bool]] = {
    "fo_anil": (("w",), True),
}

CLOSED_FORM: dict[str, Callable[..., LinearParams]] = {
    "fo_anil": fo_anil_grad,
}


class MethodError(ValueError):
    """A method asked for a regime or state it does not support."""


def generic_linear_grad(name: str, alpha: float, inner_steps: int) -> GradFn:
    """The ``torch.func`` path on the two-layer linear model (holds the closed form honest)."""
    keys, first_order = GENERIC_SPEC[name]

    def fn(params: LinearParams, batch: TaskBatch) -> LinearParams:
        g = meta_grad(
            linear_forward, params._asdict(), batch,
            alpha=alpha, adapt_keys=keys, first_order=first_order, inner_steps=inner_steps,
        )
        return LinearParams(g["B"], g["w"])

    return fn


def outer_grad_fn(name: str, alpha: float, inner_steps: int = 1, impl: str = "closed_form") -> GradFn:
    """Outer-gradient function of method ``name`` on a batch of tasks."""
    if name not in CLOSED_FORM:
        raise MethodError(f"method.name: {name!r} is not available yet; available: {', '.join(CLOSED_FORM)}")
    if impl == "autodiff":
        return generic_linear_grad(name, alpha, inner_steps)
    closed = CLOSED_FORM[name]
    return lambda params, batch: closed(params, batch, alpha, inner_steps)


def expected_grad_fn(name: str, alpha: float, inner_steps: int, m_in: int, tasks: LinearRepTasks) -> ExpectedGradFn:
    """Exact infinite-task gradient of method ``name`` (MATH.md §4)."""
    from ..population import fo_anil_expected_grad

    if inner_steps != 1:
        raise MethodError("method.inner_steps: the infinite-task regime is exact only for 1 inner step")
    if name == "fo_anil":
        return lambda params: fo_anil_expected_grad(params, tasks, alpha, m_in)
    raise MethodError(f"method.name: {name!r} has no infinite-task update; use data.tasks = N")
