"""The Open Inference Protocol over gRPC against a real server, spoken by the real client:
tritonclient's ``InferenceServerClient`` (gRPC). Seeded answers equal /sample's; errors have
their status codes; every process of a two-process server serves gRPC."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from app.routes.grpc_v2 import PROCESS_METADATA
from app.wire import grpc_messages as pb
from tests.conftest import free_port, start_server, stop_server
from tests.integration.test_processes import samples

pytestmark = pytest.mark.integration

MODEL = "swirl"
DATATYPES = {"n": "INT64", "seed": "INT64", "steps": "INT64", "trajectory_every": "INT64", "eta": "FP32", "sampler": "BYTES", "space": "BYTES"}


@pytest.fixture(scope="module")
def client(live_grpc: str) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(live_grpc) as c:
        yield c


def inputs(**values: Any) -> list[triton.InferInput]:
    tensors = []
    for name, value in values.items():
        datatype = DATATYPES[name]
        tensor = triton.InferInput(name, [1], datatype)
        tensor.set_data_from_numpy(np.array([value], dtype=object if datatype == "BYTES" else {"INT64": np.int64, "FP32": np.float32}[datatype]))
        tensors.append(tensor)
    return tensors


def sample(url: str, **params: Any) -> dict[str, Any]:
    response = httpx.get(f"{url}/sample", params=params, timeout=120.0)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_health_and_metadata(client: triton.InferenceServerClient, live_server: str) -> None:
    assert client.is_server_live() and client.is_server_ready()
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "swirl" and server["extensions"] == ["binary_tensor_data"]
    model_id = httpx.get(f"{live_server}/model").json()["id"]
    metadata = client.get_model_metadata(MODEL)
    http = httpx.get(f"{live_server}/v2/models/{MODEL}").json()
    assert metadata.name == MODEL and list(metadata.versions) == http["versions"] == [model_id] and metadata.platform == http["platform"]
    for kind in ("inputs", "outputs"):
        assert [(t.name, t.datatype, list(t.shape)) for t in getattr(metadata, kind)] == [(t["name"], t["datatype"], t["shape"]) for t in http[kind]]
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, model_version=model_id)
    assert not client.is_model_ready("nope")


@pytest.mark.parametrize(
    "params",
    [
        {"n": 400, "seed": 11},
        {"n": 300, "seed": 12, "sampler": "ddim", "steps": 10, "eta": 0.3},
        {"n": 250, "seed": 13, "sampler": "dpmpp2m", "steps": 8, "space": "data"},
    ],
)
def test_seeded_infer_equals_sample(client: triton.InferenceServerClient, live_server: str, params: dict[str, Any]) -> None:
    result = client.infer(MODEL, inputs(**params), outputs=[triton.InferRequestedOutput("points")], request_id="g-1")
    points = result.as_numpy("points")
    assert points is not None and points.dtype == np.float32 and points.shape == (params["n"], 2)
    np.testing.assert_array_equal(points, np.asarray(sample(live_server, **params)["points"], dtype=np.float32))
    response = result.get_response(as_json=True)
    assert response["model_name"] == MODEL and response["id"] == "g-1"
    assert int(response["parameters"]["seed"]["int64_param"]) == params["seed"]


def test_another_model_by_name_and_trajectory_outputs(client: triton.InferenceServerClient, live_server: str) -> None:
    params = {"n": 60, "seed": 5, "sampler": "ddim", "steps": 9, "trajectory_every": 4}
    outputs = [triton.InferRequestedOutput("trajectory"), triton.InferRequestedOutput("trajectory_t")]
    result = client.infer(MODEL, inputs(**params), outputs=outputs)
    body = sample(live_server, **params)
    frames = result.as_numpy("trajectory")
    assert frames is not None and frames.shape == (len(body["trajectory"]), 60, 2)
    assert result.as_numpy("trajectory_t").tolist() == [frame["t"] for frame in body["trajectory"]]
    np.testing.assert_array_equal(frames[-1], np.asarray(body["points"], dtype=np.float32))
    other = client.infer("swiss-roll-cosine", inputs(n=50, seed=3)).as_numpy("points")
    np.testing.assert_array_equal(other, np.asarray(sample(live_server, n=50, seed=3, model="swiss-roll-cosine")["points"], dtype=np.float32))


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"n": 0}, "'n'"),
        ({"n": 10**9}, "'n'"),
        ({"n": 10, "sampler": "euler"}, "'sampler'"),
        ({"n": 10, "eta": 2.0, "sampler": "ddim"}, "'eta'"),
        ({"n": 10, "space": "pixels"}, "'space'"),
        ({"seed": 1}, "'n'"),
    ],
)
def test_bad_inputs_are_invalid_argument_naming_the_input(client: triton.InferenceServerClient, values: dict[str, Any], named: str) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.infer(MODEL, inputs(**values))
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT" and named in caught.value.message()


def test_unknown_model_is_not_found(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.infer("nope", inputs(n=10))
    assert caught.value.status() == "StatusCode.NOT_FOUND" and "unknown model 'nope'" in caught.value.message()


def test_every_process_of_a_two_process_server_serves_grpc(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Each process binds the gRPC port with SO_REUSEPORT: connections (one per channel) reach both,
    and both give the same seeded answer as /sample."""
    grpc_port = free_port()
    server = start_server(tiny_checkpoint, tmp_path / "server.log", SWIRL_WORKERS="2", SWIRL_GRPC_PORT=str(grpc_port))
    try:
        for _ in range(600):  # /readyz answers once one process is up; wait for both
            if samples(server.url).get("swirl_ready", 0) == 2:
                break
            time.sleep(0.1)
        expected = np.asarray(sample(server.url, n=80, seed=4)["points"], dtype=np.float32)
        request = pb.ModelInferRequest(model_name=MODEL)
        for name, value in (("n", 80), ("seed", 4)):
            request.inputs.add(name=name, datatype="INT64", shape=[1]).contents.int64_contents.append(value)
        pids: set[str] = set()
        for _ in range(24):  # a channel per connection: the kernel hashes each to a process
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                ready = channel.unary_unary(pb.method_path("ServerReady"), pb.ServerReadyRequest.SerializeToString, pb.ServerReadyResponse.FromString)
                response, call = ready.with_call(pb.ServerReadyRequest(), timeout=30)
                assert response.ready
                pids.add(dict(call.initial_metadata())[PROCESS_METADATA])
                infer = channel.unary_unary(pb.method_path("ModelInfer"), pb.ModelInferRequest.SerializeToString, pb.ModelInferResponse.FromString)
                answer = infer(request, timeout=60)
                np.testing.assert_array_equal(np.frombuffer(answer.raw_output_contents[0], dtype="<f4").reshape(80, 2), expected)
        assert len(pids) == 2, pids
    finally:
        stop_server(server)
