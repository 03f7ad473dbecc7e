"""Tabulate the Ginibre constants of the finite-pool floor (MATH.md §8.3) once, for the package.

    python benchmarks/tabulate_ginibre.py [OUT]     # default src/metarep/data/ginibre.json

``(c₂, c_F)`` for every size n = 1..MAX_GINIBRE, each by :func:`metarep.theory_finite.ginibre_sample`
(seed ``GINIBRE_SEED + n``, ``max(8, min(512, 4096 // n))`` matrices, about 1% sampling error): the
very numbers ``ginibre_constants`` would sample on demand, so a prediction is the same with or without
the table (to float rounding of the eigen-solvers, ~1e-15 relative). One BLAS thread: faster than
several on a shared machine, and the same numbers. About 4 minutes on one core; prints how long.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads its BLAS
os.environ.setdefault("OMP_NUM_THREADS", "1")

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from metarep.theory_finite import GINIBRE_SEED, GINIBRE_TABLE, MAX_GINIBRE, ginibre_sample  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "metarep" / GINIBRE_TABLE


def main(out: Path) -> None:
    started = time.perf_counter()
    sizes, c2, cF = [], [], []
    for n in range(1, MAX_GINIBRE + 1):
        a, b = ginibre_sample(n)
        sizes.append(n)
        c2.append(a)
        cF.append(b)
        if n % 50 == 0:
            print(f"n = {n}: c2 = {a:.4f}, cF = {b:.4f}  ({time.perf_counter() - started:.0f} s)", flush=True)
    seconds = time.perf_counter() - started
    table = {
        "about": "finite-pool floor constants (MATH.md §8.3): c2 = E λmax Q∞(G), cF = E tr Q∞(G), G n×n Ginibre",
        "made_by": "benchmarks/tabulate_ginibre.py (metarep.theory_finite.ginibre_sample)",
        "seed": GINIBRE_SEED,
        "max_size": MAX_GINIBRE,
        "reps": "max(8, min(512, 4096 // n)) matrices per size, seed + n",
        "sampling_error": "about 1% (relative)",
        "size": sizes,
        "c2": c2,
        "cF": cF,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(table) + "\n")
    print(f"wrote {out}: {len(sizes)} sizes in {seconds:.1f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
