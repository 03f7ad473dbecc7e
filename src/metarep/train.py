"""The training loop: config → tasks → method → steps → metrics.

The loop does not know which method it runs: it asks :mod:`metarep.methods` for a stepper and
calls ``state = step(state, data)`` with each step's tasks (``None`` when infinite). It evaluates
every ``run.eval_every`` steps, stops on NaN/inf (keeping the last finite state), and stops cleanly
on Ctrl-C (:class:`KeyboardInterrupt`): the step under way is dropped, the state and history are those
of the last step made, and the result has status ``interrupted``. ``metarep run`` turns SIGTERM into
the same interrupt (:class:`metarep.cli.run.Interrupts`); ``train`` installs no signal handler itself,
as it also runs in pool workers (where the client decides) and in Dask worker threads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .checkpoint import Checkpoint, identity_diff, restore, to_bytes
from .config import Config, as_config
from .limits import check_run, step_batch_numbers
from .methods import Stepper, TrainState, make_stepper, pool_layout
from .metrics import SCALAR_METRICS, representation_metrics
from .models import init_model
from .progress import progress_bar
from .runtime import choose_threads, torch_threads
from .stepsizes import step_size_advice
from .tasks import FreshTasks, LinearRepTasks, TaskPool
from .theory import predictions
from .theory_finite import floor_predictions

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class RunResult:
    """What a run produced. ``status`` is ``complete``, ``diverged`` or ``interrupted``."""

    config: Config
    params: NamedTuple  # (B, w) for meta-learning; (B, W) with one head per task for multitask
    tasks: LinearRepTasks
    history: list[dict[str, float]]
    summary: dict[str, object]
    status: str
    message: str = ""
    seeds: dict[str, int] = field(default_factory=dict)


def seeds_for(seed: int) -> dict[str, int]:
    """Independent seeds for the ground truth, the initialisation and the data, from one seed."""
    children = np.random.SeedSequence(seed).spawn(3)
    return {
        name: int(c.generate_state(1, dtype=np.uint64)[0] >> 1) for name, c in zip(("truth", "init", "data"), children)
    }


def _generator(seed: int, device: str) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def build(cfg: Config) -> tuple[LinearRepTasks, TrainState, Stepper, TaskPool | FreshTasks | None, dict[str, int]]:
    """Ground truth, initial state, the stepper and the source of each step's tasks of one run."""
    dtype, dev = DTYPES[cfg.run.dtype], cfg.run.device
    seeds = seeds_for(cfg.run.seed)
    t = cfg.task
    tasks = LinearRepTasks.create(
        t.d,
        t.k,
        t.sigma2,
        t.task_cov,
        cfg.cov_trace,
        generator=_generator(seeds["truth"], "cpu"),
        dtype=dtype,
        device=dev,
    )
    params = init_model(
        cfg.model.kind,
        t.d,
        cfg.width,
        init_scale=cfg.model.init_scale,
        generator=_generator(seeds["init"], "cpu"),
        dtype=dtype,
        device=dev,
    )
    da = cfg.data
    source: TaskPool | FreshTasks | None = None
    if not cfg.infinite:
        gen = _generator(seeds["data"], dev)
        if da.fresh:
            source = FreshTasks(tasks, da.tasks, da.m_in, da.m_out, gen)
        else:
            source = TaskPool(
                tasks.sample(da.tasks, da.m_in, da.m_out, gen), da.task_batch, gen, layout=pool_layout(cfg)
            )
    stepper = make_stepper(cfg, tasks, source)
    return tasks, stepper.init(params), stepper, source, seeds


def _row(step: int, params: NamedTuple, tasks: LinearRepTasks) -> dict[str, float]:
    return _metrics_row(step, representation_metrics(params[0], params[1], tasks))


def _metrics_row(step: int, m: dict[str, object]) -> dict[str, float]:
    """The history row of ``step`` from its :func:`~metarep.metrics.representation_metrics` ``m``."""
    row: dict[str, float] = {"step": step}
    for j, e in enumerate(m.pop("signal_eigs"), 1):
        row[f"signal_eig_{j}"] = e
    row.update(m)
    row["perp_rate"] = step * row["perp_norm2"]  # t · ‖B⊥ᵀB_t‖₂², predicted to converge (§5.2)
    return row


BLOWUP = 1e10  # parameters of these problems are O(1)–O(100); beyond this the run has diverged


def _finite(params: NamedTuple) -> bool:
    """No NaN/inf, and nothing beyond :data:`BLOWUP` (where float32 metrics would overflow)."""
    return all(p.numel() == 0 or float(p.abs().max()) < BLOWUP for p in params)  # NaN compares False


class _Saver:
    """Hands a checkpoint to ``write`` every ``run.checkpoint_every`` steps (never when either is unset), with the
    data generator's state after the last step made."""

    def __init__(
        self, cfg: Config, write: Callable[[bytes], None] | None, generator: torch.Generator | None, start: int
    ):
        self.write_bytes, self.every = write, cfg.run.checkpoint_every if write is not None else 0
        self.config, self.generator, self.at = cfg.to_dict(), generator, start
        self.rng = None if generator is None else generator.get_state()

    def stepped(self, step: int, state: TrainState, history: list[dict], last: bool) -> None:
        """After ``step`` (and its history row, if any) was made."""
        if self.every and self.generator is not None:
            self.rng = self.generator.get_state()
        self.at = step
        if self.every and step % self.every == 0 and not last:
            self.write(step, state, history)

    def write(self, step: int, state: TrainState, history: list[dict]) -> None:
        if self.every:
            self.write_bytes(to_bytes(state, step, history, self.config, self.rng))


