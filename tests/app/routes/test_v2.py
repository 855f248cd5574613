"""The Open Inference Protocol (v2) in-process, byte by byte: binary tensors in and out, the
protocol's error bodies, limits, Server-Timing (tritonclient itself runs in tests/integration)."""

from __future__ import annotations

import asyncio
import gzip
import struct
import time
import zlib
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from pydantic import BaseModel

from app.wire.v2_schemas import InferRequestBody, InferResponse, Live, ModelMetadata, ModelReady, Ready, ServerMetadata
from tests.app.conftest import MODULE_LOOP, AppFactory, worker_held

pytestmark = MODULE_LOOP

INFER = "/v2/models/swirl/infer"


@pytest.fixture
def client(shared_client: httpx.AsyncClient) -> httpx.AsyncClient:
    return shared_client


def tensor(name: str, datatype: str, value: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": [1], "data": [value]}


def bytes_element(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<I", len(raw)) + raw


def split(response: httpx.Response) -> tuple[dict[str, Any], bytes]:
    length = int(response.headers["inference-header-content-length"])
    return orjson.loads(response.content[:length]), response.content[length:]


async def v2_error(client: httpx.AsyncClient, content: bytes, status: int = 400, **headers: str) -> str:
    response = await client.post(INFER, content=content, headers=headers)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    return str(body["error"])


async def test_json_tensors_equal_sample(client: httpx.AsyncClient) -> None:
    request = {"id": "a", "inputs": [tensor("n", "INT64", 50), tensor("seed", "INT64", 3), tensor("sampler", "BYTES", "ddim"), tensor("steps", "INT64", 6)]}
    response = await client.post(INFER, json=request)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["id"] == "a" and body["model_name"] == "swirl"
    (output,) = body["outputs"]
    assert output["name"] == "points" and output["datatype"] == "FP32" and output["shape"] == [50, 2]
    points = np.asarray(output["data"], dtype=np.float32).reshape(50, 2)
    sample = (await client.get("/sample", params={"n": 50, "seed": 3, "sampler": "ddim", "steps": 6})).json()
    np.testing.assert_array_equal(points, np.asarray(sample["points"], dtype=np.float32))
    assert {"queue", "compute", "encode"} <= {part.split(";")[0].strip() for part in response.headers["server-timing"].split(",")}


async def test_binary_inputs_and_outputs(client: httpx.AsyncClient) -> None:
    header = {
        "inputs": [
            {"name": "n", "datatype": "INT64", "shape": [1], "parameters": {"binary_data_size": 8}},
            {"name": "sampler", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 4 + 4}},
            {"name": "seed", "datatype": "INT64", "shape": [1], "data": [8]},
            {"name": "eta", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}},
            {"name": "steps", "datatype": "INT64", "shape": [1, 1], "data": [[5]]},
        ],
        "outputs": [{"name": "points", "parameters": {"binary_data": True}}],
    }
    head = orjson.dumps(header)
    binary = struct.pack("<q", 40) + bytes_element("ddim") + struct.pack("<f", 0.3)
    response = await client.post(INFER, content=head + binary, headers={"Inference-Header-Content-Length": str(len(head))})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    body, raw = split(response)
    (output,) = body["outputs"]
    assert output["parameters"]["binary_data_size"] == len(raw) == 40 * 2 * 4 and "data" not in output
    points = np.frombuffer(raw, dtype="<f4").reshape(output["shape"])
    sample = (await client.get("/sample", params={"n": 40, "seed": 8, "sampler": "ddim", "steps": 5, "eta": 0.3})).json()
    np.testing.assert_array_equal(points, np.asarray(sample["points"], dtype=np.float32))  # float32 0.3 is read as 0.3


async def test_binary_data_output_makes_every_output_binary(client: httpx.AsyncClient) -> None:
    request = {
        "inputs": [tensor("n", "INT64", 12), tensor("seed", "INT64", 1), tensor("trajectory_every", "INT64", 25), tensor("space", "BYTES", "data")],
        "parameters": {"binary_data_output": True},
    }
    response = await client.post(INFER, json=request)
    body, raw = split(response)
    names = [o["name"] for o in body["outputs"]]
    assert names == ["points", "trajectory", "trajectory_t"]
    sizes = [o["parameters"]["binary_data_size"] for o in body["outputs"]]
    assert sum(sizes) == len(raw)
    points = np.frombuffer(raw[: sizes[0]], dtype="<f4").reshape(12, 2)
    frames = np.frombuffer(raw[sizes[0] : sizes[0] + sizes[1]], dtype="<f4").reshape(body["outputs"][1]["shape"])
    ts = np.frombuffer(raw[sizes[0] + sizes[1] :], dtype="<i8")
    np.testing.assert_array_equal(frames[-1], points)
    assert ts[0] > ts[-1] == 0 and len(ts) == frames.shape[0]
    sample = (await client.get("/sample", params={"n": 12, "seed": 1, "space": "data"})).json()
    np.testing.assert_array_equal(points, np.asarray(sample["points"], dtype=np.float32))
    assert body["parameters"]["space"] == "data"


