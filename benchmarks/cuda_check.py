"""Check the CUDA path on a machine with a GPU: every closed form agrees with the CPU, whole runs
work with ``run.device = "cuda"``, and the FO-ANIL step is timed on the GPU.

    PYTHONPATH=src python3 benchmarks/cuda_check.py [OUT_DIR]

Prints one line per check and exits 1 if any fails.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from metarep.bench import fo_anil_grad_xb
from metarep.config import load_config
from metarep.methods import generic_linear_grad, outer_grad_fn
from metarep.methods.anil import second_order_expected_grad
from metarep.methods.fo_anil import fo_anil_expected_grad
from metarep.models import LinearParams, init_linear
from metarep.outputs import load_run, save_run
from metarep.tasks import LinearRepTasks
from metarep.train import train

failures: list[str] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}", flush=True)
    if not ok:
        failures.append(name)


def cuda_time(fn, repeats: int = 20) -> float:
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeats


def main(out: Path) -> None:
    print(torch.__version__, torch.cuda.get_device_name(0), flush=True)
    g = torch.Generator().manual_seed(0)
    tasks = LinearRepTasks.create(20, 5, 0.5, generator=g)
    batch = tasks.sample(300, 8, 5, g)
    p = LinearParams(
        torch.randn(20, 12, generator=g, dtype=torch.float64) / 20**0.5,
        torch.randn(12, generator=g, dtype=torch.float64),
    )
    pc = LinearParams(*(x.cuda() for x in p))
    bc = type(batch)(*(x.cuda() for x in batch))
    for name in ("fo_anil", "anil", "fo_maml", "maml", "reptile"):
        for impl in ("closed_form", "autodiff"):
            cpu = outer_grad_fn(name, 0.2, 1, impl)(p, batch)
            gpu = outer_grad_fn(name, 0.2, 1, impl)(pc, bc)
            err = max(float((a - b.cpu()).abs().max()) for a, b in zip(cpu, gpu))
            check(f"{name}/{impl} cuda == cpu (float64)", err < 1e-10, f"max abs diff {err:.1e}")
    tc = LinearRepTasks(tasks.B_star.cuda(), tasks.sigma_diag, tasks.sigma2)
    for fn in (fo_anil_expected_grad, second_order_expected_grad):
        p0 = p._replace(w=torch.zeros_like(p.w))
        a, b = fn(p0, tasks, 0.2, 8), fn(LinearParams(*(x.cuda() for x in p0)), tc, 0.2, 8)
        err = max(float((x - y.cpu()).abs().max()) for x, y in zip(a, b))
        check(f"{fn.__name__} cuda == cpu", err < 1e-12, f"{err:.1e}")

    # whole runs on the GPU
    runs = {
        "paper_fo_anil": [],
        "infinite": ["data.tasks=inf", 'run.dtype="float64"', "run.steps=5000", "run.eval_every=100"],
        "fresh": ["data.fresh=true", "data.tasks=20000", "run.steps=200"],
        "anil_minibatch": ["method.name=anil", "data.task_batch=1000", "run.steps=500"],
        "multitask": ["method.name=multitask", "run.steps=30"],
        "relu2": ["model.kind=relu2", "run.steps=300"],
    }
    for name, over in runs.items():
        cfg = load_config(None, [*over, 'run.device="cuda"'])
        r = train(cfg, progress=False)
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        save_run(r, d)
        s = r.summary
        check(
            f"run {name} on cuda",
            r.status == "complete" and s["subspace_sin"] < 0.9,
            f"{s['steps']} steps in {s['wall_seconds']:.1f} s, subspace_sin {s['subspace_sin']:.3g}, "
            f"signal_eigs {[round(x, 3) for x in s['signal_eigs']]}",
        )
        if name == "infinite":
            cpu = train(load_config(None, over), progress=False).summary
            err = max(abs(a - b) for a, b in zip(cpu["signal_eigs"], s["signal_eigs"]))
            check("infinite run cuda == cpu", err < 1e-9, f"{err:.1e}")
    from metarep.evaluate import evaluate_run

    ev = evaluate_run(load_run(out / "paper_fo_anil"), m_test=(10, 20, 50), n_tasks=2000)
    e = ev["estimators"]
    check(
        "evaluate a cuda run",
        e["oracle"]["closed_form"][1] < e["learned"]["closed_form"][1] < e["scratch"]["closed_form"][1],
        json.dumps(
            {k: [round(x, 3) for x in v["closed_form"]] for k, v in e.items() if k in ("learned", "oracle", "scratch")}
        ),
    )

    # timings on the GPU (float32)
    timings = {}
    for label, (d, n) in {"paper": (50, 5000), "large": (200, 20000)}.items():
        gg = torch.Generator().manual_seed(1)
        t = LinearRepTasks.create(d, 5, 4.0, generator=gg, dtype=torch.float32)
        b = type(batch)(*(x.cuda() for x in t.sample(n, 20, 10, gg)))
        q = init_linear(d, d, generator=gg, device="cuda")
        q = q._replace(w=0.1 * torch.randn(d, device="cuda"))
        vm = generic_linear_grad("fo_anil", 0.1, 1)
        fast = outer_grad_fn("fo_anil", 0.1)
        timings[label] = {  # each lambda is timed before the next iteration rebinds its variables
            "fast_ms": 1e3 * cuda_time(lambda: fast(q, b)),  # noqa: B023
            "closed_xb_ms": 1e3 * cuda_time(lambda: fo_anil_grad_xb(q, b, 0.1)),  # noqa: B023
            "vmap_ms": 1e3 * cuda_time(lambda: vm(q, b), 5),  # noqa: B023
            "floor_ms": 1e3 * cuda_time(lambda: (b.X_in.sum(), b.X_in.sum(), b.X_out.sum(), b.X_out.sum())),  # noqa: B023
        }
        timings[label]["graph_ms"] = graph_time(fast, q, b)
        timings[label]["cpu_fast_ms"] = cpu_time(fast, q, b)
        print(label, {k: v if isinstance(v, str) else round(v, 3) for k, v in timings[label].items()}, flush=True)

    batched = batched_checks()
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "timings": timings}
    (out / "cuda_check.json").write_text(json.dumps({**result, "batched": batched, "failures": failures}, indent=2))


def graph_time(fn, q, b) -> float | str:
    """ms per step of ``fn(q, b)`` replayed from one captured CUDA graph (launch overhead removed), or why not."""
    try:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):  # warm up on a side stream, as capture requires
                fn(q, b)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn(q, b)
        return 1e3 * cuda_time(graph.replay, 50)
    except Exception as e:  # a step that syncs with the host or allocates per shape cannot be captured
        return f"not capturable: {type(e).__name__}: {str(e).splitlines()[0][:120]}"


def cpu_time(fn, q, b, repeats: int = 5) -> float:
    """ms per step of the same computation on the CPU (all threads)."""
    qc = type(q)(*(x.cpu() for x in q))
    bc = type(b)(*(x.cpu() for x in b))
    fn(qc, bc)
    t = time.perf_counter()
    for _ in range(repeats):
        fn(qc, bc)
    return 1e3 * (time.perf_counter() - t) / repeats


def batched_checks() -> dict:
    """Many infinite-task seeds as one program on the GPU: equal to the same runs alone (float64), and runs per
    minute alone vs batched (paper setting, float32) on the GPU and the CPU."""
    from metarep.bench import runs_per_minute
    from metarep.train_batched import train_batch

    sets = [
        "task.d=20",
        "model.width=20",
        "data.tasks=inf",
        'run.dtype="float64"',
        "run.steps=500",
        'run.device="cuda"',
    ]
    cfgs = [load_config(None, [*sets, f"run.seed={s}"]) for s in range(4)]
    together = train_batch(cfgs)
    err = 0.0
    for cfg, r in zip(cfgs, together):
        alone = train(cfg, progress=False)
        err = max(err, float((alone.params.B.cpu() - r.params.B.cpu()).abs().max()))
    check("batched infinite runs on cuda == alone (float64)", err < 1e-10, f"max abs diff in B {err:.1e}")
    out = {"equal_alone_max_abs_diff": err}
    for device, seeds, alone_max in (("cuda", 64, 8), ("cuda", 512, 8), ("cpu", 64, 4)):
        r = runs_per_minute(seeds=seeds, steps=3000, device=device, alone_max=alone_max)
        print(f"batched {device} {seeds} seeds:", {k: round(v, 1) for k, v in r.items()}, flush=True)
        out[f"{device}_{seeds}"] = r
    return out


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "cuda_check"))
    sys.exit(1 if failures else 0)
