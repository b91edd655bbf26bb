"""Random models (graphrnn.testing.randgraph) through every path that must agree with the
interpreter:
the front passes and each optimisation subset, gradients against finite differences, dropout
masks in training mode, the compiled forward and training step, and save/load. Also checks
that the checker itself catches planted bugs, and that `graphrnn fuzz` shrinks and saves what
it finds. Tests that plant a broken pass keep the compiled checks off: whole programs are
cached by graph structure, so a program built by a broken pass must not reach a shared cache.
"""
from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from strategies import assert_clean, cases, compile_checks, pass_checks

import graphrnn as gr
from graphrnn import nn
from graphrnn.cli import main
from graphrnn.compiler.passes import autodiff
from graphrnn.compiler import pipeline
from graphrnn.compiler.passes.rewrite import rewrite
from graphrnn.testing.fuzz import (ALL, Case, Checks, check_case, compare, fingerprint, load_case,
                                   run_case, save_case, shrink)
from graphrnn.ir import Op
from graphrnn.testing.randgraph import GenParams, generate_seeded, random_model
from graphrnn.train import InterpretedStep

QUICK = dict(deadline=None, derandomize=True, database=None)


# ----------------------------------------------------------------------------- the generator

def test_the_same_seed_builds_the_same_model_parameters_and_inputs():
    for seed in range(8):
        a, b = generate_seeded(seed), generate_seeded(seed)
        assert fingerprint(a.model) == fingerprint(b.model)
        np.testing.assert_array_equal(a.model.parameters()[0], b.model.parameters()[0])
        assert len(a.inputs) == len(b.inputs)
        for x, y in zip(a.inputs, b.inputs):
            np.testing.assert_array_equal(x, y)
    model, inputs = random_model(np.random.default_rng(3), max_depth=1, max_width=3)
    assert isinstance(model, gr.gModule) and len(inputs) == len(model.inputs)


def test_a_loop_body_input_whose_reader_was_dropped_still_reaches_an_output():
    """Seed 182579596: a body's sequence slice was taken by an op that then gave up, so
    the body graph had a dangling input (a GraphError while generating)."""
    params = GenParams(max_depth=2, max_width=2, max_ops=6, allow_loops=True,
                       allow_cells=True, max_batch=2, max_steps=2)
    generated = generate_seeded(182579596, params)
    assert any(n.op == Op.LOOP for n in generated.model.graph.nodes)


def test_a_carry_is_computed_from_values_with_batch_rows_only():
    """Seed 1543291737: a carry's new value joined an unused body value of shape [1, 2]
    with one of [2, 1] (a ShapeError while generating)."""
    params = GenParams(max_depth=1, max_width=3, max_ops=7, allow_loops=True,
                       allow_cells=True, max_batch=2, max_steps=2)
    generated = generate_seeded(1543291737, params)
    assert any(n.op == Op.LOOP for n in generated.model.graph.nodes)


def test_generated_models_cover_the_api():
    """Over a few hundred seeds the generator uses every op the modules emit, nested loops,
    lengths, reverse, unroll requests, consts, loops without sequences, tied parameters,
    while loops (nested ones too)."""
    ops, loops, nested, tied = set(), [], 0, 0
    for seed in range(200):
        g = generate_seeded(seed)
        for n, graph in g.model.graph.walk():
            ops.add(n.op)
            if n.op == Op.LOOP:
                loops.append(n.attrs)
                nested += graph is not g.model.graph
        holders: dict[int, set] = {}           # parameter -> the graphs that use it
        for n, graph in g.model.graph.walk():
            if n.op == Op.PARAM:
                holders.setdefault(id(n.param), set()).add(id(graph))
        tied += any(len(graphs) > 1 for graphs in holders.values())
    emitted = {Op.INPUT, Op.PARAM, Op.CONST, Op.FILL, Op.NEG, Op.EXP, Op.LOG, Op.TANH,
               Op.SIGMOID, Op.RELU, Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.MATMUL, Op.SUM, Op.MEAN,
               Op.SOFTMAX, Op.LOG_SOFTMAX, Op.LOOKUP, Op.PICK, Op.CONCAT, Op.SLICE, Op.INDEX,
               Op.RESHAPE, Op.DROPOUT, Op.LOOP, Op.GET, Op.MAX, Op.MIN, Op.LOGSUMEXP,
               Op.NORMALIZE, Op.TRANSPOSE, Op.SHIFT, Op.BMM, Op.PAD, Op.ASTYPE}
    assert emitted <= ops
    assert nested > 0 and tied > 0
    for key in ("has_lengths", "reverse", "unroll", "n_consts"):
        assert any(a[key] for a in loops), key
    assert any(a["n_xs"] == 0 for a in loops) and any(a["n_carry"] == 0 for a in loops)
    whiles = [a for a in loops if a.get("until") is not None]
    assert whiles and any(any(n.op == Op.LOOP for n in a["body"].nodes) for a in whiles)


