"""Service configuration: every setting is an environment variable ``SWIRL_<NAME>``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Read once at start-up; documented in the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="SWIRL_", extra="ignore")

    checkpoint: Path = Field(Path("checkpoints/swiss-roll"), description="checkpoint directory to load")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto picks CUDA when available")
    host: str = Field("127.0.0.1", description="bind host (the container sets 0.0.0.0)")
    port: int = Field(8000, ge=1, le=65535, description="bind port")
    max_points: int = Field(100_000, ge=1, description="points per /sample or /forward request")
    max_batch_points: int = Field(200_000, ge=1, description="points per batched reverse chain")
    batch_wait_ms: float = Field(2.0, ge=0, description="how long the worker waits to collect a batch")
    batching: bool = Field(True, description="coalesce concurrent /sample requests into one chain")
    max_queue: int = Field(256, ge=1, description="queued /sample requests before load is shed with 503")
    request_timeout_s: float = Field(60.0, gt=0, description="per-request timeout; past it the answer is 504")
    max_response_points: int = Field(2_000_000, ge=1, description="n × (trajectory frames + 1) per response")
    max_body_bytes: int = Field(16_384, ge=64, description="request bodies over this get 413")
    cuda_graphs: bool = Field(True, description="capture the reverse chain as CUDA graphs on the GPU")
    torch_threads: int = Field(0, ge=0, description="CPU threads for the chain; 0 keeps torch's default (one per core)")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field("info", description="log level")
    gzip_min_bytes: int = Field(0, ge=0, description="gzip JSON answers at least this long when the client accepts gzip; 0 never")
    graceful_shutdown_s: float = Field(30.0, ge=1, description="on SIGTERM, how long in-flight requests may take")

    def effective_batch_points(self) -> int:
        """With batching off, every chain holds exactly one request."""
        return self.max_batch_points if self.batching else 1
