"""Request and response shapes, their bounds and OpenAPI examples.

Static bounds live on the fields; the configured limits (n ≤ SWIRL_MAX_POINTS, the response
size) are checked by ``check_sample_limits`` / ``check_forward_limits`` and reported the same
way (422, the field named in ``loc`` and in the message). What makes a sampler request valid
(steps for ddpm, a student's trained grids, steps ≤ T, η for DDIM only, trajectory_every ≤
steps) is the model's to say: ``model.diffusion.SamplerSpec`` / ``make_plan`` and
``model.engine.check_request`` raise ``InvalidParameter`` naming the field, which
``app.errors`` maps to the same 422.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from model.engine import frame_count

MAX_SEED = 2**53 - 1  # JSON-safe: survives a round trip through JavaScript numbers
Space = Literal["model", "data"]
SPACE_DESCRIPTION = "model: the normalised space the diffusion runs in; data: the swiss roll's own (x, z) = point × scale + mean"
MAX_MODEL_NAME = 64
MAX_TIMEOUT_MS = 86_400_000  # a day: longer is no deadline but a typo
Priority = Literal["high", "normal", "low"]  # model.engine.PRIORITIES
MODEL_DESCRIPTION = "model name (GET /models lists them); the default model (SWIRL_DEFAULT_MODEL) when omitted"


def reject_non_integers(value: Any) -> Any:
    """Refuse booleans, floats and decimal strings for integer fields (pydantic would coerce 3.0 → 3)."""
    if isinstance(value, bool | float):
        raise ValueError("must be an integer, not a boolean or a float")
    if isinstance(value, str) and not value.strip().lstrip("+-").isdigit():
        raise ValueError("must be an integer")
    return value


def _reject_booleans(value: Any) -> Any:
    """Refuse JSON true/false for float fields (pydantic would coerce true → 1.0)."""
    if isinstance(value, bool) or (isinstance(value, list) and any(isinstance(item, bool) for item in value)):
        raise ValueError("must be a number, not a boolean")
    return value


ArcPosition = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
U_DESCRIPTION = (
    "a guided model only (GET /models shows its condition): the arc position along the roll, 0 the inner end, 1 the outer; "
    "one number for every point, or (POST) a list of n numbers, one per point; omitted: unconditional (the null condition)"
)
GUIDANCE_DESCRIPTION = (
    "classifier-free guidance weight w in [0, MAX_GUIDANCE] (ε̂ = (1 + w)·ε(x, t, u) − w·ε(x, t, ∅)); "
    "only with u; defaults to the model's measured best (its condition.default_guidance)"
)


class SampleRequest(BaseModel):
    """Parameters of ``/sample``: query string for GET, JSON body for POST."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(1000, ge=1, description="number of points to generate (at most SWIRL_MAX_POINTS)", examples=[1000])
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="random seed; the server picks one and returns it when omitted", examples=[7])
    sampler: Literal["ddpm", "ddim", "dpmpp2m", "student"] = Field(
        "ddpm",
        description="ddpm (Algorithm 2, T steps), ddim (any steps, eta), dpmpp2m (DPM-Solver++(2M)) or student (a distilled model's own grid)",
        examples=["ddpm"],
    )
    steps: int | None = Field(
        None, ge=1, description="network evaluations, 1…T (ddpm always takes T; student: one of its trained step counts); defaults to T", examples=[50]
    )
    eta: float = Field(0.0, ge=0.0, le=1.0, allow_inf_nan=False, description="DDIM only: 0 deterministic, 1 DDPM-like noise", examples=[0.0])
    trajectory_every: int | None = Field(None, ge=1, description="also return the chain every k steps, x_T to x_0, for animation (1…steps)", examples=[5])
    space: Space = Field("model", description=SPACE_DESCRIPTION, examples=["data"])
    model: str | None = Field(None, max_length=MAX_MODEL_NAME, description=MODEL_DESCRIPTION, examples=["swiss-roll"])
    u: ArcPosition | list[ArcPosition] | None = Field(None, description=U_DESCRIPTION, examples=[0.5])
    guidance: float | None = Field(None, ge=0.0, allow_inf_nan=False, description=GUIDANCE_DESCRIPTION, examples=[0.25])
    priority: Priority = Field(
        "normal", description="high goes first in every tick; low never starves (it keeps at least a ninth of the rows); docs/qos.md", examples=["high"]
    )
    timeout_ms: int | None = Field(
        None,
        ge=1,
        le=MAX_TIMEOUT_MS,
        description="a deadline in ms from admission (at most SWIRL_REQUEST_TIMEOUT_S counts): 504 at once if the estimate says it cannot be met, "
        "or when it passes mid-chain (no partial answer)",
        examples=[250],
    )

    _ints = field_validator("n", "seed", "steps", "trajectory_every", "timeout_ms", mode="before")(reject_non_integers)
    _floats = field_validator("eta", "u", "guidance", mode="before")(_reject_booleans)


