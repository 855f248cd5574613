"""swirl_client's Client and AsyncClient against real servers: the same points as /sample, the
stream's every frame, typed errors naming the field, retries after Retry-After."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import pytest
from swirl_client import AsyncClient, Client, InvalidInput, NotFound, RetryPolicy, Timeout, Unavailable

from tests.clients.conftest import LONG_N, hold_the_queue, models_digest, rejected
from tests.conftest import Server, free_port

pytestmark = pytest.mark.integration


def sample_json(url: str, **params: Any) -> dict[str, Any]:
    response = httpx.get(f"{url}/sample", params=params, timeout=120)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    "params",
    [
        {"seed": 7, "sampler": "ddim", "steps": 10},
        {"seed": 8, "sampler": "dpmpp2m", "steps": 8, "space": "data"},
        {"seed": 9, "sampler": "ddim", "steps": 6, "eta": 0.5},
    ],
)
def test_sample_equals_sample_endpoint(live_server: str, params: dict[str, Any]) -> None:
    with Client(live_server) as client:
        answer = client.sample(500, **params)
    body = sample_json(live_server, n=500, **params)
    assert answer.points.dtype == np.float32 and answer.points.shape == (500, 2)
    np.testing.assert_array_equal(answer.points, np.asarray(body["points"], dtype=np.float32))
    assert (answer.seed, answer.sampler, answer.steps, answer.space) == (params["seed"], params["sampler"], params["steps"], params.get("space", "model"))
    assert answer.eta == params.get("eta", 0.0) and answer.model == body["model"] and answer.model_name == "swiss-roll"
    assert set(answer.timings) == {"queue_ms", "compute_ms", "encode_ms"} and answer.timings["compute_ms"] > 0


def test_a_picked_seed_replays_and_a_trajectory_ends_in_the_points(live_server: str) -> None:
    with Client(live_server) as client:
        picked = client.sample(200, sampler="ddim", steps=5)
        replay = client.sample(200, seed=picked.seed, sampler="ddim", steps=5)
        chain = client.sample(100, seed=3, sampler="ddim", steps=9, trajectory_every=4)
    np.testing.assert_array_equal(picked.points, replay.points)
    body = sample_json(live_server, n=100, seed=3, sampler="ddim", steps=9, trajectory_every=4)
    assert chain.trajectory is not None and chain.trajectory.shape == (len(body["trajectory"]), 100, 2)
    assert chain.trajectory_t == [frame["t"] for frame in body["trajectory"]]
    np.testing.assert_array_equal(chain.points, chain.trajectory[-1])
    np.testing.assert_array_equal(chain.points, np.asarray(body["points"], dtype=np.float32))


def test_forward_schedule_model_and_models(live_server: str) -> None:
    with Client(live_server) as client:
        noised = client.forward(25, 300, seed=4, space="data")
        schedule = client.schedule()
        info = client.model("swiss-roll-cosine")
        listed = client.models()
        assert client.ready()["status"] == "ready"
    body = httpx.get(f"{live_server}/forward", params={"t": 25, "n": 300, "seed": 4, "space": "data"}).json()
    np.testing.assert_array_equal(noised.points, np.asarray(body["points"], dtype=np.float32))
    assert (noised.t, noised.seed, noised.space) == (25, 4, "data") and noised.alpha_bar == pytest.approx(body["alpha_bar"], rel=1e-12)
    assert schedule == httpx.get(f"{live_server}/schedule").json()
    assert info["name"] == "swiss-roll-cosine"
    assert models_digest(listed) == models_digest(httpx.get(f"{live_server}/models").json())


def test_the_stream_yields_every_frame(live_server: str) -> None:
    with Client(live_server) as client:
        stream = client.stream(80, seed=5, sampler="ddim", steps=6)
        frames = list(stream)
    body = sample_json(live_server, n=80, seed=5, sampler="ddim", steps=6, trajectory_every=1)
    assert [frame.index for frame in frames] == list(range(7)) and [frame.t for frame in frames] == [f["t"] for f in body["trajectory"]]
    for frame, expected in zip(frames, body["trajectory"], strict=True):
        np.testing.assert_array_equal(frame.points, np.asarray(expected["points"], dtype=np.float32))
    assert stream.summary is not None and stream.summary["frames"] == 7 and stream.summary["seed"] == 5


def test_errors_are_typed_and_name_the_field(live_server: str) -> None:
    with Client(live_server) as client:
        for kwargs, field in (({"n": 0}, "n"), ({"n": 10, "model": "nope"}, "model"), ({"n": 10, "eta": 2.0, "sampler": "ddim"}, "eta")):
            with pytest.raises(InvalidInput) as caught:
                client.sample(**kwargs)
            assert caught.value.status == 422 and caught.value.field == field and f"{field}:" in caught.value.message
        with pytest.raises(InvalidInput) as stream_error:
            list(client.stream(10, steps=0))
        assert stream_error.value.field == "steps"
        with pytest.raises(NotFound):
            client._send("GET", "/nowhere")
    with pytest.raises(Unavailable) as refused, Client(f"http://127.0.0.1:{free_port()}", retries=0) as nobody:
        nobody.models()
    assert refused.value.status is None


def test_async_client_samples_streams_and_raises_alike(live_server: str) -> None:
    async def run() -> tuple[Any, ...]:
        async with AsyncClient(live_server) as client:
            answers = await asyncio.gather(*[client.sample(300, seed=s, sampler="ddim", steps=10) for s in (1, 2)])
            stream = client.stream(40, seed=6, sampler="ddim", steps=4)
            frames = [frame async for frame in stream]
            with pytest.raises(InvalidInput) as caught:
                await client.sample(10, sampler="euler")
            return answers, frames, stream.summary, caught.value

    answers, frames, summary, error = asyncio.run(run())
    for seed, answer in zip((1, 2), answers, strict=True):
        expected = sample_json(live_server, n=300, seed=seed, sampler="ddim", steps=10)["points"]
        np.testing.assert_array_equal(answer.points, np.asarray(expected, dtype=np.float32))
    assert len(frames) == 5 and summary is not None and summary["frames"] == 5
    np.testing.assert_array_equal(frames[-1].points, np.asarray(sample_json(live_server, n=40, seed=6, sampler="ddim", steps=4)["points"], dtype=np.float32))
    assert error.field == "sampler"


def test_503_is_retried_after_retry_after_and_raised_without_retries(tiny_queue_server: Server) -> None:
    url = tiny_queue_server.url
    hold_the_queue(url)
    with Client(url, retries=0) as impatient:
        with pytest.raises(Unavailable) as caught:
            impatient.sample(10, seed=1)
        assert caught.value.status == 503 and caught.value.retry_after_s is not None and caught.value.retry_after_s >= 1
        assert "SWIRL_MAX_QUEUE" in caught.value.message
    before = rejected(url, "queue_full")
    with Client(url, retries=RetryPolicy(retries=30, max_wait_s=60)) as patient:
        answer = patient.sample(10, seed=1)
    assert rejected(url, "queue_full") > before  # its first try was refused, a later one answered
    np.testing.assert_array_equal(answer.points, np.asarray(sample_json(url, n=10, seed=1)["points"], dtype=np.float32))


def test_async_retries_and_the_clients_own_timeout(tiny_queue_server: Server) -> None:
    url = tiny_queue_server.url
    hold_the_queue(url)

    async def run() -> Any:
        async with AsyncClient(url, retries=RetryPolicy(retries=30, max_wait_s=60)) as client:
            return await client.sample(10, seed=2)

    before = rejected(url, "queue_full")
    answer = asyncio.run(run())
    assert rejected(url, "queue_full") > before
    np.testing.assert_array_equal(answer.points, np.asarray(sample_json(url, n=10, seed=2)["points"], dtype=np.float32))
    with pytest.raises(Timeout), Client(url, timeout=0.05, retries=0) as hasty:
        hasty.sample(LONG_N, seed=3)
