"""The floor plan, read from the code's own imports (ast): the rules of the layout hold.

- no import cycle among the project's modules;
- `graphrnn.ir` imports nothing of the project but its op codes (`graphrnn.opcodes`);
- `runtime` never imports `compiler`, nor the reverse;
- the core API never imports a wing (`viz`, `bench`, `testing`); `cli` is the door to them;
- no function-local import of the project's own modules (optional third-party imports
  inside functions stay allowed);
- no module over 400 lines.
"""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

from graphrnn.version import _code_generating_sources

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"graphrnn": ROOT / "graphrnn", "graphrnn.compiler": ROOT / "compiler",
            "graphrnn.runtime": ROOT / "runtime"}
WINGS = ("graphrnn.viz", "graphrnn.bench", "graphrnn.testing", "graphrnn.zoo")
# the package's public namespace and its command line may open the wings
DOORS = ("graphrnn", "graphrnn.cli", "graphrnn.__main__")
MAX_LINES = 400
# core modules the compiler and runtime may read: the IR, its types and rules, the interpreter
ALLOWED_BELOW = {"graphrnn.ir", "graphrnn.opcodes", "graphrnn.flat", "graphrnn.executable", "graphrnn.version",
                 "graphrnn.isa",
                 "graphrnn.settings", "graphrnn.ops", "graphrnn.shape_rules", "graphrnn.infer",
                 "graphrnn.interpret"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The project modules an import statement loads (names that are modules count)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        names = [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target
                 for a in node.names]
    found = []
    for name in names:
        while name and name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in MODULES:
            found.append(name)
    return found


def _imports() -> tuple[nx.DiGraph, list[tuple[str, str, int]]]:
    graph, local = nx.DiGraph(), []
    for module, path in MODULES.items():
        graph.add_node(module)

        def visit(node: ast.AST, in_function: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    for target in _targets(module, path, child):
                        if in_function:
                            local.append((module, target, child.lineno))
                        elif target != module:
                            graph.add_edge(module, target)
                visit(child, in_function or isinstance(
                    child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
        visit(ast.parse(path.read_text()), False)
    return graph, local


GRAPH, LOCAL = _imports()


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_no_import_cycles():
    cycles = [sorted(c) for c in nx.strongly_connected_components(GRAPH) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


def test_the_ir_is_a_leaf():
    assert "graphrnn.ir" in MODULES and "graphrnn.opcodes" in MODULES
    assert list(GRAPH.successors("graphrnn.ir")) == ["graphrnn.opcodes"]
    assert list(GRAPH.successors("graphrnn.opcodes")) == []


@pytest.mark.parametrize("a, b", [("graphrnn.runtime", "graphrnn.compiler"),
                                  ("graphrnn.compiler", "graphrnn.runtime")])
def test_runtime_and_compiler_do_not_import_each_other(a, b):
    wrong = [(m, t) for m, t in GRAPH.edges if _in(m, a) and _in(t, b)]
    assert not wrong, wrong


def test_the_core_never_imports_a_wing():
    wrong = [(m, t) for m, t in GRAPH.edges
             if m not in DOORS and not any(_in(m, w) for w in WINGS)
             and any(_in(t, w) for w in WINGS)]
    assert not wrong, wrong


def test_compiler_and_runtime_never_import_the_api_above_them():
    core_api = {m for m in MODULES if m.count(".") == 1 and not _in(m, "graphrnn.compiler")
                and not _in(m, "graphrnn.runtime") and m not in ("graphrnn.ir", "graphrnn.opcodes")}
    wrong = [(m, t) for m, t in GRAPH.edges
             if (_in(m, "graphrnn.compiler") or _in(m, "graphrnn.runtime"))
             and (t in core_api or any(_in(t, w) for w in WINGS) or t == "graphrnn")
             and t not in ALLOWED_BELOW]
    assert not wrong, wrong


def test_no_function_local_imports_of_the_project():
    assert not LOCAL, "\n".join(f"{m} line {line}: imports {t}" for m, t, line in LOCAL)


def test_no_module_over_400_lines():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_codegen_never_reaches_into_the_passes():
    wrong = [(m, t) for m, t in GRAPH.edges
             if _in(m, "graphrnn.compiler.codegen") and _in(t, "graphrnn.compiler.passes")]
    assert not wrong, wrong


def test_no_two_modules_share_a_name():
    names: dict[str, list[str]] = {}
    for module, path in MODULES.items():
        if path.name != "__init__.py":
            names.setdefault(path.name, []).append(module)
    assert not {k: v for k, v in names.items() if len(v) > 1}


def test_the_cache_keys_hash_only_code_generating_sources():
    """Editing a picture, a benchmark or the fuzzer keeps every cached kernel valid."""
    hashed = {path.resolve() for _, path in _code_generating_sources()}
    wings = {p.resolve() for w in ("viz", "bench", "testing")
             for p in (ROOT / "graphrnn" / w).rglob("*.py")}
    assert hashed and not hashed & wings
    assert (ROOT / "compiler" / "codegen" / "gemm.py").resolve() in hashed
    assert (ROOT / "graphrnn" / "ir.py").resolve() in hashed
