"""The batch every task source yields: samples of T tasks with a leading task axis, split into
inner (support) and outer (query) sets. Neutral: the linear tasks, the sinusoid and the image
episodes all produce it, and every method and :class:`~metarep.learner.MetaLearner` consume it."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

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
    """A task distribution: ``sample(num_tasks, ...)`` draws that many new tasks as a :class:`TaskBatch`
    (the rest of the arguments, sample sizes and the generator, are the source's own).

    :meth:`metarep.tasks.LinearRepTasks.sample` ``(n, m_in, m_out, generator)``,
    :meth:`metarep.fewshot.SinusoidTasks.sample` ``(num_tasks, shots, queries, generator)`` (which
    also returns the tasks' amplitudes and phases) and :meth:`metarep.fewshot.EpisodeSampler.sample`
    ``(num_tasks)`` have this shape; a training loop consumes any iterable of such batches
    (:meth:`metarep.learner.MetaLearner.fit`, :class:`metarep.tasks.TaskPool`).
    """

    def sample(self, num_tasks: int, *args: Any, **kwargs: Any) -> Any: ...
