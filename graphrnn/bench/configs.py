"""What `graphrnn bench` measures: the layer configurations (B, T, D, H), the cells, the modes,
the implementations, and the flops of one row."""
from __future__ import annotations

import argparse

Config = tuple[int, int, int, int]
CONFIGS: list[Config] = [(1, 100, 32, 64), (1, 2000, 16, 128), (100, 100, 2, 100),
                         (32, 50, 256, 256), (64, 100, 512, 512)]
QUICK_CONFIGS: list[Config] = [(1, 100, 32, 64), (100, 100, 2, 100)]
CELLS = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
MODES = ("forward", "train")
IMPLS = ("graphrnn", "graphrnn-hand", "interpreter", "torch", "onnxruntime", "jax")
HAND = "graphrnn-hand"      # the LSTM written by hand from primitives: not a peer
PEER_NAMES = ("torch", "onnxruntime", "jax")
FORWARD_ONLY = {"onnxruntime": "forward only"}


def flops(cell: str, config: Config, mode: str) -> float:
    """The products' FLOPs: 2*B*T*(D+H)*G*H for a forward pass; a training step adds the
    weights' gradients (as many again) and the gradient through h (2*B*T*H*G*H). The
    input's gradient is not asked for (x is data), so it is not counted: "three times the
    forward" would credit a step with work it does not do."""
    b, t, d, h = config
    fwd = 2.0 * b * t * (d + h) * GATES[cell] * h
    return fwd if mode == "forward" else 2.0 * fwd + 2.0 * b * t * h * GATES[cell] * h


def parse_config(text: str) -> Config:
    """A command-line configuration, "B,T,D,H" or "BxTxDxH" (an argparse type)."""
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    if len(parts) != 4 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: expected B,T,D,H (four positive integers)")
    return tuple(int(p) for p in parts)        # type: ignore[return-value]


__all__ = ["Config", "CONFIGS", "QUICK_CONFIGS", "CELLS", "GATES", "MODES", "IMPLS", "HAND",
           "PEER_NAMES", "FORWARD_ONLY", "flops", "parse_config"]
