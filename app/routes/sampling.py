"""``/sample`` (the batched reverse chain) and ``/forward`` (q(x_t | x_0) on a fresh roll).

Both answer JSON (the default) or ``.npy`` by content negotiation (``Accept``), in the model's
space or the data's (``space``), with the answer's metadata in ``Swirl-*`` headers and where
the time went in ``Server-Timing``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from typing import Any, Protocol, TypeVar

import numpy as np
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app.edge.middleware import MODEL_SCOPE_KEY
from app.edge.rate_limit import charge
from app.errors import RequestTimeout, ServiceUnavailable
from app.process.randomness import seed32
from app.serving.response_cache import AnswerKey, CachedAnswer
from app.serving.service import Service, ServiceDep
from app.serving.worker import DeadlineUnmeetable, Overloaded, SampleJob, SampleResult, Worker, WorkerStopped
from app.wire import encoding
from app.wire.conditional import none_match
from app.wire.encoding import JSON, NPY, POINT_FORMATS
from app.wire.negotiation import accepts_encoding, negotiate
from app.wire.query import parse_query, query_openapi
from app.wire.schemas import (
    ErrorResponse,
    ForwardRequest,
    ForwardResponse,
    LimitError,
    SampleRequest,
    SampleResponse,
    check_forward_limits,
    check_points,
    check_sample_limits,
)
from model.checkpoint import Checkpoint
from model.diffusion import SamplerSpec
from model.engine import PRIORITIES, DeadlineExceeded, check_condition, check_request

log = logging.getLogger("swirl.routes")
router = APIRouter(tags=["sampling"])

ENCODE_OFF_LOOP_POINTS = 20_000  # larger payloads are encoded in a thread
DISCONNECT_WATCH_AFTER_S = 0.1
"""A request still waiting this long starts watching its connection for the client leaving."""


def header_doc(description: str, example: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}, "example": example}


SERVER_TIMING_HEADER = header_doc(
    "where the time went, in ms (W3C Server-Timing): queue (waiting for the worker), compute (sampling), encode (serialising the body)",
    'queue;dur=0.412;desc="queue wait", compute;dur=35.118;desc="sampling", encode;dur=1.027;desc="encoding"',
)
SAMPLE_HEADERS = {
    "Swirl-N": header_doc("points per frame", "1000"),
    "Swirl-Seed": header_doc("the seed used (the one picked, when omitted)", "7"),
    "Swirl-Sampler": header_doc("ddpm, ddim or dpmpp2m", "ddim"),
    "Swirl-Steps": header_doc("network evaluations", "10"),
    "Swirl-Eta": header_doc("DDIM's η", "0.0"),
    "Swirl-Model": header_doc("sha256 of the checkpoint's weights", "3f1c…"),
    "Swirl-Space": header_doc("model or data", "model"),
    "Swirl-U": header_doc("guided models: the arc position asked for, or per-point for a list", "0.5"),
    "Swirl-Guidance": header_doc("guided models: the guidance weight used", "0.25"),
    "Swirl-Trajectory-T": header_doc("with trajectory_every: each frame's t, comma-separated, x_T … x_0", "10,5,0"),
    "Server-Timing": SERVER_TIMING_HEADER,
}
FORWARD_HEADERS = {
    "Swirl-T": header_doc("the diffusion step", "25"),
    "Swirl-N": header_doc("points", "1000"),
    "Swirl-Seed": header_doc("the seed used", "0"),
    "Swirl-Alpha-Bar": header_doc("ᾱ_t", "0.9573"),
    "Swirl-Space": header_doc("model or data", "model"),
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
    413: {"model": ErrorResponse, "description": "body larger than SWIRL_MAX_BODY_BYTES (a POST /sample body: u_body_limit, sized from SWIRL_MAX_POINTS)"},
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


R = TypeVar("R")


class Cancellable(Protocol[R]):
    """A job the worker resolves: a /sample or a /log_prob job."""

    @property
    def future(self) -> Future[R]: ...

    def cancel(self) -> None: ...


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def await_result(job: Cancellable[R], request: Request, timeout: float, worker: Worker, source: str = "SWIRL_REQUEST_TIMEOUT_S") -> R:
    """Wait for the engine; on timeout or disconnect, cancel the job (its rows leave at the next tick).

    Two timers and no task for most requests: a request still waiting after
    ``DISCONNECT_WATCH_AFTER_S`` (0.1 s) starts a task that reads its connection for the client leaving;
    one answered sooner never needs it (a task, its first step and its cancellation cost a small
    request about as much as its model does)."""
    result = worker.wait_for(job.future)
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
    raise RequestTimeout(_timeout_message(timeout, source))


def _timeout_source(job: SampleJob) -> str:
    return "timeout_ms" if job.timeout_s is not None else "SWIRL_REQUEST_TIMEOUT_S"


def _timeout_message(timeout: float, source: str) -> str:
    return f"the request took longer than {timeout:g} s ({source})"


def submit(service: Service, job: SampleJob) -> None:
    """Hand ``job`` to the worker; too much work in flight or a stopping worker is a 503."""
    admit(service, lambda: service.worker.submit(job))


def admit(service: Service, hand_over: Callable[[], object]) -> None:
    """Run ``hand_over`` (a worker's submit): too much work in flight or a stopping worker is a 503."""
    try:
        hand_over()
    except Overloaded as exc:
        service.metrics.rejected.labels(reason=exc.reason).inc()
        raise ServiceUnavailable(f"overloaded: {exc}", exc.reason, exc.retry_after_s) from None
    except WorkerStopped as exc:
        service.metrics.rejected.labels(reason="shutting_down").inc()
        raise ServiceUnavailable(str(exc), "shutting_down") from None
    except DeadlineUnmeetable as exc:
        service.metrics.rejected.labels(reason="deadline_unmeetable").inc()
        raise RequestTimeout(f"refused at once: {exc}") from None


async def run_job(service: Service, job: SampleJob, request: Request) -> SampleResult | None:
    """Submit ``job`` and wait for its result: 503/504 as errors, None when the client has gone."""
    submit(service, job)
    timeout = service.worker.timeout_s(job)
    try:
        return await await_result(job, request, timeout, service.worker, _timeout_source(job))
    except RequestTimeout:
        service.metrics.rejected.labels(reason="timeout").inc()
        raise
    except DeadlineExceeded:  # the engine dropped it mid-chain (counted by the worker)
        raise RequestTimeout(_timeout_message(timeout, _timeout_source(job))) from None
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
    u, guidance = job_condition(params, version.checkpoint)
    seed = params.seed if params.seed is not None else seed32()
    priority = priority_of(params, request, settings.priority_header)
    timeout_s = params.timeout_ms / 1000 if params.timeout_ms is not None else None
    job = SampleJob(
        n=params.n,
        seed=seed,
        spec=spec,
        trajectory_every=params.trajectory_every,
        model=version.name,
        u=u,
        guidance=guidance,
        priority=priority,
        timeout_s=timeout_s,
    )
    return job, steps


def job_condition(params: SampleRequest, checkpoint: Checkpoint) -> tuple[float | np.ndarray | None, float]:
    """u and the guidance weight for a job on ``checkpoint`` (its default guidance when u comes
    alone); the rules are the model's (``model.engine.check_condition``: 422 naming the field)."""
    guidance = params.guidance
    if guidance is None:
        guidance = checkpoint.default_guidance if params.u is not None else 0.0
    checked = check_condition(params.n, params.u, guidance, checkpoint.net_config.conditioned)
    return (checked if isinstance(params.u, list) else params.u), guidance


def evaluations(job: SampleJob, steps: int) -> int:
    """Network evaluations per point of a job: a guided one (w > 0) evaluates u and ∅ at every step."""
    return steps * (2 if job.guidance else 1)


def priority_of(params: SampleRequest, request: Request | None, header: str) -> str:
    """The request's priority class: the trusted header's (SWIRL_PRIORITY_HEADER, set by a gateway) when
    configured and present, else the ``priority`` parameter. A header value that is no class is a 422."""
    value = request.headers.get(header) if header and request is not None else None
    if value is None:
        return params.priority
    value = value.strip().lower()
    if value not in PRIORITIES:
        raise LimitError(header, f"the {header} header must be one of {', '.join(PRIORITIES)}, got {value[:32]!r}", "header")
    return value


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
        **condition_metadata(params, job),
    }


