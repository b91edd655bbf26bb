"""Recurrent cells of the last decade, written as ordinary graphs and scanned by `gr.Loop`.

Each function returns a gModule `x[B, T, input_size] -> hs[B, T, hidden_size]` whose loop body
is the cell; the compiler hoists the input projections out of the loop, merges the recurrent
products and fuses the gate arithmetic, as it does for the built-in cells. Parameter names
follow the papers' symbols (`ih`, `hh`, `p_i`, ...), reachable by `model.state_dict()`.
"""
from __future__ import annotations

from .. import ops
from ..gmodule import gModule
from ..ir import Node
from ..loop import Loop
from ..nn import CMul, Input, Linear
from ..nn_shape import TemporalConvolution


def _gates(z: Node, hidden_size: int, n: int) -> list[Node]:
    return [ops.slice_(z, -1, k * hidden_size, hidden_size) for k in range(n)]


def _scan(body: gModule, x: Node, hidden_size: int, n_carry: int, name: str) -> gModule:
    init = [ops.fill((hidden_size,), batch_like=x) for _ in range(n_carry)]
    outs = Loop(body, n_carry=n_carry, name=name)(init=init, xs=[x])
    return gModule([x], [outs[n_carry]], name=name)


def peephole_lstm(input_size: int, hidden_size: int) -> gModule:
    """LSTM with peephole connections (Gers and Schmidhuber 2000), the ONNX LSTM's `P`:
    i, f see c_{t-1} and o sees c_t through diagonal weights `p_i`, `p_f`, `p_o`; gates in
    PyTorch's order i, f, g, o in `ih` / `hh`."""
    H = hidden_size
    h, c, x = Input("B", H, name="h"), Input("B", H, name="c"), Input("B", input_size, name="x")
    z = ops.add(Linear(input_size, 4 * H, name="ih")(x), Linear(H, 4 * H, name="hh")(h))
    zi, zf, zg, zo = _gates(z, H, 4)
    i = ops.sigmoid(ops.add(zi, CMul(H, name="p_i")(c)))
    f = ops.sigmoid(ops.add(zf, CMul(H, name="p_f")(c)))
    c2 = ops.add(ops.mul(f, c), ops.mul(i, ops.tanh(zg)))
    o = ops.sigmoid(ops.add(zo, CMul(H, name="p_o")(c2)))
    h2 = ops.mul(o, ops.tanh(c2))
    body = gModule([h, c, x], [h2, c2, h2], name="peephole_cell")
    return _scan(body, Input("B", "T", input_size, name="x"), H, 2, "peephole_lstm")


def indrnn(input_size: int, hidden_size: int) -> gModule:
    """IndRNN (Li et al. 2018): h' = relu(W x + u * h + b), each unit its own recurrent
    weight `u`."""
    H = hidden_size
    h, x = Input("B", H, name="h"), Input("B", input_size, name="x")
    h2 = ops.relu(ops.add(Linear(input_size, H, name="ih")(x), CMul(H, name="u")(h)))
    body = gModule([h, x], [h2, h2], name="indrnn_cell")
    return _scan(body, Input("B", "T", input_size, name="x"), H, 1, "indrnn")


def sru(input_size: int, hidden_size: int) -> gModule:
    """Simple Recurrent Unit (Lei et al. 2018): every product is of x alone, so all of them
    leave the loop; the recurrence is elementwise:
    f = sigmoid(W_f x + v_f * c + b_f), r = sigmoid(W_r x + v_r * c + b_r),
    c' = f * c + (1 - f) * (W x), h' = r * c' + (1 - r) * (S x), S the highway projection."""
    H = hidden_size
    c, x = Input("B", H, name="c"), Input("B", input_size, name="x")
    xt, zf, zr = _gates(Linear(input_size, 3 * H, name="w")(x), H, 3)
    f = ops.sigmoid(ops.add(zf, CMul(H, name="v_f")(c)))
    r = ops.sigmoid(ops.add(zr, CMul(H, name="v_r")(c)))
    c2 = ops.add(ops.mul(f, c), ops.mul(ops.sub(1.0, f), xt))
    skip = Linear(input_size, H, bias=False, name="highway")(x)
    h2 = ops.add(ops.mul(r, c2), ops.mul(ops.sub(1.0, r), skip))
    body = gModule([c, x], [c2, h2], name="sru_cell")
    return _scan(body, Input("B", "T", input_size, name="x"), H, 1, "sru")


