"""Pictures: the built-in SVG/PNG renderer, the Graphviz path, error pictures, debug mode."""
from __future__ import annotations

import os
import re
import stat
import struct
import sys
import textwrap
import xml.etree.ElementTree as ET
import zlib

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn, ops
from graphrnn.compiler.pipeline import prepare
from graphrnn.viz.dot import storage_colour
from graphrnn.ir import Op, TensorType
from graphrnn.viz.layout import layout
from graphrnn.viz.draw import RenderError, failing_node, picture, render
from graphrnn.viz.scene import build_scene, storage_edge_colour
from graphrnn.close import close_graph

SVG = "{http://www.w3.org/2000/svg}"


# ----------------------------------------------------------------------------- models

def toy_loop() -> gr.gModule:
    """The nngraph toy as a loop: a tied Linear(27, 26) + Tanh step, Linear(26, 1) at the end."""
    h, x_t = gr.Input("B", 26, name="h"), gr.Input("B", 1, name="x_t")
    step = gr.gModule([h, x_t], [nn.Tanh()(nn.Linear(27, 26)(nn.JoinTable(1)([h, x_t])))])
    x, h0 = gr.Input("B", 3, 1, name="x"), gr.Input("B", 26, name="h0")
    h_last = gr.Loop(step, n_carry=1, length=3, name="rnn")(init=[h0], xs=[x])[0]
    return gr.gModule([x, h0], [nn.Linear(26, 1)(h_last)], name="toy")


def lstm_seq() -> gr.gModule:
    x = gr.Input("B", "T", 3, name="x")
    return gr.gModule([x], [nn.Recurrent(gr.cells.LSTM(3, 4))(x)], name="lstm")


def nested_fused() -> gr.gModule:
    """A loop inside a loop body, a parameter read inside and outside both, and a FUSED node."""
    proj = nn.Linear(4, 4, name="proj")
    h, x = gr.Input("B", 4), gr.Input("B", 2)
    inner = gr.gModule([h, x], [nn.Tanh()(nn.CAddTable()([nn.Linear(6, 4)(
        nn.JoinTable(1)([h, x])), proj(h)]))] * 2)
    xo = gr.Input("B", 3, 2)
    h_in, _ = gr.Loop(inner, n_carry=1)(init=[ops.fill((4,), batch_like=xo)], xs=[xo])
    outer = gr.gModule([xo], [h_in])
    xs = gr.Input("B", "T", 3, 2)
    ys = gr.Loop(outer, n_carry=0)(xs=[xs])[0]
    u, v = gr.Input("B", "T", 4), gr.Input("B", "T", 4)
    body = close_graph([u, v], [ops.tanh(ops.add(u, v))])
    return gr.gModule([xs], [ops.make(Op.FUSED, [proj(ys), ys], body=body)], name="nested")


# ----------------------------------------------------------------------------- helpers

def svg_of(model, **kw) -> ET.Element:
    return ET.fromstring(picture(model, "svg", engine="builtin", **kw))


def groups(root: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in root.iter(SVG + "g") if cls in g.get("class", "").split()]


def box_rect(g: ET.Element) -> tuple[float, float, float, float]:
    """Bounding box of a node group's outline polygon."""
    poly = g.findall(SVG + "polygon")[-1]
    xs, ys = zip(*[map(float, p.split(",")) for p in poly.get("points").split()])
    return min(xs), min(ys), max(xs), max(ys)


def texts(g: ET.Element) -> list[str]:
    return [t.text or "" for t in g.iter(SVG + "text")]


