"""The house rules, read from the source: the library never imports the CLI, the import graph
has no cycle (between packages, and between modules at import time), no module grows past
~500 lines without saying why, and no library code reads test-only environment variables."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "forensics"
MAX_LINES = 500
SIZE_REASON = "Longer than 500 lines because"


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    """The module an imported dotted name lives in (``forensics.x.y`` may be a function y)."""
    while name:
        if name in mods:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(path: Path, mods: dict[str, Path], top_level_only: bool) -> set[str]:
    """forensics modules imported by ``path`` (``top_level_only``: executed at import time,
    i.e. not inside a function body nor an ``if TYPE_CHECKING:`` block)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(node: ast.AST, in_func: bool) -> None:
        for child in ast.iter_child_nodes(node):
            func = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if top_level_only and func:
                continue
            names: list[str] = []
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                names = [f"{child.module}.{a.name}" for a in child.names] + [child.module]
            elif isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            for n in names:
                if n.startswith("forensics"):
                    m = _resolve(n, mods)
                    if m:
                        found.add(m)
            visit(child, func)

    visit(tree, False)
    return found


def _package(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PKG / parts[1]).is_dir()) else "core"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path, or None (iterative DFS, white/grey/black)."""
    state: dict[str, int] = {}
    for start in sorted(graph):
        if state.get(start):
            continue
        stack = [(start, iter(sorted(graph.get(start, ()))))]
        path = [start]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(sorted(graph.get(nxt, ())))))
                path.append(nxt)
    return None


def test_library_never_imports_the_cli():
    mods = _modules()
    bad = []
    for name, path in mods.items():
        if name.startswith("forensics.cli") or name == "forensics.__main__":
            continue
        hits = [m for m in _imports(path, mods, top_level_only=False) if m.startswith("forensics.cli")]
        if hits:
            bad.append(f"{name} -> {', '.join(sorted(hits))}")
    assert not bad, "library modules import the CLI:\n" + "\n".join(bad)


def test_packages_form_a_dag():
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        if name == "forensics.__main__" or name == "forensics":
            continue
        for m in _imports(path, mods, top_level_only=False):
            a, b = _package(name), _package(m)
            if a != b and m != "forensics":
                graph.setdefault(a, set()).add(b)
    assert _cycle(graph) is None, f"package import cycle: {' -> '.join(_cycle(graph))}; graph {graph}"


def test_no_import_time_cycle_between_modules():
    mods = _modules()
    graph = {name: {m for m in _imports(path, mods, top_level_only=True) if m != name}
             for name, path in mods.items()}
    # a package's __init__ importing its own submodules is how packages re-export
    for name in graph:
        graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    cyc = _cycle(graph)
    assert cyc is None, f"import-time cycle: {' -> '.join(cyc)}"


def test_modules_stay_small_or_say_why():
    big = []
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        n = text.count("\n")
        doc = ast.get_docstring(ast.parse(text)) or ""
        if n > MAX_LINES and SIZE_REASON not in doc:
            big.append(f"{name}: {n} lines")
    assert not big, (f"modules over {MAX_LINES} lines without '{SIZE_REASON} ...' in their "
                     "docstring:\n" + "\n".join(big))


def test_library_reads_no_test_only_environment_variables():
    offenders = [str(p.relative_to(PKG.parent)) for p in PKG.rglob("*.py")
                 if "FORENSICS_TEST" in p.read_text(encoding="utf-8")]
    assert not offenders, f"test seams must be parameters, not environment variables: {offenders}"


def test_every_cli_module_registers():
    """An import error in a CLI module is an error, not a silently missing command."""
    from click.testing import CliRunner

    from forensics.cli import main

    out = CliRunner().invoke(main, ["--help"])
    assert out.exit_code == 0, out.output
    for cmd in ("init", "ingest", "index", "triage", "pipeline", "nla", "report", "sql", "anomaly"):
        assert cmd in main.commands, f"command {cmd!r} missing from the CLI"
