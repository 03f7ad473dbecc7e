"""The estimators of :func:`metarep.evaluate.evaluate`: one small class per way of fitting a new task.

An :class:`Estimator` knows its ``name`` (the key of the results), its closed-form expected excess
risk ``E‖θ̂ − θ‖²`` for ``m`` samples (``nan`` where there is none, MATH.md §5.6), and how it fits a
chunk of new tasks: :meth:`Estimator.fit` returns ``θ̂ (n, d)`` and :meth:`Estimator.excess_risk`
the per-task ``‖θ̂ − θ‖²`` (``(n,)``), or, for a model that is not linear, the per-task excess risk
directly. The Monte-Carlo loop of :mod:`metarep.evaluate` calls only ``closed_form`` and ``excess_risk``.

| class | estimator | ``θ̂`` from ``X (n, m, d)``, ``y (n, m)`` |
|---|---|---|
| :class:`HeadSteps` | ``learned`` | ``B w_s``, ``s`` head steps from ``w`` |
| :class:`LimitHeadSteps` | ``limit`` | the same from ``(B_∞, 0)`` |
| :class:`ModelHeadSteps` | ``learned`` (any model) | ``s`` head steps of ``f``; risk on fresh inputs |
| :class:`SubspaceLS` | ``ls_span_B``, ``ls_top_k`` | ``U ŵ``, ``ŵ`` least squares on ``X U`` |
| :class:`Oracle` | ``oracle`` | the same with ``U = B*`` |
| :class:`Scratch` | ``scratch`` | least squares on ``X`` |

All least squares are min-norm when underdetermined. Everything is float64, batched over tasks.
:func:`default_estimators` builds the table of :mod:`metarep.evaluate` from a learned ``(B, w)``,
and :func:`limit_representation` the ``B_∞`` of the ``limit`` row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch.func import vmap

from . import engine, theory
from .methods._linear import adapt_head
from .tasks import LinearRepTasks

Forward = engine.Forward  # one task: (params, X (m, d)) -> (m,)


# --------------------------------------------------------------------------------------------
# batched building blocks


def orthonormal_span(B: torch.Tensor, rtol: float | None = None) -> torch.Tensor:
    """Orthonormal basis ``(d, r)`` of the column space of ``B``, ordered by singular value.

    ``r`` is the numerical rank: singular values above ``rtol · s_max`` (default
    ``max(d, k') · eps`` of ``B``'s dtype) count.
    """
    eps = torch.finfo(B.dtype).eps if B.dtype.is_floating_point else torch.finfo(torch.float64).eps
    rtol = max(B.shape) * eps if rtol is None else rtol
    U, s, _ = torch.linalg.svd(B.to(torch.float64), full_matrices=False)
    if s.numel() == 0 or float(s[0]) == 0.0:
        return U[:, :0]
    return U[:, : int((s > rtol * s[0]).sum())]


def min_norm_lstsq(Z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Least squares per task, min-norm when underdetermined: ``Z (n, m, r)``, ``y (n, m)`` -> ``(n, r)``.

    ``m ≥ r``: ``(ZᵀZ)⁻¹ Zᵀ y``; ``m < r``: ``Zᵀ (Z Zᵀ)⁻¹ y``; both by batched Cholesky on the
    smaller Gram matrix (Gaussian designs have full rank almost surely). Tasks whose Gram matrix is
    numerically singular or ill-conditioned are solved again by SVD (``gelsd``) or the pseudo-inverse.
    """
    n, m, r = Z.shape
    if r == 0:
        return Z.new_zeros(n, 0)
    if m >= r:
        L, info = torch.linalg.cholesky_ex(Z.mT @ Z)
        sol = torch.cholesky_solve(torch.bmm(y.unsqueeze(1), Z).mT, L).squeeze(-1)
    else:
        L, info = torch.linalg.cholesky_ex(Z @ Z.mT)
        sol = torch.bmm(Z.mT, torch.cholesky_solve(y.unsqueeze(-1), L)).squeeze(-1)
    # Cholesky succeeds on some numerically singular Gram matrices: also refuse a pivot ratio that
    # puts the Gram matrix's condition number above about 1e10 (relative error above about 1e-6).
    piv = torch.diagonal(L, dim1=-2, dim2=-1).abs()
    ill = (piv.min(-1).values / piv.max(-1).values.clamp_min(torch.finfo(piv.dtype).tiny)) ** 2 < 1e-10
    bad = (info > 0) | ill | ~torch.isfinite(sol).all(-1)
    if bool(bad.any()):
        Zb, yb = Z[bad], y[bad].unsqueeze(-1)
        if Z.device.type == "cpu":
            sol[bad] = torch.linalg.lstsq(Zb, yb, driver="gelsd").solution.squeeze(-1)
        else:
            sol[bad] = (torch.linalg.pinv(Zb) @ yb).squeeze(-1)
    return sol


def model_excess_risk(
    forward: Forward,
    params: dict[str, torch.Tensor],
    X: torch.Tensor,
    y: torch.Tensor,
    theta: torch.Tensor,
    X_test: torch.Tensor,
    alpha: float,
    steps: int,
    head: str = "w",
) -> torch.Tensor:
    """Any model: ``steps`` head steps per task, then the excess risk on fresh test inputs, ``(n,)``.

    ``forward(params, X (m, d)) -> (m,)`` is any functional model (``torch.func``); the inner loop of
    :func:`metarep.engine.adapt_batch` adapts ``params[head]`` on ``‖f(X) − y‖²/(2m)``
    (:func:`~metarep.engine.half_mse`) for every task of ``X (n, m, d)``, ``y (n, m)``. The excess
    risk of a task, ``E_x (f(x) − θᵀx)²``, is estimated on its ``X_test (n, t, d)``: an unbiased
    estimate, whose extra variance the standard error over tasks includes. ``theta (n, d)``.
    """
    sub, rest = engine.split(params, (head,))
    phi = engine.adapt_batch(forward, engine.half_mse, sub, rest, X, y, alpha, steps)  # {head: (n, ...)}

    def risk_one(s: dict[str, torch.Tensor], Xt: torch.Tensor, th: torch.Tensor) -> torch.Tensor:
        return ((forward({**rest, **s}, Xt) - Xt @ th) ** 2).mean()

    return vmap(risk_one)(phi, X_test, theta)


# --------------------------------------------------------------------------------------------
# new tasks


@dataclass(frozen=True, eq=False)
class NewTasks:
    """A chunk of ``n`` new tasks, seen through their first ``m`` samples.

    **Fields:** ``theta (n, d)``; ``X_all (n, m_max, d)``, ``y_all (n, m_max)``: every sample drawn;
    ``X_test (n, t, d)``: fresh inputs for models whose risk is not ``‖θ̂ − θ‖²`` (or ``None``);
    ``m``: how many samples the estimators see (default all).
    """

    theta: torch.Tensor
    X_all: torch.Tensor
    y_all: torch.Tensor
    X_test: torch.Tensor | None = None
    m: int | None = None
    _proj: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)

    def first(self, m: int) -> NewTasks:
        """The same tasks through their first ``m`` samples (sharing the projections)."""
        return replace(self, m=m)

    @property
    def X(self) -> torch.Tensor:
        """``(n, m, d)``."""
        return self.X_all[:, : self.m]

    @property
    def y(self) -> torch.Tensor:
        """``(n, m)``."""
        return self.y_all[:, : self.m]

    def project(self, V: torch.Tensor) -> torch.Tensor:
        """``X V`` ``(n, m, r)`` for ``V (d, r)``: ``X_all V`` is formed once per chunk and basis."""
        hit = self._proj.get(id(V))
        if hit is None or hit[0] is not V:
            hit = self._proj[id(V)] = (V, self.X_all @ V)
        return hit[1][:, : self.m]


