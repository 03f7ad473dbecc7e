"""The hyper-parameters of :class:`~metarep.learner.MetaLearner`: ``get_params``/``set_params``
(scikit-learn's convention), their validation, and a one-line ``repr``."""

from __future__ import annotations

import math
from typing import Any, Self

from torch import nn

from . import engine, inner
from .methods import registry


class HyperParameters:
    """Mixin: the ``__init__`` arguments of :class:`~metarep.learner.MetaLearner` as hyper-parameters."""

    method: str
    loss: Any
    head: Any

    def _spec(self) -> registry.MethodSpec:
        return registry.get(self.method)

    _STRUCTURAL = ("features", "head", "method", "loss", "adapt_params", "optimizer", "outer_lr", "learn_inner_lr")
    _FITTED = ("model_", "adapt_keys_", "optimizer_", "history_", "n_iter_", "inner_lr_", "target_shape_")

    def get_params(self) -> dict[str, Any]:
        """The hyper-parameters given to ``__init__`` (scikit-learn convention)."""
        names = (
            "features",
            "head",
            "method",
            "inner_lr",
            "inner_steps",
            "optimizer",
            "outer_lr",
            "loss",
            "adapt_params",
            "inner_optimizer",
            "learn_inner_lr",
        )
        return {k: getattr(self, k) for k in names}

    def set_params(self, **params: Any) -> Self:
        """Change hyper-parameters; returns ``self``. ``inner_lr``, ``inner_steps`` and ``inner_optimizer``
        take effect at once (e.g. to try test-time step sizes); any other change discards the fitted
        state (not the weights)."""
        unknown = set(params) - set(self.get_params())
        if unknown:
            raise ValueError(f"set_params: unknown hyper-parameter(s) {', '.join(sorted(unknown))}")
        for k, v in params.items():
            setattr(self, k, v)
        if set(params) & set(self._STRUCTURAL):
            for attr in self._FITTED:
                self.__dict__.pop(attr, None)
        else:
            self._validate()
        return self

    def _validate(self) -> None:
        allowed = registry.names(learner=True)
        if self.method not in allowed:
            raise ValueError(f"method: {self.method!r} is not one of {', '.join(allowed)}")
        if not isinstance(self.features, nn.Module):
            raise ValueError(f"features: must be a torch.nn.Module, got {type(self.features).__name__}")
        if self.head is not None and not isinstance(self.head, nn.Module):
            raise ValueError(
                f"head: must be a torch.nn.Module (e.g. nn.Linear) or None, got {type(self.head).__name__}"
            )
        if not (isinstance(self.inner_lr, (int, float)) and math.isfinite(self.inner_lr) and self.inner_lr > 0):
            raise ValueError(f"inner_lr: must be > 0, got {self.inner_lr!r}")
        if not (isinstance(self.inner_steps, int) and self.inner_steps >= 1):
            raise ValueError(f"inner_steps: must be an integer >= 1, got {self.inner_steps!r}")
        if not (isinstance(self.outer_lr, (int, float)) and self.outer_lr > 0):
            raise ValueError(f"outer_lr: must be > 0, got {self.outer_lr!r}")
        engine.get_loss(self.loss)  # raises naming the allowed losses
        inner.check_inner_optimizer(self.inner_optimizer)
        spec = self._spec()
        if not isinstance(self.learn_inner_lr, bool):
            raise ValueError(f"learn_inner_lr: must be True or False, got {self.learn_inner_lr!r}")
        if self.learn_inner_lr and spec.order not in ("first", "second"):
            raise ValueError(f"learn_inner_lr: method {self.method!r} has no gradient with respect to the step size")
        if spec.losses is not None and self.loss not in spec.losses:
            raise ValueError(f"loss: method {self.method!r} needs loss {' or '.join(map(repr, spec.losses))}")
        if spec.start is not None and not (isinstance(self.head, nn.Linear) and self.head.bias is not None):
            raise ValueError(f"head: method {self.method!r} needs head=nn.Linear(h, N) with a bias (N classes)")

    def __repr__(self) -> str:
        opts = [f"method={self.method!r}", f"inner_lr={self.inner_lr!r}", f"inner_steps={self.inner_steps!r}"]
        if not (isinstance(self.inner_optimizer, str) and self.inner_optimizer == "sgd"):
            opts.append(f"inner_optimizer={self.inner_optimizer!r}")
        if self.learn_inner_lr:
            opts.append("learn_inner_lr=True")
        opts += [f"loss={self.loss if isinstance(self.loss, str) else '<callable>'!r}", f"outer_lr={self.outer_lr!r}"]
        modules = [m for m in (self.features, self.head) if isinstance(m, nn.Module)]
        n = sum(p.numel() for m in modules for p in m.parameters())
        shown = [m if not isinstance(m, nn.Sequential) else f"Sequential({len(m)} modules)" for m in modules]
        state = "not fitted"
        if getattr(self, "n_iter_", 0):
            state = f"fitted: {self.n_iter_} steps, last loss {self.history_[-1]['loss']:.4g}"
        return f"MetaLearner({', '.join(opts)}; {' -> '.join(map(str, shown))}; {n:,} parameters; {state})"
