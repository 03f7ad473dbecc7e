"""Linear shared-representation tasks (MATH.md §1).

The noiseless ground truth (``B*``, ``Σ*``, ``σ²``) lives in :class:`LinearRepTasks`; sampling
noisy data from it returns a :class:`TaskBatch`, a tuple of tensors with a leading task axis.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .batch import TaskBatch
from .limits import FRESH_CHUNK_NUMBERS, pool_chunk

__all__ = [
    "DualBatch",
    "FreshTasks",
    "GramBatch",
    "LinearRepTasks",
    "MergedBatch",
    "TaskBatch",
    "TaskPool",
    "task_cov_diag",
]


class DualBatch(NamedTuple):
    """A :class:`TaskBatch` that also stores each ``X`` transposed: ``Xt_in (N, d, m_in)``,
    ``Xt_out (N, d, m_out)``, the same numbers.

    Per-task products ``X u_i`` then read ``Xt`` and ``Xᵀ r`` read ``X``, both as weighted sums of
    contiguous rows, the fastest form of either on the CPU (``metarep bench``). The price is twice
    the memory of the samples, so only a fixed pool is stored this way.
    """

    X_in: torch.Tensor
    y_in: torch.Tensor
    X_out: torch.Tensor
    y_out: torch.Tensor
    Xt_in: torch.Tensor
    Xt_out: torch.Tensor

    num_tasks = TaskBatch.num_tasks
    select = TaskBatch.select
    merged = TaskBatch.merged

    @classmethod
    def from_batch(cls, b: TaskBatch) -> DualBatch:
        return cls(*b, b.X_in.transpose(1, 2).contiguous(), b.X_out.transpose(1, 2).contiguous())


class GramBatch(NamedTuple):
    """The same tasks as a :class:`TaskBatch`, as per-task second moments (for ``m > d``).

    ``G_in (N, d, d) = X_inᵀX_in/m_in``, ``c_in (N, d) = X_inᵀy_in/m_in``, and likewise for the outer
    set. Every linear-model gradient that only needs ``Σ̂ u − Xᵀy/m`` is exact from these.
    """

    G_in: torch.Tensor
    c_in: torch.Tensor
    G_out: torch.Tensor
    c_out: torch.Tensor

    num_tasks = TaskBatch.num_tasks
    select = TaskBatch.select

    @classmethod
    def from_batch(cls, b: TaskBatch) -> GramBatch:
        def moments(X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            m = X.shape[1]
            return X.transpose(1, 2) @ X / m, torch.einsum("nm,nmd->nd", y, X) / m

        return cls(*moments(b.X_in, b.y_in), *moments(b.X_out, b.y_out))


class MergedBatch(NamedTuple):
    """The same tasks as a :class:`TaskBatch` with their inner and outer samples together:
    ``X (N, m, d)``, ``y (N, m)``, ``m = m_in + m_out``; for methods that fit all samples of a task
    (the baselines), so that no step copies the pool."""

    X: torch.Tensor
    y: torch.Tensor

    num_tasks = TaskBatch.num_tasks
    select = TaskBatch.select

    def merged(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.X, self.y

    @classmethod
    def from_batch(cls, b: TaskBatch) -> MergedBatch:
        return cls(*b.merged())


def task_cov_diag(k: int, kind: str, trace: float | None = None) -> torch.Tensor:
    """Diagonal of Σ*, float64 ``(k,)``: ``identity`` or ``linear`` ∝ (1, …, k), scaled to ``trace``.

    ``trace`` defaults to k (MATH.md §1, our choice).
    """
    if kind == "identity":
        s = torch.ones(k, dtype=torch.float64)
    elif kind == "linear":
        s = torch.arange(1, k + 1, dtype=torch.float64)
    else:
        raise ValueError(f"task_cov: must be 'identity' or 'linear', got {kind!r}")
    trace = float(k) if trace is None else float(trace)
    return s * (trace / s.sum())


def orthonormal_complement(Q: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis ``(d, d - k)`` of the complement of the orthonormal columns of ``Q (d, k)``."""
    d, k = Q.shape
    full, _ = torch.linalg.qr(torch.cat([Q, torch.eye(d, dtype=Q.dtype, device=Q.device)], 1))
    # The first k columns of `full` span Q; the next d - k complete the basis.
    return full[:, k:d]


