"""Every bad input: exit code 2, one ``error: ...`` line on stderr, no traceback, no ``--out`` folder left.

A corpus of bad inputs for ``run``, ``evaluate``, ``theory`` and ``fewshot`` (types, ranges, unknown
keys, files, devices, sizes, usage errors), the size limits of :mod:`metarep.limits`, and
property-based fuzzing of the config layer: it raises nothing but :class:`ConfigError`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from metarep import limits
from metarep.cli import app
from metarep.config import SECTIONS, ConfigError, from_dict, load_config

LONG = "x" * 300  # one path component beyond NAME_MAX (ENAMETOOLONG)
TINY = ["--set", "run.steps=3", "--set", "task.d=6", "--set", "task.k=2", "--set", "data.tasks=20"]


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(res, out: Path | None = None) -> str:
    err = res.stderr
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    if out is not None:
        assert not out.exists(), f"{out} left behind"
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "latin1.toml").write_bytes(b"[run]\nsteps = 3 # \xe9t\xe9\n")
    (d / "binary.toml").write_bytes(b"\xff\xfe\x00[run]")
    (d / "malformed.toml").write_text("[run\nsteps = ")
    (d / "section.toml").write_text("[nope]\nx = 1\n")
    (d / "folder.toml").mkdir()
    return d


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    res = invoke("run", *TINY, "--out", out, "--no-progress")
    assert res.exit_code == 0, res.output
    return out


CUDA_LIKE = ["run.device=cuda", 'run.device="cuda:abc"', "run.device=mps", "run.device=7", 'run.device="cuda:"']
CONFIG_SETS = [
    "model.width=abc",
    "model.width=-3",
    "model.widht=3",
    "nope.x=1",
    "task.k=0",
    "task.k=100",
    "task.sigma2=-1",
    "task.sigma2=1e400",
    "task.d=1e400",
    "method.alpha=inf",
    "method.alpha=100000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "method.name=nope",
    "method.impl=fast",
    "data.tasks=-1",
    "data.tasks=abc",
    "data.fresh=1",
    "data.task_batch=100000",
    "run.dtype=float16",
    "run.steps=-1",
    "run.seed=1.5",
    "noequals",
    "nodot=3",
]


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.parametrize("override", CONFIG_SETS + CUDA_LIKE)
@pytest.mark.parametrize("command", ["run", "theory"])
def test_bad_set_values(command, override, tmp_path):
    if override == "run.device=cuda" and _cuda_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "out"
    extra = ["--out", out] if command == "run" else []
    line = assert_one_line_error(invoke(command, "--set", override, *extra), out)
    key = override.split("=", 1)[0]
    if "." in key:
        assert key.split(".")[0] in line or key in line


@pytest.mark.parametrize("name", ["latin1.toml", "binary.toml", "malformed.toml", "section.toml", "folder.toml"])
@pytest.mark.parametrize("command", ["run", "theory"])
def test_bad_config_files(command, name, files, tmp_path):
    out = tmp_path / "out"
    extra = ["--out", out] if command == "run" else []
    line = assert_one_line_error(invoke(command, files / name, *extra), out)
    assert name.split(".")[0] in line or "nope" in line


@pytest.mark.parametrize("command", ["run", "theory"])
def test_missing_and_too_long_config_paths(command, tmp_path):
    assert "not found" in assert_one_line_error(invoke(command, tmp_path / "missing.toml"))
    assert "File name too long" in assert_one_line_error(invoke(command, tmp_path / f"{LONG}.toml"))


def test_run_out_too_long(tmp_path):
    line = assert_one_line_error(invoke("run", *TINY, "--out", tmp_path / LONG / "deeper"))
    assert line.startswith("error: --out:") and "too long" in line


USAGE = [
    ["run", "--bogus"],
    ["run", "a.toml", "extra"],
    ["run", "--set"],
    ["theory", "--json=3"],
    ["nosuch"],
    ["fewshot", "nosuch"],
    ["fewshot", "digits", "--ways", "x"],
    ["fewshot", "sinusoid", "--meta-batch", "1e12"],
    ["fewshot", "images"],
]


@pytest.mark.parametrize("args", USAGE, ids=" ".join)
def test_usage_errors_are_one_line(args):
    assert_one_line_error(invoke(*args))


def test_no_arguments_still_prints_help():
    res = invoke()
    assert "Usage" in res.output and "error:" not in res.output


@pytest.mark.parametrize(
    "args",
    [
        ["--tasks", "abc"],
        ["--bogus"],
        ["--tasks", "1"],
        ["--steps", "0"],
        ["--m-test", "abc"],
        ["--m-test", "0"],
        ["--alpha", "-1"],
        ["--alpha", "nan"],
        ["--m-test", "1000000000"],
        ["--tasks", "100000000000"],
        ["--alpha", "1e300", "--tasks", "20", "--m-test", "5"],
    ],
    ids=" ".join,
)
def test_evaluate_bad_options(args, run_dir, tmp_path):
    out = tmp_path / "out"
    line = assert_one_line_error(invoke("evaluate", run_dir, *args, "--out", out), out)
    assert args[0] in line or "No such option" in line


@pytest.mark.parametrize("memory,limit", [(None, "memory available"), ("1e30", "would take hours")])
def test_evaluate_names_the_m_asked_for_when_it_is_too_large(run_dir, tmp_path, monkeypatch, memory, limit):
    """The memory and the count limits name --m-test's largest m, not m plus the test points."""
    if memory is not None:  # so much memory that the count limit is the one that refuses
        monkeypatch.setenv(limits.MEMORY_ENV, memory)
    out, m = tmp_path / "out", 1_000_000_100
    line = assert_one_line_error(invoke("evaluate", run_dir, "--m-test", f"5,{m}", "--out", out), out)
    assert line.startswith("error: --m-test: ") and limit in line, line
    assert f"m = {m} samples" in line and str(m + 100) not in line, line


