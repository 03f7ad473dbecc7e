"""The spec of a sweep (``metarep sweep``): a TOML file, validated whole before any run starts.

A spec names an optional base config, fixed overrides (``[set]``), a grid (the product of
``[grid]``'s lists), seeds and an optional evaluation::

    base = "configs/paper.toml"
    seeds = [0, 1, 2]
    [set]
    "run.steps" = 500
    [grid]
    "model.width" = [3, 5, 50]
    "data.tasks" = [1000, 5000]
    [evaluate]
    m_test = [10, 20]

Every run is a :class:`~metarep.experiments.runner.RunSpec` whose overrides hold the base file's
entries, then ``[set]``, then the grid point (never the base's path: workers may not share a
filesystem). :mod:`.sweep` runs them; any bad input raises :class:`SweepError` with one line
naming the key and what is allowed.
"""

from __future__ import annotations

import functools
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigError, load_config, read_toml
from ..theory import DEFAULT_M_TEST
from .runner import RunSpec

TOP_KEYS = ("base", "seeds", "set", "grid", "evaluate")
EVAL_KEYS = ("m_test", "tasks")
EVAL_TASKS = 2000  # new tasks per m, as `metarep evaluate`


class SweepError(ValueError):
    """An invalid sweep spec; the one-line message names the key and what is allowed."""


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its grid point (``((key, value), ...)``), its seed and its :class:`RunSpec`."""

    point: tuple[tuple[str, Any], ...]
    seed: int
    spec: RunSpec

    def key(self) -> str:
        """The run's folder name in the run store."""
        return _key(self.spec)

    def label(self) -> str:
        """``model.width=5, seed=1``: the run in a message."""
        return ", ".join([*(f"{k}={toml_value(v)}" for k, v in self.point), f"seed={self.seed}"])


@dataclass(frozen=True)
class Sweep:
    """A validated sweep spec.

    ``base_overrides`` are the base file's entries as ``section.key=value``; ``fixed`` those of
    ``[set]``; ``grid`` the keys and their values in the spec's order; ``m_test`` is empty when the
    spec has no ``[evaluate]``.
    """

    base: Path | None
    base_overrides: tuple[str, ...]
    fixed: tuple[str, ...]
    grid: tuple[tuple[str, tuple[Any, ...]], ...]
    seeds: tuple[int, ...]
    m_test: tuple[int, ...] = ()
    eval_tasks: int = EVAL_TASKS

    @property
    def keys(self) -> list[str]:
        return [k for k, _ in self.grid]

    def points(self) -> list[tuple[tuple[str, Any], ...]]:
        """Every grid point, the first key varying slowest (one empty point without a grid)."""
        return [tuple(zip(self.keys, values)) for values in itertools.product(*(v for _, v in self.grid))]

    def runs(self) -> list[SweepRun]:
        """Every run: each grid point with each seed."""
        common = (*self.base_overrides, *self.fixed)
        return [
            SweepRun(point, seed, RunSpec((*common, *overrides(point)), seed, self.m_test, self.eval_tasks))
            for point in self.points()
            for seed in self.seeds
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": None if self.base is None else str(self.base),
            "base_overrides": list(self.base_overrides),
            "set": list(self.fixed),
            "grid": {k: list(v) for k, v in self.grid},
            "seeds": list(self.seeds),
            "evaluate": {"m_test": list(self.m_test), "tasks": self.eval_tasks} if self.m_test else None,
        }


@functools.cache
def _key(spec: RunSpec) -> str:
    return spec.key()