@given(cases(Checks(passes=False, grads=False, compiled=False, train=False), max_ops=8))
@settings(max_examples=40, **QUICK)
def test_random_models_run_finite_and_survive_save_and_load(case):
    assert_clean(case)


# ----------------------------------------------------------------------------- the paths

@given(cases(pass_checks(), max_ops=10))
@settings(max_examples=90, **QUICK)
def test_every_pass_subset_keeps_the_interpreters_result(case):
    assert_clean(case)


@given(cases(Checks(passes=False, compiled=False, roundtrip=False, train=False, grad_samples=3),
             max_depth=2, max_ops=6, max_steps=3, max_width=3))
@settings(max_examples=40, **QUICK)
def test_gradients_match_finite_differences(case):
    assert_clean(case)


@given(cases(Checks(training=True, unroll=(False,), disable=((), ALL), symbolic=False),
             max_ops=8))
@settings(max_examples=20, **QUICK)
def test_training_mode_dropout_masks_survive_the_optimisations(case):
    # unroll=True is left out: unrolled copies of a loop body draw other masks (reported)
    assert_clean(case)


@given(case=cases(compile_checks(), max_ops=8, max_steps=4))
@settings(max_examples=20, **QUICK)
def test_compiled_code_matches_the_interpreter(cache, case):
    assert_clean(case, cache)


@given(case=cases(Checks(passes=False, grads=False, compiled=False, roundtrip=False,
                         train_configs=((None, None), (None, 2))), max_ops=5, max_steps=3))
@settings(max_examples=8, **QUICK)
def test_compiled_training_steps_match_the_interpreted_step(cache, case):
    # bptt_max is left out here: it is ignored for loops that ask to be unrolled (reported)
    assert_clean(case, cache)


# ----------------------------------------------------------------------------- the checker

def planted_model() -> tuple[gr.gModule, list[np.ndarray]]:
    x = gr.Input("B", "T", 3, name="x")
    h = nn.Tanh()(nn.Linear(3, 3)(x))
    return gr.gModule([x], [nn.CAddTable()([h, x])]), [
        np.random.default_rng(0).uniform(-1, 1, (2, 4, 3)).astype(np.float32)]


def add_becomes_sub(graph):
    """A wrong optimisation: every add computes a subtraction."""
    return rewrite(graph, lambda n: n.replace(op=Op.SUB) if n.op == Op.ADD else n)


def test_a_wrong_pass_is_reported_under_exactly_the_configurations_that_run_it(monkeypatch):
    model, inputs = planted_model()
    monkeypatch.setattr(pipeline, "OPTIMISATIONS", [
        (name, add_becomes_sub if name == "cse" else fn) for name, fn in pipeline.OPTIMISATIONS])
    found = check_case(model, inputs, grads=False, compiled=False, roundtrip=False,
                       train=False, unroll=(False,), symbolic=False)
    assert found and {d.check for d in found} == {"pass"}
    assert all("cse" not in d.disable for d in found)
    assert len(found) == sum("cse" not in d for d in Checks().disable)
    assert "values differ" in found[0].detail


def test_a_wrong_gradient_rule_is_reported(monkeypatch):
    model, inputs = planted_model()
    assert check_case(model, inputs, passes=False, compiled=False, train=False) == []
    monkeypatch.setitem(autodiff.VJP_RULES, Op.TANH, lambda n, g: (g,))
    found = check_case(model, inputs, passes=False, compiled=False, roundtrip=False,
                       train=False)
    assert [d.check for d in found] == ["grad"] and "failed twice" in found[0].detail


def test_wrong_compiled_outputs_and_errors_are_reported(monkeypatch):
    model, inputs = planted_model()

    def off_by_a_little(m, **kw):
        return lambda *args: gr.interpret(m, *args) * np.float32(1.001)

    def broken(m, **kw):
        raise gr.LoweringError("no emitter")
    for fake, words in ((off_by_a_little, "values differ"), (broken, "LoweringError")):
        monkeypatch.setattr("graphrnn.testing.crosscheck.compile_model", fake)
        found = check_case(model, inputs, passes=False, grads=False, roundtrip=False,
                           train=False)
        assert [d.check for d in found] == ["compile"] * 2 and words in found[0].detail


