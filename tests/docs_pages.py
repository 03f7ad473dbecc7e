"""The pages of the documentation (README.md and docs/**/*.md), read as the tests of the docs need them.

- :func:`fenced_blocks`: every fenced code block with its language, its first line and the
  ``<!-- docs-test: ... -->`` comments on the lines right above it (see ``docs/development.md``,
  "Code in these pages").
- :func:`prose`: the text outside code blocks, one paragraph at a time, with the line it starts on.
- :func:`code_spans`: the inline code spans of a paragraph.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def pages() -> list[Path]:
    """README.md and every Markdown page of the site (the generators under docs/_gen are no pages)."""
    return [ROOT / "README.md", *sorted(p for p in DOCS.rglob("*.md") if "_gen" not in p.relative_to(DOCS).parts)]


def guides() -> list[Path]:
    """The pages written by hand about using metarep: README.md and docs/*.md (not the reference)."""
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)\s*$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:(.*?)-->\s*$")


class DirectiveError(ValueError):
    """A ``docs-test`` comment the collector does not understand."""


@dataclass(frozen=True)
class Directives:
    """What the ``<!-- docs-test: ... -->`` comments above a block ask for."""

    skip: str | None = None  # the reason the block does not run (None: it runs)
    replace: tuple[tuple[str, str], ...] = ()  # (old, new): smaller sizes for the test
    runs: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (folder, --set overrides): finished runs it reads


def parse_directives(texts: list[str]) -> Directives:
    """``skip: REASON``; ``replace "OLD" "NEW"``; ``run DIR [section.key=value ...]`` (one per comment)."""
    skip, replace, runs = None, [], []
    for text in texts:
        text = text.strip()
        if text.startswith("skip"):
            skip = text.removeprefix("skip").lstrip(":").strip()
            if not skip:
                raise DirectiveError("docs-test: skip needs a reason: <!-- docs-test: skip: why it does not run -->")
            continue
        words = shlex.split(text)
        if words and words[0] == "replace" and len(words) == 3:
            replace.append((words[1], words[2]))
        elif words and words[0] == "run" and len(words) >= 2:
            runs.append((words[1], tuple(words[2:])))
        else:
            raise DirectiveError(
                f"docs-test: cannot read {text!r} (skip: REASON | replace OLD NEW | run DIR KEY=VALUE...)"
            )
    return Directives(skip, tuple(replace), tuple(runs))


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository root
    line: int  # the line of the opening fence (1-based)
    lang: str
    code: str
    comments: tuple[str, ...] = field(default=())  # the docs-test comments above it, in order
    end: int = 0  # the line of the closing fence

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    def directives(self) -> Directives:
        return parse_directives(list(self.comments))


def fenced_blocks(text: str, page: str = "<page>") -> list[Block]:
    """The fenced code blocks of a Markdown text, in order."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.groups()
        comments, j = [], i - 1
        while j >= 0 and (d := _DIRECTIVE.match(lines[j])):
            comments.insert(0, d.group(1))
            j -= 1
        body, k = [], i + 1
        while k < len(lines) and not (
            lines[k].strip().startswith(fence[0] * len(fence)) and not lines[k].strip().strip(fence[0])
        ):
            body.append(lines[k][len(indent) :] if lines[k].startswith(indent) else lines[k])
            k += 1
        blocks.append(Block(page, i + 1, lang.lower(), "\n".join(body) + "\n", tuple(comments), end=k + 1))
        i = k + 1
    return blocks


def prose(text: str) -> list[tuple[int, str]]:
    """(first line, paragraph) for the text outside fenced blocks; a paragraph's lines joined by spaces."""
    inside = set()
    lines = text.splitlines()
    for b in fenced_blocks(text):
        inside.update(range(b.line, b.end + 1))
    paragraphs, start, cur = [], 0, []
    for n, line in enumerate(lines, start=1):
        if n in inside or not line.strip() or re.fullmatch(r"\s*<!--.*-->\s*", line):
            if cur:
                paragraphs.append((start, " ".join(cur)))
            cur = []
            continue
        if not cur:
            start = n
        cur.append(line.strip())
    if cur:
        paragraphs.append((start, " ".join(cur)))
    return paragraphs


def code_spans(paragraph: str) -> list[str]:
    """The inline code spans of a paragraph (single or double backticks)."""
    return [m.group(2).strip() for m in re.finditer(r"(`{1,2})(.+?)\1", paragraph)]
