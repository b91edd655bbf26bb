"""Every Op has a row in every per-op rule table: adding an op is a visible checklist.

One test per table; each new table (VJP_RULES, EMIT_RULES, ...) gets its own test here.
"""
from __future__ import annotations

from graphrnn.interpret import EVAL_RULES
from graphrnn.ir import Op
from graphrnn.ops import SHAPE_RULES


def missing(table: dict) -> list[str]:
    return [op.value for op in Op if op not in table]


def test_shape_rules_cover_every_op():
    assert missing(SHAPE_RULES) == []


def test_eval_rules_cover_every_op():
    assert missing(EVAL_RULES) == []
