"""The calls one `graphrnn bench --zoo` row times: compiled graphrnn and the installed peers."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import graphrnn as gr


def graphrnn_call(model: gr.gModule, mode: str, inputs: Sequence[Any], target: Any,
                  loss: Any) -> Callable[[], Any]:
    """The compiled forward ("forward") or training step under `loss` as a call without
    arguments."""
    if mode == "forward":
        fast = gr.compile(model)
        return lambda: fast(*inputs)
    step = gr.compile(model, loss=loss, train=True)
    return lambda: step(*inputs, target)


def with_peers(fns: dict[str, Callable[[], Any]],
               peers: Iterable[tuple[str, Callable[[], Callable[[], Any]]]]
               ) -> dict[str, Callable[[], Any]]:
    """`fns` and each peer's call that `make()` builds, leaving out peers not installed."""
    for name, make in peers:
        try:
            fns[name] = make()
        except ImportError:
            pass
    return fns


__all__ = ["graphrnn_call", "with_peers"]