def test_evaluate_bad_run_dirs(tmp_path):
    out = tmp_path / "out"
    assert_one_line_error(invoke("evaluate"))
    assert_one_line_error(invoke("evaluate", tmp_path / "missing", "--out", out), out)
    assert_one_line_error(invoke("evaluate", tmp_path / LONG, "--out", out), out)


# --------------------------------------------------------------------------------------------
# fewshot


def _image_folder(root: Path, classes: int = 4, per_class: int = 6, size: int = 8) -> Path:
    from PIL import Image

    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            Image.new("L", (size, size), color=(37 * c + 11 * i) % 256).save(root / f"c{c}" / f"{i}.png")
    return root


FEWSHOT = [
    ["digits", "--shots", "1000"],
    ["digits", "--ways", "1"],
    ["digits", "--ways", "50"],
    ["digits", "--test-digits", "x"],
    ["digits", "--meta-batch", "0"],
    ["digits", "--meta-batch", "1000000000000"],
    ["digits", "--test-tasks", "1000000000"],
    ["digits", "--inner-lr", "inf"],
    ["sinusoid", "--meta-batch", "1000000000000"],
    ["sinusoid", "--meta-batch", "50000000", "--hidden", "1000"],
    ["sinusoid", "--shots", "a"],
    ["sinusoid", "--methods", "nope"],
]


@pytest.mark.parametrize("args", FEWSHOT, ids=" ".join)
def test_fewshot_bad_options(args, tmp_path):
    out = tmp_path / "out"
    line = assert_one_line_error(invoke("fewshot", *args, "--out", out, "--quick"), out)
    assert args[1] in line


def test_fewshot_digits_shots_names_the_counts(tmp_path):
    line = assert_one_line_error(invoke("fewshot", "digits", "--shots", "1000", "--out", tmp_path / "o"))
    assert "images" in line and "1000" in line


def test_fewshot_images_refuses_links_out_of_the_folder(tmp_path):
    root = _image_folder(tmp_path / "root")
    outside = _image_folder(tmp_path / "outside", classes=1)
    (root / "c0" / "link.png").symlink_to(outside / "c0" / "0.png")
    out = tmp_path / "out"
    line = assert_one_line_error(invoke("fewshot", "images", root, "--out", out, "--quick"), out)
    assert "link.png" in line and "symbolic link" in line
    (root / "c0" / "link.png").unlink()
    (root / "linked").symlink_to(outside / "c0", target_is_directory=True)
    line = assert_one_line_error(invoke("fewshot", "images", root, "--out", out, "--quick"), out)
    assert "linked" in line


def test_fewshot_images_names_a_decompression_bomb(tmp_path, monkeypatch):
    from PIL import Image

    root = _image_folder(tmp_path / "root")
    Image.new("L", (200, 200)).save(root / "c1" / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # 200 x 200 > 2x: DecompressionBombError
    out = tmp_path / "out"
    line = assert_one_line_error(invoke("fewshot", "images", root, "--out", out, "--quick"), out)
    assert "bomb.png" in line and "decompression bomb" in line
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30_000)  # between 1x and 2x: the warning
    line = assert_one_line_error(invoke("fewshot", "images", root, "--out", out, "--quick"), out)
    assert "bomb.png" in line


