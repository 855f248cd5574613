"""/sample and /forward in every format: npy by Accept, 406, data space, metadata headers,
Server-Timing, optional gzip, and the same limits and errors whatever the format."""

from __future__ import annotations

import asyncio
import gzip
import io
import re
import threading
import time
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from model.data import Normalisation, swiss_roll
from model.engine import frame_count as trajectory_frames
from tests.app.conftest import MODULE_LOOP, AppFactory, as_points, assert_names_field, worker_held

pytestmark = MODULE_LOOP

NPY = "application/x-npy"
SAMPLE_ARGS: list[dict[str, Any]] = [
    {"n": 40, "seed": 3},
    {"n": 33, "seed": 4, "sampler": "ddim", "steps": 7, "eta": 0.5},
    {"n": 20, "seed": 5, "sampler": "dpmpp2m", "steps": 6, "trajectory_every": 2},
    {"n": 25, "seed": 6, "trajectory_every": 10},
]


@pytest.fixture
def client(shared_client: httpx.AsyncClient) -> httpx.AsyncClient:
    return shared_client


def load_npy(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == NPY
    array = np.load(io.BytesIO(response.content), allow_pickle=False)
    assert array.dtype == np.dtype("<f4")
    return array


def timings(response: httpx.Response) -> dict[str, float]:
    """Server-Timing → {name: milliseconds}; every entry has a dur."""
    entries = {}
    for part in response.headers["server-timing"].split(","):
        name, *params = (p.strip() for p in part.split(";"))
        durations = [float(p[4:]) for p in params if p.startswith("dur=")]
        assert len(durations) == 1, part
        entries[name] = durations[0]
    return entries


async def normalisation(client: httpx.AsyncClient) -> Normalisation:
    data = (await client.get("/model")).json()["data"]
    return Normalisation(noise=data["noise"], mean=(data["mean"][0], data["mean"][1]), scale=data["scale"])


# -- npy -----------------------------------------------------------------------------------


@pytest.mark.parametrize("params", SAMPLE_ARGS)
async def test_sample_npy_equals_json_and_carries_the_metadata_in_headers(client: httpx.AsyncClient, params: dict[str, Any]) -> None:
    as_json = await client.get("/sample", params=params)
    as_npy = await client.get("/sample", params=params, headers={"Accept": NPY})
    body = as_json.json()
    array = load_npy(as_npy)
    every = params.get("trajectory_every")
    if every is None:
        assert array.shape == (params["n"], 2)
        np.testing.assert_array_equal(array, np.asarray(body["points"], dtype=np.float32))
    else:
        frames = trajectory_frames(body["steps"], every)
        assert array.shape == (frames, params["n"], 2)
        for i, frame in enumerate(body["trajectory"]):
            np.testing.assert_array_equal(array[i], np.asarray(frame["points"], dtype=np.float32))
        np.testing.assert_array_equal(array[-1], np.asarray(body["points"], dtype=np.float32))  # the last frame is x_0
        assert as_npy.headers["swirl-trajectory-t"] == ",".join(str(f["t"]) for f in body["trajectory"])
    headers = as_npy.headers
    assert int(headers["swirl-n"]) == body["n"] and int(headers["swirl-seed"]) == body["seed"]
    assert headers["swirl-sampler"] == body["sampler"] and int(headers["swirl-steps"]) == body["steps"]
    assert float(headers["swirl-eta"]) == body["eta"] and headers["swirl-model"] == body["model"]
    assert headers["swirl-space"] == body["space"] == "model"
    assert "accept" in headers["vary"].lower()
    # JSON answers carry the same headers
    assert as_json.headers["swirl-seed"] == headers["swirl-seed"] and as_json.headers["swirl-model"] == body["model"]


async def test_npy_post_and_a_picked_seed_is_in_the_header(client: httpx.AsyncClient) -> None:
    response = await client.post("/sample", json={"n": 30, "sampler": "ddim", "steps": 5}, headers={"Accept": NPY})
    array = load_npy(response)
    seed = int(response.headers["swirl-seed"])
    replay = await client.get("/sample", params={"n": 30, "sampler": "ddim", "steps": 5, "seed": seed})
    np.testing.assert_array_equal(array, np.asarray(replay.json()["points"], dtype=np.float32))


async def test_forward_npy_equals_json(client: httpx.AsyncClient) -> None:
    params = {"t": 12, "n": 77, "seed": 9}
    body = (await client.get("/forward", params=params)).json()
    response = await client.get("/forward", params=params, headers={"Accept": f"{NPY}, application/json;q=0.5"})
    array = load_npy(response)
    np.testing.assert_array_equal(array, np.asarray(body["points"], dtype=np.float32))
    assert response.headers["swirl-t"] == "12" and response.headers["swirl-n"] == "77" and response.headers["swirl-seed"] == "9"
    assert float(response.headers["swirl-alpha-bar"]) == body["alpha_bar"]


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/*", "application/json"),
        (NPY, NPY),
        (f"{NPY};q=0.4, application/json;q=0.6", "application/json"),
        (f"{NPY};q=0.6, application/json;q=0.4", NPY),
        ("application/json;q=0, */*;q=0.1", NPY),
        (f"text/html, {NPY};q=0.9", NPY),
    ],
)
async def test_accept_variants(client: httpx.AsyncClient, accept: str | None, expected: str) -> None:
    headers = {"Accept": accept} if accept is not None else {}
    for path, params in (("/sample", {"n": 5, "seed": 1}), ("/forward", {"t": 3, "n": 5, "seed": 1})):
        response = await client.get(path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].split(";")[0] == expected