class LinearRepTasks:
    """Task distribution ``θ = B* w*``, ``w* ~ N(0, Σ*)``, ``x ~ N(0, I_d)``, ``y = ⟨θ, x⟩ + ε``.

    **Arguments:**

    - ``B_star``: ``(d, k)`` orthonormal columns.
    - ``sigma_diag``: ``(k,)`` diagonal of Σ* (``w*`` has independent coordinates).
    - ``sigma2``: noise variance σ².
    - ``dtype``: dtype of sampled data. The ground truth is kept in float64 for the metrics.
    """

    def __init__(
        self,
        B_star: torch.Tensor,
        sigma_diag: torch.Tensor,
        sigma2: float,
        dtype: torch.dtype = torch.float64,
    ):
        self.B_star = B_star.to(torch.float64)
        self.sigma_diag = sigma_diag.to(self.B_star)
        self.sigma2 = float(sigma2)
        self.B_perp = orthonormal_complement(self.B_star)
        self.dtype = dtype
        self._B_sample = self.B_star.to(dtype)
        self._scale_sample = self.sigma_diag.sqrt().to(dtype)

    @classmethod
    def create(
        cls,
        d: int,
        k: int,
        sigma2: float,
        task_cov: str = "linear",
        task_cov_trace: float | None = None,
        *,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
    ) -> LinearRepTasks:
        """Draw ``B*`` once (QR of a Gaussian ``d×k`` matrix) and build the distribution."""
        G = torch.randn(d, k, generator=generator, dtype=torch.float64)
        Q, R = torch.linalg.qr(G)
        Q = Q * torch.sign(torch.diagonal(R))  # unique QR: a deterministic function of G
        return cls(Q.to(device=device), task_cov_diag(k, task_cov, task_cov_trace), sigma2, dtype)

    @property
    def d(self) -> int:
        return self.B_star.shape[0]

    @property
    def k(self) -> int:
        return self.B_star.shape[1]

    @property
    def S(self) -> torch.Tensor:
        """``S = E[θθᵀ] = B* Σ* B*ᵀ``, ``(d, d)``."""
        return (self.B_star * self.sigma_diag) @ self.B_star.T

    @property
    def trace(self) -> float:
        """tr Σ*."""
        return float(self.sigma_diag.sum())

    def sample_thetas(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Regressors ``θ_i = B* w*_i`` of ``n`` new tasks, ``(n, d)``, in the sampling dtype."""
        z = torch.randn(n, self.k, generator=generator, dtype=self.dtype, device=self.B_star.device)
        return (z * self._scale_sample) @ self._B_sample.T

    def sample_data(
        self, thetas: torch.Tensor, m: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``m`` noisy samples for each regressor: ``X (n, m, d)``, ``y (n, m)``."""
        n, d = thetas.shape
        kw = dict(generator=generator, dtype=thetas.dtype, device=thetas.device)
        X = torch.randn(n, m, d, **kw)
        y = torch.bmm(X, thetas.unsqueeze(-1)).squeeze(-1)
        if self.sigma2 > 0:
            y = y + self.sigma2**0.5 * torch.randn(n, m, **kw)
        return X, y

    def sample(self, n: int, m_in: int, m_out: int, generator: torch.Generator) -> TaskBatch:
        """``n`` fresh tasks with ``m_in`` inner and ``m_out`` outer samples each."""
        X, y = self.sample_data(self.sample_thetas(n, generator), m_in + m_out, generator)
        split = (X[:, :m_in], y[:, :m_in], X[:, m_in:], y[:, m_in:])
        return TaskBatch(*(t.contiguous() for t in split))


def chunk_size(m: int, d: int, numbers: int) -> int:
    """Tasks per chunk so that a chunk of ``X (chunk, m, d)`` holds about ``numbers`` numbers."""
    return max(1, numbers // (m * d))


def split(batch: TaskBatch | GramBatch, chunk: int):
    """Consecutive slices (views) of at most ``chunk`` tasks."""
    for i in range(0, batch.num_tasks, chunk):
        yield type(batch)(*(t[i : i + chunk] for t in batch))


class TaskPool:
    """A fixed pool of N tasks (finite regime): every step sees all of them, or a random mini-batch.

    ``batches()`` yields the tasks of one step in one chunk when their temporaries fit in
    :data:`metarep.limits.ONE_CHUNK_BYTES`, else in chunks of :data:`~metarep.limits.POOL_CHUNK_NUMBERS`
    numbers (:func:`metarep.limits.pool_chunk`; the sizes ``metarep bench`` measures). ``layout`` picks
    what the steps read: ``"samples"`` (the pool as sampled), ``"dual"`` (:class:`DualBatch`), ``"gram"``
    (:class:`GramBatch`) or ``"merged"`` (:class:`MergedBatch`, the whole pool in one chunk: the
    baselines fit all tasks at once).
    """

    LAYOUTS = {
        "samples": lambda b: b,
        "dual": DualBatch.from_batch,
        "gram": GramBatch.from_batch,
        "merged": MergedBatch.from_batch,
    }

    def __init__(
        self,
        pool: TaskBatch,
        task_batch: int | None,
        generator: torch.Generator,
        chunk: int | None = None,
        layout: str = "samples",
    ):
        self.pool = pool
        self.task_batch = task_batch
        self.generator = generator
        m, d = pool.X_in.shape[1] + pool.X_out.shape[1], pool.X_in.shape[2]
        # what the steps read: the samples, the samples in two layouts, or per-task second moments
        self.steps_pool: TaskBatch | DualBatch | GramBatch = self.LAYOUTS[layout](pool)
        # the largest temporaries per task: a copy of the samples (m×d), a Gram pair (2d×d), or,
        # with both layouts, vectors of d numbers only
        rows = {"samples": m, "gram": 2 * d, "dual": 1, "merged": m}[layout]
        step = pool.num_tasks if task_batch is None else min(task_batch, pool.num_tasks)
        size = pool.X_in.element_size()
        self.chunk = chunk or (pool.num_tasks if layout == "merged" else pool_chunk(step, rows, d, size))

    @property
    def num_tasks(self) -> int:
        """N, the tasks in the pool."""
        return self.pool.num_tasks

    def batches(self):
        batch = self.steps_pool
        if self.task_batch is not None and self.task_batch < batch.num_tasks:
            idx = torch.randperm(batch.num_tasks, generator=self.generator, device=self.pool.X_in.device)
            batch = batch.select(idx[: self.task_batch])
        yield from split(batch, self.chunk)


class FreshTasks:
    """``n`` new tasks every step (fresh regime), generated in chunks of at most ``chunk`` tasks so
    that memory stays bounded however large ``n`` is."""

    def __init__(
        self, tasks: LinearRepTasks, n: int, m_in: int, m_out: int, generator: torch.Generator, chunk: int | None = None
    ):
        self.tasks, self.n, self.m_in, self.m_out, self.generator = tasks, n, m_in, m_out, generator
        self.chunk = chunk or chunk_size(m_in + m_out, tasks.d, FRESH_CHUNK_NUMBERS)  # part of the random stream

    def batches(self):
        done = 0
        while done < self.n:
            c = min(self.chunk, self.n - done)
            yield self.tasks.sample(c, self.m_in, self.m_out, self.generator)
            done += c