def _resume(cfg: Config, ck: Checkpoint, state: TrainState, source) -> tuple[TrainState, list[dict], int]:
    """The state, history and step of the checkpoint ``ck``, restored into the freshly built ``state``."""
    diff = identity_diff(ck.config, cfg.to_dict())
    if diff:
        raise ValueError(f"a checkpoint of another config ({', '.join(diff)})")
    return restore(ck, state, getattr(source, "generator", None)), ck.history, ck.step


def _advice(cfg: Config) -> str:
    """What a diverged run should change: the step-size checks' advice when one failed (the same line
    ``metarep run`` warned with), else halving β (or α)."""
    advice = step_size_advice(cfg)
    if advice is not None:
        return advice
    beta = cfg.method.beta
    alpha = cfg.method.alpha
    return f"lower method.beta (now {beta:g}, try {beta / 2:g}), or method.alpha (now {alpha:g}) if that is not enough"


def train(
    cfg: Config | str | Path,
    *,
    out: str | Path | None = None,
    progress: bool | None = None,
    on_eval: Callable[[dict], None] | None = None,
    checkpoint: Callable[[bytes], None] | None = None,
    resume: Checkpoint | None = None,
    allow_long: bool = False,
) -> RunResult:
    """Run ``cfg`` and return its history and summary. ``progress``: None, a bar on a terminal and a line
    every few seconds otherwise (:func:`metarep.progress.progress_bar`); False, nothing.

    ``cfg``: a :class:`~metarep.config.Config`, or the path of a TOML config (:func:`~metarep.config.load_config`).
    Before anything is built, :func:`metarep.limits.check_run` refuses (:class:`~metarep.limits.LimitError`, a
    ``ValueError``) a run that would not fit in memory or, unless ``allow_long``, would take more than
    :data:`~metarep.limits.MAX_STEPS` steps or :data:`~metarep.limits.MAX_DAYS` days.
    ``out``: a folder (created if missing) to write the run's files into, as ``metarep run`` does
    (:func:`metarep.outputs.save_run`; read them back with :func:`metarep.outputs.load_run`).
    ``checkpoint``: called with the bytes of a checkpoint (:mod:`metarep.checkpoint`) every
    ``run.checkpoint_every`` steps and when the run is interrupted; ``resume``: a checkpoint (same
    config) to continue from instead of step 0, with a result bit-identical to an uninterrupted run.
    The run uses ``run.threads`` torch intra-op threads (0, the default: as many as the step's size gains
    from, :func:`metarep.runtime.choose_threads`), restored afterwards.
    """
    cfg = as_config(cfg)
    if out is not None and not isinstance(out, (str, Path)):
        raise TypeError(f"out: expected a folder (str or pathlib.Path) or None, got {type(out).__name__}")
    check_run(cfg, allow_long)
    with torch_threads(choose_threads(cfg.run.threads, step_batch_numbers(cfg))):
        result = _train(cfg, progress, on_eval, checkpoint, resume)
    if out is not None:
        from .outputs import save_run

        save_run(result, out)
    return result


def _train(
    cfg: Config,
    progress: bool | None,
    on_eval: Callable[[dict], None] | None,
    checkpoint: Callable[[bytes], None] | None,
    resume: Checkpoint | None,
) -> RunResult:
    t0 = time.perf_counter()
    tasks, state, stepper, source, seeds = build(cfg)
    every = cfg.run.eval_every
    steps = min(cfg.run.steps, 1) if stepper.one_shot else cfg.run.steps
    history, start = [_row(0, state.params, tasks)], 0
    if resume is not None:
        state, history, start = _resume(cfg, resume, state, source)
    saver = _Saver(cfg, checkpoint, getattr(source, "generator", None), start)
    status, message, done = "complete", "", start
    bar = progress_bar(steps, enabled=progress, desc=cfg.method.name, unit="step", initial=start)
    try:
        for step in range(start + 1, steps + 1):
            new = stepper.step(state, None if source is None else source.batches())
            if not _finite(new.params):
                status = "diverged"
                message = f"diverged at step {step}: parameters became NaN/inf or exceeded {BLOWUP:g}; {_advice(cfg)}"
                break
            state, done = new, step
            if step % every == 0 or step == steps:
                history.append(_row(step, state.params, tasks))
            saver.stepped(step, state, history, step == steps)
            if history[-1]["step"] == step:
                if on_eval is not None:
                    on_eval(history[-1])
                bar.set_postfix(perp_norm2=f"{history[-1]['perp_norm2']:.3g}", sin=f"{history[-1]['subspace_sin']:.2g}")
            bar.update(1)
    except KeyboardInterrupt:
        status, message = "interrupted", f"interrupted after step {done}"
        if start < done == saver.at:  # the last step made, its row and the generator's state after it
            saver.write(done, state, history)
    finally:
        bar.close()
    if history[-1]["step"] != done:
        history.append(_row(done, state.params, tasks))
    summary = _summary(cfg, history, status, time.perf_counter() - t0)
    return RunResult(cfg, state.params, tasks, history, summary, status, message, seeds)


def _summary(cfg: Config, history: list[dict], status: str, wall: float) -> dict[str, object]:
    last = history[-1]
    k = cfg.task.k
    out: dict[str, object] = {
        "status": status,
        "regime": "infinite" if cfg.infinite else ("fresh" if cfg.data.fresh else "finite"),
        "method": cfg.method.name,
        "steps": int(last["step"]),
        "signal_eigs": [last[f"signal_eig_{j}"] for j in range(1, k + 1)],
    }
    out.update(predictions(cfg))
    if not (cfg.infinite or cfg.data.fresh):  # a fixed pool: the floor of unlearning (MATH.md §8)
        out.update(floor_predictions(cfg))
    for key in SCALAR_METRICS:
        out[key] = last[key]
    out["wall_seconds"] = wall
    return out
