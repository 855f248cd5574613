"""POST /log_prob and GET /score in-process: the contract, both body formats, every bad input, and
that density work shares the engine's thread without holding /sample up."""

from __future__ import annotations

import asyncio
import io
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from asgi_lifespan import LifespanManager

from app.main import create_app
from model.checkpoint import load_checkpoint
from model.denoiser import DifferentiableNetDenoiser, NetDenoiser
from model.likelihood import log_prob
from model.score import lattice, score
from tests.app.conftest import AppFactory
from tests.conftest import ROOT, make_settings

NPY = "application/x-npy"
POINTS = [[0.5, -1.3], [-0.2, 0.4], [2.5, 2.5], [-1.0, -0.8]]


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def assert_names(response: httpx.Response, field: str, status: int = 422) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"].startswith(f"{field}:") or f"{field}:" in body["error"], body
    return body


@pytest.fixture
async def app(running_app: AppFactory) -> AsyncIterator[Any]:
    async with running_app(max_log_prob_points=500) as running:
        yield running


async def test_log_prob_answers_the_models_own_flow_in_both_spaces(app: Any, tiny_checkpoint: Path) -> None:
    response = await app.http.post("/log_prob", json={"points": POINTS})
    assert response.status_code == 200, response.text
    body = response.json()
    checkpoint = load_checkpoint(tiny_checkpoint)
    T = checkpoint.schedule.timesteps
    assert set(body) == {"n", "log_prob", "model", "model_name", "space", "evaluations"}
    assert body["n"] == 4 and body["space"] == "model" and body["evaluations"] == 2 * T - 1 and body["model"] == checkpoint.sha256
    expected = log_prob(DifferentiableNetDenoiser(checkpoint.net, "cpu"), checkpoint.schedule, checkpoint.prediction, np.array(POINTS))
    np.testing.assert_allclose(body["log_prob"], expected, rtol=0, atol=1e-9)
    assert response.headers["Swirl-Evaluations"] == str(2 * T - 1) and "compute;dur=" in response.headers["Server-Timing"]
    # the same points in the roll's own coordinates: densities per unit of data area
    norm = checkpoint.normalisation
    raw = norm.denormalise(np.array(POINTS)).tolist()
    data = (await app.http.post("/log_prob", json={"points": raw, "space": "data"})).json()
    assert data["space"] == "data"
    np.testing.assert_allclose(data["log_prob"], expected - 2 * math.log(norm.scale), rtol=0, atol=1e-6)


async def test_npy_body_and_npy_answer(app: Any) -> None:
    points = np.array(POINTS, dtype=np.float32)
    as_json = (await app.http.post("/log_prob", json={"points": points.tolist()})).json()
    response = await app.http.post("/log_prob", content=npy_bytes(points), headers={"content-type": NPY, "accept": NPY})
    assert response.status_code == 200 and response.headers["content-type"] == NPY
    values = np.load(io.BytesIO(response.content), allow_pickle=False)
    assert values.dtype == np.float64 and values.shape == (4,)
    np.testing.assert_allclose(values, as_json["log_prob"], rtol=0, atol=1e-12)
    # options of an .npy body come from the query string
    data = await app.http.post("/log_prob", params={"space": "data"}, content=npy_bytes(points), headers={"content-type": NPY})
    assert data.json()["space"] == "data"


async def test_bad_log_prob_bodies_name_the_field(app: Any) -> None:
    post = app.http.post
    with_nan = np.array([[0.0, 0.0], [np.nan, 1.0], [0.0, np.inf]])
    body = assert_names(await post("/log_prob", content=npy_bytes(with_nan), headers={"content-type": NPY}), "points[1]")
    assert body["detail"][0]["loc"] == ["body", "points[1]"]
    # finite but far beyond the roll (the fuzzer's 1e170 overflowed the ODE into a 500 before this rule)
    far = assert_names(await post("/log_prob", json={"points": [[0.0, 0.0], [0.0, 1.0e170]], "space": "data"}), "points[1]")
    assert "within" in far["error"]
    assert (await post("/log_prob", json={"points": [[0.0, 9_999.0]]})).status_code == 200
    assert_names(await post("/log_prob", json={"points": [[1.0, 2.0, 3.0]]}), "points")
    assert_names(await post("/log_prob", json={"points": [[1.0], [2.0, 3.0]]}), "points")
    assert_names(await post("/log_prob", json={"points": []}), "points")
    assert_names(await post("/log_prob", json={"points": [["a", "b"]]}), "points")
    assert_names(await post("/log_prob", json={"points": "nope"}), "points")
    assert_names(await post("/log_prob", json={"space": "model"}), "points")
    assert "SWIRL_MAX_LOG_PROB_POINTS" in assert_names(await post("/log_prob", json={"points": [[0.0, 0.0]] * 501}), "points")["error"]
    assert_names(await post("/log_prob", json={"points": POINTS, "space": "raw"}), "space")
    assert_names(await post("/log_prob", json={"points": POINTS, "temperature": 2}), "temperature")
    assert_names(await post("/log_prob", json={"points": POINTS, "model": "nope"}), "model")
    assert_names(await post("/log_prob", json=[[0.0, 0.0]]), "body")
    assert_names(await post("/log_prob", content=b"{not json", headers={"content-type": "application/json"}), "body")
    assert_names(await post("/log_prob", content=b"\x93NUMPY garbage", headers={"content-type": NPY}), "body")
    assert_names(await post("/log_prob", content=npy_bytes(np.array([["a", "b"]])), headers={"content-type": NPY}), "points")
    assert (await post("/log_prob", json={"points": POINTS}, headers={"accept": "text/csv"})).status_code == 406


