"""Size limits checked before anything is allocated: one-line errors instead of allocator tracebacks.

Each ``check_*`` estimates from the settings of a command the bytes it will hold at once (the task
pool in its layout, a chunk of fresh tasks, the model, an evaluation chunk, a few-shot batch) and
compares them with the memory available now; task counts that would take hours are refused
whatever the memory. A refusal raises :class:`LimitError` whose message names the key to lower,
the estimate and the limit; the CLI prints it as ``error: ...`` with exit code 2.

Pure Python: nothing here imports torch. The estimates are deliberately rough (within a small
factor): they exist to refuse ``task.d = 1e10``, not to budget a run to the byte.
"""

from __future__ import annotations

import os

MAX_TASKS = 10**8  # tasks per step, per evaluation or per few-shot batch: beyond this, hours
MAX_NUMBERS = 10**12  # numbers drawn by one evaluation (tasks x samples x d): beyond this, hours
MEMORY_ENV = "METAREP_MEMORY_BYTES"  # overrides the available memory (tests, shared machines)
FLOAT_BYTES = {"float32": 4, "float64": 8}
EVAL_CHUNK_NUMBERS = 2**22  # numbers of inputs per evaluation chunk (metarep.evaluate)
FRESH_CHUNK_NUMBERS = 2**22  # numbers of inputs per chunk of fresh tasks (metarep.tasks.FreshTasks)


class InputError(ValueError):
    """A bad input found after the config was read (sizes, results); the message is one line."""


class LimitError(InputError):
    """A setting whose memory or time would exceed what the machine has; the message names the key."""


