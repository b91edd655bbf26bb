"""`graphrnn bench` on tiny configurations, in-process and with one repeat (no timing asserted):
the JSON has every column, peers compute graphrnn's function, missing peers are reported,
the batch split of the 2-thread rows is exact, the FMA peak is measured."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
import types

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.bench.run import (IMPLS, MODES, PEER_NAMES, Row, bench_row, flops, interleaved, main,
                                run)
from graphrnn.bench.report import format_table
from graphrnn.cli import main as cli_main
from graphrnn.bench.child import peer_isa_env, peers_isa_text, peers_off_isa
from graphrnn.bench.peak import UNROLL, VARIANTS, fma_count, fma_ir, measure_peak
from graphrnn.bench import timing
from graphrnn.bench.timing import calls_per_sample
from graphrnn.bench.peers import build_layer, graphrnn_impl, named_grads
from graphrnn.isa import host_isa, using_isa
from graphrnn.train import InterpretedStep

CONFIG = (3, 4, 2, 5)
ROW_KEYS = {"cell", "config", "mode", "threads", "gflop", "ms", "min_ms", "cpu_per_wall",
            "rounds", "calls_per_sample", "max_abs_diff", "missing", "not_applicable", "ratios",
            "fastest_peer", "ratio_fastest_peer", "graphrnn_gflops", "peak_fraction", "tile",
            "products", "fastest_peer_any", "ratio_fastest_peer_any", "peers_over_peak",
            "peak_gflops", "peak_fraction_run", "after_return_ms", "peak_fraction_best",
            "paired_peak", "paired_ratios", "ratios_of_medians"}
PEER_PACKAGES = {"torch": ("torch",), "onnxruntime": ("onnxruntime", "onnx", "torch"),
                 "jax": ("jax",)}


def installed(peer: str) -> bool:
    return all(importlib.util.find_spec(p) is not None for p in PEER_PACKAGES[peer])


@pytest.fixture(scope="module")
def result():
    return run([CONFIG], ("lstm", "gru"), repeats=1, peak=False, compile=False)


def test_every_row_has_every_column(result):
    assert {"host", "threads", "repeats", "peak", "rows", "compile", "isa"} <= set(result)
    assert result["isa"]["name"] in ("avx512", "avx2", "avx", "sse")
    assert {"cpu", "llvm_cpu", "logical_cpus", "avx512f", "loadavg",
            "versions"} <= set(result["host"])
    assert {"numpy", "llvmlite", "llvm", "torch", "onnxruntime", "jax"} <= set(
        result["host"]["versions"])
    rows = result["rows"]
    assert [(r["cell"], r["mode"]) for r in rows] == [(c, m) for c in ("lstm", "gru")
                                                      for m in MODES]
    for r in rows:
        assert set(r) == ROW_KEYS
        assert r["config"] == list(CONFIG) and r["threads"] == 1
        assert set(r["after_return_ms"]) == set(r["ms"]) and min(r["after_return_ms"].values()) >= 0
        assert r["tile"] != "-" and any(p["where"] == "step" for p in r["products"])
        assert r["gflop"] == pytest.approx(flops(r["cell"], CONFIG, r["mode"]) / 1e9)
        for impl in IMPLS:          # each implementation is timed, missing, or not applicable
            where = [impl in r["ms"], impl in r["missing"], impl in r["not_applicable"]]
            assert sum(where) == 1, (impl, r)
        assert set(r["ms"]) == set(r["min_ms"]) == set(r["cpu_per_wall"]) == set(r["rounds"]) \
            == set(r["calls_per_sample"])
        assert all(r["min_ms"][k] <= r["ms"][k] and r["rounds"][k] == 1 for k in r["ms"])
        assert set(r["ratios"]) == set(r["ms"]) - {"graphrnn"}
        assert r["ratios"]["interpreter"] == pytest.approx(r["ms"]["interpreter"]
                                                           / r["ms"]["graphrnn"])
        timed_peers = [p for p in PEER_NAMES if p in r["ms"]]
        if timed_peers:
            fastest = min(timed_peers, key=r["ms"].get)
            assert r["fastest_peer"] == fastest
            assert r["ratio_fastest_peer"] == r["ratios"][fastest]
        assert r["graphrnn_gflops"] == pytest.approx(r["gflop"] / (r["ms"]["graphrnn"] / 1e3))
        assert r["peak_fraction"] is None       # no peak measured here
    assert "onnxruntime" in rows[1]["not_applicable"]        # training: forward only
    json.loads(json.dumps(result))


def test_peers_compute_the_same_function_as_graphrnn(result):
    for r in result["rows"]:
        assert r["max_abs_diff"]["interpreter"] < 1e-5
        for peer in PEER_NAMES:
            if r["mode"] == "train" and peer == "onnxruntime":
                continue
            if installed(peer):
                assert r["max_abs_diff"][peer] < 1e-5, (peer, r)
            else:
                assert peer in r["missing"] and peer not in r["ms"]


def test_missing_peers_are_listed_as_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)     # `import onnxruntime` fails
    monkeypatch.setitem(sys.modules, "jax", None)
    monkeypatch.setitem(sys.modules, "torch", None)
    row = bench_row("gru", CONFIG, "forward", repeats=1)
    assert set(row.missing) >= {"onnxruntime", "jax", "torch"}
    assert "not installed" in row.missing["jax"]
    assert "jax" not in row.ms and "onnxruntime" not in row.ms and "graphrnn" in row.ms
    table = format_table({"host": _host(), "peak": None, "compile": None,
                          "rows": [row.to_json()]})
    assert "missing peer jax: jax is not installed" in table
    line = next(ln for ln in table.splitlines() if ln.startswith("gru "))
    assert line.count("missing") == 3


def _host() -> dict:
    return {"cpu": "test", "llvm_cpu": "test", "avx512f": False, "logical_cpus": 1,
            "loadavg": [0.0], "loadavg_end": [0.0], "versions": {"numpy": np.__version__}}


@pytest.mark.parametrize("b", [4, 5])
def test_the_two_thread_batch_split_matches_the_interpreter(b):
    """Two concurrent calls on halves give the whole batch's output, loss and gradients."""
    _, t, d, h = CONFIG
    model = build_layer("lstm", d, h)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((b, t, d)).astype(np.float32)
    y = rng.standard_normal((b, t, h)).astype(np.float32)
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(1) as pool:
        call, convert = graphrnn_impl(model, "forward", x, None, 2, pool)
        np.testing.assert_allclose(convert(call()), gr.interpret(model, x), atol=1e-5)
        call, convert = graphrnn_impl(model, "train", x, y, 2, pool)
        loss, grads = convert(call())
    ref_loss = InterpretedStep(model, gr.MSECriterion())(x, target=y)
    ref = named_grads(model)
    assert loss == pytest.approx(ref_loss, abs=1e-5)
    for k in ref:
        np.testing.assert_allclose(grads[k], ref[k], atol=1e-5)