def toml_value(v: Any) -> str:
    """``v`` spelt as a TOML value: strings quoted, booleans lower-case, floats by ``repr`` (``inf``, ``1e-05``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string: the same escapes
    raise TypeError(f"not a scalar: {v!r}")


def show(v: Any) -> str:
    """Any TOML value as it would be written in the spec, for a message: ``[0, true]``, ``{a = 1}``."""
    if isinstance(v, list):
        return "[" + ", ".join(show(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {show(x)}" for k, x in v.items()) + "}"
    try:
        return toml_value(v)
    except TypeError:
        return str(v)


def overrides(point: tuple[tuple[str, Any], ...]) -> tuple[str, ...]:
    """``section.key=value`` override strings of ``(key, value)`` pairs."""
    return tuple(f"{k}={toml_value(v)}" for k, v in point)


def _is_scalar(v: Any) -> bool:
    return isinstance(v, (bool, int, float, str))


# --------------------------------------------------------------------------------------------
# reading and validating a spec


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate the spec at ``path``; raise :class:`SweepError` with one line if it is invalid."""
    path = Path(path)
    return parse_sweep(_read(path, "SPEC"), path.parent)


def _read(path: Path, what: str) -> dict[str, Any]:
    """:func:`~metarep.config.read_toml` (any unreadable file: one line naming ``what``) raising :class:`SweepError`."""
    try:
        return read_toml(path, what)
    except ConfigError as e:
        raise SweepError(str(e)) from None


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long, ...: not a file to read
        return False


def parse_sweep(raw: dict[str, Any], folder: Path = Path(".")) -> Sweep:
    """A :class:`Sweep` from a parsed spec; ``base`` is looked for in ``folder``, then the working directory.

    Every run's config is built (and so validated) before this returns.
    """
    unknown = [k for k in raw if k not in TOP_KEYS]
    if unknown:
        raise SweepError(f"{unknown[0]}: unknown top-level key; allowed: {', '.join(TOP_KEYS)}")
    base, base_overrides = _base(raw.get("base"), folder)
    fixed = _entries("set", raw.get("set", {}))
    grid = _entries("grid", raw.get("grid", {}))
    for key, value in fixed:
        if isinstance(value, list):
            raise SweepError(
                f'set "{key}": takes one value, got the list {show(value)}; a list of values to run belongs in [grid]'
            )
        _check_scalar("set", key, value)
    for key, values in grid:
        _check_grid_values(key, values)
    _check_keys(fixed, grid)
    m_test, eval_tasks = _evaluate(raw.get("evaluate"))
    sweep = Sweep(
        base=base,
        base_overrides=base_overrides,
        fixed=overrides(tuple(fixed)),
        grid=tuple((k, tuple(v)) for k, v in grid),
        seeds=_seeds(raw.get("seeds", [0])),
        m_test=m_test,
        eval_tasks=eval_tasks,
    )
    check_configs(sweep)
    return sweep


def _base(value: Any, folder: Path) -> tuple[Path | None, tuple[str, ...]]:
    if value is None:
        return None, ()
    if not isinstance(value, str) or not value:
        raise SweepError(f"base: must be the path of a config file (a string), got {show(value)}")
    given = Path(value)
    candidates = [given] if given.is_absolute() else [folder / given, given]
    path = next((p for p in candidates if _is_file(p)), None)
    if path is None:
        where = " or ".join(str(p) for p in dict.fromkeys(candidates))
        raise SweepError(f"base: file not found: {where} (looked in the spec's folder, then the working directory)")
    entries = _entries(f"base {path}", _read(path, "base"))
    for key, v in entries:
        _check_scalar(f"base {path}", key, v)
    return path, overrides(tuple(entries))


def _entries(where: str, table: Any) -> list[tuple[str, Any]]:
    """``section.key`` entries of a table, written either ``"model.width" = 3`` or ``model.width = 3``."""
    if not isinstance(table, dict):
        raise SweepError(f"{where}: must be a table of section.key entries, got {show(table)}")
    out: list[tuple[str, Any]] = []
    for k, v in table.items():
        nested = isinstance(v, dict) and "." not in k  # [set.model] or model.width = ..., not "model.width" = {..}
        pairs = [(f"{k}.{kk}", vv) for kk, vv in v.items()] if nested else [(k, v)]
        for key, value in pairs:
            section, _, name = key.partition(".")
            if not section or not name or "." in name:
                raise SweepError(f'{where} "{key}": expected a config key section.key, e.g. "model.width"')
            if any(key == seen for seen, _ in out):
                raise SweepError(f'{where} "{key}": given twice')
            out.append((key, value))
    return out


