"""The crash marker: `graphrnn fuzz` runs its cases in a worker process, and a case that kills
the worker is a finding of check "crash", saved, replayed in a worker, and the run goes on."""
from __future__ import annotations

import ctypes
import dataclasses
import itertools
import json
import os
import time
from pathlib import Path

import pytest

import graphrnn.testing.fuzz as fuzz_module
from graphrnn.testing import worker as fuzzworker
from graphrnn.testing.crosscheck import Checks, Discrepancy
from graphrnn.testing.fuzz import Case, Worker, fuzz, random_cases, replay, run_checks

SEED = 4
# fuzz(compiled=False, grads=False) draws its cases with these checks
FUZZ_CHECKS = Checks(compiled=False, train=False, grads=False)
# the second case of that run is the one the hooks below make crash (with its own knobs
# only, so that shrinking it stops at once)
DOOMED = next(itertools.islice(random_cases(SEED, FUZZ_CHECKS), 1, None))
LIGHT = Checks(unroll=(False,), disable=((),), symbolic=False, grads=False, compiled=False,
               train=False)


def light_check(case: Case, cache: object) -> list[Discrepancy]:
    """The interpreter and one pass configuration; nothing for the smaller cases of DOOMED
    (quick shrinking)."""
    if case.seed == DOOMED.seed:
        return []
    return run_checks(dataclasses.replace(case, checks=LIGHT), cache)


def segfault_on_the_doomed_case(case: Case, cache: object) -> list[Discrepancy]:
    """The worker hook of these tests: a real SIGSEGV in native code on DOOMED."""
    if case == DOOMED:
        ctypes.string_at(0)
    return light_check(case, cache)


def job(kind: str, cache: object) -> list[Discrepancy]:
    """A worker job by name: an answer, or one way of never answering."""
    if kind == "segfault":
        ctypes.string_at(0)
    elif kind == "hang":
        time.sleep(60)
    return [Discrepancy("pass", f"{kind} from {os.getpid()}")]


def test_a_worker_that_dies_reports_the_job_as_a_crash_and_restarts() -> None:
    with Worker(job, timeout=20) as worker:
        first = worker("ok")
        assert first[0].check == "pass" and not first[0].detail.endswith(str(os.getpid()))
        assert worker("again")[0].detail.split()[-1] == first[0].detail.split()[-1]
        assert worker("segfault") == [Discrepancy("crash", "killed by SIGSEGV")]
        after = worker("ok")[0]
        assert after.check == "pass" and after.detail != first[0].detail
        assert worker.started == 2
        worker.timeout = 0.5
        assert worker("hang") == [
            Discrepancy("crash", "no answer after 0.5 s: the worker was killed")]
        assert worker.started == 2
    assert worker._process is None


def test_fuzz_saves_the_crash_and_goes_on(tmp_path: Path) -> None:
    out, lines = tmp_path / "found", []
    summary = fuzz(120.0, SEED, compiled=False, grads=False, out=out, log=lines.append,
                   check=segfault_on_the_doomed_case, cases=4)
    text = "\n".join(lines)
    assert summary.crashed == 1 and summary.tried == 4, text      # went on after the crash
    assert f"seed {DOOMED.seed}" in text and "crash: killed by SIGSEGV" in text
    assert lines[-1].startswith(f"fuzz: {summary.tried} cases") and "1 crashed" in lines[-1]
    path = out / f"crash_{DOOMED.seed}.json"
    assert summary.written == (path,) and str(path) in text
    assert path.with_suffix(".grnn").exists() and path.with_suffix(".npz").exists()
    assert not (out / "running.json").exists()
    data = json.loads(path.read_text())
    assert data["found"]["detail"] == "killed by SIGSEGV"
    case = Case.from_json(data)
    assert case.seed == DOOMED.seed and case.params == DOOMED.params     # nothing smaller died


def test_a_saved_crash_case_is_replayed_in_a_worker(tmp_path: Path, monkeypatch) -> None:
    case = dataclasses.replace(DOOMED, checks=LIGHT)
    path = fuzz_module.save_case(case, Discrepancy("crash", "killed by SIGSEGV"), tmp_path,
                                 case.generate())
    pids = []

    class Recording(Worker):
        def _start(self) -> None:
            super()._start()
            pids.append(self._process.pid)
    monkeypatch.setattr(fuzz_module, "Worker", Recording)
    assert replay(path) == []
    assert len(pids) == 1 and pids[0] != os.getpid()


def test_in_process_runs_the_cases_here(tmp_path: Path) -> None:
    seen = []

    def light(case: Case, cache: object) -> list[Discrepancy]:
        seen.append(os.getpid())
        return run_checks(dataclasses.replace(case, checks=LIGHT), cache)
    summary = fuzz(120.0, SEED, compiled=False, grads=False, out=tmp_path / "found",
                   log=lambda line: None, check=light, in_process=True, cases=3)
    assert summary.tried == len(seen) == 3 and set(seen) == {os.getpid()}
    assert not summary.failed and not (tmp_path / "found").exists()


@pytest.mark.parametrize("exitcode, words", [(-11, "killed by SIGSEGV"),
                                             (-8, "killed by SIGFPE"),
                                             (-4, "killed by SIGILL"),
                                             (-6, "killed by SIGABRT"),
                                             (3, "exited with status 3")])
def test_how_a_worker_died_in_words(exitcode: int, words: str) -> None:
    assert fuzzworker._death(exitcode) == words


def fail_then_segfault_while_shrinking(case: Case, cache: object) -> list[Discrepancy]:
    """A planted "pass" finding on DOOMED, and a segfault on the first smaller case that
    shrinking it tries."""
    if case == DOOMED:
        return [Discrepancy("pass", "planted")]
    if case.seed == DOOMED.seed and case.params == DOOMED.params.smaller()[0]:
        ctypes.string_at(0)
    return light_check(case, cache)


def test_a_crash_met_while_shrinking_is_saved_too(tmp_path: Path) -> None:
    lines = []
    summary = fuzz(120.0, SEED, compiled=False, grads=False, out=tmp_path, log=lines.append,
                   check=fail_then_segfault_while_shrinking, cases=2)
    assert summary.failed == 1 and summary.crashed == 0, lines
    assert [p.name for p in summary.written] == [f"pass_{DOOMED.seed}.json",
                                                 f"crash_{DOOMED.seed}.json"]
    crash = Case.from_json(json.loads(summary.written[1].read_text()))
    # the checks it crashed under: those narrowed to the finding being shrunk
    assert crash.params == DOOMED.params.smaller()[0]
    assert crash.checks == FUZZ_CHECKS.only(Discrepancy("pass", "planted"))
    assert any(line.startswith("while shrinking") for line in lines)
