"""metarep: meta-learning shared representations (FO-ANIL, ANIL, MAML and baselines).

Finite- and infinite-task regimes, the theory's predictions next to the simulations.
"""

__version__ = "0.1.0"

from .config import Config, ConfigError, load_config
from .models import LinearParams, init_linear
from .tasks import LinearRepTasks, TaskBatch
from .train import RunResult, train

__all__ = [
    "Config",
    "ConfigError",
    "LinearParams",
    "LinearRepTasks",
    "RunResult",
    "TaskBatch",
    "init_linear",
    "load_config",
    "train",
    "__version__",
]
