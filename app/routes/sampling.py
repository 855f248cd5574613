"""``/sample`` (the batched reverse chain) and ``/forward`` (q(x_t | x_0) on a fresh roll).

Both answer JSON (the default) or ``.npy`` by content negotiation (``Accept``), in the model's
space or the data's (``space``), with the answer's metadata in ``Swirl-*`` headers and where
the time went in ``Server-Timing``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Body, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app.edge.middleware import MODEL_SCOPE_KEY
from app.edge.rate_limit import charge
from app.errors import RequestTimeout, ServiceUnavailable
from app.process.randomness import seed32
from app.serving.service import Service, ServiceDep
from app.serving.worker import Overloaded, SampleJob, SampleResult, Worker, WorkerStopped
from app.wire import encoding
from app.wire.encoding import JSON, NPY, POINT_FORMATS
from app.wire.negotiation import accepts_encoding, negotiate
from app.wire.query import parse_query, query_openapi
from app.wire.schemas import (
    ErrorResponse,
    ForwardRequest,
    ForwardResponse,
    SampleRequest,
    SampleResponse,
    check_forward_limits,
    check_points,
    check_sample_limits,
)
from model.diffusion import SamplerSpec
from model.engine import check_request

log = logging.getLogger("swirl.routes")
router = APIRouter(tags=["sampling"])

ENCODE_OFF_LOOP_POINTS = 20_000  # larger payloads are encoded in a thread
DISCONNECT_WATCH_AFTER_S = 0.1
"""A request still waiting this long starts watching its connection for the client leaving."""


def _header(description: str, example: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}, "example": example}


SERVER_TIMING_HEADER = _header(
    "where the time went, in ms (W3C Server-Timing): queue (waiting for the worker), compute (sampling), encode (serialising the body)",
    'queue;dur=0.412;desc="queue wait", compute;dur=35.118;desc="sampling", encode;dur=1.027;desc="encoding"',
)
SAMPLE_HEADERS = {
    "Swirl-N": _header("points per frame", "1000"),
    "Swirl-Seed": _header("the seed used (the one picked, when omitted)", "7"),
    "Swirl-Sampler": _header("ddpm, ddim or dpmpp2m", "ddim"),
    "Swirl-Steps": _header("network evaluations", "10"),
    "Swirl-Eta": _header("DDIM's η", "0.0"),
    "Swirl-Model": _header("sha256 of the checkpoint's weights", "3f1c…"),
    "Swirl-Space": _header("model or data", "model"),
    "Swirl-Trajectory-T": _header("with trajectory_every: each frame's t, comma-separated, x_T … x_0", "10,5,0"),
    "Server-Timing": SERVER_TIMING_HEADER,
}
FORWARD_HEADERS = {
    "Swirl-T": _header("the diffusion step", "25"),
    "Swirl-N": _header("points", "1000"),
    "Swirl-Seed": _header("the seed used", "0"),
    "Swirl-Alpha-Bar": _header("ᾱ_t", "0.9573"),
    "Swirl-Space": _header("model or data", "model"),
    "Server-Timing": SERVER_TIMING_HEADER,
}
NPY_CONTENT = {
    NPY: {
        "schema": {"type": "string", "format": "binary"},
        "example": "(binary .npy: little-endian float32, shape (n, 2); with trajectory_every (frames, n, 2), x_T … x_0)",
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    406: {"model": ErrorResponse, "description": "the Accept header allows none of application/json, application/x-npy"},
    422: {"model": ErrorResponse, "description": "invalid parameter (the field is named), or a body that is not a JSON object"},
    429: {"model": ErrorResponse, "description": "this client's rate limit (SWIRL_RATE_LIMIT*) is used up; see Retry-After"},
    503: {"model": ErrorResponse, "description": "too much work in flight, or shutting down; see Retry-After"},
    504: {"model": ErrorResponse, "description": "timed out (SWIRL_REQUEST_TIMEOUT_S)"},
    500: {"model": ErrorResponse, "description": "the model produced non-finite values (NaN or inf); no points are returned"},
}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    413: {"model": ErrorResponse, "description": "body larger than SWIRL_MAX_BODY_BYTES"},
}
SAMPLE_EXAMPLE = {
    "n": 3,
    "seed": 7,
    "sampler": "ddim",
    "steps": 10,
    "eta": 0.0,
    "model": "3f1c…",
    "space": "model",
    "points": [[0.51, -1.32], [-1.05, 0.27], [1.21, 0.88]],
}
FORWARD_EXAMPLE = {"t": 25, "n": 2, "seed": 0, "alpha_bar": 0.9573, "space": "model", "points": [[0.49, -1.30], [-1.02, 0.31]]}


def _responses(errors: dict[int | str, dict[str, Any]], headers: dict[str, Any], example: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    ok = {"description": "JSON (default) or .npy, by Accept", "headers": headers, "content": {JSON: {"example": example}, **NPY_CONTENT}}
    return {200: ok, **errors}


class ClientGone(Exception):
    pass


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _await_result(job: SampleJob, request: Request, timeout: float, worker: Worker) -> SampleResult:
    """Wait for the engine; on timeout or disconnect, cancel the job (its rows leave at the next tick).

    Two timers and no task for most requests: a request still waiting after
    ``DISCONNECT_WATCH_AFTER_S`` (0.1 s) starts a task that reads its connection for the client leaving;
    one answered sooner never needs it (a task, its first step and its cancellation cost a small
    request about as much as its model does)."""
    result = worker.wait_for(job)
    loop = asyncio.get_running_loop()
    reasons: list[str] = []  # why ``result`` was cancelled here: "timeout" or "client_gone"
    watcher: asyncio.Task[None] | None = None

    def end(reason: str) -> None:
        if not result.done():
            reasons.append(reason)
            result.cancel()

    def gone(task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved: a failed read means the connection is gone too
            end("client_gone")

    def watch() -> None:
        nonlocal watcher
        watcher = loop.create_task(_wait_for_disconnect(request))
        watcher.add_done_callback(gone)

    timers = (loop.call_later(timeout, end, "timeout"), loop.call_later(DISCONNECT_WATCH_AFTER_S, watch))
    try:
        return await result
    except asyncio.CancelledError:
        job.cancel()
        if not reasons:
            raise  # this handler itself was cancelled
    finally:
        for timer in timers:
            timer.cancel()
        if watcher is not None:
            watcher.cancel()
    if reasons[0] == "client_gone":
        raise ClientGone
    raise RequestTimeout(f"the request took longer than {timeout:g} s (SWIRL_REQUEST_TIMEOUT_S)")


def submit(service: Service, job: SampleJob) -> None:
    """Hand ``job`` to the worker; too much work in flight or a stopping worker is a 503."""
    try:
        service.worker.submit(job)
    except Overloaded as exc:
        service.metrics.rejected.labels(reason=exc.reason).inc()
        raise ServiceUnavailable(f"overloaded: {exc}", exc.reason, exc.retry_after_s) from None
    except WorkerStopped as exc:
        service.metrics.rejected.labels(reason="shutting_down").inc()
        raise ServiceUnavailable(str(exc), "shutting_down") from None


async def run_job(service: Service, job: SampleJob, request: Request) -> SampleResult | None:
    """Submit ``job`` and wait for its result: 503/504 as errors, None when the client has gone."""
    submit(service, job)
    try:
        return await _await_result(job, request, service.settings.request_timeout_s, service.worker)
    except RequestTimeout:
        service.metrics.rejected.labels(reason="timeout").inc()
        raise
    except ClientGone:
        service.metrics.rejected.labels(reason="client_gone").inc()
        return None


def label_model(request: Request, name: str) -> None:
    """Name the model a request resolved to, for the per-model metrics (app.edge.middleware)."""
    request.scope[MODEL_SCOPE_KEY] = name  # the scope is per request (lifespan state may be shared)


def sample_job(params: SampleRequest, service: Service, location: str, request: Request | None = None) -> tuple[SampleJob, int]:
    """The worker job for validated ``params`` on the named model (422 past a configured limit, or for an
    unknown model) and its number of steps."""
    settings = service.settings
    version = service.models.get(params.model)
    if request is not None:
        label_model(request, version.name)
    check_points(params, settings.max_points, location)
    # the sampler's rules are the model's: SamplerSpec, make_plan (via the worker's plan cache) and
    # check_request raise InvalidParameter naming the field (422, app.errors)
    spec = SamplerSpec(params.sampler, steps=params.steps, eta=params.eta)
    plan = service.worker.plan(spec, version.name)
    check_request(params.n, plan, params.trajectory_every)
    steps = len(plan.steps)
    check_sample_limits(params, steps, settings.max_response_points, location)
    seed = params.seed if params.seed is not None else seed32()
    return SampleJob(n=params.n, seed=seed, spec=spec, trajectory_every=params.trajectory_every, model=version.name), steps


def sample_metadata(params: SampleRequest, job: SampleJob, steps: int, service: Service) -> dict[str, Any]:
    served = job.served  # the version it ran on: the current one when it was admitted
    assert served is not None
    return {
        "n": params.n,
        "seed": job.seed,
        "sampler": params.sampler,
        "steps": steps,
        "eta": params.eta,
        "model": served.id,
        "model_name": served.name,
        "space": params.space,
    }


async def encode_points(
    request: Request,
    service: Service,
    media_type: str,
    metadata: dict[str, Any],
    xs: np.ndarray,
    frames: Sequence[tuple[int, np.ndarray]] | None,
    timing: tuple[float | None, float | None],
) -> Response:
    """The answer in ``media_type``, in ``metadata["space"]``, with its headers (Swirl-*, Server-Timing, Vary)."""
    space = metadata["space"]
    normalisation = service.models.get(metadata.get("model_name")).checkpoint.normalisation
    gzip_min = service.settings.gzip_min_bytes
    compress = media_type == JSON and gzip_min > 0 and accepts_encoding(request.headers.get("accept-encoding"), "gzip")

    def encode() -> tuple[bytes, dict[str, str], float]:
        started = time.perf_counter()
        points = encoding.to_space(xs, space, normalisation)
        in_space = [(t, encoding.to_space(frame, space, normalisation)) for t, frame in frames] if frames is not None else None
        body, content_headers = encoding.encode_answer(media_type, metadata, points, in_space), {}
        if compress and len(body) >= gzip_min:
            body, content_headers = encoding.gzip_bytes(body), {"Content-Encoding": "gzip"}
        return body, content_headers, time.perf_counter() - started

    total = xs.shape[0] * (len(frames) + 1 if frames is not None else 1)
    body, content_headers, encode_s = await run_in_threadpool(encode) if total > ENCODE_OFF_LOOP_POINTS else encode()
    headers = {
        **encoding.metadata_headers(metadata),
        **content_headers,
        "Server-Timing": encoding.server_timing(timing[0], timing[1], encode_s),
        "Vary": "Accept, Accept-Encoding",
    }
    return Response(body, media_type=media_type, headers=headers)


async def _sample(params: SampleRequest, service: Service, request: Request, location: str) -> Response:
    media_type = negotiate(request.headers.get("accept"), POINT_FORMATS)
    job, steps = sample_job(params, service, location, request)
    charge(request, points=params.n, evaluations=steps)
    result = await run_job(service, job, request)
    if result is None:
        return Response(status_code=499)
    metadata = sample_metadata(params, job, steps, service)
    frames = result.trajectory if params.trajectory_every is not None else None
    if frames is not None:
        metadata["trajectory_t"] = [t for t, _ in frames]
    service.metrics.points.labels(endpoint="sample").inc(params.n)
    service.metrics.model_points.labels(model=metadata["model_name"], endpoint="sample").inc(params.n)
    return await encode_points(request, service, media_type, metadata, result.points, frames, (result.queue_seconds, result.compute_seconds))


@router.get(
    "/sample",
    response_model=SampleResponse,
    responses=_responses(ERRORS, SAMPLE_HEADERS, SAMPLE_EXAMPLE),
    summary="Generate points (query parameters)",
    openapi_extra=query_openapi(SampleRequest),
)
async def sample_get(service: ServiceDep, request: Request) -> Response:
    """Run the reverse chain for ``n`` points. The same (seed, n, sampler, steps, eta) always gives the same points.

    ``Accept: application/x-npy`` answers a NumPy ``.npy`` (float32, (n, 2); with ``trajectory_every``
    (frames, n, 2), x_T … x_0) and puts the metadata in ``Swirl-*`` headers; JSON is the default.
    ``space=data`` returns the swiss roll's own coordinates."""
    return await _sample(parse_query(SampleRequest, request), service, request, "query")


