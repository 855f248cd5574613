"""The Open Inference Protocol (KServe v2) REST API, the one Triton, KServe and MLServer speak.

``/v2`` (server metadata), ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{model}``
(inputs and outputs), ``/v2/models/{model}/ready`` and ``POST /v2/models/{model}/infer``, also
under ``/v2/models/{model}/versions/{version}/…``. ``swirl`` names the served model.

Inference goes through the same worker, limits and seeds as ``/sample`` (a seeded answer is the
same points). Tensors travel as JSON or with the binary tensor data extension (a JSON header of
``Inference-Header-Content-Length`` bytes, then raw little-endian tensor bytes), in either
direction. Errors carry the protocol's ``{"error": "..."}`` body; a bad input is a 400 naming it.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app.edge.rate_limit import charge
from app.routes.inference import conditioned, invalid, prepare, resolve
from app.routes.sampling import ENCODE_OFF_LOOP_POINTS, condition_metadata, evaluations, run_job
from app.serving.service import Service, ServiceDep
from app.serving.worker import SampleResult
from app.wire import encoding
from app.wire.encoding import INFERENCE_HEADER, JSON, OCTET_STREAM, FastJSON
from app.wire.negotiation import accepts_encoding
from app.wire.schemas import LimitError, SampleRequest
from app.wire.v2_protocol import (
    EXTENSIONS,
    OUTPUTS,
    PLATFORM,
    V2Error,
    add_input,
    answer_parameters,
    binary_element,
    check_input,
    check_output,
    model_inputs,
    one_element,
    output_tensors,
    require_n,
)
from app.wire.v2_schemas import InferResponse, Live, ModelMetadata, ModelReady, Ready, ServerMetadata
from model.errors import InvalidParameter

router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])

ModelName = Annotated[str, Path(description="the model's name; `swirl` is the served model", examples=["swirl"])]
Version = Annotated[str, Path(description="a version of the model: the checkpoint id (sha256) of the loaded weights")]

ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}


def _error_doc(description: str, example: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": ERROR_SCHEMA, "example": {"error": example}}}}


def _ok(model: type[Any], description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model, "description": description}}


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _error_doc("no such model (or version)", "unknown model 'nope'; this server serves: swirl")}


def _error(exc: V2Error) -> Response:
    return FastJSON({"error": str(exc)}, status_code=exc.status)


# -- health and metadata -------------------------------------------------------------------


@router.get("", summary="Server metadata", responses=_ok(ServerMetadata, "name, version and extensions"))
async def server_metadata(request: Request) -> Response:
    """The server's name, version and the protocol extensions it supports."""
    return FastJSON({"name": "swirl", "version": request.app.version, "extensions": EXTENSIONS})


@router.get("/health/live", summary="Server liveness", responses=_ok(Live, "the server answers"))
async def live() -> Response:
    return FastJSON({"live": True})


NOT_READY: dict[int | str, dict[str, Any]] = {503: _error_doc("not ready yet, or shutting down", "not ready")}


@router.get("/health/ready", summary="Server readiness", responses={**_ok(Ready, "ready"), **NOT_READY})
async def ready(service: ServiceDep) -> Response:
    return FastJSON({"ready": service.ready}, status_code=200 if service.ready else 503)


def _metadata(service: Service, model: str, version: str | None) -> Response:
    try:
        loaded = resolve(service, model, version)
    except V2Error as exc:
        return _error(exc)
    return FastJSON(
        {
            "name": model,
            "versions": [loaded],
            "platform": PLATFORM,
            "inputs": [{"name": name, "datatype": datatype, "shape": shape} for name, datatype, shape in model_inputs(conditioned(service, model))],
            "outputs": [{"name": name, "datatype": datatype, "shape": shape} for name, (datatype, shape) in OUTPUTS.items()],
        }
    )


@router.get("/models/{model}", summary="Model metadata", responses={**_ok(ModelMetadata, "inputs and outputs"), **NOT_FOUND})
async def model_metadata(model: ModelName, service: ServiceDep) -> Response:
    """Inputs and outputs with their datatypes and shapes (-1: depends on the request)."""
    return _metadata(service, model, None)


