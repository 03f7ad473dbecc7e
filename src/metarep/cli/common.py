"""What every command shares: one-line errors with exit code 2, the output-folder check, option parsers
and number formatting.

Nothing here imports torch or the training stack: ``metarep --help`` stays fast.
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import typer

# options several commands declare alike
PROGRESS = typer.Option(None, "--progress/--no-progress", help="Progress bar (default: on a TTY).")
CONFIG = typer.Argument(None, help="TOML config; without one, the paper's setting with FO-ANIL.")
SET = typer.Option([], "--set", help="Override one key: section.key=value (repeatable).")
ALLOW_LONG = typer.Option(
    False, "--allow-long", help="Run even beyond 10^9 steps or an estimated 7 days of work (refused otherwise)."
)


# folders prepare_out created in this process: removed again, when still empty, by a failure with code 2
_CREATED: list[Path] = []


def one_line(text: str, limit: int = 400) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on one line to stderr and exit with ``code``.

    With code 2 (invalid input), an ``--out`` folder this command created and left empty is removed.
    """
    if code == 2:
        discard_created()
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(code)


def discard_created(forget: bool = False) -> None:
    """Remove the folders :func:`prepare_out` created that are still empty (deepest first); those not empty
    yet (a lock file still in one) stay listed for a later call. ``forget``: only forget them (a new
    command starts)."""
    if forget:
        _CREATED.clear()
    for path in reversed(_CREATED):
        try:
            path.rmdir()
        except OSError:
            continue


def created(path: Path) -> bool:
    """Whether :func:`prepare_out` created the folder ``path`` in this command."""
    return path in _CREATED


def user_errors(fn: Callable) -> Callable:
    """Turn configuration, method and size errors into one-line messages with exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ..config import ConfigError
        from ..limits import InputError
        from ..methods import MethodError

        try:
            return fn(*args, **kwargs)
        except (ConfigError, MethodError, InputError) as e:
            fail(str(e))

    return wrapper


def prepare_out(out: Path | None, default: Path) -> Path:
    """``out`` (or ``default``) created and checked writable; exit 2 with one line naming ``--out`` if not.

    Call it once the inputs are validated: a later failure with code 2 removes the folders made here
    while they are still empty.
    """
    from ..files import ensure_writable_dir

    path = out if out is not None else default
    new: list[Path] = []
    try:
        new = [p for p in (path, *path.parents) if not os.path.lexists(p)]
        result = ensure_writable_dir(path)
    except OSError as e:
        _CREATED.extend(reversed(new))
        fail(f"--out: cannot write to {one_line(str(path), 200)}: {e.strerror or e}")
    _CREATED.extend(reversed(new))  # outermost first: popped deepest first
    return result


def out_path(value: str | Path) -> Path:
    """The ``--out`` parser: a path, never empty (``--out ''`` would mean the working directory)."""
    if not str(value).strip():
        raise typer.BadParameter(f"expected a folder, got {str(value)!r}")
    return Path(value)


# what is left after a command stopped by a failure of its environment or by Ctrl-C (every file is written atomically)
KEPT = "the files written before are whole and kept, nothing half-written is left; run the same command again"

# what an environment failure's errno means, in words (other errnos: the system's own words)
ENVIRONMENT_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or folder (moved or removed meanwhile?)",
    errno.ENOTDIR: "a path component is not a folder",
    errno.EIO: "input/output error",
}


def os_error_line(e: OSError) -> str:
    """An environment failure (a full disk, a read-only or vanished folder, ...) as ``FILE: what (ERRNO)``."""
    what = ENVIRONMENT_ERRORS.get(e.errno or 0) or e.strerror or str(e) or type(e).__name__
    code = f" ({errno.errorcode[e.errno]})" if e.errno in errno.errorcode else ""
    where = f"{one_line(str(e.filename), 200)}: " if e.filename is not None else ""
    return f"{where}{what}{code}"


def check_scheduler(scheduler: str | None, jobs: int | None) -> None:
    """Exit 2 with one line when ``--scheduler`` is given with ``--jobs``, is not the address of a Dask
    scheduler (``tcp://HOST:PORT``, ``tls://``, ...), or when Dask is not installed: before any folder is made."""
    if scheduler is None:
        return
    if jobs is not None:
        fail("--jobs and --scheduler are exclusive: --jobs sizes the local pool, the Dask workers size a cluster")
    if not scheduler.strip():
        fail(f"--scheduler: expected the address of a Dask scheduler, e.g. tcp://HOST:PORT; got {scheduler!r}")
    from ..experiments.executors import ExecutorError, check_address, require_dask

    try:
        require_dask()
        check_address(scheduler)
    except ExecutorError as e:
        fail(f"--scheduler: {e}")


def m_list(text: str, option: str = "--m-test") -> list[int]:
    """Parse ``5,10,20`` into sorted distinct sample sizes ``>= 1``; exit 2 with one line otherwise."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        ms = [int(p) for p in parts]
    except ValueError:
        ms = []
    if not ms or min(ms) < 1:
        fail(f"{option}: expected comma-separated integers >= 1 (e.g. 5,10,20), got {text!r}")
    return sorted(set(ms))


def int_list(value: str, option: str) -> tuple[int, ...]:
    """Parse ``0,1,10`` into integers in the given order (no range check); exit 2 with one line otherwise."""
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        fail(f"{option}: expected comma-separated integers, got {value!r}")
    if not out:
        fail(f"{option}: expected at least one integer, got {value!r}")
    return out


def name_list(value: str) -> tuple[str, ...]:
    """Parse ``a, b,c`` into ``("a", "b", "c")``."""
    return tuple(v.strip() for v in value.split(",") if v.strip())


def fmt_list(xs: list[float]) -> str:
    """``[0.792, 1.43]``: four significant digits."""
    return "[" + ", ".join(f"{x:.4g}" for x in xs) + "]"


def fmt_opt(x: float | None) -> str:
    """Four significant digits, or ``undefined`` for ``None``."""
    return "undefined" if x is None else f"{x:.4g}"


HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """Within ``with Interrupts() as sig:``, SIGTERM raises :class:`KeyboardInterrupt` like Ctrl-C.

    ``sig.code`` is the exit code of the first signal received (128 + its number: 130 for SIGINT,
    143 for SIGTERM; 130 when none was, e.g. an interrupt raised by hand). After :meth:`defer`, a
    signal is only recorded, so that what must be finished (writing a run's files, stopping workers)
    is finished. The previous handlers come back on exit. Outside the main thread it does nothing
    (Python only runs signal handlers there).
    """

    last: int | None = None  # the signal behind the latest interrupt (its code outside the context)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._raise = True
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in HANDLED}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, _frame: object) -> None:
        if self.signum is None:
            self.signum = signum
        Interrupts.last = signum
        if self._raise:
            self._raise = False  # one interrupt: a second signal while unwinding must not cut the clean-up
            raise KeyboardInterrupt

    def defer(self) -> None:
        """From now on, signals are recorded and do not interrupt."""
        self._raise = False

    @property
    def code(self) -> int:
        return 128 + int(self.signum or signal.SIGINT)

    def stop(self, finished: int, total: int, store: Path) -> None:
        """After a reproduction or sweep was interrupted: one line on stderr (how many runs are finished,
        how to resume), exit 130 or 143. Further signals are ignored while it is said."""
        self.defer()
        typer.echo(
            f"interrupted: {finished} of {total} runs finished (in {store}); run the same command again to resume",
            err=True,
        )
        raise typer.Exit(self.code)
