"""The method registry: every method declares itself once, as a :class:`MethodSpec`.

Config validation, dispatch (:func:`metarep.methods.make_stepper`), the pool layout, the theory's
dynamics classes, the experiments' method lists, :class:`~metarep.learner.MetaLearner` and the
few-shot CLI all read the specs; none of them lists method names. Adding a method is one module::

    from metarep.methods.registry import MethodSpec, register

    register(MethodSpec(name="fo_boil", label="FO-BOIL", kind="meta", adapts="features", order="first"))

and, from then on, ``metarep.train`` (``method.name = "fo_boil"``), reproduce series and
``MetaLearner(method="fo_boil")`` run it through the functional engine (:mod:`metarep.engine`).
A method with a batched closed form on the linear model, an exact infinite-task gradient or its own
stepper (the baselines) declares those too. This module does not import torch: the built-in
methods are loaded on the first look-up, then the modules named in the environment variable
``METAREP_PLUGINS`` (comma-separated, e.g. ``METAREP_PLUGINS=mylab.methods metarep run ...``), so
that the command line sees methods defined elsewhere. Worker processes (``metarep reproduce``)
import the modules that registered methods in the parent (:func:`plugin_modules`).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

KINDS = ("meta", "baseline")
ADAPTS = ("head", "features", "all")  # what the inner loop adapts: w; everything but w; everything
ORDERS = ("first", "second", "reptile", "pretrain")  # how the outer gradient is formed (metarep.engine)
DYNAMICS = ("first_order", "second_order")  # the theory's infinite-task dynamics class at w = 0
REGIMES = ("finite", "minibatch", "fresh", "infinite")
MODEL_KINDS = ("linear", "relu2", "relu3")
LAYOUTS = ("samples", "dual", "gram", "merged")  # metarep.tasks.TaskPool
BUILTIN = ("fo_anil", "anil", "fo_maml", "maml", "reptile", "multitask", "moments", "pretrain", "metasgd", "protonet")
LEARNED_LR = ("scalar", "per_parameter")  # step sizes learned in the outer loop (metarep.inner)


@dataclass(frozen=True)
class MethodSpec:
    """What a method is. Only ``name``, ``label`` and ``kind`` are required.

    **Arguments:**

    - ``name``: the key in configs (``method.name``) and in ``MetaLearner(method=...)``.
    - ``label``: how figures and tables name it (``"FO-ANIL"``).
    - ``kind``: ``"meta"`` (steps ``θ ← θ − β·grad`` with a mean outer gradient) or ``"baseline"``.
    - ``adapts``: what the inner loop adapts: ``"head"`` (``w``), ``"features"`` (all but ``w``) or
      ``"all"``; ``None`` for baselines without an inner loop.
    - ``order``: ``"first"`` (outer gradient at the adapted point), ``"second"`` (through the inner
      loop), ``"reptile"`` (``θ − mean φ_i``) or ``"pretrain"`` (joint training, no inner loop).
    - ``closed_form``: batched linear-model gradient ``(params, batch, alpha, inner_steps) -> grad``
      (mean over the tasks of ``batch``), exact for the inner steps in ``closed_form_steps``
      (``None``: any number); ``layouts``: the pool layouts it reads (:class:`metarep.tasks.TaskPool`).
      Without one the method runs through :mod:`metarep.engine`.
    - ``expected_grad``: exact infinite-task gradient ``(params, tasks, alpha, m_in) -> grad`` for one
      inner step (MATH.md §4); ``expected_exact`` says where it holds (it raises ``ValueError``
      outside). ``None``: no infinite-task regime.
    - ``dynamics``: the theory's class of its infinite-task dynamics at ``w = 0`` (MATH.md §4–5):
      ``"first_order"`` (``B ← B − βα(MG − S)B``), ``"second_order"`` (``MG + GM − 2S``) or ``None``.
    - ``regimes``: the data regimes it runs in, from ``finite``, ``minibatch``, ``fresh``, ``infinite``.
    - ``models``: model kinds of the linear harness it supports (``linear``, ``relu2``, ``relu3``).
    - ``stepper``: for baselines, ``(cfg, tasks, source) -> Stepper`` (:mod:`metarep.methods`).
    - ``adapt_estimator``: the :mod:`metarep.evaluate` estimator that shows its test-time
      adaptation (``"learned"``: head steps from its ``(B, w)``; baselines: ``"ls_top_k"``).
    - ``series_overrides``: config overrides it needs in the experiments, a function of the scale
      (e.g. Reptile's inner steps).
    - ``harness``: runs in the linear harness (``metarep run``); ``learner``: in ``MetaLearner``.
    - ``learned_lr``: step sizes the method learns in the outer loop (``MetaLearner`` only):
      ``"per_parameter"`` (Meta-SGD), ``"scalar"``, or ``None`` (``learn_inner_lr=True`` adds a scalar).
    - ``start``: ``(θ_a, Z_in, y_in) -> φ_0``, the inner loop's starting point from one task's support
      set (ProtoNets' prototype head); ``None``: ``θ_a``. ``inner_loop``: whether training takes
      inner steps (``False``: only ``start``; test-time steps fine-tune from it).
    - ``losses``: the ``MetaLearner`` losses it is defined for (``None``: any).
    """

    name: str
    label: str
    kind: str
    adapts: str | None = None
    order: str | None = None
    closed_form: Callable | None = None
    closed_form_steps: int | None = 1
    layouts: tuple[str, ...] = ("samples",)
    expected_grad: Callable | None = None
    expected_exact: str = ""
    dynamics: str | None = None
    regimes: tuple[str, ...] = ("finite", "minibatch", "fresh")
    models: tuple[str, ...] = ("linear",)
    stepper: Callable | None = None
    adapt_estimator: str = "learned"
    series_overrides: Callable[[Any], tuple[str, ...]] = field(default=lambda scale: ())
    harness: bool = True
    learner: bool = True
    learned_lr: str | None = None
    start: Callable | None = None
    inner_loop: bool = True
    losses: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        def need(ok: bool, key: str, allowed: str) -> None:
            if not ok:
                raise ValueError(f"MethodSpec {self.name!r}: {key} must be {allowed}, got {getattr(self, key)!r}")

        need(isinstance(self.name, str) and self.name.isidentifier(), "name", "an identifier")
        need(self.kind in KINDS, "kind", " or ".join(KINDS))
        need(self.adapts is None or self.adapts in ADAPTS, "adapts", f"None or one of {', '.join(ADAPTS)}")
        need(self.order is None or self.order in ORDERS, "order", f"None or one of {', '.join(ORDERS)}")
        need(self.dynamics is None or self.dynamics in DYNAMICS, "dynamics", f"None or one of {', '.join(DYNAMICS)}")
        need(set(self.regimes) <= set(REGIMES), "regimes", f"a subset of {', '.join(REGIMES)}")
        need(set(self.models) <= set(MODEL_KINDS), "models", f"a subset of {', '.join(MODEL_KINDS)}")
        need(set(self.layouts) <= set(LAYOUTS), "layouts", f"a subset of {', '.join(LAYOUTS)}")
        need(self.kind == "baseline" or self.order is not None, "order", "set for a meta-learning method")
        need(self.kind == "meta" or not self.harness or self.stepper is not None, "stepper", "set for a baseline")
        need(self.expected_grad is None or "infinite" in self.regimes, "regimes", "to include infinite")
        need(self.learned_lr is None or self.learned_lr in LEARNED_LR, "learned_lr", f"None or {LEARNED_LR}")
        need(not (self.harness and (self.learned_lr or self.start)), "harness", "False with learned_lr or start")

    @property
    def is_meta(self) -> bool:
        return self.kind == "meta"

    def covers(self, inner_steps: int) -> bool:
        """True when the closed form is exact for ``inner_steps`` inner steps."""
        return self.closed_form is not None and self.closed_form_steps in (None, inner_steps)

    def runs_in(self, regime: str) -> bool:
        return regime in self.regimes


_REGISTRY: dict[str, MethodSpec] = {}
_ORIGIN: dict[str, str] = {}  # method name -> the module that registered it
_loaded = False


def register(spec: MethodSpec, *, replace: bool = False) -> MethodSpec:
    """Add ``spec`` to the registry (``replace=True`` to redefine a name); returns it."""
    _load_builtin()
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"method {spec.name!r} is already registered; pass replace=True to redefine it")
    _REGISTRY[spec.name] = spec
    _ORIGIN[spec.name] = sys._getframe(1).f_globals.get("__name__", "")
    return spec


def unregister(name: str) -> None:
    """Remove a method (tests register temporary ones)."""
    _REGISTRY.pop(name, None)
    _ORIGIN.pop(name, None)


def plugin_modules() -> tuple[str, ...]:
    """The importable modules outside metarep that registered methods (for worker processes)."""
    _load_builtin()
    mods = {m for m in _ORIGIN.values() if m and m != "__main__" and not m.startswith("metarep.")}
    return tuple(sorted(mods))


class PluginError(ValueError):
    """A module named in ``METAREP_PLUGINS`` (or passed to a worker) cannot be imported."""


def load_plugins(modules: tuple[str, ...] | list[str]) -> None:
    """Import ``modules`` (each registers its methods), skipping those already imported.

    Whatever a module raises while imported (an ``ImportError``, any other exception, even ``sys.exit``)
    becomes a :class:`PluginError` naming the module and the last line of what it raised.
    """
    for name in modules:
        if name and name not in sys.modules:
            try:
                importlib.import_module(name)
            except ImportError as e:
                raise PluginError(f"METAREP_PLUGINS: cannot import {name!r} ({e})") from None
            except (Exception, SystemExit) as e:  # a module that fails (or exits) while it is imported
                lines = str(e).strip().splitlines()
                last = f"{type(e).__name__}: {lines[-1]}" if lines else type(e).__name__
                raise PluginError(f"METAREP_PLUGINS: importing {name!r} failed: {last}") from None


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for name in BUILTIN:  # each module calls register() for its own spec
            importlib.import_module(f"metarep.methods.{name}")
        load_plugins([m.strip() for m in os.environ.get("METAREP_PLUGINS", "").split(",")])


def get(name: str) -> MethodSpec:
    """The spec of ``name``; ``KeyError`` naming the registered methods otherwise."""
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; registered: {', '.join(_REGISTRY)}") from None


def _order(name: str) -> int:
    """Built-in methods in :data:`BUILTIN` order (whatever imported them first), then the others."""
    return BUILTIN.index(name) if name in BUILTIN else len(BUILTIN)


def specs(**where: Any) -> tuple[MethodSpec, ...]:
    """Registered specs whose attributes equal ``where`` (e.g. ``harness=True``): the built-in
    methods first, then the others in registration order."""
    _load_builtin()
    ordered = sorted(_REGISTRY.values(), key=lambda s: _order(s.name))  # stable: registration order after
    return tuple(s for s in ordered if all(getattr(s, k) == v for k, v in where.items()))


def names(**where: Any) -> tuple[str, ...]:
    """Names of :func:`specs` ``(**where)``."""
    return tuple(s.name for s in specs(**where))


def label(name: str) -> str:
    """The label of ``name``, or ``name`` itself if it is not registered."""
    _load_builtin()
    return _REGISTRY[name].label if name in _REGISTRY else name
