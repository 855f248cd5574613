"""Shared fixtures: a tiny trained checkpoint, an in-process app client, a real server (tests/servers.py)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch
from asgi_lifespan import LifespanManager

from app.config import Settings
from app.main import create_app
from model.checkpoint import save_checkpoint
from model.net import NetConfig
from model.train import TrainConfig, train
from tests.servers import Server, free_port, start_server, stop_server

__all__ = ["Server", "free_port", "start_server", "stop_server"]  # the tests import them from here too

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_CHECKPOINT = ROOT / "checkpoints" / "swiss-roll"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small net trained for a few hundred steps: fast to load and sample, but real."""
    config = TrainConfig(steps=300, batch_size=256, n_train=4000, warmup_steps=20, net=NetConfig(hidden=32, depth=2, time_embedding_dim=16))
    result = train(config, torch.device("cpu"), progress=False)
    path = tmp_path_factory.mktemp("checkpoints") / "tiny"
    save_checkpoint(path, result.net, config.schedule, result.normalisation, result.summary)
    return path


def make_settings(checkpoint: Path, **overrides: object) -> Settings:
    # no gRPC unless a test asks (grpc_port=...): in-process apps would all want port 8001
    values: dict[str, object] = {"checkpoint": checkpoint, "device": "cpu", "max_points": 20_000, "grpc_port": 0}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def client(tiny_checkpoint: Path) -> AsyncIterator[httpx.AsyncClient]:
    """httpx client over ASGITransport, inside the app's lifespan."""
    app = create_app(make_settings(tiny_checkpoint))
    async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://swirl.test") as http:
            yield http


@dataclass(frozen=True)
class Live:
    url: str  # http://host:port
    grpc: str  # host:port of its gRPC service


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A real server on the shipped models, HTTP and gRPC, or SWIRL_BASE_URL and SWIRL_GRPC_TARGET when set (e.g. a container)."""
    external = os.environ.get("SWIRL_BASE_URL")
    if external:
        yield Live(external.rstrip("/"), os.environ.get("SWIRL_GRPC_TARGET", "127.0.0.1:8001"))
        return
    # every shipped model, as the image serves them (the default is swiss-roll)
    grpc_port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    server = start_server(SHIPPED_CHECKPOINT, log, SWIRL_MODELS=str(ROOT / "checkpoints"), SWIRL_GRPC_PORT=str(grpc_port))
    try:
        yield Live(server.url, f"127.0.0.1:{grpc_port}")
    finally:
        stop_server(server)


@pytest.fixture(scope="session")
def live_server(live: Live) -> str:
    """Base URL of the real server (``live``)."""
    return live.url


@pytest.fixture(scope="session")
def live_grpc(live: Live) -> str:
    """host:port of the real server's gRPC service (``live``)."""
    return live.grpc
