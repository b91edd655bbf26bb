"""The implementations `graphrnn bench` measures, all computing one function.

graphrnn's own (`graphrnn_impl`, `interpreter_impl`) and each peer's (`peer_impl`) are an
`Impl`: a timed call without arguments, and the conversion of its return value to what is
checked (the output, or the loss and the gradients by weight name).

Every peer is the same single recurrent layer over `x[B, T, D]` returning h for every step
(`[B, T, H]`), built from graphrnn's own weights (PyTorch names and gate order:
`weight_ih_l0 [G*H, D]`, `weight_hh_l0 [G*H, H]`, `bias_ih_l0`, `bias_hh_l0`). The training
step is forward, `mean((y - target)^2)` over every step's output, and backward filling the
gradient of every weight.

    peer = make_peer("torch", "lstm", weights, threads=1)
    y = peer.forward(x)                           # a numpy [B, T, H]
    loss, grads = peer.train(x, target)           # grads: weight name -> numpy array

`make_peer` raises `PeerMissing` (with the reason) when the peer's package is not installed.
Calls run on the inputs given to `prepare` (kept in the peer's own array type), so the timed
call measures the computation, not a conversion.
"""
from __future__ import annotations

import importlib.util
import io
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

import graphrnn as gr
from .. import nn, ops
from ..train import InterpretedStep

NAMES = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


class PeerMissing(Exception):
    """The peer cannot run here (its package is missing); the message says why."""


