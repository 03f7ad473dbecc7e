"""The generated CLI and config references of the docs site cover every command, option and key.

The commands are found here by walking click's command tree and the keys by flattening
``Config().to_dict()``: paths independent of the generator's own walk (typer groups, dataclass fields).
``make docs`` (``mkdocs build --strict``, part of ``make test``) builds the pages themselves.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import typer
import typer.main

from metarep.cli import app
from metarep.config import Config

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _load_generator():
    spec = importlib.util.spec_from_file_location("metarep_reference", DOCS / "_gen" / "metarep_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ref = _load_generator()


def _command_paths(cmd, path="metarep"):
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _command_paths(sub, f"{path} {name}")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _sections_of(markdown: str) -> dict[str, str]:
    """Heading text (inside backticks) -> the markdown up to the next heading of a command."""
    parts = re.split(r"^#{2,5} `([^`]+)`\s*$", markdown, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def test_every_command_and_option_is_in_the_cli_reference():
    sections = _sections_of(ref.cli_markdown())
    paths = list(_command_paths(typer.main.get_command(app)))
    assert {"metarep run", "metarep sweep", "metarep fewshot", "metarep fewshot sinusoid"} <= {p for p, _ in paths}
    for path, cmd in paths:
        assert path in sections, f"{path} has no section in the CLI reference"
        body = sections[path]
        first_line = cmd.help.strip().splitlines()[0]
        assert first_line.split()[0] in body
        for param in cmd.params:
            for opt in (*param.opts, *param.secondary_opts):
                shown = opt in body or (param.param_type_name == "argument" and str(param.metavar) in body)
                assert shown, f"{path}: {opt} missing from its reference section"
        for name in getattr(cmd, "commands", {}):
            assert f"`{path} {name}`" in body  # a group lists its subcommands


def test_nested_groups_and_undocumented_commands():
    outer, inner = typer.Typer(help="A root."), typer.Typer()

    @inner.command()
    def leaf(size: int = typer.Option(3, "--size", help="How big.")) -> None:
        """A leaf two groups down."""

    @inner.command()
    def other() -> None:
        """Another leaf."""

    outer.add_typer(inner, name="group", help="A group of subcommands.")

    @outer.command()
    def top() -> None:
        """A top-level command."""

    sections = _sections_of(ref.cli_markdown(outer))
    assert set(sections) == {"metarep", "metarep top", "metarep group", "metarep group leaf", "metarep group other"}
    assert "--size" in sections["metarep group leaf"] and "How big." in sections["metarep group leaf"]
    assert "`metarep group leaf`" in sections["metarep group"]

    @inner.command()
    def silent() -> None:
        pass

    with pytest.raises(ref.ReferenceError, match="metarep group silent"):
        ref.cli_markdown(outer)

    quiet = typer.Typer(help="Another root.")

    @quiet.command()
    def loud(flag: bool = typer.Option(False, "--flag")) -> None:
        """Has a docstring, but its option has no help."""

    @quiet.command()
    def other2() -> None:
        """Second command, so the app stays a group."""

    with pytest.raises(ref.ReferenceError, match="--flag"):
        ref.cli_markdown(quiet)


def test_every_config_key_is_in_the_config_reference_with_its_default():
    page = ref.config_markdown()
    raw = _flat(dataclasses.asdict(Config()))
    assert len(raw) == len(ref.config_keys()) >= 20
    for key, default in raw.items():
        row = next((line for line in page.splitlines() if line.startswith(f"| `{key}` |")), None)
        assert row is not None, f"{key} missing from the config reference"
        if default is None:  # what an unset key resolves to, in words
            assert re.search(r"\| unset: [^|]+ \|", row), row
        else:
            assert f"| `{ref.toml_value(default)}` |" in row, row
    for section in {k.rsplit(".", 1)[0] for k in raw}:
        assert f"## `[{section}]`" in page


def test_the_defaults_file_of_the_reference_loads_as_the_default_config():
    import tomllib

    from metarep.config import from_dict

    assert from_dict(tomllib.loads(ref.default_toml())) == Config()


def test_a_key_without_docs_or_docs_without_a_key_fail():
    keys = ref.config_keys()
    docs = ref.key_docs()
    ref._check_docs(keys, docs)
    missing = {k: v for k, v in docs.items() if k != "run.seed"}
    with pytest.raises(ref.ReferenceError, match="run.seed"):
        ref._check_docs(keys, missing)
    with pytest.raises(ref.ReferenceError, match="run.colour"):
        ref._check_docs(keys, {**docs, "run.colour": {"meaning": "x", "allowed": "y"}})
    with pytest.raises(ref.ReferenceError, match="unset"):
        ref._check_docs(keys, {**docs, "model.width": {"meaning": "x", "allowed": "y"}})


def test_nested_config_sections_are_walked():
    @dataclasses.dataclass(frozen=True)
    class Inner:
        """Inner section."""

        ways: int = 5

    @dataclasses.dataclass(frozen=True)
    class Outer:
        """Outer section."""

        shots: int = 1
        inner: Inner = dataclasses.field(default_factory=Inner)

    @dataclasses.dataclass(frozen=True)
    class Root:
        outer: Outer = dataclasses.field(default_factory=Outer)

    assert [name for name, _ in ref.sections(Root)] == ["outer", "outer.inner"]


def test_the_readme_links_to_files_that_exist():
    readme = DOCS.parent / "README.md"
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme.read_text(encoding="utf-8"))
    local = [t for t in targets if "://" not in t]
    assert "docs/getting-started.md" in local
    for target in local:
        assert (readme.parent / target).exists(), f"README.md links to {target}, which does not exist"
