"""Few-shot classification: N-way K-shot episodes on scikit-learn's 8×8 digits (or any
:class:`~metarep.fewshot.images.ClassImages`), with disjoint meta-train and meta-test classes.

The meta-learners (FO-ANIL and ANIL by default) train a small convolutional network on episodes of
the meta-train classes. The no-meta-learning baseline trains the same network as an ordinary
classifier of all meta-train classes; at test time its head is replaced by a zero ``N``-way head
fine-tuned on the support set with as many steps as the meta-learners and, for each number of
steps, the best step size of a grid chosen on meta-training episodes (one step from zero is a
nearest-class-mean classifier on the pretrained features). Accuracy is the mean
over test episodes with its 95% interval.

Classes: with ``rotations = 4`` (default) every digit in each of its four 90° rotations is a class,
as is usual for Omniglot; the meta-test digits (default 5–9) and their rotations are never seen in
meta-training.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import diagnostics as dg
from .. import limits
from ..learner import MetaLearner
from ..methods import registry
from ..progress import progress_bar
from ..runtime import check_threads, threads_for
from ..stats import mean_ci
from ._util import need, spawn_seeds, tune_inner_lr, validate_meta_options
from .backbones import BACKBONES, backbone
from .episodes import EpisodeSampler
from .images import ClassImages, rotate_classes


@dataclass(frozen=True)
class FewShotConfig:
    """Settings of ``metarep fewshot digits`` / ``images`` (our choices; see the README)."""

    ways: int = 5
    shots: int = 1
    queries: int = 5
    methods: tuple[str, ...] = ("fo_anil", "anil")
    iterations: int = 500
    meta_batch: int = 16
    inner_lr: float = 0.5
    inner_steps: int = 5
    outer_lr: float = 3e-3
    eval_steps: tuple[int, ...] = (1, 5, 10)
    test_tasks: int = 600
    channels: int = 32
    backbone: str = "small"
    rotations: int = 4
    test_classes: tuple[str, ...] = ("5", "6", "7", "8", "9")
    seed: int = 0
    diagnostics_every: int = 0  # 0: no representation diagnostics
    inner_optimizer: str = "sgd"
    learn_inner_lr: bool = False

    def validate(self) -> None:
        validate_meta_options(self)
        need(self.diagnostics_every >= 0, "--diagnostics", "a number of steps >= 0", self.diagnostics_every)
        need(self.ways >= 2, "--ways", ">= 2", self.ways)
        need(self.shots >= 1, "--shots", ">= 1", self.shots)
        need(self.queries >= 1, "--queries", ">= 1", self.queries)
        need(self.channels >= 1, "--channels", ">= 1", self.channels)
        need(self.backbone in BACKBONES, "--backbone", f"one of {', '.join(BACKBONES)}", self.backbone)
        need(self.rotations in (1, 2, 3, 4), "--rotations", "1, 2, 3 or 4", self.rotations)
        need(self.seed >= 0, "--seed", ">= 0", self.seed)


@dataclass
class FewShotResult:
    config: FewShotConfig
    rows: list[dict]  # tidy: method, steps, accuracy, ci95, loss
    train_classes: tuple[str, ...]
    test_classes: tuple[str, ...]
    history: dict[str, list[float]] = field(default_factory=dict)
    train_seconds: dict[str, float] = field(default_factory=dict)
    seeds: dict[str, int] = field(default_factory=dict)
    dataset: str = ""
    diagnostics: dict[str, list[dict]] = field(default_factory=dict)  # method -> rows (metarep.diagnostics)
    angles: list[dict] = field(default_factory=list)  # principal angles between the methods' final features


BASELINE_LR_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def _seeds(seed: int) -> dict[str, int]:
    return spawn_seeds(seed, ("init", "train", "test", "split"))


def split_by_class(data: ClassImages, test_classes: tuple[str, ...], rotations: int) -> tuple[ClassImages, ClassImages]:
    """Meta-train and meta-test sets: ``test_classes`` (names of ``data``'s classes) and their rotations
    are held out; every other class (and its rotations) is for meta-training."""
    unknown = [c for c in test_classes if c not in data.class_names]
    if unknown:
        raise ValueError(f"--test-classes: {', '.join(unknown)} not among the classes ({', '.join(data.class_names)})")
    test_ids = [data.class_names.index(c) for c in test_classes]
    train_ids = [i for i in range(data.num_classes) if i not in test_ids]
    if not train_ids:
        raise ValueError("--test-classes: no class is left for meta-training")
    rot = lambda ids: rotate_classes(data.subset(ids), rotations)  # noqa: E731
    return rot(train_ids), rot(test_ids)


def random_class_split(num_classes: int, test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Class indices split at random into meta-train and meta-test, ``(train_ids, test_ids)``, each sorted.

    A ``test_fraction`` of the ``num_classes`` classes (rounded, at least one, leaving at least one) is
    held out; the permutation is seeded by the ``split`` seed of ``seed``, as in :func:`run_fewshot`.
    """
    perm = torch.randperm(num_classes, generator=torch.Generator().manual_seed(_seeds(seed)["split"]))
    n_test = min(max(1, round(test_fraction * num_classes)), num_classes - 1)
    return sorted(perm[n_test:].tolist()), sorted(perm[:n_test].tolist())


MIN_FOLDER_CLASSES = 4  # an image folder split at random into meta-train and meta-test classes


def split_sizes(num_classes: int, test_fraction: float, test_classes: int | None = None) -> tuple[int, int]:
    """Classes (before rotations) of meta-training and meta-test that :func:`folder_split` will make of an
    image folder with ``num_classes`` classes (``test_classes``: those of a separate meta-test folder), known
    before any image is read; ``ValueError`` when a random split needs more classes."""
    if test_classes is not None:
        return num_classes, test_classes
    if num_classes < MIN_FOLDER_CLASSES:
        raise ValueError(
            f"image folder: {num_classes} class(es) with enough images; at least {MIN_FOLDER_CLASSES} are needed "
            "to split them into meta-train and meta-test classes (or give --test-root)"
        )
    n_test = min(max(1, round(test_fraction * num_classes)), num_classes - 1)
    return num_classes - n_test, n_test


def folder_split(
    data: ClassImages, test_fraction: float, seed: int, rotations: int, test: ClassImages | None = None
) -> tuple[ClassImages, ClassImages]:
    """Meta-train and meta-test classes of an image folder, each in ``rotations`` rotations: ``test``'s classes
    when given (a separate folder), else a random ``test_fraction`` of ``data``'s (:func:`random_class_split`)."""
    if test is None:
        split_sizes(data.num_classes, test_fraction)  # enough classes to split
        train_ids, test_ids = random_class_split(data.num_classes, test_fraction, seed)
        data, test = data.subset(train_ids), data.subset(test_ids)
    return rotate_classes(data, rotations), rotate_classes(test, rotations)


def pretrain_classifier(
    features: nn.Module,
    data: ClassImages,
    cfg: FewShotConfig,
    generator: torch.Generator,
    progress: bool | None = None,
    on_step: Callable[[int], None] | None = None,
) -> list[float]:
    """The baseline: ``features`` + a linear head trained as a classifier of all of ``data``'s classes.

    Same number of steps as the meta-learners, ``meta_batch · ways · (shots + queries)`` images a step.
    ``on_step(step)`` is called after every step (and with 0 before the first).
    """
    with torch.no_grad():
        width = features(data.images[:2]).shape[-1]  # two: batch statistics need more than one sample
    head = nn.Linear(width, data.num_classes)
    opt = torch.optim.Adam(list(features.parameters()) + list(head.parameters()), lr=cfg.outer_lr)
    batch = min(cfg.meta_batch * cfg.ways * (cfg.shots + cfg.queries), len(data.labels))
    losses = []
    if on_step is not None:
        on_step(0)
    for step in progress_bar(iterable=range(cfg.iterations), enabled=progress, desc="pretrain", unit="step"):
        idx = torch.randint(len(data.labels), (batch,), generator=generator)
        loss = F.cross_entropy(head(features(data.images[idx])), data.labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step + 1)
    return losses


def run_fewshot(
    train: ClassImages,
    test: ClassImages,
    cfg: FewShotConfig,
    *,
    progress: bool | None = None,
    dataset: str = "",
    threads: int | None = 0,
    allow_long: bool = False,
) -> FewShotResult:
    """Meta-train each method on episodes of ``train``'s classes, the baseline as a classifier of them,
    and score all on the same ``cfg.test_tasks`` episodes of ``test``'s classes.

    Refused first (:func:`metarep.limits.check_episodes`, a ``ValueError``) when a batch would not fit in
    memory or, unless ``allow_long``, the benchmark would take too long."""
    cfg.validate()
    limits.check_episodes(cfg, int(train.images[0].numel()), allow_long)
    check_threads(threads)
    # torch threads restored afterwards: 0 chosen for the step's size (metarep.runtime), None: leave them
    step = cfg.meta_batch * cfg.ways * (cfg.shots + cfg.queries) * float(train.images[0].numel())  # its inputs
    with threads_for(threads, step):
        return _run_fewshot(train, test, cfg, progress, dataset)


def _run_fewshot(
    train: ClassImages, test: ClassImages, cfg: FewShotConfig, progress: bool | None, dataset: str
) -> FewShotResult:
    cfg.validate()
    seeds = _seeds(cfg.seed)
    gen = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    test_batch = EpisodeSampler(test, cfg.ways, cfg.shots, cfg.queries, gen(seeds["test"])).sample(cfg.test_tasks)
    size = tuple(train.images.shape[-2:])
    channels_in = train.images.shape[1]
    rows, history, seconds = [], {}, {}

    def score(name: str, learner: MetaLearner, lrs: dict[int, float] | None = None) -> None:
        for s in sorted(set(cfg.eval_steps)):
            lr = (lrs or {}).get(s, cfg.inner_lr)
            res = learner.set_params(inner_lr=lr).evaluate(test_batch, steps=(s,))[s]
            m, h = mean_ci(res["accuracy"])
            rows.append(
                {
                    "method": name,
                    "steps": s,
                    "inner_lr": lr,
                    "accuracy": m,
                    "ci95": h,
                    "loss": float(res["loss"].mean()),
                }
            )

    # the no-meta-learning baseline: a classifier of the meta-train classes, then a new zero head per episode
    features, _ = backbone(cfg.backbone, cfg.ways, channels_in, size, cfg.channels, seed=seeds["init"])
    t0 = time.perf_counter()
    probe = _probe(test, cfg, seeds)
    final_features = {}

    def track(step: int) -> None:
        if probe is not None and (step % cfg.diagnostics_every == 0 or step == cfg.iterations):
            # the baseline adapts a zero head at test time: no meta-learned head to measure (head_norm nan)
            row = {"step": step, **dg.measure(features, probe.X, probe.k)}
            diagnostics.setdefault("pretrain", []).append(row)

    diagnostics: dict[str, list[dict]] = {}
    history["pretrain"] = pretrain_classifier(features, train, cfg, gen(seeds["train"]), progress, track)
    if probe is not None:
        final_features["pretrain"] = dg.features_of(features, probe.X)
    seconds["pretrain"] = time.perf_counter() - t0
    with torch.no_grad():
        width = features(train.images[:2]).shape[-1]
    head = nn.Linear(width, cfg.ways)
    nn.init.zeros_(head.weight), nn.init.zeros_(head.bias)
    baseline = MetaLearner(
        features,
        head,
        method="pretrain",
        inner_lr=cfg.inner_lr,
        inner_steps=cfg.inner_steps,
        loss="cross_entropy",
        adapt_params=["head"],
    )
    # its best test-time step size, chosen on episodes of the meta-train classes
    val = EpisodeSampler(train, cfg.ways, cfg.shots, cfg.queries, gen(seeds["split"])).sample(min(cfg.test_tasks, 200))
    score("pretrain", baseline, tune_inner_lr(baseline, val, BASELINE_LR_GRID, cfg.eval_steps))

    for method in cfg.methods:
        features, head = backbone(cfg.backbone, cfg.ways, channels_in, size, cfg.channels, seed=seeds["init"])
        learner = MetaLearner(
            features,
            head,
            method=method,
            inner_lr=cfg.inner_lr,
            inner_steps=cfg.inner_steps,
            outer_lr=cfg.outer_lr,
            loss="cross_entropy",
            inner_optimizer=cfg.inner_optimizer,
            learn_inner_lr=cfg.learn_inner_lr and registry.get(method).order in ("first", "second"),
        )
        source = EpisodeSampler(train, cfg.ways, cfg.shots, cfg.queries, gen(seeds["train"])).batches(cfg.meta_batch)
        t0 = time.perf_counter()
        if probe is None:
            learner.fit(source, iterations=cfg.iterations, progress=progress, allow_long=True)  # (checked above)
        else:
            diagnostics[method] = dg.fit_tracked(
                learner, source, cfg.iterations, cfg.diagnostics_every, probe, progress=progress, allow_long=True
            )
            final_features[method] = dg.features_of(learner, probe.X)
        seconds[method] = time.perf_counter() - t0
        history[method] = [h["loss"] for h in learner.history_]
        score(method, learner)
    angles = dg.angles_table(final_features, probe.k) if probe is not None else []
    return FewShotResult(
        cfg, rows, train.class_names, test.class_names, history, seconds, seeds, dataset, diagnostics, angles
    )


PROBE_EPISODES = 50


def _probe(test: ClassImages, cfg: FewShotConfig, seeds: dict[str, int]) -> dg.Probe | None:
    """Held-out inputs of the diagnostics: every image of :data:`PROBE_EPISODES` fixed episodes of the
    meta-test classes, ``(T, ways·(shots + queries), C, H, W)``; top-k energy with ``k = ways``."""
    if not cfg.diagnostics_every:
        return None
    b = EpisodeSampler(test, cfg.ways, cfg.shots, cfg.queries, torch.Generator()).fixed(
        PROBE_EPISODES, seeds["test"] + 1
    )
    return dg.Probe(b.merged()[0], k=cfg.ways)


BASELINE_LABEL = "no meta-learning"


def method_label(method: str) -> str:
    """How tables and figures name ``method``: the registry's label, or :data:`BASELINE_LABEL` for ``pretrain``."""
    return BASELINE_LABEL if method == "pretrain" else registry.label(method)


def plot_fewshot(result: FewShotResult, path: str | Path, test_images: ClassImages | None = None) -> None:
    """Left: training loss of each method (smoothed). Right: test accuracy with 95% intervals."""
    from ..plots import colormap, figure, save_figure

    fig = figure(figsize=(11, 4))
    ax1, ax2 = fig.subplots(1, 2)
    for i, (name, losses) in enumerate(result.history.items()):
        if not losses:
            continue
        w = max(1, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
        ax1.plot(
            np.arange(len(smooth)) + w,
            smooth,
            color="k" if name == "pretrain" else f"C{i}",
            ls="--" if name == "pretrain" else "-",
            label=method_label(name),
        )
    ax1.set_xlabel("outer step")
    ax1.set_ylabel("training loss (query, after adaptation)")
    ax1.set_title("training (baseline: its classification loss)")
    ax1.legend(fontsize=8)
    names = list(dict.fromkeys(r["method"] for r in result.rows))
    steps = sorted({r["steps"] for r in result.rows})
    width = 0.8 / len(steps)
    for j, s in enumerate(steps):
        rs = [next(r for r in result.rows if r["method"] == n and r["steps"] == s) for n in names]
        xs = np.arange(len(names)) + (j - (len(steps) - 1) / 2) * width
        ax2.bar(
            xs,
            [r["accuracy"] for r in rs],
            width,
            yerr=[r["ci95"] for r in rs],
            capsize=4,
            label=f"{s} step{'s' if s != 1 else ''}",
            color=colormap("viridis")(0.2 + 0.6 * j / max(len(steps) - 1, 1)),
        )
        for x, r in zip(xs, rs):
            ax2.text(x, r["accuracy"] + r["ci95"] + 0.01, f"{100 * r['accuracy']:.1f}", ha="center", fontsize=8)
    ax2.axhline(1 / result.config.ways, color="gray", ls=":", lw=1, label="chance")
    ax2.set_xticks(np.arange(len(names)), [method_label(n) for n in names])
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel(f"accuracy on {result.config.test_tasks} test episodes (95% interval)")
    ax2.set_title(f"{result.config.ways}-way {result.config.shots}-shot, unseen classes")
    ax2.legend(fontsize=8, loc="upper center", ncol=4)
    fig.suptitle(
        f"{result.dataset}: {len(result.train_classes)} meta-train / {len(result.test_classes)} meta-test classes",
        fontsize=10,
    )
    save_figure(fig, path)


def save_fewshot(result: FewShotResult, out_dir: str | Path, benchmark: str = "digits") -> list[Path]:
    """Write ``results.json``, ``results.csv`` and ``accuracy.png`` atomically (with diagnostics:
    ``diagnostics.csv``, ``angles.csv`` and ``diagnostics.png``, see :func:`metarep.diagnostics.save_tracked`)."""
    from ..files import write_csv, write_result

    out = Path(out_dir)
    write_csv(out / "results.csv", result.rows)
    plot_fewshot(result, out / "accuracy.png")
    extra = []
    if result.diagnostics:
        extra = dg.save_tracked(
            result.diagnostics,
            result.angles,
            out,
            f"{result.dataset}: features of {PROBE_EPISODES} held-out episodes ({result.config.ways}-way "
            f"{result.config.shots}-shot), top-k with k = {result.config.ways}",
            label=method_label,
        )
    write_result(
        out / "results.json",
        {
            "benchmark": benchmark,
            "dataset": result.dataset,
            "config": asdict(result.config),
            "seeds": result.seeds,
            "train_classes": list(result.train_classes),
            "test_classes": list(result.test_classes),
            "results": result.rows,
            "train_seconds": result.train_seconds,
            "diagnostics": result.diagnostics,
            "angles": result.angles,
        },
    )
    return [out / "results.json", out / "results.csv", out / "accuracy.png", *extra]