@pytest.mark.parametrize("accept", ["text/csv", "application/json;q=0, application/x-npy;q=0", "image/*"])
async def test_unproducible_accept_is_406_naming_what_can_be_produced(client: httpx.AsyncClient, accept: str) -> None:
    for method, path, kwargs in (
        ("GET", "/sample", {"params": {"n": 5}}),
        ("POST", "/sample", {"json": {"n": 5}}),
        ("GET", "/forward", {"params": {"t": 1}}),
    ):
        response = await client.request(method, path, headers={"Accept": accept}, **kwargs)
        assert response.status_code == 406, (path, response.text)
        error = response.json()["error"]
        assert "application/json" in error and NPY in error and "accept" in error


# -- the same limits and errors in every format ---------------------------------------------


async def test_errors_are_json_whatever_the_accept(client: httpx.AsyncClient) -> None:
    assert_names_field(await client.get("/sample", params={"n": 0}, headers={"Accept": NPY}), "n")
    assert_names_field(await client.get("/forward", params={"t": 10**6}, headers={"Accept": NPY}), "t")
    # SWIRL_MAX_RESPONSE_POINTS counts frames in every format (this app: 2000)
    over = await client.get("/sample", params={"n": 100, "trajectory_every": 1}, headers={"Accept": NPY})
    assert_names_field(over, "trajectory_every")
    assert "SWIRL_MAX_RESPONSE_POINTS" in over.json()["error"]
    assert (await client.get("/sample", params={"n": 20, "trajectory_every": 5}, headers={"Accept": NPY})).status_code == 200


async def test_503_and_504_are_the_same_with_npy(running_app: AppFactory) -> None:
    async with running_app(max_queue=1, batching=False, request_timeout_s=5.0) as r:
        with worker_held(r.service) as gate:
            pending = [asyncio.create_task(r.http.get("/sample", params={"n": 50, "seed": i}, headers={"Accept": NPY})) for i in range(6)]
            deadline = time.monotonic() + 10
            while sum(t.done() for t in pending) < 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            gate.set()
            responses = await asyncio.gather(*pending)
        shed = [resp for resp in responses if resp.status_code == 503]
        assert len(shed) >= 4
        for resp in shed:
            assert resp.headers["content-type"] == "application/json" and "SWIRL_MAX_QUEUE" in resp.json()["error"]
            assert int(resp.headers["retry-after"]) >= 1
        assert all(load_npy(resp).shape == (50, 2) for resp in responses if resp.status_code == 200)
    async with running_app(request_timeout_s=0.2) as r:
        with worker_held(r.service):
            timed_out = await r.http.get("/sample", params={"n": 10, "seed": 1}, headers={"Accept": NPY})
        assert timed_out.status_code == 504 and "SWIRL_REQUEST_TIMEOUT_S" in timed_out.json()["error"]


# -- data space ----------------------------------------------------------------------------


@pytest.mark.parametrize("params", SAMPLE_ARGS[1:3])
async def test_sample_in_data_space_is_model_space_mapped_with_models_constants(client: httpx.AsyncClient, params: dict[str, Any]) -> None:
    norm = await normalisation(client)
    model_space = (await client.get("/sample", params=params)).json()
    data_space = (await client.get("/sample", params={**params, "space": "data"})).json()
    assert data_space["space"] == "data" and model_space["space"] == "model"
    expected = as_points(model_space) * norm.scale + np.asarray(norm.mean)
    np.testing.assert_allclose(as_points(data_space), expected, rtol=1e-6, atol=1e-5)
    # and back: (data − mean) / scale is the model-space answer
    np.testing.assert_allclose(norm.normalise(as_points(data_space)), as_points(model_space), atol=1e-5)
    as_npy = await client.get("/sample", params={**params, "space": "data"}, headers={"Accept": NPY})
    assert as_npy.headers["swirl-space"] == "data"
    array = load_npy(as_npy)
    np.testing.assert_array_equal(array if array.ndim == 2 else array[-1], np.asarray(data_space["points"], dtype=np.float32))
    if "trajectory" in data_space:
        for frame_m, frame_d in zip(model_space["trajectory"], data_space["trajectory"]):
            np.testing.assert_allclose(as_points(frame_d), as_points(frame_m) * norm.scale + np.asarray(norm.mean), rtol=1e-6, atol=1e-5)