def decode_png(data: bytes) -> np.ndarray:
    """The RGB pixels of an 8-bit RGB PNG with filter 0 rows, checking every chunk's CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + n
    w, h, depth, colour, _, _, _ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, colour) == (8, 2) and b"IEND" in chunks
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(h, 1 + 3 * w)
    assert not raw[:, 0].any()                      # filter type 0 on every row
    return raw[:, 1:].reshape(h, w, 3)


def rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], np.uint8)


# ----------------------------------------------------------------------------- SVG

def test_cell_svg_has_every_node_with_its_role_and_storage():
    cell = gr.cells.LSTM(3, 4)
    root = svg_of(cell)
    nodes = groups(root, "node")
    assert sorted(g.get("data-path") for g in nodes) == sorted(n.name for n in cell.graph.nodes)
    params = groups(root, "param")
    assert sorted(g.get("data-key") for g in params) == sorted(cell.table.slots)
    for g in params:
        slot = cell.table.slots[g.get("data-key")]
        assert (int(g.get("data-offset")), int(g.get("data-size"))) == (slot.offset, slot.size)
        fill = g.findall(SVG + "polygon")[-1].get("fill")
        assert fill == storage_colour(int(g.get("data-storage")))
        assert f"{g.get('data-key')} @{slot.offset} +{slot.size}" in texts(g)
    assert len({g.findall(SVG + "polygon")[-1].get("fill") for g in params}) == 4
    assert {g.get("data-path") for g in groups(root, "input")} == {"x", "h", "c"}
    assert {g.get("data-path") for g in groups(root, "output")} == {"h_next", "c_next"}


def test_loops_are_clusters_holding_their_body_with_carried_edges_back():
    model = lstm_seq()
    scene = layout(build_scene(model))
    root = svg_of(model)
    (loop,) = groups(root, "loop")
    loop_path = loop.get("data-path")
    rect = box_rect(loop)
    body = [g for g in groups(root, "node") if g.get("data-path").startswith(loop_path + "/")]
    assert len(body) == len(model.graph.node(loop_path).attrs["body"].nodes) + 1  # + results
    for g in body:
        x0, y0, x1, y1 = box_rect(g)
        assert rect[0] <= x0 and x1 <= rect[2] and rect[1] <= y0 and y1 <= rect[3]
    carries = groups(root, "carry")
    assert len(carries) == 2                        # h and c
    for g in carries:
        path = g.find(SVG + "path")
        assert path.get("stroke-dasharray") and "carry" in " ".join(texts(root))
        src = scene.boxes[g.get("data-src")]
        dst = scene.boxes[g.get("data-dst")]
        assert src.y > dst.y                        # drawn from carry_out back up to carry_in


@pytest.mark.parametrize("build", [lstm_seq, toy_loop, nested_fused])
@pytest.mark.parametrize("unroll", [None, 2])
def test_layout_keeps_boxes_apart_and_inside_their_clusters(build, unroll):
    scene = layout(build_scene(build(), unroll=unroll))
    boxes = list(scene.boxes.values())
    for i, a in enumerate(boxes):
        assert 0 <= a.x and a.x + a.w <= scene.width and 0 <= a.y and a.y + a.h <= scene.height
        for b in boxes[i + 1:]:
            assert (a.x + a.w <= b.x or b.x + b.w <= a.x or a.y + a.h <= b.y
                    or b.y + b.h <= a.y), (a.id, b.id)

    def inside(cluster, outer=None):
        for box_id in cluster.boxes:
            b = scene.boxes[box_id]
            assert cluster.x <= b.x and b.x + b.w <= cluster.x + cluster.w
            assert cluster.y <= b.y and b.y + b.h <= cluster.y + cluster.h
        for sub in cluster.clusters:
            assert cluster.x <= sub.x and sub.x + sub.w <= cluster.x + cluster.w
            inside(sub)
    inside(scene.root)
    for e in scene.edges:
        assert len(e.points) >= 2
        src, dst = scene.boxes[e.src], scene.boxes[e.dst]
        start, end = e.points[0], e.points[-1]
        assert src.x <= start[0] <= src.x + src.w and dst.x <= end[0] <= dst.x + dst.w


def test_unrolled_view_draws_steps_sharing_one_parameter_node():
    model = toy_loop()
    root = svg_of(model, unroll=3)
    steps = groups(root, "step")
    assert sorted(g.get("data-step") for g in steps) == ["0", "1", "2"]
    (weight,) = [g for g in groups(root, "param") if g.get("data-key") == "linear.weight"]
    colour = storage_colour(int(weight.get("data-storage")))
    assert weight.findall(SVG + "polygon")[-1].get("fill") == colour
    edges = [g for g in groups(root, "edge") if g.get("data-src") == weight.get("id")]
    assert sorted(re.search(r"@(\d)/", g.get("data-dst")).group(1) for g in edges) == \
        ["0", "1", "2"]
    assert {g.find(SVG + "path").get("stroke") for g in edges} == \
        {storage_edge_colour(int(weight.get("data-storage")))}
    carries = groups(root, "carry")
    assert len(carries) == 2 and all(g.find(SVG + "path").get("stroke-dasharray") is None
                                     for g in carries)      # step to step, forward


def test_png_is_a_valid_image_with_the_storage_colours():
    cell = gr.cells.GRU(2, 3)
    data = picture(cell, "png", engine="builtin")
    pixels = decode_png(data)
    scene = layout(build_scene(cell))
    assert pixels.shape == (int(np.ceil(scene.height * 2)), int(np.ceil(scene.width * 2)), 3)
    for index in range(4):
        assert (pixels == rgb(storage_colour(index))).all(axis=2).sum() > 500
    assert (pixels == 255).all(axis=2).mean() > 0.5           # mostly white page


def test_render_writes_by_suffix(tmp_path):
    model = toy_loop()
    assert gr.viz.render(model, tmp_path / "a.svg", engine="builtin") == str(tmp_path / "a.svg")
    assert ET.parse(tmp_path / "a.svg").getroot().tag == SVG + "svg"
    gr.viz.render(model, str(tmp_path / "a.png"), unroll=3, engine="builtin")
    decode_png((tmp_path / "a.png").read_bytes())
    gr.viz.render(model, str(tmp_path / "a.dot"))
    assert (tmp_path / "a.dot").read_text().startswith('digraph "toy" {')
    with pytest.raises(ValueError, match=r"\.svg, \.png or \.dot"):
        gr.viz.render(model, str(tmp_path / "a.jpg"))
    with pytest.raises(ValueError, match="engine"):
        gr.viz.render(model, str(tmp_path / "b.svg"), engine="cairo")
    assert ET.fromstring(gr.viz.render_svg(model)).tag == SVG + "svg"


# ----------------------------------------------------------------------------- errors

def test_render_error_marks_the_node_in_red_with_its_line(tmp_path):
    model = lstm_seq()
    with pytest.raises(gr.ShapeError) as caught:
        prepare(model.graph, [TensorType((2, 5, 4))])
    assert failing_node(model, caught.value) == "x"
    path = gr.viz.render_error(model, caught.value, tmp_path / "bad.svg", engine="builtin")
    root = ET.parse(path).getroot()
    (marked,) = groups(root, "highlight")
    assert marked.get("data-path") == "x"
    assert marked.findall(SVG + "polygon")[-1].get("stroke") == "#d62728"
    line = next(t for t in texts(marked) if t.startswith("at "))
    assert re.fullmatch(r"at test_render\.py:\d+", line)
    caption = " ".join(t.text for t in root.iter(SVG + "text") if t.get("class") == "caption")
    assert "ShapeError" in caption and "expected f32[B,T,3]" in caption
    gr.viz.render_error(model, caught.value, tmp_path / "bad.png", engine="builtin")
    pixels = decode_png((tmp_path / "bad.png").read_bytes())
    assert (pixels == rgb("#d62728")).all(axis=2).sum() > 200


def test_an_error_inside_a_loop_body_is_found_by_its_path():
    model = lstm_seq()
    loop = next(n for n in model.graph.nodes if n.op == Op.LOOP)
    inner = loop.attrs["body"].node("h_next")
    error = gr.GraphError(f"h_next ({inner.where}): something is off")
    error.node = inner
    assert failing_node(model, error) == f"{loop.name}/h_next"
    text = picture(model, "dot", highlight=[f"{loop.name}/h_next"], caption=["boom"]).decode()
    assert re.search(r'"loop_0/h_next" \[label="h_next\\nmul \([a-z/]+\)\\nat test_render\.py:'
                     r'\d+", color="#d62728"', text)
    assert 'label="boom"' in text and text.count("#d62728\", penwidth=2.5") == 1


def test_debug_mode_writes_a_picture_of_a_rejected_gmodule(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    x = gr.Input("B", 3, name="x")
    h = nn.Linear(3, 4)(x)
    forgotten = gr.Input("B", 4, name="forgotten")          # not among the inputs
    y = nn.Sigmoid()(nn.CAddTable()([h, forgotten]))
    monkeypatch.setenv("GRAPHRNN_DEBUG", "0")
    with pytest.raises(gr.GraphError, match="not among"):
        gr.gModule([x], [y])
    assert not (tmp_path / "graphrnn_error.svg").exists()
    monkeypatch.setenv("GRAPHRNN_DEBUG", "1")
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))          # the built-in layout
    with pytest.raises(gr.GraphError, match="forgotten .*not among"):
        gr.gModule([x], [y])
    assert "graphrnn_error.svg" in capsys.readouterr().err
    root = ET.parse(tmp_path / "graphrnn_error.svg").getroot()
    (marked,) = [g for g in root.iter(SVG + "g") if "highlight" in g.get("class", "")]
    assert marked.get("data-path") == "forgotten" and forgotten.name == "forgotten"
    log = fake_dot(tmp_path, monkeypatch)                           # Graphviz
    with pytest.raises(gr.GraphError, match="forgotten .*not among"):
        gr.gModule([x], [y])
    assert "fake" in (tmp_path / "graphrnn_error.svg").read_text()
    assert re.search(r'"forgotten" \[label="forgotten\\ninput\\nat test_render\.py:'
                     r'\d+", color="#d62728"', log.read_text())


# ----------------------------------------------------------------------------- Graphviz

FAKE_DOT = textwrap.dedent("""\
    #!{python}
    import sys
    text = sys.stdin.read()
    open({log!r}, "w").write(" ".join(sys.argv[1:]) + "\\n" + text)
    if {fail!r}:
        sys.stderr.write("Error: syntax error in line 1\\n")
        sys.exit(1)
    fmt = sys.argv[1][2:]
    sys.stdout.write("<svg xmlns='http://www.w3.org/2000/svg'><title>fake</title></svg>"
                     if fmt == "svg" else "PNG")
