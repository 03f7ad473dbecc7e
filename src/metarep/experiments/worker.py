"""What a worker does: make one run of a reproduction or sweep, from its :class:`RunSpec`.

:func:`produce` is a pure function of its arguments (a worker on any machine runs it and returns the
run's files as bytes). While it trains, it keeps the run's checkpoint in ``KEY.partial/`` beside the
run's folder in the store (every ``run.checkpoint_every`` steps, and when the worker is stopped), and
continues from one found there: a reproduction that was interrupted or killed resumes its unfinished
runs where their checkpoints left them, with results bit-identical to uninterrupted runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from ..config import Config, load_config
from ..files import atomic_write_bytes
from ..methods import registry
from ..runtime import limit_threads

PARTIAL = ".partial"  # KEY.partial/: the checkpoint of an unfinished run


@dataclass(frozen=True)
class RunSpec:
    """One training run (``overrides`` on the defaults, plus ``run.seed``) and its evaluation.

    ``m_test``: sample sizes of the one-step excess-risk evaluation (empty: none);
    ``eval_tasks``: new tasks of that evaluation; ``figures``: draw the run's ``dynamics.png`` and
    ``evaluation.png`` (False: recorded as not drawn, ``metarep plot`` draws them later; not part of the
    run's key).
    """

    overrides: tuple[str, ...]
    seed: int
    m_test: tuple[int, ...] = ()
    eval_tasks: int = 1000
    figures: bool = True

    def config(self) -> Config:
        return load_config(None, [*self.overrides, f"run.seed={self.seed}"])

    def key(self) -> str:
        cfg = self.config()
        blob = json.dumps(
            {"config": cfg.identity(), "m_test": self.m_test, "eval_tasks": self.eval_tasks}, sort_keys=True
        )
        return f"{cfg.method.name}-{cfg.model.kind}-s{self.seed}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def produce(spec: RunSpec, threads: int = 0, plugins: tuple[str, ...] = (), partial: str | None = None) -> dict:
    """Train and (if ``spec.m_test``) evaluate one run in a private temporary folder; return its outputs.

    A pure function of its arguments, for a worker on any machine: ``threads`` sets torch's intra-op
    threads (0: leave them), ``plugins`` are modules to import first (methods registered outside
    metarep in the client), ``partial`` a folder for the run's checkpoint (None: none): a checkpoint
    found there is resumed, and a new one is written every ``run.checkpoint_every`` steps and when
    the worker is stopped (SIGTERM). Returns ``{"status", "message", "resumed", "files": {filename:
    bytes}}``, ``resumed`` being the step the run continued from (0: the start), the files those
    :func:`~metarep.outputs.save_run` and :func:`~metarep.evaluate.save_evaluation` write
    (``params.npz``, ``history.csv``, ``config.json``, ``summary.json``, ``dynamics.png``, and
    ``evaluation.json/csv/png``).
    """
    registry.load_plugins(plugins)
    limit_threads(threads)  # the most threads of a run here (metarep.runtime; 0: as they are)
    cfg = spec.config()
    result, resumed = _train(cfg, _checkpoint_dir(partial))
    return package(spec, result, resumed)


def package(spec: RunSpec, result, resumed: int) -> dict:
    """What :func:`produce` returns for the trained run ``result`` of ``spec`` (resumed from step ``resumed``):
    its files written and read back from a private temporary folder, with its evaluation if asked for."""
    from ..evaluate import evaluate_run, save_evaluation
    from ..outputs import load_run, save_run, seal_evaluation

    if result.status == "interrupted":  # stopped: the checkpoint is what counts, the client is gone
        return {"status": result.status, "message": result.message, "resumed": resumed, "files": {}}
    with tempfile.TemporaryDirectory(prefix="metarep-run-") as tmp:
        out = Path(tmp)
        save_run(result, out, figures=spec.figures)
        if result.status == "complete" and spec.m_test:
            ev = evaluate_run(
                load_run(out), m_test=spec.m_test, n_tasks=spec.eval_tasks, progress=False, allow_long=True
            )
            save_evaluation(ev, out, figure=spec.figures)
            seal_evaluation(out, figure=spec.figures)  # the summary's manifest now covers the evaluation files too
        files = {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file() and not p.name.startswith(".")}
    return {"status": result.status, "message": result.message, "resumed": resumed, "files": files}


def _checkpoint_dir(partial: str | None) -> Path | None:
    """``partial`` created if need be; None when not given or not writable here (a remote worker)."""
    if partial is None:
        return None
    try:
        Path(partial).mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return Path(partial)


def _train(cfg: Config, ckpt_dir: Path | None):
    """Train ``cfg``, continuing from ``ckpt_dir``'s checkpoint of it if one is readable; with SIGTERM
    raising :class:`KeyboardInterrupt` meanwhile (main thread only), so a stopped worker writes a
    checkpoint first. Returns ``(result, step resumed from)``."""
    from ..checkpoint import CHECKPOINT, identity_diff, load
    from ..train import train

    ck, write = None, None
    if ckpt_dir is not None:
        path = ckpt_dir / CHECKPOINT
        try:
            ck = load(path) if path.is_file() else None
        except (OSError, ValueError, KeyError, TypeError):  # damaged: start again
            ck = None
        if ck is not None and identity_diff(ck.config, cfg.to_dict()):
            ck = None

        def write(data: bytes) -> None:
            with contextlib.suppress(OSError):  # a full disk costs the checkpoint, not the run
                atomic_write_bytes(path, data)

    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if on_main and write else None
    try:
        # the client vetted the run's time (metarep.limits) before sending it; its memory is checked here
        return train(cfg, progress=False, checkpoint=write, resume=ck, allow_long=True), (ck.step if ck else 0)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def partial_dir(run_dir: Path) -> Path:
    """Where the checkpoint of the unfinished run ``run_dir`` is kept: ``KEY.partial`` beside it."""
    return run_dir.with_name(run_dir.name + PARTIAL)


def produce_in(store: str, spec: RunSpec, threads: int = 0, plugins: tuple[str, ...] = ()) -> dict:
    """:func:`produce` with the run's checkpoint kept in ``store/KEY.partial`` (run on a worker)."""
    return produce(spec, threads, plugins, str(partial_dir(Path(store) / spec.key())))
