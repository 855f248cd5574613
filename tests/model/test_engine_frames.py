"""When a request's trajectory frames complete: blocks of a request with a trajectory advance in
lockstep, so frames leave one after another through the chain (what a stream needs), and the
points are the same as with any other block order. Ticks are counted, not timed."""

from __future__ import annotations

import math

import numpy as np

from model.engine import EngineRequest
from tests.model.test_engine import engine, plan


def test_frames_complete_progressively_across_blocks() -> None:
    p = plan("ddim", 10)
    n, tick_rows = 256, 64  # 8 blocks of 32 rows, 2 blocks a tick: 4 ticks a step over all rows
    e = engine(tick_rows=tick_rows, block_rows=32)
    ticks = 0
    arrivals: list[tuple[int, int]] = []  # (tick, t)
    request = EngineRequest(n=n, seed=3, plan=p, trajectory_every=1, on_frame=lambda t, frame: arrivals.append((ticks, t)))
    e.submit(request)
    while not e.idle:
        ticks += 1
        e.tick()
    per_step = math.ceil(n / tick_rows)
    assert ticks == per_step * 10
    assert [t for _, t in arrivals] == [t for t, _ in alone_trajectory(p, n)]
    # x_T leaves once every block has started (the first step over all rows), then one frame a step
    assert arrivals[0][0] == per_step
    assert [tick for tick, _ in arrivals[1:]] == [per_step * (k + 1) for k in range(10)]


def alone_trajectory(p: object, n: int) -> list[tuple[int, np.ndarray]]:
    e = engine(tick_rows=10**6)
    request = EngineRequest(n=n, seed=3, plan=p, trajectory_every=1)  # type: ignore[arg-type]
    e.submit(request)
    e.run()
    return request.trajectory


def test_lockstep_blocks_give_the_same_points_and_frames() -> None:
    p = plan("ddpm")
    e = engine(tick_rows=64, block_rows=32)
    request = EngineRequest(n=200, seed=9, plan=p, trajectory_every=7)
    e.submit(request)
    e.run()
    whole = engine(tick_rows=10**6, block_rows=32)  # the same blocks, all in every tick
    reference = EngineRequest(n=200, seed=9, plan=p, trajectory_every=7)
    whole.submit(reference)
    whole.run()
    assert request.points is not None and reference.points is not None
    np.testing.assert_allclose(request.points, reference.points, atol=1e-6, rtol=0)
    assert [t for t, _ in request.trajectory] == [t for t, _ in reference.trajectory]
    for (_, a), (_, b) in zip(request.trajectory, reference.trajectory):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
