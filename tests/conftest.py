"""Shared fixtures: a tiny trained checkpoint, an in-process app client, a real uvicorn server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(checkpoint: Path, log_path: Path, ready_timeout: float = 180.0, **env: str) -> Server:
    """``python -m app`` on a free loopback port; waits for /readyz = 200."""
    port = free_port()
    environment = {
        **os.environ,
        "SWIRL_CHECKPOINT": str(checkpoint),
        "SWIRL_DEVICE": "cpu",
        "SWIRL_HOST": "127.0.0.1",
        "SWIRL_PORT": str(port),
        "SWIRL_LOG_LEVEL": "info",
        "SWIRL_WORKERS": "1",  # one process unless a test asks for more: /readyz and /metrics then describe it alone
        **env,
    }
    handle = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=environment, stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return Server(url, process, log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server not ready in {ready_timeout} s:\n{log_path.read_text(errors='replace')}")


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


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