def test_two_thread_rows_leave_out_what_cannot_split():
    row = bench_row("rnn", (1, 3, 2, 4), "forward", threads=2, repeats=1,
                    impls=("graphrnn", "interpreter"))
    assert row.not_applicable == {"graphrnn": "B=1: no batch to split",
                                  "interpreter": "the numpy reference runs on one thread"}
    assert row.ms == {} and row.to_json()["ratio_fastest_peer"] is None


def test_interleaved_rounds_shuffle_and_respect_the_budget():
    calls: list[str] = []
    fns = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    samples = interleaved(fns, repeats=12, budget_s=1e9)
    assert {k: len(v) for k, v in samples.items()} == {"a": 12, "b": 12, "c": 12}
    rounds = [calls[i:i + 3] for i in range(0, 36, 3)]
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds)      # each fn once per round
    # no fn always runs right after the same other one
    before = {k: {calls[i - 1] for i in range(1, 36) if calls[i] == k} for k in "abc"}
    assert all(v - {k} == set("abc") - {k} for k, v in before.items()), before
    again: list[str] = []
    interleaved({k: (lambda k=k: again.append(k)) for k in "abc"}, repeats=12, budget_s=1e9)
    assert again == calls                                          # seeded: runs repeat
    calls.clear()
    samples = interleaved(fns, repeats=10, budget_s=0.0)       # budget spent: 3 rounds each
    assert {k: len(v) for k, v in samples.items()} == {"a": 3, "b": 3, "c": 3}


