"""Module, the base of every layer: called on nodes it emits nodes; and the helpers that
read what a caller passed (a node, a list of nodes, a model or its graph)."""
from __future__ import annotations

from typing import Any, Sequence

from . import ops
from .init import generator, initial_value
from .ir import Graph, GraphError, Node, Param
from .ops import creation_site
from .store import adopt, value


def as_nodes(x: Any) -> list[Node]:
    if isinstance(x, Node):
        return [x]
    if isinstance(x, (list, tuple)) and all(isinstance(v, Node) for v in x):
        return list(x)
    raise TypeError(f"expected a node or a list of nodes, got {type(x).__name__}")


def is_graph_value(x: Any) -> bool:
    return isinstance(x, Node) or (isinstance(x, (list, tuple)) and len(x) > 0
                                   and all(isinstance(v, Node) for v in x))


class Module:
    """A module: called on a node (or a list of nodes) it emits nodes and returns the output."""

    def __init__(self, name: str | None = None):
        self.name = name
        self._params: dict[str, Param] = {}

    # -- parameters
    def _param(self, name: str, shape: Sequence[int], init: str) -> Param:
        p = Param(name, tuple(shape), init, owner=self.prefix, token=self)
        adopt(p, initial_value(tuple(shape), init, generator()))
        self._params[name] = p
        return p

    @property
    def prefix(self) -> str:
        return self.name or type(self).__name__.lower()

    def params(self) -> dict[str, Param]:
        """This module's own parameters by local name."""
        return dict(self._params)

    def share(self, other: "Module", *names: str) -> "Module":
        """Tie the named parameters to `other`'s (Torch `share`); checked when a graph closes."""
        where = creation_site()
        for n in names or tuple(self._params):
            if n not in self._params or n not in other._params:
                raise GraphError(f"{self.prefix}: cannot share {n!r}: both modules need it")
            self._params[n].tie(other._params[n], where)
        return self

    def clone(self, *names: str) -> "Module":
        """A copy of this module (Torch `clone`): same kind, same current parameter values;
        the named parameters are tied to this one's, the others are independent copies."""
        twin = self._twin()
        for k, p in self._params.items():
            value(twin._params[k])[...] = value(p)
        return twin.share(self, *names) if names else twin

    def _twin(self) -> "Module":
        raise NotImplementedError(f"{type(self).__name__} cannot be cloned")

    # -- pickling: a module carries its parameters' values (a model's store wins over them)
    def __getstate__(self) -> dict[str, Any]:
        own = {k: value(p).copy() for k, p in self._params.items() if p.tied_to is None}
        return {**self.__dict__, "_values": own}

    def __setstate__(self, state: dict[str, Any]) -> None:
        values = state.pop("_values", {})
        self.__dict__.update(state)
        for k, v in values.items():
            adopt(self._params[k], v, replace=False)

    # -- calling
    def __call__(self, x: Any = None) -> Any:
        if x is None:
            raise TypeError(f"{type(self).__name__} needs an input node")
        with ops.scope(self.prefix):
            return self.build(x)

    def build(self, x: Any) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"nn.{type(self).__name__}"


def graph_of(model: Any) -> Graph:
    """The graph of a model (a gModule's `.graph`), or `model` itself when it is a graph."""
    return model.graph if hasattr(model, "graph") else model


__all__ = ["Module", "as_nodes", "is_graph_value", "graph_of"]


def one_node(module: Module, x: Any) -> Node:
    """`x`, the one node a module takes; a TypeError naming the module otherwise."""
    if not isinstance(x, Node):
        raise TypeError(f"{type(module).__name__} takes one node, got {type(x).__name__}")
    return x


def node_pair(module: Module, x: Any) -> tuple[Node, Node]:
    """The two nodes of a table a module takes; a TypeError naming the module otherwise."""
    xs = as_nodes(x)
    if len(xs) != 2:
        raise TypeError(f"{type(module).__name__} takes a list of two nodes, got {len(xs)}")
    return xs[0], xs[1]


class Map(Module):
    """A module applying one elementwise op: subclasses set `fn`."""
    fn = staticmethod(ops.tanh)

    def build(self, x: Any) -> Node:
        return type(self).fn(one_node(self, x))


class Fold(Module):
    """A module folding one binary elementwise op over a table of two or more nodes, left
    to right: subclasses set `op`."""
    op = staticmethod(ops.add)

    def build(self, x: Any) -> Node:
        xs = as_nodes(x)
        if len(xs) < 2:
            raise TypeError(f"{type(self).__name__} takes a list of at least two nodes")
        out = xs[0]
        for y in xs[1:]:
            out = type(self).op(out, y)
        return out

