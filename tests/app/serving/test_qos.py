"""Priorities and deadlines through the service: the parameters, the trusted header, admission
by class, 504 at once for a deadline that cannot be met, and a deadline that passes mid-chain."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

from app.serving.worker import SampleJob
from model.diffusion import SamplerSpec
from model.engine import DeadlineExceeded
from tests.app.conftest import AppFactory, as_points, assert_names_field, metric, metric_samples, worker_held

BAD = [
    ("priority=urgent", "priority"),
    ("priority=", "priority"),
    ("timeout_ms=0", "timeout_ms"),
    ("timeout_ms=-5", "timeout_ms"),
    ("timeout_ms=1.5", "timeout_ms"),
    ("timeout_ms=99999999999999", "timeout_ms"),
]


async def test_bad_priorities_and_timeouts_are_422_naming_the_field(running_app: AppFactory) -> None:
    async with running_app() as r:
        for query, field in BAD:
            assert_names_field(await r.http.get(f"/sample?n=5&{query}"), field)
            key, _, value = query.partition("=")
            body: dict[str, Any] = {"n": 5, key: value if key == "priority" else float(value) if "." in value else int(value)}
            assert_names_field(await r.http.post("/sample", json=body), field)


async def test_priority_and_timeout_change_no_point(running_app: AppFactory) -> None:
    async with running_app() as r:
        plain = (await r.http.get("/sample?n=50&seed=3&sampler=ddim&steps=5")).json()
        for extra in ("priority=high", "priority=low&timeout_ms=30000", "timeout_ms=20000"):
            response = await r.http.get(f"/sample?n=50&seed=3&sampler=ddim&steps=5&{extra}")
            assert response.status_code == 200, response.text
            np.testing.assert_array_equal(as_points(response.json()), as_points(plain))


async def test_a_deadline_the_estimate_says_cannot_be_met_is_504_at_once_without_sampling(running_app: AppFactory) -> None:
    async with running_app() as r:
        before = metric_samples((await r.http.get("/metrics")).text)
        started = time.perf_counter()
        response = await r.http.get("/sample?n=5000&sampler=ddpm&timeout_ms=1")
        elapsed = time.perf_counter() - started
        after = metric_samples((await r.http.get("/metrics")).text)
    assert response.status_code == 504 and "estimated time alone" in response.json()["error"], response.text
    assert elapsed < 1.0
    assert metric(after, "swirl_engine_ticks_total") == metric(before, "swirl_engine_ticks_total")
    assert metric(after, "swirl_rejected_total", reason="deadline_unmeetable") == 1


async def test_a_deadline_that_passes_mid_chain_takes_the_request_out_of_the_engine(running_app: AppFactory) -> None:
    """The engine's own clock: a job with a deadline held past it leaves at the next tick with
    DeadlineExceeded and no points, and costs no more rows; its company is unharmed."""
    async with running_app() as r:
        worker = r.service.worker
        late = SampleJob(n=500, seed=1, spec=SamplerSpec("ddpm"), timeout_s=0.3)
        kept = SampleJob(n=20, seed=2, spec=SamplerSpec("ddim", steps=5))
        with worker_held(r.service) as gate:
            worker.submit(late)
            worker.submit(kept)
            await asyncio.sleep(0.5)
            gate.set()
        with pytest.raises(DeadlineExceeded):
            await asyncio.wrap_future(late.future)
        assert late.request is not None and late.request.points is None
        await asyncio.wrap_future(kept.future)
        alone = (await r.http.get("/sample?n=20&seed=2&sampler=ddim&steps=5")).json()
        np.testing.assert_array_equal(kept.future.result().points, np.asarray(alone["points"], dtype=np.float32))
        samples = metric_samples((await r.http.get("/metrics")).text)
        assert metric(samples, "swirl_rejected_total", reason="deadline") == 1
        assert worker.pending_work == 0


async def test_a_timeout_ms_that_passes_while_queued_is_504(running_app: AppFactory) -> None:
    async with running_app() as r:
        with worker_held(r.service):
            response = await r.http.get("/sample?n=20&seed=1&timeout_ms=200")
        assert response.status_code == 504 and "timeout_ms" in response.json()["error"], response.text


async def test_high_priority_goes_first_and_is_admitted_past_a_low_backlog(running_app: AppFactory) -> None:
    """Low requests whose estimated wait nearly reaches the timeout: another low one is refused
    (503); a high one as large is admitted (the lows are not ahead of it) and, first in every
    tick, ends before all of them, although it came last (by age alone it would end last)."""
    async with running_app(request_timeout_s=5.0) as r:
        worker = r.service.worker
        worker.engine.throughput = 140_000.0  # rows × steps per second: eight lows are 4.6 s of work, a ninth would make 5.1 s
        done: list[str] = []

        async def send(label: str, query: str) -> int:
            response = await r.http.get(f"/sample?{query}")
            done.append(label)
            return response.status_code

        with worker_held(r.service) as gate:
            lows = [asyncio.create_task(send(f"low{k}", f"n=8000&seed={k}&sampler=ddim&steps=10&priority=low")) for k in range(8)]
            while worker.queue_depth < 8:
                await asyncio.sleep(0.01)
            refused = await send("low-refused", "n=8000&seed=99&sampler=ddim&steps=10&priority=low")
            high = asyncio.create_task(send("high", "n=8000&seed=50&sampler=ddim&steps=10&priority=high"))
            while worker.queue_depth < 9:
                await asyncio.sleep(0.01)
            gate.set()
            statuses = await asyncio.gather(high, *lows)
    assert refused == 503
    assert statuses == [200] * 9
    assert done.index("high") < min(done.index(f"low{k}") for k in range(8))


async def test_the_trusted_priority_header_wins_and_a_bad_value_is_422(running_app: AppFactory) -> None:
    async with running_app(priority_header="Swirl-Priority") as r:
        seen: list[str] = []
        submit = r.service.worker.submit

        def spy(job: SampleJob, *args: Any, **kwargs: Any) -> Any:
            seen.append(job.priority)
            return submit(job, *args, **kwargs)

        r.service.worker.submit = spy  # type: ignore[method-assign]
        assert (await r.http.get("/sample?n=5&priority=low", headers={"Swirl-Priority": "HIGH"})).status_code == 200
        assert (await r.http.post("/sample", json={"n": 5, "priority": "high"}, headers={"Swirl-Priority": "low"})).status_code == 200
        assert (await r.http.get("/sample?n=5&priority=low")).status_code == 200
        assert seen == ["high", "low", "low"]
        assert_names_field(await r.http.get("/sample?n=5", headers={"Swirl-Priority": "urgent"}), "Swirl-Priority")
    async with running_app() as r:  # not configured: the header is anybody's, so it is ignored
        assert (await r.http.get("/sample?n=5", headers={"Swirl-Priority": "urgent"})).status_code == 200


async def test_v2_takes_priority_and_timeout_ms_as_request_parameters(running_app: AppFactory) -> None:
    def infer(n: int, **parameters: Any) -> dict[str, Any]:
        return {"inputs": [{"name": "n", "datatype": "INT64", "shape": [1], "data": [n]}], "parameters": parameters}

    async with running_app() as r:
        ok = await r.http.post("/v2/models/swirl/infer", json=infer(5, priority="high", timeout_ms=30_000))
        assert ok.status_code == 200, ok.text
        late = await r.http.post("/v2/models/swirl/infer", json=infer(5000, timeout_ms=1))
        assert late.status_code == 504 and "estimated time alone" in late.json()["error"]
        bad = await r.http.post("/v2/models/swirl/infer", json=infer(5, priority="urgent"))
        assert bad.status_code == 400 and "priority" in bad.json()["error"]
        negative = await r.http.post("/v2/models/swirl/infer", json=infer(5, timeout_ms=-1))
        assert negative.status_code == 400 and "timeout_ms" in negative.json()["error"]
