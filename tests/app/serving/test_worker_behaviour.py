"""The engine behind /sample, in-process: crowd invariance, admission by work, cancellation, timeouts, NaN."""

from __future__ import annotations

import asyncio
import math
import sys
import threading
import time
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from app.config import Settings
from tests.app.conftest import AppFactory, as_points, assert_names_field, metric, metric_samples, worker_held


async def test_concurrent_requests_share_ticks_yet_each_gets_its_points_alone(running_app: AppFactory) -> None:
    """16 concurrent seeded requests share the engine's ticks, yet each gets the points it gets alone."""
    params: list[dict[str, Any]] = [{"n": 10 + 7 * i, "seed": 1000 + i, "sampler": "ddim", "steps": 8, "eta": 0.5} for i in range(16)]
    async with running_app(response_cache_bytes=0) as r:  # repeats must be sampled, not served from the cache
        alone = [as_points((await r.http.post("/sample", json=p)).json()) for p in params]
        before = metric_samples((await r.http.get("/metrics")).text)
        with worker_held(r.service) as gate:  # let them pile up, so that they must share ticks
            pending = [asyncio.create_task(r.http.post("/sample", json=p)) for p in params]
            deadline = time.monotonic() + 10
            while r.service.worker.queue_depth < len(params) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            gate.set()
            responses = await asyncio.gather(*pending)
        after = metric_samples((await r.http.get("/metrics")).text)
    for p, response, expected in zip(params, responses, alone):
        assert response.status_code == 200
        np.testing.assert_allclose(as_points(response.json()), expected, atol=1e-5, rtol=0, err_msg=str(p))
    ticks = metric(after, "swirl_engine_ticks_total") - metric(before, "swirl_engine_ticks_total")
    assert ticks < 16 * 8 / 2, f"{ticks} ticks for 16 eight-step requests: they did not share ticks"
    assert metric(after, "swirl_request_points_sum") - metric(before, "swirl_request_points_sum") == sum(p["n"] for p in params)


async def test_requests_with_different_samplers_are_not_mixed_up(running_app: AppFactory) -> None:
    params = [
        {"n": 20, "seed": 1, "sampler": "ddpm"},
        {"n": 20, "seed": 1, "sampler": "ddim", "steps": 5},
        {"n": 20, "seed": 1, "sampler": "dpmpp2m", "steps": 5},
        {"n": 20, "seed": 1, "sampler": "ddim", "steps": 5, "trajectory_every": 2},
        {"n": 20, "seed": 1, "sampler": "ddim", "steps": 6},
    ] * 2
    async with running_app() as r:
        alone = [(await r.http.post("/sample", json=p)).json() for p in params[:5]]
        together = await asyncio.gather(*(r.http.post("/sample", json=p) for p in params))
    for i, response in enumerate(together):
        body = response.json()
        expected = alone[i % 5]
        assert body["sampler"] == expected["sampler"] and body["steps"] == expected["steps"]
        np.testing.assert_allclose(as_points(body), as_points(expected), atol=1e-5)
        assert ("trajectory" in body) == ("trajectory" in expected)


async def test_a_full_queue_sheds_load_with_503_and_retry_after(running_app: AppFactory) -> None:
    params = [{"n": 500, "seed": i} for i in range(12)]
    async with running_app(max_queue=1, batching=False) as r:
        with worker_held(r.service) as gate:
            # the worker takes one job and waits at the gate; one more fits in the queue; the rest are shed
            pending = [asyncio.create_task(r.http.post("/sample", json=p)) for p in params]
            deadline = time.monotonic() + 10
            while sum(t.done() for t in pending) < len(params) - 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            gate.set()
            responses = await asyncio.gather(*pending)
        shed = [resp for resp in responses if resp.status_code == 503]
        served = [(p, resp) for p, resp in zip(params, responses) if resp.status_code == 200]
        assert len(shed) + len(served) == len(params), [resp.status_code for resp in responses]
        assert 1 <= len(served) <= 2 and len(shed) >= len(params) - 2
        for resp in shed:
            assert resp.headers["retry-after"].isdigit() and int(resp.headers["retry-after"]) >= 1
            assert "SWIRL_MAX_QUEUE" in resp.json()["error"]
        for p, resp in served:  # the admitted ones are whole and correct
            alone = await r.http.post("/sample", json=p)
            np.testing.assert_array_equal(as_points(resp.json()), as_points(alone.json()))
        samples = metric_samples((await r.http.get("/metrics")).text)
        assert metric(samples, "swirl_rejected_total", reason="queue_full") == len(shed)
        assert metric(samples, "swirl_requests_total", endpoint="/sample", method="POST", status="503") == len(shed)
        assert (await r.http.get("/readyz")).json()["queue_depth"] == 0


