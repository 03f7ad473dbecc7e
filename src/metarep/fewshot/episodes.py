"""N-way K-shot episodes from any labelled samples (:class:`~metarep.fewshot.images.ClassImages`),
with a leading task axis and no loop over tasks.

- :class:`EpisodeSampler`: a stream of training episodes (optionally transformed per episode) and
  fixed test episodes reproducible from a seed alone.
- :func:`rotate_per_class`: a per-episode transform, each class of an episode turned by a random
  multiple of 90° (the augmentation of Omniglot-style data).

A transform is any ``f(X, generator) -> X`` on one batch of episodes laid out as
``X (T, ways, shots + queries, *shape)`` (class ``c`` of episode ``t`` is ``X[t, c]``; the support
images of a class come before its queries), so it can treat each episode, class or image with its
own random draw from ``generator``, vectorised over the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from ..batch import TaskBatch
from .images import ClassImages

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class EpisodeSampler:
    """N-way K-shot episodes from :class:`ClassImages`, with a leading task axis.

    Each episode picks ``ways`` distinct classes in random order (the order is the label, so labels
    are a fresh random permutation ``0..ways-1`` every episode, whatever the data's own labels), then
    ``shots + queries`` distinct images of each: the support and query sets never share an image.

    ``sample(T)`` returns a :class:`TaskBatch`: ``X_in (T, ways*shots, *shape)``, ``y_in (T, ways*shots)``
    (long), ``X_out (T, ways*queries, *shape)``, ``y_out (T, ways*queries)``, where ``shape`` is the
    shape of one sample (``(C, H, W)`` for images).

    **Arguments:** ``data``; ``ways``, ``shots``, ``queries`` (N, K and query images per class);
    ``generator``, the stream's random state; ``transform``, applied to every sampled batch (see the
    module docstring), not to :meth:`fixed` episodes unless asked.
    """

    def __init__(
        self,
        data: ClassImages,
        ways: int,
        shots: int,
        queries: int,
        generator: torch.Generator,
        transform: Transform | None = None,
    ):
        if ways < 2 or ways > data.num_classes:
            raise ValueError(f"ways: must be between 2 and the number of classes ({data.num_classes}), got {ways}")
        if shots < 1 or queries < 1:
            raise ValueError(f"shots and queries: must be >= 1, got {shots} and {queries}")
        counts = data.counts()
        if int(counts.min()) < shots + queries:
            c = int(counts.argmin())
            raise ValueError(
                f"shots + queries: {shots} + {queries} images per class are needed, but class "
                f"{data.class_names[c]!r} has {int(counts[c])}"
            )
        self.data, self.ways, self.shots, self.queries = data, ways, shots, queries
        self.generator, self.transform = generator, transform
        order = torch.argsort(data.labels, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        # (C, max_count) table of image indices per class, padded with index 0 (never drawn)
        col = torch.arange(int(counts.max()))
        self._table = order[(starts[:, None] + col).clamp(max=len(order) - 1)]
        self._valid = col[None, :] < counts[:, None]

    def _draw(self, num_tasks: int, g: torch.Generator, transform: Transform | None) -> TaskBatch:
        C, n = self.data.num_classes, self.shots + self.queries
        classes = torch.rand(num_tasks, C, generator=g).argsort(1)[:, : self.ways]  # (T, ways)
        keys = torch.rand(num_tasks, self.ways, self._table.shape[1], generator=g)
        keys = keys.masked_fill(~self._valid[classes], 2.0)  # padding last
        pick = keys.argsort(-1)[..., :n]  # (T, ways, n): distinct images of each class
        idx = torch.gather(self._table[classes], 2, pick)
        X = self.data.images[idx]  # (T, ways, n, *shape)
        if transform is not None:
            X = transform(X, g)
        y = torch.arange(self.ways).view(1, -1, 1).expand(num_tasks, self.ways, n)
        split = lambda t, a, b: t[:, :, a:b].reshape(num_tasks, self.ways * (b - a), *t.shape[3:])  # noqa: E731
        return TaskBatch(
            split(X, 0, self.shots), split(y, 0, self.shots), split(X, self.shots, n), split(y, self.shots, n)
        )

    def sample(self, num_tasks: int) -> TaskBatch:
        """``num_tasks`` new episodes from the stream (advances ``generator``), transformed."""
        return self._draw(num_tasks, self.generator, self.transform)

    def fixed(self, num_tasks: int, seed: int, *, transform: bool = False) -> TaskBatch:
        """``num_tasks`` episodes that depend on ``seed`` and the data only (not on the stream's state):
        the same test episodes for every method and every call. ``transform``: apply the sampler's transform."""
        g = torch.Generator().manual_seed(int(seed))
        return self._draw(num_tasks, g, self.transform if transform else None)

    def batches(self, meta_batch: int) -> Iterator[TaskBatch]:
        """An endless stream of batches of ``meta_batch`` episodes."""
        while True:
            yield self.sample(meta_batch)


def rotate_per_class(X: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Turn every class of every episode by its own random multiple of 90° (support and queries alike).

    ``X (T, ways, n, C, H, W)`` with ``H == W`` -> same shape.
    """
    if X.ndim != 6 or X.shape[-1] != X.shape[-2]:
        raise ValueError(f"rotate_per_class: needs square images (T, ways, n, C, H, H), got {tuple(X.shape)}")
    k = torch.randint(4, X.shape[:2], generator=generator)  # (T, ways)
    out = X.clone()
    for r in (1, 2, 3):  # four vectorised branches, not a loop over episodes
        sel = k == r
        out[sel] = torch.rot90(X[sel], r, dims=(-2, -1))
    return out