@router.get("/models/{model}/versions/{version}", summary="Model version metadata", responses={**_ok(ModelMetadata, "inputs and outputs"), **NOT_FOUND})
async def model_version_metadata(model: ModelName, version: Version, service: ServiceDep) -> Response:
    return _metadata(service, model, version)


def _model_ready(service: Service, model: str, version: str | None) -> Response:
    try:
        resolve(service, model, version)
    except V2Error as exc:
        return _error(exc)
    return FastJSON({"name": model, "ready": service.ready}, status_code=200 if service.ready else 503)


@router.get("/models/{model}/ready", summary="Model readiness", responses={**_ok(ModelReady, "ready (503 while not)"), **NOT_FOUND})
async def model_ready(model: ModelName, service: ServiceDep) -> Response:
    return _model_ready(service, model, None)


@router.get("/models/{model}/versions/{version}/ready", summary="Model version readiness", responses={**_ok(ModelReady, "ready (503 while not)"), **NOT_FOUND})
async def model_version_ready(model: ModelName, version: Version, service: ServiceDep) -> Response:
    return _model_ready(service, model, version)


# -- inference -----------------------------------------------------------------------------


@dataclass
class InferRequest:
    id: str | None
    values: dict[str, Any]  # input name → its one element
    outputs: dict[str, bool] | None  # requested output → binary?; None: all outputs
    binary_default: bool  # the request's binary_data_output parameter


def _flatten(data: Any) -> Iterator[Any]:
    if isinstance(data, list):
        for item in data:
            yield from _flatten(item)
    else:
        yield data


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        raise V2Error(400, f"{INFERENCE_HEADER}: not an integer: {header_length!r}") from None
    if not 0 <= length <= len(body):
        raise V2Error(400, f"{INFERENCE_HEADER}: {length} is outside the body's {len(body)} bytes")
    return body[:length], body[length:]


QOS_PARAMETERS = ("priority", "timeout_ms")  # request parameters that become the sampler request's fields (docs/qos.md)


def _binary_flag(parameters: Any, name: str, where: str) -> bool | None:
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        raise V2Error(400, f"{where}: parameters must be an object")
    value = parameters.get(name)
    if value is not None and not isinstance(value, bool):
        raise V2Error(400, f"{where}: parameter {name} must be a boolean")
    return value


def _read_input(item: Any, binary: memoryview, offset: int) -> tuple[str, Any, int]:
    """One input tensor → (name, its single element, the new offset into the binary data)."""
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise V2Error(400, "inputs: each input must be an object with a name")
    name = item["name"]
    where = check_input(name, item.get("datatype"), item.get("shape"))
    parameters = item.get("parameters")
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
            raise V2Error(400, f"{where}: binary_data_size {size!r} does not fit the {len(binary) - offset} binary bytes left")
        return name, binary_element(name, bytes(binary[offset : offset + size]), item.get("shape")), offset + size
    if "data" not in item:
        raise V2Error(400, f"{where}: needs data (or binary_data_size)")
    return name, one_element(name, list(_flatten(item["data"])), item.get("shape")), offset