async def test_request_timeout_is_504(running_app: AppFactory) -> None:
    async with running_app(request_timeout_s=0.2) as r:
        with worker_held(r.service):  # the chain cannot finish in time
            response = await r.http.get("/sample", params={"n": 100, "seed": 1})
        assert response.status_code == 504
        assert "SWIRL_REQUEST_TIMEOUT_S" in response.json()["error"]
        samples = metric_samples((await r.http.get("/metrics")).text)
        assert metric(samples, "swirl_rejected_total", reason="timeout") == 1
        assert metric(samples, "swirl_rejected_total", reason="client_gone") == 0
        assert (await r.http.get("/sample", params={"n": 100, "seed": 1})).status_code == 200


async def test_non_finite_output_is_a_500_that_says_so_and_the_worker_survives(running_app: AppFactory) -> None:
    async with running_app(response_cache_bytes=0) as r:  # the weights change in place below, under the same version
        net = r.service.checkpoint.net
        good = await r.http.get("/sample", params={"n": 30, "seed": 5})
        saved = net.out.bias.detach().clone()
        with torch.no_grad():
            net.out.bias.fill_(math.nan)  # forward_with_bias reads this tensor on every step
        try:
            for method in ("GET", "POST"):
                if method == "GET":
                    poisoned = await r.http.get("/sample", params={"n": 30, "seed": 5})
                else:
                    poisoned = await r.http.post("/sample", json={"n": 30, "seed": 5, "sampler": "ddim", "steps": 4})
                assert poisoned.status_code == 500
                body = poisoned.json()
                assert "non-finite" in body["error"] and "NaN" in body["error"]
                assert "points" not in body
        finally:
            with torch.no_grad():
                net.out.bias.copy_(saved)
        healed = await r.http.get("/sample", params={"n": 30, "seed": 5})
        assert healed.status_code == 200
        np.testing.assert_array_equal(as_points(healed.json()), as_points(good.json()))
        samples = metric_samples((await r.http.get("/metrics")).text)
        assert metric(samples, "swirl_requests_total", endpoint="/sample", method="GET", status="500") == 1


async def test_admission_counts_work_and_refuses_at_once_when_the_wait_would_outlast_the_timeout(running_app: AppFactory) -> None:
    async with running_app(request_timeout_s=5.0) as r:
        with worker_held(r.service) as gate:
            big = asyncio.create_task(r.http.get("/sample", params={"n": 20_000, "seed": 1}))  # 1M points × evaluations
            deadline = time.monotonic() + 10
            while r.service.worker.queue_depth < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            r.service.worker.engine.throughput = 1e5  # as if the device did 100k rows × steps per second: 10 s of backlog
            refused = await r.http.get("/sample", params={"n": 10, "seed": 2})
            assert refused.status_code == 503
            assert "SWIRL_REQUEST_TIMEOUT_S" in refused.json()["error"]
            assert int(refused.headers["retry-after"]) >= 10  # computed from the backlog
            gate.set()
            assert (await big).status_code == 200
        samples = metric_samples((await r.http.get("/metrics")).text)
        assert metric(samples, "swirl_rejected_total", reason="estimated_wait") == 1
        assert (await r.http.get("/sample", params={"n": 10, "seed": 2})).status_code == 200