def condition_metadata(params: SampleRequest, job: SampleJob) -> dict[str, Any]:
    """u ("per-point" for a list) and the guidance used, for a conditioned request; nothing otherwise."""
    if job.u is None:
        return {}
    return {"u": "per-point" if isinstance(params.u, list) else params.u, "guidance": job.guidance}


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
    compress = _gzip_wanted(request, service, media_type)

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


def answer_key(params: SampleRequest, job: SampleJob, version: Hashable, steps: int, media_type: str, compress: bool) -> AnswerKey:
    """The response cache's key for a seeded answer: everything its bytes depend on, nothing else
    (priority and timeout_ms change when, not what). A list of u per point enters as its sha256."""
    parameters: dict[str, object] = {"n": params.n, "seed": job.seed, "sampler": params.sampler, "steps": steps, "eta": float(params.eta)}
    parameters |= {"trajectory_every": params.trajectory_every, "space": params.space, "u": condition_key(job.u), "guidance": float(job.guidance)}
    return AnswerKey(version, media_type, "gzip" if compress else "", tuple(sorted(parameters.items())))


def condition_key(u: float | np.ndarray | None) -> object:
    """u as part of a cache key: None, the number, or the sha256 of the float32 values of u per point."""
    if u is None or isinstance(u, float | int):
        return u
    return hashlib.sha256(np.ascontiguousarray(u, dtype=np.float32).tobytes()).hexdigest()


