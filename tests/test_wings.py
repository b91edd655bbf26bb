"""The wings (graphrnn/viz, graphrnn/bench, graphrnn/testing) and the command that is their door:
no import cycles, no deferred imports of the project, small files, and no core module reaching
into them. Read from the source with ast, nothing imported."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"graphrnn": ROOT / "graphrnn", "graphrnn.compiler": ROOT / "compiler",
            "graphrnn.runtime": ROOT / "runtime"}
WINGS = ("graphrnn.viz", "graphrnn.bench", "graphrnn.testing")
DOORS = ("graphrnn", "graphrnn.cli", "graphrnn.__main__")     # may import a wing
MAX_LINES = 400


def modules() -> dict[str, Path]:
    out = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package] + parts)] = path
    return out


MODULES = modules()


def in_wing(name: str) -> bool:
    return any(name == w or name.startswith(w + ".") for w in WINGS)


def imports(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """(project module imported, line, inside a function) for every import in the file."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            targets = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")[:len(package.split(".")) - child.level + 1]
                    base = ".".join(up + ([child.module] if child.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                           for a in child.names]
            for target in dict.fromkeys(targets):
                while target and target not in MODULES and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in MODULES and target != name:
                    found.append((target, child.lineno, local))
            visit(child, local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))
    visit(ast.parse(path.read_text()), False)
    return found


GRAPH = {name: imports(name, path) for name, path in MODULES.items()}


def test_the_wings_and_the_command_import_the_project_at_the_top():
    deferred = [f"{MODULES[m].relative_to(ROOT)}:{line} imports {t}"
                for m, found in GRAPH.items() if in_wing(m) or m == "graphrnn.cli"
                for t, line, local in found if local]
    assert not deferred, "import these at the top of the module:\n" + "\n".join(deferred)


def test_no_core_module_imports_a_wing():
    reaching = [f"{MODULES[m].relative_to(ROOT)}:{line} imports {t}"
                for m, found in GRAPH.items() if not in_wing(m) and m not in DOORS
                for t, line, _ in found if in_wing(t) or t == "graphrnn.cli"]
    assert not reaching, "only cli.py (and gr.viz) may reach a wing:\n" + "\n".join(reaching)


def test_no_import_cycle_passes_through_a_wing():
    edges = {m: {t for t, _, local in found if not local} for m, found in GRAPH.items()}
    cycles = []
    for start in [m for m in MODULES if in_wing(m)]:
        stack, seen = [(start, [start])], set()
        while stack:
            m, path = stack.pop()
            for t in edges[m]:
                if t == start:
                    cycles.append(" -> ".join(path + [t]))
                elif t not in seen:
                    seen.add(t)
                    stack.append((t, path + [t]))
    assert not cycles, "\n".join(sorted(set(cycles)))


def test_wing_files_stay_under_the_soft_cap():
    long = {str(p.relative_to(ROOT)): n for m, p in MODULES.items()
            if in_wing(m) and (n := p.read_text().count("\n")) > MAX_LINES}
    assert not long, f"split these by job: {long}"
