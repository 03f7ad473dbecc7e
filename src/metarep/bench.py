"""Benchmarks of the FO-ANIL step, measured side by side in one process (``metarep bench``).

Paths compared on the same tasks and parameters:

- ``loop``: a Python loop over tasks with autograd, as the older libraries do (timed on a few
  hundred tasks and scaled to N);
- ``vmap``: ``torch.func.vmap`` of ``grad`` (:mod:`metarep.engine`);
- ``closed_xb``: the batched closed form that forms ``X @ B`` (``N×m×k'``);
- ``fast``: :func:`metarep.methods.fo_anil.fo_anil_grad`, never forming ``X @ B``, on the pool
  stored in two layouts (:class:`metarep.tasks.DualBatch`), in chunks, as ``metarep run`` does
  (``fast_1chunk``: the same in one piece; ``fast_samples``: the pool in one layout, as fresh
  tasks are processed);
- ``floor``: four plain reads of the task tensors (two of ``X_in``, two of ``X_out``);
  ``floor_dual``: one read of each of the four tensors the fast path reads (``X_in``, its
  transpose, ``X_out``, its transpose; the same number of bytes);
- ``gram`` (settings with ``m > d``): FO-ANIL from per-task second moments ``X_iᵀX_i/m``.

Plus the infinite-regime step (independent of N) and the peak resident memory of one step over
10⁶ fresh tasks generated in chunks (measured in a child process).

Two tables feed the choices of :mod:`metarep.runtime` and :mod:`metarep.limits`: ``threads``
(:func:`bench_threads`: steps of growing size at one thread and at all the cores, with the other cores
idle and busy, beside the count the policy picks) and ``chunks`` (:func:`bench_chunks`: the fast path
and the one-layout path at several chunk sizes and in one chunk).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from . import runtime
from .methods import chunked_mean, generic_linear_grad
from .methods.fo_anil import fo_anil_expected_grad, fo_anil_grad, fo_anil_grad_gram
from .models import LinearParams, init_linear
from .tasks import FreshTasks, LinearRepTasks, TaskBatch, TaskPool

SETTINGS = {
    "paper": dict(d=50, k=5, width=50, n=5000, m_in=20, m_out=10),
    "large": dict(d=200, k=5, width=200, n=20000, m_in=20, m_out=10),
    "tall": dict(d=20, k=5, width=20, n=5000, m_in=50, m_out=50),  # m > d: the Gram path applies
}


def median_times(
    fns: dict[str, Callable[[], object]], rounds: int, calls: dict[str, int] | None = None
) -> dict[str, float]:
    """Median wall time in seconds of each ``fn()``, measured side by side: every round calls every
    path in turn, so a change in the machine's load during the run falls on all paths alike.

    A path named in ``calls`` is timed ``calls[name]`` times a round after one untimed call, so it
    is measured in the steady state of a training loop, not just after another path emptied the
    caches. One warm-up call each first.
    """
    calls = calls or {}
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            if k in calls:
                fn()
            for _ in range(calls.get(k, 1)):
                t = time.perf_counter()
                fn()
                samples[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in samples.items()}


def fo_anil_grad_xb(params: LinearParams, batch: TaskBatch, alpha: float) -> LinearParams:
    """FO-ANIL in closed form through the features ``Z = X B`` (``N×m×k'``), the usual way."""
    B, w = params
    Z_in, Z_out = batch.X_in @ B, batch.X_out @ B  # (N, m, k')
    r_in = Z_in @ w - batch.y_in
    W = w - alpha * torch.einsum("nmk,nm->nk", Z_in, r_in) / Z_in.shape[1]
    r_out = torch.einsum("nmk,nk->nm", Z_out, W) - batch.y_out
    g_out = torch.einsum("nmd,nm->nd", batch.X_out, r_out) / Z_out.shape[1]
    return LinearParams(g_out.T @ W / W.shape[0], g_out.mean(0) @ B)


def fo_anil_loop(params: LinearParams, batch: TaskBatch, alpha: float) -> LinearParams:
    """FO-ANIL one task at a time with autograd (the reference the older libraries implement)."""
    gB, gw = torch.zeros_like(params.B), torch.zeros_like(params.w)
    for X_in, y_in, X_out, y_out in zip(*batch):
        B = params.B.clone().requires_grad_(True)
        w = params.w.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(0.5 * ((X_in @ B @ w - y_in) ** 2).mean(), w)
        wi = w - alpha * g.detach()
        b_, w_ = torch.autograd.grad(0.5 * ((X_out @ B @ wi - y_out) ** 2).mean(), (B, w))
        gB += b_
        gw += w_
    return LinearParams(gB / batch.num_tasks, gw / batch.num_tasks)


def bench_setting(name: str, rounds: int = 7, loop_tasks: int = 200, alpha: float = 0.1) -> dict[str, object]:
    """Median step times (seconds) of every path on one setting, and their ratios to ``fast``."""
    s = SETTINGS[name]
    g = torch.Generator().manual_seed(0)
    tasks = LinearRepTasks.create(s["d"], s["k"], 4.0, generator=g, dtype=torch.float32)
    batch = tasks.sample(s["n"], s["m_in"], s["m_out"], g)
    p = init_linear(s["d"], s["width"], generator=g)
    p = LinearParams(p.B, 0.1 * torch.randn(s["width"], generator=g))  # a generic, non-zero head
    small = batch.select(torch.arange(loop_tasks))
    vmap_fn = generic_linear_grad("fo_anil", alpha, 1)
    fast_grad = lambda q, b: fo_anil_grad(q, b, alpha)  # noqa: E731
    pool = TaskPool(batch, None, g, layout="dual")
    fast_fn, samples_fn = chunked_mean(fast_grad, pool), chunked_mean(fast_grad, TaskPool(batch, None, g))
    dual = pool.steps_pool
    paths = {
        "loop": lambda: fo_anil_loop(p, small, alpha),  # scaled to N below
        "vmap": lambda: vmap_fn(p, batch),
        "closed_xb": lambda: fo_anil_grad_xb(p, batch, alpha),
        "fast": lambda: fast_fn(p),
        "fast_1chunk": lambda: fo_anil_grad(p, dual, alpha),
        "fast_samples": lambda: samples_fn(p),
        "floor": lambda: (batch.X_in.sum(), batch.X_in.sum(), batch.X_out.sum(), batch.X_out.sum()),
        "floor_dual": lambda: (dual.X_in.sum(), dual.Xt_in.sum(), dual.X_out.sum(), dual.Xt_out.sum()),
    }
    if min(s["m_in"], s["m_out"]) > s["d"]:  # per-task second moments, as `metarep run` uses then
        gram_fn = chunked_mean(lambda q, b: fo_anil_grad_gram(q, b, alpha), TaskPool(batch, None, g, layout="gram"))
        paths["gram"] = lambda: gram_fn(p)
    inf_B = p._replace(w=torch.zeros_like(p.w))
    tasks64 = LinearRepTasks(tasks.B_star, tasks.sigma_diag, tasks.sigma2)
    paths["infinite"] = lambda: fo_anil_expected_grad(inf_B, tasks64, alpha, s["m_in"])
    calls = {
        "closed_xb": 2,
        **{k: 5 for k in ("fast", "fast_1chunk", "fast_samples", "floor", "floor_dual", "gram", "infinite")},
    }  # timed calls a round of the quicker paths
    times = median_times(paths, rounds, calls)
    times["loop"] *= s["n"] / loop_tasks
    return {
        "setting": {**s, "dtype": "float32"},
        "seconds": times,
        "ratio_to_fast": {k: v / times["fast"] for k, v in times.items()},
    }


THREAD_SIZES = (100, 300, 1000, 3000, 5000)  # pools of the paper setting's shape: steps of growing size
CHUNK_NUMBERS = (2**18, 2**20, 2**22, 2**24)  # chunk sizes tried, in numbers of temporaries


def _problem(s: dict, n: int) -> tuple[LinearParams, TaskBatch, torch.Generator]:
    g = torch.Generator().manual_seed(0)
    tasks = LinearRepTasks.create(s["d"], s["k"], 4.0, generator=g, dtype=torch.float32)
    batch = tasks.sample(n, s["m_in"], s["m_out"], g)
    p = init_linear(s["d"], s["width"], generator=g)
    return LinearParams(p.B, 0.1 * torch.randn(s["width"], generator=g)), batch, g


def _learner_step() -> tuple[Callable[[], object], float]:
    """One MetaLearner step of the sinusoid network (1-40-40-1, 25 tasks of 10 + 10 points) and its size."""
    from torch import nn

    from .learner import MetaLearner

    g = torch.Generator().manual_seed(0)
    X = torch.rand(4, 25, 20, 1, generator=g) * 10 - 5
    batch = TaskBatch(X[0, :, :10], X[1, :, :10, 0], X[2, :, :10], X[3, :, :10, 0])
    torch.manual_seed(0)
    feats = nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU())
    learner = MetaLearner(feats, nn.Linear(40, 1), method="fo_anil", inner_lr=0.01)
    fn = lambda: learner.fit(batch, iterations=1, progress=False, threads=None)  # noqa: E731
    return fn, float(batch.X_in.numel() + batch.X_out.numel())


