"""``/models`` and ``/models/{name}``: the model repository, with each model's state."""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import Response

from app.serving.models import listing
from app.serving.service import ServiceDep
from app.wire.encoding import FastJSON
from app.wire.schemas import ErrorResponse, ModelListing, ModelsResponse

router = APIRouter(prefix="/models", tags=["model"])


@router.get("", response_model=ModelsResponse, summary="Every model, by name")
async def list_models(service: ServiceDep) -> Response:
    """Name, id (sha256), state (available / unavailable), schedule, network, parameter count,
    evaluation, load and warm-up times, versions loaded and the last reload's outcome of every model, as
    the server process that answers (``process``) holds them."""
    repository = service.models
    models = [listing(repository, entry) for entry in repository.entries()]
    return FastJSON({"default": repository.default_name, "models": models, "process": os.getpid()})


@router.get("/{name}", response_model=ModelListing, responses={422: {"model": ErrorResponse, "description": "unknown model"}}, summary="One model")
async def get_model(service: ServiceDep, name: Annotated[str, Path(max_length=64, description="model name")]) -> Response:
    """One model as ``GET /models`` lists it; an unknown name is a 422 that lists the valid ones."""
    repository = service.models
    return FastJSON(listing(repository, repository.entry(name)))
