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
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

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


def run_benchmarks(settings: tuple[str, ...] = ("paper", "large"), streaming_tasks: int = 1_000_000) -> dict:
    """Every benchmark; the streaming one in a fresh child process so its peak memory is its own."""
    out: dict[str, object] = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    out["settings"] = {name: bench_setting(name) for name in settings}
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
    return "\n".join(lines)
