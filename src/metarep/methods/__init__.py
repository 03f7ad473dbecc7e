"""Meta-learning methods and baselines on the linear harness.

Each method is one short module that implements its update next to the equation and declares
itself with a :class:`~metarep.methods.registry.MethodSpec`. This module turns a config into a
*stepper* (:mod:`metarep.methods.stepper`) by reading the spec, never the method's name:

- infinite tasks: the spec's exact expected gradient (MATH.md §4);
- a fixed pool or fresh tasks: the spec's batched closed form where it covers the inner steps on the
  linear model, and the functional engine (:mod:`metarep.engine`) otherwise, averaged over the
  chunks of the step's tasks;
- then the outer update (:func:`~metarep.methods.stepper.sgd` with ``method.beta``);
- baselines bring their own stepper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from .. import engine
from ..models import FORWARDS, LinearParams
from .registry import MethodSpec, get, names, register, specs
from .stepper import GradFn, StepData, Stepper, TrainState, mean_over_chunks, meta_stepper, sgd

__all__ = [
    "DUAL_MAX_NUMBERS",
    "MethodError",
    "MethodSpec",
    "Stepper",
    "TrainState",
    "chunked_mean",
    "engine_grad",
    "expected_grad_fn",
    "generic_linear_grad",
    "get",
    "make_stepper",
    "names",
    "outer_grad_fn",
    "pool_layout",
    "register",
    "specs",
]


class MethodError(ValueError):
    """A method asked for a regime or state it does not support."""


def _meta_spec(name: str) -> MethodSpec:
    try:
        spec = get(name)
    except KeyError:
        spec = None
    if spec is None or not spec.is_meta:
        allowed = ", ".join(names(kind="meta", harness=True))
        raise MethodError(f"method.name: {name!r} is not a meta-learning method; allowed: {allowed}")
    return spec


def engine_grad(name: str, alpha: float, inner_steps: int, kind: str = "linear") -> GradFn:
    """Mean outer gradient of method ``name`` on a model of ``kind`` through :mod:`metarep.engine`,
    with the theory's loss ½·MSE; ``(params, batch) -> grads`` shaped like ``params``."""
    spec = _meta_spec(name)
    forward = FORWARDS[kind]

    def fn(params: NamedTuple, batch) -> NamedTuple:
        needs_grad = spec.order != "reptile"
        p = {k: v.detach().requires_grad_(needs_grad) for k, v in params._asdict().items()}
        keys = engine.adapt_keys(list(p), spec.adapts, lambda n: n == "w")  # the head is w
        g, _ = engine.meta_grad(
            forward, engine.half_mse, p, batch, keys=keys, order=spec.order, alpha=alpha, steps=inner_steps
        )
        return type(params)(**g)

    return fn


def generic_linear_grad(name: str, alpha: float, inner_steps: int) -> GradFn:
    """:func:`engine_grad` on the two-layer linear model (the ``impl = "autodiff"`` path)."""
    return engine_grad(name, alpha, inner_steps, "linear")


def outer_grad_fn(name: str, alpha: float, inner_steps: int = 1, impl: str = "closed_form") -> GradFn:
    """Mean outer gradient of meta-learning method ``name`` on a batch of tasks of the linear model.

    ``impl="closed_form"`` uses the spec's batched closed form where it covers ``inner_steps``, and
    the engine otherwise; ``impl="autodiff"`` always uses the engine.
    """
    spec = _meta_spec(name)
    if impl == "closed_form" and spec.covers(inner_steps):
        return lambda p, b: spec.closed_form(p, b, alpha, inner_steps)
    return generic_linear_grad(name, alpha, inner_steps)


def expected_grad_fn(
    name: str, alpha: float, inner_steps: int, m_in: int, tasks
) -> Callable[[LinearParams], LinearParams]:
    """Exact infinite-task gradient of method ``name`` (MATH.md §4), ``params -> grads``."""
    if inner_steps != 1:
        raise MethodError("method.inner_steps: the infinite-task regime is exact only for 1 inner step")
    spec = get(name)
    if spec.expected_grad is None:
        raise MethodError(f"method.name: {name!r} has no infinite-task update; use data.tasks = N")
    fn = spec.expected_grad

    def expected(params: LinearParams) -> LinearParams:
        try:
            return fn(params, tasks, alpha, m_in)
        except ValueError as e:  # a state the formulas do not cover
            raise MethodError(str(e)) from None

    return expected


def chunked_mean(batch_grad: GradFn, source) -> Callable[[NamedTuple], NamedTuple]:
    """``params -> mean gradient`` over all tasks of one step of ``source`` (a pool or fresh tasks)."""
    return lambda params: mean_over_chunks(batch_grad, params, source.batches())


DUAL_MAX_NUMBERS = 2**28  # the second copy of a pool stays under 1 GiB in float32


def pool_layout(cfg) -> str:
    """How a fixed pool of tasks is stored for the steps (:class:`metarep.tasks.TaskPool`).

    From the spec's ``layouts``: ``"gram"`` (per-task second moments, ``N×d×d`` numbers instead of
    ``N×m×d``) where the closed form reads it and both sets have more samples than dimensions;
    ``"dual"`` (the samples in two layouts: the fast CPU products at twice the memory) where the
    closed form reads it, unless the second copy would pass :data:`DUAL_MAX_NUMBERS`; a baseline's
    own layout (``"merged"``); ``"samples"`` otherwise.
    """
    da, me = cfg.data, cfg.method
    spec = get(me.name)
    if not spec.is_meta:
        return spec.layouts[0]
    closed_linear = (
        me.impl == "closed_form"
        and cfg.model.kind == "linear"
        and not cfg.infinite
        and not da.fresh
        and spec.covers(me.inner_steps)
    )
    if closed_linear and "gram" in spec.layouts and min(da.m_in, da.m_out) > cfg.task.d:
        return "gram"
    small = da.tasks * (da.m_in + da.m_out) * cfg.task.d <= DUAL_MAX_NUMBERS
    return "dual" if closed_linear and "dual" in spec.layouts and small else "samples"


def _step_grad(cfg, tasks, spec: MethodSpec) -> Callable[[NamedTuple, StepData], NamedTuple]:
    """``(params, data) -> mean gradient`` of one step of a meta-learning method."""
    me = cfg.method
    if cfg.infinite:
        expected = expected_grad_fn(me.name, me.alpha, me.inner_steps, cfg.data.m_in, tasks)
        return lambda params, data: expected(params)
    if cfg.model.kind == "linear":
        batch_grad = outer_grad_fn(me.name, me.alpha, me.inner_steps, me.impl)
    else:
        batch_grad = engine_grad(me.name, me.alpha, me.inner_steps, cfg.model.kind)
    return lambda params, data: mean_over_chunks(batch_grad, params, data)


def make_stepper(cfg, tasks, source) -> Stepper:
    """The stepper of ``cfg.method`` (``source``: the task pool or fresh tasks; ``None`` when infinite)."""
    spec = get(cfg.method.name)
    if not spec.is_meta:
        return spec.stepper(cfg, tasks, source)
    return meta_stepper(_step_grad(cfg, tasks, spec), sgd(cfg.method.beta))
