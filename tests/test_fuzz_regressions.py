"""Failing cases the fuzzer found (shrunk), replayed after their bugs were fixed.

Each tests/fuzz_cases/<check>_<seed>.json holds the seed, the generator knobs, the checks that
failed, what was found and a note on the bug; the model (`.grnn`) and inputs (`.npz`) saved
next to it are replayed exactly, so a case keeps testing its bug when the generator changes.
New cases come from `graphrnn fuzz --out DIR`: copy the three files here once the bug is fixed.
A case saved for a crash ("crash_<seed>.json") is replayed in a worker process (`replay`), so
that crashing again fails its test instead of ending the test run.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from graphrnn.testing.fuzz import fingerprint, load_case, replay

CASES = sorted((Path(__file__).parent / "fuzz_cases").glob("*.json"))


def test_the_saved_cases_are_here():
    assert len(CASES) >= 4
    for path in CASES:
        for suffix in (".grnn", ".npz"):
            assert path.with_suffix(suffix).exists(), f"{path.stem}{suffix} is missing"


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_the_saved_model_now_passes_the_check_it_failed(path):
    _, data, (model, _) = load_case(path)
    assert fingerprint(model) == data["fingerprint"]
    found = replay(path)
    assert not found, f"{data['note']}\n" + "\n".join(str(d) for d in found)


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_the_seed_still_builds_a_model_that_passes(path):
    found = replay(path, exact=False)
    assert not found, "\n".join(str(d) for d in found)
