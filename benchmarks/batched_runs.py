"""Runs per minute, alone vs batched: N seeds of one infinite-task setting, trained one after the other
(:func:`metarep.train.train`) and as one program (:func:`metarep.train_batched.train_batch`), in one process.

    python benchmarks/batched_runs.py [--seeds 64] [--steps 3000] [--device cpu|cuda]

:func:`metarep.bench.runs_per_minute` makes the numbers (``metarep bench`` reports them too); training only.
"""

from __future__ import annotations

import argparse
import json

from metarep.bench import runs_per_minute

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=64)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    print(json.dumps(runs_per_minute(a.seeds, a.steps, a.device), indent=1))