async def test_gzip_request_body(client: httpx.AsyncClient) -> None:
    request = orjson.dumps({"inputs": [tensor("n", "INT64", 7), tensor("seed", "INT64", 2)]})
    plain = await client.post(INFER, content=request)
    for coding, packed in (("gzip", gzip.compress(request)), ("deflate", zlib.compress(request))):
        response = await client.post(INFER, content=packed, headers={"Content-Encoding": coding})
        assert response.status_code == 200, response.text
        assert response.json()["outputs"] == plain.json()["outputs"]
    assert "br" in await v2_error(client, request, 415, **{"Content-Encoding": "br"})
    assert "gzip" in await v2_error(client, b"not gzip", 400, **{"Content-Encoding": "gzip"})
    bomb = gzip.compress(b" " * 10_000_000)
    assert "SWIRL_MAX_BODY_BYTES" in await v2_error(client, bomb, 413, **{"Content-Encoding": "gzip"})


def infer_body(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **extra})


N = tensor("n", "INT64", 10)


@pytest.mark.parametrize(
    ("content", "headers", "fragment"),
    [
        (b"{not json", {}, "malformed JSON"),
        (b"[1, 2]", {}, "JSON object"),
        (b"{}", {}, "inputs"),
        (infer_body(tensor("seed", "INT64", 1)), {}, "input 'n'"),
        (infer_body(tensor("n", "INT32", 10)), {}, "input 'n': datatype must be INT64"),
        (infer_body(tensor("n", "INT64", "ten")), {}, "input 'n'"),
        (infer_body(tensor("n", "INT64", 10.5)), {}, "input 'n'"),
        (infer_body(tensor("n", "INT64", True)), {}, "input 'n'"),
        (infer_body({"name": "n", "datatype": "INT64", "shape": [2], "data": [1, 2]}), {}, "input 'n': must hold exactly one element"),
        (infer_body({"name": "n", "datatype": "INT64", "shape": [1], "data": [1, 2]}), {}, "input 'n': data holds 2"),
        (infer_body({"name": "n", "datatype": "INT64", "shape": "x", "data": [1]}), {}, "input 'n': shape"),
        (infer_body({"name": "n", "datatype": "INT64", "shape": [1]}), {}, "input 'n': needs data"),
        (infer_body(N, N), {}, "input 'n': given twice"),
        (infer_body(N, tensor("temperature", "FP32", 1.0)), {}, "input 'temperature': unknown input"),
        (infer_body({"datatype": "INT64"}), {}, "name"),
        (infer_body(N, tensor("steps", "INT64", 10**6), tensor("sampler", "BYTES", "ddim")), {}, "input 'steps'"),
        (infer_body(N, tensor("sampler", "BYTES", "euler")), {}, "input 'sampler'"),
        (infer_body(N, tensor("eta", "FP32", 0.5)), {}, "input 'eta'"),
        (infer_body(N, tensor("seed", "INT64", -1)), {}, "input 'seed'"),
        (infer_body(N, tensor("space", "BYTES", "pixels")), {}, "input 'space'"),
        (infer_body(tensor("n", "INT64", 10**7)), {}, "input 'n'"),
        (infer_body(tensor("n", "INT64", 100), tensor("trajectory_every", "INT64", 1)), {}, "SWIRL_MAX_RESPONSE_POINTS"),
        (infer_body(N, outputs=[{"name": "logits"}]), {}, "output 'logits': unknown output"),
        (infer_body(N, outputs=[{"name": "trajectory"}]), {}, "trajectory_every"),
        (infer_body(N, outputs=[{"name": "points", "parameters": {"binary_data": "yes"}}]), {}, "binary_data must be a boolean"),
        (infer_body(N), {"Inference-Header-Content-Length": "abc"}, "Inference-Header-Content-Length"),
        (infer_body(N), {"Inference-Header-Content-Length": "100000"}, "Inference-Header-Content-Length"),
        (infer_body(N) + b"\x00" * 3, {"Inference-Header-Content-Length": str(len(infer_body(N)))}, "binary bytes after"),
    ],
)
async def test_bad_requests_are_400_with_an_error_body(client: httpx.AsyncClient, content: bytes, headers: dict[str, str], fragment: str) -> None:
    assert fragment in await v2_error(client, content, **headers)


