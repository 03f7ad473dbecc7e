"""metarep: meta-learning shared representations (FO-ANIL, ANIL, MAML and baselines).

Finite- and infinite-task regimes, the theory's predictions next to the simulations.

The package root is lazy: ``import metarep`` (or ``import metarep.config``) loads neither torch nor
the training stack; each name below is imported from its module on first use.

``metarep.train`` is the function :func:`metarep.train.train` (also once the module of the same name
is imported); the module itself is ``sys.modules["metarep.train"]`` (``from metarep.train import ...``).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from ._version import __version__

# public name -> module that defines it
_EXPORTS = {
    "Config": "config",
    "ConfigError": "config",
    "TaskConfig": "config",
    "ModelConfig": "config",
    "MethodConfig": "config",
    "DataConfig": "config",
    "RunConfig": "config",
    "load_config": "config",
    "LinearParams": "models",
    "init_linear": "models",
    "LinearRepTasks": "tasks",
    "TaskBatch": "batch",
    "RunResult": "train",
    "train": "train",
    "LoadedRun": "outputs",
    "load_run": "outputs",
    "save_run": "outputs",
    "plot_run": "outputs",
    "MetaLearner": "learner",
    "MethodSpec": "methods.registry",
    "register": "methods.registry",
}

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "LinearParams",
    "LinearRepTasks",
    "LoadedRun",
    "MetaLearner",
    "MethodConfig",
    "MethodSpec",
    "ModelConfig",
    "RunConfig",
    "RunResult",
    "TaskBatch",
    "TaskConfig",
    "__version__",
    "init_linear",
    "load_config",
    "load_run",
    "plot_run",
    "register",
    "save_run",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'metarep' has no attribute {name!r}")


class _Package(types.ModuleType):
    """The package's module type: importing a submodule that shares its name with an export (``train``)
    does not replace the exported function by the module."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in _EXPORTS and _EXPORTS[name] == name:
            self.__dict__.pop(name, None)  # the next access imports the export (see __getattr__)
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # for type checkers and IDEs only
    from .batch import TaskBatch
    from .config import Config, ConfigError, DataConfig, MethodConfig, ModelConfig, RunConfig, TaskConfig, load_config
    from .learner import MetaLearner
    from .methods.registry import MethodSpec, register
    from .models import LinearParams, init_linear
    from .outputs import LoadedRun, load_run, plot_run, save_run
    from .tasks import LinearRepTasks
    from .train import RunResult, train
