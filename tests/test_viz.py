"""Inspection: the summary table, DOT text (checked with a small DOT reader) and to_networkx."""
from __future__ import annotations

import re

import networkx as nx
import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn, ops
from graphrnn.viz.dot import storage_colour
from graphrnn.ir import Op
from graphrnn.close import close_graph
from graphrnn.viz import summary, to_dot, to_networkx
from graphrnn.viz.inspect import param_storages, walk_paths


def shared_loop_model() -> gr.gModule:
    """lin is read inside the loop body and again after the loop: one storage, two PARAM
    nodes. out is called twice at top level: one PARAM node with two uses."""
    lin, out = nn.Linear(4, 4, name="lin"), nn.Linear(4, 4, name="out")
    h, x = gr.Input("B", 4, name="h"), gr.Input("B", 4, name="x")
    h2 = nn.Tanh()(nn.CAddTable()([lin(h), x]))
    step = gr.gModule([h, x], [h2, h2])
    xs = gr.Input("B", "T", 4, name="xs")
    _, hs = gr.Loop(step, n_carry=1, reverse=True)(init=[ops.fill((4,), batch_like=xs)],
                                                   xs=[xs])
    return gr.gModule([xs], [out(nn.Tanh()(out(lin(hs))))], name="shared")


def lstm_model() -> gr.gModule:
    x = gr.Input("B", "T", 3, name="x")
    return gr.gModule([x], [nn.Recurrent(gr.cells.LSTM(3, 5), num_layers=2)(x)], name="lstm")


# ----------------------------------------------------------------------------- summary

def rows(text: str) -> dict[str, list[str]]:
    """Table rows by (stripped) node name -> the row's cells split on 2+ spaces."""
    lines = text.splitlines()
    first, last = [i for i, line in enumerate(lines) if set(line) == {"="}]
    cells = [re.split(r"\s{2,}", line.strip()) for line in lines[first + 1:last]]
    return {c[0]: c for c in cells}


def test_summary_counts_and_sharing():
    model = shared_loop_model()
    text = summary(model)
    assert text == gr.viz.summary(model)
    assert text.startswith('Model "shared" (gModule): 1 input -> 1 output')
    assert f"Total parameters: {model.param_count():,} in 4 tensors" in text
    assert model.param_count() == 2 * (16 + 4)
    assert f"Flat vector: {model.table.size:,} float32" in text
    assert model.table.size == model.param_count()
    lines = text.splitlines()
    loop_row = next(i for i, line in enumerate(lines) if line.startswith("loop_0 "))
    assert "20" in lines[loop_row] and "every step" in lines[loop_row]
    # the body is listed indented right under its loop
    assert lines[loop_row + 1].startswith("  h ") or lines[loop_row + 1].startswith("  input")
    inner = next(line for line in lines if line.startswith("  lin.weight"))
    assert "lin.weight" in inner.split("param")[1] and "every step" in inner
    outer = next(line for line in lines if line.startswith("lin.weight"))
    assert "loop_0/lin.weight" in outer and "16" in outer
    twice = next(line for line in lines if line.startswith("out.weight"))
    assert "2 uses" in twice


def test_summary_of_a_stacked_lstm():
    model = lstm_model()
    text = gr.viz.summary(model)
    table = rows(text)
    assert table["lstm.weight_ih_l0"][1:4] == ["lstm/lstm/lstm", "param", "f32[20,3]"]
    assert table["lstm.weight_ih_l0"][4] == "60"
    assert table["lstm.weight_hh_l1"][4] == "100"
    assert f"Total parameters: {model.param_count():,} in 8 tensors" in text
    assert "Inputs:  x f32[B,T,3]" in text
    assert summary(model.graph).startswith("Graph: 1 input")


def test_param_storages_follow_the_flat_layout():
    model = shared_loop_model()
    storages = list(param_storages(model).values())
    assert [(s.key, s.offset, s.shape) for s in storages] == [
        (k, slot.offset, slot.shape) for k, slot in model.table.slots.items()]
    lin_w = next(s for s in storages if s.key == "lin.weight")
    assert lin_w.paths == ("loop_0/lin.weight", "lin.weight") and lin_w.in_loop


# ----------------------------------------------------------------------------- DOT

TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|->|[{}\[\];=,]|[A-Za-z_][\w.]*|-?\d+(?:\.\d+)?|\S')


