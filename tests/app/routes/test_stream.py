"""GET /sample/stream in-process: frame order and count against trajectory_every, frames equal to
/sample's trajectory, the done event, negotiation, limits and errors before and during the stream.
(Disconnects and timing need a real socket: tests/integration/test_stream.py.)"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import torch

from model.engine import frame_count as trajectory_frames
from tests.app.conftest import MODULE_LOOP, AppFactory, as_points, assert_names_field

pytestmark = MODULE_LOOP

EVENT_STREAM = "text/event-stream"


@pytest.fixture
def client(shared_client: httpx.AsyncClient) -> httpx.AsyncClient:
    return shared_client


def parse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """SSE text → [(event, data)]; every event has exactly one event: line and one data: line."""
    events = []
    assert text.endswith("\n\n"), text[-200:]
    for block in text.split("\n\n")[:-1]:
        lines = block.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), block[:200]
        events.append((lines[0][7:], orjson.loads(lines[1][6:])))
    return events


async def stream(client: httpx.AsyncClient, **params: Any) -> tuple[httpx.Response, list[tuple[str, dict[str, Any]]]]:
    response = await client.get("/sample/stream", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(EVENT_STREAM)
    return response, parse_events(response.text)


@pytest.mark.parametrize(
    "params",
    [
        {"n": 30, "seed": 1, "trajectory_every": 10},
        {"n": 20, "seed": 2, "sampler": "ddim", "steps": 7, "trajectory_every": 3},
        {"n": 25, "seed": 3, "sampler": "dpmpp2m", "steps": 6, "trajectory_every": 1},
        {"n": 10, "seed": 4, "sampler": "ddim", "steps": 5, "eta": 1.0, "trajectory_every": 5},
    ],
)
async def test_frames_in_order_one_per_trajectory_frame_equal_to_sample(client: httpx.AsyncClient, params: dict[str, Any]) -> None:
    response, events = await stream(client, **params)
    body = (await client.get("/sample", params=params)).json()
    frames = [data for event, data in events if event == "frame"]
    assert [event for event, _ in events] == ["frame"] * len(frames) + ["done"]
    assert len(frames) == trajectory_frames(body["steps"], params["trajectory_every"]) == len(body["trajectory"])
    assert [f["index"] for f in frames] == list(range(len(frames)))
    assert [f["t"] for f in frames] == [f["t"] for f in body["trajectory"]]
    ts = [f["t"] for f in frames]
    assert ts == sorted(ts, reverse=True) and ts[-1] == 0
    for streamed, returned in zip(frames, body["trajectory"]):
        np.testing.assert_array_equal(np.asarray(streamed["points"], dtype=np.float32), np.asarray(returned["points"], dtype=np.float32))
    done = events[-1][1]
    assert {k: done[k] for k in ("n", "seed", "sampler", "steps", "eta", "model", "space")} == {
        k: body[k] for k in ("n", "seed", "sampler", "steps", "eta", "model", "space")
    }
    assert done["frames"] == len(frames) and done["trajectory_t"] == ts
    timing = done["server_timing"]
    assert timing["compute_ms"] > 0 and timing["encode_ms"] > 0 and timing["queue_ms"] >= 0
    assert response.headers["server-timing"].startswith("queue;dur=")
    assert response.headers["swirl-seed"] == str(params["seed"]) and response.headers["cache-control"] == "no-store"


async def test_every_step_by_default_and_a_picked_seed(client: httpx.AsyncClient) -> None:
    _, events = await stream(client, n=5, sampler="ddim", steps=4)
    assert [e for e, _ in events] == ["frame"] * 5 + ["done"]
    seed = events[-1][1]["seed"]
    replay = (await client.get("/sample", params={"n": 5, "sampler": "ddim", "steps": 4, "seed": seed})).json()
    np.testing.assert_array_equal(np.asarray(events[-2][1]["points"], dtype=np.float32), np.asarray(replay["points"], dtype=np.float32))


async def test_data_space_frames(client: httpx.AsyncClient) -> None:
    data = (await client.get("/model")).json()["data"]
    params = {"n": 15, "seed": 9, "sampler": "ddim", "steps": 4, "trajectory_every": 2}
    _, model_events = await stream(client, **params)
    _, data_events = await stream(client, **params, space="data")
    assert data_events[-1][1]["space"] == "data"
    for (_, m), (_, d) in zip(model_events[:-1], data_events[:-1]):
        expected = as_points(m) * data["scale"] + np.asarray(data["mean"])
        np.testing.assert_allclose(as_points(d), expected, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize(
    ("accept", "status"), [("text/event-stream", 200), ("*/*", 200), ("text/*", 200), ("application/json", 406), (f"{EVENT_STREAM};q=0", 406)]
)
async def test_stream_negotiation(client: httpx.AsyncClient, accept: str, status: int) -> None:
    response = await client.get("/sample/stream", params={"n": 3, "seed": 1, "sampler": "ddim", "steps": 2}, headers={"Accept": accept})
    assert response.status_code == status, response.text
    if status == 406:
        assert EVENT_STREAM in response.json()["error"]


async def test_limits_are_json_errors_before_the_stream(client: httpx.AsyncClient) -> None:
    assert_names_field(await client.get("/sample/stream", params={"n": 0}), "n")
    assert_names_field(await client.get("/sample/stream", params={"sampler": "euler"}), "sampler")
    assert_names_field(await client.get("/sample/stream", params={"space": "raw"}), "space")
    # SWIRL_MAX_RESPONSE_POINTS (2000 here) counts the frames: 100 × (51 + 1) with the default every step
    over = await client.get("/sample/stream", params={"n": 100})
    assert_names_field(over, "trajectory_every")
    assert "SWIRL_MAX_RESPONSE_POINTS" in over.json()["error"]


async def test_overload_is_a_503_before_the_stream(running_app: AppFactory) -> None:
    async with running_app(max_queue=1) as r:
        worker = r.service.worker
        admit = worker._admit
        held: list[Any] = []

        def hold(job: Any) -> None:  # keep the first job out of the engine so that it stays in flight
            held.append(job)

        worker._admit = hold  # type: ignore[method-assign]
        try:
            first = asyncio.create_task(r.http.get("/sample/stream", params={"n": 5, "seed": 1, "sampler": "ddim", "steps": 2}))
            deadline = time.monotonic() + 10
            while not held and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            refused = await r.http.get("/sample/stream", params={"n": 5, "seed": 2, "sampler": "ddim", "steps": 2})
            assert refused.status_code == 503 and "SWIRL_MAX_QUEUE" in refused.json()["error"] and "retry-after" in refused.headers
        finally:
            worker._admit = admit  # type: ignore[method-assign]
        worker.call_soon(lambda: admit(held[0]))  # the engine admits it now, on its own thread between ticks
        response = await first
        assert [e for e, _ in parse_events(response.text)] == ["frame"] * 3 + ["done"]


async def test_a_stream_past_the_timeout_is_504_before_its_first_frame(running_app: AppFactory) -> None:
    async with running_app(request_timeout_s=0.3) as r:
        worker = r.service.worker
        admit = worker._admit
        worker._admit = lambda job: None  # type: ignore[method-assign]  # never reaches the engine
        try:
            response = await r.http.get("/sample/stream", params={"n": 5, "seed": 1, "sampler": "ddim", "steps": 2})
        finally:
            worker._admit = admit  # type: ignore[method-assign]
        assert response.status_code == 504 and "SWIRL_REQUEST_TIMEOUT_S" in response.json()["error"]


async def test_non_finite_chain_ends_the_stream_with_an_error_event(running_app: AppFactory) -> None:
    async with running_app() as r:
        net = r.service.checkpoint.net
        saved = net.out.bias.detach().clone()
        with torch.no_grad():
            net.out.bias.fill_(math.nan)
        try:
            response = await r.http.get("/sample/stream", params={"n": 10, "seed": 1, "sampler": "ddim", "steps": 3})
        finally:
            with torch.no_grad():
                net.out.bias.copy_(saved)
        assert response.status_code == 200  # x_T is finite: the stream had begun
        events = parse_events(response.text)
        assert events[0][0] == "frame" and events[0][1]["index"] == 0
        kind, data = events[-1]
        assert kind == "error" and data["status"] == 500 and "non-finite" in data["error"]
        assert all(np.isfinite(np.asarray(d["points"])).all() for e, d in events if e == "frame")
        healthy = await r.http.get("/sample/stream", params={"n": 10, "seed": 1, "sampler": "ddim", "steps": 3})
        assert parse_events(healthy.text)[-1][0] == "done"
