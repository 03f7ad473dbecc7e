"""The time and memory limits of :mod:`metarep.limits`: one estimate per command, checked before any work
starts; ``--allow-long`` (``allow_long=True``) lifts the step and time bounds, never the memory one."""

from __future__ import annotations

import pytest
import torch
import typer
from torch import nn
from typer.testing import CliRunner

from metarep import limits
from metarep.cli import app
from metarep.config import load_config

TINY = ("task.d=6", "task.k=2", "data.tasks=20", "run.steps=3")


@pytest.fixture(autouse=True)
def fixed_memory(monkeypatch):
    monkeypatch.setenv(limits.MEMORY_ENV, str(16 * 2**30))


def test_the_step_bound_is_exact_and_named_with_the_flag():
    limits.check_run(load_config(None, [*TINY, f"run.steps={limits.MAX_STEPS}"]))
    with pytest.raises(limits.LimitError) as e:
        limits.check_run(load_config(None, [*TINY, f"run.steps={limits.MAX_STEPS + 1}"]))
    message = str(e.value)
    assert message.startswith("run.steps: 1000000001 steps: the run would take at least")
    assert "at most 1e+09 steps and 7 days are allowed without --allow-long (allow_long=True in Python)" in message


def test_allow_long_lifts_the_time_bounds_but_not_the_memory_one():
    long_run = load_config(None, [*TINY, "run.steps=10000000000000"])
    with pytest.raises(limits.LimitError, match="^run.steps: "):
        limits.check_run(long_run)
    limits.check_run(long_run, allow_long=True)
    huge = load_config(None, [*TINY, "run.steps=10000000000000", "task.d=1000000000"])
    with pytest.raises(limits.LimitError, match="^task.d: .* of memory available"):
        limits.check_run(huge, allow_long=True)
    with pytest.raises(limits.LimitError, match="^--steps: "):
        limits.check_evaluate(50, [5, 10], 2000, steps=10**10)
    limits.check_evaluate(50, [5, 10], 2000, steps=10**10, allow_long=True)
    with pytest.raises(limits.LimitError, match="^iterations: "):
        limits.check_fit(10**12)
    limits.check_fit(10**12, allow_long=True)
    with pytest.raises(limits.LimitError, match="^tasks: "):
        limits.check_fit(10, allow_long=True, tasks=10**6, samples=10, params=10**6, adapted=10**6)


def test_time_is_estimated_at_a_fixed_pace():
    """The estimate counts numbers, not seconds measured here: the same settings give the same days anywhere;
    a run of twice the steps is about twice the work."""
    cfg = load_config(None, ["run.steps=1000"])
    double = load_config(None, ["run.steps=2000"])
    assert limits.run_numbers(cfg) == limits.run_numbers(load_config(None, ["run.steps=1000"]))
    assert 1.9 < limits.run_numbers(double) / limits.run_numbers(cfg) < 2.1
    assert limits.days(limits.NUMBERS_PER_SECOND * 86400) == 1


def test_nothing_the_project_ships_is_refused():
    """Every run of the paper's experiments (full and quick), their evaluations, the shipped configs and the
    commands' defaults are within the limits, with room to spare."""
    from pathlib import Path

    from metarep.experiments import EXPERIMENTS, FULL, QUICK, plan
    from metarep.fewshot.digits import FewShotConfig
    from metarep.fewshot.sinusoid import PRESETS, SinusoidConfig

    worst = 0.0
    for scale in (FULL, QUICK):
        for series in plan(list(EXPERIMENTS), scale, 1).values():
            for spec in (s for specs in series.values() for s in specs):
                cfg = spec.config()
                limits.check_run(cfg)
                if spec.m_test:
                    limits.check_evaluate(cfg.task.d, list(spec.m_test), spec.eval_tasks, width=cfg.width)
                worst = max(worst, limits.days(limits.run_numbers(cfg)))
    for path in sorted(Path(__file__).parents[1].glob("configs/*.toml")):
        limits.check_run(load_config(path))
    limits.check_sinusoid(SinusoidConfig())
    limits.check_sinusoid(SinusoidConfig(**PRESETS["maml"]))
    limits.check_episodes(FewShotConfig(), 64)
    mini_imagenet = FewShotConfig(channels=32, backbone="conv4", queries=15, meta_batch=4, rotations=1)
    limits.check_episodes(mini_imagenet, 3 * 84 * 84)  # as docs/fewshot-pipelines.md runs it
    limits.check_images(38400, 84, 84, 3)
    assert worst < limits.MAX_DAYS / 10


def test_one_name_for_the_flag_on_every_command_with_steps():
    cli = typer.main.get_command(app)
    fewshot = cli.commands["fewshot"]
    commands = [cli.commands[n] for n in ("run", "evaluate", "sweep")] + list(fewshot.commands.values())
    for cmd in commands:
        assert any("--allow-long" in p.opts for p in cmd.params), cmd.name


def test_a_sweep_over_the_memory_starts_no_worker(tmp_path, monkeypatch):
    from metarep.experiments import sweep

    def no_worker(*args, **kwargs):
        raise AssertionError("a worker was started")

    monkeypatch.setattr(sweep, "run_all", no_worker)
    plan = sweep.parse_sweep({"grid": {"task.d": [6, 1000000000]}, "set": {"task.k": 2}})
    with pytest.raises(sweep.SweepError, match='^grid "task.d" = 1000000000: task.d: .* of memory available'):
        sweep.run_sweep(plan, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_one_class_folder_is_refused_before_any_image_is_decoded(tmp_path, monkeypatch):
    from PIL import Image

    from metarep.fewshot import images

    (tmp_path / "root" / "only").mkdir(parents=True)
    for i in range(6):
        Image.new("L", (4, 4)).save(tmp_path / "root" / "only" / f"{i}.png")

    def decoded(*args, **kwargs):
        raise AssertionError("an image was decoded")

    monkeypatch.setattr(images, "_read_image", decoded)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["fewshot", "images", "root", "--size", "100000"])
    assert res.exit_code == 2, res.output
    assert res.stderr.strip() == (
        "error: image folder: 1 class(es) with enough images; at least 4 are needed to split them into "
        "meta-train and meta-test classes (or give --test-root)"
    )


def test_train_takes_the_path_of_a_config(tmp_path):
    import metarep

    path = tmp_path / "tiny.toml"
    path.write_text("[task]\nd = 6\nk = 2\n[data]\ntasks = 20\n[run]\nsteps = 3\n")
    result = metarep.train(path, progress=False)
    assert result.config == load_config(path) and result.status == "complete"
    assert metarep.train(str(path), progress=False).history == result.history


def test_fit_with_allow_long_is_not_refused_up_front():
    from metarep import MetaLearner

    torch.manual_seed(0)
    learner = MetaLearner(nn.Sequential(nn.Linear(3, 4), nn.Tanh()), nn.Linear(4, 1))
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(2, 5, 3, generator=g), torch.randn(2, 5, generator=g)) * 2
    with pytest.raises(limits.LimitError):
        learner.fit(iter([batch]), iterations=limits.MAX_STEPS + 1)
    learner.fit(iter([batch]), iterations=limits.MAX_STEPS + 1, allow_long=True)  # ends with its one batch
    assert learner.n_iter_ == 1