def parse_dot(text: str) -> tuple[dict[str, dict[str, str]], list[tuple[str, str, dict]],
                                  list[str]]:
    """A small DOT reader for what to_dot writes: (nodes with attrs, edges, cluster ids).

    Fails on unbalanced braces, a statement without its `;`, or an edge to an undeclared node.
    """
    tokens = TOKEN.findall(text)
    assert tokens[:2] == ["digraph", tokens[1]] and tokens[2] == "{" and tokens[-1] == "}"
    nodes: dict[str, dict[str, str]] = {}
    edges: list[tuple[str, str, dict]] = []
    clusters: list[str] = []
    depth, i = 0, 2
    while i < len(tokens):
        t = tokens[i]
        if t == "{":
            depth, i = depth + 1, i + 1
        elif t == "}":
            depth, i = depth - 1, i + 1
            assert depth >= 0
        elif t == "subgraph":
            clusters.append(tokens[i + 1])
            assert tokens[i + 2] == "{"
            i += 2
        elif t in ("graph", "node", "edge") or tokens[i + 1] == "=":
            i = tokens.index(";", i) + 1
        else:
            assert t.startswith('"'), f"expected a quoted id, got {t!r}"
            if tokens[i + 1] == "->":
                src, dst = t, tokens[i + 2]
                attrs, i = attributes(tokens, i + 3)
                edges.append((src, dst, attrs))
            else:
                attrs, i = attributes(tokens, i + 1)
                nodes[t] = attrs
    assert depth == 0
    for src, dst, _ in edges:
        assert src in nodes and dst in nodes, f"edge {src} -> {dst} to an undeclared node"
    return nodes, edges, clusters


def attributes(tokens: list[str], i: int) -> tuple[dict[str, str], int]:
    attrs: dict[str, str] = {}
    if tokens[i] == "[":
        i += 1
        while tokens[i] != "]":
            key, eq, value = tokens[i:i + 3]
            assert eq == "="
            attrs[key] = value.strip('"')
            i += 3
            if tokens[i] == ",":
                i += 1
        i += 1
    assert tokens[i] == ";", f"statement not ended at token {i}: {tokens[i]!r}"
    return attrs, i + 1


def test_dot_nodes_clusters_edges_and_carries():
    model = shared_loop_model()
    nodes, edges, clusters = parse_dot(gr.viz.to_dot(model))
    paths = [pn.path for pn in walk_paths(model.graph)]
    assert set(nodes) == {f'"{p}"' for p in paths}
    assert clusters == ["cluster_loop_0"]
    assert nodes['"xs"']["shape"] == "invhouse"
    out_name = model.graph.outputs[0].name
    assert nodes[f'"{out_name}"']["peripheries"] == "2"
    assert "loop_0: loop (reverse)" in gr.viz.to_dot(model)
    carries = [(s, d) for s, d, a in edges if a.get("style") == "dashed"]
    assert carries == [('"loop_0/tanh_0"', '"loop_0/h"')]
    # every data edge carries the type of its value
    label = {(s, d): a.get("label") for s, d, a in edges}
    assert label[('"xs"', '"loop_0"')] == "f32[B,T,4]"
    assert label[('"loop_0"', '"get_0"')] == "f32[B,T,4]"


def test_dot_colours_params_by_storage():
    model = shared_loop_model()
    nodes, _, _ = parse_dot(gr.viz.to_dot(model))
    colour = {name: a["fillcolor"] for name, a in nodes.items() if "tooltip" in a}
    assert colour['"loop_0/lin.weight"'] == colour['"lin.weight"']
    assert len({colour['"lin.weight"'], colour['"lin.bias"'], colour['"out.weight"'],
                colour['"out.bias"']}) == 4
    slot = model.table.slots["out.weight"]
    assert f"out.weight @{slot.offset} +{slot.size}" in nodes['"out.weight"']["label"]