@dataclass
class Peer:
    """One implementation: `prepare(x, target)` then the argument-free timed calls."""
    name: str
    version: str
    prepare: Callable[[np.ndarray, np.ndarray | None], None]
    run_forward: Callable[[], Any] | None = None
    run_train: Callable[[], Any] | None = None
    to_numpy: Callable[[Any], np.ndarray] = np.asarray
    grads: Callable[[], dict[str, np.ndarray]] = dict

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.prepare(x, None)
        return self.to_numpy(self.run_forward())

    def train(self, x: np.ndarray, target: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        self.prepare(x, target)
        loss = self.run_train()
        return float(self.to_numpy(loss)), self.grads()


# ----------------------------------------------------------------------------- graphrnn

def build_layer(cell: str, d: int, h: int, seed: int = 0) -> Any:
    """One recurrent layer over x[B, T, D] as a gModule returning h for every step."""
    gr.manual_seed(seed)
    make = {"rnn": gr.cells.RNN, "lstm": gr.cells.LSTM, "gru": gr.cells.GRU}[cell]
    x = gr.Input("B", "T", d, name="x")
    return gr.gModule([x], [gr.nn.Recurrent(make(d, h))(x)], name=cell)


def named_grads(model: Any) -> dict[str, np.ndarray]:
    """Copies of the model's gradients keyed by PyTorch weight name (`weight_ih_l0`, ...)."""
    return {k.split(".", 1)[1]: v.copy()
            for k, v in model.table.views(model.parameters()[1]).items()}


Impl = tuple[Callable[[], Any], Callable[[Any], Any]]     # (timed call, its checked result)


def graphrnn_impl(model: Any, mode: str, x: np.ndarray, y: np.ndarray | None,
                  threads: int, pool: ThreadPoolExecutor | None = None) -> Impl:
    """graphrnn compiled with `gr.compile(..., threads=threads)`: with 2 threads a call whose
    parts have enough work runs its batch as two halves at once (`pool` is not used)."""
    if mode == "forward":
        compiled = gr.compile(model, threads=threads)
        return (lambda: compiled(x)), np.asarray
    step = gr.compile(model, loss=gr.MSECriterion(), train=True, threads=threads)
    return (lambda: step(x, target=y)), lambda loss: (loss, named_grads(model))


def interpreter_impl(model: Any, mode: str, x: np.ndarray, y: np.ndarray | None) -> Impl:
    """The numpy reference: `gr.interpret`, or `InterpretedStep` for training."""
    if mode == "forward":
        return (lambda: gr.interpret(model, x)), np.asarray
    step = InterpretedStep(model, gr.MSECriterion())
    return (lambda: step(x, target=y)), lambda loss: (loss, named_grads(model))


# PyTorch weight name -> the key of the same weight in `build_hand_lstm`'s model
HAND_KEYS = {"weight_ih_l0": "i2h.weight", "weight_hh_l0": "h2h.weight",
             "bias_ih_l0": "i2h.bias", "bias_hh_l0": "h2h.bias"}


def build_hand_lstm(d: int, h: int, seed: int = 0) -> Any:
    """The LSTM layer of `build_layer("lstm", d, h)` written by hand from primitives, as a
    gModule over x[B, T, D] returning h for every step:

        z = i2h(x_t) + h2h(h)                       # Linear(D, 4H), Linear(H, 4H)
        i, f, g, o = sigmoid(z[:, :H]), sigmoid(z[:, H:2H]), tanh(z[:, 2H:3H]), sigmoid(...)
        c' = f * c + i * g;  h' = o * tanh(c')      # a gr.Loop carrying (h, c) from zeros

    Its weights are the built-in's under other keys (HAND_KEYS), in PyTorch's gate order;
    `load_builtin_weights` copies them over."""
    gr.manual_seed(seed)
    hs, cs = gr.Input("B", h, name="h"), gr.Input("B", h, name="c")
    x = gr.Input("B", d, name="x")
    z = nn.CAddTable()([nn.Linear(d, 4 * h, name="i2h")(x), nn.Linear(h, 4 * h, name="h2h")(hs)])
    acts = (nn.Sigmoid(), nn.Sigmoid(), nn.Tanh(), nn.Sigmoid())
    i, f, g, o = (act(nn.Narrow(1, k * h, h)(z)) for k, act in enumerate(acts))
    c2 = nn.CAddTable()([nn.CMulTable()([f, cs]), nn.CMulTable()([i, g])])
    h2 = nn.CMulTable()([o, nn.Tanh()(c2)])
    cell = gr.gModule([hs, cs, x], [h2, c2, h2], name="hand_lstm_cell")
    xs = gr.Input("B", "T", d, name="x")
    init = [ops.fill((h,), 0.0, batch_like=xs) for _ in range(2)]
    parts = gr.Loop(cell, n_carry=2, name="hand_lstm")(init=init, xs=[xs])
    return gr.gModule([xs], [parts[2]], name="lstm_hand")


def load_builtin_weights(hand: Any, weights: dict[str, np.ndarray]) -> None:
    """Give `build_hand_lstm`'s model the weights named by PyTorch names (`weight_ih_l0`...)."""
    hand.load_state_dict({HAND_KEYS[k]: v for k, v in weights.items()})


def hand_impl(hand: Any, mode: str, x: np.ndarray, y: np.ndarray | None) -> Impl:
    """The hand-written LSTM compiled (one thread); training gradients come back under
    PyTorch names, to be checked against the built-in's."""
    if mode == "forward":
        compiled = gr.compile(hand)
        return (lambda: compiled(x)), np.asarray
    step = gr.compile(hand, loss=gr.MSECriterion(), train=True)
    keys = {v: k for k, v in HAND_KEYS.items()}

    def with_grads(loss: float) -> tuple[float, dict[str, np.ndarray]]:
        grads = hand.table.views(hand.parameters()[1])
        return loss, {keys[k]: v.copy() for k, v in grads.items()}
    return (lambda: step(x, target=y)), with_grads


def peer_impl(peer: Any, mode: str) -> Impl:
    """A peer's timed call (on the inputs it was prepared with) and its result as numpy."""
    if mode == "forward":
        return peer.run_forward, peer.to_numpy
    return peer.run_train, lambda loss: (float(peer.to_numpy(loss)), peer.grads())


# ----------------------------------------------------------------------------- PyTorch

def _torch_module(cell: str, weights: dict[str, np.ndarray]) -> Any:
    import torch
    d, h = weights["weight_ih_l0"].shape[1], weights["weight_hh_l0"].shape[1]
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    layer = cls(d, h, batch_first=True)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            p.copy_(torch.from_numpy(np.ascontiguousarray(weights[name])))
    return layer


def torch_peer(cell: str, weights: dict[str, np.ndarray], threads: int = 1) -> Peer:
    """PyTorch eager `nn.RNN/LSTM/GRU`, `torch.set_num_threads(threads)`."""
    try:
        import torch
    except ImportError as e:
        raise PeerMissing(f"torch is not installed ({e.msg})") from None
    torch.set_num_threads(threads)
    layer = _torch_module(cell, weights)
    io_: dict[str, Any] = {}

    def prepare(x: np.ndarray, target: np.ndarray | None) -> None:
        io_["x"] = torch.from_numpy(np.ascontiguousarray(x))
        io_["y"] = None if target is None else torch.from_numpy(np.ascontiguousarray(target))

    def run_forward() -> Any:
        with torch.no_grad():
            return layer(io_["x"])[0]

    def run_train() -> Any:
        layer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(layer(io_["x"])[0], io_["y"])
        loss.backward()
        return loss.detach()

    def grads() -> dict[str, np.ndarray]:
        return {n: p.grad.numpy().copy() for n, p in layer.named_parameters()}
    return Peer("torch", torch.__version__, prepare, run_forward, run_train,
                lambda v: v.numpy(), grads)


# ----------------------------------------------------------------------------- ONNX Runtime

def onnx_peer(cell: str, weights: dict[str, np.ndarray], threads: int = 1) -> Peer:
    """The PyTorch layer exported to ONNX (dynamic batch and time axes), run by ONNX Runtime
    with `threads` intra-op threads and one inter-op thread. Forward only."""
    try:
        import onnxruntime as ort
        import torch
    except ImportError as e:
        raise PeerMissing(f"{e.name} is not installed ({e.msg})") from None
    if importlib.util.find_spec("onnx") is None:
        raise PeerMissing("onnx is not installed (torch's ONNX exporter needs it)")
    layer = _torch_module(cell, weights)

    class Output(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer

        def forward(self, x: Any) -> Any:
            return self.layer(x)[0]

    d = weights["weight_ih_l0"].shape[1]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Output(), (torch.zeros(2, 3, d),), buf, input_names=["x"],
                          output_names=["y"], dynamo=False,
                          dynamic_axes={"x": {0: "B", 1: "T"}, "y": {0: "B", 1: "T"}})
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(buf.getvalue(), options,
                                   providers=["CPUExecutionProvider"])
    io_: dict[str, Any] = {}

    def prepare(x: np.ndarray, target: np.ndarray | None) -> None:
        io_["feed"] = {"x": np.ascontiguousarray(x, np.float32)}

    return Peer("onnxruntime", ort.__version__, prepare,
                lambda: session.run(None, io_["feed"])[0])


# ----------------------------------------------------------------------------- JAX

def _jax_step(cell: str) -> Callable:
    """step(w, carry, xi_t) -> (carry', h'): one cell step, the input projection given."""
    import jax
    import jax.numpy as jnp

    def proj(w: dict, hprev: Any) -> Any:
        return hprev @ w["weight_hh_l0"].T + w["bias_hh_l0"]

    def rnn(w: dict, h: Any, xi: Any) -> tuple[Any, Any]:
        h = jnp.tanh(xi + proj(w, h))
        return h, h

    def lstm(w: dict, carry: tuple, xi: Any) -> tuple[Any, Any]:
        h, c = carry
        i, f, g, o = jnp.split(xi + proj(w, h), 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    def gru(w: dict, h: Any, xi: Any) -> tuple[Any, Any]:
        xr, xz, xn = jnp.split(xi, 3, axis=-1)
        hr, hz, hn = jnp.split(proj(w, h), 3, axis=-1)
        r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
        h = (1.0 - z) * jnp.tanh(xn + r * hn) + z * h
        return h, h
    return {"rnn": rnn, "lstm": lstm, "gru": gru}[cell]


def jax_peer(cell: str, weights: dict[str, np.ndarray], threads: int = 1) -> Peer:
    """`lax.scan` of the cell under `jit` (input projection hoisted out of the scan, as a JAX
    user writes it); training is `jit(value_and_grad(loss))`. XLA's CPU threads are set by
    XLA_FLAGS before jax is imported (`graphrnn bench` does it in its child process)."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as e:
        raise PeerMissing(f"jax is not installed ({e.msg})") from None
    jax.config.update("jax_platforms", "cpu")
    step = _jax_step(cell)
    h = weights["weight_hh_l0"].shape[1]

    def layer(w: dict, x: Any) -> Any:
        xi = jnp.swapaxes(x @ w["weight_ih_l0"].T + w["bias_ih_l0"], 0, 1)     # [T, B, G*H]
        zeros = jnp.zeros((x.shape[0], h), x.dtype)
        carry = (zeros, zeros) if cell == "lstm" else zeros
        _, ys = jax.lax.scan(lambda c, xt: step(w, c, xt), carry, xi)
        return jnp.swapaxes(ys, 0, 1)

    def loss(w: dict, x: Any, y: Any) -> Any:
        return jnp.mean((layer(w, x) - y) ** 2)

    forward = jax.jit(layer)
    train = jax.jit(jax.value_and_grad(loss))
    w = {n: jax.device_put(np.ascontiguousarray(weights[n])) for n in NAMES}
    io_: dict[str, Any] = {}

    def prepare(x: np.ndarray, target: np.ndarray | None) -> None:
        io_["x"] = jax.device_put(np.ascontiguousarray(x, np.float32))
        io_["y"] = None if target is None else jax.device_put(np.ascontiguousarray(target))

    def run_train() -> Any:
        value, io_["grads"] = jax.block_until_ready(train(w, io_["x"], io_["y"]))
        return value

    def grads() -> dict[str, np.ndarray]:
        return {n: np.asarray(g) for n, g in io_["grads"].items()}
    return Peer("jax", jax.__version__, prepare,
                lambda: jax.block_until_ready(forward(w, io_["x"])), run_train,
                np.asarray, grads)


PEERS: dict[str, Callable[..., Peer]] = {"torch": torch_peer, "onnxruntime": onnx_peer,
                                         "jax": jax_peer}


def make_peer(name: str, cell: str, weights: dict[str, np.ndarray], threads: int = 1) -> Peer:
    """Peer `name` running the layer with these weights (PeerMissing if it cannot run)."""
    return PEERS[name](cell, weights, threads)


def versions() -> dict[str, str | None]:
    """Installed versions of the peers' packages (None when missing)."""
    from importlib import metadata
    out: dict[str, str | None] = {}
    for pkg in ("torch", "onnxruntime", "onnx", "jax", "jaxlib"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


__all__ = ["Peer", "PeerMissing", "PEERS", "NAMES", "Impl", "make_peer", "versions",
           "build_layer", "named_grads", "graphrnn_impl", "interpreter_impl", "peer_impl",
           "HAND_KEYS", "build_hand_lstm", "load_builtin_weights", "hand_impl",
           "torch_peer", "onnx_peer", "jax_peer"]
