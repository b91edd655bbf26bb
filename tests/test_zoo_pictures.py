"""`graphrnn show` on the zoo's nested models: the hierarchical RNN's character loop and a
while loop inside another loop's body are clusters inside their loop's cluster (DOT and SVG),
and the greedy decoder's while loop is a labelled cluster holding the attention step."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import graphrnn as gr
from graphrnn import nn, ops
from graphrnn.cli import main

SVG = "{http://www.w3.org/2000/svg}"
MODELS = '''
import graphrnn as gr
from graphrnn import zoo


def hierarchical():
    return zoo.hierarchical(7, 5, char_embedding=3, char_hidden=4, word_length=4)


def greedy():
    trained = zoo.bahdanau(vocab=7, embedding=4, hidden=6)
    return zoo.greedy_decoder(trained, bos=1, eos=2, max_steps=5)
'''


def dot_structure(text: str) -> tuple[dict[str, str | None], dict[str, str | None], dict]:
    """(cluster -> enclosing cluster, node id -> innermost cluster, cluster -> label) of DOT
    text, from the nesting of its braces."""
    parents: dict[str, str | None] = {}
    owner: dict[str, str | None] = {}
    labels: dict[str, str] = {}
    stack: list[str | None] = []
    for line in text.splitlines()[1:]:
        s = line.strip()
        if s.startswith("subgraph "):
            cid = s.split()[1]
            parents[cid] = stack[-1] if stack else None
            stack.append(cid)
        elif s == "}":
            if stack:
                stack.pop()
        elif s.startswith("label=") and stack and stack[-1] not in labels:
            labels[stack[-1]] = s
        else:
            m = re.match(r'("[^"]+") \[label=', s)
            if m:
                owner[m.group(1)] = stack[-1] if stack else None
    return parents, owner, labels


def svg_clusters(path) -> dict[str, tuple[str | None, tuple[float, float, float, float]]]:
    """cluster id -> (enclosing cluster group's id, frame bounds x0, y0, x1, y1)."""
    out = {}

    def visit(el, parent):
        for g in el.findall(f"{SVG}g"):
            if "cluster" in g.get("class", "").split():
                pts = [tuple(map(float, p.split(",")))
                       for p in g.find(f"{SVG}polygon").get("points").split()]
                xs, ys = [p[0] for p in pts], [p[1] for p in pts]
                out[g.get("id")] = (parent, (min(xs), min(ys), max(xs), max(ys)))
                visit(g, g.get("id"))
    visit(ET.parse(path).getroot(), None)
    return out


def inside(a, b) -> bool:
    return a[0] > b[0] and a[1] > b[1] and a[2] < b[2] and a[3] < b[3]


def test_show_draws_the_character_loop_inside_the_word_loop(tmp_path, capsys):
    source = tmp_path / "zoo_models.py"
    source.write_text(MODELS)
    dot = tmp_path / "h.dot"
    assert main(["show", f"{source}:hierarchical", "-o", str(dot)]) == 0
    parents, owner, labels = dot_structure(dot.read_text())
    assert parents == {"cluster_words": None, "cluster_words_chars": "cluster_words"}
    assert 'lengths' in labels["cluster_words_chars"]
    assert owner['"words/h_next"'] == "cluster_words"
    assert owner['"words/chars/h_next"'] == "cluster_words_chars"
    assert owner['"words/chars/char_emb.weight"'] == "cluster_words_chars"

    svg = tmp_path / "h.svg"
    assert main(["show", f"{source}:hierarchical", "-o", str(svg), "--engine", "builtin"]) == 0
    frames = svg_clusters(svg)
    assert set(frames) == {"cluster:words", "cluster:words/chars"}
    parent, inner = frames["cluster:words/chars"]
    assert parent == "cluster:words" and inside(inner, frames["cluster:words"][1])


def test_show_draws_the_greedy_decoder_as_a_while_loop_cluster(tmp_path):
    source = tmp_path / "zoo_models.py"
    source.write_text(MODELS)
    dot = tmp_path / "g.dot"
    assert main(["show", f"{source}:greedy", "-o", str(dot)]) == 0
    parents, owner, labels = dot_structure(dot.read_text())
    assert parents == {"cluster_loop_0": None, "cluster_decoder": None}     # encoder, decoder
    assert "decoder: while loop (max_steps=5)" in labels["cluster_decoder"]
    in_decoder = [n for n, c in owner.items() if c == "cluster_decoder"]
    assert {'"decoder/query.weight"', '"decoder/out.weight"', '"decoder/tgt_emb.weight"',
            '"decoder/enc"', '"decoder/keys"', '"decoder/token"'} <= set(in_decoder)


def test_a_while_loop_inside_a_loop_body_is_a_nested_cluster(tmp_path):
    g, c = gr.Input("B", 3), gr.Input("B", 3)
    g2 = nn.Tanh()(nn.CAddTable()([nn.Linear(3, 3)(g), c]))
    inner = gr.gModule([c, g], [g2, g2, ops.sub(ops.sum_(g2, axes=(1,)), 0.5)])
    h, x = gr.Input("B", 3), gr.Input("B", 3)
    g_t, _, _ = gr.Loop(inner, n_carry=1, n_consts=1, stop=True, max_steps=5,
                        name="settle")(consts=[x], init=[h])
    outer = gr.gModule([h, x], [g_t, g_t])
    xs, h0 = gr.Input("B", "T", 3, name="x"), gr.Input("B", 3, name="h0")
    _, ys = gr.Loop(outer, n_carry=1, name="outer")(init=[h0], xs=[xs])
    model = gr.gModule([xs, h0], [ys])
    parents, _, labels = dot_structure(gr.viz.to_dot(model))
    assert parents == {"cluster_outer": None, "cluster_outer_settle": "cluster_outer"}
    assert "settle: while loop (max_steps=5)" in labels["cluster_outer_settle"]
    path = tmp_path / "w.svg"
    gr.viz.render(model, str(path))
    frames = svg_clusters(path)
    assert frames["cluster:outer/settle"][0] == "cluster:outer"
    assert inside(frames["cluster:outer/settle"][1], frames["cluster:outer"][1])
