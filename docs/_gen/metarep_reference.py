"""The command-line and config references of the documentation, generated from the code.

``cli_markdown()`` walks the typer application (every command, every group of subcommands such as
``metarep fewshot``, at any depth) and renders each command's help, usage, arguments and options as
``--help`` shows them. ``config_markdown()`` walks the :class:`metarep.config.Config` dataclass
(every section, nested sections included) for the keys, their types and defaults, and takes what a
key means and which values are allowed from ``config_keys.toml`` beside this file. A command or an
option without help text, a key without an entry in ``config_keys.toml`` or an entry for a key
that does not exist is an error (:class:`ReferenceError`), so the reference cannot fall behind the
code. ``gen_pages.py`` writes both pages during ``mkdocs build``; ``tests/test_docs.py`` checks them.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

KEYS_FILE = Path(__file__).with_name("config_keys.toml")


class ReferenceError(RuntimeError):
    """The code has a command, option or config key that the reference cannot document."""


# --------------------------------------------------------------------------------------------
# the command line


def commands(app: Any = None) -> list[tuple[str, Any, Any]]:
    """Every command of the CLI, depth first in ``--help`` order: ``(path, click command, context)``.

    ``path`` is the command line that runs it (``"metarep fewshot sinusoid"``); groups are included.
    """
    import typer.main

    if app is None:
        from metarep.cli import app
    root = typer.main.get_command(app)
    out: list[tuple[str, Any, Any]] = []

    def walk(cmd: Any, path: str, parent: Any) -> None:
        ctx = _context(cmd, path.split()[-1], parent)
        out.append((path, cmd, ctx))
        for name, sub in getattr(cmd, "commands", {}).items():
            if not getattr(sub, "hidden", False):
                walk(sub, f"{path} {name}", ctx)

    walk(root, "metarep", None)
    return out


def _context(cmd: Any, name: str, parent: Any) -> Any:
    try:  # typer >= 0.2x carries its own copy of click
        from typer._click.core import Context
    except ImportError:  # pragma: no cover - older typer on the click package
        from click import Context
    return Context(cmd, info_name=name, parent=parent)


def _md(text: str) -> str:
    """Plain help text as Markdown that shows it literally (also inside a table cell)."""
    for ch in "\\`*_[]<>|":
        text = text.replace(ch, "\\" + ch)
    return text


def _prose(text: str) -> str:
    """Help text as Markdown: reST literals (````x````) become code spans, the rest shows literally."""
    parts = re.split(r"``(.+?)``", text)
    return "".join(f"`{p}`" if i % 2 else _md(p) for i, p in enumerate(parts))


def _paragraphs(text: str) -> str:
    """A docstring's paragraphs (typer's ``\\b`` markers dropped), each on one line."""
    paras = [" ".join(p.split()) for p in text.replace("\b", "").split("\n\n")]
    return "\n\n".join(_prose(p) for p in paras if p)


def _params_table(cmd: Any, ctx: Any, path: str, kind: str) -> list[str]:
    rows = []
    for p in cmd.get_params(ctx):
        if p.param_type_name != kind or getattr(p, "hidden", False) or p.name == "help":
            continue
        record = p.get_help_record(ctx)
        names, help_text = (record[0], record[1]) if record else (p.name, "")
        if not help_text.strip():
            raise ReferenceError(f"{path}: {kind} {names} has no help text")
        rows.append(f"| `{names}` | {_prose(' '.join(help_text.split()))} |")
    if not rows:
        return []
    title = "Arguments" if kind == "argument" else "Options"
    return [f"**{title}**", "", f"| {kind} | meaning |", "|---|---|", *rows, ""]


def cli_markdown(app: Any = None) -> str:
    """The page ``reference/cli.md``: one section per command, as its ``--help`` describes it."""
    lines = [
        "# Command-line reference",
        "",
        "Generated from the code at every build of this site: each section is what `--help` prints",
        "for that command. The guides explain the commands with examples, their outputs and exit",
        "codes; bad input always ends with one line `error: ...` and exit code 2. Every command also",
        "takes `--help`.",
        "",
    ]
    for path, cmd, ctx in commands(app):
        help_text = (cmd.help or "").strip()
        if not help_text:
            raise ReferenceError(f"{path}: command has no help text (give it a docstring)")
        depth = min(len(path.split()), 4)
        usage = " ".join(cmd.collect_usage_pieces(ctx))
        lines += [f"{'#' * (depth + 1)} `{path}`", "", _paragraphs(help_text), ""]
        lines += ["```text", f"{path} {usage}", "```", ""]
        sub = [name for name, c in getattr(cmd, "commands", {}).items() if not getattr(c, "hidden", False)]
        if sub:
            links = (f"[`{path} {name}`](#{path.replace(' ', '-')}-{name})" for name in sub)
            lines += ["**Commands**: " + ", ".join(links), ""]
        lines += _params_table(cmd, ctx, path, "argument")
        lines += _params_table(cmd, ctx, path, "option")
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------------------------
# the config


def _is_section(f: dataclasses.Field) -> bool:
    return f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory)


def sections(cls: type | None = None, prefix: str = "") -> Iterator[tuple[str, type]]:
    """Every config section, nested ones included: ``(dotted name, dataclass)``, in declaration order."""
    if cls is None:
        from metarep.config import Config

        cls = Config
    for f in dataclasses.fields(cls):
        if _is_section(f):
            name = f"{prefix}{f.name}"
            yield name, f.default_factory
            yield from sections(f.default_factory, f"{name}.")


def config_keys() -> list[tuple[str, str, Any]]:
    """Every config key: ``(dotted key, annotated type, code default)``; ``None`` where it is unset."""
    out = []
    for name, cls in sections():
        for f in dataclasses.fields(cls):
            if _is_section(f):
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            out.append((f"{name}.{f.name}", str(f.type), default))
    return out


def toml_value(v: Any) -> str:
    """A default as it is written in a config file or a ``--set``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, float) and math.isinf(v):
        return '"inf"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


