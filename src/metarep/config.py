"""Run configuration: frozen dataclasses, TOML loading, ``--set`` overrides and validation.

This module is the one place that says what a valid run is. Every invalid value raises
:class:`ConfigError` with a one-line message naming the key and what is allowed; the CLI turns it
into exit code 2.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .runtime import MAX_THREADS, check_device

IMPLS = ("closed_form", "autodiff")
OPTIMIZERS = ("lbfgs", "gd")
TASK_COVS = ("identity", "linear")
DTYPES = ("float32", "float64")
INF = "inf"


class ConfigError(ValueError):
    """An invalid configuration value; the message names the key and what is allowed."""


@dataclass(frozen=True)
class TaskConfig:
    """Ground truth of the task distribution (MATH.md §1)."""

    d: int = 50
    k: int = 5
    sigma2: float = 4.0
    task_cov: str = "linear"
    task_cov_trace: float | None = None  # None -> k


@dataclass(frozen=True)
class ModelConfig:
    """Two-layer linear network f(x) = xᵀ B w with B ∈ R^{d×width} (MATH.md §2)."""

    width: int | None = None  # None -> d (the paper's overparametrized setting)
    init_scale: float = 1.0  # B_0 entries ~ N(0, init_scale² / d)
    kind: str = "linear"  # "linear", "relu2" (wᵀrelu(Bᵀx)) or "relu3" (wᵀrelu(Cᵀrelu(Bᵀx)))


@dataclass(frozen=True)
class MethodConfig:
    """Meta-learning method and its step sizes (MATH.md §3)."""

    name: str = "fo_anil"
    alpha: float = 0.1
    beta: float = 0.5  # outer step; Reptile's interpolation; multitask's step with optimizer = "gd"
    inner_steps: int = 1
    impl: str = "closed_form"  # or "autodiff" (torch.func) for the meta-learning methods
    optimizer: str = "lbfgs"  # multitask only: "lbfgs" or "gd"
    balance: float = 1.0  # multitask only: weight λ of the balancing term (λ/8)‖BᵀB − WᵀW‖²


@dataclass(frozen=True)
class DataConfig:
    """How tasks are presented: a fixed pool, fresh tasks every step, or infinitely many."""

    tasks: int | str = 5000  # an int N, or "inf" for the exact infinite-task regime
    m_in: int = 20
    m_out: int = 10
    task_batch: int | None = None  # tasks per step from the pool; None -> full batch
    fresh: bool = False  # draw `tasks` new tasks every step instead of a fixed pool

    def __post_init__(self) -> None:
        if isinstance(self.tasks, float) and self.tasks == math.inf:  # DataConfig(tasks=math.inf) in Python
            object.__setattr__(self, "tasks", INF)


@dataclass(frozen=True)
class RunConfig:
    """Length, evaluation cadence, seed and numerics of a run."""

    steps: int = 3000
    seed: int = 0
    eval_every: int = 10
    dtype: str = "float32"
    device: str = "cpu"
    checkpoint_every: int = 1000  # steps between checkpoints of `metarep run`; 0: none (not part of the identity)
    threads: int = 0  # torch intra-op threads (0: chosen for the step's size, metarep.runtime); not identity


@dataclass(frozen=True)
class Config:
    """A whole run. Build it with :func:`load_config`; it is validated on construction."""

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        validate(self)

    # Resolved values (defaults that depend on other keys).
    @property
    def width(self) -> int:
        """Width k' of the representation (defaults to d)."""
        return self.task.d if self.model.width is None else self.model.width

    @property
    def cov_trace(self) -> float:
        """tr Σ* (defaults to k)."""
        t = self.task.task_cov_trace
        return float(self.task.k) if t is None else float(t)

    @property
    def infinite(self) -> bool:
        """True in the exact infinite-task regime."""
        return self.data.tasks == INF

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict with the resolved width and trace filled in."""
        out = dataclasses.asdict(self)
        out["model"]["width"] = self.width
        out["task"]["task_cov_trace"] = self.cov_trace
        return out

    def identity(self) -> dict[str, dict[str, Any]]:
        """:meth:`to_dict` without the keys that do not change a run's result (:data:`NOT_IDENTITY`)."""
        return identity_of(self.to_dict())

    def digest(self) -> str:
        """Short stable hash of the resolved config's :meth:`identity` (names run directories)."""
        blob = json.dumps(self.identity(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:10]


NOT_IDENTITY = (("run", "checkpoint_every"), ("run", "threads"))  # how a run is carried out, not what it computes


def identity_of(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict (as :meth:`Config.to_dict` writes it) without the keys of :data:`NOT_IDENTITY`."""
    out = {section: dict(values) if isinstance(values, dict) else values for section, values in config.items()}
    for section, key in (k for k in NOT_IDENTITY if isinstance(out.get(k[0]), dict)):
        out[section].pop(key, None)
    return out


SECTIONS: dict[str, type] = {
    "task": TaskConfig,
    "model": ModelConfig,
    "method": MethodConfig,
    "data": DataConfig,
    "run": RunConfig,
}


# --------------------------------------------------------------------------------------------
# validation


INT_MAX = 2**63 - 1  # the largest TOML integer (64-bit signed): beyond it, a value is a typo, not a setting


def _int(key: str, v: Any, lo: int | None = 1, allow_none: bool = False) -> None:
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{key}: must be an integer, got {_one_line(repr(v), 60)}")
    if lo is not None and v < lo:
        raise ConfigError(f"{key}: must be an integer >= {lo}, got {_one_line(str(v), 60)}")
    if v > INT_MAX:
        raise ConfigError(f"{key}: must be an integer <= 2**63 - 1 (a 64-bit integer), got {_one_line(str(v), 60)}")


def _float(key: str, v: Any, positive: bool = True, allow_zero: bool = False) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not _finite(v):
        raise ConfigError(f"{key}: must be a finite number, got {_one_line(repr(v), 60)}")
    if positive and (v < 0 or (v == 0 and not allow_zero)):
        allowed = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{key}: must be a number {allowed}, got {v}")


def _finite(v: int | float) -> bool:
    try:
        return math.isfinite(float(v))
    except OverflowError:  # an integer beyond the float range
        return False


def _choice(key: str, v: Any, allowed: tuple[str, ...]) -> None:
    if v not in allowed:
        raise ConfigError(f"{key}: must be one of {', '.join(allowed)}; got {v!r}")


def validate(cfg: Config) -> None:
    """Raise :class:`ConfigError` naming the first invalid key."""
    for check in (_check_task, _check_model, _check_method, _check_data, _check_run, _check_method_fits):
        check(cfg)


def _check_task(cfg: Config) -> None:
    t = cfg.task
    _int("task.d", t.d)
    _int("task.k", t.k)
    if t.k > t.d:
        raise ConfigError(f"task.k: must be <= task.d ({t.d}), got {t.k}")
    _float("task.sigma2", t.sigma2, allow_zero=True)
    _choice("task.task_cov", t.task_cov, TASK_COVS)
    if t.task_cov_trace is not None:
        _float("task.task_cov_trace", t.task_cov_trace)


def _check_model(cfg: Config) -> None:
    from .methods.registry import MODEL_KINDS

    mo = cfg.model
    _int("model.width", mo.width, allow_none=True)
    _float("model.init_scale", mo.init_scale, allow_zero=True)
    _choice("model.kind", mo.kind, MODEL_KINDS)


def _check_method(cfg: Config) -> None:
    from .methods import registry  # the methods a run can use (loads torch on first use)

    me = cfg.method
    try:
        allowed = registry.names(harness=True)
    except registry.PluginError as e:  # a module named in METAREP_PLUGINS
        raise ConfigError(str(e)) from None
    _choice("method.name", me.name, allowed)
    _float("method.alpha", me.alpha)
    _float("method.beta", me.beta)
    _int("method.inner_steps", me.inner_steps)
    _choice("method.impl", me.impl, IMPLS)
    _choice("method.optimizer", me.optimizer, OPTIMIZERS)
    _float("method.balance", me.balance, allow_zero=True)


def _check_data(cfg: Config) -> None:
    da = cfg.data
    if da.tasks != INF:
        _int("data.tasks", da.tasks)
    _int("data.m_in", da.m_in)
    _int("data.m_out", da.m_out)
    _int("data.task_batch", da.task_batch, allow_none=True)
    if not isinstance(da.fresh, bool):
        raise ConfigError(f"data.fresh: must be true or false, got {da.fresh!r}")
    if da.tasks == INF:
        if da.fresh or da.task_batch is not None:
            raise ConfigError('data.tasks: "inf" cannot be combined with data.fresh or data.task_batch')
    elif da.task_batch is not None:
        if da.fresh:
            raise ConfigError("data.task_batch: not used with data.fresh (set data.tasks to the tasks per step)")
        if da.task_batch > da.tasks:
            raise ConfigError(f"data.task_batch: must be <= data.tasks ({da.tasks}), got {da.task_batch}")


def _check_run(cfg: Config) -> None:
    r = cfg.run
    _int("run.steps", r.steps, lo=0)
    _int("run.seed", r.seed, lo=0)
    _int("run.eval_every", r.eval_every)
    _int("run.checkpoint_every", r.checkpoint_every, lo=0)
    _int("run.threads", r.threads, lo=0)
    if r.threads > MAX_THREADS:
        raise ConfigError(f"run.threads: must be an integer <= {MAX_THREADS} (0: chosen for the work), got {r.threads}")
    _choice("run.dtype", r.dtype, DTYPES)
    try:
        check_device(r.device)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def regime(cfg: Config) -> str:
    """How the run sees tasks: ``infinite``, ``fresh``, ``minibatch`` (from a pool) or ``finite``."""
    da = cfg.data
    if da.tasks == INF:
        return "infinite"
    return "fresh" if da.fresh else ("minibatch" if da.task_batch is not None else "finite")


def _check_method_fits(cfg: Config) -> None:
    """The method's spec supports the regime and the model kind (:mod:`metarep.methods.registry`)."""
    from .methods import registry

    spec, kind, where = registry.get(cfg.method.name), cfg.model.kind, regime(cfg)
    if kind != "linear" and where == "infinite":
        raise ConfigError(f'data.tasks: "inf" needs model.kind = "linear" (got {kind!r}); use an integer')
    if not spec.runs_in(where):
        if where == "infinite" and "finite" in spec.regimes and spec.is_meta:
            raise ConfigError(f"method.name: {spec.name!r} has no infinite-task update; use data.tasks = N")
        raise ConfigError(
            f"data.tasks: method {spec.name} needs a fixed pool of N tasks, full batch "
            "(an integer data.tasks, data.fresh = false, no data.task_batch)"
        )
    if kind not in spec.models:
        able = [s.name for s in registry.specs(harness=True) if kind in s.models]
        raise ConfigError(f"method.name: model.kind = {kind!r} runs {', '.join(able[:-1])} or {able[-1]}")


# --------------------------------------------------------------------------------------------
# loading


def _normalise(section: str, key: str, v: Any) -> Any:
    """Map TOML spellings onto config values (``tasks = "inf"`` or ``inf``; ints given as floats)."""
    if section == "data" and key == "tasks":
        if v == INF or (isinstance(v, float) and math.isinf(v) and v > 0):
            return INF
        if isinstance(v, str):
            raise ConfigError(f'data.tasks: must be a positive integer or "inf", got {v!r}')
    if isinstance(v, float) and v.is_integer() and _field_is_int(section, key):
        return int(v)
    return v


def _field_is_int(section: str, key: str) -> bool:
    f = {f.name: f for f in dataclasses.fields(SECTIONS[section])}[key]
    return "int" in str(f.type) and "float" not in str(f.type)


def parse_set(item: str) -> tuple[str, str, Any]:
    """Parse one ``section.key=value`` override; the value is read as TOML, else as a string."""
    if "=" not in item or "." not in item.split("=", 1)[0]:
        raise ConfigError(f"--set: expected section.key=value, got {item!r}")
    lhs, raw = item.split("=", 1)
    section, key = lhs.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except ValueError:  # TOMLDecodeError, or an integer of more than 4300 digits
        value = raw.strip()
    return section, key, value


def from_dict(raw: dict[str, Any]) -> Config:
    """Build and validate a :class:`Config` from nested ``{section: {key: value}}``."""
    parts: dict[str, Any] = {}
    for section, values in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"{_name(section)}: unknown section; allowed: {', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{_name(section)}: must be a table of keys")
        names = [f.name for f in dataclasses.fields(SECTIONS[section])]
        for key in values:
            if key not in names:
                raise ConfigError(f"{section}.{_name(key)}: unknown key; allowed: {', '.join(names)}")
        parts[section] = SECTIONS[section](**{k: _normalise(section, k, v) for k, v in values.items()})
    try:
        return Config(**parts)
    except TypeError as e:  # pragma: no cover - guarded by the key check above
        raise ConfigError(str(e)) from None


def read_toml(path: str | Path, what: str = "config") -> dict[str, Any]:
    """A TOML file as a dict; :class:`ConfigError` (one line, naming ``what``) for any unreadable file."""
    p = Path(path)
    try:
        if not p.is_file():
            raise ConfigError(f"{what}: file not found: {p}")
        text = p.read_bytes().decode("utf-8")
        return tomllib.loads(text)
    except ConfigError:
        raise
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what}: {p} is not UTF-8 text (byte {e.start}); a config is a TOML text file") from None
    except ValueError as e:  # TOMLDecodeError, or an integer of more than 4300 digits
        raise ConfigError(f"{what}: malformed TOML in {p}: {_one_line(str(e))}") from None
    except OSError as e:  # too long a name, a folder, no permission, ...
        raise ConfigError(f"{what}: cannot read {_one_line(str(p), 200)}: {e.strerror or e}") from None


def _name(name: Any) -> str:
    """A key as written, or its repr when it is empty or holds spaces or control characters."""
    text = str(name)
    return text if text.isprintable() and text.strip() == text and text else _one_line(repr(name), 80)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def as_config(cfg: Any, what: str = "cfg") -> Config:
    """``cfg`` as a :class:`Config`: a config as it is, a path (str or :class:`~pathlib.Path`) read with
    :func:`load_config`; anything else raises ``TypeError`` naming ``what``."""
    if isinstance(cfg, Config):
        return cfg
    if isinstance(cfg, (str, Path)):
        return load_config(cfg)
    raise TypeError(
        f"{what}: expected a metarep.Config or the path of a TOML config (str or pathlib.Path), "
        f"got {type(cfg).__name__}"
    )


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read an optional TOML file, apply ``section.key=value`` overrides, validate.

    With no file the defaults are the paper's setting (MATH.md §7) with FO-ANIL.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_toml(path)
    for item in overrides:
        section, key, value = parse_set(item)
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"{_name(section)}: must be a table of keys")
        raw[section][key] = value
    return from_dict(raw)
