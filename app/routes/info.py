"""``/schedule`` and ``/model``: what the loaded checkpoint is (computed once at start-up)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from app.encoding import FastJSON, JSONBytes
from app.schemas import ModelResponse, ScheduleResponse
from app.service import ServiceDep

router = APIRouter(tags=["model"])


@router.get("/schedule", response_model=ScheduleResponse, summary="The noise schedule")
async def schedule(service: ServiceDep) -> Response:
    """β_t, α_t, ᾱ_t, β̃_t and the posterior-mean coefficients; arrays have length T, entry i is step t = i + 1."""
    return JSONBytes(service.schedule_json)


@router.get("/model", response_model=ModelResponse, summary="The loaded checkpoint")
async def model(service: ServiceDep) -> Response:
    """Model id (sha256 over the weights' canonical form), network and schedule configs, parameter count, training summary,
    evaluation results, the data constants (points = (raw − mean) / scale) and the device in use."""
    info: dict[str, Any] = service.model_info
    return FastJSON(info)
