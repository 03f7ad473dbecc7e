"""The options and helpers the ``metarep fewshot`` commands share (:mod:`metarep.cli.fewshot`)."""

from __future__ import annotations

from pathlib import Path

import typer

from .. import limits
from .common import fail, int_list, name_list, prepare_out

# the help text names no method: the registry (loaded when a command runs) lists them in the error
ALL_METHODS = "the registered meta-learning methods"


def fewshot_out(out: Path | None, default: str) -> Path:
    return prepare_out(out, Path("runs") / default)


def build(cls, **kw):
    """A config dataclass from the options that were given; invalid values -> one-line error."""
    cfg = cls(**{k: v for k, v in kw.items() if v is not None})
    try:
        cfg.validate()
    except ValueError as e:
        fail(str(e))
    return cfg


PROGRESS = typer.Option(None, "--progress/--no-progress", help="Progress bars (default: on a terminal only).")
THREADS = typer.Option(
    None, "--threads", min=1, help="Torch threads (default: chosen for the step's size, one for small networks)."
)
QUICK = typer.Option(False, "--quick", help="Smoke test: 50 outer steps and 100 test tasks unless given.")
INNER_OPTIMIZER = typer.Option("sgd", "--inner-optimizer", help="Inner loop: sgd, momentum or adam.")
LEARN_INNER_LR = typer.Option(
    False, "--learn-inner-lr/--fixed-inner-lr", help="Learn one inner step size in the outer loop."
)


def fewshot_options(
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
    backbone="small",
    diagnostics=False,
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
    kw["backbone"] = backbone
    if diagnostics:
        from ..diagnostics import measure_every

        kw["diagnostics_every"] = measure_every(kw["iterations"] or FewShotConfig.iterations)
    return build(FewShotConfig, **kw)


def print_fewshot(result, out_dir: Path, elapsed: float) -> None:
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
    if result.diagnostics:
        from ..diagnostics import summary_lines

        typer.echo("\n".join(summary_lines(result.diagnostics, cfg.ways, method_label)))
    files = "results.json, results.csv, accuracy.png" + (
        ", diagnostics.csv, angles.csv, diagnostics.png" if result.diagnostics else ""
    )
    typer.echo(f"done in {elapsed:.0f} s -> {out_dir} ({files})")


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
BACKBONE = typer.Option(
    "small",
    "--backbone",
    help="small: conv3x3-ReLU-maxpool blocks, no normalisation; conv4: the usual 4 x [conv3x3-BatchNorm-ReLU-maxpool] "
    "(use --channels 64 for the standard width).",
)
DIAGNOSTICS = typer.Option(
    False,
    "--diagnostics",
    help="Track representation diagnostics of held-out episodes over training: diagnostics.csv, angles.csv, "
    "diagnostics.png.",
)
SEED = typer.Option(0, "--seed", help="One seed: class split, initialisation, training and test episodes.")


def within_limits(check) -> None:
    """Run a :mod:`metarep.limits` check; its refusal becomes the one-line error."""
    try:
        check()
    except limits.LimitError as e:
        fail(str(e))


def check_ways(cfg, n_train: int, n_test: int) -> None:
    """``ValueError`` naming ``--ways`` unless there are that many meta-train and meta-test classes."""
    if cfg.ways > min(n_train, n_test):
        raise ValueError(
            f"--ways: must be at most the number of meta-train ({n_train}) and meta-test ({n_test}) classes, "
            f"got {cfg.ways}"
        )


def check_episodes(cfg, train, test, allow_long: bool = False) -> None:
    """Enough classes for ``--ways`` and images per class for ``--shots + --queries``, a batch that fits, a
    benchmark that ends (:func:`metarep.limits.check_episodes`; ``allow_long``: ``--allow-long``)."""
    check_ways(cfg, train.num_classes, test.num_classes)
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
    limits.check_episodes(cfg, int(train.images[0].numel()), allow_long)