# --------------------------------------------------------------------------------------------
# the interface


class Estimator:
    """An estimator of ``θ`` on new tasks.

    Subclasses set ``name`` and implement :meth:`fit`, and :meth:`closed_form` where the expected
    excess risk is known; a model whose risk is not ``‖θ̂ − θ‖²`` overrides :meth:`excess_risk`.
    """

    name: str = ""
    test_inputs: bool = False  # whether excess_risk reads NewTasks.X_test

    def closed_form(self, m: int) -> float:
        """``E‖θ̂ − θ‖²`` over tasks, inputs and noise with ``m`` samples; ``nan`` where unknown or infinite."""
        return math.nan

    def fit(self, tasks: NewTasks) -> torch.Tensor:
        """``θ̂ (n, d)`` of every task from its ``tasks.X (n, m, d)``, ``tasks.y (n, m)``.

        Every estimator defines it, except one that measures its risk directly by overriding
        :meth:`excess_risk` (a non-linear model has no ``θ̂``)."""
        raise NotImplementedError(f"{type(self).__name__} defines neither fit nor excess_risk")

    def excess_risk(self, tasks: NewTasks) -> torch.Tensor:
        """Per-task excess risk ``‖θ̂ − θ‖²``, ``(n,)``."""
        return ((self.fit(tasks) - tasks.theta) ** 2).sum(-1)