class ForwardRequest(BaseModel):
    """Parameters of ``/forward``: n draws of q(x_t | x_0) on fresh swiss-roll points."""

    model_config = ConfigDict(extra="forbid")

    t: int = Field(..., ge=0, description="diffusion step, 0…T (0 is clean data)", examples=[25])
    n: int = Field(1000, ge=1, description="number of points (at most SWIRL_MAX_POINTS)", examples=[1000])
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="random seed for the roll and the noise; picked when omitted", examples=[0])
    space: Space = Field("model", description=SPACE_DESCRIPTION, examples=["model"])
    model: str | None = Field(None, max_length=MAX_MODEL_NAME, description=MODEL_DESCRIPTION, examples=["swiss-roll"])

    _ints = field_validator("t", "n", "seed", mode="before")(reject_non_integers)


class LimitError(ValueError):
    """A value within its type's bounds but over a configured or schedule-dependent limit."""

    def __init__(self, field: str, message: str, location: str) -> None:
        super().__init__(message)
        self.field = field
        self.location = location


def _check_n(n: int, max_points: int, location: str) -> None:
    if n > max_points:
        raise LimitError("n", f"n must be at most {max_points} (SWIRL_MAX_POINTS), got {n}", location)


def check_points(request: SampleRequest, max_points: int, location: str) -> None:
    """The configured bound on n, checked before anything is compiled."""
    _check_n(request.n, max_points, location)


def check_sample_limits(request: SampleRequest, steps: int, max_response_points: int, location: str) -> None:
    """The configured bound on the answer's size, for a request whose plan takes ``steps`` evaluations."""
    if request.trajectory_every is not None:
        total = request.n * (frame_count(steps, request.trajectory_every) + 1)
        if total > max_response_points:
            raise LimitError(
                "trajectory_every",
                f"n × (trajectory frames + 1) = {total} points exceeds {max_response_points} (SWIRL_MAX_RESPONSE_POINTS); lower n or raise trajectory_every",
                location,
            )


def check_forward_limits(request: ForwardRequest, timesteps: int, max_points: int) -> None:
    if request.t > timesteps:
        raise LimitError("t", f"t must be in 0..{timesteps} (T), got {request.t}", "query")
    _check_n(request.n, max_points, "query")


# Responses are encoded with orjson straight from numpy (see app/wire/encoding.py); these
# models document their shape in OpenAPI.


class Frame(BaseModel):
    t: int = Field(description="diffusion step of this frame (T … 0)")
    points: list[list[float]] = Field(description="(n, 2) points at step t")


EXAMPLE_ID = "66744bafcf2190c9fa6751e1fa0b1c3039d7329fbfe7419ec68e283e5dfe839e"


class SampleResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "n": 2,
                    "seed": 7,
                    "sampler": "ddim",
                    "steps": 10,
                    "eta": 0.0,
                    "model": EXAMPLE_ID,
                    "model_name": "swiss-roll",
                    "space": "model",
                    "points": [[0.412, -1.203], [-0.958, 0.377]],
                }
            ]
        }
    )

    n: int
    seed: int
    sampler: str
    steps: int = Field(description="network evaluations used")
    eta: float
    model: str = Field(description="id of the model version that answered: sha256 of its checkpoint's weights")
    model_name: str = Field(description="name of the model that answered")
    space: Space = Field(description="the space of every point in this answer")
    u: float | str | None = Field(None, description="the arc position asked for (guided models): a number, or per-point for a list; absent when unconditional")
    guidance: float | None = Field(None, description="the guidance weight used, with u")
    points: list[list[float]] = Field(description="(n, 2) samples, in `space`")
    trajectory: list[Frame] | None = Field(None, description="present when trajectory_every is given")


class ForwardResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "t": 25,
                    "n": 2,
                    "seed": 0,
                    "alpha_bar": 0.8204,
                    "model": EXAMPLE_ID,
                    "model_name": "swiss-roll",
                    "space": "model",
                    "points": [[0.731, -0.402], [-1.118, 0.265]],
                }
            ]
        }
    )

    t: int
    n: int
    seed: int
    alpha_bar: float = Field(description="ᾱ_t")
    model: str = Field(description="id (sha256) of the model whose schedule and data constants were used")
    model_name: str = Field(description="name of that model")
    space: Space = Field(description="the space of the points")
    points: list[list[float]] = Field(description="(n, 2) draws of q(x_t | x_0), in `space`")


class ScheduleResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "timesteps": 2,
                    "kind": "linear",
                    "beta_start": 0.0001,
                    "beta_end": 0.02,
                    "alpha_bar_final": 0.9799,
                    "beta": [0.0001, 0.02],
                    "alpha": [0.9999, 0.98],
                    "alpha_bar": [0.9999, 0.9799],
                    "posterior_variance": [0.0, 0.0001],
                    "posterior_mean_coef_x0": [1.0, 0.0050],
                    "posterior_mean_coef_xt": [0.0, 0.9949],
                }
            ]
        }
    )

    timesteps: int
    kind: str
    beta_start: float
    beta_end: float
    alpha_bar_final: float
    beta: list[float]
    alpha: list[float]
    alpha_bar: list[float]
    posterior_variance: list[float]
    posterior_mean_coef_x0: list[float]
    posterior_mean_coef_xt: list[float]


class ErrorResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": "n: Input should be greater than or equal to 1",
                    "detail": [{"type": "greater_than_equal", "loc": ["query", "n"], "msg": "Input should be greater than or equal to 1", "input": "0"}],
                }
            ]
        }
    )

    error: str = Field(description="a plain-words summary naming the field")
    detail: list[dict[str, Any]] | str | None = None


class ModelData(BaseModel):
    noise: float = Field(description="make_swiss_roll noise of the training data")
    mean: list[float] = Field(description="(2,) mean of the raw roll: raw = points × scale + mean")
    scale: float = Field(description="one scalar scale: raw = points × scale + mean")


