"""Service configuration: every setting is an environment variable ``SWIRL_<NAME>``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.edge.client_address import parse_networks
from app.edge.cors import parse_origins

U_BODY_BYTES_PER_POINT = 32
"""Room per value of u in a body: JSON's longest float64 (``0.12345678901234568``, 19 characters)
with its separator and some whitespace; an .npy holds 8."""


def default_checkpoints() -> Path:
    """The shipped models' folder: ``checkpoints/`` beside the ``app`` package (a checkout, an
    editable install, the image's /app), else ``checkpoints/`` in the working directory."""
    beside = Path(__file__).resolve().parents[1] / "checkpoints"
    return beside if beside.is_dir() else Path("checkpoints")


class Settings(BaseSettings):
    """Read once at start-up; every field is documented in docs/configuration.md (a test holds it)."""

    model_config = SettingsConfigDict(env_prefix="SWIRL_", extra="ignore")

    checkpoint: Path = Field(
        default_factory=lambda: default_checkpoints() / "swiss-roll",
        description="one checkpoint directory, served alone and named by its folder; set, it replaces the default repository "
        "(a non-empty SWIRL_MODELS wins over it)",
    )
    models: str | None = Field(
        None,
        description="model repository: directories (':'-separated); each subfolder with a checkpoint.json is a model named by it; "
        "unset: the shipped checkpoints/ folder (unless SWIRL_CHECKPOINT is set); empty: SWIRL_CHECKPOINT alone",
    )
    default_model: str = Field("swiss-roll", description="the model a request without `model` gets (with one model, that one)")
    admin_token: SecretStr | None = Field(None, description="bearer token for POST /admin/reload; unset or empty keeps the admin API off")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto picks CUDA when available")
    host: str = Field("127.0.0.1", description="bind host (the container sets 0.0.0.0)")
    port: int = Field(8000, ge=1, le=65535, description="bind port")
    grpc_port: int = Field(8001, ge=0, le=65535, description="Open Inference Protocol over gRPC on SWIRL_HOST at this port; 0 = off")
    max_points: int = Field(100_000, ge=1, description="points per /sample or /forward request")
    max_batch_points: int = Field(0, ge=0, description="row budget of one engine tick; 0 picks 8192 on CPU, 1048576 on a GPU")
    batching: bool = Field(True, description="false runs one request at a time, first come first served (for comparison)")
    max_queue: int = Field(1024, ge=1, description="sampling requests in flight (queued or running) before load is shed with 503")
    max_queue_work: int = Field(0, ge=0, description="points × network evaluations in flight before load is shed with 503; 0: only the estimated-wait rule")
    max_forward_points: int = Field(400_000, ge=1, description="/forward points being computed at once before load is shed with 503")
    workers: int = Field(0, ge=0, le=64, description="server processes; 0 is one per CPU core on CPU, one on a GPU")
    request_timeout_s: float = Field(60.0, gt=0, description="per-request timeout; past it the answer is 504")
    response_cache_bytes: int = Field(64 * 2**20, ge=0, description="in-process LRU of seeded answers, by bytes (per process); 0 = off")
    cache_max_age_s: int = Field(
        31_536_000, ge=0, description="Cache-Control max-age of seeded GET answers (public, immutable, with a strong ETag); 0: no-cache"
    )
    priority_header: str = Field(
        "", max_length=64, description="a trusted header (set by your gateway, e.g. Swirl-Priority) whose high/normal/low wins over `priority`; empty: off"
    )
    max_response_points: int = Field(2_000_000, ge=1, description="n × (trajectory frames + 1) per response")
    max_body_bytes: int = Field(
        16_384,
        ge=64,
        description="request bodies over this get 413; bodies that may carry u per point (POST /sample, v2 infer) get 32 bytes more per "
        "SWIRL_MAX_POINTS; POST /log_prob has its own limit, from SWIRL_MAX_LOG_PROB_POINTS",
    )
    max_log_prob_points: int = Field(10_000, ge=1, description="points per POST /log_prob; its body limit is sized from it (log_prob_body_bytes)")
    cuda_graphs: bool = Field(True, description="capture the reverse chain as CUDA graphs on the GPU")
    torch_threads: int = Field(0, ge=0, description="torch threads per process; 0 splits the cores between the processes")
    otel: bool = Field(
        False,
        description="FastAPI's native OpenTelemetry (spans, metrics, logs to the globally configured providers); off by default, "
        "since looking for configured providers costs every request",
    )
    switch_interval_ms: float = Field(
        0.5, gt=0, le=100, description="Python's GIL switch interval in each server process (Python's default is 5 ms); see docs/engine.md"
    )
    engine_on: Literal["thread", "loop"] = Field(
        "thread",
        description="where the engine ticks: thread = its own thread; loop = the event loop's thread, a tick per pass between its I/O "
        "(no GIL hand-offs; CPU only: a GPU tick waits for the device); see docs/request-path.md",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field("info", description="log level")
    gzip_min_bytes: int = Field(0, ge=0, description="gzip JSON answers at least this long when the client accepts gzip; 0 never")
    graceful_shutdown_s: float = Field(30.0, ge=1, description="on SIGTERM, how long in-flight requests may take")
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON object per log line (access and error logs included)")
    access_log: bool = Field(True, description="one log line per request, with its request id")
    cors_origins: str = Field("", description="comma-separated origins allowed to call the API from a browser, or *; empty: none")
    trusted_proxies: str = Field("", description="comma-separated proxy addresses/networks whose X-Forwarded-For is believed")
    rate_limit: float = Field(0.0, ge=0, description="per client: points × network evaluations per second; 0 = off")
    rate_limit_burst: float = Field(0.0, ge=0, description="per client: points × evaluations at once; 0 = one second's worth")
    rate_limit_requests: float = Field(0.0, ge=0, description="per client: requests per second (health, readiness, metrics exempt); 0 = off")
    rate_limit_requests_burst: float = Field(0.0, ge=0, description="per client: requests at once; 0 = one second's worth (at least 1)")

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: str) -> str:
        parse_origins(value)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: str) -> str:
        parse_networks(value)
        return value

    @property
    def log_prob_body_bytes(self) -> int:
        """POST /log_prob's body limit: room for SWIRL_MAX_LOG_PROB_POINTS points as JSON (a point
        written with float64's longest decimals, ``[-1.2345678901234567e-05, …], `` takes under 56
        bytes; 64 are allowed) plus 4 KiB for the rest, and never below SWIRL_MAX_BODY_BYTES."""
        return max(self.max_body_bytes, 4096 + 64 * self.max_log_prob_points)

    def model_directories(self) -> list[Path] | None:
        """The model repository's directories, or None when SWIRL_CHECKPOINT is served alone."""
        if self.models is None:
            return None if "checkpoint" in self.model_fields_set else [default_checkpoints()]
        return [Path(p) for p in self.models.split(os.pathsep) if p.strip()] or None

    def u_body_bytes(self) -> int:
        """The body limit of a request that may carry u per point (POST /sample, v2 infer):
        SWIRL_MAX_BODY_BYTES plus U_BODY_BYTES_PER_POINT for each of SWIRL_MAX_POINTS values."""
        return self.max_body_bytes + U_BODY_BYTES_PER_POINT * self.max_points

    def resolved_workers(self, cuda: bool) -> int:
        """SWIRL_WORKERS, with 0 resolved: one process per core on CPU, one on a GPU."""
        if self.workers:
            return self.workers
        return 1 if cuda else max(1, len(os.sched_getaffinity(0)))

    def engine_on_loop(self, device_type: str) -> bool:
        """Whether the engine ticks on the event loop: SWIRL_ENGINE_ON=loop, on CPU (a GPU keeps its thread)."""
        return self.engine_on == "loop" and device_type == "cpu"

    def resolved_torch_threads(self, workers: int) -> int:
        """SWIRL_TORCH_THREADS, with 0 resolved: the cores split evenly between the processes."""
        if self.torch_threads:
            return self.torch_threads
        return max(1, len(os.sched_getaffinity(0)) // max(workers, 1))
