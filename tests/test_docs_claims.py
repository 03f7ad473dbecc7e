"""What the prose of README.md and docs/ states about the code matches the code.

- Every ``metarep.xxx[.yyy]`` name (and ``metarep/xxx/yyy.py`` path) a guide mentions exists, and its
  module is rendered in the Python API reference (docs/reference/api.md).
- Counts of experiments and methods in prose are those of the registries; lists of experiment names
  are complete; no page quotes a number of tests (it changes with every test added).
- The option tables of the few-shot commands list exactly the commands' options.
"""

from __future__ import annotations

import importlib
import re

import pytest
import typer.main
from docs_pages import DOCS, code_spans, fenced_blocks, guides, name, pages, prose

from metarep.cli import app

API_PAGE = DOCS / "reference" / "api.md"
DOTTED = re.compile(r"(?<![\w./-])metarep(?:\.[A-Za-z_]\w*)+")
PATH = re.compile(r"(?<![\w./-])metarep/((?:[a-z_]\w*/)*[a-z_]\w*)(?:\.py\b|/(?![\w<]))")  # a module or a package


def mentions() -> dict[str, str]:
    """Dotted name -> where a guide first mentions it (paths ``metarep/a/b.py`` read as ``metarep.a.b``)."""
    found = {}
    for page in guides():
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
            names = [m.group(0).rstrip(".") for m in DOTTED.finditer(line)]
            names += ["metarep." + m.group(1).replace("/", ".") for m in PATH.finditer(line)]
            for dotted in names:
                found.setdefault(dotted, f"{name(page)}:{n}")
    return found


def module_of(dotted: str) -> tuple[str, object]:
    """The longest importable module prefix of ``dotted`` and the object ``dotted`` names."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        module_name = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return module_name, obj
    raise ModuleNotFoundError(dotted)


def rendered() -> set[str]:
    return set(re.findall(r"^::: (metarep[\w.]*)\s*$", API_PAGE.read_text(encoding="utf-8"), flags=re.M))


def public_module(module_name: str) -> str:
    """The module itself, or the public package above a private module (``metarep.fewshot._util``)."""
    parts = module_name.split(".")
    while any(p.startswith("_") for p in parts):
        parts.pop()
    return ".".join(parts)


MENTIONS = mentions()


def test_guides_mention_modules():
    assert {"metarep.theory_finite", "metarep.diagnostics", "metarep.inner"} <= {module_of(d)[0] for d in MENTIONS}


@pytest.mark.parametrize("dotted", sorted(MENTIONS), ids=str)
def test_mentioned_name_exists_and_its_module_is_in_the_api_reference(dotted):
    where = MENTIONS[dotted]
    try:
        module_name, _ = module_of(dotted)
    except (ModuleNotFoundError, AttributeError) as e:
        pytest.fail(f"{where}: {dotted} does not exist ({e})")
    module_name = public_module(module_name)
    if module_name == "metarep":
        return  # the package's own names are those of its modules, rendered there
    assert module_name in rendered(), f"{where}: {dotted}: add `::: {module_name}` to {name(API_PAGE)}"


def test_api_reference_renders_only_modules_that_exist():
    for module_name in rendered():
        importlib.import_module(module_name)


# ---- counts and lists


WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
NUMBERS = {word: n for n, word in enumerate(WORDS, start=1)}
# a number (not a section number such as "8.6") before the noun, with at most one word between
COUNT = re.compile(r"(?<![.§])\b(" + "|".join(NUMBERS) + r"|\d+)\s+(?:[\w'-]+\s+)?(experiments|methods|tests)\b", re.I)


def method_views() -> list[set[str]]:
    """The registry's sets of methods the docs speak of: all, the linear harness's, MetaLearner's (and its
    meta-learning ones, what the few-shot commands train), the meta-learning ones and the baselines."""
    from metarep.methods import registry

    wheres = [{}, {"harness": True}, {"learner": True}, {"learner": True, "kind": "meta"}]
    wheres += [{"kind": k} for k in registry.KINDS]
    return [set(registry.names(**w)) for w in wheres]


def counts_allowed() -> dict[str, set[int]]:
    """What a count of experiments or methods may be: the size of a registry (or of one of its views)."""
    from metarep.experiments import EXPERIMENTS

    return {"experiments": {len(EXPERIMENTS)}, "methods": {len(v) for v in method_views()}, "tests": set()}


def counts_in(text: str) -> list[tuple[str, int, str]]:
    """(noun, number, the phrase) for every count of experiments, methods or tests in ``text``."""
    found = []
    for m in COUNT.finditer(text):
        word, noun = m.group(1).lower(), m.group(2).lower()
        found.append((noun, NUMBERS.get(word) or int(word), m.group(0)))
    return found


def text_blocks():
    blocks = [b for page in pages() for b in fenced_blocks(page.read_text(encoding="utf-8"), name(page))]
    return [b for b in blocks if b.lang in ("", "text")]


def help_texts(cmd, path="metarep"):
    yield path, cmd.help or ""
    for p in cmd.params:
        yield f"{path} {p.name}", getattr(p, "help", None) or ""
    for sub_name, sub in getattr(cmd, "commands", {}).items():
        yield from help_texts(sub, f"{path} {sub_name}")


def test_counts_of_experiments_and_methods_are_the_registries():
    allowed = counts_allowed()
    texts = [(f"{name(page)}:{n}", p) for page in pages() for n, p in prose(page.read_text(encoding="utf-8"))]
    texts += [(b.id, b.code) for b in text_blocks()]  # diagrams
    texts += list(help_texts(typer.main.get_command(app)))
    stated = [(where, c) for where, text in texts for c in counts_in(text)]
    assert any(noun == "experiments" for _, (noun, _, _) in stated)  # the pages do state counts
    for where, (noun, number, phrase) in stated:
        assert number in allowed[noun], f"{where}: {phrase!r}: " + (
            "a count of tests changes with every test added; leave it out"
            if noun == "tests"
            else f"the registries have {sorted(allowed[noun])} {noun}"
        )


def test_the_count_check_reads_numbers():
    assert counts_in("runs the nine experiments and all 7 methods; the seven paper experiments; 614 tests") == [
        ("experiments", 9, "nine experiments"),
        ("methods", 7, "7 methods"),
        ("experiments", 7, "seven paper experiments"),
        ("tests", 614, "614 tests"),
    ]


def test_lists_of_experiment_names_are_complete():
    """A paragraph that names most experiments as code (a list of them) names all of them."""
    from metarep.experiments import EXPERIMENTS

    for page in pages():
        for n, paragraph in prose(page.read_text(encoding="utf-8")):
            named = {s for s in code_spans(paragraph) if s in EXPERIMENTS}
            if len(named) > len(EXPERIMENTS) // 2:
                missing = set(EXPERIMENTS) - named
                assert not missing, f"{name(page)}:{n}: lists experiments but not {missing}"


def test_lists_of_methods_are_a_set_the_registry_knows():
    """A paragraph (or table) that names five or more methods as code names one of the registry's sets."""
    from metarep.methods import registry

    known, views = set(registry.names()), method_views()
    for page in pages():
        for n, paragraph in prose(page.read_text(encoding="utf-8")):
            spans = [part for s in code_spans(paragraph) for part in s.split(", ")]  # `a,b` is an option's value
            named = {s for s in spans if s in known}
            if len(named) >= 5:
                assert named in views, f"{name(page)}:{n}: names the methods {sorted(named)}, not a set of the registry"


