"""Size limits checked before anything is allocated: one-line errors instead of allocator tracebacks.

Each ``check_*`` estimates from the settings of a command the bytes it will hold at once (the task
pool in its layout, a chunk of fresh tasks, the model, an evaluation chunk, a few-shot batch) and
compares them with the memory available now; task counts that would take hours are refused
whatever the memory. A refusal raises :class:`LimitError` whose message names the key to lower,
the estimate and the limit; the CLI prints it as ``error: ...`` with exit code 2.

Time: each command also estimates the numbers it will process in all (``*_numbers``), read as time
at :data:`NUMBERS_PER_SECOND`; more than :data:`MAX_STEPS` steps (or iterations), or more than
:data:`MAX_DAYS` days, is refused unless the caller passes ``--allow-long`` (``allow_long=True`` in
Python) (:func:`require_time`). The pace is fixed, not measured: the same settings are refused on
every machine, and the estimate is a lower bound on a fast one.

Pure Python: nothing here imports torch. The estimates are deliberately rough (within a small
factor): they exist to refuse ``task.d = 1e10`` or ``run.steps = 1e13``, not to budget a run to the byte.
"""

from __future__ import annotations

import os

MAX_TASKS = 10**8  # tasks per step, per evaluation or per few-shot batch: beyond this, hours
MAX_NUMBERS = 10**12  # numbers drawn by one evaluation (tasks x samples x d): beyond this, hours
MEMORY_ENV = "METAREP_MEMORY_BYTES"  # overrides the available memory (tests, shared machines)
FLOAT_BYTES = {"float32": 4, "float64": 8}
# Chunks: the one set of sizes every chunked loop uses (metarep.tasks, metarep.evaluate) and the memory
# estimates below count. The chunks of newly drawn tasks (fresh tasks, evaluation) are part of the
# random stream (each chunk draws its tasks in turn), so their size is fixed, not tuned per machine.
DRAW_CHUNK_NUMBERS = 2**22  # numbers of inputs per chunk of newly drawn tasks (16 MB in float32)
EVAL_CHUNK_NUMBERS = DRAW_CHUNK_NUMBERS  # per evaluation chunk (metarep.evaluate)
FRESH_CHUNK_NUMBERS = DRAW_CHUNK_NUMBERS  # per chunk of fresh tasks (metarep.tasks.FreshTasks)
# A fixed pool's step runs in one chunk when its temporaries fit in ONE_CHUNK_BYTES; a larger one in
# chunks whose temporaries hold POOL_CHUNK_NUMBERS numbers, the size `metarep bench` (its "chunks" table)
# found fastest on a 2-core AMD EPYC with a 32 MB cache. Chunks only change a step's rounding.
ONE_CHUNK_BYTES = 2**28  # 256 MiB
POOL_CHUNK_NUMBERS = 2**22
MAX_STEPS = 10**9  # steps or iterations of one command: more only with --allow-long (allow_long=True)
MAX_DAYS = 7.0  # the estimated time of one command: longer only with --allow-long (allow_long=True)
NUMBERS_PER_SECOND = 1e9  # the pace the time estimates assume (a fast core): they are lower bounds
STEP_OVERHEAD = 1e4  # numbers' worth of fixed cost per step (a Python loop turn, a few kernel launches)
ALLOW_LONG = "--allow-long (allow_long=True in Python)"


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


def days(numbers: float) -> float:
    """The days of work ``numbers`` processed numbers stand for, at :data:`NUMBERS_PER_SECOND`."""
    return numbers / NUMBERS_PER_SECOND / 86400


def _duration(numbers: float) -> str:
    """``at least 3.2 hours`` / ``at least 1.2e+05 days``: the time estimate of ``numbers``, for a message."""
    d = days(numbers)
    return f"at least {d * 24:.3g} hours" if d < 1 else f"at least {d:.3g} days"


def require_time(counts: dict[str, int], numbers: float, key: str, what: str, allow_long: bool = False) -> None:
    """Raise :class:`LimitError` unless ``allow_long``: when a count of ``counts`` (``{key: steps}``) is
    beyond :data:`MAX_STEPS`, or when ``numbers`` (all the work, see the ``*_numbers`` estimates) would
    take more than :data:`MAX_DAYS` days at :data:`NUMBERS_PER_SECOND`; ``key`` is named for the latter."""
    if allow_long:
        return
    bound = f"at most {MAX_STEPS:.0e} steps and {MAX_DAYS:g} days are allowed without {ALLOW_LONG}"
    for k, n in counts.items():
        if n > MAX_STEPS:
            raise LimitError(f"{k}: {n} steps: {what} would take {_duration(numbers)}; {bound}; lower {k}")
    if days(numbers) > MAX_DAYS:
        raise LimitError(
            f"{key}: {what} would take {_duration(numbers)} ({numbers:.3g} numbers at {NUMBERS_PER_SECOND:.0e} "
            f"a second); {bound}; lower {key}"
        )


