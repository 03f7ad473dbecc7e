"""metarep: meta-learning shared representations (FO-ANIL, ANIL, MAML and baselines).

Finite- and infinite-task regimes, the theory's predictions next to the simulations.

The package root is lazy: ``import metarep`` (or ``import metarep.config``) loads neither torch nor
the training stack; each name below is imported from its module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Config": "config",
    "ConfigError": "config",
    "load_config": "config",
    "LinearParams": "models",
    "init_linear": "models",
    "LinearRepTasks": "tasks",
    "TaskBatch": "batch",
    "RunResult": "train",
    "train": "train",
    "MetaLearner": "learner",
    "MethodSpec": "methods.registry",
    "register": "methods.registry",
}

__all__ = [
    "Config",
    "ConfigError",
    "LinearParams",
    "LinearRepTasks",
    "MetaLearner",
    "MethodSpec",
    "RunResult",
    "TaskBatch",
    "__version__",
    "init_linear",
    "load_config",
    "register",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'metarep' has no attribute {name!r}")


if TYPE_CHECKING:  # for type checkers and IDEs only
    from .batch import TaskBatch
    from .config import Config, ConfigError, load_config
    from .learner import MetaLearner
    from .methods.registry import MethodSpec, register
    from .models import LinearParams, init_linear
    from .tasks import LinearRepTasks
    from .train import RunResult, train