def test_short_rows_take_more_rounds_while_they_are_short():
    def rounds(**kw) -> set[int]:
        return {len(v) for v in interleaved({k: (lambda: None) for k in "ab"}, 5, 1e9, **kw)
                .values()}
    assert rounds(more_rounds_s=1e9) == {20} and rounds(more_rounds_s=1e-12) == rounds() == {5}


def test_flops_and_row_ratios():
    assert flops("lstm", (2, 3, 4, 5), "forward") == 2 * 2 * 3 * (4 + 5) * 4 * 5
    # forward, the weights' gradients, the gradient through h; no input gradient
    assert flops("gru", (2, 3, 4, 5), "train") == (2 * 2 * 2 * 3 * (4 + 5) * 3 * 5
                                                   + 2 * 2 * 3 * 5 * 3 * 5)
    row = Row("rnn", [1, 2, 3, 4], "forward", 2, gflop=0.5,
              ms={"graphrnn": 10.0, "torch": 30.0, "jax": 20.0, "interpreter": 5.0})
    out = row.to_json(peak_gflops=100.0)
    assert out["fastest_peer"] == "jax" and out["ratio_fastest_peer"] == 2.0
    assert out["graphrnn_gflops"] == pytest.approx(50.0)
    assert out["peak_fraction"] == pytest.approx(0.25)       # of two cores' peak
    assert out["peak_fraction_run"] == out["peak_fraction"]  # no peak timed in the rounds
    row.peak_gflops = 80.0                                   # the loop timed with the row
    out = row.to_json(peak_gflops=100.0)
    assert out["peak_fraction"] == out["peak_fraction_best"] == pytest.approx(50.0 / 160.0)
    assert out["peak_fraction_run"] == pytest.approx(0.25)
    row.paired_peak = 0.7                                    # the rounds' median ratio
    out = row.to_json(peak_gflops=100.0)
    assert out["peak_fraction"] == pytest.approx(0.35)       # of two cores
    assert out["peak_fraction_best"] == pytest.approx(50.0 / 160.0)


def test_a_row_times_the_peak_loop_in_its_rounds_and_keeps_it_out_of_the_table():
    row = bench_row("rnn", CONFIG, "forward", repeats=3, impls=("graphrnn",), peak=(8, 4))
    assert row.peak_gflops > 0 and set(row.ms) == {"graphrnn"} == set(row.calls_per_sample)
    out = row.to_json(peak_gflops=row.peak_gflops * 2)
    assert out["peak_fraction_best"] == pytest.approx(2 * out["peak_fraction_run"])
    assert row.paired_peak is not None and 0 < out["peak_fraction"] < 1   # paired rounds
    table = format_table({"host": _host(), "peak": {"gflops": 1.0, "best": "x"},
                          "rows": [out], "compile": None})
    assert "%run" in table and "fma peak" not in table


def test_peers_that_run_wider_vectors_are_not_the_fastest_peer():
    """AVX2 kernels on an AVX-512 host: ONNX Runtime and JAX cannot be held to AVX2, so the
    fastest peer is taken among the others, and a peer above the AVX2 peak is named."""
    off = peers_off_isa("avx2", host_avx512=True)
    assert set(off) == {"onnxruntime", "jax"} and "torch" not in off
    assert peers_off_isa("avx2", host_avx512=False) == {} == peers_off_isa("avx512", True)
    assert "fastest peer is taken among the AVX2 ones" in peers_isa_text("avx2", off)
    row = Row("lstm", [1, 2, 3, 4], "forward", 1, gflop=1.0,
              ms={"graphrnn": 10.0, "torch": 12.0, "onnxruntime": 5.0, "jax": 9.0})
    out = row.to_json(peak_gflops=150.0, off_isa=off)
    assert out["fastest_peer"] == "torch" and out["ratio_fastest_peer"] == 1.2
    assert out["fastest_peer_any"] == "onnxruntime" and out["ratio_fastest_peer_any"] == 0.5
    assert out["peers_over_peak"] == ["onnxruntime"]            # 200 GFLOP/s > 150
    plain = row.to_json(peak_gflops=150.0)
    assert plain["fastest_peer"] == plain["fastest_peer_any"] == "onnxruntime"
    table = format_table({"host": _host(), "peak": None, "rows": [out], "compile": None,
                          "peers_off_isa": off})
    assert "* onnxruntime ran wider vectors" in table
    line = next(ln for ln in table.splitlines() if ln.startswith("lstm "))
    assert "(0.50x)*" in line and line.rstrip().endswith("torch 1.20x")


