"""The Open Inference Protocol (v2) against a real server, spoken by the real client: tritonclient's
``InferenceServerClient`` (HTTP), with JSON and binary tensors; seeded answers equal /sample's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.integration

MODEL = "swirl"
DATATYPES = {"n": "INT64", "seed": "INT64", "steps": "INT64", "trajectory_every": "INT64", "eta": "FP32", "sampler": "BYTES", "space": "BYTES"}


@pytest.fixture(scope="module")
def client(live_server: str) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(urlsplit(live_server).netloc, network_timeout=120.0, connection_timeout=30.0) as c:
        yield c


def inputs(binary: bool, **values: Any) -> list[triton.InferInput]:
    tensors = []
    for name, value in values.items():
        datatype = DATATYPES[name]
        array = np.array([value], dtype=object if datatype == "BYTES" else {"INT64": np.int64, "FP32": np.float32}[datatype])
        tensor = triton.InferInput(name, [1], datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        tensors.append(tensor)
    return tensors


def sample(live_server: str, **params: Any) -> dict[str, Any]:
    response = httpx.get(f"{live_server}/sample", params=params, timeout=120.0)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_health_and_metadata(client: triton.InferenceServerClient, live_server: str) -> None:
    assert client.is_server_live() and client.is_server_ready()
    server = client.get_server_metadata()
    assert server["name"] == "swirl" and "binary_tensor_data" in server["extensions"]
    assert client.is_model_ready(MODEL)
    model_id = httpx.get(f"{live_server}/model").json()["id"]
    metadata = client.get_model_metadata(MODEL)
    assert metadata["name"] == MODEL and metadata["versions"] == [model_id]
    declared = {tensor["name"]: (tensor["datatype"], tensor["shape"]) for tensor in metadata["inputs"]}
    assert declared == {name: (datatype, [1]) for name, datatype in DATATYPES.items()}
    outputs = {tensor["name"]: (tensor["datatype"], tensor["shape"]) for tensor in metadata["outputs"]}
    assert outputs["points"] == ("FP32", [-1, 2])
    assert client.get_model_metadata(MODEL, model_version=model_id)["name"] == MODEL
    assert client.is_model_ready(MODEL, model_version=model_id)
    assert not client.is_model_ready("nope")


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize(
    "params",
    [
        {"n": 400, "seed": 11},
        {"n": 300, "seed": 12, "sampler": "ddim", "steps": 10, "eta": 0.3},
        {"n": 250, "seed": 13, "sampler": "dpmpp2m", "steps": 8, "space": "data"},
    ],
)
def test_seeded_infer_equals_sample(client: triton.InferenceServerClient, live_server: str, params: dict[str, Any], binary: bool) -> None:
    result = client.infer(MODEL, inputs(binary, **params), outputs=[triton.InferRequestedOutput("points", binary_data=binary)], request_id="r-1")
    points = result.as_numpy("points")
    assert points is not None and points.dtype == np.float32 and points.shape == (params["n"], 2)
    expected = np.asarray(sample(live_server, **params)["points"], dtype=np.float32)
    np.testing.assert_array_equal(points, expected)
    response = result.get_response()
    assert response["model_name"] == MODEL and response["id"] == "r-1"
    assert response["parameters"]["seed"] == params["seed"] and response["parameters"]["space"] == params.get("space", "model")
    output = response["outputs"][0]
    assert ("data" in output) is not binary and ("binary_data_size" in output.get("parameters", {})) is binary


def test_picked_seed_replays_and_binary_default_output(client: triton.InferenceServerClient, live_server: str) -> None:
    result = client.infer(MODEL, inputs(True, n=200, sampler="ddim", steps=5))  # all outputs, binary by default
    seed = result.get_response()["parameters"]["seed"]
    expected = np.asarray(sample(live_server, n=200, sampler="ddim", steps=5, seed=seed)["points"], dtype=np.float32)
    np.testing.assert_array_equal(result.as_numpy("points"), expected)


def test_trajectory_outputs(client: triton.InferenceServerClient, live_server: str) -> None:
    params = {"n": 60, "seed": 5, "sampler": "ddim", "steps": 9, "trajectory_every": 4}
    outputs = [triton.InferRequestedOutput("trajectory"), triton.InferRequestedOutput("trajectory_t", binary_data=False)]
    result = client.infer(MODEL, inputs(True, **params), outputs=outputs)
    body = sample(live_server, **params)
    frames = result.as_numpy("trajectory")
    assert frames is not None and frames.shape == (len(body["trajectory"]), 60, 2)
    assert result.as_numpy("trajectory_t").tolist() == [frame["t"] for frame in body["trajectory"]]
    np.testing.assert_array_equal(frames[-1], np.asarray(body["points"], dtype=np.float32))


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"n": 0}, "'n'"),
        ({"n": 10**9}, "'n'"),
        ({"n": 10, "sampler": "euler"}, "'sampler'"),
        ({"n": 10, "steps": 10**6, "sampler": "ddim"}, "'steps'"),
        ({"n": 10, "eta": 0.5}, "'eta'"),  # eta applies to ddim only
        ({"n": 10, "eta": 2.0, "sampler": "ddim"}, "'eta'"),
        ({"n": 10, "space": "pixels"}, "'space'"),
        ({"seed": 1}, "'n'"),  # n is required
    ],
)
def test_bad_inputs_are_400_naming_the_input(client: triton.InferenceServerClient, values: dict[str, Any], named: str) -> None:
    for binary in (False, True):
        with pytest.raises(InferenceServerException) as caught:
            client.infer(MODEL, inputs(binary, **values))
        assert caught.value.status() == "400", caught.value
        assert named in caught.value.message()


def test_wrong_datatype_and_unknown_model(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("n", [1], "INT32")
    tensor.set_data_from_numpy(np.array([10], dtype=np.int32))
    with pytest.raises(InferenceServerException) as caught:
        client.infer(MODEL, [tensor])
    assert caught.value.status() == "400" and "'n'" in caught.value.message() and "INT64" in caught.value.message()
    with pytest.raises(InferenceServerException) as missing:
        client.infer("nope", inputs(False, n=10))
    assert missing.value.status() == "404" and "nope" in missing.value.message()
    with pytest.raises(InferenceServerException) as metadata:
        client.get_model_metadata("nope")
    assert metadata.value.status() == "404"
