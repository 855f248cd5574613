"""The engine's scheduler and bookkeeping, with fake and oracle networks (no training involved).

Ticks are counted rather than timed, so these tests say the same on a busy machine.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.denoiser import FunctionDenoiser
from model.diffusion import SamplerSpec, SamplingPlan, make_plan
from model.engine import Cancelled, Engine, EngineRequest, NonFiniteError, PlanCoefficients, block_seed, sample, step_rows
from model.errors import InvalidParameter
from model.schedule import Schedule, ScheduleConfig

SCHEDULE = Schedule.from_config(ScheduleConfig())
MEAN = torch.tensor([0.8, -0.4])


def oracle(x: torch.Tensor, t: int) -> torch.Tensor:
    """The exact ε for N(MEAN, 0.25 I) data: a real, t-dependent network stand-in."""
    ab = SCHEDULE.alpha_bar(t)
    return math.sqrt(1 - ab) * (x - math.sqrt(ab) * MEAN) / (ab * 0.25 + 1 - ab)


class Recorder:
    """A denoiser that records every evaluation's row count and t values."""

    def __init__(self, fn=oracle) -> None:
        self.device = torch.device("cpu")
        self.calls: list[tuple[int, list[int]]] = []
        self.inner = FunctionDenoiser(fn)

    def __call__(self, x: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        ts = [t] * x.shape[0] if isinstance(t, int) else t.tolist()
        self.calls.append((x.shape[0], sorted(set(ts))))
        return self.inner(x, t)


def plan(sampler: str = "ddpm", steps: int | None = None, eta: float = 0.0) -> SamplingPlan:
    return make_plan(SCHEDULE, SamplerSpec(sampler, steps=steps, eta=eta))


def engine(denoiser: object | None = None, **kwargs: object) -> Engine:
    e = Engine("cpu", **kwargs)  # type: ignore[arg-type]
    e.add_model(None, denoiser or FunctionDenoiser(oracle))  # type: ignore[arg-type]
    return e


def alone(p: SamplingPlan, n: int, seed: int, **kwargs: object) -> np.ndarray:
    return sample(FunctionDenoiser(oracle), p, n, seed, **kwargs).x0.numpy()  # type: ignore[arg-type]


def join_mid_chain(e: Engine, requests: list[EngineRequest]) -> None:
    """Submit the requests one by one with 0, 1 or 2 ticks between them (later ones join earlier
    ones mid-chain), then run the engine until all are done."""
    for i, request in enumerate(requests):
        e.submit(request)
        for _ in range(i % 3):
            e.tick()
    e.run()


MIXED = [("ddpm", None, 0.0), ("ddim", 10, 0.0), ("ddim", 7, 0.5), ("dpmpp2m", 10, 0.0), ("dpmpp2m", 4, 0.0), ("ddim", 1, 1.0)]


def test_mixed_samplers_joining_mid_chain_get_bitwise_their_points_alone() -> None:
    e = engine(tick_rows=300, block_rows=64)
    requests = [EngineRequest(n=40 + 53 * i, seed=100 + i, plan=plan(*spec)) for i, spec in enumerate(MIXED * 2)]
    join_mid_chain(e, requests)
    for request in requests:
        assert request.error is None and request.points is not None
        np.testing.assert_array_equal(request.points, alone(request.plan, request.n, request.seed, block_rows=64))


def test_a_tick_runner_gets_each_rows_own_coefficients() -> None:
    """The CUDA-graph hook, played on CPU by a runner that does the eager tick from the (R, 8)
    coefficients it is handed: mixed ticks must hand it every row's own step."""
    calls: list[int] = []

    def runner_for(denoiser: object) -> object:
        def run(x: torch.Tensor, coef: torch.Tensor, d_prev: torch.Tensor | None, z: torch.Tensor | None, keep_d: bool, rows: int) -> object:
            calls.append(coef.shape[0])
            coef = coef.expand(rows, 8)  # (1, 8): one step for every row, as TickGraphs broadcasts it
            out = denoiser(x, coef[:, 0].long())  # type: ignore[operator]
            return step_rows(x, out, coef, d_prev, z, keep_d)

        return run

    e = engine(tick_rows=300, block_rows=64, tick_graphs=runner_for)
    requests = [EngineRequest(n=30 + 41 * i, seed=7 + i, plan=plan(*spec)) for i, spec in enumerate(MIXED)]
    for request in requests:
        e.submit(request)
        e.tick()
    e.run()
    assert any(rows > 1 for rows in calls) and 1 in calls  # mixed ticks (R rows) and shared-step ones (1 row, broadcast)
    for request in requests:
        assert request.error is None and request.points is not None
        np.testing.assert_allclose(request.points, alone(request.plan, request.n, request.seed, block_rows=64), rtol=0, atol=1e-6)


def test_one_evaluation_per_tick_serves_rows_of_every_sampler_with_their_own_t() -> None:
    rec = Recorder()
    e = engine(rec)
    for spec in MIXED[:4]:
        e.submit(EngineRequest(n=10, seed=1, plan=plan(*spec)))
    e.tick()
    assert len(rec.calls) == 1  # one network evaluation for four samplers
    e.tick()
    rows, ts = rec.calls[-1]
    assert rows == 40 and len(ts) > 1  # second steps differ: every row carries its own t


def test_a_small_request_is_never_held_behind_a_large_one() -> None:
    e = engine(tick_rows=1000, block_rows=500)
    big = EngineRequest(n=20_000, seed=0, plan=plan("ddim", 10))
    e.submit(big)
    for _ in range(3):
        e.tick()
    small = EngineRequest(n=10, seed=1, plan=plan("ddpm"))
    e.submit(small)
    ticks = 0
    big_before = big.remaining
    while not small.finished:
        e.tick()
        ticks += 1
    assert ticks == 50  # joined at the next tick and advanced on every one
    assert big_before - big.remaining >= 50 * 500  # while the big request kept at least a block per tick
    e.run()
    assert big.error is None and small.error is None


def test_a_long_request_is_not_starved_by_a_stream_of_small_ones() -> None:
    e = engine(tick_rows=100, block_rows=100)
    big = EngineRequest(n=400, seed=0, plan=plan("ddim", 10))  # 40 ticks of work with the whole budget
    e.submit(big)
    ticks = 0
    while not big.finished:
        e.submit(EngineRequest(n=100, seed=ticks, plan=plan("ddim", 10)))  # a full budget's worth, every tick
        e.tick()
        ticks += 1
        assert ticks < 1000, "the long request starved"
    assert big.error is None


def test_the_tick_budget_holds_but_always_makes_progress() -> None:
    rec = Recorder()
    e = engine(rec, tick_rows=256, block_rows=100)
    e.submit(EngineRequest(n=1000, seed=0, plan=plan("ddim", 5)))
    e.tick()
    assert rec.calls[-1][0] == 200  # blocks are taken while they fit: a third would overshoot, so it waits …
    e.tick()
    assert rec.calls[-1][0] == 300  # … earning the unused rows (at least half a budget), and runs on that credit
    e.tick()
    assert rec.calls[-1][0] == 200
    tiny = engine(Recorder(), tick_rows=1, block_rows=100)
    request = EngineRequest(n=100, seed=0, plan=plan("ddim", 2))
    tiny.submit(request)
    tiny.run()
    assert request.points is not None


@pytest.mark.parametrize("tick_rows", [64, 200, 10_000])
def test_points_do_not_depend_on_the_budget_or_the_block_schedule(tick_rows: int) -> None:
    p = plan("ddpm")
    e = engine(tick_rows=tick_rows, block_rows=64)
    request = EngineRequest(n=300, seed=9, plan=p)
    e.submit(request)
    e.run()
    assert request.points is not None
    np.testing.assert_array_equal(request.points, alone(p, 300, 9, block_rows=64))


def test_block_zero_draws_exactly_what_a_single_generator_would() -> None:
    p = plan("ddim", 1)
    result = sample(FunctionDenoiser(lambda x, t: torch.zeros_like(x)), p, 10, 42, trajectory_every=1)
    expected = torch.empty(10, 2).normal_(generator=torch.Generator().manual_seed(42))
    assert torch.equal(result.trajectory[0][1], expected)
    assert block_seed(42, 0) == 42
    assert len({block_seed(42, j) for j in range(100)}) == 100 and block_seed(42, 1) != block_seed(43, 1)


def test_cancelled_requests_leave_at_the_next_tick_and_stop_costing_rows() -> None:
    rec = Recorder()
    e = engine(rec)
    doomed = EngineRequest(n=500, seed=0, plan=plan("ddpm"))
    kept = EngineRequest(n=20, seed=1, plan=plan("ddpm"))
    e.submit(doomed)
    e.submit(kept)
    e.tick()
    doomed.cancel()
    ended = e.tick()
    assert doomed in ended and isinstance(doomed.error, Cancelled) and doomed.points is None
    assert rec.calls[-1][0] == 20  # only the kept request's rows were evaluated
    assert e.remaining_work == kept.remaining
    e.run()
    assert kept.points is not None
    np.testing.assert_array_equal(kept.points, alone(kept.plan, 20, 1))
    assert e.remaining_work == 0


def test_a_non_finite_request_fails_alone_and_the_engine_keeps_serving() -> None:
    e = engine()
    bad_start = torch.zeros(30, 2)
    bad_start[3, 0] = float("nan")
    bad = EngineRequest(n=30, seed=0, plan=plan("ddim", 5), x_T=bad_start)
    good = EngineRequest(n=30, seed=0, plan=plan("ddim", 5))
    e.submit(bad)
    e.submit(good)
    e.run()
    assert isinstance(bad.error, NonFiniteError) and bad.points is None
    assert good.error is None and good.points is not None
    np.testing.assert_array_equal(good.points, alone(good.plan, 30, 0))


def test_a_failing_model_fails_only_its_own_requests() -> None:
    def broken(x: torch.Tensor, t: int) -> torch.Tensor:
        raise RuntimeError("device lost")

    e = engine()
    e.add_model("broken", FunctionDenoiser(broken))
    failing = EngineRequest(n=5, seed=0, plan=plan("ddim", 3), model="broken")
    fine = EngineRequest(n=5, seed=0, plan=plan("ddim", 3))
    e.submit(failing)
    e.submit(fine)
    e.run()
    assert isinstance(failing.error, RuntimeError) and fine.points is not None


def test_rows_of_different_models_never_share_an_evaluation() -> None:
    a, b = Recorder(), Recorder(lambda x, t: 2 * oracle(x, t))
    e = Engine("cpu")
    e.add_model("a", a)
    e.add_model("b", b)
    e.submit(EngineRequest(n=7, seed=0, plan=plan("ddim", 3), model="a"))
    e.submit(EngineRequest(n=11, seed=0, plan=plan("ddim", 3), model="b"))
    e.run()
    assert [rows for rows, _ in a.calls] == [7, 7, 7] and [rows for rows, _ in b.calls] == [11, 11, 11]
    with pytest.raises(InvalidParameter, match="not loaded"):
        e.submit(EngineRequest(n=1, seed=0, plan=plan("ddim", 3), model="c"))


def test_trajectory_frames_arrive_in_order_across_blocks_and_match_the_kept_trajectory() -> None:
    p = plan("ddpm")
    seen: list[tuple[int, np.ndarray]] = []
    e = engine(tick_rows=64, block_rows=32)
    streamed = EngineRequest(n=100, seed=4, plan=p, trajectory_every=20, on_frame=lambda t, f: seen.append((t, f.copy())))
    kept = EngineRequest(n=100, seed=4, plan=p, trajectory_every=20)
    e.submit(streamed)
    e.submit(kept)
    e.run()
    assert [t for t, _ in seen] == [t for t, _ in kept.trajectory] == [50, 30, 10, 0]
    for (_, a), (_, b) in zip(seen, kept.trajectory):
        np.testing.assert_array_equal(a, b)
    assert streamed.trajectory == []  # streamed frames are not kept
    assert kept.points is not None
    np.testing.assert_array_equal(kept.trajectory[-1][1], kept.points)


def test_one_at_a_time_serves_first_come_first_served() -> None:
    rec = Recorder()
    e = engine(rec, one_at_a_time=True)
    first, second = EngineRequest(n=3, seed=0, plan=plan("ddim", 4)), EngineRequest(n=5, seed=0, plan=plan("ddim", 2))
    e.submit(first)
    e.submit(second)
    e.run()
    assert [rows for rows, _ in rec.calls] == [3, 3, 3, 3, 5, 5]


def test_bad_requests_are_refused_naming_the_field() -> None:
    e = engine()
    with pytest.raises(InvalidParameter) as info:
        e.submit(EngineRequest(n=0, seed=0, plan=plan("ddim", 3)))
    assert info.value.field == "n"
    with pytest.raises(InvalidParameter) as info:
        e.submit(EngineRequest(n=3, seed=0, plan=plan("ddim", 3), trajectory_every=4))
    assert info.value.field == "trajectory_every"


def test_step_rows_is_the_step_formula_row_by_row() -> None:
    g = torch.Generator().manual_seed(0)
    x, out, d_prev, z = (torch.randn(6, 2, generator=g, dtype=torch.float64) for _ in range(4))
    coef = torch.randn(6, 8, generator=g, dtype=torch.float64)
    x_next, d = step_rows(x, out, coef, d_prev, z, keep_d=True)
    assert d is not None
    for i in range(6):
        c = coef[i]
        torch.testing.assert_close(x_next[i], c[1] * x[i] + c[2] * out[i] + c[3] * d_prev[i] + c[4] * z[i], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(d[i], c[5] * x[i] + c[6] * out[i], rtol=1e-12, atol=1e-12)


def test_in_place_step_gives_the_same_bits_and_reuses_x() -> None:
    """The eager tick updates x in place (overwriting the network output and the noise): the
    same multiplies and adds in the same order as the allocating form, for every coefficient form."""
    g = torch.Generator().manual_seed(2)
    x, out, d_prev, z = (torch.randn(300, 2, generator=g) for _ in range(4))
    coefs = PlanCoefficients(plan("dpmpp2m", 10))
    for k in range(coefs.length):
        table = torch.from_numpy(coefs.table[k : k + 1]).repeat(300, 1)
        columns = [table[:, i : i + 1].contiguous() for i in range(8)]
        for coef in (coefs.rows[k], table, columns):
            expected, d_expected = step_rows(x, out, coef, d_prev, z, keep_d=True)
            xi, oi, zi = x.clone(), out.clone(), z.clone()
            got, d_got = step_rows(xi, oi, coef, d_prev, zi, keep_d=True, inplace=True)
            assert got.data_ptr() == xi.data_ptr()  # x itself became x'
            assert torch.equal(got, expected) and d_got is not None and d_expected is not None and torch.equal(d_got, d_expected)


def test_function_denoiser_returns_a_tensor_the_engine_may_overwrite() -> None:
    x = torch.randn(5, 2)
    out = FunctionDenoiser(lambda x, t: x)(x, 3)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()
    result = sample(FunctionDenoiser(lambda x, t: x), plan("ddim", 4), 50, 7).x0  # identity network: runs, finite
    assert torch.isfinite(result).all()


def test_scalar_coefficients_round_exactly_like_the_float32_table() -> None:
    """A tick whose rows share one step multiplies by Python floats; a mixed tick by the table's
    float32 columns. Both must give every row the same bits, or a request's points would depend
    on its company."""
    g = torch.Generator().manual_seed(1)
    x, out, d_prev, z = (torch.randn(500, 2, generator=g) for _ in range(4))
    coefs = PlanCoefficients(plan("dpmpp2m", 10))
    mixed = torch.from_numpy(coefs.table[3:4]).repeat(500, 1)
    for k in range(coefs.length):
        row = coefs.rows[k]
        assert all(isinstance(v, float) for v in row)
        table = torch.from_numpy(coefs.table[k : k + 1]).repeat(500, 1)
        a, da = step_rows(x, out, row, d_prev, z, keep_d=True)
        b, db = step_rows(x, out, table, d_prev, z, keep_d=True)
        assert torch.equal(a, b) and da is not None and db is not None and torch.equal(da, db)
    # and a row stays bitwise the same next to rows of another step
    both = torch.cat([torch.from_numpy(coefs.table[5:6]).repeat(500, 1), mixed])
    c, _ = step_rows(torch.cat([x, x]), torch.cat([out, out]), both, torch.cat([d_prev, d_prev]), torch.cat([z, z]), keep_d=False)
    alone, _ = step_rows(x, out, coefs.rows[5], d_prev, z, keep_d=False)
    assert torch.equal(c[:500], alone)
    assert not torch.equal(c[500:], alone)


def test_throughput_is_measured_from_busy_ticks() -> None:
    e = engine(tick_rows=64)
    before = e.throughput
    e.submit(EngineRequest(n=256, seed=0, plan=plan("ddim", 10)))
    e.run()
    assert e.throughput != before and e.throughput > 0


def test_a_flood_on_one_model_never_keeps_another_model_out_of_the_ticks() -> None:
    """Aged large requests on model "a" fill the row budget on their own; a small request on
    model "b" still takes part in every tick from its first, so it ends after exactly its
    own number of steps (and its points are those it gets alone)."""
    e = Engine("cpu", tick_rows=64, block_rows=64)
    e.add_model("a", FunctionDenoiser(oracle))
    e.add_model("b", FunctionDenoiser(oracle))
    ddpm = plan("ddpm")
    flood = [EngineRequest(n=640, seed=k, plan=ddpm, model="a") for k in range(4)]
    with torch.inference_mode():
        for request in flood:
            e.submit(request)
            request.submitted_at -= 1000.0  # long in the queue: aging puts them ahead of anything new
        for _ in range(3):
            e.tick()
        small = EngineRequest(n=5, seed=7, plan=plan("ddim", steps=10), model="b")
        e.submit(small)
        ticks = 0
        while not small.finished:
            e.tick()
            ticks += 1
    assert ticks == 10, ticks
    assert small.error is None and small.points is not None
    np.testing.assert_allclose(small.points, alone(plan("ddim", steps=10), 5, 7), atol=1e-6)
    assert not any(r.finished for r in flood)  # the flood kept its share meanwhile
    assert all(r.remaining < r.work for r in flood[:1])


def test_next_to_a_small_request_a_full_block_runs_in_every_tick() -> None:
    """The CPU defaults in miniature (blocks as large as the budget): a block may overshoot the
    budget by the small requests' rows in the tick (at most an eighth of it), so the big request
    keeps a block in every tick beside a small one (it loses no ticks), and the small request's
    ticks are only its own rows longer than the big request's alone."""
    rec = Recorder()
    e = engine(rec, tick_rows=1000, block_rows=1000)
    big = EngineRequest(n=20_000, seed=0, plan=plan("ddim", 10))
    e.submit(big)
    e.tick()
    small = EngineRequest(n=10, seed=1, plan=plan("ddpm"))
    e.submit(small)
    first = len(rec.calls)
    while not small.finished:
        e.tick()
    rows = [r for r, _ in rec.calls[first:]]
    assert rows == [1010] * 50
    e.run()
    assert big.error is None and small.error is None
    np.testing.assert_array_equal(small.points, alone(small.plan, 10, 1))
