"""The driver's named steps beyond the optimisations: "state" (stateful models), "join"
(before hoist) and "unit" (a training step's loss cotangent), traced like every pass; and the
one module of graphrnn that reaches both the compiler and the runtime."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

import graphrnn as gr
from graphrnn import cells, nn
from graphrnn.compiler import Trace, expose, prepare, prepare_training
from graphrnn.interpret import interpret
from graphrnn.ir import TensorType
from graphrnn.losses import loss_graph
from graphrnn.trainstep import relaid

CORE = Path(gr.__file__).parent


def lstm() -> gr.gModule:
    x = gr.Input("B", "T", 3)
    return gr.gModule([x], [nn.Linear(4, 2)(nn.Recurrent(cells.LSTM(3, 4))(x))])


def test_state_is_the_first_step_of_a_stateful_compilation() -> None:
    model, trace = lstm(), Trace()
    exposed = expose(model.graph)
    types = [TensorType((2, "T", 3)), TensorType((2, 4)), TensorType((2, 4))]
    g, table = prepare(model.graph, types, stateful=True, trace=trace)
    assert [r.name for r in trace][:2] == ["state", "shapes"]
    assert len(g.inputs) == len(exposed.graph.inputs) + 1       # and the flat parameters
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    h0, c0 = interpret(exposed.initial, x)
    y, h, c = interpret(g, x, h0, c0, relaid(model.flat, model.table, table))
    np.testing.assert_allclose(y, interpret(model, x), rtol=1e-6)


def test_unit_is_the_last_step_of_a_training_step() -> None:
    model, trace = lstm(), Trace()
    types = [TensorType((2, "T", 3)), TensorType((2, "T", 2))]
    g, _, _ = prepare_training(loss_graph(model, gr.MSECriterion()), types, trace=trace,
                               unit_cotangent=True)
    assert [r.name for r in trace][-1] == "unit"
    assert [x.name for x in g.inputs][-1] == "params"           # no cotangent input
    assert "join" in [r.name for r in trace]


def test_join_is_skipped_with_hoist() -> None:
    trace = Trace()
    prepare(lstm().graph, [TensorType((2, "T", 3))], disable=("hoist",), trace=trace)
    names = [r.name for r in trace]
    assert "join" not in names and "hoist" not in names


def imports(path: Path) -> set[str]:
    found = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.ImportFrom):
            base = ("." * n.level) + (n.module or "")
            found |= {base} | {f"{base}.{a.name}" for a in n.names}
        elif isinstance(n, ast.Import):
            found |= {a.name for a in n.names}
    return found


def reaches(names: set[str], package: str) -> bool:
    return any(n.startswith((f".{package}", f"graphrnn.{package}")) for n in names)


def test_one_module_of_graphrnn_uses_both_the_compiler_and_the_runtime() -> None:
    both = [p.name for p in CORE.rglob("*.py")
            if reaches(imports(p), "compiler") and reaches(imports(p), "runtime")]
    assert both == ["compile.py"]
    for name in ("gmodule", "codec", "generate", "gradcheck", "train"):
        found = imports(CORE / f"{name}.py")
        assert not reaches(found, "compiler") and not reaches(found, "runtime"), name
