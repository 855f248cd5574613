"""Service configuration: every setting is an environment variable ``SWIRL_<NAME>``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.edge.client_address import parse_networks
from app.edge.cors import parse_origins


class Settings(BaseSettings):
    """Read once at start-up; documented in the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="SWIRL_", extra="ignore")

    checkpoint: Path = Field(Path("checkpoints/swiss-roll"), description="checkpoint directory to load (one model; SWIRL_MODELS wins when set)")
    models: str = Field("", description="model repository: directories (':'-separated); each subfolder with a checkpoint.json is a model named by it")
    default_model: str = Field("swiss-roll", description="the model a request without `model` gets (with one model, that one)")
    admin_token: SecretStr | None = Field(None, description="bearer token for POST /admin/reload; unset or empty keeps the admin API off")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto picks CUDA when available")
    host: str = Field("127.0.0.1", description="bind host (the container sets 0.0.0.0)")
    port: int = Field(8000, ge=1, le=65535, description="bind port")
    max_points: int = Field(100_000, ge=1, description="points per /sample or /forward request")
    max_batch_points: int = Field(0, ge=0, description="row budget of one engine tick; 0 picks 8192 on CPU, 1048576 on a GPU")
    batching: bool = Field(True, description="false runs one request at a time, first come first served (for comparison)")
    max_queue: int = Field(1024, ge=1, description="sampling requests in flight (queued or running) before load is shed with 503")
    max_queue_work: int = Field(0, ge=0, description="points × network evaluations in flight before load is shed with 503; 0: only the estimated-wait rule")
    max_forward_points: int = Field(400_000, ge=1, description="/forward points being computed at once before load is shed with 503")
    workers: int = Field(0, ge=0, le=64, description="server processes; 0 is one per CPU core on CPU, one on a GPU")
    request_timeout_s: float = Field(60.0, gt=0, description="per-request timeout; past it the answer is 504")
    max_response_points: int = Field(2_000_000, ge=1, description="n × (trajectory frames + 1) per response")
    max_body_bytes: int = Field(16_384, ge=64, description="request bodies over this get 413")
    cuda_graphs: bool = Field(True, description="capture the reverse chain as CUDA graphs on the GPU")
    torch_threads: int = Field(0, ge=0, description="torch threads per process; 0 splits the cores between the processes")
    otel: bool = Field(
        False,
        description="FastAPI's native OpenTelemetry (spans, metrics, logs to the globally configured providers); off by default, "
        "since looking for configured providers costs every request",
    )
    switch_interval_ms: float = Field(
        0.5, gt=0, le=100, description="Python's GIL switch interval in each server process (Python's default is 5 ms); see README, the engine"
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
