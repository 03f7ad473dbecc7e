"""Every ``metarep ...`` command line of README.md and docs/ parses with the real command line: the
command exists, every option is one of its options, every value converts, nothing required is missing.

Checked: the lines of ```sh / ```bash / ```console blocks (console: the ``$ `` lines) and of unlabelled
blocks that start with ``metarep`` (or ``.venv/bin/metarep``, after ``VAR=value`` assignments), and the
inline code spans that start with ``metarep ``. Nothing runs: click's ``make_context`` parses the words.
The rule for placeholders and synopses (docs/development.md, "Code in these pages"):

- a word in capitals, with an optional suffix (``DIR``, ``RUN_DIR``, ``CONFIG.toml``, ``S``, ``NAME...``),
  stands for any valid value of the argument or option it fills, and in place of a command for any
  command;
- ``...`` after an option that takes a value is a placeholder value; anywhere else it means "more of
  the same" and is left out;
- synopsis brackets ``[...]`` and ``|`` are left out, and ``--a/--b`` names two flags, both checked;
- a command named alone (``metarep evaluate`` in a sentence) is only checked to exist.

Beyond parsing: the ``--set`` overrides of a line are validated as a config (unless the line sets
``METAREP_PLUGINS``, whose methods are defined elsewhere), experiment names given to ``reproduce`` must
be experiments, and ``--methods`` lists must name registered methods.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass

import pytest
import typer.main
from docs_pages import ROOT, code_spans, fenced_blocks, name, pages, prose

from metarep.cli import app

CLI = typer.main.get_command(app)
PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*(?:\.[A-Za-z0-9_]+)*")  # DIR, RUN_DIR, CONFIG.toml, X.Y.Z
SHELL_LANGS = ("sh", "bash", "shell", "console", "")


@dataclass(frozen=True)
class CommandLine:
    where: str  # page:line
    words: tuple[str, ...]  # after "metarep"
    env: tuple[str, ...] = ()  # VAR=value words before it

    @property
    def text(self) -> str:
        return " ".join(("metarep", *self.words))


def split_command(text: str) -> CommandLine | None:
    """The words after ``metarep`` of a shell line, or None when the line runs something else."""
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        return None
    env = []
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        env.append(words.pop(0))
    if not words or words[0] not in ("metarep", ".venv/bin/metarep"):
        return None
    return CommandLine("", tuple(words[1:]), tuple(env))


def logical_lines(code: str, console: bool):
    """(offset of the first line, line) with ``\\``-continuations joined; console blocks: ``$`` lines."""
    lines = code.splitlines()
    i = 0
    while i < len(lines):
        start, line = i, lines[i]
        while line.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line.rstrip()[:-1] + " " + lines[i].strip()
        i += 1
        if console:
            if not line.startswith("$ "):
                continue
            line = line[2:]
        yield start, line


def command_lines() -> list[CommandLine]:
    found = []
    for page in pages():
        text = page.read_text(encoding="utf-8")
        for block in fenced_blocks(text, name(page)):
            if block.lang not in SHELL_LANGS:
                continue
            for offset, line in logical_lines(block.code, console=block.lang == "console"):
                cmd = split_command(line)
                if cmd is not None:
                    found.append(CommandLine(f"{block.page}:{block.line + 1 + offset}", cmd.words, cmd.env))
        for line, paragraph in prose(text):
            for span in code_spans(paragraph):
                cmd = split_command(span) if re.match(r"([A-Z_]+=\S+ )*(\.venv/bin/)?metarep ", span) else None
                if cmd is not None:
                    found.append(CommandLine(f"{name(page)}:{line}", cmd.words, cmd.env))
    return found


COMMANDS = command_lines()


def is_placeholder(word: str) -> bool:
    return word == "..." or bool(PLACEHOLDER.fullmatch(word.removesuffix("...")))


def typed_value(param, word: str) -> str:
    """``word``, or for a placeholder a value of the parameter's type."""
    if not is_placeholder(word):
        return word
    kind = param.type_descriptor.annotation  # int for `int | None` too
    return "1" if kind is int else "0.5" if kind is float else "x"


def options_of(cmd) -> dict:
    return {opt: p for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}


def resolve(line: CommandLine):
    """(command, its path, the words after it); asserts every command on the way exists."""
    cmd, path, words = CLI, ["metarep"], [w.strip("[]") for w in line.words]
    words = [w for w in words if w not in ("", "|")]
    while hasattr(cmd, "commands"):
        while words and words[0].startswith("-"):
            opt = words.pop(0)
            known = opt == "--help" or opt in options_of(cmd)
            assert known, f"{line.where}: `{line.text}`: {' '.join(path)} has no {opt}"
        if not words or is_placeholder(words[0]):
            return None, path, []  # a group named alone, or COMMAND: any of its commands
        sub = words.pop(0)
        assert sub in cmd.commands, f"{line.where}: `{line.text}`: {' '.join(path)} has no command {sub!r}"
        cmd = cmd.commands[sub]
        path.append(sub)
    return cmd, path, words


