"""Progress of long work, on a terminal and off it.

:func:`progress_bar` is the one way metarep shows progress. On a terminal it is a ``tqdm`` bar. Off a
terminal (output piped to a file, a batch job's log) a bar's carriage returns make an unreadable
file, so it prints instead one plain line every :data:`EVERY` seconds on stderr::

    run: 1200/3000 steps (40%), perp_norm2=1.31, sin=0.08, elapsed 12 s, left ~18 s

and a last line when the work ends, if it printed any (work shorter than :data:`EVERY` stays quiet).
A line is printed every :data:`EVERY` seconds even when no unit of work finishes in between (a
reproduction whose runs each take minutes still shows it is alive).
``enabled=None`` chooses by stderr (terminal: bar, else lines); ``True`` forces progress (a bar on a
terminal, lines otherwise); ``False`` shows nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from tqdm.auto import tqdm

EVERY = 5.0  # seconds between two progress lines off a terminal


class LineProgress:
    """A progress report of one line every ``every`` seconds on ``stream`` (the subset of ``tqdm``'s
    interface metarep uses: ``update``, ``set_postfix``, ``close``, iteration)."""

    def __init__(
        self,
        total: int | None,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        every: float = EVERY,
        stream: Any = None,
        iterable: Any = None,
    ):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.every, self.stream, self.iterable = every, stream, iterable
        self.postfix: dict[str, Any] = {}
        self._start = self._last = time.monotonic()
        self._initial, self._printed, self._closed = initial, False, False
        self._lock, self._stop = threading.Lock(), threading.Event()
        threading.Thread(target=self._heartbeat, daemon=True, name="metarep-progress").start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.every / 5):
            if time.monotonic() - self._last >= self.every:
                self._line()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._last >= self.every:
            self._line()

    def set_postfix(self, ordered_dict: Mapping[str, Any] | None = None, refresh: bool = False, **kwargs: Any) -> None:
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def close(self) -> None:
        self._stop.set()
        if not self._closed and self._printed:
            self._line()
        self._closed = True

    def _line(self) -> None:
        with self._lock:
            if self._closed:
                return
            now = time.monotonic()
            self._last, self._printed = now, True
            self._print(now)

    def _print(self, now: float) -> None:
        elapsed = now - self._start
        done = f"{self.n}/{self.total} {self.unit}s ({100 * self.n / self.total:.0f}%)" if self.total else f"{self.n}"
        extra = "".join(f", {k}={v}" for k, v in self.postfix.items())
        rate = (self.n - self._initial) / elapsed if elapsed > 0 else 0.0
        left = f", left ~{_duration((self.total - self.n) / rate)}" if self.total and rate > 0 else ""
        head = f"{self.desc}: " if self.desc else ""
        print(f"{head}{done}{extra}, elapsed {_duration(elapsed)}{left}", file=self.stream or sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return (
        f"{s} s"
        if s < 120
        else f"{s // 60} min {s % 60:02d} s"
        if s < 7200
        else f"{s // 3600} h {s % 3600 // 60:02d} min"
    )


def progress_bar(
    total: int | None = None,
    *,
    enabled: bool | None = None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    iterable: Any = None,
    leave: bool = False,
) -> Any:
    """A ``tqdm`` bar on a terminal, a :class:`LineProgress` off one, or a silent bar (``enabled=False``).

    ``total``: the amount of work (``None``: ``len(iterable)`` when it has one); ``initial``: already done.
    """
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    terminal = sys.stderr.isatty()
    if enabled is False or terminal:
        return tqdm(
            iterable, total=total, desc=desc or None, unit=unit, initial=initial, leave=leave, disable=enabled is False
        )
    return LineProgress(total, desc, unit, initial, iterable=iterable)
