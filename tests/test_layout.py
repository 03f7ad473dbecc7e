"""Package layout: no import cycle among metarep's modules, a light package root and config, and no
top-level module that shadows the standard library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import metarep

SRC = Path(metarep.__file__).resolve().parent
PACKAGE = "metarep"


def module_files(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """Module name -> file for every ``.py`` file under ``src`` (a package is its ``__init__.py``)."""
    out = {}
    for path in sorted(src.rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join((package, *parts))] = path
    return out


def import_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its file (inside functions too).

    ``import a.b`` and ``from a import b`` (``b`` a submodule) are edges to ``a.b``; ``from a.b import
    name`` (``name`` not a submodule) is an edge to ``a.b``. Relative imports are resolved against the
    importing module's package. A child is not given an implicit edge to its parent package.
    """
    files = module_files(src, package)
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        here = mod.split(".") if is_pkg else mod.split(".")[:-1]  # the package relative imports start from
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base_parts = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    targets.append(sub if sub in files else base)
            for t in targets:
                # `import metarep.a.b` names the deepest module of the package it reaches
                while t and t not in files:
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def cycle_path(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    """One concrete cycle through ``comp``'s first module, for the failure message."""
    start, members = comp[0], set(comp)
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for w in sorted(graph[path[-1]] & members):
            if w == start:
                return path + [start]
            if w not in seen:
                seen.add(w)
                paths.append(path + [w])
    return comp


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 20 and "metarep.cli" in graph and "metarep.fewshot.sinusoid" in graph
    found = [f"{' -> '.join(cycle_path(graph, c))}   (all in the cycle: {', '.join(c)})" for c in cycles(graph)]
    assert not found, "import cycles among metarep's modules:\n  " + "\n  ".join(found)


def test_the_cycle_finder_finds_cycles(tmp_path):
    """The checker itself: relative, absolute, in-function and `from . import submodule` cycles."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import thing\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    (pkg / "c.py").write_text("import pkg.sub.d\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "d.py").write_text("from ..c import x\n")
    (pkg / "e.py").write_text("from .sub import d\nimport os\n")  # e -> sub.d only: no cycle
    graph = import_graph(pkg, "pkg")
    assert graph["pkg.e"] == {"pkg.sub.d"} and graph["pkg.sub.d"] == {"pkg.c"}
    assert cycles(graph) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.sub.d"]]
    assert cycle_path(graph, ["pkg.a", "pkg.b"]) == ["pkg.a", "pkg.b", "pkg.a"]
    (pkg / "b.py").write_text("def f():\n    return 1\n")
    (pkg / "c.py").write_text("")
    assert cycles(import_graph(pkg, "pkg")) == []


def _imports_torch(statement: str) -> bool:
    code = f"import sys\n{statement}\nprint('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return proc.stdout.strip() == "True"


def test_package_root_and_config_do_not_import_torch():
    assert not _imports_torch("import metarep")
    assert not _imports_torch("import metarep.config")
    assert _imports_torch("import metarep.batch")  # the check can fail


def test_no_top_level_module_shadows_the_standard_library():
    top = {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"} | {
        p.parent.name for p in SRC.glob("*/__init__.py")
    }
    assert "cli" in top and "fewshot" in top
    clashes = sorted(top & set(sys.stdlib_module_names))
    assert not clashes, f"modules of metarep named like standard-library modules: {clashes}"


def test_make_clean_keeps_results():
    """`make clean` removes caches only: never the folders results go to by default."""
    makefile = SRC.parents[1] / "Makefile"
    lines = makefile.read_text().splitlines()
    start = lines.index("clean:")
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line)
    assert recipe and any("rm -rf" in line for line in recipe)  # the check can fail: it reads the recipe
    words = {w.strip("/") for line in recipe for w in line.split()}
    assert not words & {"runs", "reproduction", "sweeps", "."}, recipe