def key_docs(path: Path = KEYS_FILE) -> dict[str, dict[str, str]]:
    """``config_keys.toml``: per dotted key ``meaning``, ``allowed`` and, for keys unset by default, ``unset``."""
    with path.open("rb") as f:
        return tomllib.load(f)


def _check_docs(keys: list[tuple[str, str, Any]], docs: dict[str, dict[str, str]]) -> None:
    names = {k for k, _, _ in keys}
    missing = [k for k in names if k not in docs]
    stale = [k for k in docs if k not in names]
    if missing or stale:
        raise ReferenceError(
            f"{KEYS_FILE.name} is out of step with metarep.config: "
            f"undocumented keys {sorted(missing)}, entries for keys that do not exist {sorted(stale)}"
        )
    for key, _, default in keys:
        entry = docs[key]
        need = ["meaning", "allowed"] + (["unset"] if default is None else [])
        lacking = [n for n in need if not str(entry.get(n, "")).strip()]
        if lacking:
            raise ReferenceError(f'{KEYS_FILE.name}: ["{key}"] needs {", ".join(lacking)}')


def default_cell(default: Any, entry: dict[str, str]) -> str:
    """The default column: the TOML value, or for a key unset by default what it resolves to."""
    if default is None:
        return f"unset: {entry['unset']}"
    return f"`{toml_value(default)}`"


def config_markdown() -> str:
    """The page ``reference/config.md``: every section and key with its type, default and meaning."""
    keys = config_keys()
    docs = key_docs()
    _check_docs(keys, docs)
    lines = [
        "# Config reference",
        "",
        "Generated from `metarep.config` at every build of this site (keys, types and defaults from the",
        "code; meanings from `docs/_gen/config_keys.toml`, which a test keeps complete). A config file is",
        "TOML with one table per section; `--set section.key=value` overrides one key, its value read as",
        'TOML (`--set data.tasks=inf`, `--set task.task_cov="identity"` or `--set task.task_cov=identity`).',
        "An unknown key or a value out of range stops with one line `error: KEY: what is allowed` and",
        "exit code 2.",
        "",
    ]
    by_section: dict[str, list[tuple[str, str, Any]]] = {}
    for key, typ, default in keys:
        by_section.setdefault(key.rsplit(".", 1)[0], []).append((key, typ, default))
    for name, cls in sections():
        doc = " ".join((cls.__doc__ or "").split())
        lines += [f"## `[{name}]`", "", _md(doc), ""]
        rows = by_section.get(name, [])
        if rows:
            lines += ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
            for key, typ, default in rows:
                e = docs[key]
                lines.append(f"| `{key}` | `{typ}` | {default_cell(default, e)} | {e['allowed']} | {e['meaning']} |")
            lines.append("")
    lines += ["## The defaults as a config file", "", "```toml", default_toml(keys), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def default_toml(keys: list[tuple[str, str, Any]] | None = None) -> str:
    """Every default as a TOML config file (keys unset by default as comments)."""
    keys = config_keys() if keys is None else keys
    out: list[str] = []
    current = None
    for key, _, default in keys:
        section, name = key.rsplit(".", 1)
        if section != current:
            out += ([""] if out else []) + [f"[{section}]"]
            current = section
        out.append(f"# {name} is unset by default" if default is None else f"{name} = {toml_value(default)}")
    return "\n".join(out)