async def test_log_prob_body_limit_comes_from_its_point_limit_and_holds_before_the_body_is_read(app: Any) -> None:
    limit = 4096 + 64 * 500
    # a body sized for 500 points passes the edge (16 KiB would not), a bigger one is a 413 at once
    ok = await app.http.post("/log_prob", json={"points": [[-1.2345678901234567, 1.2345678901234567]] * 500})
    assert ok.status_code == 200, ok.text
    too_large = await app.http.post("/log_prob", content=b"x" * (limit + 1), headers={"content-type": "application/json"})
    assert "SWIRL_MAX_LOG_PROB_POINTS" in assert_names(too_large, "body", status=413)["error"]

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(limit // 1000 + 2):
            yield b" " * 1000

    streamed = await app.http.post("/log_prob", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in streamed.request.headers
    assert_names(streamed, "body", status=413)
    # /sample keeps its own limit (SWIRL_MAX_BODY_BYTES plus room for u per point: under 1 MB here)
    assert (await app.http.post("/sample", content=b"x" * 1_000_000, headers={"content-type": "application/json"})).status_code == 413


async def test_score_is_the_networks_minus_eps_over_sigma_on_the_lattice(app: Any, tiny_checkpoint: Path) -> None:
    response = await app.http.get("/score", params={"t": 7, "grid": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert {"t", "grid", "bounds", "points", "score", "model", "model_name"} <= set(body)
    assert body["t"] == 7 and body["grid"] == 5 and body["bounds"] == [-3.0, 3.0]
    np.testing.assert_array_equal(body["points"], lattice(5))
    checkpoint = load_checkpoint(tiny_checkpoint)
    expected = score(NetDenoiser(checkpoint.net, "cpu"), checkpoint.schedule, checkpoint.prediction, torch.from_numpy(lattice(5)), 7).numpy()
    np.testing.assert_allclose(body["score"], expected, rtol=1e-5, atol=1e-5)
    T = checkpoint.schedule.timesteps
    for params, field in (({"t": 0}, "t"), ({"t": T + 1}, "t"), ({"t": 3, "grid": 65}, "grid"), ({"t": 3, "grid": 1}, "grid"), ({"t": 1.5}, "t"), ({}, "t")):
        assert_names(await app.http.get("/score", params=params), field)


async def test_a_log_prob_flood_does_not_hold_sample_up(running_app: AppFactory) -> None:
    async with running_app(max_log_prob_points=20_000) as running:
        big = np.random.default_rng(0).uniform(-2, 2, size=(6000, 2)).tolist()
        floods = [asyncio.create_task(running.http.post("/log_prob", json={"points": big})) for _ in range(2)]
        await asyncio.sleep(0.2)  # the flows are in flight
        started = time.perf_counter()
        sample = await running.http.get("/sample", params={"n": 200, "sampler": "ddim", "steps": 10, "seed": 1})
        sample_s = time.perf_counter() - started
        assert sample.status_code == 200
        assert not all(f.done() for f in floods)  # /sample finished while the density work was still running
        done = await asyncio.gather(*floods)
        flood_s = time.perf_counter() - started
        assert all(r.status_code == 200 for r in done)
        assert sample_s < flood_s / 2


async def test_log_prob_work_that_could_never_run_is_refused_naming_points(running_app: AppFactory) -> None:
    async with running_app(max_queue_work=10_000) as running:
        response = await running.http.post("/log_prob", json={"points": POINTS * 20})
        assert "SWIRL_MAX_QUEUE_WORK" in assert_names(response, "points")["error"]


async def test_a_distilled_student_has_no_density_and_says_whose_to_ask() -> None:
    app = create_app(make_settings(ROOT / "checkpoints" / "swiss-roll-v-student-2"))
    async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://swirl.test") as http:
            for response in (await http.post("/log_prob", json={"points": POINTS}), await http.get("/score", params={"t": 12})):
                assert "swiss-roll-v" in assert_names(response, "model")["error"]


async def test_a_log_prob_past_its_timeout_is_a_504_and_leaves_the_engine(running_app: AppFactory) -> None:
    async with running_app(request_timeout_s=0.2, max_log_prob_points=20_000) as running:
        points = np.random.default_rng(1).uniform(-2, 2, size=(20_000, 2)).tolist()
        response = await running.http.post("/log_prob", json={"points": points})
        assert response.status_code == 504, response.text
        worker = running.service.worker
        for _ in range(200):  # the job leaves at its next slice
            if worker.pending_work == 0 and worker.queue_depth == 0:
                break
            await asyncio.sleep(0.05)
        assert worker.pending_work == 0 and worker.queue_depth == 0
        # and the engine still answers
        assert (await running.http.post("/log_prob", json={"points": POINTS})).status_code == 200
