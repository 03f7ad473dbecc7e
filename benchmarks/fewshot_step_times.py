"""Per-outer-step time of every MetaLearner method on the few-shot benchmarks, measured side by side
in one process (every round times every method in turn, so load changes fall on all alike).

    python benchmarks/fewshot_step_times.py [--rounds 15] [--threads 1]

Sinusoid: MAML's 1-40-40-1 ReLU network, 25 tasks of K = 10 support and 10 query points.
Digits: the 8x8 digits CNN (two conv blocks of 32 channels), 16 episodes 5-way 1-shot, 5 queries a
class, 5 inner steps (as ``metarep fewshot digits``). One step = meta-gradient + Adam update.
"""

from __future__ import annotations

import argparse
import json

import torch

from metarep.bench import median_times
from metarep.fewshot import EpisodeSampler, SinusoidTasks, load_digits
from metarep.fewshot.digits import conv_net, split_by_class
from metarep.fewshot.sinusoid import sinusoid_net
from metarep.learner import MetaLearner

SINUSOID = {
    "pretrain": {},
    "fo_anil": {},
    "anil": {},
    "fo_maml": {},
    "maml": {},
    "metasgd": {},
    "reptile": {"inner_steps": 5},
    "maml+learn_inner_lr": {"learn_inner_lr": True},
    "maml+adam": {"inner_optimizer": "adam"},
}
DIGITS = {
    "fo_anil": {},
    "anil": {},
    "maml": {},
    "metasgd": {},
    "protonet": {},
    "maml+adam": {"inner_optimizer": "adam"},
}


def _step(learner: MetaLearner, batch) -> None:
    learner.fit(batch, iterations=1, progress=False)


def sinusoid_times(rounds: int) -> dict[str, float]:
    batch = next(SinusoidTasks().batches(25, 10, 10))
    fns = {}
    for name, kw in SINUSOID.items():
        features, head = sinusoid_net(seed=0)
        kw = {"inner_lr": 0.01, "inner_steps": 1, **kw}
        learner = MetaLearner(features, head, method=name.split("+")[0], outer_lr=1e-3, **kw)
        fns[name] = lambda lrn=learner: _step(lrn, batch)
    return median_times(fns, rounds)


def digits_times(rounds: int) -> dict[str, float]:
    train, _ = split_by_class(load_digits(), ("5", "6", "7", "8", "9"), 4)
    batch = EpisodeSampler(train, 5, 1, 5, torch.Generator().manual_seed(0)).sample(16)
    fns = {}
    for name, kw in DIGITS.items():
        features, head = conv_net(5, 1, (8, 8), 32, seed=0)
        kw = {"inner_lr": 0.5, "inner_steps": 5, **kw}
        learner = MetaLearner(features, head, method=name.split("+")[0], loss="cross_entropy", **kw)
        fns[name] = lambda lrn=learner: _step(lrn, batch)
    return median_times(fns, rounds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = {"sinusoid": sinusoid_times(args.rounds), "digits": digits_times(args.rounds)}
    for bench, times in out.items():
        print(f"{bench}: median ms per outer step ({args.rounds} rounds, {args.threads} thread(s))")
        for name, t in times.items():
            print(f"  {name:22} {1000 * t:8.2f}")
    print(json.dumps({b: {k: round(1000 * v, 3) for k, v in t.items()} for b, t in out.items()}))


if __name__ == "__main__":
    main()
