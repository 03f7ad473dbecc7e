"""Executors: where the runs of a reproduction or a sweep are made.

An :class:`Executor` applies one picklable function to many items and yields each item with its
result (or the exception it raised) as soon as it is done, in any order. The function must be pure:
it receives everything it needs as arguments and returns everything it made, so an executor needs
no filesystem shared with the client. Two executors:

- :class:`LocalExecutor`: a pool of ``jobs`` processes on this machine (``spawn`` context);
- :class:`DaskExecutor`: the workers of a running ``dask.distributed`` scheduler
  (``pip install 'metarep[dask]'``), each item submitted with retries, so that a worker that dies
  mid-run costs only a retry of that run.

:func:`make_executor` picks one from ``jobs`` and ``scheduler``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, CancelledError, ProcessPoolExecutor, wait
from typing import Any, Protocol

CONNECT_TIMEOUT = 10.0  # seconds to reach a scheduler before giving up
STOP_TIMEOUT = 2.0  # seconds a terminated local worker gets to exit before it is killed
RETRIES = 2  # Dask: extra attempts of an item whose function raised or whose worker died
DASK_MISSING = "Dask is not installed; pip install 'metarep[dask]'"
SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")  # the protocols a Dask scheduler on another machine listens on


class ExecutorError(Exception):
    """An executor cannot be set up: Dask is missing, or the scheduler cannot be reached."""


class SchedulerLost(Exception):
    """The Dask scheduler went away (killed, its machine down, the network cut) while runs were on it."""


class Executor(Protocol):
    """Applies a function to items somewhere; yields ``(item, result or exception)`` as they finish."""

    def submit_all(
        self, fn: Callable[[Any], Any], items: Sequence[Any], names: Sequence[str] | None = None
    ) -> Iterator[tuple[Any, Any]]:
        """Submit ``fn(item)`` for every item; yield ``(item, result)``, or ``(item, exception)`` if
        it raised, in order of completion. ``names`` label the items for monitoring (Dask keys)."""
        ...

    def close(self, cancel: bool = False) -> None:
        """Release the executor; with ``cancel``, drop queued items and stop without waiting for running ones."""
        ...


class LocalExecutor:
    """A pool of ``jobs`` worker processes on this machine (``spawn``: no state inherited from the client).

    The workers ignore SIGINT: a Ctrl-C at a terminal reaches the whole process group, and only the
    client decides what it means (it cancels the queued runs and stops the workers with
    ``close(cancel=True)``). SIGTERM keeps its default action, so a stopped worker exits at once.
    """

    def __init__(self, jobs: int = 1):
        self.jobs = jobs
        self._pool = ProcessPoolExecutor(
            max_workers=jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_sigint
        )

    def submit_all(
        self, fn: Callable[[Any], Any], items: Sequence[Any], names: Sequence[str] | None = None
    ) -> Iterator[tuple[Any, Any]]:
        futures = {self._pool.submit(fn, item): item for item in items}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                err = f.exception()
                yield futures[f], (err if err is not None else f.result())

    def close(self, cancel: bool = False) -> None:
        if not cancel:
            self._pool.shutdown(wait=True)
            return
        # stop promptly: queued items are dropped, running ones are not waited for
        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        manager = getattr(self._pool, "_executor_manager_thread", None)
        self._pool.shutdown(wait=False, cancel_futures=True)
        stop_processes(processes)
        if manager is not None:  # it sees its workers gone and closes the pool's queues
            manager.join(STOP_TIMEOUT)


def _ignore_sigint() -> None:
    """Initializer of the local workers: Ctrl-C is the client's to handle, SIGTERM ends the worker.

    tqdm's lock becomes a thread lock: its default one holds a multiprocessing semaphore, which a
    terminated worker cannot release (the resource tracker would warn of it on the client's stderr).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())


def stop_processes(processes: Sequence[Any], timeout: float = STOP_TIMEOUT) -> None:
    """Terminate (SIGTERM) the live ``processes``, wait up to ``timeout`` seconds for all of them, kill
    (SIGKILL) those still alive: none is left behind."""
    live = [p for p in processes if p.is_alive()]
    for p in live:
        with contextlib.suppress(Exception):
            p.terminate()
    deadline = time.monotonic() + timeout
    for p in live:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in live:
        if p.is_alive():
            with contextlib.suppress(Exception):
                p.kill()
                p.join(timeout)


class DaskExecutor:
    """The workers of a ``dask.distributed`` scheduler at ``address`` (``tcp://HOST:PORT``).

    Every item is submitted with ``pure=False`` (always run, never taken from a cache) and
    ``retries=RETRIES``; a worker that dies while it holds an item makes the scheduler give the item
    to another worker. Results are gathered one at a time as they complete and then released.
    Raises :class:`ExecutorError` when Dask is not installed or the scheduler does not answer
    within ``timeout`` seconds, and :class:`SchedulerLost` from :meth:`submit_all` when the scheduler
    goes away while items are on it.
    """

    def __init__(self, address: str, timeout: float | None = None):
        try:
            from distributed import Client
        except ImportError:
            raise ExecutorError(DASK_MISSING) from None
        self.address = address
        self._pending: list = []
        wait_s = CONNECT_TIMEOUT if timeout is None else timeout
        _probe(address, wait_s)  # fail fast, before a client starts its threads
        self.client = _connect(Client, address, wait_s)

    def submit_all(
        self, fn: Callable[[Any], Any], items: Sequence[Any], names: Sequence[str] | None = None
    ) -> Iterator[tuple[Any, Any]]:
        from distributed import as_completed

        names = names or [getattr(fn, "__name__", "item")] * len(items)
        batch = uuid.uuid4().hex[:8]
        futures = {}
        for item, name in zip(items, names):
            f = self.client.submit(fn, item, key=f"{name}-{batch}", pure=False, retries=RETRIES)
            futures[f.key] = (f, item)
        self._pending = [f for f, _ in futures.values()]
        try:
            for f in as_completed(self._pending, loop=self.client.loop):
                item = futures[f.key][1]
                try:
                    out = f.result()
                except Exception as e:  # the function raised (after its retries), or the item was lost
                    if getattr(e, "reason", None) == "scheduler-connection-lost" or self.client.status != "running":
                        raise self._lost(e) from None
                    out = e
                f.release()
                yield item, out
        except (OSError, TimeoutError, CancelledError) as e:  # CommClosedError is an OSError
            raise self._lost(e) from None
        self._pending = []

    def _lost(self, err: BaseException) -> SchedulerLost:
        """The scheduler is gone: its client's futures are void. The client's own reports of the loss (it
        keeps trying to reconnect, and logs each failure) are silenced: the caller says it once."""
        self._pending = []
        quiet(True)
        reason = str(err).splitlines()[0] if str(err) and not getattr(err, "reason", None) else "connection lost"
        return SchedulerLost(f"lost the Dask scheduler at {self.address} mid-run ({reason})")

    def close(self, cancel: bool = False) -> None:
        # errors here mean the scheduler is already gone: nothing left to cancel, the client closes anyway
        if cancel and self._pending:
            with contextlib.suppress(Exception):
                self.client.cancel(self._pending, force=True)
        self._pending = []
        with contextlib.suppress(Exception):
            self.client.close(timeout=2 if cancel else CONNECT_TIMEOUT)


def quiet(on: bool) -> None:
    """Silence (``on``) or restore the log records of the Dask client in this process."""
    for name in ("distributed.client", "distributed.core", "distributed.comm", "distributed.batched"):
        logging.getLogger(name).disabled = on


def _unreachable(address: str, timeout: float, err: BaseException) -> str:
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    if isinstance(err, TimeoutError) and str(timeout) not in reason:
        reason += f" (no answer within {timeout:g} s)"
    return f"cannot reach the Dask scheduler at {address}: {reason}"


def _connect(client_class: type, address: str, timeout: float) -> Any:
    """A client of the scheduler at ``address``, made in a thread given ``timeout`` seconds and a grace (a
    service that accepts connections but never answers would otherwise hold the client forever).

    A client that failed or did not answer in time is marked closed: its finalizer would otherwise try to
    close it again when it is collected, and print ``Exception ignored in Client.__del__`` long after the
    command said what went wrong. Raises :class:`ExecutorError`.
    """
    client = object.__new__(client_class)
    made: dict[str, BaseException | None] = {}

    def start() -> None:
        try:
            client.__init__(address, timeout=timeout, set_as_default=False)
            made["error"] = None
        except Exception as e:  # timeouts, refused connections, a service that is not a Dask scheduler
            made["error"] = e

    thread = threading.Thread(target=start, name="metarep-dask-connect", daemon=True)
    thread.start()
    thread.join(timeout + STOP_TIMEOUT)
    if "error" in made and made["error"] is None:
        return client
    with contextlib.suppress(Exception):
        client.close(timeout=STOP_TIMEOUT)
    client.status = "closed"  # nothing left to close: its finalizer must not try again
    error = made.get("error") or TimeoutError(f"no answer within {timeout:g} s")
    raise ExecutorError(_unreachable(address, timeout, error))


def check_address(address: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a scheduler address ``SCHEME://HOST:PORT`` (``HOST:PORT``: tcp, port
    8786 by default); :class:`ExecutorError` naming what is allowed when it is not one (no host, or a
    protocol of :data:`SCHEMES`)."""
    from distributed.comm import parse_address, parse_host_port

    allowed = ", ".join(f"{s}://" for s in SCHEMES)
    try:
        scheme, loc = parse_address(address)
        host, port = parse_host_port(loc, 8786)
    except (ValueError, TypeError) as e:
        raise ExecutorError(f"expected a scheduler address like tcp://HOST:PORT, got {address!r} ({e})") from None
    if scheme not in SCHEMES:
        raise ExecutorError(f"unknown protocol {scheme}:// in {address!r}; a Dask scheduler listens on {allowed}")
    if not host.strip():
        raise ExecutorError(f"expected a scheduler address like tcp://HOST:PORT, got {address!r} (no host)")
    return scheme, host, port


def _probe(address: str, timeout: float) -> None:
    """Check the address (:func:`check_address`), and open and close a TCP connection to a ``tcp://``
    one; other protocols (``tls://``, ...) are left to the Dask client. Raises :class:`ExecutorError`."""
    scheme, host, port = check_address(address)
    if scheme != "tcp":
        return
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise ExecutorError(_unreachable(address, timeout, e)) from None


def make_executor(jobs: int = 1, scheduler: str | None = None) -> Executor:
    """A :class:`DaskExecutor` on ``scheduler`` when given, else a :class:`LocalExecutor` of ``jobs`` processes."""
    return DaskExecutor(scheduler) if scheduler else LocalExecutor(jobs)


def require_dask() -> None:
    """Raise :class:`ExecutorError` when ``dask.distributed`` cannot be imported."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ExecutorError(DASK_MISSING) from None