def test_a_wrong_compiled_gradient_is_reported(monkeypatch):
    model, inputs = planted_model()

    def nudged_step(m, *, loss, bptt_max, **kw):
        step = InterpretedStep(m, loss, bptt_max=bptt_max)

        def run(*args, target, seed):
            value = step(*args, target=target, seed=seed)
            m.parameters()[1][0] += 0.1
            return value
        return run
    monkeypatch.setattr("graphrnn.testing.crosscheck.compile_model", nudged_step)
    found = check_case(model, inputs, passes=False, grads=False, compiled=False,
                       roundtrip=False)
    assert [d.check for d in found] == ["train"] * 3
    assert [d.config for d in found] == ["bptt_max=None checkpoint=None",
                                         "bptt_max=2 checkpoint=None",
                                         "bptt_max=None checkpoint=2"]
    assert found[0].detail.startswith("gradient: 1 of")


def test_compare_names_count_shape_and_worst_value():
    a = np.zeros((2, 3), np.float32)
    assert compare([a], [a.astype(np.float64)], 0.0, 0.0) is None
    assert "2 outputs" in compare([a, a], [a], 0.0, 0.0)
    assert "expected float64[3, 2]" in compare([a], [np.zeros((3, 2))], 0.0, 0.0)
    b = a.copy()
    b[1, 2] = 0.5
    assert "worst at (1, 2): got 0.5, expected 0" in compare([b], [a], 1e-4, 1e-5)


# ----------------------------------------------------------------------------- shrink, save

def test_shrink_keeps_the_failure_with_smaller_knobs_and_the_saved_case_replays(
        monkeypatch, tmp_path):
    monkeypatch.setattr(pipeline, "OPTIMISATIONS", [
        (name, add_becomes_sub if name == "fold" else fn) for name, fn in pipeline.OPTIMISATIONS])
    checks = Checks(grads=False, compiled=False, roundtrip=False, train=False, unroll=(False,),
                    disable=((), ALL), symbolic=False)
    big = GenParams(max_depth=2, max_width=4, max_ops=10)
    case = next(c for c in (Case(s, big, checks) for s in range(20)) if run_case(c)[1])
    found = run_case(case)[1][0]
    small, again = shrink(case, found)
    assert (again.check, again.config) == (found.check, found.config) == (
        "pass", "unroll=False disable=-")
    assert small.seed == case.seed and small.params != big
    assert all(getattr(small.params, k) <= getattr(big, k) for k in ("max_depth", "max_ops"))
    path = save_case(small, again, tmp_path, small.generate())
    loaded, data, (model, inputs) = load_case(path)
    assert loaded == small and data["found"]["check"] == "pass"
    assert data["fingerprint"] == fingerprint(model) == fingerprint(small.generate().model)
    assert check_case(model, inputs, checks=loaded.checks)
    monkeypatch.undo()
    assert check_case(model, inputs, checks=loaded.checks) == []


def test_fuzz_command_runs_cases_and_exits_1_with_saved_failures(monkeypatch, tmp_path, capsys):
    out = tmp_path / "found"
    assert main(["fuzz", "--seconds", "1", "--seed", "5", "--no-compile", "--no-grad",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "no failures" in text and int(text.split("fuzz: ")[1].split()[0]) >= 1
    assert not out.exists()
    monkeypatch.setattr(pipeline, "OPTIMISATIONS", [
        (name, add_becomes_sub if name == "cse" else fn) for name, fn in pipeline.OPTIMISATIONS])
    assert main(["fuzz", "--seconds", "0.5", "--seed", "5", "--no-compile", "--no-grad",
                 "--in-process", "--out", str(out)]) == 1
    text = capsys.readouterr().out
    saved = sorted(out.glob("*.json"))
    assert saved and "failing" in text and str(saved[0]) in text
    data = json.loads(saved[0].read_text())
    assert data["found"]["check"] == "pass" and (out / f"{saved[0].stem}.grnn").exists()


def test_random_broadcasts_never_make_a_value_grow_with_steps_squared():
    """Compiled sizes are linear in T (a clear LoweringError says so otherwise), so the
    generator never broadcasts a [.., T] value against a [.., T, ..] one; this seed did."""
    params = GenParams(max_depth=1, max_width=1, max_ops=11, allow_loops=True,
                       allow_cells=True, max_batch=1, max_steps=2)
    g = generate_seeded(1180878019, params)
    for n, _ in g.model.graph.walk():
        for t in n.type if isinstance(n.type, tuple) else (n.type,):
            assert sum(d == "T" for d in t.shape) <= 1, (n, t)
    want = gr.interpret(g.model, *g.inputs)
    got = gr.compile(g.model)(*g.inputs)
    for a, b in zip(want if isinstance(want, tuple) else (want,),
                    got if isinstance(got, tuple) else (got,)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
