"""Hypothesis strategies over the random model generator (graphrnn.testing.randgraph).

Hypothesis draws the seed and the checks; the generator knobs come from the seed, uniform up to
the given limits. (Drawn by hypothesis, small knobs would dominate: it favours the low end of
every range.) To shrink a failure toward smaller knobs use `graphrnn.testing.fuzz.shrink`, which
`assert_clean` runs before it reports.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import strategies as st

from graphrnn.testing.fuzz import ALL, Case, Checks, random_params, run_case, shrink

SEEDS = st.integers(0, 2**31 - 2)


def disable_sets() -> st.SearchStrategy[tuple[str, ...]]:
    """A subset of the optimisations to switch off, in pipeline order."""
    return st.lists(st.sampled_from(ALL), unique=True).map(
        lambda names: tuple(n for n in ALL if n in names))


def pass_checks() -> st.SearchStrategy[Checks]:
    """Interpreter-only checks over one unroll mode and two random pass subsets."""
    return st.builds(lambda unroll, disable, symbolic: Checks(
        unroll=(unroll,), disable=tuple(disable), symbolic=symbolic, grads=False,
        compiled=False, roundtrip=False, train=False),
        st.sampled_from([None, False, True]), st.lists(disable_sets(), min_size=2, max_size=2),
        st.booleans())


def compile_checks() -> st.SearchStrategy[Checks]:
    """One compiled configuration: an unroll mode that keeps T symbolic and a pass subset."""
    return st.builds(lambda unroll, disable: Checks(
        passes=False, grads=False, roundtrip=False, train=False,
        compile_configs=((unroll, disable),)),
        st.sampled_from([None, False]), disable_sets())


def cases(checks: st.SearchStrategy[Checks] | Checks = Checks(), **limits: Any
          ) -> st.SearchStrategy[Case]:
    """Random cases: a seed, knobs drawn from it (`random_params` limits), the checks."""
    checks_st = checks if isinstance(checks, st.SearchStrategy) else st.just(checks)
    return st.builds(lambda seed, c: Case(seed, random_params(np.random.default_rng(
        [seed, 7]), **limits), c), SEEDS, checks_st)


def assert_clean(case: Case, cache: Any = None) -> None:
    """Fail with every discrepancy of `case`, and the knobs it shrinks to."""
    _, found = run_case(case, cache)
    if found:
        small, first = shrink(case, found[0], cache=cache, seconds=20.0)
        lines = "\n".join(str(d) for d in found)
        pytest.fail(f"{lines}\nshrunk: Case({small.seed}, {small.params}, ...): {first}")


__all__ = ["disable_sets", "pass_checks", "compile_checks", "cases", "assert_clean", "SEEDS"]
