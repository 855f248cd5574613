"""The request path with the engine on its own thread (the default) and on the event loop:
seeded answers bit for bit those of the code before the change (tests/app/data/request_path_points.json,
computed at 8833e25 on the shipped checkpoints, one request at a time), and the Prometheus
counters equal to the requests sent."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.config import Settings
from tests.app.conftest import AppFactory, metric, metric_samples, worker_held
from tests.conftest import ROOT

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "request_path_points.json"
NPY = {"accept": "application/x-npy"}


@pytest.fixture(scope="module")
def shipped_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding the shipped DDPM and the 1-evaluation student."""
    folder = tmp_path_factory.mktemp("models")
    for name in ("swiss-roll", "swiss-roll-v-student-1"):
        (folder / name).symlink_to(ROOT / "checkpoints" / name)
    return folder


def digest(body: bytes) -> tuple[list[int], str]:
    array = np.load(io.BytesIO(body))
    return list(array.shape), hashlib.sha256(array.astype("<f4").tobytes()).hexdigest()


def test_the_engine_keeps_its_thread_unless_asked_onto_the_loop_on_cpu() -> None:
    assert not Settings().engine_on_loop("cpu") and not Settings().engine_on_loop("cuda")
    assert Settings(engine_on="loop").engine_on_loop("cpu") and not Settings(engine_on="loop").engine_on_loop("cuda")


@pytest.mark.parametrize("engine_on", ["loop", "thread"])
async def test_seeded_answers_are_bit_for_bit_those_of_the_previous_code(running_app: AppFactory, shipped_models: Path, engine_on: str) -> None:
    """Alone, bit for bit; all at once (batched into shared ticks, on a smaller tick budget than the
    reference's), within float32 rounding of the solo answer: a batched matrix product may round the
    last bit differently, as it did before (benchmarks/load.py's tolerance)."""
    cases: list[dict[str, Any]] = json.loads(REFERENCE.read_text())
    async with running_app(models=str(shipped_models), default_model="swiss-roll", engine_on=engine_on, max_batch_points=2048) as r:
        assert r.service.worker.on_loop == (engine_on == "loop")
        alone = []
        for case in cases:
            response = await r.http.get("/sample", params=case["params"], headers=NPY)
            assert response.status_code == 200, response.text
            assert digest(response.content) == (case["shape"], case["sha256"]), case["params"]
            alone.append(np.load(io.BytesIO(response.content)))
        together = await asyncio.gather(*(r.http.get("/sample", params=case["params"], headers=NPY) for case in cases * 3))
        for case, solo, response in zip(cases * 3, alone * 3, together, strict=True):
            np.testing.assert_allclose(np.load(io.BytesIO(response.content)), solo, rtol=0, atol=1e-5, err_msg=str(case["params"]))


@pytest.mark.parametrize("engine_on", ["loop", "thread"])
async def test_metrics_count_exactly_the_requests_sent(running_app: AppFactory, engine_on: str) -> None:
    async with running_app(engine_on=engine_on) as r:
        gets = [r.http.get("/sample", params={"n": 3, "seed": i, "sampler": "ddim", "steps": 5}) for i in range(30)]
        posts = [r.http.post("/sample", json={"n": 5, "seed": i}) for i in range(10)]
        invalid = [r.http.get("/sample", params={"n": 0}) for _ in range(5)]
        health = [r.http.get("/healthz") for _ in range(7)]
        answers = await asyncio.gather(*gets, *posts, *invalid, *health)
        assert [a.status_code for a in answers] == [200] * 40 + [422] * 5 + [200] * 7
        samples = metric_samples((await r.http.get("/metrics")).text)
        requests = "swirl_requests_total"
        assert metric(samples, requests, endpoint="/sample", method="GET", status="200") == 30
        assert metric(samples, requests, endpoint="/sample", method="POST", status="200") == 10
        assert metric(samples, requests, endpoint="/sample", method="GET", status="422") == 5
        assert metric(samples, requests, endpoint="/healthz", method="GET", status="200") == 7
        assert metric(samples, "swirl_request_seconds_count", endpoint="/sample") == 45
        assert metric(samples, "swirl_points_generated_total", endpoint="sample") == 30 * 3 + 10 * 5
        assert metric(samples, "swirl_request_points_count") == 40  # one per answered sampling request
        assert metric(samples, "swirl_sample_seconds_count", sampler="ddim") == 30
        assert metric(samples, "swirl_sample_seconds_count", sampler="ddpm") == 10
        assert metric(samples, "swirl_requests_in_flight") == 0 and metric(samples, "swirl_queue_work") == 0
        assert metric(samples, "swirl_engine_tick_rows_sum") >= 30 * 3 * 5 + 10 * 5 * 50  # every row × step advanced
        assert 0 < metric(samples, "swirl_engine_ticks_total") == metric(samples, "swirl_engine_tick_rows_count")


async def test_a_handler_cancelled_while_waiting_takes_its_rows_out_of_the_engine(running_app: AppFactory) -> None:
    """httpx's ASGI transport runs the app in the client's task: cancelling it cancels the handler
    while it waits for the engine, and its job leaves the engine (disconnects, which a real server
    reports through receive(), are covered in tests/integration/test_reliability.py)."""
    async with running_app() as r:
        with worker_held(r.service) as gate:
            request = asyncio.create_task(r.http.get("/sample", params={"n": 100, "seed": 1}))
            while gate.waiting < 1:
                await asyncio.sleep(0.001)
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request
        for _ in range(500):
            if r.service.worker.queue_depth == 0:
                break
            await asyncio.sleep(0.01)
        samples = metric_samples((await r.http.get("/metrics")).text)
        assert r.service.worker.queue_depth == 0 and metric(samples, "swirl_cancelled_mid_chain_total") == 1
        assert (await r.http.get("/sample", params={"n": 100, "seed": 1})).status_code == 200
