"""Record every number metarep's commands produce for a fixed set of configs, and compare two records.

A refactor keeps behaviour: record before, record after, compare.

    python benchmarks/record_numbers.py record OUT.json      # runs the commands (a few minutes)
    python benchmarks/record_numbers.py compare A.json B.json

``compare`` reports the largest relative difference per entry; float64 entries must agree to 1e-12
(relative, with an absolute floor of 1e-12 times the entry's scale), float32 ones are reported.
Timings (``wall_seconds``, ``train_seconds``), dates and provenance are left out.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

F64 = 'run.dtype="float64"'
SMALL = (
    "task.d=12",
    "task.k=3",
    "model.width=8",
    "data.tasks=60",
    "data.m_in=6",
    "data.m_out=4",
    "run.steps=40",
    "run.eval_every=10",
)

RUNS: dict[str, tuple[str, ...]] = {
    "fo_anil_dual": (*SMALL, F64),
    "fo_anil_wide": (*SMALL, "model.width=16", F64),
    "fo_anil_gram": (*SMALL, "data.m_in=20", "data.m_out=15", F64),
    "fo_anil_steps3": (*SMALL, "method.inner_steps=3", F64),
    "fo_anil_batch": (*SMALL, "data.task_batch=20", F64),
    "fo_anil_fresh": (*SMALL, "data.fresh=true", "data.tasks=30", F64),
    "fo_anil_autodiff": (*SMALL, 'method.impl="autodiff"', F64),
    "fo_anil_f32": SMALL,
    "anil": (*SMALL, "method.name=anil", F64),
    "anil_steps2": (*SMALL, "method.name=anil", "method.inner_steps=2", F64),
    "fo_maml": (*SMALL, "method.name=fo_maml", F64),
    "maml": (*SMALL, "method.name=maml", F64),
    "maml_steps2": (*SMALL, "method.name=maml", "method.inner_steps=2", F64),
    "reptile": (*SMALL, "method.name=reptile", "method.inner_steps=3", F64),
    "reptile_autodiff": (*SMALL, "method.name=reptile", "method.inner_steps=2", 'method.impl="autodiff"', F64),
    "multitask_lbfgs": (*SMALL, "method.name=multitask", "run.steps=5", F64),
    "multitask_gd": (*SMALL, "method.name=multitask", 'method.optimizer="gd"', F64),
    "moments": (*SMALL, "method.name=moments", F64),
    "inf_fo_anil": (*SMALL, "data.tasks=inf", "run.steps=200", F64),
    "inf_fo_maml": (*SMALL, "method.name=fo_maml", "data.tasks=inf", "run.steps=200", F64),
    "inf_anil": (*SMALL, "method.name=anil", "data.tasks=inf", "run.steps=200", F64),
    "inf_maml": (*SMALL, "method.name=maml", "data.tasks=inf", "run.steps=200", F64),
    "relu2": (*SMALL, 'model.kind="relu2"', F64),
    "relu3_maml": (*SMALL, 'model.kind="relu3"', "method.name=maml", F64),
}
EVALUATE = {
    "fo_anil_dual": ("--steps", "1"),
    "fo_anil_steps3": ("--steps", "3"),
    "relu2": ("--steps", "2"),
    "multitask_gd": ("--steps", "1"),
}
THEORY = {
    "paper": (),
    "narrow": ("--set", "model.width=3", "--set", "method.inner_steps=2"),
    "anil": ("--set", "method.name=anil"),
}
# manifest, figures: digests of files, not numbers
SKIP_KEYS = {"wall_seconds", "train_seconds", "git_commit", "versions", "seconds", "manifest", "figures"}


def _metarep(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "metarep"
    return subprocess.run([str(exe), *args], capture_output=True, text=True)


def _csv(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _clean(obj):
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if k not in SKIP_KEYS}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def record(out: Path) -> None:
    """Run every command of the fixed set and write its numbers to ``out`` (JSON)."""
    rec: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, sets in RUNS.items():
            d = root / name
            args = ["run", "--out", str(d), "--no-progress"]
            for s in sets:
                args += ["--set", s]
            p = _metarep(*args)
            entry: dict[str, object] = {"rc": p.returncode}
            if (d / "params.npz").is_file():
                with np.load(d / "params.npz") as z:
                    entry["params"] = {k: z[k].tolist() for k in z.files}
                entry["history"] = _csv(d / "history.csv")
                entry["summary"] = _clean(json.loads((d / "summary.json").read_text()))
            if name in EVALUATE and p.returncode == 0:
                e = _metarep(
                    "evaluate", str(d), "--tasks", "50", "--m-test", "3,8,20", "--no-progress", *EVALUATE[name]
                )
                entry["evaluate_rc"] = e.returncode
                if (d / "evaluation.json").is_file():
                    entry["evaluation"] = _clean(json.loads((d / "evaluation.json").read_text()))
            rec[f"run/{name}"] = entry
            print(name, p.returncode, flush=True)
        for name, args in THEORY.items():
            p = _metarep("theory", "--json", *args)
            rec[f"theory/{name}"] = json.loads(p.stdout) if p.returncode == 0 else {"rc": p.returncode}
        rec["reproduce"] = _reproduce(root / "repro")
        rec["fewshot"] = _fewshot(root)
    out.write_text(json.dumps(rec, indent=1, sort_keys=True))


def _reproduce(out: Path) -> dict:
    from metarep.experiments import QUICK, reproduce

    scale = QUICK.__class__(
        **{
            **QUICK.__dict__,
            "d": 8,
            "tasks": 40,
            "steps": 20,
            "steps_inf": 60,
            "eval_every": 10,
            "eval_every_inf": 20,
            "eval_tasks": 30,
            "m_test": (5, 20),
            "widths": (2, 8),
            "relu_tasks": 30,
            "relu_steps": 10,
            "multitask_steps": 3,
        }
    )
    reproduce(None, seeds=1, jobs=1, out=out, progress=False, scale=scale)
    return {p.stem: _csv(p) for p in sorted(out.glob("*.csv"))}


def _fewshot(root: Path) -> dict:
    res = {}
    s = root / "sin"
    p = _metarep(
        "fewshot",
        "sinusoid",
        "--iterations",
        "15",
        "--test-tasks",
        "20",
        "--shots",
        "5",
        "--out",
        str(s),
        "--no-progress",
    )
    res["sinusoid"] = _csv(s / "results.csv") if p.returncode == 0 else {"rc": p.returncode, "err": p.stderr[-500:]}
    g = root / "dig"
    p = _metarep(
        "fewshot",
        "digits",
        "--iterations",
        "8",
        "--test-tasks",
        "20",
        "--methods",
        "fo_anil,anil,maml",
        "--channels",
        "8",
        "--out",
        str(g),
        "--no-progress",
    )
    res["digits"] = _csv(g / "results.csv") if p.returncode == 0 else {"rc": p.returncode, "err": p.stderr[-500:]}
    return res


def _leaves(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{prefix}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, obj


def _num(v):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def compare(a_path: Path, b_path: Path) -> int:
    """Print the largest relative difference per top-level entry; exit 1 if a float64 entry differs > 1e-12."""
    a, b = _clean(json.loads(a_path.read_text())), _clean(json.loads(b_path.read_text()))
    bad = 0
    for key in sorted(set(a) | set(b)):
        la, lb = dict(_leaves(a.get(key))), dict(_leaves(b.get(key)))
        if set(la) != set(lb):
            print(
                f"{key:32} DIFFERENT KEYS: only before {sorted(set(la) - set(lb))[:4]}, "
                f"only after {sorted(set(lb) - set(la))[:4]}"
            )
            bad += 1
            continue
        worst, where, text = 0.0, "", 0
        for k in la:
            x, y = _num(la[k]), _num(lb[k])
            if x is None or y is None:
                text += la[k] != lb[k]
                continue
            if math.isnan(x) and math.isnan(y) or x == y:
                continue
            rel = abs(x - y) / max(abs(x), abs(y), 1e-12)
            if rel > worst:
                worst, where = rel, k
        f32 = "f32" in key or key.startswith(("fewshot", "reproduce"))  # those run in float32
        limit = math.inf if f32 else 1e-12
        flag = "ok" if worst <= limit and not text else "DIFFERS"
        bad += flag != "ok"
        print(
            f"{key:32} max rel diff {worst:.2e} {flag}{' (float32)' if f32 else ''}"
            f"{f' text diffs {text}' if text else ''} {where if worst else ''}"
        )
    print(f"{bad} entries differ")
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "record":
        record(Path(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)
