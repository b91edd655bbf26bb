"""The new elementwise primitives in the random generator, in saved model files and in
hostile ones."""
from __future__ import annotations

import json

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import codec, nn
from graphrnn.close import close_graph
from graphrnn.ir import Op
from graphrnn.codec import ModelFileError
from graphrnn.testing.fuzz import check_case
from graphrnn.testing.randgraph import generate_seeded

NEW = {Op.ABS, Op.SIGN, Op.SQRT, Op.ERF, Op.SOFTPLUS, Op.POW, Op.MAXIMUM, Op.MINIMUM}


def test_the_generator_draws_every_new_primitive():
    seen: set[Op] = set()
    for seed in range(200):
        seen |= {n.op for n, _ in generate_seeded(seed).model.graph.walk()}
    assert NEW <= seen, NEW - seen


@pytest.mark.parametrize("seed", [2, 7, 19])
def test_random_models_with_the_new_ops_pass_every_check(seed):
    ops: set[Op] = set()
    while not ops & NEW:
        g = generate_seeded(seed)
        ops = {n.op for n, _ in g.model.graph.walk()}
        seed += 1000
    assert check_case(g.model, g.inputs) == []


def test_a_model_of_the_new_modules_saves_and_loads(tmp_path):
    x, y = gr.Input("B", 4, name="x"), gr.Input("B", 4, name="y")
    out = nn.Power(-1.5)(nn.SoftPlus(beta=2)(nn.CMaxTable()([nn.GELU()(x), nn.Abs()(y)])))
    model = gr.gModule([x, y], [nn.MaskedFill(-np.inf)([out, y])])
    gr.save(model, tmp_path / "m.grnn")
    again = gr.load(tmp_path / "m.grnn")
    a, b = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(again(a, b), model(a, b))


@pytest.mark.parametrize("p", [None, "x", float("inf")])
def test_a_pow_node_without_a_finite_exponent_is_refused(p):
    x = gr.Input("B", 4, name="x")
    model = gr.gModule([x], [nn.Power(2.5)(x)])
    doc = json.loads(json.dumps(codec.encode_graph(model.graph, {})))
    node = next(n for n in doc["nodes"] if n["op"] == "pow")
    node["attrs"] = {} if p is None else {"p": p if isinstance(p, str) else {"float": "inf"}}
    with pytest.raises(ModelFileError, match="attribute 'p'"):
        close_graph(*codec.decode_graph(doc, [], [], "graph", 0))