@router.post(
    "/sample",
    response_model=SampleResponse,
    responses=_responses(BODY_ERRORS, SAMPLE_HEADERS, SAMPLE_EXAMPLE),
    summary="Generate points (JSON body)",
)
async def sample_post(
    params: Annotated[
        SampleRequest,
        Body(
            openapi_examples={
                "ddim": {"value": {"n": 2000, "seed": 7, "sampler": "ddim", "steps": 10}},
                "data space": {"value": {"n": 500, "seed": 1, "sampler": "dpmpp2m", "steps": 10, "space": "data"}},
            }
        ),
    ],
    service: ServiceDep,
    request: Request,
) -> Response:
    """The same as ``GET /sample``, with the parameters in a JSON object."""
    return await _sample(params, service, request, "body")


@router.get(
    "/forward",
    response_model=ForwardResponse,
    responses=_responses({406: ERRORS[406], 422: ERRORS[422], 429: ERRORS[429], 503: ERRORS[503]}, FORWARD_HEADERS, FORWARD_EXAMPLE),
    summary="Noised swiss roll at step t",
    openapi_extra=query_openapi(ForwardRequest),
)
async def forward(service: ServiceDep, request: Request) -> Response:
    """``n`` draws of q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) on fresh swiss-roll points; t = 0 is the clean roll.

    JSON or ``.npy`` by ``Accept``, model or data ``space``, as ``/sample``."""
    params = parse_query(ForwardRequest, request)
    media_type = negotiate(request.headers.get("accept"), POINT_FORMATS)
    version = service.models.get(params.model)
    label_model(request, version.name)
    check_forward_limits(params, version.checkpoint.schedule.timesteps, service.settings.max_points)
    charge(request, points=params.n)
    seed = params.seed if params.seed is not None else seed32()
    submitted = time.perf_counter()
    started: list[float] = []

    def compute() -> np.ndarray:
        started.append(time.perf_counter())
        return version.forward(params.t, params.n, seed)

    gate = service.forward_gate
    if not gate.enter(params.n):
        service.metrics.rejected.labels(reason="forward_busy").inc()
        message = f"overloaded: {gate.busy} /forward points are being computed (SWIRL_MAX_FORWARD_POINTS = {gate.max_points}); retry shortly"
        raise ServiceUnavailable(message, "forward_busy")
    try:
        xt = await run_in_threadpool(compute)
    finally:
        gate.leave(params.n)
    compute_s = time.perf_counter() - started[0]
    metadata = {
        "t": params.t,
        "n": params.n,
        "seed": seed,
        "alpha_bar": version.checkpoint.schedule.alpha_bar(params.t),
        "model": version.id,
        "model_name": version.name,
        "space": params.space,
    }
    service.metrics.points.labels(endpoint="forward").inc(params.n)
    service.metrics.model_points.labels(model=version.name, endpoint="forward").inc(params.n)
    return await encode_points(request, service, media_type, metadata, xt, None, (started[0] - submitted, compute_s))
