"""Models written with the public language, ready to import: `from graphrnn.zoo import ...`."""
from .layernorm_lstm import LayerNormLSTM, layernorm_lstm

__all__ = ["LayerNormLSTM", "layernorm_lstm"]