async def test_max_queue_work_bounds_points_times_evaluations(running_app: AppFactory) -> None:
    async with running_app(max_queue_work=20_000) as r:
        too_big = await r.http.get("/sample", params={"n": 500, "seed": 1})  # 500 × 50 > 20,000: never admissible
        assert_names_field(too_big, "n")
        assert "SWIRL_MAX_QUEUE_WORK" in too_big.json()["error"]
        assert (await r.http.get("/sample", params={"n": 500, "seed": 1, "sampler": "ddim", "steps": 10})).status_code == 200
        with worker_held(r.service):
            first = asyncio.create_task(r.http.get("/sample", params={"n": 300, "seed": 1}))  # 15,000
            deadline = time.monotonic() + 10
            while r.service.worker.queue_depth < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            second = await r.http.get("/sample", params={"n": 300, "seed": 2})  # 15,000 more: over the bound
            assert second.status_code == 503 and "SWIRL_MAX_QUEUE_WORK" in second.json()["error"]
            assert int(second.headers["retry-after"]) >= 1
        assert (await first).status_code == 200


async def test_a_request_that_times_out_mid_chain_leaves_the_engine(running_app: AppFactory) -> None:
    async with running_app(request_timeout_s=0.5) as r:
        engine = r.service.worker.engine
        tick = engine.tick
        release = threading.Event()
        ticks = 0

        def slow_after_three() -> Any:
            nonlocal ticks
            ticks += 1
            if ticks > 3:
                release.wait(30)
            return tick()

        engine.tick = slow_after_three  # type: ignore[method-assign]
        try:
            response = await r.http.get("/sample", params={"n": 50, "seed": 3})
            assert response.status_code == 504
        finally:
            release.set()
            engine.tick = tick  # type: ignore[method-assign]
        deadline = time.monotonic() + 10
        while engine.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert engine.in_flight == 0 and engine.remaining_work == 0
        samples = metric_samples((await r.http.get("/metrics")).text)
        assert metric(samples, "swirl_cancelled_mid_chain_total") == 1
        assert metric(samples, "swirl_requests_in_flight") == 0 and metric(samples, "swirl_queue_work") == 0
        assert (await r.http.get("/sample", params={"n": 50, "seed": 3})).status_code == 200


async def test_forward_goes_through_bounded_admission(running_app: AppFactory) -> None:
    async with running_app(max_forward_points=1000) as r:
        gate = r.service.forward_gate
        assert gate.enter(900)  # as if 900 points were being computed
        try:
            busy = await r.http.get("/forward", params={"t": 10, "n": 500, "seed": 1})
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
            assert "SWIRL_MAX_FORWARD_POINTS" in busy.json()["error"]
            assert (await r.http.get("/forward", params={"t": 10, "n": 100, "seed": 1})).status_code == 200
        finally:
            gate.leave(900)
        assert gate.busy == 0
        assert (await r.http.get("/forward", params={"t": 10, "n": 500, "seed": 1})).status_code == 200


async def test_each_server_process_sets_the_gil_switch_interval(running_app: AppFactory) -> None:
    before = sys.getswitchinterval()
    try:
        async with running_app(switch_interval_ms=2.0) as r:
            assert (await r.http.get("/healthz")).status_code == 200
            assert sys.getswitchinterval() == pytest.approx(0.002)
    finally:
        sys.setswitchinterval(before)
    for bad in (0, -1, 101):
        with pytest.raises(ValidationError, match="switch_interval_ms"):
            Settings(switch_interval_ms=bad)


def test_fastapi_native_telemetry_only_when_asked_for() -> None:
    from app.main import create_app

    assert not any(create_app(Settings(otel=False))._telemetry[kind] for kind in ("tracing", "metrics", "logs"))  # type: ignore[literal-required]
    assert all(create_app(Settings(otel=True))._telemetry[kind] for kind in ("tracing", "metrics", "logs"))  # type: ignore[literal-required]
