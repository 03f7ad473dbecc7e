"""Many runs as one program: the infinite-task runs of one setting trained together on stacked tensors.

Runs whose configs differ only in ``run.seed``, ``method.alpha``, ``method.beta`` and ``data.m_in`` (the
infinite-task update reads ``m_in`` as a scalar) have identically shaped states ``B (d, k')``, ``w (k',)``.
:func:`train_batch` stacks them on a leading run axis (``B (R, d, k')``, ``S (R, d, d)``, per-run scalars
``(R, 1, 1)``) and makes each step of all of them with one batched evaluation of the method's exact
expected gradient (:data:`EXPECTED`) and of the outer SGD step, on ``run.device`` (CPU or CUDA).

Each run keeps what it has alone: its own ground truth, initialisation and seeds (:func:`metarep.train.build`),
its history rows and summary (computed from its own slice of the stack, as alone), its divergence (a run
whose parameters leave the finite range is marked ``diverged`` at that step with its last finite state, and
removed from the stack; the others go on), its checkpoints (the same bytes format, one per run, every
``run.checkpoint_every`` steps and on interrupt) and resume from them.

Tolerance: the batched products (``bmm``, reductions over a run axis) round differently from the lone
run's ``mm``/``dot``, so results equal the lone run's to float rounding, not to the byte: within
``rtol=1e-4`` in float32 and ``1e-10`` in float64 over the runs the tests make (the dynamics contract to a
fixed point, so per-step rounding does not grow). The same batch gives the same bytes every time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from .checkpoint import Checkpoint, to_bytes
from .config import Config, as_config
from .limits import check_run, step_batch_numbers
from .methods import TrainState, get
from .methods.anil import second_order_expected_grad
from .methods.fo_anil import fo_anil_expected_grad
from .methods.fo_maml import fo_maml_expected_grad
from .metrics import representation_metrics_batch
from .models import LinearParams
from .progress import progress_bar
from .runtime import threads_for
from .train import BLOWUP, RunResult, _advice, _metrics_row, _resume, _summary, build

Scalars = dict[str, torch.Tensor]  # per-run scalars, each (R, 1, 1)


def _fo_anil(B: torch.Tensor, w: torch.Tensor, S: torch.Tensor, c: Scalars) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~metarep.methods.fo_anil.fo_anil_expected_grad` on stacked runs."""
    a = c["alpha"]
    u = (B @ w.unsqueeze(-1)).squeeze(-1)  # (R, d)
    VB = u.unsqueeze(-1) * (u.unsqueeze(1) @ B) + S @ B  # u (uᵀB) + S B
    tr_V = (u * u).sum(-1)[:, None, None] + c["trace"]
    Pu = B @ (B.mT @ u.unsqueeze(-1))  # (R, d, 1)
    inner = c["one_m"] * VB + ((tr_V + c["sigma2"]) / c["m_in"]) * B
    wt = w.unsqueeze(1)  # (R, 1, k')
    grad_B = u.unsqueeze(-1) * wt - a * VB - a * (Pu * wt) + c["alpha2"] * (B @ (B.mT @ inner))
    grad_w = (B.mT @ (u.unsqueeze(-1) - a * Pu)).squeeze(-1)
    return grad_B, grad_w


