"""The theory's representation claims on real few-shot networks (sinusoid MLP, digits CNN), every
method of the learner and the pretrained baseline; the measurements are :mod:`metarep.fewshot.representations`
(not config runs), kept per seed in ``out/fewshot/`` and reused by a later call."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..framework import Experiment, Scale, fmt, md_table, tidy

BENCHES = ("sinusoid", "digits")
TRUTH = "span{sin, cos}"
SIN_PANELS = ("energy_outside_reference", "energy_outside_topk", "effective_rank", "head_norm")
DIGIT_PANELS = ("energy_outside_topk", "effective_rank", "head_norm", "feature_energy")


def _label(m: str) -> str:
    from ...methods import registry

    return "pretrained" if m == "pretrain" else registry.label(m)


def compute(scale: Scale, seeds: int, out: Path, progress: bool | None) -> list[dict]:
    """One measurement per seed (at most ``scale.fewshot.max_seeds``), made or reused from ``out/fewshot/``."""
    from ...fewshot.representations import DIGIT_METHODS, SINUSOID_METHODS, measure
    from ...files import write_json

    sizes = {k: v for k, v in asdict(scale.fewshot).items() if k != "max_seeds"}
    key = hashlib.sha256(json.dumps([sizes, SINUSOID_METHODS, DIGIT_METHODS], sort_keys=True).encode()).hexdigest()[:12]
    found = []
    for seed in range(min(seeds, scale.fewshot.max_seeds)):
        path = Path(out) / "fewshot" / f"{key}-seed{seed}.json"
        try:
            found.append(json.loads(path.read_text()))
            continue
        except (OSError, ValueError):
            pass
        if progress:
            print(f"fewshot: measuring seed {seed}", flush=True)
        result = measure(scale.fewshot, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, result)
        found.append(result)
    return found


@dataclass
class Bench:
    """One benchmark over seeds: curves ``{method: (steps, mean{metric}, std{metric})}``, final scores
    (mean, sd), the mean sin² matrix between the methods' subspaces (and the truth, for the sinusoid)."""

    methods: list[str]
    curves: dict[str, tuple[list[int], dict[str, np.ndarray], dict[str, np.ndarray]]]
    score: dict[str, tuple[float, float]]
    sin2: np.ndarray
    names: list[str]  # rows/columns of sin2


@dataclass
class FewshotData:
    seeds: int
    sizes: dict
    benches: dict[str, Bench]
    rows: list[dict] = field(default_factory=list)


def _bench(per_seed: list[dict], methods: list[str]) -> Bench:
    curves, score = {}, {}
    for m in methods:
        runs = [s["tracked"][m] for s in per_seed]
        n = min(len(r) for r in runs)
        steps = [r["step"] for r in runs[0][:n]]
        vals = {k: np.array([[row[k] for row in r[:n]] for r in runs], dtype=float) for k in runs[0][0] if k != "step"}
        curves[m] = (steps, {k: v.mean(0) for k, v in vals.items()}, {k: v.std(0) for k, v in vals.items()})
        sc = np.array([s["score"][m] for s in per_seed], dtype=float)
        score[m] = (float(sc.mean()), float(sc.std()))
    names = methods + ([TRUTH] if per_seed[0]["truth"] else [])
    sin2 = np.zeros((len(names), len(names)))
    for s in per_seed:
        for a in s["angles"]:
            i, j = names.index(a["a"]), names.index(a["b"])
            sin2[i, j] += a["mean_sin2"] / len(per_seed)
            sin2[j, i] = sin2[i, j]
        for m, v in s["truth"].items():
            sin2[names.index(m), -1] += v / len(per_seed)
            sin2[-1, names.index(m)] = sin2[names.index(m), -1]
    return Bench(methods, curves, score, sin2, names)


def aggregate(per_seed: list[dict]) -> FewshotData:
    benches = {b: _bench([s[b] for s in per_seed], per_seed[0][b]["methods"]) for b in BENCHES}
    data = FewshotData(len(per_seed), per_seed[0]["sizes"], benches)
    for b, bench in data.benches.items():
        for m, (steps, mean, std) in bench.curves.items():
            for k in mean:
                data.rows += tidy("fewshot", f"{b}:{m}", "step", steps, k, mean[k], std[k], len(per_seed))
            data.rows += tidy("fewshot", f"{b}:{m}", "", [0], "test_score", *bench.score[m], len(per_seed))
    return data


