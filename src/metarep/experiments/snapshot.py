"""Snapshots of an experiment's aggregate: the numbers its figure is drawn from, as JSON.

:func:`~metarep.experiments.framework.present` writes ``NAME.json`` beside ``NAME.png``; :func:`load`
reads it back into the same objects (dataclasses, named tuples, numpy arrays, configs), so that
:func:`~metarep.experiments.framework.redraw` can draw the figure again with today's plotting code
without the runs. The documentation's figures are drawn this way from committed snapshots.

The encoding is plain JSON with a few tagged objects: ``{"__array__": [...], "dtype": ...}``,
``{"__tuple__": [...]}``, ``{"__dict__": [[key, value], ...]}`` (a dict whose keys are not all
strings), ``{"__float__": "nan"}`` (and the infinities), ``{"__config__": {...}}`` and
``{"__class__": "module:Name", "fields": {...}}`` for a dataclass or named tuple of metarep (no other
class is ever imported).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config, from_dict
from ..files import atomic_write_bytes

FORMAT = 1  # bumped when the encoding changes


def _num(x: float) -> Any:
    """A float JSON can hold: nan and infinities as ``{"__float__": "nan"}`` (``"inf"``, ``"-inf"``)."""
    return x if math.isfinite(x) else {"__float__": str(x)}


def encode(obj: Any) -> Any:
    """``obj`` as JSON-ready data (see the module's docstring)."""
    if isinstance(obj, Config):
        return {"__config__": obj.to_dict()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        return {"__class__": _class_name(obj), "fields": fields}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a named tuple
        return {"__class__": _class_name(obj), "fields": {k: encode(v) for k, v in zip(obj._fields, obj)}}
    if isinstance(obj, np.ndarray):
        flat = [_num(float(v)) if obj.dtype.kind == "f" else v for v in obj.ravel().tolist()]
        return {"__array__": flat, "shape": list(obj.shape), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return encode(obj.item())
    if isinstance(obj, float):
        return _num(obj)
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v) for v in obj]}
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: encode(v) for k, v in obj.items()}
        return {"__dict__": [[encode(k), encode(v)] for k, v in obj.items()]}
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    raise TypeError(f"snapshot: cannot encode a {type(obj).__name__}")


def decode(data: Any) -> Any:
    """The objects :func:`encode` was given."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "__float__" in data:
        return float(data["__float__"])
    if "__config__" in data:
        return from_dict(data["__config__"])
    if "__array__" in data:
        values = [float(v["__float__"]) if isinstance(v, dict) else v for v in data["__array__"]]
        return np.array(values, dtype=data["dtype"]).reshape(data["shape"])
    if "__tuple__" in data:
        return tuple(decode(v) for v in data["__tuple__"])
    if "__dict__" in data:
        return {_hashable(decode(k)): decode(v) for k, v in data["__dict__"]}
    if "__class__" in data:
        cls = _import_class(data["__class__"])
        fields = {k: decode(v) for k, v in data["fields"].items()}
        if dataclasses.is_dataclass(cls):
            init = {f.name for f in dataclasses.fields(cls) if f.init}
            obj = cls(**{k: v for k, v in fields.items() if k in init})
            for k, v in fields.items():
                if k not in init:
                    object.__setattr__(obj, k, v)
            return obj
        return cls(**fields)
    return {k: decode(v) for k, v in data.items()}


def save(path: str | Path, experiment: str, aggregate: Any) -> None:
    """Write the snapshot of ``experiment``'s ``aggregate`` to ``path`` (atomically)."""
    doc = {"format": FORMAT, "experiment": experiment, "aggregate": encode(aggregate)}
    atomic_write_bytes(Path(path), json.dumps(doc, separators=(",", ":")).encode())


def load(path: str | Path) -> tuple[str, Any]:
    """``(experiment name, aggregate)`` of the snapshot at ``path``. Raises ``ValueError`` if it is not one."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or "experiment" not in doc:
        raise ValueError(f"{path}: not a metarep figure snapshot (format {FORMAT})")
    return doc["experiment"], decode(doc["aggregate"])


def _class_name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def _import_class(name: str) -> type:
    module, _, qualname = name.partition(":")
    if module.split(".")[0] != "metarep":
        raise ValueError(f"snapshot: refuses to import {name} (only metarep's own classes)")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key
