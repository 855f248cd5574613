"""Shared fixtures: a tiny trained checkpoint, an in-process app client, a real server (tests/servers.py)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
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
    values: dict[str, object] = {"checkpoint": checkpoint, "device": "cpu", "max_points": 20_000}
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


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a real server on the shipped models, or SWIRL_BASE_URL when set (e.g. a container)."""
    external = os.environ.get("SWIRL_BASE_URL")
    if external:
        yield external.rstrip("/")
        return
    # every shipped model, as the image serves them (the default is swiss-roll)
    server = start_server(SHIPPED_CHECKPOINT, tmp_path_factory.mktemp("server") / "server.log", SWIRL_MODELS=str(ROOT / "checkpoints"))
    try:
        yield server.url
    finally:
        stop_server(server)