def draw(fig, data: FewshotData) -> None:
    from ... import diagnostics as dg

    fig.set_size_inches(20, 8)
    axes = fig.subplots(2, 5)
    titles = dict(dg.PANELS)
    for r, (b, keys) in enumerate(zip(BENCHES, (SIN_PANELS, DIGIT_PANELS))):
        bench = data.benches[b]
        curves = {_label(m): (s, mu) for m, (s, mu, _) in bench.curves.items()}
        spread = {_label(m): (s, sd) for m, (s, _, sd) in bench.curves.items()}
        dg.draw_tracked(axes[r][:4], curves, [(k, f"{b}: {titles[k]}") for k in keys], spread)
        for ax, k in zip(axes[r][:4], keys):
            if k.startswith("energy"):
                ax.set_yscale("log")
        ax = axes[r][4]
        im = ax.imshow(bench.sin2, vmin=0, vmax=1, cmap="viridis")
        labels = [_label(n) if n != TRUTH else n for n in bench.names]
        ax.set_xticks(range(len(labels)), labels, rotation=60, fontsize=7, ha="right")
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, f"{bench.sin2[i, j]:.2f}", ha="center", va="center", fontsize=6, color="w")
        k = 2 if b == "sinusoid" else 5
        ax.set_title(f"{b}: final top-{k} subspaces,\nmean sin² of principal angles", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)


def _change(curve, key: str) -> tuple[float, float]:
    return float(curve[1][key][0]), float(curve[1][key][-1])


COLUMNS = {
    "energy_outside_reference": "outside span{sin,cos}",
    "energy_outside_topk": "outside top-k",
    "effective_rank": "effective rank",
    "head_norm": "head norm",
}


def _table(bench: Bench, sinusoid: bool) -> str:
    keys = [k for k in COLUMNS if sinusoid or k != "energy_outside_reference"]
    head = ["method", "test MSE (1 step)" if sinusoid else "test accuracy (5 steps)", *(COLUMNS[k] for k in keys)]
    head += ["sin² to FO-ANIL"] + (["sin² to span{sin,cos}"] if sinusoid else [])
    rows, ia = [], bench.names.index("fo_anil")
    for i, m in enumerate(bench.methods):
        mu, sd = bench.score[m]
        cells = [_label(m), f"{mu:.3g} ± {sd:.2g}" if sinusoid else f"{100 * mu:.1f} ± {100 * sd:.1f}%"]
        cells += [" → ".join(fmt(v, 3) for v in _change(bench.curves[m], k)) for k in keys]
        cells += [f"{bench.sin2[i, ia]:.2f}"] + ([f"{bench.sin2[i, -1]:.2f}"] if sinusoid else [])
        rows.append(cells)
    return md_table(head, rows)


def _names(ms: list[str]) -> str:
    return ", ".join(_label(m) for m in ms) if ms else "none"