def available_bytes() -> int | None:
    """Memory available now: ``$METAREP_MEMORY_BYTES``, else MemAvailable of /proc/meminfo, else sysconf."""
    env = os.environ.get(MEMORY_ENV)
    if env:
        try:
            return int(float(env))
        except ValueError:
            pass
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def fmt_bytes(n: float) -> str:
    """``1.5 GiB``: binary units, three significant digits."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"  # pragma: no cover


def require_memory(need: float, what: str, key: str) -> None:
    """Raise :class:`LimitError` naming ``key`` when ``need`` bytes exceed the available memory."""
    avail = available_bytes()
    if avail is not None and need > avail:
        raise LimitError(
            f"{key}: {what} needs about {fmt_bytes(need)}, more than the {fmt_bytes(avail)} of memory "
            f"available; lower {key}"
        )


def require_count(n: int, key: str, what: str, limit: int = MAX_TASKS) -> None:
    """Raise :class:`LimitError` when a count is beyond ``limit`` (it would take hours)."""
    if n > limit:
        raise LimitError(f"{key}: {n:.3g} {what} would take hours; at most {limit:.0e} are allowed, got {n}")


def _culprit(values: dict[str, float], defaults: dict[str, float]) -> str:
    """The key whose value is furthest above its default (the one a user most likely mistyped)."""
    return max(values, key=lambda k: values[k] / defaults[k])


# --------------------------------------------------------------------------------------------
# metarep run


def run_bytes(cfg) -> dict[str, float]:
    """Bytes the parts of a run of ``cfg`` hold at once: ``truth``, ``model``, ``tasks``."""
    from .methods import pool_layout

    t, da, b = cfg.task, cfg.data, FLOAT_BYTES[cfg.run.dtype]
    d, w, m = t.d, cfg.width, da.m_in + da.m_out
    width_sq = w * w if cfg.model.kind == "relu3" else 0
    parts = {
        "truth": 3.0 * d * t.k * 8 + 2.0 * d * d * b * (cfg.infinite or cfg.model.kind == "linear"),
        "model": 6.0 * (d * w + w + width_sq) * b,  # parameters, gradients, optimizer state, copies
        "tasks": 0.0,
    }
    if cfg.infinite:
        return parts
    if da.fresh:
        chunk = min(da.tasks, max(1, FRESH_CHUNK_NUMBERS // (m * d)))
        parts["tasks"] = 3.0 * chunk * m * (d + 1) * b
        return parts
    layout = pool_layout(cfg)
    per_task = {"gram": 2 * d * d + 2 * d, "dual": 2 * m * (d + 1)}.get(layout, m * (d + 1))
    step = (da.task_batch or da.tasks) * m * (d + 1)  # a step's batch (a copy when minibatching)
    parts["tasks"] = float(da.tasks * per_task + da.tasks * m * (d + 1) + step) * b
    return parts


def check_run(cfg) -> None:
    """Refuse a run of ``cfg`` that would not fit in memory or would take hours; call before building it."""
    da = cfg.data
    if not cfg.infinite:
        require_count(da.tasks, "data.tasks", "tasks" + (" per step" if da.fresh else " in the pool"))
    parts = run_bytes(cfg)
    need = sum(parts.values())
    biggest = max(parts, key=parts.get)
    t = cfg.task
    if biggest == "tasks":
        key = _culprit(
            {"data.tasks": da.tasks, "task.d": t.d, "data.m_in": da.m_in, "data.m_out": da.m_out},
            {"data.tasks": 5000, "task.d": 50, "data.m_in": 20, "data.m_out": 10},
        )
        what = "the run (mostly its tasks)"
    elif biggest == "model":
        key = _culprit({"task.d": t.d, "model.width": cfg.width}, {"task.d": 50, "model.width": 50})
        what = "the run (mostly its model)"
    else:
        key, what = "task.d", "the run (mostly the d x d ground truth and metrics)"
    require_memory(need, f"{what} in {cfg.run.dtype}", key)


# --------------------------------------------------------------------------------------------
# metarep evaluate


def check_evaluate(d: int, m_test, n_tasks: int, test_points: int = 0) -> None:
    """Refuse an evaluation of ``n_tasks`` tasks with ``max(m_test)`` samples (and ``test_points`` test
    points each) in dimension ``d`` beyond limits. The messages name the ``m`` asked for."""
    m_max = max(m_test)
    m = m_max + test_points  # samples drawn per task
    samples = f"m = {m_max} samples" + (f" (+ {test_points} test points)" if test_points else "")
    require_count(n_tasks, "--tasks", "new tasks")
    chunk = min(n_tasks, max(1, EVAL_CHUNK_NUMBERS // (m * d)))
    require_memory(4.0 * chunk * m * (d + 1) * 8, f"a chunk of {chunk} task(s) with {samples} in d = {d}", "--m-test")
    drawn = n_tasks * m * d
    if drawn > MAX_NUMBERS:
        key = "--tasks" if n_tasks / 2000 > m / 100 else "--m-test"
        raise LimitError(
            f"{key}: {n_tasks} tasks x {samples} x d = {d} is {drawn:.3g} numbers, which would take hours; "
            f"at most {MAX_NUMBERS:.0e} are allowed; lower {key}"
        )


# --------------------------------------------------------------------------------------------
# metarep fewshot


def check_sinusoid(cfg) -> None:
    """Refuse a sinusoid benchmark whose batch of tasks or test set would not fit in memory."""
    require_count(cfg.meta_batch, "--meta-batch", "tasks per outer step")
    require_count(cfg.test_tasks, "--test-tasks", "test tasks")
    h = cfg.hidden
    params = h * h + 4 * h + 1
    points = 2 * max(cfg.shots)
    inner = max(cfg.inner_steps, cfg.reptile_inner_steps) + 2
    batch = 4.0 * cfg.meta_batch * (points * (2 * h + 2) * 3 + params * inner * 2)
    require_memory(batch, f"a batch of {cfg.meta_batch} tasks (--hidden {h})", "--meta-batch")
    queries = max(cfg.shots) if cfg.test_queries is None else cfg.test_queries  # None: K
    test = 4.0 * cfg.test_tasks * (queries + max(cfg.shots)) * (2 * h + 2) * 3
    require_memory(test, f"{cfg.test_tasks} test tasks of {queries} queries", "--test-tasks")


def check_episodes(cfg, image_numbers: int) -> None:
    """Refuse a digits/images benchmark whose batch of episodes or test set would not fit in memory.

    ``image_numbers``: numbers per image (channels x height x width).
    """
    require_count(cfg.meta_batch, "--meta-batch", "episodes per outer step")
    require_count(cfg.test_tasks, "--test-tasks", "test episodes")
    per_episode = cfg.ways * (cfg.shots + cfg.queries) * image_numbers
    act = 1 + 2 * cfg.channels  # the inputs and the first conv layers' activations, per pixel
    batch = 4.0 * cfg.meta_batch * per_episode * act * (cfg.inner_steps + 2)
    require_memory(batch, f"a batch of {cfg.meta_batch} episodes", "--meta-batch")
    require_memory(4.0 * cfg.test_tasks * per_episode * 2, f"{cfg.test_tasks} test episodes", "--test-tasks")
