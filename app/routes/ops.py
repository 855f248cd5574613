"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import os

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import PlainTextResponse, Response

from app.serving.service import ServiceDep
from app.wire.encoding import FastJSON
from app.wire.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=HealthResponse, summary="Liveness")
async def healthz() -> Response:
    """200 while the process is up and its event loop answers."""
    return FastJSON({"status": "ok"})


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    summary="Readiness",
    responses={503: {"model": ReadyResponse, "description": 'not loaded and warmed yet, or shutting down: {"status": "not ready"}'}},
)
async def readyz(service: ServiceDep) -> Response:
    """200 once the model is loaded, verified and warmed; 503 before that and while shutting down."""
    if not service.ready:
        return FastJSON({"status": "not ready"}, status_code=503)
    return FastJSON(
        {
            "status": "ready",
            "model": service.checkpoint.sha256,
            "models": len(service.models.names),
            "queue_depth": service.worker.queue_depth,
            "queue_work": service.worker.pending_work,
            "process": os.getpid(),
        }
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
async def metrics(service: ServiceDep) -> Response:
    return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
