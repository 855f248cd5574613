"""What /log_prob and /score take and answer, and the reading of a /log_prob body (JSON or ``.npy``).

A /log_prob body is either a JSON object ``{"points": [[x, y], …], "space": …, "model": …}`` or,
with ``Content-Type: application/x-npy``, a NumPy ``.npy`` array of shape (n, 2) whose options
come from the query string (``?space=data&model=…``). Either way the points are checked here
(shape, count, finite coordinates) and every failure is a ``LimitError`` or a
``RequestValidationError`` naming the field (422, ``app.errors``).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.wire.encoding import NPY
from app.wire.schemas import EXAMPLE_ID, MAX_MODEL_NAME, MODEL_DESCRIPTION, SPACE_DESCRIPTION, LimitError, Space, reject_non_integers

MAX_SCORE_GRID = 64


class LogProbOptions(BaseModel):
    """The options of ``POST /log_prob`` besides its points."""

    model_config = ConfigDict(extra="forbid")

    space: Space = Field("model", description=f"the space of the points and of the densities: {SPACE_DESCRIPTION}", examples=["model"])
    model: str | None = Field(None, max_length=MAX_MODEL_NAME, description=MODEL_DESCRIPTION, examples=["swiss-roll"])


class ScoreRequest(BaseModel):
    """Parameters of ``GET /score``."""

    model_config = ConfigDict(extra="forbid")

    t: int = Field(..., ge=1, description="diffusion step, 1…T", examples=[10])
    grid: int = Field(32, ge=2, le=MAX_SCORE_GRID, description=f"points per side of the lattice over [−3, 3]², 2…{MAX_SCORE_GRID}", examples=[16])
    model: str | None = Field(None, max_length=MAX_MODEL_NAME, description=MODEL_DESCRIPTION, examples=["swiss-roll"])

    _ints = field_validator("t", "grid", mode="before")(reject_non_integers)


class LogProbResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"n": 2, "log_prob": [-0.412, -7.95], "model": EXAMPLE_ID, "model_name": "swiss-roll", "space": "model", "evaluations": 99}]
        }
    )

    n: int
    log_prob: list[float] = Field(description="(n,) log density of each point per unit area in `space` (natural log)")
    model: str = Field(description="id of the model version that answered")
    model_name: str
    space: Space
    evaluations: int = Field(description="network evaluations per point, each with its exact divergence (2T − 1)")


class ScoreResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "t": 10,
                    "grid": 2,
                    "bounds": [-3.0, 3.0],
                    "model": EXAMPLE_ID,
                    "model_name": "swiss-roll",
                    "points": [[-3.0, -3.0], [3.0, -3.0], [-3.0, 3.0], [3.0, 3.0]],
                    "score": [[21.3, 20.9], [-20.7, 21.8], [22.0, -20.1], [-21.5, -20.4]],
                }
            ]
        }
    )

    t: int
    grid: int
    bounds: list[float] = Field(description="[low, high] of both axes, in the model's space")
    model: str
    model_name: str
    points: list[list[float]] = Field(description="(grid², 2) lattice points, x fastest: point r·grid + c is (x_c, y_r)")
    score: list[list[float]] = Field(description="(grid², 2) the learned score −ε̂(x, t)/σ_t at each point")


def _points_error(message: str, field: str = "points") -> LimitError:
    return LimitError(field, message, "body")


def _body_options(values: dict[str, Any], defaults: dict[str, Any]) -> LogProbOptions:
    try:
        return LogProbOptions.model_validate({**defaults, **values})
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors) from None


MAX_COORDINATE = 1e4
"""The largest |coordinate| /log_prob takes, in either space: the roll lies within about ±15 data units."""


def read_points(array: Any, max_points: int) -> np.ndarray:
    """(n, 2) float64 points from a nested list or an array; LimitError naming the field (or the index)."""
    try:
        points = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError):
        raise _points_error("points must be a list of [x, y] pairs of numbers") from None
    if points.ndim != 2 or points.shape[1] != 2:
        raise _points_error(f"points must have shape (n, 2), got {points.shape}")
    if len(points) == 0:
        raise _points_error("points must hold at least one point")
    if len(points) > max_points:
        raise _points_error(f"points holds {len(points)} points, more than SWIRL_MAX_LOG_PROB_POINTS = {max_points}")
    finite = np.isfinite(points).all(axis=1)
    if not finite.all():
        index = int(np.argmin(finite))
        raise _points_error(f"coordinates must be finite, got {points[index].tolist()}", field=f"points[{index}]")
    inside = (np.abs(points) <= MAX_COORDINATE).all(axis=1)
    if not inside.all():  # the float32 network and the ODE overflow long before 1e170; the density there is 0 to any precision
        index = int(np.argmin(inside))
        raise _points_error(f"coordinates must lie within ±{MAX_COORDINATE:g}, got {points[index].tolist()}", field=f"points[{index}]")
    return points


def parse_log_prob_body(body: bytes, content_type: str | None, query: dict[str, Any], max_points: int) -> tuple[LogProbOptions, np.ndarray]:
    """The options and (n, 2) float64 points of a /log_prob body; ``query`` holds the query string's options
    (the only ones an ``.npy`` body has; a JSON body's own fields win over them)."""
    media = (content_type or "application/json").split(";")[0].strip().lower()
    if media == NPY:
        try:
            array = np.load(io.BytesIO(body), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise _points_error(f"not a valid .npy file ({exc})", field="body") from None
        if array.dtype.kind not in "fiu":
            raise _points_error(f"the .npy array must hold numbers, got dtype {array.dtype}")
        return _body_options({}, query), read_points(array, max_points)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error", "ctx": {"error": str(exc)}}]) from None
    if not isinstance(payload, dict):
        raise _points_error('the body must be a JSON object {"points": [[x, y], …], "space": …, "model": …}', field="body")
    if "points" not in payload:
        raise _points_error("points is required: a list of [x, y] pairs")
    points = payload.pop("points")
    if not isinstance(points, list):
        raise _points_error("points must be a list of [x, y] pairs of numbers")
    return _body_options(payload, query), read_points(points, max_points)
