"""Checkpoints of a training run: one ``.npz`` file with everything needed to continue it.

A checkpoint holds the step, the history so far, the config (:meth:`~metarep.config.Config.to_dict`),
the whole :class:`~metarep.methods.TrainState` (the parameters and the outer update's state, e.g.
multitask's L-BFGS leaves and ``optimizer.state_dict()``) and the state of the generator that draws
each step's tasks. Tensors are stored as arrays; everything else (scalars, the history, the structure
of the state) as a JSON string in a 0-d unicode array, so ``np.load(..., allow_pickle=False)`` reads
it. Restoring writes the stored values into a freshly built state (:func:`metarep.train.build` of the
same config): tensors in place, as an optimizer may hold them, optimizers through ``load_state_dict``.

A checkpoint is verified like a finished run: it carries the sha256 of all its arrays (names, dtypes,
shapes and bytes, the step and the history included), and :func:`load` refuses one whose content does
not match it, one that cannot be read at all (truncated, empty, flipped bytes) and one written before
checkpoints carried a digest, with :class:`CheckpointError` saying which.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from .config import identity_of


def identity_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """``section.key A != B`` for each key whose value differs between the identities of two config dicts."""
    a, b = identity_of(a), identity_of(b)
    out = []
    for section in sorted(set(a) | set(b)):
        va, vb = a.get(section) or {}, b.get(section) or {}
        for key in sorted(set(va) | set(vb)):
            if va.get(key) != vb.get(key):
                out.append(f"{section}.{key} {va.get(key)} != {vb.get(key)}")
    return out


CHECKPOINT = "checkpoint.npz"  # its name in a run folder
VERSION = 2  # 2: with a digest (version 1 had none)
DIGEST = "digest"  # the array holding the sha256 of all the others


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, damaged, edited, of another version, or one that does
    not fit the run's state. The message names the file and what is wrong."""


class Checkpoint(NamedTuple):
    """A checkpoint read back: ``state`` is the encoded training state, ``arrays`` its tensors."""

    step: int
    history: list[dict[str, float]]
    config: dict[str, Any]
    state: Any
    arrays: dict[str, np.ndarray]
    rng: np.ndarray | None  # the data generator's state (uint8), None without one


def _encode(obj: Any, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """``obj`` as JSON, its tensors put into ``arrays`` (named ``t0``, ``t1``, ...)."""
    if isinstance(obj, torch.Tensor):
        name = f"t{len(arrays)}"
        arrays[name] = obj.detach().cpu().numpy()
        return {"t": "tensor", "v": name}
    if isinstance(obj, torch.optim.Optimizer):
        return {"t": "optimizer", "v": _encode(obj.state_dict(), arrays)}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return {"t": "namedtuple", "v": [_encode(x, arrays) for x in obj]}
    if isinstance(obj, (list, tuple)):
        return {"t": type(obj).__name__, "v": [_encode(x, arrays) for x in obj]}
    if isinstance(obj, dict):
        return {"t": "dict", "v": [[_encode(k, arrays), _encode(v, arrays)] for k, v in obj.items()]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"t": "value", "v": obj}
    raise TypeError(f"checkpoint: cannot store a {type(obj).__name__}")


def _restore(template: Any, enc: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    """The value encoded in ``enc``, written into ``template`` where it has one (tensors in place)."""
    kind, v = enc["t"], enc["v"]
    if kind == "tensor":
        data = torch.from_numpy(arrays[v].copy())
        if not isinstance(template, torch.Tensor):
            return data
        with torch.no_grad():
            template.copy_(data)
        return template
    if kind == "optimizer":
        template.load_state_dict(_restore(None, v, arrays))
        return template
    if kind in ("namedtuple", "list", "tuple"):
        like = list(template) if isinstance(template, (list, tuple)) and len(template) == len(v) else [None] * len(v)
        items = [_restore(t, e, arrays) for t, e in zip(like, v)]
        return type(template)(*items) if kind == "namedtuple" else (tuple(items) if kind == "tuple" else items)
    if kind == "dict":
        return {_restore(None, k, arrays): _restore(None, x, arrays) for k, x in v}
    return v


def to_bytes(
    state: Any,
    step: int,
    history: list[dict[str, float]],
    config: dict[str, Any],
    rng: torch.Tensor | None,
) -> bytes:
    """The checkpoint of ``state`` after ``step``, as the bytes of an ``.npz`` file (write them with
    :func:`metarep.files.atomic_write_bytes`)."""
    arrays: dict[str, np.ndarray] = {}
    encoded = _encode(state, arrays)
    if rng is not None:
        arrays["rng"] = rng.cpu().numpy()
    meta = {"version": VERSION, "step": step, "history": history, "config": config, "state": encoded}
    arrays["meta"] = np.array(json.dumps(meta))
    arrays[DIGEST] = np.array(digest(arrays))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 of ``arrays`` but :data:`DIGEST`: each one's name, dtype, shape and bytes, by name."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        if name == DIGEST:
            continue
        a = np.ascontiguousarray(arrays[name])
        h.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _read(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` file ``path``, read without unpickling; :class:`CheckpointError` when
    it cannot be read (empty, truncated, a damaged zip or array: ``np.load`` and ``zipfile`` raise many
    kinds of errors for those). A missing or unreadable file raises its ``OSError``."""
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise CheckpointError(f"{path}: damaged checkpoint (the file is empty)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # BadZipFile, zlib.error, EOFError, ValueError, ...: any of them means damaged
        raise CheckpointError(f"{path}: damaged checkpoint ({_last_line(e)})") from None


def _last_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1]}" if text else type(e).__name__


def load(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint (no unpickling). :class:`CheckpointError` when it is damaged (cannot
    be read, or its content does not match its digest), has no digest (written by an older version), or
    is not a metarep checkpoint; ``OSError`` when the file cannot be opened."""
    arrays = _read(path)
    if "meta" not in arrays:
        raise CheckpointError(f"{path}: not a metarep checkpoint (no meta)")
    if DIGEST not in arrays:
        raise CheckpointError(f"{path}: a checkpoint without a digest (written by an older metarep) cannot be verified")
    if str(arrays.pop(DIGEST)[()]) != digest(arrays):
        raise CheckpointError(f"{path}: damaged or edited checkpoint (its content does not match its digest)")
    try:
        meta = json.loads(str(arrays.pop("meta")[()]))
        ok = meta.get("version") == VERSION and isinstance(meta["step"], int) and meta["step"] >= 0
        ok = ok and isinstance(meta["history"], list) and isinstance(meta["config"], dict) and "state" in meta
    except (ValueError, AttributeError, KeyError, TypeError):
        ok = False
    if not ok:
        raise CheckpointError(f"{path}: not a metarep checkpoint of version {VERSION}")
    rng = arrays.pop("rng", None)
    return Checkpoint(meta["step"], meta["history"], meta["config"], meta["state"], arrays, rng)


def restore(ck: Checkpoint, state: Any, generator: torch.Generator | None) -> Any:
    """The training state of ``ck`` written into ``state`` (as built for the same config); the data
    generator set to its stored state. :class:`CheckpointError` when they do not fit."""
    if (ck.rng is None) != (generator is None):
        raise CheckpointError("checkpoint: its data generator does not match this run's")
    try:
        if generator is not None:
            generator.set_state(torch.from_numpy(ck.rng.copy()))
        return _restore(state, ck.state, ck.arrays)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:  # a state of another shape or layout
        raise CheckpointError(f"checkpoint: it does not fit this run's state ({_last_line(e)})") from None
