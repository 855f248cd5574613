"""``POST /log_prob`` (the model's log density by the probability-flow ODE) and ``GET /score``
(the learned score on a lattice): the same network, read as a density and as a field.

Both compute on the engine's thread, never on the event loop: /log_prob as a job admitted by its
work and run in slices between sampling ticks (``app.serving.density``), /score (at most 64² points,
one evaluation: less than a tick) as a call between two ticks.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import torch
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app.edge.rate_limit import charge
from app.errors import RequestTimeout, ServiceUnavailable
from app.routes.sampling import ERRORS, NPY_CONTENT, SERVER_TIMING_HEADER, ClientGone, admit, await_result, header_doc, label_model
from app.serving.density import FlowJob
from app.serving.service import ServiceDep
from app.serving.worker import WorkerStopped
from app.wire import encoding
from app.wire.density_schemas import LogProbOptions, LogProbResponse, ScoreRequest, ScoreResponse, parse_log_prob_body
from app.wire.encoding import JSON, NPY, POINT_FORMATS, FastJSON
from app.wire.negotiation import negotiate
from app.wire.query import parse_query, query_openapi
from app.wire.schemas import ErrorResponse, LimitError
from model.likelihood import DIVERGENCE_COST, FlowIntegration, check_density_model, log_prob_in_space
from model.score import SCORE_BOUND, lattice, score

router = APIRouter(tags=["density"])

PARSE_OFF_LOOP_BYTES = 65_536  # larger bodies are parsed in a thread

LOG_PROB_HEADERS = {
    "Swirl-N": header_doc("points", "2"),
    "Swirl-Model": header_doc("sha256 of the checkpoint's weights", "3f1c…"),
    "Swirl-Model-Name": header_doc("the model's name", "swiss-roll"),
    "Swirl-Space": header_doc("model or data", "model"),
    "Swirl-Evaluations": header_doc("network evaluations per point, each with its divergence", "99"),
    "Server-Timing": SERVER_TIMING_HEADER,
}
LOG_PROB_BODY = {
    "required": True,
    "content": {
        JSON: {
            "schema": {
                "type": "object",
                "required": ["points"],
                "properties": {
                    "points": {"type": "array", "items": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}},
                    "space": {"type": "string", "enum": ["model", "data"], "default": "model"},
                    "model": {"type": "string"},
                },
            },
            "example": {"points": [[0.5, -1.3], [2.5, 2.5]], "space": "model"},
        },
        NPY: {
            "schema": {"type": "string", "format": "binary"},
            "example": "(binary .npy, shape (n, 2), any float or integer dtype; space and model in the query string)",
        },
    },
}
LOG_PROB_ERRORS: dict[int | str, dict[str, Any]] = {
    **{code: ERRORS[code] for code in (406, 422, 429, 503, 504, 500)},
    413: {"model": ErrorResponse, "description": "body larger than SWIRL_MAX_LOG_PROB_POINTS allows (see /docs: log_prob_body_bytes)"},
}


def teacher_name(student: dict[str, Any] | None) -> str | None:
    teacher = (student or {}).get("teacher")
    return teacher.get("name") if isinstance(teacher, dict) else None


@router.post(
    "/log_prob",
    response_model=LogProbResponse,
    responses={
        200: {"description": "JSON (default) or .npy (float64, (n,)), by Accept", "headers": LOG_PROB_HEADERS, "content": {JSON: {}, **NPY_CONTENT}},
        **LOG_PROB_ERRORS,
    },
    summary="Log density of points under the model",
    openapi_extra={"requestBody": LOG_PROB_BODY, "parameters": query_openapi(LogProbOptions)["parameters"]},
)
async def log_prob(service: ServiceDep, request: Request) -> Response:
    """log p(x) of each point by the probability-flow ODE from t = 0 to T with the exact divergence,
    starting the density at the model's prior N(0, I): per unit area, in the model's space or, with
    ``space=data``, the roll's own (log p_data = log p_model − 2 log scale).

    The body is JSON ``{"points": [[x, y], …], "space", "model"}`` or, with
    ``Content-Type: application/x-npy``, an (n, 2) ``.npy`` array (options in the query string).
    ``Accept: application/x-npy`` answers a float64 ``.npy`` of shape (n,)."""
    media_type = negotiate(request.headers.get("accept"), POINT_FORMATS)
    query = parse_query(LogProbOptions, request).model_dump(exclude_unset=True)
    body = await request.body()
    max_points = service.settings.max_log_prob_points
    content_type = request.headers.get("content-type")
    if len(body) > PARSE_OFF_LOOP_BYTES:
        options, points = await run_in_threadpool(parse_log_prob_body, body, content_type, query, max_points)
    else:
        options, points = parse_log_prob_body(body, content_type, query, max_points)
    version = service.models.get(options.model)
    label_model(request, version.name)
    check_density_model(version.checkpoint.student_grids, teacher_name(version.checkpoint.student))
    normalisation = version.checkpoint.normalisation
    x = points if options.space == "model" else normalisation.normalise(points)
    grid = version.flow_grid
    charge(request, points=len(x), evaluations=grid.evaluations * DIVERGENCE_COST)
    job = FlowJob(FlowIntegration(version.flow_denoiser, grid, torch.from_numpy(np.ascontiguousarray(x))), model=version.name)
    admit(service, lambda: service.worker.submit_flow(job))
    try:
        result = await await_result(job, request, service.settings.request_timeout_s, service.worker)
    except ClientGone:
        service.metrics.rejected.labels(reason="client_gone").inc()
        return Response(status_code=499)
    except RequestTimeout:
        service.metrics.rejected.labels(reason="timeout").inc()
        raise
    started = time.perf_counter()
    values = log_prob_in_space(result.log_prob, options.space, normalisation)
    metadata = {"n": len(values), "model": version.id, "model_name": version.name, "space": options.space, "evaluations": grid.evaluations}
    body_out = encoding.npy(values, dtype="<f8") if media_type == NPY else encoding.dumps({**metadata, "log_prob": values})
    headers = {
        **encoding.metadata_headers(metadata),
        "Server-Timing": encoding.server_timing(result.queue_seconds, result.compute_seconds, time.perf_counter() - started),
        "Vary": "Accept",
    }
    service.metrics.points.labels(endpoint="log_prob").inc(len(values))
    service.metrics.model_points.labels(model=version.name, endpoint="log_prob").inc(len(values))
    return Response(body_out, media_type=media_type, headers=headers)


@router.get(
    "/score",
    response_model=ScoreResponse,
    responses={code: ERRORS[code] for code in (422, 429, 503)},
    summary="The learned score on a lattice",
    openapi_extra=query_openapi(ScoreRequest),
)
async def score_field(service: ServiceDep, request: Request) -> Response:
    """The score ∇ log p_t(x) ≈ −ε̂(x, t)/σ_t that the network has learned, at step t on a grid × grid
    lattice over [−3, 3]² of the model's space (x fastest): the field that pulls noise back to the roll."""
    params = parse_query(ScoreRequest, request)
    version = service.models.get(params.model)
    label_model(request, version.name)
    check_density_model(version.checkpoint.student_grids, teacher_name(version.checkpoint.student))
    schedule = version.checkpoint.schedule
    if params.t > schedule.timesteps:
        raise LimitError("t", f"t must be in 1..{schedule.timesteps} (T), got {params.t}", "query")
    points = lattice(params.grid)
    charge(request, points=len(points))
    started = time.perf_counter()
    x = torch.from_numpy(points)
    try:  # on the engine's thread, between two ticks
        future = service.worker.call_soon(lambda: score(version.denoiser, schedule, version.checkpoint.prediction, x, params.t).numpy())
    except WorkerStopped as exc:
        raise ServiceUnavailable(str(exc), "shutting_down") from None
    field = await asyncio.wrap_future(future)
    metadata = {"t": params.t, "grid": params.grid, "model": version.id, "model_name": version.name}
    payload = {**metadata, "bounds": [-SCORE_BOUND, SCORE_BOUND], "points": points, "score": np.ascontiguousarray(field, dtype=np.float32)}
    headers = {**encoding.metadata_headers(metadata), "Server-Timing": encoding.server_timing(None, time.perf_counter() - started, None)}
    return FastJSON(payload, headers=headers)
