"""Export PyTorch 2-layer bidirectional LSTM and GRU models to ONNX, for `graphrnn bench --onnx`.

    python examples/onnx_export.py --input-size 32 --hidden-size 64 -o /tmp/onnx
    graphrnn bench --onnx /tmp/onnx/lstm_32_64.onnx --batch 1 --steps 100

Batch-first models with dynamic batch and time, exported with the TorchScript exporter
(`dynamo=False`, which works offline). Needs torch and onnx (`pip install -e '.[bench]'`).
"""
from __future__ import annotations

import argparse
import os
import warnings

import torch


class Stacked(torch.nn.Module):
    """`nn.LSTM`/`nn.GRU` returning its output sequence only."""

    def __init__(self, kind: str, input_size: int, hidden_size: int):
        super().__init__()
        self.rnn = getattr(torch.nn, kind)(input_size, hidden_size, num_layers=2,
                                           bidirectional=True, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


def export(kind: str, input_size: int, hidden_size: int, path: str) -> None:
    torch.manual_seed(0)
    model = Stacked(kind, input_size, hidden_size).eval()
    axes = {0: "batch", 1: "seq"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, 5, input_size),), path, dynamo=False,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": axes, "y": axes})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input-size", type=int, default=32)
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("-o", "--out", default=".")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for kind in ("LSTM", "GRU"):
        path = os.path.join(a.out, f"{kind.lower()}_{a.input_size}_{a.hidden_size}.onnx")
        export(kind, a.input_size, a.hidden_size, path)
        print(path)


if __name__ == "__main__":
    main()