def _gzip_wanted(request: Request, service: Service, media_type: str) -> bool:
    gzip_min = service.settings.gzip_min_bytes
    return media_type == JSON and gzip_min > 0 and accepts_encoding(request.headers.get("accept-encoding"), "gzip")


CACHE_KEPT_HEADERS = ("server-timing", "content-length", "content-type")  # per answer, not per cached body


async def _sample(params: SampleRequest, service: Service, request: Request, location: str) -> Response:
    media_type = negotiate(request.headers.get("accept"), POINT_FORMATS)
    job, steps = sample_job(params, service, location, request)
    charge(request, points=params.n, evaluations=evaluations(job, steps))  # what was asked, answered from the cache or not
    cache, key, validators = service.response_cache, None, dict[str, str]()
    if params.seed is not None:  # a seeded answer is a pure function of its key: cacheable
        served = service.models.get(job.model).served
        key = answer_key(params, job, served.key, steps, media_type, _gzip_wanted(request, service, media_type))
        if request.method == "GET":
            validators = _validators(key, served.id, service)
            if none_match(request.headers.get("if-none-match"), validators["ETag"]):
                return Response(status_code=304, headers={**validators, "Vary": "Accept, Accept-Encoding"})
        hit = cache.get(key)
        if hit is not None:
            count_points(service, params.n, job.model)
            headers = {**hit.headers, **validators, "Server-Timing": 'cache;desc="hit"'}
            return Response(hit.body, media_type=hit.media_type, headers=headers)
    result = await run_job(service, job, request)
    if result is None:
        return Response(status_code=499)
    response = await _encode_sample(params, job, steps, service, request, media_type, result)
    if key is not None and job.served is not None:
        # stored under the version that computed it, and only while that version is still the current one
        key = replace(key, version=job.served.key)
        if service.models.get(job.model).served.key == key.version:
            kept = {name: value for name, value in response.headers.items() if name not in CACHE_KEPT_HEADERS}
            cache.put(key, CachedAnswer(bytes(response.body), media_type, kept))
        if request.method == "GET":
            response.headers.update(_validators(key, job.served.id, service))
    return response


