"""Every Op has a row in every per-op rule table: adding an op is a visible checklist.

One test per table; each new table (VJP_RULES, EMIT_RULES, ...) gets its own test here.
Where a table leaves ops out on purpose, the ops it leaves out are a named constant next to
it, and the test checks that the table and that constant together cover every op, once.
"""
from __future__ import annotations

from graphrnn.compiler.codegen.emit_map import MAP_RULES
from graphrnn.compiler.codegen.kernel import LEAVES, NO_CODE, VIEWS
from graphrnn.compiler.codegen.lower import EMIT_RULES
from graphrnn.compiler.codegen.schedule import KIND
from graphrnn.compiler.codegen.strides import VIEW_RULES
from graphrnn.compiler.passes.loop_kinds import NO_SEQ_RULE, SEQ_RULES
from graphrnn.compiler.passes.validate import ARITY
from graphrnn.compiler.passes.vjp import NO_VJP, VJP_RULES
from graphrnn.interpret import EVAL_RULES
from graphrnn.ir import Op
from graphrnn.ops import SHAPE_RULES
from graphrnn.rows import ROW_RULES

KERNEL_KINDS = {"view", "map", "reduce", "gemm", "pack", "index", "copy", "loop", "placed"}


def missing(table: dict | frozenset | set, *besides: frozenset | set) -> list[str]:
    """The ops neither in `table` nor in any of `besides`."""
    return [op.value for op in Op if op not in table and not any(op in b for b in besides)]


def overlap(table: dict | frozenset | set, other: frozenset | set) -> list[str]:
    return sorted(op.value for op in other if op in table)


def test_shape_rules_cover_every_op():
    assert missing(SHAPE_RULES) == []


def test_eval_rules_cover_every_op():
    assert missing(EVAL_RULES) == []


def test_vjp_rules_cover_every_op_but_the_loop_ones():
    assert missing(VJP_RULES, NO_VJP) == []
    assert overlap(VJP_RULES, NO_VJP) == []
    assert NO_VJP == {Op.LOOP, Op.GET}          # backprop differentiates loops itself


def test_row_rules_cover_every_op_but_inputs():
    assert missing(ROW_RULES) == [Op.INPUT.value]   # an input's kind is given by the caller


def test_seq_rules_and_the_ops_kept_per_step_cover_every_op_once():
    assert missing(SEQ_RULES, NO_SEQ_RULE) == []
    assert overlap(SEQ_RULES, NO_SEQ_RULE) == []


def test_arity_covers_every_op():
    assert missing(ARITY) == []
    for op, (lo, hi) in ARITY.items():
        assert lo >= 0 and (hi is None or hi >= lo), op


def test_every_op_has_an_emitter_or_needs_no_code():
    # PARAM never reaches the lowering: flatten_params makes it a VIEW of the flat vector
    assert missing(EMIT_RULES, NO_CODE, {Op.PARAM}) == []
    # reshape is a view when the layout allows and a copy kernel otherwise
    assert overlap(EMIT_RULES, NO_CODE) == [Op.RESHAPE.value]


def test_view_ops_are_listed_once():
    assert NO_CODE == VIEWS | LEAVES | {Op.LOOP}
    assert not VIEWS & LEAVES
    # GET reads its part of a loop's value from the loop's homes, not through a stride rule
    assert set(VIEW_RULES) == VIEWS - {Op.GET}


def test_kernel_kinds_cover_every_op_with_code():
    # an op with code runs as a kernel of the KIND it is given, or as a map (the default)
    assert missing(KIND, MAP_RULES, NO_CODE, {Op.PARAM}) == []
    assert overlap(KIND, MAP_RULES) == []
    assert [op.value for op in EMIT_RULES if op not in KIND and op not in MAP_RULES] == []
    assert [op.value for op in KIND if op not in EMIT_RULES and op not in NO_CODE] == []
    assert set(KIND.values()) <= KERNEL_KINDS
