"""Quality of service in the engine: the hard bound for small requests, priority classes and
their floor share, deadlines. A fake network records every tick's rows; ticks are counted, not
timed, so these tests say the same on a busy machine.

The CPU defaults in miniature: blocks as large as the tick budget (8,192 on CPU, 512 here), a
big request of many blocks, small requests of at most an eighth of the budget.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model.engine import FLOOR_SHARE, PRIORITIES, DeadlineExceeded, EngineRequest
from tests.model.test_engine import Recorder, alone, engine, plan

BUDGET = 512
BIG = 40 * BUDGET  # forty blocks: the 100,000-point request's shape at the CPU budget, in miniature
HIGH, NORMAL, LOW = (PRIORITIES.index(name) for name in ("high", "normal", "low"))


def cheap(x: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
    return x * 0.5


def big_alone_ticks(steps: int) -> int:
    e = engine(Recorder(cheap), tick_rows=BUDGET, block_rows=BUDGET)
    e.submit(EngineRequest(n=BIG, seed=0, plan=plan("ddim", steps)))
    e.run()
    return e.ticks


@settings(max_examples=40, deadline=None)
@given(
    arrival=st.integers(0, 399),  # any tick of the big request's life, its first and its last included
    n=st.integers(1, BUDGET // 8),
    others=st.lists(st.integers(1, BUDGET // 8), max_size=3),
    sampler=st.sampled_from([("ddpm", None), ("ddim", 10), ("dpmpp2m", 5)]),
)
def test_a_small_request_runs_in_every_tick_whenever_it_arrives(arrival: int, n: int, others: list[int], sampler: tuple[str, int | None]) -> None:
    """The bound: a small request that arrives at any tick of a big, aged request's life (with
    up to three other small ones in flight) is in every tick from the next one, so it ends after
    exactly its own number of steps; no tick of its life carries more than two budgets, and on
    average at most one and a half (the big request's block runs beside the small rows)."""
    rec = Recorder(cheap)
    e = engine(rec, tick_rows=BUDGET, block_rows=BUDGET)
    big = EngineRequest(n=BIG, seed=0, plan=plan("ddim", 10))
    e.submit(big)
    big.submitted_at -= 1000.0  # long in the queue: aging alone would put it ahead of anything new
    for _ in range(arrival):
        e.tick()
    assert not big.finished
    for k, rows in enumerate(others):
        e.submit(EngineRequest(n=rows, seed=100 + k, plan=plan("ddpm")))
    small = EngineRequest(n=n, seed=7, plan=plan(*sampler))
    e.submit(small)
    first = len(rec.calls)
    while not small.finished:
        e.tick()
    ticks = [rows for rows, _ in rec.calls[first:]]
    assert len(ticks) == small.evaluations
    assert max(ticks) <= 2 * BUDGET
    assert sum(ticks) <= 1.5 * BUDGET * len(ticks)
    assert small.error is None and small.points is not None


def test_the_big_request_keeps_its_pace_next_to_a_stream_of_small_ones() -> None:
    """A small request sent as soon as the previous one ends, all through the big request's life
    (the benchmark's scenario): each ends in exactly its steps; the big request keeps a whole
    block in every tick (the tick overshoots the budget by the small rows), so it needs exactly
    the ticks it needs alone."""
    rec = Recorder()
    e = engine(rec, tick_rows=BUDGET, block_rows=BUDGET)
    big = EngineRequest(n=BIG, seed=0, plan=plan("ddim", 10))
    e.submit(big)
    smalls = []
    while not big.finished:
        small = EngineRequest(n=10, seed=len(smalls), plan=plan("ddpm"))
        e.submit(small)
        smalls.append(small)
        start = e.ticks
        while not small.finished:
            e.tick()
        assert e.ticks - start == 50
    alone_ticks = big_alone_ticks(10)
    big_rows = [rows - 10 for rows, _ in rec.calls if rows > 10]
    assert big_rows and all(rows == BUDGET for rows in big_rows)  # its blocks ran whole, one per long tick
    assert len(big_rows) == len(rec.calls) == alone_ticks  # in every tick, and as many as it needs alone
    np.testing.assert_array_equal(big.points, alone(big.plan, BIG, 0, block_rows=BUDGET))


def test_before_the_fix_an_aged_big_request_held_a_small_one_back() -> None:
    """What the size rank fixes: ranked by aging alone, a nearly finished big request outranked a
    newcomer and its blocks filled the ticks. The small request now ranks ahead of it."""
    e = engine(tick_rows=BUDGET, block_rows=BUDGET)
    big = EngineRequest(n=BIG, seed=0, plan=plan("ddim", 10))
    e.submit(big)
    big.submitted_at -= 1000.0
    small = EngineRequest(n=10, seed=1, plan=plan("ddpm"))
    e.submit(small)
    assert e.rank(big)[2] < e.rank(small)[2]  # the aging key alone puts big first …
    assert e.rank(small) < e.rank(big)  # … the rank does not


def test_a_higher_class_goes_first_in_every_tick() -> None:
    rec = Recorder()
    e = engine(rec, tick_rows=BUDGET, block_rows=BUDGET)
    lows = [EngineRequest(n=4 * BUDGET, seed=k, plan=plan("ddim", 10), priority=LOW) for k in range(4)]
    for request in lows:
        e.submit(request)
        request.submitted_at -= 1000.0
    e.tick()
    high = EngineRequest(n=3 * BUDGET, seed=9, plan=plan("ddim", 10), priority=HIGH)  # large, and new
    e.submit(high)
    start = e.ticks
    while not high.finished:
        e.tick()
    # alone it needs 3 blocks × 10 steps = 30 ticks; the low class's floor adds a long tick now and then, never a wait
    assert e.ticks - start == 30
    np.testing.assert_array_equal(high.points, alone(high.plan, 3 * BUDGET, 9, block_rows=BUDGET))


@pytest.mark.parametrize("lower", ["normal", "low"])
def test_a_lower_class_is_never_starved_and_gets_its_floor_share(lower: str) -> None:
    """High requests that fill every tick on their own, arriving without end: the lower class
    still runs a block each time its credit (FLOOR_SHARE of the budget per tick) covers one, so
    it gets 1 / (1 / FLOOR_SHARE + 1) of the rows."""
    rec = Recorder(cheap)
    e = engine(rec, tick_rows=BUDGET, block_rows=BUDGET)
    victim = EngineRequest(n=4 * BUDGET, seed=0, plan=plan("ddim", 10), priority=PRIORITIES.index(lower))
    e.submit(victim)
    high_rows, k = 0, 0
    while not victim.finished:
        if k % 10 == 0:
            e.submit(EngineRequest(n=BUDGET, seed=k, plan=plan("ddim", 10), priority=HIGH))  # a budget's worth per tick
        before = victim.remaining
        e.tick()
        high_rows += rec.calls[-1][0] - (before - victim.remaining)
        k += 1
    assert victim.error is None
    share = victim.work / (victim.work + high_rows)
    assert share == pytest.approx(1 / (1 / FLOOR_SHARE + 1), rel=0.05)
    assert max(rows for rows, _ in rec.calls) <= 2 * BUDGET


def test_a_request_whose_deadline_passes_leaves_mid_chain_with_nothing_returned() -> None:
    e = engine(tick_rows=BUDGET, block_rows=BUDGET)
    late = EngineRequest(n=2 * BUDGET, seed=0, plan=plan("ddpm"))
    kept = EngineRequest(n=10, seed=1, plan=plan("ddpm"))
    e.submit(late)
    e.submit(kept)
    for _ in range(5):
        e.tick()
    late.deadline = 0.0  # passed
    ended = e.tick()
    assert ended == [late]
    assert isinstance(late.error, DeadlineExceeded) and late.points is None and late.trajectory == []
    assert e.remaining_work == kept.remaining
    e.run()
    np.testing.assert_array_equal(kept.points, alone(kept.plan, 10, 1))


def test_a_deadline_in_the_future_changes_nothing() -> None:
    e = engine(tick_rows=BUDGET, block_rows=BUDGET)
    request = EngineRequest(n=100, seed=3, plan=plan("ddim", 10), deadline=float("inf"))
    e.submit(request)
    e.run()
    assert request.error is None
    np.testing.assert_array_equal(request.points, alone(request.plan, 100, 3))
