"""Timing several implementations of one computation fairly: interleaved, shuffled rounds."""
from __future__ import annotations

import gc
import random
import statistics
import time
from typing import Any, Callable

MIN_SAMPLE_S = 0.01     # a timed sample repeats a short call until it lasts this long
MORE_ROUNDS = 4         # short rows: at most this many times the rounds asked for
SHORT_ROW_S = 3.0       # ... while the row's rounds so far took less than this


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, budget_s: float,
                min_rounds: int = 3, min_sample_s: float = 0.0,
                number: dict[str, int] | None = None,
                after_return: dict[str, float] | None = None,
                more_rounds_s: float = 0.0) -> dict[str, list[tuple[float, float]]]:
    """(wall s, cpu s) per call: each round takes one sample of every fn, in an order shuffled
    each round (seeded: the same for every run). A fn leaves the rounds once it has
    `min_rounds` samples and has used its share of the budget.

    A sample is `number[k]` calls back to back, averaged, as `timeit` does: with
    `min_sample_s`, enough calls that a sample lasts at least that long (`calls_per_sample`),
    so a 50 us call is measured in the steady state a training loop runs it in, not each
    time just after another implementation emptied the caches. `number`, when given,
    receives the counts used.

    Shuffled, not rotated: a rotation keeps every fn right after the same other one, whose
    memory traffic it then always pays for (a 0.1 ms call run after the interpreter took
    twice as long as the same code run after a compiled call).

    After each sample the other threads of the process are waited out (`settle`): work a
    library leaves running once its call has returned (JAX's runtime threads go on for some
    milliseconds) would otherwise land in the next sample, whoever's it is. `after_return`,
    when given, receives that leftover CPU time per call (s, mean over the samples); it is
    not added to the samples.

    With `more_rounds_s`, rounds go on past `repeats`, up to MORE_ROUNDS x `repeats`, while
    all rounds so far took less than that many seconds: a row of short calls, whose samples
    a neighbour's burst can double, gets its medians from more pairs at little cost."""
    names = list(fns)
    order = random.Random(0)
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in names}
    share = budget_s / max(len(names), 1)
    was_enabled = gc.isenabled()
    counts = number if number is not None else {}
    spent = {k: 0.0 for k in names}
    left = {k: 0.0 for k in names}
    gc.collect()
    gc.disable()
    try:
        for k in names:
            counts[k] = calls_per_sample(fns[k], min_sample_s) if min_sample_s > 0 else 1
        start = time.perf_counter()
        for r in range(repeats * MORE_ROUNDS if more_rounds_s > 0 else repeats):
            if r >= repeats and time.perf_counter() - start >= more_rounds_s:
                break
            live = [k for k in names if len(samples[k]) < min(min_rounds, repeats)
                    or spent[k] < share]
            if not live:
                break
            for k in order.sample(live, len(live)):
                fn, n = fns[k], counts[k]
                w0, c0 = time.perf_counter(), time.process_time()
                for _ in range(n):
                    fn()
                w, c = time.perf_counter() - w0, time.process_time() - c0
                spent[k] += w
                samples[k].append((w / n, c / n))
                left[k] += settle() / n
    finally:
        if was_enabled:
            gc.enable()
    if after_return is not None:
        after_return.update({k: left[k] / len(samples[k]) for k in names if samples[k]})
    return samples


def _others_ns() -> int | None:
    """CPU time (ns) run so far by this process's threads other than the calling one, ended
    threads included; None where the system cannot tell a thread's CPU time."""
    try:
        return time.process_time_ns() - time.thread_time_ns()
    except (AttributeError, OSError):
        return None


def settle(poll_s: float = 0.001, quiet_ns: int = 50_000, max_s: float = 0.5) -> float:
    """Wait until the process's other threads stop running: until one `poll_s` interval in
    which they ran under `quiet_ns`, at most `max_s`. Returns their CPU seconds meanwhile
    (0.0 at once where threads' CPU time cannot be read)."""
    start = before = _others_ns()
    if start is None:
        return 0.0
    t_end = time.perf_counter() + max_s
    while time.perf_counter() < t_end:
        time.sleep(poll_s)
        now = _others_ns() or before
        ran, before = now - before, now
        if ran < quiet_ns:
            break
    return max(0, before - start) / 1e9


def calls_per_sample(fn: Callable[[], Any], min_sample_s: float) -> int:
    """How many calls of `fn` back to back last about `min_sample_s`, timed warm: a first
    call (one is enough when it lasts four times that), then runs of 1, 4, 16, ... calls
    until one lasts a quarter of it. Sizing on the first call alone, which pays for the
    caches another implementation left cold, gave one 50 us call 20 calls a sample and the
    same kernels in another model 103, and their medians apart by 13-21%."""
    w0 = time.perf_counter()
    fn()
    if time.perf_counter() - w0 >= 4 * min_sample_s:
        return 1
    n = 1
    while True:
        w0 = time.perf_counter()
        for _ in range(n):
            fn()
        took = time.perf_counter() - w0
        if took >= min_sample_s / 4 or n >= 10_000:
            return max(1, min(10_000, int(n * min_sample_s / max(took, 1e-9)) + 1))
        n = min(4 * n, 10_000)


def call_seconds(fn: Callable[[], Any] | None, least: float = 0.005) -> float:
    """Seconds one call of `fn` takes, at least `least` (`least` without a fn)."""
    if fn is None:
        return least
    start = time.perf_counter()
    fn()
    return max(least, time.perf_counter() - start)


def paired_ratio(samples: list[tuple[float, float]], reference: list[tuple[float, float]]
                 ) -> float:
    """The median over the rounds of a sample's wall time over `reference`'s in the same
    round (`interleaved`'s samples: a fn leaves the rounds for good, so sample i of each is
    round i's; rounds only one of them ran are left out)."""
    return statistics.median(w / r for (w, _), (r, _) in zip(samples, reference))
