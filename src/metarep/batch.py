"""The batch every task source yields: samples of T tasks with a leading task axis, split into
inner (support) and outer (query) sets. Neutral: the linear tasks, the sinusoid and the image
episodes all produce it, and every method and :class:`~metarep.learner.MetaLearner` consume it."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch


class TaskBatch(NamedTuple):
    """Samples of T tasks, split into inner (support) and outer (query) sets.

    Shapes: ``X_in (T, m_in, *input)``, ``y_in (T, m_in[, out])``, ``X_out (T, m_out, *input)``,
    ``y_out (T, m_out[, out])``; for the linear tasks ``input = (d,)`` and ``y`` has no output axis.
    """

    X_in: torch.Tensor
    y_in: torch.Tensor
    X_out: torch.Tensor
    y_out: torch.Tensor

    @property
    def num_tasks(self) -> int:
        return self[0].shape[0]  # every field has the task axis first

    def select(self, idx: torch.Tensor) -> TaskBatch:
        """The tasks at indices ``idx`` (1-D long tensor)."""
        return type(self)(*(t[idx] for t in self))

    def merged(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All ``m = m_in + m_out`` samples of each task: ``X (T, m, ...)``, ``y (T, m, ...)``."""
        return torch.cat([self.X_in, self.X_out], 1), torch.cat([self.y_in, self.y_out], 1)

    # A plain batch stores no transposed copies (see :class:`metarep.tasks.DualBatch`).
    Xt_in = property(lambda self: None)
    Xt_out = property(lambda self: None)


class TaskSource(Protocol):
    """A task distribution seen as a stream: ``batches(meta_batch, ...)`` yields :class:`TaskBatch` es.

    :class:`metarep.tasks.LinearRepTasks` (``sample(n, m_in, m_out, generator)``),
    :class:`metarep.fewshot.SinusoidTasks` and :class:`metarep.fewshot.EpisodeSampler` all have
    ``sample(num_tasks, ...) -> TaskBatch`` for a fixed set of tasks, and the training loops draw
    from their streams.
    """

    def sample(self, num_tasks: int, *args, **kwargs) -> TaskBatch | tuple[TaskBatch, ...]: ...
