"""The Open Inference Protocol's service side, shared by its two transports: HTTP (``v2.py``)
and gRPC (``grpc_v2.py``). Which version serves a model, and a request's checked inputs turned
into the worker's job through the same rules and limits as ``/sample``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from pydantic import ValidationError

from app.errors import ServiceUnavailable, validation_summary
from app.routes.sampling import sample_job
from app.serving.service import Service
from app.serving.worker import SampleJob
from app.wire.schemas import LimitError, SampleRequest
from app.wire.v2_protocol import DEFAULT_MODEL, V2Error, check_outputs_fit, model_name
from model.errors import InvalidParameter


def resolve(service: Service, model: str, version: str | None) -> str:
    """The id of the version that serves ``model`` now (404 when unknown, 503 when unavailable).

    Every model of the repository is served under its own name; ``swirl`` is the default model."""
    try:
        current = service.models.get(model_name(model))
    except InvalidParameter:
        raise V2Error(404, f"unknown model {model!r}; this server serves: {', '.join([DEFAULT_MODEL, *service.models.names])}") from None
    except ServiceUnavailable as exc:
        raise V2Error(503, str(exc)) from None
    if version is not None and version != current.id:
        raise V2Error(404, f"unknown version {version!r} of model {model!r}; loaded: {current.id}")
    return current.id


def conditioned(service: Service, model: str) -> bool:
    """Whether ``model`` (a protocol name) takes u and guidance."""
    return service.models.get(model_name(model)).checkpoint.net_config.conditioned


def sample_request(values: dict[str, Any]) -> SampleRequest:
    """The inputs as /sample's parameters (400 naming the first bad input)."""
    try:
        return SampleRequest.model_validate(values)
    except ValidationError as exc:
        errors: list[dict[str, Any]] = [dict(error) for error in exc.errors()]
        first = str(errors[0]["loc"][0]) if errors and errors[0].get("loc") else "inputs"
        raise V2Error(400, f"input '{first}': {validation_summary(errors)}") from None


@dataclass
class Prepared:
    params: SampleRequest
    job: SampleJob
    steps: int


def prepare(service: Service, model: str, values: dict[str, Any], outputs: list[str] | None, request: Request | None = None) -> Prepared:
    """Checked inputs → /sample's parameters and the worker's job, within every configured limit
    (400 naming the input past one); ``outputs``: the names asked for (None: every output)."""
    params = sample_request({**values, "model": model_name(model)})
    try:
        job, steps = sample_job(params, service, "body", request)
    except (LimitError, InvalidParameter) as exc:
        raise invalid(exc) from None
    check_outputs_fit(params, outputs)
    return Prepared(params, job, steps)


def invalid(exc: LimitError | InvalidParameter) -> V2Error:
    """A limit or parameter the model refuses, as the protocol's 400 naming the input (admission
    refuses a request that could never run this way too: SWIRL_MAX_QUEUE_WORK)."""
    return V2Error(400, f"input '{exc.field}': {exc}")
