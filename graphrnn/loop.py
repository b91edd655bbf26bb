"""The loop node: scan over the time axis, the one way a graph becomes recurrent.

    scan :: (consts, carry, x_t) -> (carry, y_t)
         -> consts -> carry_0 -> xs[B, T, ...] -> (carry_T, ys[B, T, ...])

The reference semantics, exactly as the interpreter runs them:

    carry = carry_0
    for t in (reversed(range(T)) if reverse else range(T)):
        carry_new, y = body(*consts, *carry, *[x[:, t] for x in xs])
        if lengths is given:              # row b is finished once t >= lengths[b]
            carry_new = where(t < lengths, carry_new, carry)   # keeps its state
            y = where(t < lengths, y, 0)                       # emits zeros
        carry = carry_new
        ys[:, t] = y
    return (*carry, *ys)

- `consts` are loop-invariant inputs (the same value at every step).
- `carry` is the state passed from step to step; the body must return it with the same type.
- `xs` are sequences `[B, T, ...]` sliced along axis 1; T is taken from the data, so one graph
  runs any length, T = 0 included (the carry comes back unchanged, ys are empty). A loop
  without sequences needs `length=`.
- `lengths` is i64[B] with values in [0, T]; a row of length 0 keeps its initial carry.
  The body still runs on a finished row's padding, and gradients pass through the `where`:
  a body that is not finite on the padding values (a division by a zero-padded sequence, a
  log of it) gives NaN gradients, as `jnp.where` does in JAX. Pad with values the body is
  finite on (a copy of the row's last valid step, for most bodies).
- `ys` are the per-step outputs stacked along axis 1: `[B, T, ...]`.
- `reverse=True` runs t from T-1 down to 0 (ys stay in time order). With `lengths`, each row
  then starts at its own last valid step, as PyTorch packed sequences do.
- Parameters used in the body are shared by every step (tied by construction).
- `unroll=k` asks the compiler to unroll; by default the loop stays a loop in native code.

**While loops** (`stop=True`): the body returns `(*carry, *y_t, stop)`, `stop` one value per
row (f32[B] or f32[B, 1]; `gr.is_token(ids, eos, num_classes)` makes it from token ids), and
row b stops after the first step where stop[b] > 0. The loop runs at most `max_steps` steps
(or the length of its sequences) and returns `(*carry_final, *ys, lengths)`:

    live, lengths = ones(B), zeros(B)
    for t in range(max_steps):
        carry_new, y, stop = body(*consts, *carry, *[x[:, t] for x in xs])
        carry = where(live, carry_new, carry)     # a stopped row keeps its state
        ys[:, t] = where(live, y, pad)            # and emits `pad` (int64 ys: int(pad))
        lengths += live                           # the step where it stops counts
        live = live and not stop > 0
    return (*carry, *ys, lengths)                 # lengths i64[B], as `lengths=` takes

Compiled, the native loop leaves as soon as every row has stopped (and writes `pad` into the
steps left), so a greedy or sampling decoder (embedding -> cell -> Linear -> `ops.sample`,
fed back) is one native call however early it ends. Gradients: a while loop differentiates
like the masked loop above, so BPTT runs over the steps each row actually took; the stop
decision itself (a comparison) has no gradient, nor have sampled ids. A while loop runs
forward (no `reverse`) and takes no `lengths=` (it finds them).

**Nested loops**: a body may hold loops of its own (a word-level RNN reading each word with a
character RNN, a decoder step attending over every encoder step). The inner loop is a native
loop inside the outer one; gradients run BPTT through both levels; its carry must keep its
type like any other (a carry that changes shape is an error at the line that made it).
Sizes are linear in the batch and one time dim, so one program serves every batch size and
length of that time dim; a second sequence axis (the characters of each word, [B, T, L])
is fixed per program: pad it to a maximum and pass the per-row counts as the inner loop's
`lengths=` (from a sequence i64[B, T] of the outer loop).

**Loop-invariant memory**: a const (neither carry nor sequence) is the same value at every
step, e.g. encoder outputs [B, T, H] an attention reads at each decoder step; its gradient
is the sum over every step of what each sends it.
"""
from __future__ import annotations