class ModelResponse(BaseModel):
    """The loaded checkpoint, as ``GET /model`` describes it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": EXAMPLE_ID,
                    "name": "swiss-roll",
                    "format_version": 2,
                    "net": {"hidden": 64, "depth": 3, "time_embedding_dim": 32, "activation": "silu", "data_dim": 2},
                    "parameter_count": 23042,
                    "schedule": {"kind": "linear", "timesteps": 50, "beta_start": 0.0001, "beta_end": 0.02, "alpha_bar_final": 0.603},
                    "data": {"noise": 0.5, "mean": [1.992, 0.2144], "scale": 6.8194},
                    "training": {"steps": 70000, "final_loss": 0.682, "seed": 0},
                    "evaluation": {"n": 10000, "two_sample_accuracy_floor": 0.5037},
                    "samplers": ["ddpm", "ddim", "dpmpp2m"],
                    "endpoints": ["/sample", "/forward", "/log_prob", "/score"],
                    "device": "cpu",
                }
            ]
        }
    )

    id: str = Field(description="the model id: sha256 over the weights' canonical form (names, dtypes, shapes, bytes)")
    name: str = Field(description="the checkpoint directory's name")
    format_version: int = Field(description="checkpoint format version")
    net: dict[str, Any] = Field(description="NetConfig: hidden, depth, time_embedding_dim, activation, data_dim")
    parameter_count: int
    schedule: dict[str, Any] = Field(description="ScheduleConfig, plus alpha_bar_final (ᾱ_T)")
    data: ModelData
    training: dict[str, Any] = Field(description="training summary: steps, final loss, loss curve, wall time, seed, config")
    evaluation: dict[str, Any] = Field(description="python -m model.evaluate's results, empty when never evaluated")
    samplers: list[str] = Field(description="samplers /sample accepts")
    endpoints: list[str] = Field(description="what this model answers: /sample and /forward, and /log_prob and /score unless a distilled student")
    condition: dict[str, Any] | None = Field(
        None, description="a guided model's condition: kind (arc_position), range of u, null_probability in training, default_guidance; null otherwise"
    )
    device: str = Field(description="where the model runs: cpu or cuda:N")


class HealthResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"] = Field(description="always ok while the process answers")


class ReadyResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"status": "ready", "model": EXAMPLE_ID, "queue_depth": 0, "queue_work": 0}, {"status": "not ready"}]}
    )

    status: Literal["ready", "not ready"]
    model: str | None = Field(None, description="the model id, once ready")
    queue_depth: int | None = Field(None, description="requests waiting or in flight")
    queue_work: int | None = Field(None, description="their pending work (points × network evaluations)")


_LISTING_EXAMPLE: dict[str, Any] = {
    "name": "swiss-roll",
    "id": EXAMPLE_ID,
    "state": "available",
    "default": True,
    "schedule": {"kind": "linear", "timesteps": 50, "beta_start": 0.0001, "beta_end": 0.02, "alpha_bar_final": 0.603},
    "network": {"hidden": 64, "depth": 3, "time_embedding_dim": 32, "activation": "silu", "data_dim": 2},
    "parameter_count": 23042,
    "evaluation": {"n": 10000},
    "loaded_at": "2026-11-28T07:00:00+00:00",
    "load_seconds": 0.05,
    "warm_seconds": 0.3,
    "versions_loaded": 1,
    "error": None,
    "last_reload": {"at": "2026-11-28T07:10:00+00:00", "result": "loaded", "id": EXAMPLE_ID},
}


class ModelListing(BaseModel):
    """One model of the repository, as ``GET /models`` lists it."""

    model_config = ConfigDict(json_schema_extra={"examples": [_LISTING_EXAMPLE]})

    name: str
    id: str | None = Field(description="sha256 of the serving version's weights; null while unavailable")
    state: Literal["available", "unavailable"]
    default: bool = Field(description="requests without `model` get this one")
    schedule: dict[str, Any] | None = None
    network: dict[str, Any] | None = None
    parameter_count: int | None = None
    evaluation: dict[str, Any] | None = None
    endpoints: list[str] | None = Field(None, description="what this model answers (as GET /model says)")
    condition: dict[str, Any] | None = Field(None, description="a guided model's condition (kind, range, null_probability, default_guidance); null otherwise")
    loaded_at: str | None = Field(None, description="when the serving version was loaded (UTC, ISO 8601)")
    load_seconds: float | None = Field(None, description="reading and verifying the checkpoint, building the network")
    warm_seconds: float | None = Field(None, description="the first run of each sampler through the engine")
    versions_loaded: int = Field(description="versions in this process's engine: 2 while an old one finishes its requests")
    error: str | None = Field(None, description="why the model is unavailable")
    last_reload: dict[str, Any] | None = Field(None, description="the last reload's outcome for this model: at, result (loaded / failed), id or error")


class ModelsResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"default": "swiss-roll", "models": [_LISTING_EXAMPLE], "process": 12345}]})

    default: str
    models: list[ModelListing]
    process: int = Field(description="the server process that answered (each holds its own versions)")


class ReloadResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "models": {
                        "swiss-roll": {"result": "loaded", "id": EXAMPLE_ID, "previous": "0" * 64},
                        "swiss-roll-cosine": {"result": "unchanged", "id": "1" * 64},
                    },
                    "failed": [],
                    "ok": True,
                    "seconds": 0.41,
                    "process": 12345,
                    "other_processes_signalled": True,
                }
            ]
        }
    )

    models: dict[str, dict[str, Any]] = Field(description="by name: result (loaded, unchanged, failed, removed), id, previous or error")
    failed: list[str]
    ok: bool = Field(description="no model failed to load")
    seconds: float
    process: int = Field(description="the server process that answered")
    other_processes_signalled: bool = Field(description="the other server processes were told to reload too")