async def test_forward_at_t0_in_data_space_is_the_raw_roll(client: httpx.AsyncClient) -> None:
    norm = await normalisation(client)
    body = (await client.get("/forward", params={"t": 0, "n": 300, "seed": 11, "space": "data"})).json()
    assert body["space"] == "data"
    raw = swiss_roll(300, norm.noise, seed=11)
    np.testing.assert_allclose(as_points(body), raw, rtol=1e-5, atol=1e-4)
    post = (await client.post("/sample", json={"n": 10, "seed": 1, "space": "data"})).json()
    assert post["space"] == "data"


async def test_bad_space_is_422_naming_it(client: httpx.AsyncClient) -> None:
    assert_names_field(await client.get("/sample", params={"space": "raw"}), "space")
    assert_names_field(await client.post("/sample", json={"space": 1}), "space")
    assert_names_field(await client.get("/forward", params={"t": 1, "space": "pixels"}), "space")


# -- Server-Timing -------------------------------------------------------------------------


@pytest.mark.parametrize("accept", [None, NPY])
async def test_server_timing_on_every_sampling_answer(client: httpx.AsyncClient, accept: str | None) -> None:
    headers = {"Accept": accept} if accept else {}
    started = time.perf_counter()
    sample = await client.get("/sample", params={"n": 400, "seed": 1, "trajectory_every": 25}, headers=headers)
    assert sample.status_code == 200, sample.text
    elapsed_ms = (time.perf_counter() - started) * 1000
    entries = timings(sample)
    assert set(entries) == {"queue", "compute", "encode"}
    assert entries["compute"] > 0 and entries["encode"] > 0 and entries["queue"] >= 0
    assert sum(entries.values()) <= elapsed_ms * 1.05 + 1
    assert re.search(r'compute;dur=[0-9.]+;desc="sampling"', sample.headers["server-timing"])
    forward = await client.get("/forward", params={"t": 5, "n": 500}, headers=headers)
    assert set(timings(forward)) == {"queue", "compute", "encode"}


async def test_server_timing_queue_is_the_wait_for_the_worker(running_app: AppFactory) -> None:
    async with running_app() as r:
        worker = r.service.worker
        admit, gate = worker._admit, threading.Event()

        def held(job: Any) -> None:  # the worker thread waits before taking the job into the engine
            gate.wait(30)
            admit(job)

        worker._admit = held  # type: ignore[method-assign]
        try:
            pending = asyncio.create_task(r.http.get("/sample", params={"n": 10, "seed": 1}))
            await asyncio.sleep(0.3)
            gate.set()
            response = await pending
        finally:
            gate.set()
            worker._admit = admit  # type: ignore[method-assign]
        assert timings(response)["queue"] >= 250


# -- gzip ----------------------------------------------------------------------------------


async def test_gzip_is_off_by_default(client: httpx.AsyncClient) -> None:
    response = await client.get("/sample", params={"n": 500, "seed": 1}, headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in response.headers


async def test_gzip_for_json_when_enabled_and_asked(running_app: AppFactory) -> None:
    async with running_app(gzip_min_bytes=1000) as r:
        params = {"n": 500, "seed": 1}
        plain = await r.http.get("/sample", params=params, headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        zipped = await r.http.get("/sample", params=params, headers={"Accept-Encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip"
        assert int(zipped.headers["content-length"]) < 0.6 * len(plain.content)
        assert orjson.loads(zipped.content) == plain.json()  # httpx decoded it
        small = await r.http.get("/sample", params={"n": 2, "seed": 1}, headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in small.headers  # under gzip_min_bytes
        refused = await r.http.get("/sample", params=params, headers={"Accept-Encoding": "gzip;q=0, br"})
        assert "content-encoding" not in refused.headers
        as_npy = await r.http.get("/sample", params=params, headers={"Accept-Encoding": "gzip", "Accept": NPY})
        assert "content-encoding" not in as_npy.headers  # float32 noise does not compress; npy is never gzipped
        raw = await r.http.get("/forward", params={"t": 3, "n": 500, "seed": 2}, headers={"Accept-Encoding": "gzip"})
        assert raw.headers["content-encoding"] == "gzip"
        stream = r.http.build_request("GET", "/sample", params=params, headers={"Accept-Encoding": "gzip"})
        response = await r.http.send(stream, stream=True)
        compressed = b"".join([chunk async for chunk in response.aiter_raw()])
        assert orjson.loads(gzip.decompress(compressed)) == plain.json()