def _check_scalar(where: str, key: str, value: Any) -> None:
    if not _is_scalar(value):
        raise SweepError(f'{where} "{key}": must be a number, a string or a boolean, got {show(value)}')


def _check_grid_values(key: str, values: Any) -> None:
    if not isinstance(values, list):
        example = show(values) if _is_scalar(values) else "3, 5"
        raise SweepError(f'grid "{key}": must be a list of values, e.g. [{example}], got {show(values)}')
    if not values:
        raise SweepError(f'grid "{key}": empty list; give at least one value')
    for v in values:
        _check_scalar("grid", key, v)
    seen = [toml_value(v) for v in values]
    dup = next((s for i, s in enumerate(seen) if s in seen[:i]), None)
    if dup is not None:
        raise SweepError(f'grid "{key}": the value {dup} is given twice')


def _check_keys(fixed: list[tuple[str, Any]], grid: list[tuple[str, Any]]) -> None:
    for where, entries in (("set", fixed), ("grid", grid)):
        if any(k == "run.seed" for k, _ in entries):
            raise SweepError(f'{where} "run.seed": give the seeds as the top-level list seeds = [0, 1, ...]')
    both = [k for k, _ in grid if k in dict(fixed)]
    if both:
        raise SweepError(f'grid "{both[0]}": also given in [set]; give it in one of them')


def _seeds(value: Any) -> tuple[int, ...]:
    ok = (
        isinstance(value, list)
        and value
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
        and len(set(value)) == len(value)
    )
    if not ok:
        raise SweepError(f"seeds: must be a non-empty list of distinct integers >= 0, got {show(value)}")
    return tuple(value)


def _evaluate(value: Any) -> tuple[tuple[int, ...], int]:
    if value is None:
        return (), EVAL_TASKS
    if not isinstance(value, dict):
        raise SweepError(f"evaluate: must be a table with the keys {', '.join(EVAL_KEYS)}, got {show(value)}")
    unknown = [k for k in value if k not in EVAL_KEYS]
    if unknown:
        raise SweepError(f"evaluate.{unknown[0]}: unknown key; allowed: {', '.join(EVAL_KEYS)}")
    ms = value.get("m_test", list(DEFAULT_M_TEST))
    if not (isinstance(ms, list) and ms and all(_is_int(m) and m >= 1 for m in ms)):
        raise SweepError(f"evaluate.m_test: must be a non-empty list of integers >= 1 (e.g. [10, 20]), got {show(ms)}")
    tasks = value.get("tasks", EVAL_TASKS)
    if not (_is_int(tasks) and tasks >= 2):
        raise SweepError(f"evaluate.tasks: must be an integer >= 2 (a standard error needs two), got {show(tasks)}")
    return tuple(sorted(set(ms))), tasks


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_configs(sweep: Sweep) -> None:
    """Build every run's config; the first invalid one raises :class:`SweepError` naming where it comes from.

    The base file alone, then with ``[set]``, then each grid value on its own (so a bad value is
    named by its key), then every grid point with every seed.
    """
    try:
        load_config(None, sweep.base_overrides)
    except ConfigError as e:
        raise SweepError(f"base {sweep.base}: {e}") from None
    common = (*sweep.base_overrides, *sweep.fixed)
    try:
        load_config(None, common)
    except ConfigError as e:
        raise SweepError(f"set: {e}") from None
    for key, values in sweep.grid:
        for v in values:
            try:
                load_config(None, [*common, f"{key}={toml_value(v)}"])
            except ConfigError as e:
                raise SweepError(f'grid "{key}" = {toml_value(v)}: {e}') from None
    for run in sweep.runs():
        try:
            run.spec.config()
        except ConfigError as e:
            where = ", ".join(f'"{k}" = {toml_value(v)}' for k, v in run.point)
            raise SweepError(f"grid {where}: {e}") from None