def _answers(sin: Bench, dig: Bench) -> list[str]:
    """The three questions, answered from the numbers."""
    fo = sin.curves["fo_anil"]
    ref0, ref1 = _change(fo, "energy_outside_reference")
    er0, er1 = _change(fo, "effective_rank")
    final = {m: sin.curves[m][1]["energy_outside_reference"][-1] for m in sin.methods}
    ranked = sorted(sin.methods, key=final.get)
    to_truth = {m: sin.sin2[sin.names.index(m), -1] for m in sin.methods}
    closest = min(sin.methods, key=to_truth.get)
    far = [m for m in sin.methods if final[m] > 2 * final["fo_anil"]]
    best_mse = min(sin.methods, key=lambda m: sin.score[m][0])
    steps, mean, _ = dig.curves["fo_anil"]
    top = mean["energy_outside_topk"]
    lo = int(np.argmin(top))
    d_er0, d_er1 = float(mean["effective_rank"][0]), float(mean["effective_rank"][-1])
    er_rank = sorted(dig.methods, key=lambda m: dig.curves[m][1]["effective_rank"][-1])
    first = (
        f"*Does FO-ANIL unlearn the extra directions and become low-rank?* On the sinusoid the share of its "
        f"features' energy outside span{{sin, cos}} goes {ref0:.3g} → {ref1:.3g} "
        f"({'down' if ref1 < ref0 else 'up'} {max(ref0, ref1) / max(min(ref0, ref1), 1e-12):.2g}×), and its "
        f"top-2 subspace ends at sin² {to_truth['fo_anil']:.2f} from the true span (ranked by the final energy "
        f"outside the span: {_names(ranked)}; closest top-2 subspace: {_label(closest)}, sin² "
        f"{to_truth[closest]:.2f}). "
    )
    if er1 > er0:
        first += (
            f"Its effective rank rises, {er0:.3g} → {er1:.3g}, rather than falling to the theory's 2: at "
            f"initialisation only {_change(fo, 'energy_outside_topk')[0]:.2g} of the features' energy lies outside "
            "their top 2 directions (a random ReLU network's features of x ∈ [−5, 5] are nearly linear in x), "
            "and representing sin and cos takes more directions. The theory's claim shows as concentration on "
            "the task span, not as a falling rank. "
        )
    else:
        first += f"Its effective rank falls, {er0:.3g} → {er1:.3g} (the theory's limit is 2). "
    first += f"On digits its effective rank goes {d_er0:.3g} → {d_er1:.3g} (lowest final ranks: {_names(er_rank[:2])})."
    second = (
        f"*How do the methods compare?* Methods whose features keep more than twice FO-ANIL's energy outside "
        f"the sinusoid's span: {_names(far)}. The best 1-step test MSE is {_label(best_mse)}'s "
        f"({sin.score[best_mse][0]:.3g}, FO-ANIL {sin.score['fo_anil'][0]:.3g}): "
        + (
            "the cleanest representation is not the best predictor after one step of α = 0.01, where adapting "
            "the features helps more than a clean span."
            if best_mse != ranked[0]
            else "the cleanest representation is also the best predictor."
        )
    )
    third = (
        f"*Where it breaks.* On digits, FO-ANIL's energy outside the top-5 subspace falls "
        f"{top[0]:.3g} → {top[lo]:.3g} by step {steps[lo]}, then "
        + (
            f"rises again to {top[-1]:.3g}: the unlearning does not persist. A likely reason: the held-out "
            "episodes draw 5 of 20 classes (digits and rotations), so the family as a whole needs more than "
            "k = ways directions and no 5-dimensional subspace is the truth. "
            if top[-1] > 1.2 * top[lo]
            else f"stays near {top[-1]:.3g}. "
        )
        + "ReLU features are piecewise linear, so their energy outside span{sin, cos} cannot reach 0 as "
        "‖B⊥ᵀB‖² does. The theory's head stays at w = 0 because its task heads have mean 0, but the "
        "sinusoid's mean task is (2/π)·E[A]·cos x ≠ 0 and the networks' heads start at a random init. MAML, "
        "FO-MAML and Reptile adapt the features too, so their meta-learned features are not what they predict "
        "with. The theory's rate (the extra energy falls like 1/√t) is slow: short runs show the direction of "
        "the trend, not its limit."
    )
    return [first, "", second, "", third]


def prose(data: FewshotData) -> str:
    sz, sin, dig = data.sizes, data.benches["sinusoid"], data.benches["digits"]
    text = [
        f"Means ± sd over {data.seeds} seed(s); start → end of training; sin² is the mean over the top-k "
        "principal angles (0: the same subspace, 1: orthogonal). Every method starts from the same "
        f"network. Sinusoid: MAML's network (40-40 ReLU, 1 inner step, α = 0.01), K = 10, "
        f"{sz['sinusoid_steps']} outer steps, features of 200 inputs on [−5, 5], k = 2. Digits: 5-way 1-shot "
        f"on the held-out digits 5–9 (and rotations), a {sz['channels']}-channel CNN, {sz['inner_steps']} "
        f"inner steps at α = 0.5, {sz['digits_steps']} outer steps, features of 50 held-out episodes, k = 5.",
        "",
        "**Sinusoid** (the task family spans exactly sin x and cos x, so the analogue of ‖B⊥ᵀB‖² is exact):",
        "",
        _table(sin, True),
        "",
        "**Digits** (no known truth: the top-5 subspace stands in for it):",
        "",
        _table(dig, False),
        "",
        *_answers(sin, dig),
    ]
    return "\n".join(text)


FEWSHOT = Experiment(
    "fewshot",
    "Representations of real few-shot networks",
    "As in the linear theory, FO-ANIL's features on real networks concentrate on a low-dimensional "
    "subspace and lose their energy outside the tasks' span; measured against ANIL, MAML, FO-MAML, "
    "Reptile, Meta-SGD and pretraining on sinusoid regression and digits (and ProtoNets on digits).",
    lambda scale: [],
    aggregate,
    draw,
    prose,
    compute,
)
