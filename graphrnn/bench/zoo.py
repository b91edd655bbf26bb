"""`graphrnn bench --zoo`: every zoo model, forward and training step, compiled graphrnn against
the same model in PyTorch eager and in JAX (`lax.scan` under `jit`), one thread each.

The peers run the zoo's reference step functions (graphrnn/zoo/reference.py) with the graphrnn
model's own weights, and their results are checked against graphrnn's (max abs diff). The
training step is forward, `mean((hs - target)^2)` and the gradient of every weight (for the
attention encoder-decoders, bench/zoo_attention.py, the cross-entropy of the logits). The
built-in LSTM (`gr.cells.LSTM`) is timed at the same sizes as the baseline user-written cells
are held to. Measured in a child process bound to one CPU, interleaved, medians; a ratio is
the median over the rounds of the peer's sample over graphrnn's in the same round.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any, Callable

import numpy as np

import graphrnn as gr
from .. import nn, zoo
from ..zoo import reference
from .child import ONE_THREAD, in_child, pin_to_cpus, write_result
from .host import host
from ..isa import current_isa
from .timing import MIN_SAMPLE_S, interleaved, paired_ratio
from .zoo_attention import ATTENTION, attention_impls
from .zoo_calls import graphrnn_call
from .zoo_nested import hierarchical_impls

ZOO_CONFIGS = [(1, 100, 32, 64), (32, 50, 256, 256)]
QUICK_ZOO_CONFIGS = [(1, 20, 8, 16), (4, 10, 8, 16)]
BUILTIN = "lstm (built-in)"
HIERARCHICAL = "hierarchical"
PEERS = ("pytorch", "jax")


def builtin_lstm(d: int, h: int) -> gr.gModule:
    x = gr.Input("B", "T", d, name="x")
    return gr.gModule([x], [nn.Recurrent(gr.cells.LSTM(d, h))(x)], name="lstm")


def _torch(spec: zoo.ZooModel, weights: dict, mode: str, x: np.ndarray,
           y: np.ndarray) -> Callable:
    import torch
    torch.set_num_threads(1)
    p = {k: torch.tensor(v, requires_grad=(mode == "train")) for k, v in weights.items()}
    xt, yt, h = torch.tensor(x), torch.tensor(y), y.shape[-1]

    def forward() -> Any:
        carry = tuple(torch.zeros(x.shape[0], w) for w in spec.carry(x.shape[-1], h))
        return reference.scan_torch(spec.step, p, carry, xt)
    if mode == "forward":
        def call() -> np.ndarray:
            with torch.no_grad():
                return forward().numpy()
        return call
    params = list(p.values())

    def train() -> float:
        loss = ((forward() - yt) ** 2).mean()
        torch.autograd.grad(loss, params)
        return float(loss.detach())
    return train


def _jax(spec: zoo.ZooModel, weights: dict, mode: str, x: np.ndarray, y: np.ndarray) -> Callable:
    import jax
    import jax.numpy as jnp
    p = {k: jnp.asarray(v) for k, v in weights.items()}
    xj, yj, h = jnp.asarray(x), jnp.asarray(y), y.shape[-1]

    def forward(p: dict, x: Any) -> Any:
        carry = tuple(jnp.zeros((x.shape[0], w), x.dtype) for w in spec.carry(x.shape[-1], h))
        return reference.scan_jax(spec.step, p, carry, x)
    if mode == "forward":
        fwd = jax.jit(forward)
        return lambda: np.asarray(fwd(p, xj).block_until_ready())
    step = jax.jit(jax.value_and_grad(lambda p, x, y: jnp.mean((forward(p, x) - y) ** 2)))

    def train() -> float:
        loss, grads = step(p, xj, yj)
        jax.block_until_ready(grads)
        return float(loss)
    return train


def zoo_row(name: str, config: tuple, mode: str, *, repeats: int, budget_s: float,
            min_rounds: int) -> dict:
    """One (model, configuration, mode): median ms per implementation, ratios peer/graphrnn."""
    b, t, d, h = config
    spec = zoo.MODELS.get(name)
    model = builtin_lstm(d, h) if name == BUILTIN else spec.build(d, h) if spec else None
    if model is not None:
        model.reset_parameters(seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((b, t, d)).astype(np.float32)
    y = rng.standard_normal((b, t, h)).astype(np.float32)
    row: dict[str, Any] = {"model": name, "config": list(config), "mode": mode, "ms": {},
                           "missing": {}, "max_abs_diff": {}}
    if name in ATTENTION or name == HIERARCHICAL:
        fns = (attention_impls(name, config, mode) if name in ATTENTION
               else hierarchical_impls(config, mode))
        row["missing"] = {k: "not installed" for k in PEERS if k not in fns}
    else:
        fns = {"graphrnn": graphrnn_call(model, mode, (x,), y, gr.MSECriterion())}
    if spec is not None:
        weights = model.state_dict()
        for peer, make in (("pytorch", _torch), ("jax", _jax)):
            try:
                fns[peer] = make(spec, weights, mode, x, y)
            except ImportError as e:
                row["missing"][peer] = f"not installed ({e.name})"
    results = {k: fn() for k, fn in fns.items()}            # warm-up: compiles, and checked
    for k, v in results.items():
        if k != "graphrnn":
            row["max_abs_diff"][k] = float(np.max(np.abs(np.asarray(v) -
                                                         np.asarray(results["graphrnn"]))))
    samples = interleaved(fns, repeats, budget_s, min_rounds, MIN_SAMPLE_S)
    row["ms"] = {k: statistics.median(w for w, _ in s) * 1e3 for k, s in samples.items()}
    row["ratios"] = {k: paired_ratio(s, samples["graphrnn"]) for k, s in samples.items()
                     if k != "graphrnn"}            # round by round: the host's speed drifts
    return row


def run_zoo(configs: list[tuple], models: list[str], *, repeats: int, budget_s: float,
            min_rounds: int, log: Callable[[str], None] | None = None) -> dict:
    """The zoo section as a dict, measured in this process."""
    rows = []
    for config in configs:
        for name in models:
            for mode in ("forward", "train"):
                row = zoo_row(name, tuple(config), mode, repeats=repeats, budget_s=budget_s,
                              min_rounds=min_rounds)
                rows.append(row)
                if log:
                    log(f"{name} {tuple(config)} {mode}: " + ", ".join(
                        f"{k} {v:.3f} ms" for k, v in row["ms"].items()))
    isa = current_isa()
    return {"host": host(), "isa": {"name": isa.name, "describe": isa.describe()},
            "rows": rows}


def format_zoo(result: dict) -> str:
    """The zoo table: ms per implementation and each peer's time over graphrnn's."""
    lines = [f"zoo: one thread, {result['isa']['describe']}; median ms, (Nx) = peer time / "
             f"graphrnn time; '{BUILTIN}' is the built-in cell at the same sizes",
             f"{'model':<18} {'(B, T, D, H)':<20} {'mode':<8} {'graphrnn':>10} "
             f"{'pytorch':>18} {'jax':>18}"]
    for r in result["rows"]:
        cells = []
        for peer in PEERS:
            ms, ratio = r["ms"].get(peer), r.get("ratios", {}).get(peer)
            cells.append(f"{ms:9.3f} ({ratio:4.1f}x)" if ms is not None else
                         f"{'-' if r['model'] == BUILTIN else 'missing':>18}")
        lines.append(f"{r['model']:<18} {str(tuple(r['config'])):<20} {r['mode']:<8} "
                     f"{r['ms']['graphrnn']:10.3f} {cells[0]:>18} {cells[1]:>18}")
    return "\n".join(lines) + "\n"


def zoo_section(args: argparse.Namespace) -> dict | None:
    """Run the zoo bench in a child bound to one CPU; None when it failed."""
    argv = ["--repeats", str(args.repeats), "--budget", str(min(args.budget, 8.0))]
    if args.quick:
        argv.append("--quick")
    return in_child(argv, ONE_THREAD, module="graphrnn.bench.zoo")


def main(argv: list[str] | None = None) -> int:
    """The child: `python -m graphrnn.bench.zoo --child-out FILE`."""
    parser = argparse.ArgumentParser(prog="graphrnn bench --zoo")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--budget", type=float, default=8.0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child-out")
    args = parser.parse_args(argv)
    pin_to_cpus(1)
    configs = QUICK_ZOO_CONFIGS if args.quick else ZOO_CONFIGS
    result = run_zoo(configs, [BUILTIN, *zoo.MODELS, *ATTENTION, HIERARCHICAL], repeats=args.repeats,
                     budget_s=args.budget, min_rounds=1 if args.quick else 3,
                     log=lambda s: print(f"[zoo] {s}", file=sys.stderr, flush=True))
    write_result(result, args.child_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