def test_the_peak_measurement_is_positive():
    assert "llvm.fma.v16f32" in fma_ir(16, 2)
    peak = measure_peak(seconds=0.002, repeats=1, variants=((8, 4), (16, 4)))
    assert peak["gflops"] > 0
    assert [(v["width"], v["chains"]) for v in peak["variants"]] == [(8, 4), (16, 4)]
    assert peak["gflops"] == max(v["gflops"] for v in peak["variants"])
    assert peak["variant"] in ([8, 4], [16, 4])


def test_the_peak_loop_runs_every_fma_it_counts():
    # a chain the compiler could predict (one starting at the fixed point of its update)
    # would be folded away while its FLOPs are still counted: every variant keeps them all
    for width, chains in VARIANTS + ((8, 4), (16, 2)):
        assert fma_count(width, chains) == chains * UNROLL, (width, chains)


def test_bench_help_and_the_peak_command(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    with pytest.raises(SystemExit) as done:
        cli_main(["bench", "--help"])
    assert done.value.code == 0
    help_text = capsys.readouterr().out
    assert help_text.count("usage: graphrnn bench") == 2
    for option in ("--json", "--quick", "--peak", "--configs", "--cells", "--repeats"):
        assert option in help_text
    peak = subprocess.run([sys.executable, "-m", "graphrnn", "bench", "--peak", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert peak.returncode == 0, peak.stderr
    assert json.loads(peak.stdout)["peak"]["gflops"] > 0


def test_demo_is_a_subcommand(capsys):
    with pytest.raises(SystemExit) as done:
        cli_main(["demo", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "usage: graphrnn demo" in out and "--epochs" in out


def test_a_sample_of_a_short_call_repeats_it_until_it_lasts_min_sample_s():
    calls: list[str] = []
    fns = {"short": lambda: calls.append("short"),
           "long": lambda: (calls.append("long"), time.sleep(0.02))}
    number: dict[str, int] = {}
    samples = interleaved(fns, repeats=3, budget_s=1e9, min_sample_s=0.01, number=number)
    assert number["long"] == 1 and number["short"] > 100
    sizing = calls.count("short") - 3 * number["short"]          # the calls that sized it
    assert sizing > 1
    assert all(w < 1e-3 for w, _ in samples["short"])            # per call, not per sample
    assert all(w >= 0.02 for w, _ in samples["long"])


def test_a_sample_is_sized_on_warm_calls(monkeypatch):
    # the first call is slow (cold caches, a first-use cost); the sample count follows the
    # steady state, so two implementations of one speed get samples of one length. The
    # calls advance a fake clock: no real timing.
    clock = [0.0]
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    state = {"calls": 0}

    def cold_then_fast() -> None:
        state["calls"] += 1
        clock[0] += 0.02 if state["calls"] == 1 else 0.0005
    assert calls_per_sample(cold_then_fast, 0.01) >= 10
    assert calls_per_sample(lambda: clock.__setitem__(0, clock[0] + 0.012), 0.01) == 1


def test_the_peak_and_the_rows_for_an_avx2_target():
    if not {"avx2", "fma"} <= host_isa().enabled:
        pytest.skip("this CPU has no AVX2 + FMA")
    peak = subprocess.run([sys.executable, "-m", "graphrnn", "bench", "--peak", "--json",
                           "--target", "avx2"], capture_output=True, text=True, timeout=120)
    assert peak.returncode == 0, peak.stderr
    out = json.loads(peak.stdout)
    assert out["isa"]["name"] == "avx2"
    assert {v["width"] for v in out["peak"]["variants"]} == {8}
    with using_isa("avx2"):
        row = run([CONFIG], ("gru",), ("forward",), repeats=1, peak=False,
                  compile=False)
    assert row["isa"]["name"] == "avx2"
    assert row["rows"][0]["tile"].split("x")[-1].split()[0] == "8"


def test_a_bad_target_is_refused_before_measuring():
    with pytest.raises(ValueError, match="avx3"):
        main(["--peak", "--target", "avx3"])


def test_peers_are_held_to_an_avx2_target():
    env = peer_isa_env("avx2", {"XLA_FLAGS": "--a"})
    assert env["MKL_ENABLE_INSTRUCTIONS"] == env["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert env["XLA_FLAGS"] == "--a --xla_cpu_max_isa=AVX2"
    assert peer_isa_env("avx512", {"X": "1"}) == {"X": "1"}


@pytest.mark.skipif(timing._others_ns() is None, reason="no per-thread CPU times (Linux /proc)")
def test_work_left_running_after_a_call_is_waited_out_and_reported():
    import threading

    def burn(cpu_s: float, started: threading.Event) -> None:
        started.set()
        t0 = time.thread_time()
        while time.thread_time() - t0 < cpu_s:
            pass

    def leaves_work() -> None:     # returns with its thread running, as JAX's calls do
        started = threading.Event()
        threading.Thread(target=burn, args=(0.03, started)).start()
        started.wait()

    left: dict[str, float] = {}
    before = {t.ident for t in threading.enumerate()}
    interleaved({"leaves_work": leaves_work, "clean": lambda: None}, repeats=3, budget_s=10,
                after_return=left)
    assert not {t.ident for t in threading.enumerate()} - before    # every thread was waited out
    assert left["leaves_work"] >= 0.02
    assert left["clean"] < left["leaves_work"]


def test_the_peak_share_pairs_each_round_s_samples(monkeypatch):
    """A machine whose speed halves halfway through the rounds: graphrnn and the loop slow
    down together, and each round's ratio, so the median, stays that of a steady machine;
    against the loop's best sample the slow half would count as graphrnn's alone."""
    from graphrnn.bench import run as bench_run

    def fake_interleaved(fns, repeats, *args, **kw):
        slow = [1.0] * 3 + [2.0] * 4                    # the machine's slowdown per round
        kw["number"].update({k: 1 for k in fns})
        kw["after_return"].update({k: 0.0 for k in fns})
        return {k: [((0.004 if k == bench_run.PEAK else 0.010) * f, 0.0) for f in slow]
                for k in fns}

    monkeypatch.setattr(bench_run, "interleaved", fake_interleaved)
    monkeypatch.setattr(bench_run, "peak_sampler", lambda *a, **k: ((lambda: None), 0.4))
    row = bench_row("rnn", CONFIG, "forward", repeats=7, impls=("graphrnn",), peak=(8, 4))
    out = row.to_json(peak_gflops=100.0)
    steady = (row.gflop / 0.010) / (0.4 / 0.004)
    assert out["peak_fraction"] == pytest.approx(steady)
    assert out["peak_fraction_best"] == pytest.approx(steady / 2)     # median in the slow half


def test_ratios_pair_each_round_s_samples(monkeypatch):
    """Two implementations of the same speed on a machine that slows down for some rounds,
    each round in another order: the paired ratio is 1, the ratio of medians need not be."""
    from graphrnn.bench import run as bench_run
    a = [0.010, 0.010, 0.010, 0.020, 0.020, 0.020, 0.020]
    b = [0.010, 0.010, 0.010, 0.010, 0.020, 0.020, 0.020]   # one round later into the slowdown
    times = {"graphrnn": a, "interpreter": b}

    def fake_interleaved(fns, repeats, *args, **kw):
        kw["number"].update({k: 1 for k in fns})
        kw["after_return"].update({k: 0.0 for k in fns})
        return {k: [(w, 0.0) for w in times[k]] for k in fns}

    monkeypatch.setattr(bench_run, "interleaved", fake_interleaved)
    row = bench_row("rnn", CONFIG, "forward", repeats=7, impls=("graphrnn", "interpreter"))
    out = row.to_json()
    assert out["ratios_of_medians"]["interpreter"] == pytest.approx(0.5)
    assert out["ratios"]["interpreter"] == pytest.approx(1.0)   # 6 of 7 rounds at 1.0


def test_the_peak_loop_s_call_is_sized_to_graphrnn_s(monkeypatch):
    """The loop's call lasts as long as one of graphrnn's, at least 5 ms: a pair of samples
    then spans the same stretch of time."""
    clock = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])

    def call(seconds: float):
        return lambda: clock.__setitem__(0, clock[0] + seconds)

    assert timing.call_seconds(call(0.25)) == pytest.approx(0.25)
    assert timing.call_seconds(call(0.001)) == pytest.approx(0.005)
    assert timing.call_seconds(None) == 0.005
