"""``/schedule`` and ``/model``: what a loaded model is (computed once when its version loads)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from app.routes.sampling import label_model
from app.serving.service import ServiceDep
from app.wire.encoding import FastJSON, JSONBytes
from app.wire.schemas import MAX_MODEL_NAME, MODEL_DESCRIPTION, ErrorResponse, ModelResponse, ScheduleResponse

router = APIRouter(tags=["model"])

ModelQuery = Annotated[str | None, Query(max_length=MAX_MODEL_NAME, description=MODEL_DESCRIPTION, examples=["swiss-roll"])]


UNKNOWN_MODEL: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "unknown model (the valid names are listed)"},
    503: {"model": ErrorResponse, "description": "the model is unavailable (its checkpoint failed verification)"},
}


@router.get("/schedule", response_model=ScheduleResponse, responses=UNKNOWN_MODEL, summary="The noise schedule")
async def schedule(service: ServiceDep, request: Request, model: ModelQuery = None) -> Response:
    """β_t, α_t, ᾱ_t, β̃_t and the posterior-mean coefficients of a model; arrays have length T, entry i is step t = i + 1."""
    version = service.models.get(model)
    label_model(request, version.name)
    return JSONBytes(version.schedule_json, headers={"X-Swirl-Model": version.name, "X-Swirl-Model-Id": version.id})


@router.get("/model", response_model=ModelResponse, responses=UNKNOWN_MODEL, summary="A loaded model")
async def model(service: ServiceDep, request: Request, model: ModelQuery = None) -> Response:
    """Model id (sha256 over the weights' canonical form) and name, network and schedule configs, parameter count, training summary,
    evaluation results, the data constants (points = (raw − mean) / scale) and the device in use."""
    version = service.models.get(model)
    label_model(request, version.name)
    info: dict[str, Any] = version.info
    return FastJSON(info)