def arguments(line: CommandLine, cmd, path, words) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """(the words to parse, placeholders filled; the values of each option as written; the arguments)."""
    opts = options_of(cmd)
    positional = [p for p in cmd.params if p.param_type_name == "argument"]
    args, values, given, i = [], {}, [], 0
    where = f"{line.where}: `{line.text}`"
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--help":
            continue
        if word.startswith("--"):
            opt, eq, value = word.partition("=")
            names = opt.split("/")
            for n in names:
                assert n in opts, f"{where}: {' '.join(path)} has no option {n}"
            param = opts[names[0]]
            args.append(names[0])
            if not param.is_flag:
                if not eq:
                    assert i < len(words), f"{where}: {opt} needs a value"
                    value, i = words[i], i + 1
                args.append(typed_value(param, value))
                values.setdefault(names[0], []).append(value)
            continue
        if word == "...":
            continue
        assert positional, f"{where}: {' '.join(path)} takes no argument {word!r}"
        param = positional[0]
        args.append(typed_value(param, word))
        given.append(word)
        if param.nargs != -1:
            positional.pop(0)
    return args, values, given


def test_the_pages_have_command_lines():
    assert len(COMMANDS) >= 60
    assert any(c.words[:2] == ("fewshot", "images") for c in COMMANDS)  # from a continued line
    assert any(c.words[:1] == ("theory",) and c.where.startswith("docs/finite-floor.md") for c in COMMANDS)


@pytest.mark.parametrize("line", COMMANDS, ids=lambda c: f"{c.where} {c.text}"[:100])
def test_command_line_parses(line, monkeypatch):
    monkeypatch.chdir(ROOT)  # configs/ and examples/ as the pages name them
    cmd, path, words = resolve(line)
    if cmd is None or not words:
        return  # a command named alone exists: checked by resolve
    args, values, given = arguments(line, cmd, path, words)
    cmd.make_context(" ".join(path), args)  # raises on a bad value or a missing argument
    if path[1:] == ["reproduce"]:
        from metarep.experiments import EXPERIMENTS

        unknown = [n for n in given if not is_placeholder(n) and n not in EXPERIMENTS]
        assert not unknown, f"{line.where}: `{line.text}`: no experiment {unknown}"
    for methods in values.get("--methods", []):
        from metarep.methods.registry import names

        unknown = [m for m in methods.split(",") if not is_placeholder(methods) and m not in names()]
        assert not unknown, f"{line.where}: `{line.text}`: no method {unknown}"
    sets = values.get("--set", [])
    if sets and not any(e.startswith("METAREP_PLUGINS=") for e in line.env):
        from metarep.config import load_config

        # placeholders: section.key=value, run.threads=N
        concrete = [s for s in sets if not is_placeholder(s.partition("=")[2]) and s != "section.key=value"]
        config = given[0] if given and os.path.isfile(given[0]) else None
        load_config(config, concrete)  # raises ConfigError naming the key


def test_the_checks_catch_drift(monkeypatch):
    def check(text):
        line = CommandLine("x.md:1", split_command(text).words)
        cmd, path, words = resolve(line)
        args, _, _ = arguments(line, cmd, path, words)
        cmd.make_context(" ".join(path), args)

    check("metarep evaluate RUN_DIR [--steps S] [--m-test 5,10] [--progress/--no-progress] [--out DIR]")
    check("metarep fewshot sinusoid [--methods ...] [--iterations N] ...")
    for bad, match in [
        ("metarep evaluat DIR", "no command"),
        ("metarep evaluate DIR --stepz 1", "no option --stepz"),
        ("metarep run [--progress/--no-progres]", "no option --no-progres"),
        ("metarep evaluate DIR --steps", "needs a value"),
        ("metarep plot DIR DIR2", "takes no argument"),
    ]:
        with pytest.raises(AssertionError, match=match):
            check(bad)
    with pytest.raises(Exception, match="integer"):
        check("metarep evaluate DIR --steps many")
    with pytest.raises(Exception, match="(?i)missing"):
        check("metarep evaluate --steps 2")
    assert split_command(".venv/bin/metarep run  # a comment").words == ("run",)
    assert split_command("make demo") is None and split_command("metarep.cli") is None
