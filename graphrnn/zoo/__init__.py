"""The model zoo: recurrent nets of the last decade, each a function returning a gModule.

    from graphrnn import zoo
    model = zoo.sru(32, 64)                  # x[B, T, 32] -> hs[B, T, 64]
    print(zoo.MODELS)                        # name -> ZooModel (builder, paper)
    words = zoo.hierarchical(96, 64)         # chars[B, T, L], lengths[B, T] -> hs[B, T, 64]
    decode = zoo.greedy_decoder(zoo.bahdanau(12), bos=1, eos=2, max_steps=20)

Every model is written with the public language only (`gr.nn` modules, `gr.ops`, `gr.Loop`);
`zoo/reference.py` holds the same models as step functions for PyTorch and JAX, which the tests
check against and `graphrnn bench --zoo` times.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..gmodule import gModule
from . import reference
from .attention import bahdanau, bahdanau_step, luong, luong_step
from .decoding import greedy_decoder
from .hierarchical import hierarchical
from .layernorm_lstm import LayerNormLSTM, layernorm_lstm
from .recurrent_cells import indrnn, mlstm, peephole_lstm, qrnn, rhn, sru


@dataclass(frozen=True)
class ZooModel:
    """A sequence model `x[B, T, input_size] -> hs[B, T, hidden_size]` of the zoo, with its
    step function in `reference` and the number of carried states the step takes."""
    name: str
    build: Callable[[int, int], gModule]
    step: reference.Step
    n_carry: int
    paper: str
    carry_widths: Callable[[int, int], tuple[int, ...]] | None = None

    def carry(self, input_size: int, hidden_size: int) -> tuple[int, ...]:
        """The widths of the reference step's carried states (zeros at the start)."""
        if self.carry_widths is not None:
            return self.carry_widths(input_size, hidden_size)
        return (hidden_size,) * self.n_carry


MODELS = {m.name: m for m in [
    ZooModel("peephole_lstm", peephole_lstm, reference.peephole_lstm, 2,
             "Gers and Schmidhuber 2000"),
    ZooModel("layernorm_lstm", layernorm_lstm, reference.layernorm_lstm, 2,
             "Ba, Kiros and Hinton 2016"),
    ZooModel("indrnn", indrnn, reference.indrnn, 1, "Li et al. 2018"),
    ZooModel("sru", sru, reference.sru, 1, "Lei et al. 2018"),
    ZooModel("mlstm", mlstm, reference.mlstm, 2, "Krause et al. 2016"),
    ZooModel("rhn", rhn, reference.rhn, 1, "Zilly et al. 2017"),
    ZooModel("qrnn", qrnn, reference.qrnn, 2, "Bradbury et al. 2017", lambda d, h: (h, d)),
]}

__all__ = ["MODELS", "ZooModel", "LayerNormLSTM", "bahdanau", "bahdanau_step", "greedy_decoder",
           "hierarchical", "indrnn", "layernorm_lstm", "luong", "luong_step", "mlstm",
           "peephole_lstm", "qrnn", "reference", "rhn", "sru"]