async def test_bad_binary_inputs(client: httpx.AsyncClient) -> None:
    def with_binary(inputs: list[dict[str, Any]], binary: bytes) -> tuple[bytes, dict[str, str]]:
        head = orjson.dumps({"inputs": inputs})
        return head + binary, {"Inference-Header-Content-Length": str(len(head))}

    n_binary = {"name": "n", "datatype": "INT64", "shape": [1], "parameters": {"binary_data_size": 8}}
    content, headers = with_binary([n_binary], struct.pack("<i", 5))  # 4 bytes, 8 declared
    assert "input 'n'" in await v2_error(client, content, **headers)
    n_short = {**n_binary, "parameters": {"binary_data_size": 4}}
    content, headers = with_binary([n_short], struct.pack("<i", 5))
    assert "input 'n'" in await v2_error(client, content, **headers)
    sampler = {"name": "sampler", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}}
    content, headers = with_binary([N, sampler], struct.pack("<I", 10) + b"dd")  # length says 10, 2 bytes follow
    assert "input 'sampler'" in await v2_error(client, content, **headers)
    content, headers = with_binary([N, {**sampler, "parameters": {"binary_data_size": 6}}], struct.pack("<I", 2) + b"\xff\xfe")
    assert "input 'sampler'" in await v2_error(client, content, **headers)


async def test_metadata_readiness_and_unknown_models(client: httpx.AsyncClient) -> None:
    server = (await client.get("/v2")).json()
    assert server["name"] == "swirl" and server["extensions"] == ["binary_tensor_data"]
    assert (await client.get("/v2/health/live")).json() == {"live": True}
    assert (await client.get("/v2/health/ready")).json() == {"ready": True}
    model_id = (await client.get("/model")).json()["id"]
    assert (await client.get(f"/v2/models/swirl/versions/{model_id}/ready")).json() == {"name": "swirl", "ready": True}
    for path in ("/v2/models/other", "/v2/models/other/ready", "/v2/models/swirl/versions/0/ready", "/v2/models/swirl/versions/0"):
        response = await client.get(path)
        assert response.status_code == 404 and set(response.json()) == {"error"}, path
    for path in ("/v2/models/other/infer", "/v2/models/swirl/versions/0/infer"):
        response = await client.post(path, content=infer_body(N))
        assert response.status_code == 404 and "unknown" in response.json()["error"]
    versioned = await client.post(f"/v2/models/swirl/versions/{model_id}/infer", content=infer_body(N, tensor("seed", "INT64", 4)))
    plain = await client.post(INFER, content=infer_body(N, tensor("seed", "INT64", 4)))
    assert versioned.json()["outputs"] == plain.json()["outputs"] and versioned.json()["model_version"] == model_id


async def test_overload_and_timeout_keep_the_protocols_error_body(running_app: AppFactory) -> None:
    async with running_app(max_queue=1, batching=False) as r:
        with worker_held(r.service) as gate:
            pending = [asyncio.create_task(r.http.post(INFER, content=infer_body(tensor("n", "INT64", 20), tensor("seed", "INT64", i)))) for i in range(6)]
            deadline = time.monotonic() + 10
            while sum(t.done() for t in pending) < 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            gate.set()
            responses = await asyncio.gather(*pending)
        shed = [resp for resp in responses if resp.status_code == 503]
        assert len(shed) >= 4 and all(set(resp.json()) == {"error"} and "retry-after" in resp.headers for resp in shed)
    async with running_app(request_timeout_s=0.2) as r:
        with worker_held(r.service):
            response = await r.http.post(INFER, content=infer_body(N))
        assert response.status_code == 504 and set(response.json()) == {"error"}


async def test_answers_match_their_documented_models(client: httpx.AsyncClient) -> None:
    """The OpenAPI models of the v2 answers (extra fields forbidden) describe what is really sent."""
    model_id = (await client.get("/model")).json()["id"]
    documented: list[tuple[str, type[BaseModel]]] = [
        ("/v2", ServerMetadata),
        ("/v2/health/live", Live),
        ("/v2/health/ready", Ready),
        ("/v2/models/swirl", ModelMetadata),
        (f"/v2/models/swirl/versions/{model_id}", ModelMetadata),
        ("/v2/models/swirl/ready", ModelReady),
    ]
    for path, model in documented:
        model.model_validate((await client.get(path)).json())
    trajectory = {
        "id": "t",
        "inputs": [tensor("n", "INT64", 4), tensor("seed", "INT64", 1), tensor("trajectory_every", "INT64", 25)],
        "outputs": [{"name": "points"}, {"name": "trajectory", "parameters": {"binary_data": True}}, {"name": "trajectory_t"}],
    }
    InferRequestBody.model_validate(trajectory)
    response = await client.post(INFER, json=trajectory)
    header, _ = split(response)
    answer = InferResponse.model_validate(header)
    assert [o.name for o in answer.outputs] == ["points", "trajectory", "trajectory_t"]
    assert answer.outputs[1].data is None and answer.outputs[1].parameters is not None
    InferResponse.model_validate((await client.post(INFER, json={"inputs": [tensor("n", "INT64", 3)]})).json())
