"""The Open Inference Protocol over gRPC: ``inference.GRPCInferenceService`` (ServerLive, ServerReady,
ModelReady, ServerMetadata, ModelMetadata, ModelInfer), served beside HTTP by ``app/routes/grpc_server.py``.

Requests go through the same rules as ``POST /v2/models/{model}/infer`` (``app/wire/v2_protocol.py``,
``app/routes/inference.py``), the same worker, limits and rate limits, so a seeded answer is the
same points as ``/sample``'s. Inputs come in typed ``contents`` or as ``raw_input_contents``; outputs
always go back as ``raw_output_contents`` (little-endian, row-major), as Triton sends them.

Errors carry the HTTP side's message, under the status code of its kind:

=========================  =================================================================
INVALID_ARGUMENT           a bad input, output or limit, named (HTTP 400)
NOT_FOUND                  an unknown model or version (HTTP 404)
RESOURCE_EXHAUSTED         queue full or too much work in flight, or a rate limit (HTTP 503/429);
                           retry information in ``google.rpc.RetryInfo`` (grpc-status-details-bin)
                           and in a ``retry-after`` trailer, in seconds as HTTP's Retry-After
UNAVAILABLE                not ready yet, or shutting down (HTTP 503)
DEADLINE_EXCEEDED          past SWIRL_REQUEST_TIMEOUT_S (HTTP 504); a client's own deadline ends
                           the call like a cancel
INTERNAL                   the model produced non-finite values (HTTP 500)
=========================  =================================================================

A call the client cancels (or whose deadline passes) cancels its job: its rows leave the
engine at the next tick.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from app.edge.client_address import rate_key
from app.edge.rate_limit import RateLimited, RateLimiter
from app.errors import RequestTimeout, ServiceUnavailable
from app.routes.inference import conditioned, invalid, prepare, resolve
from app.routes.sampling import ENCODE_OFF_LOOP_POINTS, condition_metadata, evaluations, submit
from app.serving.service import Service
from app.serving.worker import SampleJob, SampleResult
from app.wire import encoding
from app.wire import grpc_messages as pb
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
from model.engine import NonFiniteError
from model.errors import InvalidParameter

log = logging.getLogger("swirl.grpc")

PROCESS_METADATA = "swirl-process"
"""ServerReady's initial metadata: the answering process's id (as /readyz's ``process``)."""
RETRY_AFTER_METADATA = "retry-after"

STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
"""An Open Inference Protocol error's HTTP status → its gRPC status code."""
UNAVAILABLE_REASONS = {"shutting_down", "starting"}
"""ServiceUnavailable reasons that mean "this server cannot serve now" (UNAVAILABLE); the others
(queue full, too much work) mean "try again shortly" (RESOURCE_EXHAUSTED)."""

CONTENTS_FIELD = {"INT64": "int64_contents", "FP32": "fp32_contents", "BYTES": "bytes_contents"}
"""An input's datatype → the InferTensorContents field that holds its elements."""


class Abort(Exception):
    """End the call with ``code`` and ``message``; ``retry_after_s`` adds retry information."""

    def __init__(self, code: grpc.StatusCode, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after_s = retry_after_s


def retry_trailers(code: grpc.StatusCode, message: str, retry_after_s: float) -> tuple[tuple[str, str | bytes], ...]:
    """``google.rpc.Status`` with a ``RetryInfo`` detail (the gRPC convention for "retry after"),
    and the seconds again as a plain ``retry-after`` trailer (HTTP's Retry-After rule: whole seconds, at least 1)."""
    seconds = max(1, math.ceil(retry_after_s))
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=seconds)))
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=[detail])
    return (("grpc-status-details-bin", status.SerializeToString()), (RETRY_AFTER_METADATA, str(seconds)))