def _culprit(values: dict[str, float], defaults: dict[str, float]) -> str:
    """The key whose value is furthest above its default (the one a user most likely mistyped)."""
    return max(values, key=lambda k: values[k] / defaults[k])


# --------------------------------------------------------------------------------------------
# metarep run


def pool_chunk(tasks: int, rows: int, d: int, number_bytes: int = 4) -> int:
    """Tasks per chunk of a fixed pool's step of ``tasks`` tasks whose temporaries hold ``rows x d``
    numbers per task: all of them when they fit in :data:`ONE_CHUNK_BYTES`, else chunks of
    :data:`POOL_CHUNK_NUMBERS` numbers (:class:`metarep.tasks.TaskPool`)."""
    if float(tasks) * rows * d * number_bytes <= ONE_CHUNK_BYTES:
        return max(1, tasks)
    return max(1, POOL_CHUNK_NUMBERS // (rows * d))


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
    rows = {"gram": 2 * d, "dual": 1}.get(layout, m)  # temporaries per task and per d (TaskPool)
    temps = min(da.task_batch or da.tasks, pool_chunk(da.task_batch or da.tasks, rows, d, b)) * rows * d
    parts["tasks"] = float(da.tasks * per_task + da.tasks * m * (d + 1) + step + 2 * temps) * b
    return parts


def step_batch_numbers(cfg) -> float:
    """Numbers of the inputs one step of a run of ``cfg`` reads (tasks x samples x d; with infinitely many
    tasks the ``d x d`` second moment): the size that picks its threads (:func:`metarep.runtime.choose_threads`)."""
    t, da = cfg.task, cfg.data
    if cfg.infinite:
        return float(t.d) * t.d
    return float(da.tasks if da.fresh else (da.task_batch or da.tasks)) * (da.m_in + da.m_out) * t.d


def step_numbers(cfg) -> float:
    """Numbers one step of a run of ``cfg`` processes: the step's tasks through the model
    (``method.inner_steps`` + 1 passes) or, with infinitely many tasks, the ``d x d`` expected update."""
    t, da = cfg.task, cfg.data
    d, w = t.d, cfg.width
    per_sample = d + w if cfg.model.kind == "linear" else d * w + w * w * (cfg.model.kind == "relu3")
    if cfg.infinite:
        return float(d) * d * w
    per_task = (da.m_in + da.m_out) * per_sample * (cfg.method.inner_steps + 1)
    return float(da.tasks if da.fresh else (da.task_batch or da.tasks)) * per_task


def run_numbers(cfg) -> float:
    """Numbers a run of ``cfg`` processes in all (its time estimate): every step (:func:`step_numbers`);
    the metrics at every evaluation; a fixed cost per step."""
    t, steps = cfg.task, cfg.run.steps
    metrics = (steps // cfg.run.eval_every + 2) * float(t.d) * cfg.width * (t.k + cfg.width)
    return steps * (step_numbers(cfg) + STEP_OVERHEAD) + metrics


def check_run(cfg, allow_long: bool = False) -> None:
    """Refuse a run of ``cfg`` that would not fit in memory, or (unless ``allow_long``) take more than
    :data:`MAX_STEPS` steps or :data:`MAX_DAYS` days; call before building it."""
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
    slow = _culprit(
        {
            "run.steps": cfg.run.steps,
            "data.tasks": 0 if cfg.infinite else da.tasks,
            "task.d": t.d,
            "method.inner_steps": cfg.method.inner_steps,
        },
        {"run.steps": 3000, "data.tasks": 5000, "task.d": 50, "method.inner_steps": 1},
    )
    require_time({"run.steps": cfg.run.steps}, run_numbers(cfg), slow, "the run", allow_long)


# --------------------------------------------------------------------------------------------
# metarep evaluate


def evaluate_numbers(d: int, width: int, m_test, n_tasks: int, steps: int = 1) -> float:
    """Numbers an evaluation processes in all (its time estimate): per new task and ``m``, the features
    ``X B`` and ``steps`` head steps of the learned and the limit heads, and the four least-squares fits."""
    per_task = sum(2.0 * m * d * width + 2.0 * steps * m * (width + 1) + 4.0 * m * d * min(m, d) for m in m_test)
    return n_tasks * (per_task + max(m_test) * d)


def check_evaluate(
    d: int,
    m_test,
    n_tasks: int,
    test_points: int = 0,
    *,
    steps: int = 1,
    width: int | None = None,
    allow_long: bool = False,
) -> None:
    """Refuse an evaluation of ``n_tasks`` tasks with ``max(m_test)`` samples (and ``test_points`` test
    points each) in dimension ``d`` beyond limits, and (unless ``allow_long``) ``steps`` head steps
    (width ``width``, default ``d``) beyond :data:`MAX_STEPS` or :data:`MAX_DAYS`. The messages name the
    ``m`` asked for."""
    w = d if width is None else width
    numbers = evaluate_numbers(d, w, m_test, n_tasks, steps)
    heads = numbers - evaluate_numbers(d, w, m_test, n_tasks, 0)  # the part of the head steps
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
    key = "--steps" if heads > numbers / 2 else "--tasks"
    what = f"the evaluation ({n_tasks} tasks per m, {steps} head steps)"
    require_time({"--steps": steps}, numbers, key, what, allow_long)


# --------------------------------------------------------------------------------------------
# metarep fewshot


def sinusoid_numbers(cfg) -> float:
    """Numbers a sinusoid benchmark processes in all (its time estimate): for each K and each method (and
    the baseline), the outer steps' tasks through the network (forward and backward, every inner step),
    the test tasks with the most inner steps reported, and the baseline's choice of step size."""
    h = cfg.hidden
    params = h * h + 4.0 * h + 1
    evals = max(cfg.eval_steps) + 1
    total = 0.0
    for k in cfg.shots:
        queries = k if cfg.test_queries is None else cfg.test_queries
        train = cfg.iterations * (sinusoid_step_numbers(cfg, k) + STEP_OVERHEAD)
        test = cfg.test_tasks * (k * evals * 3 + queries * len(cfg.eval_steps)) * params
        tune = 10 * 200 * (k * evals * 3 + queries) * params  # BASELINE_LR_GRID x 200 tasks
        total += (len(cfg.methods) + 1) * (train + test) + tune
    return total


def sinusoid_step_numbers(cfg, shots: int) -> float:
    """Numbers one outer step of the sinusoid benchmark processes with ``shots``: its tasks through the
    network, forward and backward, every inner step."""
    h, inner = cfg.hidden, max(cfg.inner_steps, cfg.reptile_inner_steps) + 1
    return cfg.meta_batch * 2 * shots * (h * h + 4.0 * h + 1) * inner * 3


def check_sinusoid(cfg, allow_long: bool = False) -> None:
    """Refuse a sinusoid benchmark whose batch of tasks or test set would not fit in memory, or (unless
    ``allow_long``) whose steps or time are beyond :data:`MAX_STEPS` or :data:`MAX_DAYS`."""
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
    counts = {
        "--iterations": cfg.iterations,
        "--steps": max(cfg.eval_steps),
        "--inner-steps": cfg.inner_steps,
        "--reptile-inner-steps": cfg.reptile_inner_steps,
    }
    key = _culprit(
        {**counts, "--meta-batch": cfg.meta_batch, "--hidden": h * h, "--test-tasks": cfg.test_tasks},
        {"--iterations": 2000, "--steps": 10, "--inner-steps": 1, "--reptile-inner-steps": 5, "--meta-batch": 25}
        | {"--hidden": 1600, "--test-tasks": 600},
    )
    require_time(counts, sinusoid_numbers(cfg), key, "the benchmark", allow_long)


def episodes_numbers(cfg, image_numbers: int) -> float:
    """Numbers a digits/images benchmark processes in all (its time estimate): for each method (and the
    baseline), the outer steps' episodes through the first conv layer (forward and backward) and the test
    episodes with the most inner steps reported on the head."""
    per_episode = cfg.ways * (cfg.shots + cfg.queries) * float(image_numbers) * cfg.channels * 9
    head = cfg.ways * cfg.shots * cfg.channels * cfg.ways * (max(cfg.eval_steps) + 1)  # adapting an N-way head
    train = cfg.iterations * (cfg.meta_batch * (per_episode * 3 + head * cfg.inner_steps) + STEP_OVERHEAD)
    return (len(cfg.methods) + 1) * (train + cfg.test_tasks * (per_episode + head))


def check_episodes(cfg, image_numbers: int, allow_long: bool = False) -> None:
    """Refuse a digits/images benchmark whose batch of episodes or test set would not fit in memory, or
    (unless ``allow_long``) whose steps or time are beyond :data:`MAX_STEPS` or :data:`MAX_DAYS`.

    ``image_numbers``: numbers per image (channels x height x width).
    """
    require_count(cfg.meta_batch, "--meta-batch", "episodes per outer step")
    require_count(cfg.test_tasks, "--test-tasks", "test episodes")
    per_episode = cfg.ways * (cfg.shots + cfg.queries) * image_numbers
    act = 1 + 2 * cfg.channels  # the inputs and the first conv layers' activations, per pixel
    batch = 4.0 * cfg.meta_batch * per_episode * act * (cfg.inner_steps + 2)
    require_memory(batch, f"a batch of {cfg.meta_batch} episodes", "--meta-batch")
    require_memory(4.0 * cfg.test_tasks * per_episode * 2, f"{cfg.test_tasks} test episodes", "--test-tasks")
    counts = {"--iterations": cfg.iterations, "--steps": max(cfg.eval_steps), "--inner-steps": cfg.inner_steps}
    key = _culprit(
        {**counts, "--meta-batch": cfg.meta_batch, "--test-tasks": cfg.test_tasks, "--channels": cfg.channels},
        {"--iterations": 500, "--steps": 10, "--inner-steps": 5, "--meta-batch": 16, "--test-tasks": 600}
        | {"--channels": 32},
    )
    require_time(counts, episodes_numbers(cfg, image_numbers), key, "the benchmark", allow_long)


def check_images(count: int, height: int, width: int, channels: int) -> None:
    """Refuse loading ``count`` images resized to ``height x width`` with ``channels`` channels that would not
    fit in memory (the decoded images and their stacked copy, float32); call before decoding any."""
    per_image = 4.0 * channels * height * width
    require_memory(2 * count * per_image, f"{count} images of {height} x {width} x {channels} numbers", "--size")


# --------------------------------------------------------------------------------------------
# metarep bench


def check_bench(settings: dict[str, dict[str, int]], streaming_tasks: int) -> None:
    """Refuse a benchmark whose streaming step has too many tasks, or whose settings' task pools (each in
    two layouts, with a batch and a copy) would not fit in memory."""
    require_count(streaming_tasks, "--streaming-tasks", "fresh tasks in the streaming step")
    for name, s in settings.items():
        pool = 4.0 * s["n"] * (s["m_in"] + s["m_out"]) * (s["d"] + 1)
        require_memory(4 * pool, f"the {name} setting's pool of {s['n']} tasks", "--settings")


# --------------------------------------------------------------------------------------------
# MetaLearner.fit


def fit_numbers(iterations: int, tasks: int, samples: int, params: int, inner_steps: int) -> float:
    """Numbers ``iterations`` outer steps on batches of ``tasks`` tasks of ``samples`` samples each process
    (its time estimate): every sample through the ``params`` parameters, forward and backward, once per
    inner step and once more."""
    return iterations * (float(tasks) * samples * params * 3 * (inner_steps + 1) + STEP_OVERHEAD)


def check_fit(
    iterations: int | None,
    *,
    allow_long: bool = False,
    tasks: int = 0,
    samples: int = 0,
    params: int = 0,
    adapted: int = 0,
    inner_steps: int = 1,
    number_bytes: int = 4,
) -> None:
    """Refuse :meth:`metarep.learner.MetaLearner.fit` of ``iterations`` outer steps beyond
    :data:`MAX_STEPS` or :data:`MAX_DAYS` (unless ``allow_long``), or whose batch of ``tasks`` tasks would
    hold more than the memory available in per-task copies of the ``adapted`` parameters (one per inner
    step, with their gradients). Without a batch (``tasks = 0``), the count alone is checked."""
    if tasks:
        copies = float(tasks) * adapted * (inner_steps + 2) * 2 * number_bytes
        require_memory(copies, f"a batch of {tasks} tasks adapting {adapted} parameters each", "tasks")
    if iterations is not None:
        numbers = fit_numbers(iterations, tasks, samples, params, inner_steps)
        require_time({"iterations": iterations}, numbers, "iterations", "meta-training", allow_long)