def test_dot_of_nested_loops_and_fused_bodies():
    g, x = gr.Input("B", 2, name="g"), gr.Input("B", 2, name="x")
    inner = gr.gModule([g, x], [ops.add(g, x), ops.tanh(g)])
    h, seq = gr.Input("B", 2), gr.Input("B", 3, 2)
    s2, _ = gr.Loop(inner, n_carry=1)(init=[h], xs=[seq])
    body = gr.gModule([h, seq], [s2, s2])
    xs = gr.Input("B", "T", 3, 2)
    _, ys = gr.Loop(body, n_carry=1)(init=[ops.fill((2,), batch_like=xs)], xs=[xs])
    u = gr.Input("B", "T", 2)
    fused = ops.make(Op.FUSED, [ys], body=close_graph([u], [ops.relu(u)]))
    model = gr.gModule([xs], [fused])
    nodes, edges, clusters = parse_dot(gr.viz.to_dot(model))
    assert clusters == ["cluster_loop_0", "cluster_loop_0_loop_0", "cluster_fused_0"]
    assert nodes['"fused_0"']["shape"] == "box3d"
    assert ('"loop_0/loop_0/add_0"', '"loop_0/loop_0/g"') in [
        (s, d) for s, d, a in edges if a.get("style") == "dashed"]


def test_dot_unrolled_steps():
    model = shared_loop_model()
    text = to_dot(model, unroll=3)
    nodes, edges, clusters = parse_dot(text)
    assert clusters == ["cluster_loop_0", "cluster_loop_0_t0", "cluster_loop_0_t1",
                        "cluster_loop_0_t2"]
    pairs = {(s, d): a for s, d, a in edges}
    assert pairs[('"loop_0@0/tanh_0"', '"loop_0@1/h"')]["label"] == "carry 0"
    assert pairs[('"loop_0@1/tanh_0"', '"loop_0@2/h"')]["label"] == "carry 0"
    assert pairs[('"loop_0"', '"loop_0@0/h"')]["label"] == "init 0"
    assert pairs[('"loop_0"', '"loop_0@2/x"')]["label"] == "xs[0][:, T-3]"
    # the body's parameters are drawn once and feed every step
    assert '"loop_0/lin.weight"' in nodes and '"loop_0@1/lin.weight"' not in nodes
    assert sum(1 for s, _, _ in edges if s == '"loop_0/lin.weight"') == 3
    with pytest.raises(ValueError, match="unroll"):
        to_dot(model, unroll=0)


def test_dot_highlights_a_node():
    model = shared_loop_model()
    nodes, _, _ = parse_dot(gr.viz.to_dot(model, highlight=["get_0"]))
    assert nodes['"get_0"']["color"] == "#d62728"


def test_dot_highlight_by_path_shows_the_line_and_the_caption():
    model = shared_loop_model()
    text = gr.viz.to_dot(model, highlight=["loop_0/tanh_0"], caption=["GraphError: tanh_0: bad"])
    nodes, _, _ = parse_dot(text)
    marked = [n for n, a in nodes.items() if a.get("color") == "#d62728"]
    assert marked == ['"loop_0/tanh_0"']              # not the top-level tanh_0
    assert re.search(r"\\nat test_viz\.py:\d+$", nodes['"loop_0/tanh_0"']["label"])
    assert 'label="GraphError: tanh_0: bad"; labelloc=t' in text
    assert len({storage_colour(i) for i in range(12)}) == 12


# ----------------------------------------------------------------------------- networkx

def test_to_networkx_flattens_loops():
    model = shared_loop_model()
    G = gr.viz.to_networkx(model)
    assert G is not None and G.number_of_nodes() == len(list(walk_paths(model.graph)))
    assert nx.is_directed_acyclic_graph(G)
    h = G.nodes["loop_0/h"]
    assert h["op"] == "input" and h["loop"] == "loop_0" and h["roles"] == ("carry_in 0",)
    assert h["type"] == "f32[B,4]"
    assert G.nodes["loop_0/tanh_0"]["roles"] == ("carry_out 0", "y_t 0")
    assert G.nodes["xs"]["roles"] == ("input",) and G.nodes["lin.weight"]["param"] == "lin.weight"
    assert G.edges["loop_0", "loop_0/h"]["kind"] == "enter"
    assert G.edges["xs", "loop_0"] == {"kind": "data", "index": 1, "type": "f32[B,T,4]"}
    assert G.graph["carries"] == [("loop_0/tanh_0", "loop_0/h", "loop_0")]
    assert to_networkx(model.graph).number_of_nodes() == G.number_of_nodes()


def test_inspection_needs_a_model_or_graph():
    with pytest.raises(TypeError, match="gModule or a Graph"):
        summary(np.zeros(3))
