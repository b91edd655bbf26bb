"""verify: the structural and type check that every pass's output must pass.

The driver runs it after each pass when GRAPHRNN_VERIFY is on (the default under pytest), in
the spirit of torch.fx `lint()` and tinygrad's `type_verify`: a pass that breaks an invariant
is caught at the pass, with an error naming the node, not later in the lowering.
"""
from __future__ import annotations

from graphrnn.ir import Graph, GraphError, Node, Op, ShapeError, node_error, type_str
from graphrnn.ops import SHAPE_RULES
from graphrnn.shape_rules import ARITY      # LOOP and FUSED are also checked against their bodies


def verify(graph: Graph) -> None:
    """Check `graph` and every loop body; raise GraphError (or ShapeError) naming the node.

    Checked: nodes are listed in topological order, each once; every input of a node is
    defined earlier in the same graph or is one of its inputs (so bodies are closed and there
    are no cycles); op arity; every node is typed and its type is what SHAPE_RULES give;
    loop operand counts match the body (inputs = consts + carry + xs, outputs >= carry).
    """
    defined: set[int] = set()
    declared = {id(x) for x in graph.inputs}
    if len(declared) != len(graph.inputs):
        raise GraphError("the same input node is listed twice among the graph's inputs")
    for x in graph.inputs:
        if x.op != Op.INPUT:
            raise node_error(x, f"a graph input must be an input node, got {x.op.value}")
    for n in graph.nodes:
        if id(n) in defined:
            raise node_error(n, "this node is listed twice in the graph")
        if n.op == Op.INPUT and id(n) not in declared:
            raise node_error(n, "input node is not among the graph's inputs")
        for x in n.inputs:
            if id(x) not in defined and id(x) not in declared:
                raise node_error(n, f"reads %{x.name or x.op.value}, which is not defined "
                                 "before it in this graph (out of order, a cycle, or an outer "
                                 "value used inside a loop body without being a const)")
        _check_arity(n)
        _check_type(n)
        defined.add(id(n))
    for y in graph.outputs:
        if id(y) not in defined and id(y) not in declared:
            raise node_error(y, "graph output is not a node of the graph")


def _check_arity(n: Node) -> None:
    lo, hi = ARITY.get(n.op, (0, None))
    k = len(n.inputs)
    if k < lo or (hi is not None and k > hi):
        want = f"{lo}" if lo == hi else f"{lo} to {hi if hi is not None else 'any'}"
        raise node_error(n, f"{n.op.value} takes {want} inputs, has {k}")
    if n.op == Op.LOOP:
        _check_loop(n)
    elif n.op == Op.FUSED:
        body = n.attrs.get("body")
        if not isinstance(body, Graph) or len(body.inputs) != k or len(body.outputs) != 1:
            raise node_error(n, "a fused node needs a body with one input per operand and "
                             "one output")
        _verify_body(n, body)


def _check_loop(n: Node) -> None:
    a = n.attrs
    body = a.get("body")
    if not isinstance(body, Graph):
        raise node_error(n, "a loop needs attrs['body'], a Graph")
    n_c, n_h, n_x = a["n_consts"], a["n_carry"], a["n_xs"]
    want = n_c + n_h + n_x + (1 if a.get("has_lengths") else 0)
    if len(n.inputs) != want:
        raise node_error(n, f"loop has {len(n.inputs)} inputs, expected {n_c} consts + {n_h} "
                         f"carried + {n_x} sequences{' + lengths' if a.get('has_lengths') else ''}")
    if len(body.inputs) != n_c + n_h + n_x:
        raise node_error(n, f"the body takes {len(body.inputs)} inputs, expected {n_c} consts "
                         f"+ {n_h} carried + {n_x} sequences")
    if len(body.outputs) < n_h:
        raise node_error(n, f"the body returns {len(body.outputs)} values, fewer than the "
                         f"{n_h} carried states")
    if n_x == 0 and a.get("length") is None:
        raise node_error(n, "a loop without sequences needs a length")
    _verify_body(n, body)


def _verify_body(n: Node, body: Graph) -> None:
    try:
        verify(body)
    except GraphError as e:
        raise type(e)(f"{e} [in the body of {n.name or n.op.value}]") from None


def _check_type(n: Node) -> None:
    if n.type is None:
        raise node_error(n, "node has no type: run infer_shapes before this pass")
    if n.op == Op.GET and not isinstance(n.inputs[0].type, tuple):
        raise node_error(n, f"get reads {type_str(n.inputs[0].type)}, not a loop's tuple")
    if any(x.type is None for x in n.inputs):
        return                      # the input itself is reported when it is reached
    out = SHAPE_RULES[n.op](n, [x.type for x in n.inputs])
    want = out[0] if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict) \
        else out
    if want != n.type:
        raise node_error(n, f"node is typed {type_str(n.type)}, but its inputs "
                         f"({', '.join(type_str(x.type) for x in n.inputs)}) give "
                         f"{type_str(want)}", ShapeError)


__all__ = ["verify", "ARITY"]
