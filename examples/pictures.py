"""Regenerate the pictures in examples/: three models drawn as SVG and PNG.

    python examples/pictures.py                   # the built-in layout (the committed files)
    python examples/pictures.py --engine auto     # Graphviz's dot instead, when installed

- lstm_cell.{svg,png}: one step of gr.cells.LSTM(3, 4), PyTorch's gate layout;
- nngraph_toy_unrolled.{svg,png}: the Torch nngraph tutorial's toy RNN (hidden 26, length 3)
  as a gr.Loop over one tied Linear(27, 26) + Tanh step, Linear(26, 1) on the last state,
  drawn unrolled three times: the step's weight and bias appear once, with an edge to every
  step that reads them, in the colour of their storage;
- gru_two_layers.{svg,png}: nn.Recurrent(gr.cells.GRU(3, 8), num_layers=2), each layer a
  loop whose carried state runs back from h_next to h.
"""
from __future__ import annotations

import argparse
import os

import graphrnn as gr
from graphrnn import nn

HERE = os.path.dirname(os.path.abspath(__file__))


def lstm_cell() -> gr.gModule:
    return gr.cells.LSTM(3, 4)


def nngraph_toy() -> gr.gModule:
    h = gr.Input("B", 26, name="h")
    x_t = gr.Input("B", 1, name="x_t")
    h_next = nn.Tanh()(nn.Linear(27, 26)(nn.JoinTable(1)([h, x_t]))).annotate(name="h_next")
    step = gr.gModule([h, x_t], [h_next], name="step")
    x = gr.Input("B", 3, 1, name="x")
    h0 = gr.Input("B", 26, name="h0")
    h_last = gr.Loop(step, n_carry=1, length=3, name="rnn")(init=[h0], xs=[x])[0]
    return gr.gModule([x, h0], [nn.Linear(26, 1)(h_last)], name="nngraph_toy")


def gru_two_layers() -> gr.gModule:
    x = gr.Input("B", "T", 3, name="x")
    y = nn.Recurrent(gr.cells.GRU(3, 8), num_layers=2)(x)
    return gr.gModule([x], [y], name="gru_two_layers")


PICTURES = [("lstm_cell", lstm_cell, None),
            ("nngraph_toy_unrolled", nngraph_toy, 3),
            ("gru_two_layers", gru_two_layers, None)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("builtin", "auto", "dot"), default="builtin")
    parser.add_argument("--out", default=HERE, help="directory to write to (default: examples/)")
    args = parser.parse_args(argv)
    for name, build, unroll in PICTURES:
        model = build()
        for suffix in (".svg", ".png"):
            path = gr.viz.render(model, os.path.join(args.out, name + suffix), unroll=unroll,
                                engine=args.engine)
            print(f"wrote {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
