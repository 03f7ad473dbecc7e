"""Meta-learning methods and baselines. Each method is one short module with the update it
implements; this registry turns a config into a *stepper*: the initial state and the function that
makes one training step. The training loop only calls the stepper.

Meta-learning methods (``fo_anil``, ``anil``, ``fo_maml``, ``maml``, ``reptile``) step
``params ← params − β · grad`` with the mean outer gradient over a batch of tasks (finite and fresh
regimes, closed form or ``torch.func``) or its exact expectation (infinite regime, MATH.md §4).
Baselines: ``multitask`` (shared ``B``, one head per task) and ``moments`` (one-shot estimate).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..models import FORWARDS, LinearParams, axpy, linear_forward
from ..tasks import FreshTasks, GramBatch, LinearRepTasks, TaskBatch, TaskPool
from .anil import anil_grad
from .fo_anil import fo_anil_grad, fo_anil_grad_gram
from .fo_maml import fo_maml_grad
from .generic import meta_grad
from .maml import maml_grad
from .moments import moments_estimate
from .multitask import MultitaskParams, init_heads, multitask_stepper
from .reptile import reptile_generic, reptile_grad

GradFn = Callable[[LinearParams, TaskBatch], LinearParams]
State = NamedTuple  # first field B (d, k'), second the head(s)

META_METHODS = ("fo_anil", "anil", "fo_maml", "maml", "reptile")

# name -> (adapted parameters, first order) for the generic torch.func path.
GENERIC_SPEC: dict[str, tuple[tuple[str, ...], bool]] = {
    "fo_anil": (("w",), True),
    "anil": (("w",), False),
    "fo_maml": (("B", "w"), True),
    "maml": (("B", "w"), False),
}


class MethodError(ValueError):
    """A method asked for a regime or state it does not support."""


@dataclass(frozen=True)
class Stepper:
    """``init(B_0, w_0) -> state``; ``step(state) -> state``; ``one_shot``: one step is the whole fit."""

    init: Callable[[LinearParams], State]
    step: Callable[[State], State]
    one_shot: bool = False


def generic_linear_grad(name: str, alpha: float, inner_steps: int) -> GradFn:
    """The ``torch.func`` path of method ``name`` on the two-layer linear model."""

    def fn(params: LinearParams, batch: TaskBatch) -> LinearParams:
        p = params._asdict()
        if name == "reptile":
            g = reptile_generic(linear_forward, p, batch, alpha=alpha, inner_steps=inner_steps)
        else:
            keys, first_order = GENERIC_SPEC[name]
            g = meta_grad(
                linear_forward, p, batch, alpha=alpha, adapt_keys=keys, first_order=first_order, inner_steps=inner_steps
            )
        return LinearParams(g["B"], g["w"])

    return fn


def generic_model_grad(kind: str, name: str, alpha: float, inner_steps: int) -> GradFn:
    """The ``torch.func`` path of method ``name`` on a model of ``kind`` (any parameter tuple)."""
    forward = FORWARDS[kind]
    spec, first_order = GENERIC_SPEC[name]

    def fn(params: NamedTuple, batch: TaskBatch) -> NamedTuple:
        keys = params._fields if "B" in spec else spec  # MAML-type adapt every layer; ANIL-type the head
        g = meta_grad(
            forward,
            params._asdict(),
            batch,
            alpha=alpha,
            adapt_keys=keys,
            first_order=first_order,
            inner_steps=inner_steps,
        )
        return type(params)(**g)

    return fn


def outer_grad_fn(name: str, alpha: float, inner_steps: int = 1, impl: str = "closed_form") -> GradFn:
    """Mean outer gradient of meta-learning method ``name`` on a batch of tasks.

    ``impl="closed_form"`` uses the batched linear algebra of the method's module where it covers
    ``inner_steps`` (FO-ANIL and Reptile: any; ANIL, FO-MAML, MAML: one step), and ``torch.func``
    otherwise; ``impl="autodiff"`` always uses ``torch.func``.
    """
    if name not in META_METHODS:
        raise MethodError(f"method.name: {name!r} is not a meta-learning method; allowed: {', '.join(META_METHODS)}")
    if impl == "closed_form":
        if name == "fo_anil":
            return lambda p, b: fo_anil_grad(p, b, alpha, inner_steps)
        if name == "reptile":
            return lambda p, b: reptile_grad(p, b, alpha, inner_steps)
        if inner_steps == 1:
            one_step = {"anil": anil_grad, "fo_maml": fo_maml_grad, "maml": maml_grad}[name]
            return lambda p, b: one_step(p, b, alpha)
    return generic_linear_grad(name, alpha, inner_steps)


def expected_grad_fn(name: str, alpha: float, inner_steps: int, m_in: int, tasks: LinearRepTasks):
    """Exact infinite-task gradient of method ``name`` (MATH.md §4)."""
    from ..population import fo_anil_expected_grad, fo_maml_expected_grad, second_order_expected_grad

    if inner_steps != 1:
        raise MethodError("method.inner_steps: the infinite-task regime is exact only for 1 inner step")
    fns = {
        "fo_anil": fo_anil_expected_grad,
        "fo_maml": fo_maml_expected_grad,
        "anil": second_order_expected_grad,
        "maml": second_order_expected_grad,
    }
    if name not in fns:
        raise MethodError(f"method.name: {name!r} has no infinite-task update; use data.tasks = N")
    fn = fns[name]

    def expected(params: LinearParams) -> LinearParams:
        try:
            return fn(params, tasks, alpha, m_in)
        except ValueError as e:  # a state the formulas do not cover
            raise MethodError(str(e)) from None

    return expected


def chunked_mean(batch_grad: GradFn, source: TaskPool | FreshTasks) -> Callable[[LinearParams], LinearParams]:
    """Mean gradient over all tasks of one step, whether they come in one batch or in chunks."""

    def grad(params: LinearParams) -> LinearParams:
        total, n = None, 0
        for batch in source.batches():
            g, c = batch_grad(params, batch), batch.num_tasks
            total = type(g)(*(x * c for x in g)) if total is None else axpy(total, g, -c)
            n += c
        return type(total)(*(x / n for x in total))

    return grad


DUAL_MAX_NUMBERS = 2**28  # the second copy of a pool stays under 1 GiB in float32


def pool_layout(cfg) -> str:
    """How a fixed pool of tasks is stored for the steps (:class:`metarep.tasks.TaskPool`).

    ``"gram"``: per-task second moments, for FO-ANIL when both sets have more samples than
    dimensions (``m > d``: ``N×d×d`` numbers instead of ``N×m×d``). ``"dual"``: the samples in two
    layouts, for the closed forms that read ``X_in`` and ``X_out`` (the fast CPU products, at twice
    the memory), unless the second copy would pass :data:`DUAL_MAX_NUMBERS`. ``"samples"`` otherwise.
    """
    da, me = cfg.data, cfg.method
    closed_linear = me.impl == "closed_form" and cfg.model.kind == "linear" and not cfg.infinite and not da.fresh
    if closed_linear and me.name == "fo_anil" and min(da.m_in, da.m_out) > cfg.task.d:
        return "gram"
    one_step = me.name == "fo_anil" or (me.name in ("anil", "fo_maml", "maml") and me.inner_steps == 1)
    small = da.tasks * (da.m_in + da.m_out) * cfg.task.d <= DUAL_MAX_NUMBERS
    return "dual" if closed_linear and one_step and small else "samples"


def make_stepper(cfg, tasks: LinearRepTasks, source: TaskPool | FreshTasks | None) -> Stepper:
    """The stepper of ``cfg.method`` on ``source`` (``None`` in the infinite regime)."""
    me = cfg.method
    if me.name in META_METHODS:
        if source is None:
            grad = expected_grad_fn(me.name, me.alpha, me.inner_steps, cfg.data.m_in, tasks)
        elif cfg.model.kind != "linear":
            grad = chunked_mean(generic_model_grad(cfg.model.kind, me.name, me.alpha, me.inner_steps), source)
        elif isinstance(getattr(source, "steps_pool", None), GramBatch):
            grad = chunked_mean(lambda p, b: fo_anil_grad_gram(p, b, me.alpha, me.inner_steps), source)
        else:
            grad = chunked_mean(outer_grad_fn(me.name, me.alpha, me.inner_steps, me.impl), source)
        return Stepper(init=lambda p: p, step=lambda p: axpy(p, grad(p), me.beta))

    if not isinstance(source, TaskPool):
        raise MethodError(f"method.name: {me.name} needs a fixed pool of tasks (data.tasks = N, data.fresh = false)")
    X, y = source.pool.merged()  # baselines use all m samples of each task
    if me.name == "multitask":
        step = multitask_stepper(X, y, me.balance, me.optimizer, me.beta)
        return Stepper(init=lambda p: MultitaskParams(p.B, init_heads(X.shape[0], p.B.shape[1], p.B)), step=step)
    if me.name == "moments":
        B_hat = moments_estimate(X, y, cfg.task.k)
        w0 = torch.zeros(cfg.task.k, dtype=B_hat.dtype, device=B_hat.device)
        return Stepper(init=lambda p: p, step=lambda p: LinearParams(B_hat, w0), one_shot=True)
    raise MethodError(f"method.name: unknown method {me.name!r}")
