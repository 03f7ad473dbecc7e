"""Batches of runs: the runs of a reproduction or sweep that can train as one program, as one unit of work.

The rule (:func:`group`): runs batch together when their configs differ only in ``run.seed``,
``method.alpha``, ``method.beta`` and ``data.m_in``, they ask for the same evaluation (``m_test``, ``eval_tasks``),
and they are :func:`~metarep.train_batched.batchable` (the exact infinite-task regime of FO-ANIL, FO-MAML,
ANIL or MAML on the linear model, one inner step). Every other run is a batch of one, made as before
(:func:`~metarep.experiments.worker.produce`). A batch holds at most :data:`MAX_BATCH` runs, and a group is
split so that each of ``parts`` workers gets a share.

A batch is one item for the executor (:func:`submit`): one worker trains it (:func:`produce_batch`,
:func:`~metarep.train_batched.train_batch`) and returns each run's files as :func:`produce` would, which the
runner writes into each run's own folder under each run's own lock (all claimed before the batch is sent).
Each run keeps its checkpoint in its own ``KEY.partial/``: a batch killed mid-way resumes its runs from
there (runs whose checkpoints stand at different steps train in one batch per step), and a worker killed
mid-batch costs that batch only.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..methods import registry
from ..runtime import limit_threads
from .worker import RunSpec, _checkpoint_dir, _raise_interrupt, package, partial_dir, produce

MAX_BATCH = 64  # runs per batch at most (the states are small: d·k' numbers each)


def _key(spec: RunSpec) -> str | None:
    from ..train_batched import batch_key

    key = batch_key(spec.config())
    return None if key is None else json.dumps([key, list(spec.m_test), spec.eval_tasks])


def group(specs: Sequence[RunSpec], parts: int = 1, max_size: int = MAX_BATCH) -> list[tuple[RunSpec, ...]]:
    """The batches of ``specs`` (see the module), in order of first appearance; runs that do not batch
    are batches of one. A group larger than ``ceil(batchable runs / parts)`` (or ``max_size``) is split into
    nearly equal batches, so ``parts`` workers all get work."""
    groups: dict[str | int, list[RunSpec]] = {}
    for i, spec in enumerate(specs):
        key = _key(spec)
        groups.setdefault(i if key is None else key, []).append(spec)
    batchable = sum(len(g) for k, g in groups.items() if isinstance(k, str))
    size = max(1, min(max_size, -(-batchable // max(1, parts))))
    out: list[tuple[RunSpec, ...]] = []
    for members in groups.values():
        n = -(-len(members) // size)  # batches of this group
        for j in range(n):
            out.append(tuple(members[j * len(members) // n : (j + 1) * len(members) // n]))
    return out


def produce_batch(
    specs: Sequence[RunSpec], threads: int = 0, plugins: tuple[str, ...] = (), partials: Sequence[str | None] = ()
) -> list[Any]:
    """:func:`~metarep.experiments.worker.produce` for each run of the batch ``specs`` (``partials[i]``: run
    ``i``'s checkpoint folder), trained as one program; one result per run, or the exception that run raised."""
    partials = list(partials) or [None] * len(specs)
    if len(specs) == 1:
        return [produce(specs[0], threads, plugins, partials[0])]
    registry.load_plugins(plugins)
    limit_threads(threads)  # the most threads of a batch here (metarep.runtime; 0: as they are)
    cfgs = [s.config() for s in specs]
    dirs = [_checkpoint_dir(p) for p in partials]
    cks = [_checkpoint(d, cfg) for d, cfg in zip(dirs, cfgs)]
    by_step: dict[int, list[int]] = {}
    for i, ck in enumerate(cks):
        by_step.setdefault(ck.step if ck else 0, []).append(i)
    writers = [_writer(d) for d in dirs]
    try:
        trained = _train_parts(cfgs, cks, writers, by_step)
    except ValueError:  # a state the batch does not cover (a non-zero head): each run alone, as it would be
        return [_alone(s, threads, plugins, p) for s, p in zip(specs, partials)]
    return [package(spec, result, resumed) for spec, (result, resumed) in zip(specs, trained)]


def _alone(spec: RunSpec, threads: int, plugins: tuple[str, ...], partial: str | None) -> Any:
    try:
        return produce(spec, threads, plugins, partial)
    except Exception as e:  # as the executor would report it for a lone run
        return e


def _train_parts(cfgs: list, cks: list, writers: list, by_step: dict[int, list[int]]) -> list[tuple[Any, int]]:
    """Train the runs, one batch per checkpoint step, with SIGTERM raising KeyboardInterrupt meanwhile (main
    thread only): stopped, each run still going writes its checkpoint; the parts not begun are left."""
    from ..train_batched import train_batch

    out: list = [None] * len(cfgs)
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if on_main and any(writers) else None
    try:
        stopped = False
        for step, idx in sorted(by_step.items(), reverse=True):
            if stopped:
                for i in idx:
                    out[i] = (_not_begun(cfgs[i], step), step)
                continue
            results = train_batch(
                [cfgs[i] for i in idx], checkpoints=[writers[i] for i in idx], resumes=[cks[i] for i in idx]
            )
            stopped = any(r.status == "interrupted" for r in results)
            for i, r in zip(idx, results):
                out[i] = (r, step)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return out


def _not_begun(cfg, step: int):
    from types import SimpleNamespace

    return SimpleNamespace(status="interrupted", message=f"interrupted after step {step}")


def _checkpoint(ckpt_dir: Path | None, cfg):
    """The readable checkpoint of ``cfg`` in ``ckpt_dir``, or None (as the lone run reads it)."""
    from ..checkpoint import CHECKPOINT, identity_diff, load

    if ckpt_dir is None or not (ckpt_dir / CHECKPOINT).is_file():
        return None
    try:
        ck = load(ckpt_dir / CHECKPOINT)
    except (OSError, ValueError, KeyError, TypeError):  # damaged: start again
        return None
    return None if identity_diff(ck.config, cfg.to_dict()) else ck


def _writer(ckpt_dir: Path | None) -> Callable[[bytes], None] | None:
    from ..checkpoint import CHECKPOINT
    from ..files import atomic_write_bytes

    if ckpt_dir is None:
        return None

    def write(data: bytes) -> None:
        with contextlib.suppress(OSError):  # a full disk costs the checkpoint, not the run
            atomic_write_bytes(ckpt_dir / CHECKPOINT, data)

    return write


def produce_batch_in(
    store: str, specs: RunSpec | Sequence[RunSpec], threads: int = 0, plugins: tuple[str, ...] = ()
) -> Any:
    """:func:`produce_batch` with each run's checkpoint kept in ``store/KEY.partial`` (run on a worker). A lone
    :class:`RunSpec` (a batch of one travels as itself) gets one result, as
    :func:`~metarep.experiments.worker.produce_in`; a batch, one per run."""
    if isinstance(specs, RunSpec):
        return produce(specs, threads, plugins, str(partial_dir(Path(store) / specs.key())))
    return produce_batch(specs, threads, plugins, [str(partial_dir(Path(store) / s.key())) for s in specs])


def parts_of(executor) -> int:
    """How many workers ``executor`` has (local jobs, or the Dask cluster's workers; 1 if unknown)."""
    jobs = getattr(executor, "jobs", None)
    if jobs:
        return int(jobs)
    with contextlib.suppress(Exception):
        return max(1, len(executor.client.scheduler_info()["workers"]))
    return 1


def submit(executor, fn: Callable[[Any], Any], specs: Sequence[RunSpec]) -> Iterator[tuple[RunSpec, Any]]:
    """Send ``specs`` to ``executor`` in batches (:func:`group`; a batch of one as the spec itself), ``fn(batch)
    -> [result per run]``; yield ``(spec, result or exception)`` per run as batches finish (a batch that
    raised: every run of it)."""
    batches = group(specs, parts_of(executor))
    items = [b[0] if len(b) == 1 else b for b in batches]
    names = [b[0].key() if len(b) == 1 else f"{b[0].key()}+{len(b) - 1}" for b in batches]
    for item, res in executor.submit_all(fn, items, names=names):
        if isinstance(item, RunSpec):
            yield item, res
        elif isinstance(res, BaseException):
            yield from ((spec, res) for spec in item)
        else:
            yield from zip(item, res)
