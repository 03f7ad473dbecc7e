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
from .common import ALLOW_LONG, fail, int_list, name_list, out_path
from .fewshot_options import (
    ALL_METHODS,
    BACKBONE,
    CHANNELS,
    DIAGNOSTICS,
    INNER_LR,
    INNER_OPTIMIZER,
    INNER_STEPS,
    ITERATIONS,
    LEARN_INNER_LR,
    META_BATCH,
    METHODS,
    OUTER_LR,
    PROGRESS,
    QUERIES,
    QUICK,
    SEED,
    SHOTS,
    STEPS,
    TEST_TASKS,
    THREADS,
    WAYS,
    build,
    check_episodes,
    fewshot_options,
    fewshot_out,
    print_fewshot,
    within_limits,
)

fewshot_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Few-shot benchmarks: sinusoid regression, 8x8 digits, an Omniglot-style image folder.",
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
    diagnostics: bool = typer.Option(
        False,
        "--diagnostics",
        help="Track representation diagnostics over training (features of 200 inputs, energy outside "
        "span{sin, cos}): diagnostics_K*/diagnostics.csv, angles.csv, diagnostics.png.",
    ),
    seed: int = typer.Option(0, "--seed", help="One seed: initialisation, training and test tasks."),
    out: Path | None = typer.Option(
        None, "--out", parser=out_path, metavar="<path>", help="Output folder [default: runs/fewshot-sinusoid]."
    ),
    quick: bool = QUICK,
    threads: int | None = THREADS,
    progress: bool | None = PROGRESS,
    allow_long: bool = ALLOW_LONG,
) -> None:
    """Sinusoid regression (MAML's benchmark): test MSE after 0/1/10 steps vs a pretrained baseline."""
    from ..fewshot.sinusoid import PRESET_TEST_QUERIES, PRESETS, SPAN_K, SinusoidConfig, method_label, run_sinusoid
    from ..fewshot.sinusoid_plots import save_sinusoid

    if preset is not None and preset not in PRESETS:
        fail(f"--preset: must be one of {', '.join(PRESETS)}, got {preset!r}")
    base = {} if preset is None else PRESETS[preset]  # its meta-batch, α and inner steps are the defaults
    cfg = build(
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
    if diagnostics:
        from ..diagnostics import measure_every

        cfg = dataclasses.replace(cfg, diagnostics_every=measure_every(cfg.iterations))
    within_limits(lambda: limits.check_sinusoid(cfg, allow_long))
    out_dir = fewshot_out(out, "fewshot-sinusoid")
    t0 = time.perf_counter()
    result = run_sinusoid(cfg, progress=progress, threads=threads or 0, allow_long=allow_long)
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
        if K in result.diagnostics:
            from ..diagnostics import summary_lines

            typer.echo("\n".join(summary_lines(result.diagnostics[K], SPAN_K, method_label)))
    typer.echo("  (per task: median MSE and the count of diverged tasks are in results.csv)")
    files = ["results.json", "results.csv", "mse.png"] + [f"curves_K{K}.png" for K in cfg.shots]
    files += [f"diagnostics_K{K}/" for K in result.diagnostics]
    typer.echo(f"done in {time.perf_counter() - t0:.0f} s -> {out_dir} ({', '.join(files)})")


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
    backbone: str = BACKBONE,
    diagnostics: bool = DIAGNOSTICS,
    inner_optimizer: str = INNER_OPTIMIZER,
    learn_inner_lr: bool = LEARN_INNER_LR,
    out: Path | None = typer.Option(
        None, "--out", parser=out_path, metavar="<path>", help="Output folder [default: runs/fewshot-digits]."
    ),
    quick: bool = QUICK,
    threads: int | None = THREADS,
    progress: bool | None = PROGRESS,
    allow_long: bool = ALLOW_LONG,
) -> None:
    """N-way K-shot classification of scikit-learn's 8x8 digits on unseen classes: FO-ANIL and ANIL vs
    no meta-learning."""
    from ..fewshot.digits import run_fewshot, save_fewshot, split_by_class
    from ..fewshot.images import load_digits

    cfg = fewshot_options(
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
        backbone,
        diagnostics,
        inner_optimizer,
        learn_inner_lr,
    )
    try:
        train, test = split_by_class(load_digits(), cfg.test_classes, cfg.rotations)
        check_episodes(cfg, train, test, allow_long)
    except ValueError as e:
        fail(str(e).replace("--test-classes", "--test-digits"))
    out_dir = fewshot_out(out, "fewshot-digits")
    t0 = time.perf_counter()
    result = run_fewshot(
        train, test, cfg, progress=progress, dataset="sklearn digits 8x8", threads=threads or 0, allow_long=allow_long
    )
    save_fewshot(result, out_dir, "digits")
    print_fewshot(result, out_dir, time.perf_counter() - t0)


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
    backbone: str = BACKBONE,
    diagnostics: bool = DIAGNOSTICS,
    color: bool = typer.Option(False, "--color/--grayscale", help="Keep RGB channels (mini-ImageNet)."),
    test_root: Path | None = typer.Option(
        None,
        "--test-root",
        help="Meta-test classes from this folder (e.g. Omniglot's images_evaluation, mini-ImageNet's test) "
        "instead of a random --test-fraction of ROOT's classes.",
    ),
    out: Path | None = typer.Option(
        None, "--out", parser=out_path, metavar="<path>", help="Output folder [default: runs/fewshot-images]."
    ),
    quick: bool = QUICK,
    threads: int | None = THREADS,
    progress: bool | None = PROGRESS,
    allow_long: bool = ALLOW_LONG,
) -> None:
    """The digits experiment on your own images: classes split at random into meta-train and meta-test."""
    from ..fewshot.digits import folder_split, run_fewshot, save_fewshot, split_sizes
    from ..fewshot.images import read_image_classes, scan_image_folder

    cfg = fewshot_options(
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
        backbone,
        diagnostics,
    )
    if not 0 < test_fraction < 1:
        fail(f"--test-fraction: must be between 0 and 1 (exclusive), got {test_fraction}")
    if size < 4:
        fail(f"--size: must be >= 4, got {size}")
    channels_in = 3 if color else 1
    try:  # classes, sizes and time from the file names, before any image is decoded
        found = scan_image_folder(root, min_images=cfg.shots + cfg.queries)
        found_test = scan_image_folder(test_root, min_images=cfg.shots + cfg.queries) if test_root else None
        split_sizes(len(found), test_fraction, None if found_test is None else len(found_test))  # enough classes
        count = sum(len(ps) for f in (found, found_test or {}) for ps in f.values())
        limits.check_images(count, size, size, channels_in)
        limits.check_episodes(cfg, channels_in * size * size, allow_long)
        read = lambda by_class: read_image_classes(by_class, size, invert=invert, color=color)  # noqa: E731
        train, test = folder_split(
            read(found), test_fraction, cfg.seed, cfg.rotations, read(found_test) if found_test else None
        )
        check_episodes(cfg, train, test, allow_long)
    except ValueError as e:
        fail(str(e))
    cfg = dataclasses.replace(cfg, test_classes=test.class_names[:: cfg.rotations])
    out_dir = fewshot_out(out, "fewshot-images")
    t0 = time.perf_counter()
    where = f"{root}" + (f" / {test_root}" if test_root is not None else "")
    result = run_fewshot(
        train,
        test,
        cfg,
        progress=progress,
        dataset=f"image folder {where} ({size}x{size})",
        threads=threads or 0,
        allow_long=allow_long,
    )
    save_fewshot(result, out_dir, "images")
    print_fewshot(result, out_dir, time.perf_counter() - t0)