def decompress(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """A request body sent with ``Content-Encoding: gzip`` or ``deflate`` (tritonclient's request
    compression), inflated to at most ``limit`` bytes (413 past it: no zip bombs)."""
    coding = (content_encoding or "identity").strip().lower()
    if coding == "identity":
        return body
    if coding not in ("gzip", "deflate"):
        raise V2Error(415, f"content-encoding: {coding!r} is not supported; use gzip, deflate or none")
    inflater = zlib.decompressobj(wbits=31 if coding == "gzip" else 15)
    try:
        inflated = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise V2Error(400, f"content-encoding: the body is not valid {coding}: {exc}") from None
    if len(inflated) > limit or inflater.unconsumed_tail:
        raise V2Error(413, f"body: inflated request body larger than {limit} bytes (SWIRL_MAX_BODY_BYTES + 32 × SWIRL_MAX_POINTS)")
    return inflated


def parse_infer(body: bytes, header_length: str | None) -> InferRequest:
    """An inference request's JSON (and binary) parts → its inputs and requested outputs (400 on anything malformed)."""
    head, binary = _split_body(body, header_length)
    try:
        request = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise V2Error(400, f"malformed JSON: {exc}") from None
    if not isinstance(request, dict):
        raise V2Error(400, "the request must be a JSON object")
    inputs = request.get("inputs")
    if not isinstance(inputs, list):
        raise V2Error(400, "inputs: required, a list of input tensors")
    values: dict[str, Any] = {}
    offset, view = 0, memoryview(binary)
    for item in inputs:
        name, value, offset = _read_input(item, view, offset)
        add_input(values, name, value)
    if offset != len(binary):
        raise V2Error(400, f"{len(binary) - offset} binary bytes after the last input tensor")
    require_n(values)
    binary_default = bool(_binary_flag(request.get("parameters"), "binary_data_output", "parameters"))
    for name in QOS_PARAMETERS:  # request parameters, as Triton takes its priority and timeout; validated with the inputs
        if isinstance(request.get("parameters"), dict) and name in request["parameters"]:
            if name in values:
                raise V2Error(400, f"parameter {name}: given as an input too")
            values[name] = request["parameters"][name]
    outputs: dict[str, bool] | None = None
    if request.get("outputs") is not None:
        if not isinstance(request["outputs"], list):
            raise V2Error(400, "outputs: must be a list")
        outputs = {}
        for output in request["outputs"]:
            output_name = check_output(output.get("name") if isinstance(output, dict) else None)
            flag = _binary_flag(output.get("parameters"), "binary_data", f"output '{output_name}'")
            outputs[output_name] = binary_default if flag is None else flag
    request_id = request.get("id")
    return InferRequest(str(request_id) if request_id is not None else None, values, outputs, binary_default)


async def _infer(request: Request, service: Service, model: str, version: str | None) -> Response:
    try:
        loaded = resolve(service, model, version)
        body = decompress(await request.body(), request.headers.get("content-encoding"), service.settings.u_body_bytes())
        parsed = parse_infer(body, request.headers.get(INFERENCE_HEADER))
        prepared = prepare(service, model, parsed.values, None if parsed.outputs is None else list(parsed.outputs), request)
        params, job, steps = prepared.params, prepared.job, prepared.steps
        charge(request, points=params.n, evaluations=evaluations(job, steps))  # over the limit: 429 with {"error"}
        result = await run_job(service, job, request)  # 503 and 504 keep their status, with {"error"} bodies
    except (LimitError, InvalidParameter) as exc:
        return _error(invalid(exc))
    except V2Error as exc:
        return _error(exc)
    if result is None:
        return Response(status_code=499)
    header: dict[str, Any] = {
        "model_name": model,
        "model_version": loaded,
        "parameters": answer_parameters(job.seed, params, steps, condition_metadata(params, job)),
    }
    if parsed.id is not None:
        header["id"] = parsed.id
    gzip_ok = accepts_encoding(request.headers.get("accept-encoding"), "gzip")

    def encode() -> tuple[bytes, dict[str, str], float]:
        started = time.perf_counter()
        answer, headers = _encode_outputs(header, parsed, params, result, service, gzip_ok)
        return answer, headers, time.perf_counter() - started

    frames = len(result.trajectory) + 1 if params.trajectory_every is not None else 1
    answer, headers, encode_s = await run_in_threadpool(encode) if params.n * frames > ENCODE_OFF_LOOP_POINTS else encode()
    headers["Server-Timing"] = encoding.server_timing(result.queue_seconds, result.compute_seconds, encode_s)
    service.metrics.points.labels(endpoint="v2").inc(params.n)
    return Response(answer, media_type=OCTET_STREAM if INFERENCE_HEADER in headers else JSON, headers=headers)


def _encode_outputs(
    header: dict[str, Any], parsed: InferRequest, params: SampleRequest, result: SampleResult, service: Service, gzip_ok: bool
) -> tuple[bytes, dict[str, str]]:
    """The requested outputs as JSON tensors or binary tensor data after the JSON header; its headers."""
    normalisation = service.models.get(params.model).checkpoint.normalisation
    tensors = output_tensors(result.points, result.trajectory, params, normalisation)
    wanted = parsed.outputs if parsed.outputs is not None else dict.fromkeys(tensors, parsed.binary_default)
    outputs, binaries = [], []
    for name, binary in wanted.items():
        datatype, array = tensors[name]
        output: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            raw = encoding.v2_tensor_bytes(array, datatype)
            output["parameters"] = {"binary_data_size": len(raw)}
            binaries.append(raw)
        else:
            output["data"] = array.reshape(-1)
        outputs.append(output)
    answer, header_length = encoding.v2_body({**header, "outputs": outputs}, binaries)
    headers = {INFERENCE_HEADER: str(header_length)} if binaries else {}
    gzip_min = service.settings.gzip_min_bytes
    # float32 tensor bytes barely compress (8% at n = 10k): only JSON tensors are worth gzip
    if not binaries and gzip_min and len(answer) >= gzip_min and gzip_ok:
        answer, headers["Content-Encoding"] = encoding.gzip_bytes(answer), "gzip"
    return answer, headers


INFER_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {
                "schema": {"type": "object"},
                "examples": {
                    "json tensors": {
                        "value": {
                            "id": "1",
                            "inputs": [
                                {"name": "n", "datatype": "INT64", "shape": [1], "data": [1000]},
                                {"name": "seed", "datatype": "INT64", "shape": [1], "data": [7]},
                                {"name": "sampler", "datatype": "BYTES", "shape": [1], "data": ["ddim"]},
                                {"name": "steps", "datatype": "INT64", "shape": [1], "data": [10]},
                            ],
                            "outputs": [{"name": "points", "parameters": {"binary_data": False}}],
                        }
                    },
                    "binary output": {
                        "value": {
                            "inputs": [{"name": "n", "datatype": "INT64", "shape": [1], "data": [100000]}],
                            "parameters": {"binary_data_output": True},
                        }
                    },
                },
            },
            OCTET_STREAM: {
                "schema": {"type": "string", "format": "binary"},
                "example": f"(the JSON request, then the binary input tensors; {INFERENCE_HEADER} gives the JSON's length)",
            },
        },
    },
    "responses": {
        "200": {
            "description": "the outputs: JSON tensors, or with binary outputs a JSON header followed by the raw tensors",
            "headers": {
                INFERENCE_HEADER: {"description": "with binary outputs: the length of the JSON header", "schema": {"type": "integer"}},
                "Server-Timing": {"description": "queue wait, compute and encode, in ms", "schema": {"type": "string"}},
            },
            "content": {
                OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "400": _error_doc("a bad input, named", "input 'n': n: Input should be greater than or equal to 1"),
        **NOT_FOUND,
        "429": _error_doc("this client's rate limit is used up (Retry-After)", "rate limit: this request costs 20000 (points × network evaluations); …"),
        "503": _error_doc("queue full or shutting down (Retry-After)", "overloaded: 256 requests are already queued (SWIRL_MAX_QUEUE); retry shortly"),
        "504": _error_doc("timed out (SWIRL_REQUEST_TIMEOUT_S)", "the request took longer than 60 s (SWIRL_REQUEST_TIMEOUT_S)"),
    },
}


@router.post("/models/{model}/infer", summary="Inference (sample points)", responses=_ok(InferResponse, "the outputs"), openapi_extra=INFER_DOC)
async def infer(model: ModelName, request: Request, service: ServiceDep) -> Response:
    """Sample ``n`` points: inputs n (required), seed, sampler, steps, eta, trajectory_every, space (each shape [1]);
    output ``points`` FP32 [n, 2] (and ``trajectory`` FP32 [frames, n, 2], ``trajectory_t`` INT64 [frames])."""
    return await _infer(request, service, model, None)


@router.post(
    "/models/{model}/versions/{version}/infer", summary="Inference on a model version", responses=_ok(InferResponse, "the outputs"), openapi_extra=INFER_DOC
)
async def infer_version(model: ModelName, version: Version, request: Request, service: ServiceDep) -> Response:
    return await _infer(request, service, model, version)
