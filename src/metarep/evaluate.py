"""Test-time adaptation on new tasks, next to the theory, the oracle and scratch (MATH.md §3, §5.6).

What a learned representation is worth is measured on tasks never seen in training: start the head
at the learned ``w`` (``B`` fixed), take ``steps`` gradient steps of size α on
``‖X B w − y‖² / (2m)`` with the ``m`` samples of the new task, and measure the excess risk
``‖θ̂ − θ‖²`` of ``θ̂ = B w_adapted``. On the same new tasks, the estimators compared are:

| key | estimator | closed form |
|---|---|---|
| ``learned`` | the run's ``(B, w)``, ``steps`` head steps | :func:`~metarep.theory.one_step_risk` (1 step) |
| ``limit`` | the FO-ANIL limit ``B_∞ = B* diag(√(γ/α))`` of the run's config, head at 0 | same, at ``M_∞`` |
| ``oracle`` | least squares on ``span(B*)`` (min-norm when ``m < k``) | :func:`~metarep.theory.oracle_risk` |
| ``scratch`` | least squares in ``R^d`` (min-norm when ``m < d``) | :func:`~metarep.theory.scratch_risk` |
| ``ls_span_B`` | least squares on the column space of ``B`` (rank ``r``) | :func:`~metarep.theory.subspace_ls_risk` |
| ``ls_top_k`` | least squares on the top-``k`` left singular directions of ``B`` | same |

Each gets a Monte-Carlo mean of ``‖θ̂ − θ‖²`` over ``n_tasks`` new tasks with its standard error,
and a closed form where one exists (``nan``, written ``null``, where the expectation is infinite,
e.g. least squares with ``m`` within one of the dimension, or for ``steps > 1``). Everything is
computed in float64, batched over tasks (no Python loop over tasks), in chunks of bounded memory.
For every ``m`` the tasks are the same; the first ``m`` samples of each task are used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import theory
from .files import write_csv, write_json
from .tasks import LinearRepTasks

ESTIMATORS = ("learned", "limit", "oracle", "scratch", "ls_span_B", "ls_top_k")


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


def subspace_fit(U: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``θ̂ = U ŵ`` with ``ŵ`` the min-norm least-squares fit of ``y`` on ``X U``; ``(n, d)``."""
    if U.shape[1] == 0:
        return X.new_zeros(X.shape[0], X.shape[2])
    return min_norm_lstsq(X @ U, y) @ U.T


def adapt_heads(
    B: torch.Tensor, w: torch.Tensor, X: torch.Tensor, y: torch.Tensor, alpha: float, steps: int
) -> torch.Tensor:
    """``steps`` gradient steps on the head from ``w``: ``w ← w − α Bᵀ Xᵀ(X B w − y)/m`` per task.

    ``B (d, k')``, ``w (k',)``, ``X (n, m, d)``, ``y (n, m)``; returns the adapted heads ``(n, k')``.
    ``X B`` is never formed: ``u = B w`` per task, then matrix–vector products.
    """
    n, m, _ = X.shape
    W = w.expand(n, -1)
    for _ in range(steps):
        r = torch.bmm(X, (W @ B.T).unsqueeze(-1)).squeeze(-1) - y  # X u − y
        g = torch.bmm(r.unsqueeze(1), X).squeeze(1) / m  # Xᵀ(X u − y)/m
        W = W - alpha * (g @ B)
    return W


