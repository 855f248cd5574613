"""The Open Inference Protocol over gRPC, in-process: a real grpcio server on the app's event loop,
called through a real channel. The same requests as HTTP v2 give the same points and the same
error texts; each error kind has its status code; a cancelled call leaves the engine; shutdown
refuses new calls while finishing those in flight (tritonclient itself runs in tests/integration)."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import pytest
from asgi_lifespan import LifespanManager
from google.rpc import error_details_pb2, status_pb2

from app.main import create_app
from app.routes.grpc_v2 import PROCESS_METADATA, RETRY_AFTER_METADATA
from app.serving.service import Service
from app.wire import grpc_messages as pb
from tests.app.conftest import Running, worker_held
from tests.conftest import free_port, make_settings

INFER = "/v2/models/swirl/infer"
DATATYPES = {"n": "INT64", "seed": "INT64", "steps": "INT64", "trajectory_every": "INT64", "eta": "FP32", "sampler": "BYTES", "space": "BYTES"}


@dataclass
class GrpcApp(Running):
    channel: grpc.aio.Channel

    async def call(self, method: str, request: Any, timeout: float = 60.0) -> Any:
        return await self.stub(method)(request, timeout=timeout)

    def stub(self, method: str) -> Any:
        request_class, response_class = pb.METHODS[method]
        path = pb.method_path(method)
        return self.channel.unary_unary(path, request_serializer=request_class.SerializeToString, response_deserializer=response_class.FromString)


@asynccontextmanager
async def grpc_app(tiny_checkpoint: Any, **overrides: Any) -> AsyncIterator[GrpcApp]:
    import httpx

    port = free_port()
    app = create_app(make_settings(tiny_checkpoint, grpc_port=port, **overrides))
    async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        http = httpx.AsyncClient(transport=transport, base_url="http://swirl.test", timeout=60.0)
        async with http, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield GrpcApp(app, http, channel)


def typed_request(model: str = "swirl", **values: Any) -> Any:
    """A ModelInferRequest with each input in its typed contents field."""
    request = pb.ModelInferRequest(model_name=model, id="req-1")
    for name, value in values.items():
        tensor = request.inputs.add(name=name, datatype=DATATYPES[name], shape=[1])
        if DATATYPES[name] == "BYTES":
            tensor.contents.bytes_contents.append(str(value).encode())
        elif DATATYPES[name] == "FP32":
            tensor.contents.fp32_contents.append(value)
        else:
            tensor.contents.int64_contents.append(value)
    return request


def raw_request(model: str = "swirl", **values: Any) -> Any:
    """A ModelInferRequest with the inputs as raw little-endian bytes (tritonclient's way)."""
    request = pb.ModelInferRequest(model_name=model)
    for name, value in values.items():
        datatype = DATATYPES[name]
        request.inputs.add(name=name, datatype=datatype, shape=[1])
        if datatype == "BYTES":
            raw = str(value).encode()
            request.raw_input_contents.append(struct.pack("<I", len(raw)) + raw)
        else:
            request.raw_input_contents.append(np.array([value], dtype="<i8" if datatype == "INT64" else "<f4").tobytes())
    return request


def http_body(**values: Any) -> dict[str, Any]:
    return {"inputs": [{"name": name, "datatype": DATATYPES[name], "shape": [1], "data": [value]} for name, value in values.items()]}


def points_of(response: Any, name: str = "points") -> np.ndarray:
    index = [output.name for output in response.outputs].index(name)
    output = response.outputs[index]
    dtype = "<f4" if output.datatype == "FP32" else "<i8"
    return np.frombuffer(response.raw_output_contents[index], dtype=dtype).reshape(list(output.shape))


async def rpc_error(app: GrpcApp, request: Any, method: str = "ModelInfer") -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await app.call(method, request)
    return caught.value


async def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def settled(service: Service) -> bool:
    return service.worker.queue_depth == 0 and service.worker.engine.in_flight == 0


async def test_health_metadata_and_seeded_points_equal_http(tiny_checkpoint: Any) -> None:
    async with grpc_app(tiny_checkpoint) as app:
        assert (await app.call("ServerLive", pb.ServerLiveRequest())).live
        ready_call = app.stub("ServerReady")(pb.ServerReadyRequest())
        assert (await ready_call).ready
        assert dict(await ready_call.initial_metadata())[PROCESS_METADATA].isdigit()
        server = await app.call("ServerMetadata", pb.ServerMetadataRequest())
        assert server.name == "swirl" and list(server.extensions) == ["binary_tensor_data"]
        model_id = (await app.http.get("/model")).json()["id"]
        metadata = await app.call("ModelMetadata", pb.ModelMetadataRequest(name="swirl"))
        http_metadata = (await app.http.get("/v2/models/swirl")).json()
        assert list(metadata.versions) == [model_id] and metadata.platform == http_metadata["platform"]
        assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [(t["name"], t["datatype"], t["shape"]) for t in http_metadata["inputs"]]
        assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [(t["name"], t["datatype"], t["shape"]) for t in http_metadata["outputs"]]
        assert (await app.call("ModelReady", pb.ModelReadyRequest(name="swirl", version=model_id))).ready
        assert not (await app.call("ModelReady", pb.ModelReadyRequest(name="nope"))).ready

        cases = (
            {"n": 120, "seed": 3},
            {"n": 90, "seed": 4, "sampler": "ddim", "steps": 6, "eta": 0.3},
            {"n": 70, "seed": 5, "sampler": "dpmpp2m", "steps": 5, "space": "data"},
        )
        for values in cases:
            expected = np.asarray((await app.http.get("/sample", params=values)).json()["points"], dtype=np.float32)
            for request in (typed_request(**values), raw_request(**values)):
                response = await app.call("ModelInfer", request)
                np.testing.assert_array_equal(points_of(response), expected)
                assert response.model_name == "swirl" and response.model_version == model_id
                assert response.parameters["seed"].int64_param == values["seed"]
                assert response.parameters["space"].string_param == values.get("space", "model")


async def test_trajectory_outputs_and_requested_outputs(tiny_checkpoint: Any) -> None:
    async with grpc_app(tiny_checkpoint) as app:
        values = {"n": 30, "seed": 9, "sampler": "ddim", "steps": 7, "trajectory_every": 3}
        body = (await app.http.get("/sample", params=values)).json()
        request = typed_request(**values)
        request.outputs.add(name="trajectory_t")
        request.outputs.add(name="trajectory")
        response = await app.call("ModelInfer", request)
        assert [output.name for output in response.outputs] == ["trajectory_t", "trajectory"]
        assert points_of(response, "trajectory_t").tolist() == [frame["t"] for frame in body["trajectory"]]
        frames = points_of(response, "trajectory")
        assert frames.shape == (len(body["trajectory"]), 30, 2)
        np.testing.assert_array_equal(frames[-1], np.asarray(body["points"], dtype=np.float32))
        large = {"n": 3000, "seed": 2, "sampler": "ddim", "steps": 7, "trajectory_every": 1, "space": "data"}  # 24,000 points: encoded off the loop
        body = (await app.http.get("/sample", params=large)).json()
        frames = points_of(await app.call("ModelInfer", typed_request(**large)), "trajectory")
        np.testing.assert_array_equal(frames, np.asarray([frame["points"] for frame in body["trajectory"]], dtype=np.float32))


BAD_INPUTS = [
    {"n": 0},
    {"n": 10**9},
    {"n": 10, "sampler": "euler"},
    {"n": 10, "steps": 10**6, "sampler": "ddim"},
    {"n": 10, "eta": 0.5},
    {"n": 10, "space": "pixels"},
    {"seed": 1},
    {"n": 3000, "trajectory_every": 1},  # past SWIRL_MAX_RESPONSE_POINTS
]


async def test_bad_inputs_are_invalid_argument_with_http_v2s_error_text(tiny_checkpoint: Any) -> None:
    async with grpc_app(tiny_checkpoint, max_response_points=2_000) as app:
        for values in BAD_INPUTS:
            http = await app.http.post(INFER, json=http_body(**values))
            assert http.status_code == 400, http.text
            for request in (typed_request(**values), raw_request(**values)):
                error = await rpc_error(app, request)
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert error.details() == http.json()["error"], values
        malformed = typed_request(n=5)
        malformed.inputs[0].shape[:] = [2]
        assert "must hold exactly one element" in (await rpc_error(app, malformed)).details()
        wrong_type = typed_request(n=5)
        wrong_type.inputs[0].datatype = "FP32"
        assert (await rpc_error(app, wrong_type)).details() == "input 'n': datatype must be INT64, got 'FP32'"
        unknown_output = typed_request(n=5)
        unknown_output.outputs.add(name="colours")
        assert "unknown output" in (await rpc_error(app, unknown_output)).details()
        partial_raw = raw_request(n=5, seed=1)
        del partial_raw.raw_input_contents[1]
        assert (await rpc_error(app, partial_raw)).code() == grpc.StatusCode.INVALID_ARGUMENT
        needs_trajectory = typed_request(n=5)
        needs_trajectory.outputs.add(name="trajectory")
        assert (await rpc_error(app, needs_trajectory)).details() == "output 'trajectory': needs the trajectory_every input"


async def test_calls_are_counted_by_status_code_in_the_request_metrics(tiny_checkpoint: Any) -> None:
    async with grpc_app(tiny_checkpoint) as app:
        await app.call("ModelInfer", typed_request(n=30, seed=1))
        await rpc_error(app, typed_request(n=0))
        await app.call("ServerLive", pb.ServerLiveRequest())
        text = (await app.http.get("/metrics")).text
    infer = pb.method_path("ModelInfer")
    for endpoint, status in ((infer, "OK"), (infer, "INVALID_ARGUMENT"), (pb.method_path("ServerLive"), "OK")):
        assert f'swirl_requests_total{{endpoint="{endpoint}",method="GRPC",status="{status}"}} 1.0' in text, (endpoint, status)
    assert f'swirl_request_seconds_count{{endpoint="{infer}"}} 2.0' in text


async def test_work_that_could_never_run_is_invalid_argument_as_on_http(tiny_checkpoint: Any) -> None:
    async with grpc_app(tiny_checkpoint, max_queue_work=1_000) as app:
        values = {"n": 500, "seed": 1, "sampler": "ddim", "steps": 10}  # 5,000 points × evaluations > SWIRL_MAX_QUEUE_WORK
        http = await app.http.post(INFER, json=http_body(**values))
        assert http.status_code == 400 and "SWIRL_MAX_QUEUE_WORK" in http.json()["error"]
        error = await rpc_error(app, typed_request(**values))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details() == http.json()["error"]


async def test_unknown_model_or_version_is_not_found(tiny_checkpoint: Any) -> None:
    async with grpc_app(tiny_checkpoint) as app:
        http = await app.http.post("/v2/models/nope/infer", json=http_body(n=5))
        error = await rpc_error(app, typed_request(model="nope", n=5))
        assert error.code() == grpc.StatusCode.NOT_FOUND and error.details() == http.json()["error"]
        request = typed_request(n=5)
        request.model_version = "0" * 64
        assert (await rpc_error(app, request)).code() == grpc.StatusCode.NOT_FOUND
        assert (await rpc_error(app, pb.ModelMetadataRequest(name="nope"), "ModelMetadata")).code() == grpc.StatusCode.NOT_FOUND


def retry_info(error: grpc.aio.AioRpcError) -> tuple[int, int]:
    """(RetryInfo's delay in s from grpc-status-details-bin, the retry-after trailer)."""
    trailers = dict(error.trailing_metadata() or ())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    assert status.code == error.code().value[0] and status.message == error.details()
    (detail,) = status.details
    info = error_details_pb2.RetryInfo()
    assert detail.Unpack(info)
    return info.retry_delay.seconds, int(trailers[RETRY_AFTER_METADATA])


async def test_queue_full_is_resource_exhausted_with_retry_info(tiny_checkpoint: Any) -> None:
    async with grpc_app(tiny_checkpoint, max_queue=1) as app:
        with worker_held(app.service) as gate:
            first = asyncio.ensure_future(app.call("ModelInfer", typed_request(n=20, seed=1)))
            await wait_until(lambda: app.service.worker.queue_depth == 1)
            error = await rpc_error(app, typed_request(n=20, seed=2))
            gate.set()
            assert points_of(await first).shape == (20, 2)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "SWIRL_MAX_QUEUE" in error.details()
        delay, trailer = retry_info(error)
        assert delay == trailer >= 1


async def test_rate_limit_is_resource_exhausted_with_retry_info(tiny_checkpoint: Any) -> None:
    async with grpc_app(tiny_checkpoint, rate_limit=1000.0, rate_limit_burst=1000.0) as app:
        await app.call("ModelInfer", typed_request(n=10, seed=1, sampler="ddim", steps=10))  # 100 of the burst's 1000
        error = await rpc_error(app, typed_request(n=100, seed=1, sampler="ddim", steps=10))  # 1000 more: over
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "SWIRL_RATE_LIMIT" in error.details()
        delay, trailer = retry_info(error)
        assert delay == trailer >= 1


async def test_a_cancelled_call_leaves_the_engine(tiny_checkpoint: Any) -> None:
    async with grpc_app(tiny_checkpoint) as app:
        service = app.service
        with worker_held(service) as gate:
            call = app.stub("ModelInfer")(typed_request(n=500, seed=1), timeout=60)
            await wait_until(lambda: service.worker.engine.in_flight == 1 and gate.waiting == 1)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            await wait_until(lambda: service.worker.queue_depth == 1 and service.worker.engine.in_flight == 1)  # held mid-chain
            gate.set()
            await wait_until(lambda: settled(service))
        assert (await app.http.get("/metrics")).text.count("swirl_cancelled_mid_chain_total 1.0") == 1


async def test_a_client_deadline_and_the_server_timeout_leave_the_engine(tiny_checkpoint: Any) -> None:
    async with grpc_app(tiny_checkpoint, request_timeout_s=0.3) as app:
        service = app.service
        with worker_held(service) as gate:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await app.call("ModelInfer", typed_request(n=50, seed=1), timeout=0.1)  # the client's deadline
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            error = await rpc_error(app, typed_request(n=50, seed=2))  # SWIRL_REQUEST_TIMEOUT_S
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "SWIRL_REQUEST_TIMEOUT_S" in error.details()
            gate.set()
            await wait_until(lambda: settled(service))


async def test_shutdown_refuses_new_calls_and_finishes_those_in_flight(tiny_checkpoint: Any) -> None:
    port = free_port()
    app = create_app(make_settings(tiny_checkpoint, grpc_port=port))
    manager = LifespanManager(app, startup_timeout=120, shutdown_timeout=60)
    await manager.__aenter__()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        client = GrpcApp(app, None, channel)  # type: ignore[arg-type]
        service: Service = app.state.service
        with worker_held(service) as gate:
            in_flight = asyncio.ensure_future(client.call("ModelInfer", typed_request(n=40, seed=1)))
            await wait_until(lambda: gate.waiting == 1)
            shutdown = asyncio.ensure_future(manager.__aexit__(None, None, None))
            await wait_until(lambda: not service.ready)
            await asyncio.sleep(0.2)  # the gRPC server is stopping: new calls are refused
            error = await rpc_error(client, typed_request(n=10, seed=2))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            gate.set()
            assert points_of(await in_flight).shape == (40, 2)
        await shutdown
