"""The model zoo: recurrent nets of the last decade, each a function returning a gModule.

    from graphrnn import zoo
    model = zoo.sru(32, 64)                  # x[B, T, 32] -> hs[B, T, 64]
    print(zoo.MODELS)                        # name -> ZooModel (builder, paper)

Every model is written with the public language only (`gr.nn` modules, `gr.ops`, `gr.Loop`);
`zoo/reference.py` holds the same models as step functions for PyTorch and JAX, which the tests
check against and `graphrnn bench --zoo` times.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..gmodule import gModule
from . import reference
from .attention import bahdanau, bahdanau_step
from .layernorm_lstm import LayerNormLSTM, layernorm_lstm
from .recurrent_cells import indrnn, mlstm, peephole_lstm, rhn, sru


@dataclass(frozen=True)
class ZooModel:
    """A sequence model `x[B, T, input_size] -> hs[B, T, hidden_size]` of the zoo, with its
    step function in `reference` and the number of carried states the step takes."""
    name: str
    build: Callable[[int, int], gModule]
    step: reference.Step
    n_carry: int
    paper: str


MODELS = {m.name: m for m in [
    ZooModel("peephole_lstm", peephole_lstm, reference.peephole_lstm, 2,
             "Gers and Schmidhuber 2000"),
    ZooModel("layernorm_lstm", layernorm_lstm, reference.layernorm_lstm, 2,
             "Ba, Kiros and Hinton 2016"),
    ZooModel("indrnn", indrnn, reference.indrnn, 1, "Li et al. 2018"),
    ZooModel("sru", sru, reference.sru, 1, "Lei et al. 2018"),
    ZooModel("mlstm", mlstm, reference.mlstm, 2, "Krause et al. 2016"),
    ZooModel("rhn", rhn, reference.rhn, 1, "Zilly et al. 2017"),
]}

__all__ = ["MODELS", "ZooModel", "LayerNormLSTM", "bahdanau", "bahdanau_step", "indrnn",
           "layernorm_lstm", "mlstm", "peephole_lstm", "reference", "rhn", "sru"]
