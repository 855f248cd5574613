"""``/sample`` (the batched reverse chain) and ``/forward`` (q(x_t | x_0) on a fresh roll), on any model by name."""

from __future__ import annotations

import asyncio
import logging
import secrets
from concurrent.futures import Future
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app.encoding import JSONBytes, dumps, points
from app.errors import RequestTimeout, ServiceUnavailable
from app.middleware import MODEL_SCOPE_KEY
from app.rate_limit import charge
from app.schemas import (
    ErrorResponse,
    ForwardRequest,
    ForwardResponse,
    SampleRequest,
    SampleResponse,
    check_forward_limits,
    check_sample_limits,
)
from app.service import Service, ServiceDep
from app.worker import Overloaded, SampleJob, SampleResult, WorkerStopped
from model.diffusion import SamplerSpec

log = logging.getLogger("swirl.routes")
router = APIRouter(tags=["sampling"])

ENCODE_OFF_LOOP_POINTS = 20_000  # larger payloads are encoded in a thread
ERRORS: dict[int | str, dict[str, Any]] = {
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


class ClientGone(Exception):
    pass


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _await_result(job: SampleJob, request: Request, timeout: float) -> SampleResult:
    """Wait for the engine; on timeout or disconnect, cancel the job (its rows leave at the next tick)."""
    future: Future[SampleResult] = job.future
    result = asyncio.wrap_future(future)
    disconnect: asyncio.Future[None] = asyncio.ensure_future(_wait_for_disconnect(request))
    waiting: set[asyncio.Future[Any]] = {result, disconnect}
    try:
        done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        disconnect.cancel()
    if result in done:
        return result.result()
    job.cancel()
    result.cancel()
    if disconnect in done:
        raise ClientGone
    raise RequestTimeout(f"the request took longer than {timeout:g} s (SWIRL_REQUEST_TIMEOUT_S)")


async def _encode(payload: dict[str, Any], total_points: int) -> bytes:
    if total_points > ENCODE_OFF_LOOP_POINTS:
        return await run_in_threadpool(dumps, payload)
    return dumps(payload)


def label_model(request: Request, name: str) -> None:
    """Name the model a request resolved to, for the per-model metrics (app.middleware)."""
    request.scope[MODEL_SCOPE_KEY] = name  # the scope is per request (lifespan state may be shared)


async def _sample(params: SampleRequest, service: Service, request: Request, location: str) -> Response:
    settings = service.settings
    version = service.models.get(params.model)
    label_model(request, version.name)
    steps = check_sample_limits(params, version.checkpoint.schedule.timesteps, settings.max_points, settings.max_response_points, location)
    charge(request, points=params.n, evaluations=steps)
    seed = params.seed if params.seed is not None else secrets.randbits(32)
    spec = SamplerSpec(params.sampler, steps=None if params.sampler == "ddpm" else steps, eta=params.eta)
    job = SampleJob(n=params.n, seed=seed, spec=spec, trajectory_every=params.trajectory_every, model=version.name)
    try:
        service.worker.submit(job)
    except Overloaded as exc:
        service.metrics.rejected.labels(reason=exc.reason).inc()
        raise ServiceUnavailable(f"overloaded: {exc}", exc.reason, exc.retry_after_s) from None
    except WorkerStopped as exc:
        service.metrics.rejected.labels(reason="shutting_down").inc()
        raise ServiceUnavailable(str(exc), "shutting_down") from None
    try:
        result = await _await_result(job, request, settings.request_timeout_s)
    except RequestTimeout:
        service.metrics.rejected.labels(reason="timeout").inc()
        raise
    except ClientGone:
        service.metrics.rejected.labels(reason="client_gone").inc()
        return Response(status_code=499)
    served = job.served  # the version it ran on: the current one when it was admitted
    assert served is not None
    payload: dict[str, Any] = {
        "n": params.n,
        "seed": seed,
        "sampler": params.sampler,
        "steps": steps,
        "eta": params.eta,
        "model": served.id,
        "model_name": served.name,
        "points": points(result.points),
    }
    total = params.n
    if params.trajectory_every is not None:
        payload["trajectory"] = [{"t": t, "points": points(frame)} for t, frame in result.trajectory]
        total *= len(result.trajectory) + 1
    service.metrics.points.labels(endpoint="sample").inc(params.n)
    service.metrics.model_points.labels(model=served.name, endpoint="sample").inc(params.n)
    return JSONBytes(await _encode(payload, total))


@router.get("/sample", response_model=SampleResponse, responses=ERRORS, summary="Generate points (query parameters)")
async def sample_get(params: Annotated[SampleRequest, Query()], service: ServiceDep, request: Request) -> Response:
    """Run the reverse chain for ``n`` points. The same (seed, n, sampler, steps, eta) always gives the same points."""
    return await _sample(params, service, request, "query")


@router.post("/sample", response_model=SampleResponse, responses=BODY_ERRORS, summary="Generate points (JSON body)")
async def sample_post(
    params: Annotated[SampleRequest, Body(openapi_examples={"ddim": {"value": {"n": 2000, "seed": 7, "sampler": "ddim", "steps": 10}}})],
    service: ServiceDep,
    request: Request,
) -> Response:
    """The same as ``GET /sample``, with the parameters in a JSON object."""
    return await _sample(params, service, request, "body")


@router.get("/forward", response_model=ForwardResponse, responses={422: ERRORS[422], 429: ERRORS[429], 503: ERRORS[503]}, summary="Noised swiss roll at step t")
async def forward(params: Annotated[ForwardRequest, Query()], service: ServiceDep, request: Request) -> Response:
    """``n`` draws of q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) on fresh swiss-roll points, with the named
    model's schedule and data constants; t = 0 is the clean roll."""
    version = service.models.get(params.model)
    label_model(request, version.name)
    check_forward_limits(params, version.checkpoint.schedule.timesteps, service.settings.max_points)
    charge(request, points=params.n)
    seed = params.seed if params.seed is not None else secrets.randbits(32)
    gate = service.forward_gate
    if not gate.enter(params.n):
        service.metrics.rejected.labels(reason="forward_busy").inc()
        message = f"overloaded: {gate.busy} /forward points are being computed (SWIRL_MAX_FORWARD_POINTS = {gate.max_points}); retry shortly"
        raise ServiceUnavailable(message, "forward_busy")
    try:
        xt = await run_in_threadpool(version.forward, params.t, params.n, seed)
    finally:
        gate.leave(params.n)
    payload = {
        "t": params.t,
        "n": params.n,
        "seed": seed,
        "alpha_bar": version.checkpoint.schedule.alpha_bar(params.t),
        "model": version.id,
        "model_name": version.name,
        "points": points(xt),
    }
    service.metrics.points.labels(endpoint="forward").inc(params.n)
    service.metrics.model_points.labels(model=version.name, endpoint="forward").inc(params.n)
    return JSONBytes(await _encode(payload, params.n))