def _times_per_threads(fn: Callable[[], object], counts: tuple[int, ...], rounds: int) -> dict[int, float]:
    """Median time of ``fn`` at each thread count, the counts taking turns in every round."""
    samples: dict[int, list[float]] = {n: [] for n in counts}
    for r in range(rounds + 1):
        for n in counts:
            with runtime.torch_threads(n):
                fn()  # untimed: the threads start and the caches fill
                t = time.perf_counter()
                fn()
                if r:  # round 0 warms up
                    samples[n].append(time.perf_counter() - t)
    return {n: statistics.median(v) for n, v in samples.items()}


def busy_cores(n: int) -> list[subprocess.Popen]:
    """Start ``n`` busy-loop processes (one core each); stop them with :func:`stop_busy`."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_busy(procs: list[subprocess.Popen]) -> None:
    """Stop the processes of :func:`busy_cores`, by their PIDs."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=30)


def bench_threads(rounds: int = 5, sizes: tuple[int, ...] = THREAD_SIZES, busy: bool = True) -> dict[str, object]:
    """The fast FO-ANIL step on pools of ``sizes`` tasks (paper shape) and of the large setting, and one
    MetaLearner step of the sinusoid network, at one thread and at all the cores; with the other cores
    idle (as the machine is), then busy (a busy loop on each core but one, started and stopped here).
    Each row: the numbers of the step's inputs (:func:`metarep.limits.step_batch_numbers`), the times, the speed-up
    of all cores over one, and the count the policy picks (:func:`metarep.runtime.auto_threads`)."""
    cores = runtime.cores()
    steps: dict[str, tuple[Callable[[], object], float]] = {}
    for name, ns in (("paper", sizes), ("large", (SETTINGS["large"]["n"],))):
        s = SETTINGS[name]
        for n in ns:
            p, batch, g = _problem(s, n)
            pool = TaskPool(batch, None, g, layout="dual")
            fn = chunked_mean(lambda q, b: fo_anil_grad(q, b, 0.1), pool)
            numbers = float(n) * (s["m_in"] + s["m_out"]) * s["d"]  # as metarep.limits.step_batch_numbers
            steps[f"{name} N={n}"] = ((lambda f, q: lambda: f(q))(fn, p), numbers)
    steps["learner sinusoid"] = _learner_step()
    counts = (1, cores) if cores > 1 else (1,)
    rows = []
    for load in ("idle", "busy") if busy and cores > 1 else ("idle",):
        procs = busy_cores(cores - 1) if load == "busy" else []
        try:
            for name, (fn, numbers) in steps.items():
                t = _times_per_threads(fn, counts, rounds)
                rows.append(
                    {
                        "step": name,
                        "numbers": numbers,
                        "load": load,
                        "seconds": {str(n): v for n, v in t.items()},
                        "speedup": t[1] / t[counts[-1]],
                        "policy": runtime.auto_threads(numbers),
                    }
                )
        finally:
            stop_busy(procs)
    return {"cores": cores, "parallel_min_numbers": runtime.PARALLEL_MIN_NUMBERS, "rows": rows}


