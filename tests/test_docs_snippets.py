"""Every ```python block of README.md and docs/ runs as written, so the code of the docs cannot drift
from the software (the mechanism is described in docs/development.md, "Code in these pages").

One test per block (id ``page:line`` of its opening fence), in a fresh temporary working directory with
``MPLBACKEND=Agg``. The blocks of a page share one namespace, in page order: a block's test first runs
the blocks above it on its page, so later blocks use the names of earlier ones whatever order the tests
run in. HTML comments ``<!-- docs-test: ... -->`` on the lines right above a block adjust it:

- ``replace "OLD" "NEW"``: the test runs the block with ``OLD`` replaced (smaller sizes); ``OLD`` must be
  in the block, so the comment cannot outlive the code it shrinks;
- ``run DIR [section.key=value ...]``: a small finished run is written to ``DIR`` first, for a block that
  reads a run folder an earlier command of the page made;
- ``skip: REASON``: the block is compiled, not run; the reason is required and skips are kept few.

Methods a block registers are unregistered after its test.
"""

from __future__ import annotations

import ast
import linecache
import re

import pytest
from conftest import TINY_RUN
from docs_pages import DirectiveError, fenced_blocks, name, pages, parse_directives

BLOCKS = [b for page in pages() for b in fenced_blocks(page.read_text(encoding="utf-8"), name(page))]
PY_BLOCKS = [b for b in BLOCKS if b.lang in ("python", "py")]
MAX_SKIPS = 2  # blocks that cannot run here (a cluster, a package metarep does not depend on)


def source(block) -> str:
    """The block's code with its ``replace`` comments applied."""
    code = block.code
    for old, new in block.directives().replace:
        assert old in code, f"{block.id}: <!-- docs-test: replace {old!r} ... -->: {old!r} is not in the block"
        code = code.replace(old, new)
    return code


def execute(block, namespace: dict) -> None:
    from metarep import load_config, train

    for folder, overrides in block.directives().runs:
        train(load_config(None, [*TINY_RUN, *overrides]), out=folder, progress=False)
    code = source(block)
    linecache.cache[block.id] = (len(code), None, code.splitlines(keepends=True), block.id)  # tracebacks show it
    exec(compile(code, block.id, "exec"), namespace)


def run_page_up_to(block, blocks=PY_BLOCKS) -> dict:
    """Run the blocks of ``block``'s page above it (skipped ones left out), then ``block``; the namespace."""
    namespace = {"__name__": "__main__"}
    for b in blocks:
        if b.page == block.page and b.line < block.line and not b.directives().skip:
            execute(b, namespace)
    execute(block, namespace)
    return namespace


@pytest.fixture
def docs_env(tmp_path, monkeypatch):
    """A fresh working directory, the Agg backend, and the method registry as it was."""
    from metarep.methods import registry

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    before = set(registry.names())
    yield tmp_path
    for method in set(registry.names()) - before:
        registry.unregister(method)


def test_the_pages_have_python_blocks():
    assert len(PY_BLOCKS) >= 8 and {b.page for b in PY_BLOCKS} >= {"docs/own-model.md", "docs/fewshot.md"}


@pytest.mark.parametrize("block", PY_BLOCKS, ids=lambda b: b.id)
def test_python_block(block, docs_env, capsys):
    code = source(block)
    compile(code, block.id, "exec")  # every block, skipped ones included, is valid Python
    if block.directives().skip:
        return  # its reason is checked by test_skips_are_few_and_explained
    run_page_up_to(block)
    if "print(" in code:
        assert capsys.readouterr().out.strip(), f"{block.id}: prints nothing"


def bare_expressions(code: str) -> list[int]:
    """Lines of the top-level expressions that are not calls: they show nothing when the code runs as a
    script (``x.attr``, ``f(x), g(x)``). Calls are statements in their own right."""
    return [
        stmt.lineno
        for stmt in ast.parse(code).body
        if isinstance(stmt, ast.Expr) and not isinstance(stmt.value, ast.Call | ast.Await)
    ]


@pytest.mark.parametrize("block", PY_BLOCKS, ids=lambda b: b.id)
def test_python_block_shows_what_it_computes(block):
    """A block prints what the page says it shows."""
    lines = bare_expressions(block.code)
    assert not lines, f"{block.id}: the bare expression on line(s) {lines} of the block shows nothing; print(...) it"


def test_skips_are_few_and_explained():
    skips = {b.id: b.directives().skip for b in PY_BLOCKS if b.directives().skip}
    assert all(len(reason.split()) >= 3 for reason in skips.values()), skips
    assert len(skips) <= MAX_SKIPS, f"{len(skips)} python blocks do not run: {skips}"


def test_every_docs_test_comment_sits_on_a_block():
    attached = {(b.page, b.line - 1 - i) for b in BLOCKS for i in range(len(b.comments))}
    for page in pages():
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
            if re.match(r"\s*<!--\s*docs-test:", line):
                where = f"{name(page)}:{n}"
                assert (name(page), n) in attached, f"{where}: a docs-test comment must sit right above a block"
    for b in BLOCKS:
        b.directives()  # every comment reads
        if b.lang not in ("python", "py"):
            assert not b.comments, f"{b.id}: docs-test comments apply to python blocks only"


PAGE = """
Text.

<!-- docs-test: run runs/first data.tasks=30 -->
<!-- docs-test: replace "steps = 5000" "steps = 3" -->
```python
import metarep

run = metarep.load_run("runs/first")
steps = 5000
```

<!-- docs-test: skip: needs a cluster of machines -->
```python
cluster = Cluster()
```

```python
print(run.config.data.tasks, steps)
```
"""


def test_the_collector_itself(docs_env, capsys):
    first, skipped, last = fenced_blocks(PAGE, "page.md")
    assert (first.line, skipped.line, last.line) == (6, 14, 18) and first.id == "page.md:6"
    assert skipped.directives().skip == "needs a cluster of machines"
    namespace = run_page_up_to(last, [first, skipped, last])  # the skipped block would raise NameError
    assert capsys.readouterr().out.split() == ["30", "3"] and namespace["steps"] == 3
    assert bare_expressions("x = 1\nprint(x)\nx\nx.real, x.imag\n") == [3, 4]

    with pytest.raises(DirectiveError, match="reason"):
        parse_directives(["skip:"])
    with pytest.raises(DirectiveError, match="cannot read"):
        parse_directives(['replace "only one"'])
    stale = fenced_blocks(PAGE.replace('"steps = 5000"', '"steps = 9"'), "page.md")[0]
    with pytest.raises(AssertionError, match="not in the block"):
        source(stale)
