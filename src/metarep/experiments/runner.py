"""Run store and executor for reproductions.

A run is a pure function of its :class:`RunSpec` (a config plus the test-time evaluation to make
of it). Its folder is named by a hash of both, so identical runs requested by two experiments are
made once, and a run whose folder already holds a complete result is skipped: an interrupted
reproduction resumes where it stopped. Runs execute on a local process pool.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ..config import Config, load_config
from ..methods import registry


@dataclass(frozen=True)
class RunSpec:
    """One training run (``overrides`` on the defaults, plus ``run.seed``) and its evaluation.

    ``m_test``: sample sizes of the one-step excess-risk evaluation (empty: none);
    ``eval_tasks``: new tasks of that evaluation.
    """

    overrides: tuple[str, ...]
    seed: int
    m_test: tuple[int, ...] = ()
    eval_tasks: int = 1000

    def config(self) -> Config:
        return load_config(None, [*self.overrides, f"run.seed={self.seed}"])

    def key(self) -> str:
        cfg = self.config()
        blob = json.dumps(
            {"config": cfg.to_dict(), "m_test": self.m_test, "eval_tasks": self.eval_tasks}, sort_keys=True
        )
        return f"{cfg.method.name}-{cfg.model.kind}-s{self.seed}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def is_complete(run_dir: Path, spec: RunSpec) -> bool:
    """True when ``run_dir`` holds a complete run (and its evaluation, if one is asked for)."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    if summary.get("status") != "complete":
        return False
    return not spec.m_test or (run_dir / "evaluation.json").is_file()


def execute(spec: RunSpec, run_dir: str, threads: int = 0, plugins: tuple[str, ...] = ()) -> str:
    """Train, save and (optionally) evaluate one run into ``run_dir``; returns its final status."""
    import torch

    from ..evaluate import evaluate_run, save_evaluation
    from ..outputs import load_run, save_run
    from ..train import train

    registry.load_plugins(plugins)  # methods registered outside metarep in the parent process
    if threads:
        torch.set_num_threads(threads)
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").unlink(missing_ok=True)  # stale from an earlier, unfinished attempt
    result = train(spec.config(), progress=False)
    save_run(result, out)
    if result.status == "complete" and spec.m_test:
        ev = evaluate_run(load_run(out), m_test=spec.m_test, n_tasks=spec.eval_tasks, progress=False)
        save_evaluation(ev, out)
    return result.status


def run_all(specs: list[RunSpec], store: Path, jobs: int, progress: bool | None = None) -> dict[str, int]:
    """Execute every incomplete spec in ``store`` on ``jobs`` worker processes.

    Returns counts: ``total``, ``skipped`` (already complete), ``ran``, ``failed`` and ``errors``
    (one line per failed run). The progress bar
    (runs done / total, time left) shows on a terminal only.
    """
    unique = {s.key(): s for s in specs}
    todo = {k: s for k, s in unique.items() if not is_complete(store / k, s)}
    counts: dict = {"total": len(unique), "skipped": len(unique) - len(todo), "ran": 0, "failed": 0, "errors": []}
    if not todo:
        return counts
    store.mkdir(parents=True, exist_ok=True)
    bar = tqdm(
        total=len(unique),
        initial=counts["skipped"],
        unit="run",
        desc="reproduce",
        disable=(not progress) if progress is not None else None,
    )
    threads = max(1, (os.cpu_count() or 1) // jobs)
    started = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        plugins = registry.plugin_modules()
        futures = {pool.submit(execute, s, str(store / k), threads, plugins): k for k, s in todo.items()}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    err = f.exception()
                    status = f"{type(err).__name__}: {err}" if err is not None else f.result()
                    counts["ran" if status == "complete" else "failed"] += 1
                    if status != "complete":
                        counts["errors"].append(f"{futures[f]}: {status}")
                    bar.update(1)
        except KeyboardInterrupt:
            for f in pending:
                f.cancel()
            raise
        finally:
            bar.close()
    counts["seconds"] = time.perf_counter() - started
    return counts