def bench_chunks(name: str, rounds: int = 5, numbers: tuple[int, ...] = CHUNK_NUMBERS) -> dict[str, object]:
    """One step of setting ``name`` on its pool in two layouts (``dual``: the fast path; ``samples``) in
    chunks whose temporaries hold each of ``numbers`` numbers, in one chunk, and in the chunks
    :func:`metarep.limits.pool_chunk` picks (``default``); median times side by side, with the floor."""
    s = SETTINGS[name]
    p, batch, g = _problem(s, s["n"])
    d, n = s["d"], s["n"]
    grad = lambda q, b: fo_anil_grad(q, b, 0.1)  # noqa: E731
    paths: dict[str, Callable[[], object]] = {}
    chunks: dict[str, int] = {}
    for layout, rows in (("dual", 1), ("samples", s["m_in"] + s["m_out"])):
        sizes = {f"{layout} {x}": max(1, x // (rows * d)) for x in numbers if x // (rows * d) < n}
        sizes |= {f"{layout} one": n, f"{layout} default": 0}
        for key, c in sizes.items():
            pool = TaskPool(batch, None, g, c or None, layout)
            chunks[key] = pool.chunk
            paths[key] = (lambda f: lambda: f(p))(chunked_mean(grad, pool))
    paths["floor"] = lambda: (batch.X_in.sum(), batch.X_in.sum(), batch.X_out.sum(), batch.X_out.sum())
    times = median_times(paths, rounds, {k: 3 for k in paths})
    return {
        "setting": name,
        "seconds": times,
        "chunk_tasks": chunks,
        "ratio_to_floor": {k: v / times["floor"] for k, v in times.items()},
    }


def _peak_rss_kb() -> int:
    """Peak resident memory of this process image (``VmHWM``; unlike ``ru_maxrss`` it is not
    inherited from the parent across fork and exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def streaming_peak_memory(n: int = 1_000_000, d: int = 50, width: int = 50, m_in: int = 20, m_out: int = 10) -> dict:
    """One FO-ANIL step over ``n`` fresh tasks in chunks; returns peak RSS (MB) and the step time."""
    g = torch.Generator().manual_seed(0)
    tasks = LinearRepTasks.create(d, 5, 4.0, generator=g, dtype=torch.float32)
    p = init_linear(d, width, generator=g)
    source = FreshTasks(tasks, n, m_in, m_out, g)
    t = time.perf_counter()
    total = None
    for batch in source.batches():
        gr = fo_anil_grad(p, batch, 0.1)
        c = batch.num_tasks
        total = [x * c for x in gr] if total is None else [a + x * c for a, x in zip(total, gr)]
    seconds = time.perf_counter() - t
    peak_kb = _peak_rss_kb()
    return {
        "tasks": n,
        "chunk": source.chunk,
        "seconds": seconds,
        "peak_rss_mb": peak_kb / 1024,
        "full_tensor_mb": n * (m_in + m_out) * d * 4 / 2**20,
    }


def runs_per_minute(
    seeds: int = 64, steps: int = 1000, device: str = "cpu", base: tuple[str, ...] = (), alone_max: int = 8
) -> dict[str, float]:
    """Runs per minute of ``seeds`` runs of the paper's infinite-task setting (width 50), made one after the
    other (:func:`metarep.train.train`, timed on ``alone_max`` of them) and as one batched program
    (:func:`metarep.train_batched.train_batch`), in this process, on ``device``; training only, files aside."""
    from .config import load_config
    from .train import train
    from .train_batched import train_batch

    sets = ["task.d=50", "task.k=5", "model.width=50", 'data.tasks="inf"', "data.m_in=20", f"run.steps={steps}"]
    sets += ["run.eval_every=100", f'run.device="{device}"', *base]
    cfgs = [load_config(None, [*sets, f"run.seed={s}"]) for s in range(seeds)]
    train_batch(cfgs[:2])  # warm up
    t = time.perf_counter()
    for c in cfgs[:alone_max]:
        train(c, progress=False)
    alone = (time.perf_counter() - t) / min(alone_max, seeds)
    t = time.perf_counter()
    train_batch(cfgs)
    batch = time.perf_counter() - t
    return {
        "seeds": seeds,
        "steps": steps,
        "alone_runs_per_minute": 60 / alone,
        "batched_runs_per_minute": 60 * seeds / batch,
        "speedup": alone * seeds / batch,
    }


def run_benchmarks(
    settings: tuple[str, ...] = ("paper", "large"),
    streaming_tasks: int = 1_000_000,
    threads_table: bool = True,
    chunks_table: bool = True,
    batched_runs: bool = True,
) -> dict:
    """Every benchmark; the streaming one in a fresh child process so its peak memory is its own. The
    paths run at torch's current thread count (all the cores unless set), as do the chunks table."""
    out: dict[str, object] = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    out["load_before"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    out["settings"] = {name: bench_setting(name) for name in settings}
    if chunks_table:
        out["chunks"] = {name: bench_chunks(name) for name in settings}
    if threads_table:
        out["threads_table"] = bench_threads()
    if batched_runs:
        out["batched_runs"] = runs_per_minute()
    code = f"import json; from metarep.bench import streaming_peak_memory as f; print(json.dumps(f({streaming_tasks})))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out["streaming"] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def format_table(res: dict) -> str:
    """A plain-text table of :func:`run_benchmarks`' result."""
    lines = [f"threads: {res['threads']}   torch {res['torch']}"]
    for name, r in res["settings"].items():
        s = r["setting"]
        lines.append(f"\n{name}: N={s['n']} d={s['d']} width={s['width']} m_in={s['m_in']} m_out={s['m_out']} float32")
        lines.append(f"  {'path':<12} {'median step':>12} {'x fast':>9}")
        for k, v in r["seconds"].items():
            lines.append(f"  {k:<12} {v * 1e3:>9.3f} ms {r['ratio_to_fast'][k]:>9.2f}")
    st = res["streaming"]
    lines.append(
        f"\nstreaming: one step over {st['tasks']:,} fresh tasks in chunks of {st['chunk']}: "
        f"{st['seconds']:.1f} s, peak RSS {st['peak_rss_mb']:.0f} MB "
        f"(all tasks at once would be {st['full_tensor_mb']:.0f} MB)"
    )
    for name, r in res.get("chunks", {}).items():
        lines.append(f"\nchunks, {name} (tasks per chunk; x floor):")
        lines += [
            f"  {k:<16} {r['chunk_tasks'].get(k, 0):>7} {v * 1e3:>9.3f} ms {r['ratio_to_floor'][k]:>6.2f}"
            for k, v in r["seconds"].items()
        ]
    if "batched_runs" in res:
        b = res["batched_runs"]
        lines.append(
            f"\nmany runs ({b['seeds']} seeds of the paper's infinite-task setting, {b['steps']} steps): alone "
            f"{b['alone_runs_per_minute']:.0f} runs/min, batched {b['batched_runs_per_minute']:.0f} runs/min "
            f"(x{b['speedup']:.1f})"
        )
    if "threads_table" in res:
        tt = res["threads_table"]
        lines.append(
            f"\nthreads ({tt['cores']} cores; the policy uses them from {tt['parallel_min_numbers']:.3g} numbers):"
        )
        for row in tt["rows"]:
            sec = "  ".join(f"{n} thr {v * 1e3:8.3f} ms" for n, v in row["seconds"].items())
            lines.append(
                f"  {row['step']:<18} {row['numbers']:>9.3g} numbers  {row['load']:<4}  {sec}  "
                f"x{row['speedup']:.2f}  policy: {row['policy']}"
            )
    return "\n".join(lines)
