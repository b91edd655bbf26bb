"""`graphrnn bench --zoo` on tiny sizes: every row measured, the peers checked against graphrnn
(no timing is asserted)."""
from __future__ import annotations

import pytest

from graphrnn.bench.zoo import BUILTIN, format_zoo, run_zoo

pytest.importorskip("torch")


def test_zoo_rows_time_graphrnn_and_check_the_peers() -> None:
    names = [BUILTIN, "sru", "peephole_lstm", "luong", "hierarchical"]
    result = run_zoo([(2, 5, 3, 4)], names, repeats=1, budget_s=0.0, min_rounds=1)
    rows = {(r["model"], r["mode"]): r for r in result["rows"]}
    assert set(rows) == {(m, mode) for m in names for mode in ("forward", "train")}
    for (model, mode), r in rows.items():
        assert r["ms"]["graphrnn"] > 0
        if model == BUILTIN:
            assert set(r["ms"]) == {"graphrnn"}
            continue
        assert r["ms"]["pytorch"] > 0 and r["ratios"]["pytorch"] > 0
        assert r["max_abs_diff"]["pytorch"] < 1e-4, (model, mode, r["max_abs_diff"])
        if "jax" in r["ms"]:
            assert r["max_abs_diff"]["jax"] < 1e-4, (model, mode, r["max_abs_diff"])
        else:
            assert "jax" in r["missing"]
    table = format_zoo(result)
    assert "sru" in table and "luong" in table and "(B, T, D, H)" in table