def model_excess_risk(
    forward: Callable[[dict, torch.Tensor], torch.Tensor],
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

    ``forward(params, X (m, d)) -> (m,)`` is any functional model (``torch.func``); the inner loop
    adapts ``params[head]`` on ``‖f(X) − y‖²/(2m)`` (``vmap`` over tasks of ``grad``). The excess
    risk of a task, ``E_x (f(x) − θᵀx)²``, is estimated on its ``X_test (n, t, d)``: an unbiased
    estimate, whose extra variance the standard error over tasks includes.
    """
    from torch.func import grad, vmap

    from .models import squared_loss

    fixed = {k: v for k, v in params.items() if k != head}

    def loss(w, Xi, yi):
        return squared_loss(forward({**fixed, head: w}, Xi), yi)

    def adapt_one(Xi, yi):
        w = params[head]
        for _ in range(steps):
            w = w - alpha * grad(loss)(w, Xi, yi)
        return w

    def risk_one(Xi, yi, thi, Xt):
        w = adapt_one(Xi, yi)
        return ((forward({**fixed, head: w}, Xt) - Xt @ thi) ** 2).mean()

    return vmap(risk_one)(X, y, theta, X_test)


def _mean_se(x: torch.Tensor) -> tuple[float, float]:
    n = x.numel()
    mean = float(x.mean())
    se = float(x.std(unbiased=True) / math.sqrt(n)) if n > 1 else math.nan
    return mean, se


# --------------------------------------------------------------------------------------------
# evaluation


def evaluate(
    B: torch.Tensor,
    w: torch.Tensor | None,
    tasks: LinearRepTasks,
    *,
    alpha: float,
    m_test: Sequence[int],
    steps: int = 1,
    n_tasks: int = 2000,
    generator: torch.Generator,
    B_limit: torch.Tensor | None = None,
    top_k: int | None = None,
    rank_rtol: float | None = None,
    forward: Callable[[dict, torch.Tensor], torch.Tensor] | None = None,
    params: dict[str, torch.Tensor] | None = None,
    test_points: int = 100,
    progress: bool | None = None,
    chunk: int | None = None,
) -> dict[str, object]:
    """Excess risk of every estimator of the module table on ``n_tasks`` new tasks, for each ``m``.

    **Arguments:**

    - ``B (d, k')``, ``w (k',)``: the learned initialisation (``w = None``: head at 0).
    - ``tasks``: the ground truth the new tasks are drawn from.
    - ``alpha``: head step size; ``steps``: number of head steps (≥ 1).
    - ``m_test``: sample sizes ``m ≥ 1``; ``n_tasks ≥ 2`` new tasks, shared by every ``m``.
    - ``B_limit (d, k)``: the theory's limit for the ``limit`` estimator (omitted when ``None``).
    - ``top_k``: directions kept by ``ls_top_k`` (default ``tasks.k``).
    - ``rank_rtol``: relative tolerance of the numerical rank of ``B`` (see :func:`orthonormal_span`).
    - ``forward``, ``params``: a model other than ``xᵀBw`` (e.g. a ReLU net whose first layer is
      ``B`` and head ``params["w"]``): ``learned`` is then estimated by :func:`model_excess_risk`
      on ``test_points`` fresh inputs per task, without a closed form. ``None``: the linear model,
      whose risk ``‖Bw − θ‖²`` is exact per task.

    Returns ``{"m_test", "n_tasks", "steps", "alpha", "rank_B", "top_k", "estimators"}`` where
    ``estimators[name] = {"closed_form": [...], "mc_mean": [...], "mc_se": [...]}`` (lists aligned
    with ``m_test``, ``nan`` where there is no closed form).
    """
    m_test = [int(m) for m in m_test]
    if not m_test or min(m_test) < 1:
        raise ValueError("m_test: sample sizes must be integers >= 1")
    if steps < 1:
        raise ValueError("steps: must be >= 1")
    if n_tasks < 2:
        raise ValueError("n_tasks: must be >= 2 (a standard error needs two tasks)")
    f64 = torch.float64
    U = orthonormal_span(B, rank_rtol)  # from B in its own dtype (numerical rank)
    B = B.detach().to(f64)
    U = U.to(B.device)
    w = B.new_zeros(B.shape[1]) if w is None else w.detach().to(B)
    k = tasks.k if top_k is None else int(top_k)
    Uk = U[:, :k]
    Bs, S, tr_S, s2 = tasks.B_star, tasks.S, tasks.trace, tasks.sigma2
    d = tasks.d
    sampler = LinearRepTasks(Bs, tasks.sigma_diag, s2, f64)

    bases = {"oracle": Bs, "scratch": None, "ls_span_B": U, "ls_top_k": Uk}
    names = [n for n in ESTIMATORS if n != "limit" or B_limit is not None]

    # closed forms
    def tr_PS(V: torch.Tensor) -> float:
        return float(((V.T @ Bs) ** 2 * tasks.sigma_diag).sum())

    Bl = None if B_limit is None else B_limit.detach().to(f64)
    closed: dict[str, list[float]] = {n: [] for n in names}
    for m in m_test:
        one = steps == 1
        linear = forward is None
        closed["learned"].append(
            theory.one_step_risk(alpha * B @ B.T, S, tr_S, s2, m, B @ w) if one and linear else math.nan
        )
        if Bl is not None:
            closed["limit"].append(theory.one_step_risk(alpha * Bl @ Bl.T, S, tr_S, s2, m) if one else math.nan)
        closed["oracle"].append(theory.oracle_risk(tasks.k, tr_S, s2, m))
        closed["scratch"].append(theory.scratch_risk(d, tr_S, s2, m))
        closed["ls_span_B"].append(theory.subspace_ls_risk(U.shape[1], tr_PS(U), tr_S, s2, m))
        closed["ls_top_k"].append(theory.subspace_ls_risk(Uk.shape[1], tr_PS(Uk), tr_S, s2, m))

    # Monte-Carlo, chunk by chunk of tasks: about 2^22 numbers of X per chunk
    m_max = max(m_test)
    chunk = chunk or max(1, 2**22 // ((m_max + (0 if forward is None else test_points)) * d))
    # test inputs of the generic path come from their own stream, so the tasks do not depend on the path
    test_gen = torch.Generator(device=generator.device)
    test_gen.manual_seed(int(torch.randint(2**62, (1,), generator=generator, device=generator.device)))
    if forward is not None:
        params = {k: v.detach().to(f64) for k, v in (params or {}).items()}
        params.update({"B": B, "w": w})
    errs: dict[str, list[list[torch.Tensor]]] = {n: [[] for _ in m_test] for n in names}
    bar = tqdm(total=n_tasks, disable=(not progress) if progress is not None else None, unit="task", leave=False)
    done = 0
    while done < n_tasks:
        c = min(chunk, n_tasks - done)
        theta = sampler.sample_thetas(c, generator)
        X_all, y_all = sampler.sample_data(theta, m_max, generator)
        proj = {name: X_all @ V for name, V in bases.items() if V is not None}  # X U once, sliced per m
        X_test = None
        if forward is not None:
            X_test = torch.randn(c, test_points, d, generator=test_gen, dtype=f64, device=theta.device)
        for i, m in enumerate(m_test):
            X, y = X_all[:, :m], y_all[:, :m]
            est = {}
            if forward is None:
                est["learned"] = adapt_heads(B, w, X, y, alpha, steps) @ B.T
            else:
                errs["learned"][i].append(model_excess_risk(forward, params, X, y, theta, X_test, alpha, steps))
            if B_limit is not None:
                est["limit"] = adapt_heads(Bl, Bl.new_zeros(Bl.shape[1]), X, y, alpha, steps) @ Bl.T
            for name, V in bases.items():
                if V is None:
                    est[name] = min_norm_lstsq(X, y)
                elif V.shape[1] == 0:
                    est[name] = torch.zeros_like(theta)
                else:
                    est[name] = min_norm_lstsq(proj[name][:, :m], y) @ V.T
            for name in est:
                errs[name][i].append(((est[name] - theta) ** 2).sum(-1))
        done += c
        bar.update(c)
    bar.close()

    out: dict[str, dict[str, list[float]]] = {}
    for name in names:
        stats = [_mean_se(torch.cat(e)) for e in errs[name]]
        out[name] = {
            "closed_form": closed[name],
            "mc_mean": [s[0] for s in stats],
            "mc_se": [s[1] for s in stats],
        }
    return {
        "m_test": m_test,
        "n_tasks": n_tasks,
        "steps": steps,
        "alpha": alpha,
        "rank_B": int(U.shape[1]),
        "top_k": int(Uk.shape[1]),
        "estimators": out,
    }


def limit_representation(
    B_star: torch.Tensor, sigma_diag: torch.Tensor, sigma2: float, alpha: float, m_in: int, width: int
) -> torch.Tensor:
    """A ``B_∞ (d, k)`` with ``B_∞ B_∞ᵀ = α⁻¹ B* diag(γ) B*ᵀ`` (MATH.md §5.3; kept directions only)."""
    g = theory.limit_gamma(sigma_diag, sigma2, m_in, width)
    return B_star.to(torch.float64) * (g / alpha).sqrt()


def eval_seed(run_seed: int, seed: int) -> int:
    """Seed of the new tasks, independent of the run's own streams (truth, init, data)."""
    return int(np.random.SeedSequence([0x65_76_61_6C, run_seed, seed]).generate_state(1, dtype=np.uint64)[0] >> 1)


def evaluate_run(
    run,
    *,
    m_test: Sequence[int] = theory.DEFAULT_M_TEST,
    steps: int = 1,
    n_tasks: int = 2000,
    alpha: float | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> dict[str, object]:
    """:func:`evaluate` on a finished run (a :class:`~metarep.outputs.LoadedRun`), with provenance.

    The head step is the run's α unless ``alpha`` is given. A run with one head per task
    (multitask) is adapted from a zero head. The ``limit`` estimator is the FO-ANIL limit of the
    run's config (its α, ``m_in`` and width).
    """
    cfg, tasks = run.config, run.tasks
    B, w = run.params[0], run.params[1]
    a = cfg.method.alpha if alpha is None else float(alpha)
    head = "run"
    if w is None or w.dim() != 1 or w.shape[0] != B.shape[1]:
        w, head = None, "zero (the run has no single head)"
    kind = getattr(cfg.model, "kind", "linear")
    forward = extra = None
    if kind != "linear":
        from . import models
        from .config import ConfigError

        forward = models.FORWARDS[kind]
        extra = {k: v for k, v in run.params._asdict().items() if k not in ("B", "w")}
        try:  # the run folder must hold every parameter of the model
            forward({"B": B, "w": B.new_zeros(B.shape[1]), **extra}, B.new_zeros(1, B.shape[0]))
        except (KeyError, RuntimeError) as e:
            raise ConfigError(f"model.kind: the run's parameters do not fit a {kind!r} model ({e})") from None
    B_lim = limit_representation(
        tasks.B_star, tasks.sigma_diag, tasks.sigma2, cfg.method.alpha, cfg.data.m_in, cfg.width
    )
    g = torch.Generator().manual_seed(eval_seed(cfg.run.seed, seed))
    res = evaluate(
        B,
        w,
        tasks,
        alpha=a,
        m_test=m_test,
        steps=steps,
        n_tasks=n_tasks,
        generator=g,
        B_limit=B_lim,
        forward=forward,
        params=extra,
        progress=progress,
    )
    notes = []
    if steps > 1:
        v = theory.inner_step_value(a, B, min(res["m_test"]))
        if v >= 2:
            notes.append(
                f"alpha*|B|^2*(1+sqrt(r/m))^2 = {v:.3g} >= 2 at m = {min(res['m_test'])}: "
                f"{steps} head steps may be unstable; lower --alpha"
            )
    return {
        "method": cfg.method.name,
        "model": kind,
        "d": cfg.task.d,
        "k": cfg.task.k,
        "width": cfg.width,
        "sigma2": cfg.task.sigma2,
        "m_in": cfg.data.m_in,
        "run_alpha": cfg.method.alpha,
        "head": head,
        "seed": seed,
        **res,
        "warnings": notes,
    }


LABELS = {
    "learned": "{method} ({steps} head step{s})",
    "limit": "FO-ANIL limit (theory)",
    "oracle": "oracle (LS on B*)",
    "scratch": "scratch (LS in R^d)",
    "ls_span_B": "LS on span(B) (r={rank_B})",
    "ls_top_k": "LS on top-{top_k} of B",
}


def label(result: dict, name: str) -> str:
    """Human-readable name of estimator ``name`` in ``result``."""
    if name == "ls_span_B" and result["rank_B"] == result.get("d"):
        return f"LS on span(B) (r={result['rank_B']} = d: scratch)"
    method = result.get("method", "learned")
    if result.get("model", "linear") != "linear":
        method = f"{method}, {result['model']}"
    return LABELS[name].format(
        method=method,
        steps=result["steps"],
        s="" if result["steps"] == 1 else "s",
        rank_B=result["rank_B"],
        top_k=result["top_k"],
    )


def _json_num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def to_json(result: dict) -> dict:
    """``result`` with ``nan``/``inf`` replaced by ``None`` (strict JSON)."""
    est = {
        name: {key: [_json_num(v) for v in vals] for key, vals in e.items()} for name, e in result["estimators"].items()
    }
    return {**result, "estimators": est}


def rows(result: dict) -> list[dict[str, object]]:
    """Tidy rows ``m, estimator, closed_form, mc_mean, mc_se, n_tasks`` (empty closed form where none)."""
    out = []
    for name, e in result["estimators"].items():
        for i, m in enumerate(result["m_test"]):
            cf = e["closed_form"][i]
            out.append(
                {
                    "m": m,
                    "estimator": name,
                    "closed_form": "" if not math.isfinite(cf) else cf,
                    "mc_mean": e["mc_mean"][i],
                    "mc_se": e["mc_se"][i],
                    "n_tasks": result["n_tasks"],
                }
            )
    return out


def save_evaluation(result: dict, out_dir: str | Path, title: str = "") -> dict[str, Path]:
    """Write ``evaluation.json``, ``evaluation.csv`` and ``evaluation.png`` into ``out_dir`` (atomic)."""
    from .plots import plot_risk

    out = Path(out_dir)
    paths = {"json": out / "evaluation.json", "csv": out / "evaluation.csv", "png": out / "evaluation.png"}
    write_json(paths["json"], to_json(result))
    write_csv(paths["csv"], rows(result))
    plot_risk(result, {name: label(result, name) for name in result["estimators"]}, title, paths["png"])
    return paths


def format_table(result: dict) -> str:
    """Plain-text table: one row per estimator, one column per ``m``; ``MC ± SE [closed form]``."""
    ms = result["m_test"]
    names = list(result["estimators"])
    labels = {n: label(result, n) for n in names}
    cells = {}
    for n in names:
        e = result["estimators"][n]
        row = []
        for i in range(len(ms)):
            cf = e["closed_form"][i]
            closed = f" [{cf:.4g}]" if math.isfinite(cf) else " [-]"
            row.append(f"{e['mc_mean'][i]:.4g} ± {e['mc_se'][i]:.2g}" + closed)
        cells[n] = row
    lw = max(len(v) for v in labels.values()) + 2
    cw = [max(len(f"m={m}"), *(len(cells[n][i]) for n in names)) + 2 for i, m in enumerate(ms)]
    lines = ["".ljust(lw) + "".join(f"m={m}".rjust(w) for m, w in zip(ms, cw))]
    for n in names:
        lines.append(labels[n].ljust(lw) + "".join(c.rjust(w) for c, w in zip(cells[n], cw)))
    return "\n".join(lines)