class HeadSteps(Estimator):
    """``learned``: ``steps`` gradient steps of size ``α`` on the head from ``w``, ``B`` fixed (MATH.md §3).

    Per task ``w ← w − α Bᵀ Xᵀ(X B w − y)/m``, then ``θ̂ = B w``. For one step, with ``M = α B Bᵀ``,
    ``u = B w`` and ``V = S + u uᵀ`` (:func:`~metarep.theory.one_step_risk`, MATH.md §5.6)::

        E‖θ̂ − θ‖² = tr V − 2 tr(M V) + (1 + 1/m) tr(M² V) + tr(M²) (tr V + σ²) / m

    and ``nan`` for ``steps > 1``.

    **Arguments:** ``B (d, k')`` and ``w (k',)`` float64 (``w = None``: head at 0, and the closed
    form at ``u = None``); ``alpha``, ``steps ≥ 1``; ``tasks``: the ground truth (``S``, tr Σ*, σ²).
    """

    name = "learned"

    def __init__(
        self, B: torch.Tensor, w: torch.Tensor | None, alpha: float, steps: int, tasks: LinearRepTasks
    ) -> None:
        self.B, self.w, self.alpha, self.steps, self.tasks = B, w, alpha, steps, tasks
        self._head = B.new_zeros(B.shape[1]) if w is None else w

    def closed_form(self, m: int) -> float:
        if self.steps != 1:
            return math.nan
        t, B = self.tasks, self.B
        u = None if self.w is None else B @ self.w
        return theory.one_step_risk(self.alpha * B @ B.T, t.S, t.trace, t.sigma2, m, u)

    def fit(self, tasks: NewTasks) -> torch.Tensor:
        return adapt_head(self.B, self._head, tasks.X, tasks.y, self.alpha, self.steps) @ self.B.T


class LimitHeadSteps(HeadSteps):
    """``limit``: :class:`HeadSteps` from the FO-ANIL limit ``(B_∞, 0)`` (MATH.md §5.3, §5.6).

    ``B_∞ B_∞ᵀ = α⁻¹ B* diag(γ) B*ᵀ`` (:func:`limit_representation`); one step gives
    ``θ̂ = M_∞ Xᵀ y / m`` and ``E‖θ̂ − θ‖² = tr(M_∞²[(1 + 1/m)S + ((tr Σ* + σ²)/m) I]) − 2 tr(M_∞ S) + tr Σ*``.
    """

    name = "limit"

    def __init__(self, B_limit: torch.Tensor, alpha: float, steps: int, tasks: LinearRepTasks) -> None:
        super().__init__(B_limit.detach().to(torch.float64), None, alpha, steps, tasks)


class ModelHeadSteps(Estimator):
    """``learned`` for any functional model ``f``: ``steps`` head steps, risk ``E_x (f(x) − θᵀx)²``.

    The risk of each task is estimated on its fresh test inputs by :func:`model_excess_risk`; there
    is no ``θ̂`` and no closed form.

    **Arguments:** ``forward(params, X (m, d)) -> (m,)``; ``params`` float64 with the head
    ``params[head]``; ``alpha``, ``steps ≥ 1``.
    """

    name = "learned"
    test_inputs = True

    def __init__(
        self, forward: Forward, params: dict[str, torch.Tensor], alpha: float, steps: int, head: str = "w"
    ) -> None:
        self.forward, self.params, self.alpha, self.steps, self.head = forward, params, alpha, steps, head

    def excess_risk(self, tasks: NewTasks) -> torch.Tensor:
        if tasks.X_test is None:
            raise ValueError("ModelHeadSteps needs test inputs (NewTasks.X_test)")
        return model_excess_risk(
            self.forward, self.params, tasks.X, tasks.y, tasks.theta, tasks.X_test, self.alpha, self.steps, self.head
        )