def count_points(service: Service, n: int, model: str | None) -> None:
    """Points returned by /sample, sampled or from the cache (swirl_points_generated, per model too)."""
    service.metrics.points.labels(endpoint="sample").inc(n)
    service.metrics.model_points.labels(model=model, endpoint="sample").inc(n)


def _validators(key: AnswerKey, model_id: str, service: Service) -> dict[str, str]:
    """ETag and Cache-Control for a seeded GET answer: immutable, since its bytes never change."""
    max_age = service.settings.cache_max_age_s
    control = f"public, max-age={max_age}, immutable" if max_age else "no-cache"
    return {"ETag": key.etag(model_id), "Cache-Control": control}


async def _encode_sample(
    params: SampleRequest, job: SampleJob, steps: int, service: Service, request: Request, media_type: str, result: SampleResult
) -> Response:
    metadata = sample_metadata(params, job, steps, service)
    frames = result.trajectory if params.trajectory_every is not None else None
    if frames is not None:
        metadata["trajectory_t"] = [t for t, _ in frames]
    count_points(service, params.n, metadata["model_name"])
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


POST_SAMPLE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {
                "schema": SampleRequest.model_json_schema(),  # inline: the route reads its own body (JSON, or .npy of u)
                "examples": {
                    "ddim": {"value": {"n": 2000, "seed": 7, "sampler": "ddim", "steps": 10}},
                    "data space": {"value": {"n": 500, "seed": 1, "sampler": "dpmpp2m", "steps": 10, "space": "data"}},
                    "guided, one u": {"value": {"n": 500, "seed": 1, "model": "swiss-roll-guided", "u": 0.3, "guidance": 1.0}},
                    "guided, u per point": {"value": {"n": 3, "seed": 1, "model": "swiss-roll-guided", "u": [0.1, 0.5, 0.9]}},
                },
            },
            NPY: {
                "schema": {"type": "string", "format": "binary"},
                "example": "(binary .npy: a 1-D array of n values of u; the other parameters in the query string)",
            },
        },
    }
}


async def post_params(request: Request, max_points: int) -> SampleRequest:
    """A POST's parameters: a JSON object (``SampleRequest``), or an ``.npy`` body of u with the
    other parameters in the query string. 422 naming the field either way."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if content_type == NPY:
        params = parse_query(SampleRequest, request)
        if params.u is not None:
            raise RequestValidationError([{"type": "value_error", "loc": ("query", "u"), "msg": "u comes in the .npy body; do not also send it in the query"}])
        try:
            u = encoding.read_npy_vector(body, "u", max_points)
        except ValueError as exc:
            raise RequestValidationError([{"type": "value_error", "loc": ("body", "u"), "msg": str(exc)}]) from None
        try:
            return SampleRequest.model_validate({**params.model_dump(exclude_unset=True), "u": u.tolist()})
        except ValidationError as exc:
            raise RequestValidationError([{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]) from None
    try:
        return SampleRequest.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError([{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]) from None


@router.post(
    "/sample",
    response_model=SampleResponse,
    responses=_responses(BODY_ERRORS, SAMPLE_HEADERS, SAMPLE_EXAMPLE),
    summary="Generate points (JSON body, or an .npy body of u)",
    openapi_extra=POST_SAMPLE_BODY,
)
async def sample_post(service: ServiceDep, request: Request) -> Response:
    """The same as ``GET /sample``, with the parameters in a JSON object; ``u`` may be a list of n
    numbers, one per point. Or ``Content-Type: application/x-npy``: the body is a 1-D ``.npy`` of
    the n values of u, the other parameters in the query string."""
    return await _sample(await post_params(request, service.settings.max_points), service, request, "body")


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