def _contents(tensor: Any) -> list[Any]:
    """A typed input tensor's elements (BYTES decoded as UTF-8)."""
    field = CONTENTS_FIELD[tensor.datatype]
    values = list(getattr(tensor.contents, field))
    if tensor.datatype == "BYTES":
        try:
            return [value.decode("utf-8") for value in values]
        except UnicodeDecodeError as exc:
            raise V2Error(400, f"input '{tensor.name}': not UTF-8: {exc}") from None
    return values


def read_inputs(request: Any) -> dict[str, Any]:
    """A ModelInferRequest's inputs → name → its one element (400 on anything malformed), as HTTP's ``parse_infer``."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise V2Error(400, f"raw_input_contents: {len(raw)} entries for {len(request.inputs)} inputs (one per input, or none)")
    values: dict[str, Any] = {}
    for index, tensor in enumerate(request.inputs):
        check_input(tensor.name, tensor.datatype, list(tensor.shape))
        shape = list(tensor.shape)
        value = binary_element(tensor.name, raw[index], shape) if raw else one_element(tensor.name, _contents(tensor), shape)
        add_input(values, tensor.name, value)
    require_n(values)
    return values


def _peer_address(peer: str) -> str:
    """grpc's peer (``ipv4:127.0.0.1:5000``, ``ipv6:[::1]:5000``, ``unix:…``) → the client's address."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer


class InferenceServicer:
    """The six calls, as coroutines for grpcio's asyncio server (``app/routes/grpc_server.py`` registers them)."""

    def __init__(self, service: Service, limiter: RateLimiter | None, server_version: str) -> None:
        self.service = service
        self.limiter = limiter
        self.server_version = server_version

    # -- health and metadata ---------------------------------------------------------------

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.send_initial_metadata(((PROCESS_METADATA, str(os.getpid())),))
        return pb.ServerReadyResponse(ready=self.service.ready)

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """``ready`` false for an unknown model, as Triton answers (tritonclient's ``is_model_ready`` is then False)."""
        try:
            resolve(self.service, request.name, request.version or None)
        except V2Error:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=self.service.ready)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await self._guard(context, self._limit_requests, context)
        return pb.ServerMetadataResponse(name="swirl", version=self.server_version, extensions=EXTENSIONS)

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await self._guard(context, self._limit_requests, context)
        loaded = await self._guard(context, resolve, self.service, request.name, request.version or None)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=request.name,
            versions=[loaded],
            platform=PLATFORM,
            inputs=[tensor(name=name, datatype=datatype, shape=shape) for name, datatype, shape in model_inputs(conditioned(self.service, request.name))],
            outputs=[tensor(name=name, datatype=datatype, shape=shape) for name, (datatype, shape) in OUTPUTS.items()],
        )

    # -- inference -------------------------------------------------------------------------

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        service = self.service
        model = request.model_name
        try:
            self._limit_requests(context)
            loaded = resolve(service, model, request.model_version or None)
            values = read_inputs(request)
            requested = [check_output(output.name) for output in request.outputs] or None
            prepared = prepare(service, model, values, requested)
            self._charge(context, prepared.params.n, evaluations(prepared.job, prepared.steps))
            result = await self._run(prepared.job, context)
        except InvalidParameter as exc:  # admission: a request that could never run (SWIRL_MAX_QUEUE_WORK)
            await self._abort(context, self._translate(invalid(exc)))
            raise AssertionError("unreachable: abort raises") from exc
        except (V2Error, RateLimited, ServiceUnavailable, RequestTimeout, NonFiniteError) as exc:
            await self._abort(context, self._translate(exc))
            raise AssertionError("unreachable: abort raises") from exc
        params = prepared.params
        normalisation = service.models.get(params.model).checkpoint.normalisation

        def answer() -> Any:
            response = pb.ModelInferResponse(model_name=model, model_version=loaded, id=request.id)
            for name, value in answer_parameters(prepared.job.seed, params, prepared.steps, condition_metadata(params, prepared.job)).items():
                parameter = response.parameters[name]
                if isinstance(value, float):
                    parameter.double_param = value
                elif isinstance(value, int):
                    parameter.int64_param = value
                else:
                    parameter.string_param = str(value)
            tensors = output_tensors(result.points, result.trajectory, params, normalisation)
            for name in requested or tensors:
                datatype, array = tensors[name]
                response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
                response.raw_output_contents.append(encoding.v2_tensor_bytes(array, datatype))
            return response

        frames = len(result.trajectory) + 1 if params.trajectory_every is not None else 1
        response = await asyncio.to_thread(answer) if params.n * frames > ENCODE_OFF_LOOP_POINTS else answer()
        service.metrics.points.labels(endpoint="grpc").inc(params.n)
        return response

    async def _run(self, job: SampleJob, context: grpc.aio.ServicerContext[Any, Any]) -> SampleResult:
        """Submit ``job`` and wait for it, at most SWIRL_REQUEST_TIMEOUT_S; a cancelled call cancels the job."""
        service = self.service
        submit(service, job)  # ServiceUnavailable: queue full, or shutting down
        timeout = service.settings.request_timeout_s
        try:
            return await asyncio.wait_for(asyncio.wrap_future(job.future), timeout)
        except TimeoutError:
            job.cancel()
            service.metrics.rejected.labels(reason="timeout").inc()
            raise RequestTimeout(f"the request took longer than {timeout:g} s (SWIRL_REQUEST_TIMEOUT_S)") from None
        except asyncio.CancelledError:  # the client cancelled, went away, or its deadline passed
            job.cancel()
            service.metrics.rejected.labels(reason="client_gone").inc()
            raise

    # -- limits and errors -------------------------------------------------------------------

    def _client(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        return rate_key(_peer_address(context.peer()))

    def _limit_requests(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """SWIRL_RATE_LIMIT_REQUESTS, as HTTP's middleware applies it (health calls are exempt)."""
        buckets = self.limiter.requests if self.limiter is not None else None
        if buckets is None:
            return
        wait = buckets.take(self._client(context), 1.0)
        if wait:
            self.service.metrics.rejected.labels(reason="rate_limit_requests").inc()
            raise RateLimited(
                f"rate limit: this client may make {buckets.rate:g} requests per second, {buckets.burst:g} at once "
                "(SWIRL_RATE_LIMIT_REQUESTS, SWIRL_RATE_LIMIT_REQUESTS_BURST)",
                wait,
            )

    def _charge(self, context: grpc.aio.ServicerContext[Any, Any], points: int, evaluations: int) -> None:
        if self.limiter is not None:
            self.limiter.charge(_peer_address(context.peer()), points, evaluations)

    @staticmethod
    def _translate(exc: Exception) -> Abort:
        if isinstance(exc, V2Error):
            return Abort(STATUS_CODES.get(exc.status, grpc.StatusCode.UNKNOWN), str(exc))
        if isinstance(exc, RateLimited):
            return Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), exc.retry_after_s)
        if isinstance(exc, ServiceUnavailable):
            if exc.reason in UNAVAILABLE_REASONS:
                return Abort(grpc.StatusCode.UNAVAILABLE, str(exc), exc.retry_after_s)
            return Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), exc.retry_after_s)
        if isinstance(exc, RequestTimeout):
            return Abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
        log.error("refusing to return non-finite samples over gRPC")
        return Abort(grpc.StatusCode.INTERNAL, f"the model produced non-finite values (NaN or inf); no points returned: {exc}")

    async def _abort(self, context: grpc.aio.ServicerContext[Any, Any], abort: Abort) -> None:
        message = str(abort)
        trailers = retry_trailers(abort.code, message, abort.retry_after_s) if abort.retry_after_s is not None else ()
        await context.abort(abort.code, message, trailing_metadata=trailers)

    async def _guard(self, context: grpc.aio.ServicerContext[Any, Any], fn: Any, *args: Any) -> Any:
        """``fn(*args)``, its V2Error or RateLimited ending the call with the matching status."""
        try:
            return fn(*args)
        except (V2Error, RateLimited) as exc:
            await self._abort(context, self._translate(exc))