class SubspaceLS(Estimator):
    """Least squares on a fixed subspace: ``θ̂ = U ŵ``, ``ŵ`` the min-norm fit of ``y`` on ``X U``.

    With ``U (d, r)`` orthonormal, ``P = U Uᵀ`` and ``ρ = tr S − tr PS`` (the part of θ outside the
    subspace, acting as extra noise; :func:`~metarep.theory.subspace_ls_risk`)::

        m > r + 1:  ρ + (ρ + σ²) r / (m − r − 1)
        m < r − 1:  tr(PS) (1 − m/r) + ρ + (ρ + σ²) m / (r − m − 1)

    ``nan`` between, and ``tr S`` (``θ̂ = 0``) when ``r = 0``. ``ls_span_B`` takes the column space of
    ``B``, ``ls_top_k`` its top-``k`` left singular directions (:func:`orthonormal_span`).
    """

    def __init__(self, name: str, U: torch.Tensor, tasks: LinearRepTasks) -> None:
        self.name, self.U, self.tasks = name, U, tasks

    def closed_form(self, m: int) -> float:
        t, U = self.tasks, self.U
        tr_PS = float(((U.T @ t.B_star) ** 2 * t.sigma_diag).sum())
        return theory.subspace_ls_risk(U.shape[1], tr_PS, t.trace, t.sigma2, m)

    def fit(self, tasks: NewTasks) -> torch.Tensor:
        if self.U.shape[1] == 0:
            return torch.zeros_like(tasks.theta)
        return min_norm_lstsq(tasks.project(self.U), tasks.y) @ self.U.T


class Oracle(SubspaceLS):
    """``oracle``: :class:`SubspaceLS` on the true ``span(B*)`` (MATH.md §3, §5.6), ``ρ = 0``::

    σ² k / (m − k − 1) for m > k + 1;  tr Σ* (1 − m/k) + σ² m / (k − m − 1) for m < k − 1 (min-norm).
    """

    def __init__(self, tasks: LinearRepTasks) -> None:
        super().__init__("oracle", tasks.B_star, tasks)

    def closed_form(self, m: int) -> float:
        return theory.oracle_risk(self.tasks.k, self.tasks.trace, self.tasks.sigma2, m)


class Scratch(Estimator):
    """``scratch``: least squares in ``R^d`` on the new task alone (min-norm when ``m < d``; MATH.md §5.6)::

    σ² d / (m − d − 1) for m > d + 1;  tr Σ* (1 − m/d) + σ² m / (d − m − 1) for m < d − 1.
    """

    name = "scratch"

    def __init__(self, tasks: LinearRepTasks) -> None:
        self.tasks = tasks

    def closed_form(self, m: int) -> float:
        return theory.scratch_risk(self.tasks.d, self.tasks.trace, self.tasks.sigma2, m)

    def fit(self, tasks: NewTasks) -> torch.Tensor:
        return min_norm_lstsq(tasks.X, tasks.y)


# --------------------------------------------------------------------------------------------
# the estimators of metarep.evaluate's table


def limit_representation(
    B_star: torch.Tensor, sigma_diag: torch.Tensor, sigma2: float, alpha: float, m_in: int, width: int
) -> torch.Tensor:
    """A ``B_∞ (d, k)`` with ``B_∞ B_∞ᵀ = α⁻¹ B* diag(γ) B*ᵀ`` (MATH.md §5.3; kept directions only)."""
    g = theory.limit_gamma(sigma_diag, sigma2, m_in, width)
    return B_star.to(torch.float64) * (g / alpha).sqrt()


def default_estimators(
    B: torch.Tensor,
    w: torch.Tensor,
    tasks: LinearRepTasks,
    *,
    alpha: float,
    steps: int,
    U: torch.Tensor,
    top_k: int,
    B_limit: torch.Tensor | None = None,
    forward: Forward | None = None,
    params: dict[str, torch.Tensor] | None = None,
) -> list[Estimator]:
    """The estimators of :mod:`metarep.evaluate`'s table in the order of its ``ESTIMATORS`` (``limit``
    only with ``B_limit``).

    ``B (d, k')``, ``w (k',)`` float64; ``U (d, r)``: the orthonormal span of ``B``, of which
    ``ls_top_k`` keeps the first ``top_k`` columns. ``forward``, ``params``: see :func:`metarep.evaluate.evaluate`.
    """
    if forward is None:
        learned: Estimator = HeadSteps(B, w, alpha, steps, tasks)
    else:
        p = {k: v.detach().to(torch.float64) for k, v in (params or {}).items()}
        learned = ModelHeadSteps(forward, {**p, "B": B, "w": w}, alpha, steps)
    limit = [] if B_limit is None else [LimitHeadSteps(B_limit, alpha, steps, tasks)]
    return [
        learned,
        *limit,
        Oracle(tasks),
        Scratch(tasks),
        SubspaceLS("ls_span_B", U, tasks),
        SubspaceLS("ls_top_k", U[:, :top_k], tasks),
    ]