""")


def fake_dot(tmp_path, monkeypatch, fail: bool = False):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "dot.log"
    exe = bin_dir / "dot"
    exe.write_text(FAKE_DOT.format(python=sys.executable, log=str(log), fail=fail))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))
    return log


def test_graphviz_is_used_when_on_path(tmp_path, monkeypatch):
    log = fake_dot(tmp_path, monkeypatch)
    model = toy_loop()
    render(model, tmp_path / "g.svg", unroll=2)
    assert "fake" in (tmp_path / "g.svg").read_text()
    args, text = log.read_text().split("\n", 1)
    assert args == "-Tsvg" and text == gr.viz.to_dot(model, unroll=2)
    render(model, tmp_path / "g.png", engine="dot")
    assert log.read_text().startswith("-Tpng\n") and (tmp_path / "g.png").read_bytes() == b"PNG"
    render(model, tmp_path / "own.svg", engine="builtin")
    assert groups(ET.parse(tmp_path / "own.svg").getroot(), "loop")


def test_graphviz_failures(tmp_path, monkeypatch):
    fake_dot(tmp_path, monkeypatch, fail=True)
    model = toy_loop()
    with pytest.raises(RenderError, match=r"status 1\): Error: syntax error"):
        render(model, tmp_path / "g.svg", engine="dot")
    with pytest.warns(RuntimeWarning, match="built-in layout"):
        render(model, tmp_path / "g.svg")
    assert groups(ET.parse(tmp_path / "g.svg").getroot(), "loop")
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(RenderError, match="apt-get install graphviz"):
        render(model, tmp_path / "g.svg", engine="dot")
    render(model, tmp_path / "g.png")                       # auto: falls back silently
    decode_png((tmp_path / "g.png").read_bytes())
    assert os.path.getsize(tmp_path / "g.png") > 1000