from typing import Any, Sequence

from . import ops
from .ir import Dim, Graph, GraphError, Node, Table
from .module import Module, as_nodes, graph_of
from .while_loop import check_while_options, while_loop


class Loop(Module):
    """Scan `body` (a gModule or Graph taking `(*consts, *carry, *x_t)` and returning
    `(*carry, *y_t)`) over sequences. Calling it returns a table `(*carry_final, *ys)`.

    With `stop=True` a while loop: the body also returns a per-row stop value last, the loop
    runs at most `max_steps` steps (without sequences) and returns `(*carry_final, *ys,
    lengths)`, stopped rows emitting `pad` (see the module docstring)."""

    def __init__(self, body: Any, n_carry: int, n_consts: int = 0, *, reverse: bool = False,
                 unroll: int | None = None, length: Dim | None = None,
                 stop: bool = False, max_steps: Dim | None = None, pad: float = 0.0,
                 name: str | None = None):
        super().__init__(name)
        check_while_options(stop, reverse, max_steps)
        self.stop, self.max_steps, self.pad = stop, max_steps, float(pad)
        self.body: Graph = graph_of(body)
        if not isinstance(self.body, Graph):
            raise TypeError(f"Loop body must be a gModule or a Graph, got {type(body).__name__}")
        if n_carry < 0 or n_consts < 0 or n_carry + n_consts > len(self.body.inputs):
            raise GraphError(f"Loop: the body takes {len(self.body.inputs)} inputs, fewer than "
                             f"{n_consts} consts + {n_carry} carried states")
        if len(self.body.outputs) < n_carry:
            raise GraphError(f"Loop: the body returns {len(self.body.outputs)} values, fewer "
                             f"than the {n_carry} carried states")
        self.n_carry, self.n_consts = n_carry, n_consts
        self.reverse, self.unroll, self.length = reverse, unroll, length
        self.n_xs = len(self.body.inputs) - n_carry - n_consts
        self.n_ys = len(self.body.outputs) - n_carry - (1 if stop else 0)

    @property
    def prefix(self) -> str:
        return self.name or "loop"

    def __call__(self, inputs: Any = None, *, consts: Sequence[Node] = (),
                 init: Sequence[Node] = (), xs: Sequence[Node] = (),
                 lengths: Node | None = None) -> Table:
        """Either `loop([*consts, *init, *xs])` or `loop(consts=..., init=..., xs=...)`."""
        if inputs is not None:
            if consts or init or xs:
                raise TypeError("Loop: give either a list of inputs or consts=/init=/xs=")
            nodes = as_nodes(inputs)
            consts = nodes[:self.n_consts]
            init = nodes[self.n_consts:self.n_consts + self.n_carry]
            xs = nodes[self.n_consts + self.n_carry:]
        consts, init, xs = list(consts), list(init), list(xs)
        if len(consts) != self.n_consts or len(init) != self.n_carry or len(xs) != self.n_xs:
            raise GraphError(f"Loop: the body takes {self.n_consts} consts, {self.n_carry} "
                             f"carried states and {self.n_xs} sequences; got {len(consts)}, "
                             f"{len(init)} and {len(xs)}")
        if self.stop:
            if lengths is not None:
                raise GraphError("Loop(stop=True): a while loop finds its rows' lengths "
                                 "itself; it takes no lengths=")
            with ops.scope(self.prefix):
                return Table(while_loop(self.body, consts, init, xs, max_steps=self.max_steps,
                                        pad=self.pad, name=self.name or ""))
        with ops.scope(self.prefix):
            node = ops.loop(self.body, consts, init, xs, lengths, reverse=self.reverse,
                            unroll=self.unroll, length=self.length, name=self.name or "")
            return Table(ops.get(node, i) for i in range(self.n_carry + self.n_ys))