def mlstm(input_size: int, hidden_size: int) -> gModule:
    """Multiplicative LSTM (Krause et al. 2016): m = (W_mx x) * (W_mh h) replaces h in the
    gates, which are in PyTorch's order i, f, g, o."""
    H = hidden_size
    h, c, x = Input("B", H, name="h"), Input("B", H, name="c"), Input("B", input_size, name="x")
    m = ops.mul(Linear(input_size, H, bias=False, name="mx")(x),
                Linear(H, H, bias=False, name="mh")(h))
    z = ops.add(Linear(input_size, 4 * H, name="ih")(x), Linear(H, 4 * H, name="mh4")(m))
    zi, zf, zg, zo = _gates(z, H, 4)
    c2 = ops.add(ops.mul(ops.sigmoid(zf), c), ops.mul(ops.sigmoid(zi), ops.tanh(zg)))
    h2 = ops.mul(ops.sigmoid(zo), ops.tanh(c2))
    body = gModule([h, c, x], [h2, c2, h2], name="mlstm_cell")
    return _scan(body, Input("B", "T", input_size, name="x"), H, 2, "mlstm")


def rhn(input_size: int, hidden_size: int, depth: int = 2) -> gModule:
    """Recurrent Highway Network (Zilly et al. 2017) with coupled carry gate, `depth`
    highway layers per step; the input enters the first: for l = 1..depth,
    s_l = h_l * t_l + s_{l-1} * (1 - t_l), h_l = tanh(.), t_l = sigmoid(.)."""
    H = hidden_size
    s0, x = Input("B", H, name="s"), Input("B", input_size, name="x")
    xz, s = Linear(input_size, 2 * H, name="ih")(x), s0
    for layer in range(depth):
        z = Linear(H, 2 * H, name=f"r{layer}")(s)
        if layer == 0:
            z = ops.add(z, xz)
        zh, zt = _gates(z, H, 2)
        t = ops.sigmoid(zt)
        s = ops.add(ops.mul(ops.tanh(zh), t), ops.mul(s, ops.sub(1.0, t)))
    body = gModule([s0, x], [s, s], name="rhn_cell")
    return _scan(body, Input("B", "T", input_size, name="x"), H, 1, "rhn")


def qrnn(input_size: int, hidden_size: int, window: int = 2) -> gModule:
    """Quasi-Recurrent Neural Network (Bradbury et al. 2017) with fo-pooling: a causal
    convolution over time of width `window` gives every step's candidate, forget and output
    gates at once (z, f, o = tanh, sigmoid, sigmoid of `conv`), then the only recurrence is
    elementwise: c' = f * c + (1 - f) * z, h' = o * c'."""
    H = hidden_size
    x = Input("B", "T", input_size, name="x")
    gates = TemporalConvolution(input_size, 3 * H, window, padding="causal", name="conv")(x)
    c, g = Input("B", H, name="c"), Input("B", 3 * H, name="g")
    zz, zf, zo = _gates(g, H, 3)
    f = ops.sigmoid(zf)
    c2 = ops.add(ops.mul(f, c), ops.mul(ops.sub(1.0, f), ops.tanh(zz)))
    body = gModule([c, g], [c2, ops.mul(ops.sigmoid(zo), c2)], name="fo_pooling")
    outs = Loop(body, n_carry=1, name="qrnn")(init=[ops.fill((H,), batch_like=x)], xs=[gates])
    return gModule([x], [outs[1]], name="qrnn")
