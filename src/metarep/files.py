"""Files: atomic writes (JSON, CSV, bytes), a writable-folder check, and run provenance (versions, git commit)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def umask() -> int:
    """The process's file-mode creation mask, read without changing it where the system allows
    (``/proc/self/status`` on Linux; elsewhere set and restored at once)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``.

    The file gets the mode a plain ``open(path, "w")`` would give it (``0o666`` less the umask), not
    the ``0o600`` of the temporary file. An ``OSError`` (a full disk, a read-only or vanished folder)
    names ``path``, not the temporary file; ``path`` is then as it was.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        if e.errno is None:
            raise
        raise _naming(e, path) from e
    try:
        os.chmod(tmp, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):  # (gone with its folder)
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is not None:
            raise _naming(e, path) from e
        raise


def _naming(e: OSError, path: Path) -> OSError:
    """An ``OSError`` of ``e``'s errno (so of its subclass) naming ``path``, the file a write was for."""
    return OSError(e.errno, e.strerror, str(path))


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def write_csv(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Atomically write tidy rows (dicts with the same keys) as CSV."""
    rows = list(rows)
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def ensure_writable_dir(path: str | Path) -> Path:
    """Create ``path`` if needed and check a file can be written there; raise ``OSError`` if not."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path, prefix=".probe.", delete=True):
        pass
    return path


def git_commit() -> str:
    """The commit of the source tree metarep is imported from, or ``unknown``."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    """Versions of metarep and the libraries that determine its numbers."""
    import numpy
    import torch

    from ._version import __version__

    return {
        "metarep": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def provenance() -> dict[str, Any]:
    """What made a result: the versions of metarep and its numerical libraries, and the git commit."""
    return {"versions": versions(), "git_commit": git_commit()}


def write_result(path: str | Path, payload: dict[str, Any]) -> None:
    """The one writer of a result's JSON record: ``payload`` with :func:`provenance` added, atomically."""
    write_json(path, {**payload, **provenance()})