def test_the_table_of_experiments_has_a_row_per_experiment():
    from metarep.experiments import EXPERIMENTS

    page = (DOCS / "reproducing.md").read_text(encoding="utf-8")
    table = page.split("## The experiments", 1)[1].split("\n\n")[1]
    rows = re.findall(r"^\| `(\w+)` \|", table, flags=re.M)
    assert rows == list(EXPERIMENTS)


# ---- option tables


def option_tables() -> list[tuple[str, list[str], set[str]]]:
    """(page:line, command path, options) for each ``| option | ... |`` table under a command's heading."""
    found = []
    for page in guides():
        command = None
        lines = page.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, start=1):
            heading = re.match(r"^#+ `metarep ([a-z -]+?)(?: [\[A-Z].*)?`\s*$", line)
            if heading:
                command = heading.group(1).split()
            if line.startswith("| option |") and command:
                options = set()
                for row in lines[n + 1 :]:
                    if not row.startswith("|"):
                        break
                    first = row.split("|")[1]
                    options |= {o for span in code_spans(first) for o in span.split("/")}
                found.append((f"{name(page)}:{n}", command, options))
    return found


def test_option_tables_list_exactly_the_options():
    cli = typer.main.get_command(app)
    tables = option_tables()
    assert len(tables) >= 2
    for where, path, listed in tables:
        cmd = cli
        for word in path:
            cmd = cmd.commands[word]
        options = {o for p in cmd.params if p.param_type_name == "option" for o in (*p.opts, *p.secondary_opts)}
        assert listed == options, f"{where}: not in the table {options - listed}; not options {listed - options}"


def test_what_images_takes_of_digits():
    """fewshot-benchmarks.md names the `digits` options that `fewshot images` does not take."""
    fewshot = typer.main.get_command(app).commands["fewshot"]

    def options(cmd):
        return {p.opts[0] for p in cmd.params if p.param_type_name == "option"}

    missing = options(fewshot.commands["digits"]) - options(fewshot.commands["images"])
    page = (DOCS / "fewshot-benchmarks.md").read_text(encoding="utf-8")
    sentence = re.search(r"All the `digits` options except (.*?) apply", " ".join(page.split()))
    assert sentence, "fewshot-benchmarks.md: the sentence on which `digits` options `images` takes"
    assert set(re.findall(r"`(--[\w-]+)", sentence.group(1))) == missing
