"""Sinusoid regression, the classic MAML benchmark (Finn, Abbeel, Levine 2017, §5.1).

A task is ``y = A sin(x + φ)`` with amplitude ``A ~ U[0.1, 5]``, phase ``φ ~ U[0, π]`` and inputs
``x ~ U[−5, 5]``; the learner sees K noiseless (x, y) pairs of a new task (K = 5 or 10) and is
scored by its mean squared error on new points of that task after 0, 1 and 10 inner steps. The
network is MAML's: two hidden layers of 40 ReLU units and a linear head.

The no-meta-learning baseline is the same network trained on all tasks jointly (``pretrain``: the
loss at ``θ`` itself, no inner loop) and fine-tuned at test time (all parameters), with, for each
number of steps, the best step size of a grid chosen on meta-training tasks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from .. import diagnostics as dg
from .. import inner, limits
from ..batch import TaskBatch
from ..learner import MetaLearner
from ..methods import registry
from ..runtime import check_threads, threads_for
from ..stats import mean_ci
from ._util import need, spawn_seeds, tune_inner_lr, validate_meta_options


@dataclass(frozen=True)
class SinusoidTasks:
    """The task distribution (ground truth kept apart from sampling).

    **Arguments:** ``amplitude``, ``phase``, ``x_range``: the ranges of the uniform distributions.
    """

    amplitude: tuple[float, float] = (0.1, 5.0)
    phase: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)

    def sample_tasks(
        self, num_tasks: int, generator: torch.Generator, dtype=torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Amplitudes and phases of ``num_tasks`` new tasks, each ``(T,)``."""
        u = torch.rand(2, num_tasks, generator=generator, dtype=torch.float64)
        amp = self.amplitude[0] + (self.amplitude[1] - self.amplitude[0]) * u[0]
        phase = self.phase[0] + (self.phase[1] - self.phase[0]) * u[1]
        return amp.to(dtype), phase.to(dtype)

    @staticmethod
    def function(amp: torch.Tensor, phase: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``A sin(x + φ)`` for tasks ``(T,)`` at ``x (T, n, 1)`` -> ``(T, n)``."""
        return amp[:, None] * torch.sin(x[..., 0] + phase[:, None])

    def sample_inputs(self, num_tasks: int, n: int, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
        """``x ~ U[x_range]``, ``(T, n, 1)``."""
        lo, hi = self.x_range
        return (lo + (hi - lo) * torch.rand(num_tasks, n, 1, generator=generator, dtype=torch.float64)).to(dtype)

    def sample(
        self, num_tasks: int, shots: int, queries: int, generator: torch.Generator, dtype=torch.float32
    ) -> tuple[TaskBatch, torch.Tensor, torch.Tensor]:
        """``num_tasks`` tasks with ``shots`` support and ``queries`` query points each.

        Returns the batch (``X (T, n, 1)``, ``y (T, n)``) and the tasks' amplitudes and phases.
        """
        amp, phase = self.sample_tasks(num_tasks, generator, dtype)
        X = self.sample_inputs(num_tasks, shots + queries, generator, dtype)
        y = self.function(amp, phase, X)
        return TaskBatch(X[:, :shots], y[:, :shots], X[:, shots:], y[:, shots:]), amp, phase

    def batches(
        self, meta_batch: int, shots: int, queries: int, generator: torch.Generator | None = None, dtype=torch.float32
    ) -> Iterator[TaskBatch]:
        """An endless stream of fresh batches of ``meta_batch`` tasks, drawn with ``generator``
        (default: a new one seeded with 0, so that two streams made without one are the same)."""
        generator = torch.Generator().manual_seed(0) if generator is None else generator
        while True:
            yield self.sample(meta_batch, shots, queries, generator, dtype)[0]


SPAN = "span{sin, cos}"  # every task is (A cos φ) sin x + (A sin φ) cos x: the family's true representation
SPAN_K = 2


def sinusoid_reference(x: torch.Tensor) -> torch.Tensor:
    """``(n,) -> (n, 2)``: ``sin x, cos x``, the functions every sinusoid task is a combination of."""
    return torch.stack([torch.sin(x), torch.cos(x)], 1)


def sinusoid_probe(tasks: SinusoidTasks, points: int = 200) -> dg.Probe:
    """Inputs of the representation diagnostics: ``points`` evenly spaced over ``x_range`` (one task,
    ``X (1, points, 1)``), ``k = 2``, with :func:`sinusoid_reference` as the known truth: the features'
    energy outside ``span{sin x, cos x}`` is the analogue of ``‖B⊥ᵀB‖²_F / ‖B‖²_F``."""
    x = torch.linspace(*tasks.x_range, points)
    return dg.Probe(x[None, :, None], SPAN_K, sinusoid_reference(x))


INITS = ("torch", "maml")


def sinusoid_net(
    hidden: int = 40, layers: int = 2, seed: int | None = None, init: str = "torch"
) -> tuple[nn.Module, nn.Linear]:
    """MAML's regression network: ``layers`` hidden ReLU layers of width ``hidden``, then ``nn.Linear(hidden, 1)``.

    ``init``: ``"torch"`` (PyTorch's default initialisation) or ``"maml"``, the official MAML code's
    (``maml.py``, ``construct_fc_weights``): every weight from a normal distribution with std 0.01
    truncated at two standard deviations, every bias zero.
    """
    if seed is not None:
        torch.manual_seed(seed)
    mods: list[nn.Module] = []
    width = 1
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    features, head = nn.Sequential(*mods), nn.Linear(hidden, 1)
    if init == "maml":
        with torch.no_grad():
            for m in [*features, head]:
                if isinstance(m, nn.Linear):
                    nn.init.trunc_normal_(m.weight, std=0.01, a=-0.02, b=0.02)
                    nn.init.zeros_(m.bias)
    return features, head


@dataclass(frozen=True)
class SinusoidConfig:
    """Settings of ``metarep fewshot sinusoid``.

    The defaults are a quick protocol (our choice): MAML's task distribution, network, meta-batch of
    25, ``α = 0.01``, one inner step and K query points per training task, but 2,000 outer steps at
    Adam 3e-3, PyTorch's default initialisation and 100 query points per test task.
    :data:`PRESETS` ``["maml"]`` is the official MAML code's protocol.
    """

    shots: tuple[int, ...] = (10,)
    methods: tuple[str, ...] = ("fo_anil", "anil", "fo_maml", "maml", "reptile")
    iterations: int = 2000
    meta_batch: int = 25
    inner_lr: float = 0.01
    inner_steps: int = 1
    reptile_inner_steps: int = 5
    outer_lr: float = 3e-3
    eval_steps: tuple[int, ...] = (0, 1, 10)
    test_tasks: int = 600
    test_queries: int | None = 100  # None: K, as the official code tests
    hidden: int = 40
    seed: int = 0
    init: str = "torch"
    inner_optimizer: str = "sgd"
    learn_inner_lr: bool = False
    diagnostics_every: int = 0  # 0: no representation diagnostics

    def validate(self) -> None:
        validate_meta_options(self)
        need(self.diagnostics_every >= 0, "--diagnostics", "a number of steps >= 0", self.diagnostics_every)
        need(
            len(self.shots) > 0 and all(isinstance(k, int) and k >= 1 for k in self.shots),
            "--shots",
            "integers >= 1",
            self.shots,
        )
        need(self.reptile_inner_steps >= 1, "--reptile-inner-steps", ">= 1", self.reptile_inner_steps)
        need(self.test_queries is None or self.test_queries >= 1, "--test-queries", ">= 1", self.test_queries)
        need(self.hidden >= 1, "--hidden", ">= 1", self.hidden)
        need(self.init in INITS, "--init", " or ".join(INITS), self.init)
        regression = [m for m in self.methods if registry.get(m).losses in (None, ("mse",))]
        need(regression == list(self.methods), "--methods", "regression methods (not protonet)", self.methods)
        need(self.seed >= 0, "--seed", ">= 0", self.seed)


def _seeds(seed: int) -> dict[str, int]:
    return spawn_seeds(seed, ("init", "train", "test"))


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@dataclass
class SinusoidResult:
    config: SinusoidConfig
    rows: list[dict]  # tidy: shots, method, steps, inner_lr, mse, ci95, median, diverged, learned_lr_mean
    curves: dict[int, dict]  # shots -> plotting data
    train_seconds: dict[str, float] = field(default_factory=dict)
    seeds: dict[str, int] = field(default_factory=dict)
    diagnostics: dict[int, dict[str, list[dict]]] = field(default_factory=dict)  # K -> method -> dg.fit_tracked rows
    angles: dict[int, list[dict]] = field(default_factory=dict)  # K -> dg.angles_table rows, SPAN included


# The official MAML code's sinusoid protocol (github.com/cbfinn/maml, main.py and maml.py): 70,000
# outer steps of Adam at 1e-3 over 25 tasks, one inner step of α = 0.01 (the paper's §5.1; the code's
# flag default is 1e-3), K support and K query points per task in training and in test, weights
# from a normal with std 0.01 truncated at 2 std, zero biases.
PRESETS = {
    "maml": dict(iterations=70_000, meta_batch=25, outer_lr=1e-3, inner_lr=0.01, inner_steps=1, init="maml"),
}
PRESET_TEST_QUERIES = {"maml": None}  # K


def make_learner(method: str, cfg: SinusoidConfig, init_seed: int) -> MetaLearner:
    """The network (same initialisation for every method) and its meta-learner."""
    features, head = sinusoid_net(cfg.hidden, seed=init_seed, init=cfg.init)
    spec = registry.get(method)
    steps = cfg.reptile_inner_steps if spec.order == "reptile" else cfg.inner_steps  # Reptile's own length
    learn = cfg.learn_inner_lr and spec.order in ("first", "second")
    return MetaLearner(
        features,
        head,
        method=method,
        inner_lr=cfg.inner_lr,
        inner_steps=steps,
        outer_lr=cfg.outer_lr,
        inner_optimizer=cfg.inner_optimizer,
        learn_inner_lr=learn,
    )


BASELINE_LR_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3)


def run_sinusoid(
    cfg: SinusoidConfig,
    *,
    progress: bool | None = None,
    plot_tasks: int = 3,
    threads: int | None = 0,
    allow_long: bool = False,
) -> SinusoidResult:
    """Train every method (and the ``pretrain`` baseline) for each K; score them on the same test tasks.

    The meta-learners adapt with their training step size ``cfg.inner_lr``; the baseline gets, for
    each number of steps, the best step size of :data:`BASELINE_LR_GRID` on 200 meta-training tasks.
    With ``cfg.diagnostics_every``, training is :func:`metarep.diagnostics.fit_tracked` on
    :func:`sinusoid_probe` (the same training), and the final features' principal angles to each other and
    to :data:`SPAN` are kept. Refused first (:func:`metarep.limits.check_sinusoid`, a ``ValueError``) when a
    batch would not fit in memory or, unless ``allow_long``, the benchmark would take too long.
    """
    cfg.validate()
    limits.check_sinusoid(cfg, allow_long)
    seeds = _seeds(cfg.seed)
    tasks = SinusoidTasks()
    grid = torch.linspace(*tasks.x_range, 200)[:, None]
    probe = sinusoid_probe(tasks) if cfg.diagnostics_every else None
    rows, curves, seconds, tracked, angles = [], {}, {}, {}, {}
    check_threads(threads)
    # torch threads restored afterwards: 0 chosen for the step's size (metarep.runtime), None: leave them
    with threads_for(threads, cfg.meta_batch * 2.0 * max(cfg.shots)):  # the inputs of a step: 1 number a point
        for K in cfg.shots:
            queries = K if cfg.test_queries is None else cfg.test_queries
            test, amp, phase = tasks.sample(cfg.test_tasks, K, queries, _generator(seeds["test"] + K))
            curves[K] = {"x": grid[:, 0].tolist(), "tasks": [], "pred": {}, "inner_lr": {}}
            for t in range(min(plot_tasks, cfg.test_tasks)):
                curves[K]["tasks"].append(
                    {
                        "amplitude": float(amp[t]),
                        "phase": float(phase[t]),
                        "x_support": test.X_in[t, :, 0].tolist(),
                        "y_support": test.y_in[t].tolist(),
                        "y_true": tasks.function(amp[t : t + 1], phase[t : t + 1], grid[None])[0].tolist(),
                    }
                )
            features = {}
            for method in ("pretrain",) + tuple(cfg.methods):
                learner = make_learner(method, cfg, seeds["init"])
                stream = tasks.batches(cfg.meta_batch, K, K, _generator(seeds["train"] + K))
                t0 = time.perf_counter()
                if probe is None:
                    learner.fit(stream, iterations=cfg.iterations, progress=progress, allow_long=True)  # checked
                else:
                    every = cfg.diagnostics_every
                    tracked.setdefault(K, {})[method] = dg.fit_tracked(
                        learner, stream, cfg.iterations, every, probe, progress=progress, allow_long=True
                    )
                    features[method] = dg.features_of(learner, probe.X)
                seconds[f"{method}_K{K}"] = time.perf_counter() - t0
                lrs = {s: cfg.inner_lr for s in cfg.eval_steps}
                learned = [t.detach() for t in inner.step_size_tensors(learner.inner_lr_)]  # Meta-SGD, learned α
                learned_mean = float(torch.cat([t.flatten() for t in learned]).mean()) if learned else None
                if method == "pretrain":
                    val = tasks.sample(200, K, queries, _generator(seeds["train"] + 10_000 + K))[0]
                    lrs.update(tune_inner_lr(learner, val, BASELINE_LR_GRID, cfg.eval_steps))
                for s in sorted(set(cfg.eval_steps)):
                    res = learner.set_params(inner_lr=lrs[s]).evaluate(test, steps=(s,))[s]
                    loss = res["loss"]
                    diverged = int((~torch.isfinite(loss)).sum())
                    m, h = mean_ci(loss) if not diverged else (None, None)  # the mean over all tasks is infinite
                    rows.append(
                        {
                            "shots": K,
                            "method": method,
                            "steps": s,
                            "inner_lr": lrs[s],
                            "mse": m,
                            "ci95": h,
                            "median": float(loss.nan_to_num(math.inf).median()),
                            "diverged": diverged,
                            "learned_lr_mean": learned_mean,
                        }
                    )
                curves[K]["inner_lr"][method] = {s: lrs[s] for s in cfg.eval_steps}
                preds = [{} for _ in curves[K]["tasks"]]
                for s in cfg.eval_steps:
                    learner.set_params(inner_lr=lrs[s])
                    for t, pred in enumerate(preds):
                        pred[s] = learner.predict(grid, learner.adapt(test.X_in[t], test.y_in[t], steps=s)).tolist()
                curves[K]["pred"][method] = preds
            if probe is not None:
                angles[K] = dg.angles_table({**features, SPAN: probe.reference}, SPAN_K)
    return SinusoidResult(cfg, rows, curves, seconds, seeds, tracked, angles)


BASELINE_LABEL = "pretrained baseline"


def method_label(method: str) -> str:
    """How tables and figures name ``method``: the registry's label, or :data:`BASELINE_LABEL` for ``pretrain``."""
    return BASELINE_LABEL if method == "pretrain" else registry.label(method)
