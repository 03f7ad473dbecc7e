"""Where ``metarep run`` may write its run: the rule for its ``--out`` folder, and the lock held meanwhile.

:func:`plan` is the one place that decides, from what the folder holds and the run's config:

- a new or empty folder: the run is written there;
- a folder holding anything but a run's files: refused (exit 2), whatever the flags;
- a run of another config (finished or not): refused naming the keys that differ; ``--overwrite``
  replaces it;
- the finished run (complete or diverged) of this config: said, exit 0; ``--force`` makes it again;
- an unfinished run of this config with a usable checkpoint: refused; ``--resume`` continues it,
  ``--force`` starts it over; without a usable checkpoint (a damaged one, or none) it is started over;
- ``--resume``: continues the checkpoint of this config (a damaged one is refused, saying how to start over).

A run that replaces another is written beside it (``.NAME.new``) and takes its place only once sealed
(:func:`swap_in`): the old run is removed after that, and stays whole when the new one fails or is
stopped before its first step.

While a run writes its folder, it holds the lock ``.metarep.lock`` inside it (the run store's
:mod:`filelock`), and ``.metarep.holder`` names the process holding it: a second ``metarep run`` on the
same folder exits 2 naming that process. Neither file is a run's (no manifest lists them).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import typer
from filelock import FileLock, Timeout

from ..checkpoint import CHECKPOINT, Checkpoint, CheckpointError, identity_diff, load
from ..outputs import (
    EVALUATION_FIGURES,
    EVALUATION_FILES,
    RUN_FIGURES,
    RUN_FILES,
    SUMMARY,
    NotFinishedRun,
    verify_run,
)
from .common import created, discard_created, fail, one_line

LOCK = ".metarep.lock"  # held (filelock) while a run writes the folder
HOLDER = ".metarep.holder"  # "PID HOST" of the process holding the lock
RUN_NAMES = (*RUN_FILES, SUMMARY, *RUN_FIGURES, *EVALUATION_FILES, *EVALUATION_FIGURES, CHECKPOINT)
FINISHED = ("complete", "diverged")  # a run made again gives the same: never replaced by accident
START_OVER = "remove it, or run without --resume to start over at step 0"


class Existing(NamedTuple):
    """What a folder holds of a run."""

    any: bool  # any file of a run
    configs: list[dict[str, Any]]  # the configs it records: config.json's, its checkpoint's
    status: str | None  # the status of the sealed run there (verify_run), None when not sealed
    checkpoint: Checkpoint | None  # its verified checkpoint
    problem: str  # why its checkpoint.npz cannot be used ("" when there is none, or it is fine)


class Plan(NamedTuple):
    """How the run is written: into ``target`` (``--out``, or beside it when it replaces a run there),
    from ``resume`` (None: step 0)."""

    target: Path
    resume: Checkpoint | None


def _ours(name: str, names: tuple[str, ...] = RUN_NAMES) -> bool:
    """Whether ``name`` in a run folder is a run's (one of ``names``): its files, the lock, a temporary file
    of an atomic write or of the writable-folder probe."""
    if name in names or name in (LOCK, HOLDER) or name.startswith(".probe."):
        return True
    return name.startswith(".") and name.endswith(".tmp") and any(name.startswith(f".{n}.") for n in names)


def foreign_entries(d: Path, names: tuple[str, ...] = RUN_NAMES) -> list[str]:
    """The entries of the folder ``d`` that are not a run's (``names``: what a run writes there), sorted
    (none when ``d`` does not exist)."""
    try:
        return sorted(name for name in os.listdir(d) if not _ours(name, names))
    except FileNotFoundError:
        return []


def refuse_foreign(out_dir: Path, names: tuple[str, ...] = RUN_NAMES) -> None:
    """Exit 2 with one line when the folder ``out_dir`` holds anything but ``names`` (a run's files)."""
    foreign = foreign_entries(out_dir, names)
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        fail(
            f"--out: {out_dir} is not empty and holds no metarep run ({one_line(foreign[0], 80)!r}{more}); "
            "choose a new or empty folder"
        )


def existing_run(d: Path) -> Existing:
    """What the folder ``d`` (holding nothing but a run's files) holds of a run."""
    present = [n for n in RUN_NAMES if (d / n).exists()]
    configs: list[dict[str, Any]] = []
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        recorded = json.loads((d / "config.json").read_text())["config"]
        if isinstance(recorded, dict):
            configs.append(recorded)
    try:
        status = verify_run(d).get("status")
    except NotFinishedRun:
        status = None
    ck, problem = None, ""
    if (d / CHECKPOINT).is_file():
        try:
            ck = load(d / CHECKPOINT)
            configs.append(ck.config)
        except CheckpointError as e:
            problem = str(e)
    return Existing(bool(present), configs, status if isinstance(status, str) else None, ck, problem)


def plan(out_dir: Path, cfg, resume: bool, force: bool, overwrite: bool) -> Plan:
    """Whether and how the run of ``cfg`` may be written into ``out_dir``, a folder holding nothing but a
    run's files (:func:`hold` checked that), by the rules above; otherwise exit: 2 with one line naming what
    is there and the flag that would proceed, 0 when the folder already holds this finished run."""
    if resume and (force or overwrite):
        fail("--resume continues the run in --out; --force and --overwrite start one over: give only one of them")
    ex = existing_run(out_dir)
    diff = next((d for d in (identity_diff(c, cfg.to_dict()) for c in ex.configs) if d), [])
    if resume:
        return Plan(out_dir, _resume(out_dir, ex, diff))
    if not ex.any:
        return Plan(out_dir, None)
    if diff:
        if not overwrite:
            kind = "finished run" if ex.status in FINISHED else "run"
            fail(
                f"--out: {out_dir} holds a {kind} of another config: {', '.join(diff)}; "
                "pass --overwrite to replace it, or choose another --out"
            )
        return Plan(staging(out_dir), None)
    if ex.status in FINISHED:
        if not (force or overwrite):
            typer.echo(
                f"{out_dir} already holds this run, finished ({ex.status}); nothing to do (--force makes it again)"
            )
            raise typer.Exit(0)
        return Plan(staging(out_dir), None)
    if ex.checkpoint is not None:
        if not (force or overwrite):
            fail(
                f"--out: {out_dir} holds this run unfinished (checkpoint at step {ex.checkpoint.step}); "
                "--resume continues it, --force starts it over"
            )
        return Plan(staging(out_dir), None)
    if ex.problem:
        typer.echo(f"note: {ex.problem}; starting the run over at step 0", err=True)
    return Plan(out_dir, None)


def _resume(out_dir: Path, ex: Existing, diff: list[str]) -> Checkpoint:
    """The checkpoint ``--resume`` continues; otherwise exit: 0 when the run is finished, 2 when there is
    another config, no checkpoint, or a damaged one."""
    if diff:
        fail(f"--resume: {out_dir} holds another config: {', '.join(diff)}")
    if ex.status in FINISHED:
        typer.echo(f"--resume: {out_dir} already holds the finished run ({ex.status}); nothing to do")
        raise typer.Exit(0)
    if ex.problem:
        fail(f"--resume: {ex.problem}; {START_OVER}")
    if ex.checkpoint is None:
        fail(f"--resume: no {CHECKPOINT} in {out_dir}; nothing to resume (run without --resume to start at step 0)")
    typer.echo(f"resuming {out_dir} from step {ex.checkpoint.step}", err=True)
    return ex.checkpoint


def staging(out_dir: Path) -> Path:
    """The folder a run replacing the one in ``out_dir`` is written into: ``.NAME.new`` beside it, empty."""
    path = out_dir.resolve()
    new = path.with_name(f".{path.name}.new")
    shutil.rmtree(new, ignore_errors=True)  # left by a replacement that was killed
    new.mkdir()
    return new


def swap_in(new: Path, out_dir: Path) -> None:
    """Put the sealed run in ``new`` in the place of ``out_dir``; the old folder is moved aside, then removed."""
    path = out_dir.resolve()
    old = path.with_name(f".{path.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(path, old)
    try:
        os.replace(new, path)
    except OSError:
        os.replace(old, path)  # the earlier run back in its place
        raise
    shutil.rmtree(old, ignore_errors=True)


def discard(new: Path, out_dir: Path) -> None:
    """Remove the folder of a replacement that was not swapped in (``out_dir`` itself is never removed)."""
    if new.resolve() != out_dir.resolve():
        shutil.rmtree(new, ignore_errors=True)


def _holder(d: Path) -> str:
    """Who holds the lock of ``d``, as its holder file says: ``process PID`` (and ``on HOST`` when elsewhere)."""
    try:
        pid, host = ((d / HOLDER).read_text().split() + ["", ""])[:2]
    except OSError:
        return "another process"
    if not pid.isdigit():
        return "another process"
    return f"process {pid}" + (f" on {host}" if host and host != socket.gethostname() else "")


@contextlib.contextmanager
def hold(out_dir: Path, names: tuple[str, ...] = RUN_NAMES) -> Iterator[None]:
    """Hold the lock of the run folder ``out_dir`` (existing) while the block runs; exit 2 naming the
    holder when another process holds it, or when the folder holds anything but ``names`` (a run's files;
    no lock file is put there). On the way out the lock is released; when the command failed with exit code 2
    in a folder it created, the lock file and then the folder go again."""
    refuse_foreign(out_dir, names)
    lock = FileLock(str(out_dir / LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        fail(
            f"--out: {out_dir} is being written by another metarep run ({_holder(out_dir)}); "
            "wait for it to finish, or choose another --out"
        )
    failed, me = False, f"{os.getpid()} {socket.gethostname()}\n"
    try:
        with contextlib.suppress(OSError):
            (out_dir / HOLDER).write_text(me)
        yield
    except typer.Exit as e:
        failed = e.exit_code == 2
        raise
    finally:
        with contextlib.suppress(OSError):  # (after a swap, the folder there is the new run's: no holder file)
            if (out_dir / HOLDER).read_text() == me:
                (out_dir / HOLDER).unlink()
        lock.release()
        if failed and created(out_dir):  # nobody else can be using the lock of a folder that is going
            with contextlib.suppress(OSError):
                (out_dir / LOCK).unlink()
            discard_created()