def _second_order(B: torch.Tensor, w: torch.Tensor, S: torch.Tensor, c: Scalars) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~metarep.methods.anil.second_order_expected_grad` (ANIL, MAML at ``w = 0``) on stacked runs."""
    a = c["alpha"]
    SB = S @ B
    GB = c["one_m"] * SB + c["b"] * B
    MGB = (a * B) @ (B.mT @ GB)
    GMB = (a * GB) @ (B.mT @ B)
    return a * (MGB + GMB - 2 * SB), torch.zeros_like(w)


# method name -> (the lone run's expected gradient it reproduces, its stacked form, needs a zero head)
EXPECTED: dict[str, tuple[Callable, Callable, bool]] = {
    "fo_anil": (fo_anil_expected_grad, _fo_anil, False),
    "fo_maml": (fo_maml_expected_grad, _fo_anil, True),
    "anil": (second_order_expected_grad, _second_order, True),
    "maml": (second_order_expected_grad, _second_order, True),
}
VARYING = (("run", "seed"), ("method", "alpha"), ("method", "beta"), ("data", "m_in"))  # may differ in a batch


def batchable(cfg: Config) -> bool:
    """Whether ``cfg`` can train in a batch: the infinite-task regime, the linear model, one inner step,
    and a method of :data:`EXPECTED` whose registered update is still the one batched here."""
    entry = EXPECTED.get(cfg.method.name)
    return (
        entry is not None
        and cfg.infinite
        and cfg.model.kind == "linear"
        and cfg.method.inner_steps == 1
        and get(cfg.method.name).expected_grad is entry[0]
    )


def batch_key(cfg: Config) -> str | None:
    """What runs batched together share (the config but :data:`VARYING`); None when not :func:`batchable`."""
    import json

    if not batchable(cfg):
        return None
    d = cfg.to_dict()
    for section, key in VARYING:
        d[section].pop(key, None)
    return json.dumps(d, sort_keys=True)


def _scalars(cfgs: Sequence[Config], tasks: Sequence, like: torch.Tensor) -> Scalars:
    """Per-run scalars as the lone run forms them (in float64 Python, then one rounding to the dtype)."""

    def col(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float64).to(like).view(-1, 1, 1)

    me = [c.method for c in cfgs]
    m = [c.data.m_in for c in cfgs]
    return {
        "alpha": col([x.alpha for x in me]),
        "alpha2": col([x.alpha**2 for x in me]),
        "beta": col([x.beta for x in me]),
        "m_in": col(m),
        "one_m": col([1 + 1 / mi for mi in m]),
        "trace": col([t.trace for t in tasks]),
        "sigma2": col([t.sigma2 for t in tasks]),
        "b": col([(t.trace + t.sigma2) / mi for t, mi in zip(tasks, m)]),
    }


def _take(c: Scalars, keep: torch.Tensor) -> Scalars:
    return {k: v[keep] for k, v in c.items()}


class _Run:
    """One member of the batch: its config, ground truth, history, checkpoint writer and outcome."""

    def __init__(self, cfg: Config, write: Callable[[bytes], None] | None, resume: Checkpoint | None):
        self.cfg = cfg
        self.tasks, state, _, source, self.seeds = build(cfg)
        self.history: list[dict] = []  # its step-0 row: made for all runs at once (_rows)
        self.start = 0
        if resume is not None:
            state, self.history, self.start = _resume(cfg, resume, state, source)
        self.params: LinearParams = state.params
        self.write, self.every = write, (cfg.run.checkpoint_every if write is not None else 0)
        self.status, self.message, self.done, self.saved = "complete", "", self.start, self.start

    def checkpoint(self, step: int) -> None:
        if self.every and self.saved != step:
            self.write(to_bytes(TrainState(self.params, None), step, self.history, self.cfg.to_dict(), None))
            self.saved = step


def train_batch(
    cfgs: Sequence[Config | str],
    *,
    progress: bool | None = False,
    checkpoints: Sequence[Callable[[bytes], None] | None] | None = None,
    resumes: Sequence[Checkpoint | None] | None = None,
) -> list[RunResult]:
    """Train the runs ``cfgs`` (all :func:`batchable`, one :func:`batch_key`) as one batched program; one
    :class:`~metarep.train.RunResult` per config, as :func:`metarep.train.train` would return alone (to
    float rounding, see the module). ``checkpoints[i]`` is called with run ``i``'s checkpoint bytes;
    ``resumes[i]``: its checkpoint to continue from (all at the same step, or none). A Ctrl-C
    (:class:`KeyboardInterrupt`) stops all runs still going, which end ``interrupted`` after a checkpoint.
    ``summary["wall_seconds"]`` is the batch's time."""
    cfgs = [as_config(c) for c in cfgs]
    keys = {batch_key(c) for c in cfgs}
    if None in keys or len(keys) != 1:
        raise ValueError("train_batch: runs must be batchable and differ only in " + ", ".join(map(".".join, VARYING)))
    for cfg in cfgs:
        check_run(cfg, allow_long=True)
    # the policy sees the whole stack's step: R runs of a d x d second moment each
    with threads_for(cfgs[0].run.threads, len(cfgs) * step_batch_numbers(cfgs[0])):
        return _train_batch(cfgs, progress, checkpoints or [None] * len(cfgs), resumes or [None] * len(cfgs))


def _train_batch(cfgs: list[Config], progress, checkpoints, resumes) -> list[RunResult]:
    t0 = time.perf_counter()
    runs = [_Run(cfg, write, ck) for cfg, write, ck in zip(cfgs, checkpoints, resumes)]
    start = runs[0].start
    if any(r.start != start for r in runs):
        raise ValueError("train_batch: the runs resume from different steps")
    _, grad, zero_head = EXPECTED[cfgs[0].method.name]
    for r in runs:
        if zero_head and bool(r.params.w.ne(0).any()):
            raise ValueError(f"train_batch: {r.cfg.method.name} is exact only at head w = 0; run it alone")
    cfg0 = cfgs[0]
    steps, every = cfg0.run.steps, cfg0.run.eval_every
    B = torch.stack([r.params.B for r in runs])
    w = torch.stack([r.params.w for r in runs])
    S = torch.stack([r.tasks.S.to(r.params.B) for r in runs])
    G = _truths(runs, B.device)  # (B*, B⊥) of each run, for the metrics
    if not all(r.history for r in runs):  # fresh runs (not resumed)
        for r, row in zip(runs, _rows([start] * len(runs), B, w, *G)):
            r.history = r.history or [row]
    c = _scalars(cfgs, [r.tasks for r in runs], B)
    live = list(range(len(runs)))  # members still training, in stack order
    bar = progress_bar(steps, enabled=progress, desc=f"{cfg0.method.name} x{len(runs)}", unit="step", initial=start)
    done = start
    try:
        for step in range(start + 1, steps + 1):
            gB, gw = grad(B, w, S, c)
            nB, nw = B - c["beta"] * gB, w - c["beta"][:, :, 0] * gw
            ok = torch.maximum(nB.abs().amax((1, 2)), nw.abs().amax(1)) < BLOWUP  # NaN compares False
            if not bool(ok.all()):
                keep = ok.nonzero().squeeze(1)
                for j in (~ok).nonzero().squeeze(1).tolist():
                    _diverged(runs[live[j]], B[j], w[j], step, done)
                live = [live[j] for j in keep.tolist()]
                B, w, nB, nw, S, c = B[keep], w[keep], nB[keep], nw[keep], S[keep], _take(c, keep)
                G = (G[0][keep], G[1][keep])
                if not live:
                    break
            _after_step(runs, live, nB, nw, G, step, steps, every)
            B, w, done = nB, nw, step
            bar.update(1)
    except KeyboardInterrupt:
        _sync(runs, live, B, w, done)
        for i in live:
            r = runs[i]
            r.history = [row for row in r.history if row["step"] <= done]  # a row of the step being made
            r.status, r.message = "interrupted", f"interrupted after step {done}"
            if done > start:
                r.checkpoint(done)
    else:
        _sync(runs, live, B, w, done)
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    _final_rows(runs)
    return [_result(r, wall) for r in runs]


def _truths(runs: Sequence[_Run], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The runs' ``B* (R, d, k)`` and ``B⊥ (R, d, d−k)`` stacked (float64, on ``device``)."""
    return tuple(torch.stack([getattr(r.tasks, name) for r in runs]).to(device) for name in ("B_star", "B_perp"))


def _rows(steps: Sequence[int], B, w, B_star, B_perp) -> list[dict]:
    """The history rows of stacked runs (``B (R, d, k')``, ...) at ``steps`` (one per run), as alone
    (:func:`metarep.train._row`) to float64 rounding, with one batched evaluation of the metrics."""
    return [_metrics_row(t, m) for t, m in zip(steps, representation_metrics_batch(B, w, B_star, B_perp))]


def _diverged(r: _Run, B: torch.Tensor, w: torch.Tensor, step: int, done: int) -> None:
    """Run ``r`` left the finite range at ``step``: it keeps its last finite state ``(B, w)``, of step ``done``."""
    r.params, r.done = LinearParams(B.clone(), w.clone()), done
    r.status = "diverged"
    r.message = f"diverged at step {step}: parameters became NaN/inf or exceeded {BLOWUP:g}; {_advice(r.cfg)}"


def _sync(runs: list[_Run], live: list[int], B: torch.Tensor, w: torch.Tensor, done: int) -> None:
    """The live runs' parameters, read back from the stacks, after step ``done``."""
    for j, i in enumerate(live):
        runs[i].params, runs[i].done = LinearParams(B[j].clone(), w[j].clone()), done


def _after_step(runs: list[_Run], live: list[int], B, w, G, step: int, steps: int, every: int) -> None:
    """Each live run's history row after ``step`` when due (``G``: the live runs' :func:`_truths`), and its
    checkpoint when due."""
    if step % every == 0 or step == steps:
        for i, row in zip(live, _rows([step] * len(live), B, w, *G)):
            runs[i].history.append(row)
    for j, i in enumerate(live):
        r = runs[i]
        if r.every and step % r.every == 0 and step != steps:
            r.params = LinearParams(B[j].clone(), w[j].clone())
            r.checkpoint(step)


def _final_rows(runs: list[_Run]) -> None:
    """The row of its last step for each run whose history lacks it (diverged, interrupted), all at once."""
    due = [r for r in runs if r.history[-1]["step"] != r.done]
    if due:
        B, w = (torch.stack([getattr(r.params, n) for r in due]) for n in ("B", "w"))
        for r, row in zip(due, _rows([r.done for r in due], B, w, *_truths(due, B.device))):
            r.history.append(row)


def _result(r: _Run, wall: float) -> RunResult:
    summary = _summary(r.cfg, r.history, r.status, wall)
    return RunResult(r.cfg, r.params, r.tasks, r.history, summary, r.status, r.message, r.seeds)