@pytest.mark.parametrize(
    "args",
    [["--test-fraction", "2"], ["--size", "2"], ["--shots", "100"]],
    ids=" ".join,
)
def test_fewshot_images_bad_options(args, tmp_path):
    root = _image_folder(tmp_path / "root")
    out = tmp_path / "out"
    assert_one_line_error(invoke("fewshot", "images", root, *args, "--out", out, "--quick"), out)
    assert_one_line_error(invoke("fewshot", "images", tmp_path / "missing", "--out", out), out)


# --------------------------------------------------------------------------------------------
# limits


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["task.d=10000000000"], "task.d"),
        (["data.tasks=1000000000000"], "data.tasks"),
        (["data.tasks=1000000000", "data.fresh=true"], "data.tasks"),
        (["data.m_in=100000000000"], "data.m_in"),
        (["model.width=10000000000", "task.d=100"], "model.width"),
    ],
)
def test_check_run_refuses_what_does_not_fit(overrides, key):
    cfg = load_config(None, [f"{o}" for o in overrides])
    with pytest.raises(limits.LimitError, match=rf"^{key}: .*(GiB|TiB|PiB|hours)"):
        limits.check_run(cfg)


@pytest.mark.parametrize("overrides", [[], ["data.tasks=inf"], ["data.fresh=true"], ["task.d=200", "data.m_in=300"]])
def test_check_run_accepts_ordinary_runs(overrides):
    limits.check_run(load_config(None, overrides))


def test_limits_follow_the_available_memory(monkeypatch):
    monkeypatch.setenv(limits.MEMORY_ENV, "1000")
    with pytest.raises(limits.LimitError, match="lower data.tasks"):
        limits.check_run(load_config())
    monkeypatch.delenv(limits.MEMORY_ENV)
    assert limits.available_bytes() > 0


@pytest.mark.parametrize("override", ["task.d=10000000000", "data.tasks=1000000000000"])
def test_run_command_refuses_what_does_not_fit(override, tmp_path):
    out = tmp_path / "out"
    assert_one_line_error(invoke("run", "--set", override, "--out", out), out)


# --------------------------------------------------------------------------------------------
# fuzzing the config layer

KEYS = {name: [f.name for f in __import__("dataclasses").fields(cls)] for name, cls in SECTIONS.items()}
SCALARS = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(["inf", "cpu", "cuda", "cuda:0", "cuda:x", "mps", "fo_anil", "linear", "float64"]),
    st.none(),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.text(max_size=4), SCALARS, max_size=2))
SECTION_NAMES = st.one_of(st.sampled_from(sorted(SECTIONS)), st.text(max_size=6))


@st.composite
def raw_configs(draw):
    raw = {}
    for section in draw(st.lists(SECTION_NAMES, max_size=4, unique=True)):
        keys = KEYS.get(section, ["x"])
        names = draw(st.lists(st.one_of(st.sampled_from(keys), st.text(max_size=6)), max_size=4, unique=True))
        raw[section] = draw(st.one_of(st.dictionaries(st.sampled_from(names or ["x"]), VALUES), SCALARS))
    return raw


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_config_errors(call) -> None:
    try:
        call()
    except ConfigError as e:
        assert "\n" not in str(e)


@FUZZ
@given(raw_configs())
def test_fuzz_from_dict_raises_only_config_errors(raw):
    _only_config_errors(lambda: from_dict({k: v for k, v in raw.items() if v is not None}))


@FUZZ
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_fuzz_config_files_raise_only_config_errors(content):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "c.toml"
        (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
        _only_config_errors(lambda: load_config(p))


SET_ITEMS = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda s, k, v: f"{s}.{k}={v}",
        st.sampled_from(sorted(SECTIONS)),
        st.sampled_from(sorted({k for ks in KEYS.values() for k in ks})),
        st.one_of(st.text(max_size=20), st.integers().map(str), st.floats().map(repr)),
    ),
)


@FUZZ
@given(st.lists(SET_ITEMS, max_size=4))
def test_fuzz_set_values_raise_only_config_errors(items):
    _only_config_errors(lambda: load_config(None, items))
