"""``metarep fewshot``: the few-shot benchmarks (sinusoid regression, digits, an image folder).

Bad input exits with code 2 and a one-line ``error:`` message naming the option; outputs are
written atomically into ``--out``: ``results.json``, ``results.csv`` and PNG figures.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import typer

from .. import limits
from .common import fail, int_list, name_list, prepare_out

fewshot_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Few-shot benchmarks: sinusoid regression, 8x8 digits, an Omniglot-style image folder.",
)

# the help text names no method: the registry (loaded when a command runs) lists them in the error
ALL_METHODS = "the registered meta-learning methods"


def _out_dir(out: Path | None, default: str) -> Path:
    return prepare_out(out, Path("runs") / default)


def _build(cls, **kw):
    """A config dataclass from the options that were given; invalid values -> one-line error."""
    cfg = cls(**{k: v for k, v in kw.items() if v is not None})
    try:
        cfg.validate()
    except ValueError as e:
        fail(str(e))
    return cfg


PROGRESS = typer.Option(None, "--progress/--no-progress", help="Progress bars (default: on a terminal only).")
THREADS = typer.Option(1, "--threads", min=1, help="Torch threads; one is fastest for these small networks.")
QUICK = typer.Option(False, "--quick", help="Smoke test: 50 outer steps and 100 test tasks unless given.")
INNER_OPTIMIZER = typer.Option("sgd", "--inner-optimizer", help="Inner loop: sgd, momentum or adam.")
LEARN_INNER_LR = typer.Option(
    False, "--learn-inner-lr/--fixed-inner-lr", help="Learn one inner step size in the outer loop."
)


@fewshot_app.command()
def sinusoid(
    shots: str = typer.Option("5,10", "--shots", help="K, support points per task; comma-separated for several."),
    methods: str = typer.Option(
        "fo_anil,anil,fo_maml,maml,reptile", "--methods", help=f"Comma-separated subset of {ALL_METHODS}."
    ),
    steps: str = typer.Option("0,1,10", "--steps", help="Inner steps at test time to report, comma-separated."),
    preset: str | None = typer.Option(
        None, "--preset", help="maml: the official MAML code's protocol (70,000 steps, Adam 1e-3, its init, K queries)."
    ),
    iterations: int | None = typer.Option(None, "--iterations", help="Outer steps per method and K [default: 2000]."),
    meta_batch: int = typer.Option(25, "--meta-batch", help="Tasks per outer step."),
    inner_lr: float = typer.Option(0.01, "--inner-lr", help="Inner step size α (training and test)."),
    inner_steps: int = typer.Option(1, "--inner-steps", help="Inner steps in training (not Reptile)."),
    reptile_inner_steps: int = typer.Option(5, "--reptile-inner-steps", help="Reptile's inner steps in training."),
    outer_lr: float | None = typer.Option(None, "--outer-lr", help="Adam learning rate of the outer loop [3e-3]."),
    test_tasks: int | None = typer.Option(None, "--test-tasks", help="Test tasks [default: 600]."),
    test_queries: int | None = typer.Option(None, "--test-queries", help="Query points per test task [100]."),
    hidden: int = typer.Option(40, "--hidden", help="Width of the two hidden ReLU layers."),
    init: str | None = typer.Option(None, "--init", help="torch (PyTorch's default) or maml (std 0.01, zero bias)."),
    inner_optimizer: str = INNER_OPTIMIZER,
    learn_inner_lr: bool = LEARN_INNER_LR,
    seed: int = typer.Option(0, "--seed", help="One seed: initialisation, training and test tasks."),
    out: Path | None = typer.Option(None, "--out", help="Output folder [default: runs/fewshot-sinusoid]."),
    quick: bool = QUICK,
    threads: int = THREADS,
    progress: bool | None = PROGRESS,
) -> None:
    """Sinusoid regression (MAML's benchmark): test MSE after 0/1/10 steps vs a pretrained baseline."""
    from ..fewshot.sinusoid import (
        PRESET_TEST_QUERIES,
        PRESETS,
        SinusoidConfig,
        method_label,
        run_sinusoid,
        save_sinusoid,
    )

    if preset is not None and preset not in PRESETS:
        fail(f"--preset: must be one of {', '.join(PRESETS)}, got {preset!r}")
    base = {} if preset is None else PRESETS[preset]  # its meta-batch, α and inner steps are the defaults
    cfg = _build(
        SinusoidConfig,
        shots=int_list(shots, "--shots"),
        methods=name_list(methods),
        eval_steps=int_list(steps, "--steps"),
        iterations=iterations if iterations is not None else (50 if quick else base.get("iterations")),
        meta_batch=meta_batch,
        inner_lr=inner_lr,
        inner_steps=inner_steps,
        reptile_inner_steps=reptile_inner_steps,
        outer_lr=outer_lr if outer_lr is not None else base.get("outer_lr"),
        test_tasks=test_tasks if test_tasks is not None else (100 if quick else None),
        test_queries=test_queries,
        hidden=hidden,
        seed=seed,
        init=init if init is not None else base.get("init"),
        inner_optimizer=inner_optimizer,
        learn_inner_lr=learn_inner_lr,
    )
    if preset is not None and test_queries is None:
        cfg = dataclasses.replace(cfg, test_queries=PRESET_TEST_QUERIES[preset])
    _within_limits(lambda: limits.check_sinusoid(cfg))
    out_dir = _out_dir(out, "fewshot-sinusoid")
    t0 = time.perf_counter()
    result = run_sinusoid(cfg, progress=progress, threads=threads)
    save_sinusoid(result, out_dir)
    steps_ = sorted(set(cfg.eval_steps))
    for K in cfg.shots:
        typer.echo(
            f"sinusoid K = {K}: test MSE over {cfg.test_tasks} tasks, mean ± 95% interval "
            f"({cfg.iterations} outer steps, α = {cfg.inner_lr}{', preset ' + preset if preset else ''})"
        )
        typer.echo("  " + f"{'':20}" + "".join(f"{f'{s} step' + ('s' if s != 1 else ''):>26}" for s in steps_))
        for method in ("pretrain",) + cfg.methods:
            cells = []
            for s in steps_:
                r = next(r for r in result.rows if r["shots"] == K and r["method"] == method and r["steps"] == s)
                note = f" (α={r['inner_lr']:g})" if method == "pretrain" and s > 0 else ""
                if r["mse"] is None:
                    cells.append(f"diverged on {r['diverged']}/{cfg.test_tasks}{note}")
                else:
                    cells.append(f"{r['mse']:.3f} ± {r['ci95']:.3f}{note}")
            typer.echo("  " + f"{method_label(method):20}" + "".join(f"{c:>26}" for c in cells))
    typer.echo("  (per task: median MSE and the count of diverged tasks are in results.csv)")
    typer.echo(
        f"done in {time.perf_counter() - t0:.0f} s -> {out_dir} (results.json, results.csv, mse.png, "
        + ", ".join(f"curves_K{K}.png" for K in cfg.shots)
        + ")"
    )


def _fewshot_options(
    ways,
    shots,
    queries,
    methods,
    steps,
    iterations,
    meta_batch,
    inner_lr,
    inner_steps,
    outer_lr,
    test_tasks,
    channels,
    rotations,
    test_classes,
    seed,
    quick,
    inner_optimizer="sgd",
    learn_inner_lr=False,
):
    from ..fewshot.digits import FewShotConfig

    kw = dict(
        ways=ways,
        shots=shots,
        queries=queries,
        methods=name_list(methods),
        eval_steps=int_list(steps, "--steps"),
        iterations=iterations if iterations is not None else (50 if quick else None),
        meta_batch=meta_batch,
        inner_lr=inner_lr,
        inner_steps=inner_steps,
        outer_lr=outer_lr,
        test_tasks=test_tasks if test_tasks is not None else (100 if quick else None),
        channels=channels,
        rotations=rotations,
        seed=seed,
        inner_optimizer=inner_optimizer,
        learn_inner_lr=learn_inner_lr,
    )
    if test_classes is not None:
        kw["test_classes"] = name_list(test_classes)
    return _build(FewShotConfig, **kw)


def _print_fewshot(result, out_dir: Path, elapsed: float) -> None:
    from ..fewshot.digits import method_label

    cfg = result.config
    typer.echo(
        f"{result.dataset}: {cfg.ways}-way {cfg.shots}-shot, {len(result.train_classes)} meta-train / "
        f"{len(result.test_classes)} meta-test classes, accuracy over {cfg.test_tasks} test episodes "
        f"(mean ± 95% interval)"
    )
    steps_ = sorted(set(cfg.eval_steps))
    typer.echo("  " + f"{'':18}" + "".join(f"{f'{s} step' + ('s' if s != 1 else ''):>26}" for s in steps_))
    for method in ("pretrain",) + cfg.methods:
        cells = []
        for s in steps_:
            r = next(r for r in result.rows if r["method"] == method and r["steps"] == s)
            note = f" (α={r['inner_lr']:g})" if method == "pretrain" and s > 0 else ""
            cells.append(f"{100 * r['accuracy']:.1f} ± {100 * r['ci95']:.1f}%{note}")
        typer.echo("  " + f"{method_label(method):18}" + "".join(f"{c:>26}" for c in cells))
    typer.echo(f"done in {elapsed:.0f} s -> {out_dir} (results.json, results.csv, accuracy.png)")


WAYS = typer.Option(5, "--ways", help="N, classes per episode.")
SHOTS = typer.Option(1, "--shots", help="K, labelled images per class in the support set.")
QUERIES = typer.Option(5, "--queries", help="Query images per class.")
METHODS = typer.Option("fo_anil,anil", "--methods", help=f"Comma-separated subset of {ALL_METHODS}.")
STEPS = typer.Option("1,5,10", "--steps", help="Inner steps at test time to report, comma-separated.")
ITERATIONS = typer.Option(None, "--iterations", help="Outer steps per method (and baseline) [default: 500].")
META_BATCH = typer.Option(16, "--meta-batch", help="Episodes per outer step.")
INNER_LR = typer.Option(0.5, "--inner-lr", help="Inner step size α of the meta-learners.")
INNER_STEPS = typer.Option(5, "--inner-steps", help="Inner steps in training.")
OUTER_LR = typer.Option(3e-3, "--outer-lr", help="Adam learning rate of the outer loop (and of the baseline).")
TEST_TASKS = typer.Option(None, "--test-tasks", help="Test episodes [default: 600].")
CHANNELS = typer.Option(32, "--channels", help="Channels of each conv layer.")
SEED = typer.Option(0, "--seed", help="One seed: class split, initialisation, training and test episodes.")


@fewshot_app.command()
def digits(
    ways: int = WAYS,
    shots: int = SHOTS,
    queries: int = QUERIES,
    methods: str = METHODS,
    steps: str = STEPS,
    iterations: int | None = ITERATIONS,
    meta_batch: int = META_BATCH,
    inner_lr: float = INNER_LR,
    inner_steps: int = INNER_STEPS,
    outer_lr: float = OUTER_LR,
    test_tasks: int | None = TEST_TASKS,
    channels: int = CHANNELS,
    rotations: int = typer.Option(
        4, "--rotations", help="Each 90° rotation of a digit is a class (1 = none, up to 4)."
    ),
    test_digits: str = typer.Option(
        "5,6,7,8,9", "--test-digits", help="Digits held out for meta-test (with their rotations)."
    ),
    seed: int = SEED,
    inner_optimizer: str = INNER_OPTIMIZER,
    learn_inner_lr: bool = LEARN_INNER_LR,
    out: Path | None = typer.Option(None, "--out", help="Output folder [default: runs/fewshot-digits]."),
    quick: bool = QUICK,
    threads: int = THREADS,
    progress: bool | None = PROGRESS,
) -> None:
    """N-way K-shot classification of scikit-learn's 8x8 digits on unseen classes: FO-ANIL and ANIL vs
    no meta-learning."""
    from ..fewshot.digits import run_fewshot, save_fewshot, split_by_class
    from ..fewshot.images import load_digits

    cfg = _fewshot_options(
        ways,
        shots,
        queries,
        methods,
        steps,
        iterations,
        meta_batch,
        inner_lr,
        inner_steps,
        outer_lr,
        test_tasks,
        channels,
        rotations,
        test_digits,
        seed,
        quick,
        inner_optimizer,
        learn_inner_lr,
    )
    try:
        train, test = split_by_class(load_digits(), cfg.test_classes, cfg.rotations)
        _check_episodes(cfg, train, test)
    except ValueError as e:
        fail(str(e).replace("--test-classes", "--test-digits"))
    out_dir = _out_dir(out, "fewshot-digits")
    t0 = time.perf_counter()
    result = run_fewshot(train, test, cfg, progress=progress, dataset="sklearn digits 8x8", threads=threads)
    save_fewshot(result, out_dir, "digits")
    _print_fewshot(result, out_dir, time.perf_counter() - t0)


def _within_limits(check) -> None:
    """Run a :mod:`metarep.limits` check; its refusal becomes the one-line error."""
    try:
        check()
    except limits.LimitError as e:
        fail(str(e))


def _check_episodes(cfg, train, test) -> None:
    """Enough classes for ``--ways`` and images per class for ``--shots + --queries``, a batch that fits."""
    n_train, n_test = train.num_classes, test.num_classes
    if cfg.ways > min(n_train, n_test):
        raise ValueError(
            f"--ways: must be at most the number of meta-train ({n_train}) and meta-test ({n_test}) classes, "
            f"got {cfg.ways}"
        )
    need = cfg.shots + cfg.queries
    for part, data in (("meta-train", train), ("meta-test", test)):
        counts = data.counts()
        if int(counts.min()) < need:
            c = int(counts.argmin())
            raise ValueError(
                f"--shots: --shots + --queries = {cfg.shots} + {cfg.queries} images per class are needed, but the "
                f"{part} classes have {int(counts.min())} to {int(counts.max())} images "
                f"(class {data.class_names[c]!r}: {int(counts[c])}); lower --shots or --queries"
            )
    limits.check_episodes(cfg, int(train.images[0].numel()))


@fewshot_app.command()
def images(
    root: Path = typer.Argument(..., help="Folder of images, one sub-folder per class (Omniglot layout works as is)."),
    size: int = typer.Option(28, "--size", help="Images are made grayscale and resized to SIZE x SIZE."),
    invert: bool = typer.Option(
        False, "--invert/--no-invert", help="Use 1 - pixel (for dark strokes on white, as in Omniglot)."
    ),
    test_fraction: float = typer.Option(0.3, "--test-fraction", help="Fraction of the classes held out for meta-test."),
    ways: int = WAYS,
    shots: int = SHOTS,
    queries: int = QUERIES,
    methods: str = METHODS,
    steps: str = STEPS,
    iterations: int | None = ITERATIONS,
    meta_batch: int = META_BATCH,
    inner_lr: float = INNER_LR,
    inner_steps: int = INNER_STEPS,
    outer_lr: float = OUTER_LR,
    test_tasks: int | None = TEST_TASKS,
    channels: int = CHANNELS,
    rotations: int = typer.Option(
        1, "--rotations", help="Each 90° rotation of a class is a new class (1 = none, up to 4)."
    ),
    seed: int = SEED,
    out: Path | None = typer.Option(None, "--out", help="Output folder [default: runs/fewshot-images]."),
    quick: bool = QUICK,
    threads: int = THREADS,
    progress: bool | None = PROGRESS,
) -> None:
    """The digits experiment on your own images: classes split at random into meta-train and meta-test."""
    from ..fewshot.digits import random_class_split, run_fewshot, save_fewshot
    from ..fewshot.images import load_image_folder, rotate_classes

    cfg = _fewshot_options(
        ways,
        shots,
        queries,
        methods,
        steps,
        iterations,
        meta_batch,
        inner_lr,
        inner_steps,
        outer_lr,
        test_tasks,
        channels,
        rotations,
        None,
        seed,
        quick,
    )
    if not 0 < test_fraction < 1:
        fail(f"--test-fraction: must be between 0 and 1 (exclusive), got {test_fraction}")
    if size < 4:
        fail(f"--size: must be >= 4, got {size}")
    try:
        data = load_image_folder(root, size, invert=invert, min_images=cfg.shots + cfg.queries)
        if data.num_classes < 4:
            raise ValueError(
                f"image folder: {data.num_classes} classes with at least {cfg.shots + cfg.queries} "
                f"images (--shots + --queries) under {root}; at least 4 are needed"
            )
        train_ids, test_ids = random_class_split(data.num_classes, test_fraction, cfg.seed)
        train = rotate_classes(data.subset(train_ids), cfg.rotations)
        test = rotate_classes(data.subset(test_ids), cfg.rotations)
        _check_episodes(cfg, train, test)
    except ValueError as e:
        fail(str(e))
    cfg = dataclasses.replace(cfg, test_classes=tuple(data.class_names[i] for i in test_ids))
    out_dir = _out_dir(out, "fewshot-images")
    t0 = time.perf_counter()
    result = run_fewshot(
        train, test, cfg, progress=progress, dataset=f"image folder {root} ({size}x{size})", threads=threads
    )
    save_fewshot(result, out_dir, "images")
    _print_fewshot(result, out_dir, time.perf_counter() - t0)
