"""A server with a one-request queue, for the retry tests: a long chain holds the queue while
the client's requests get 503 with Retry-After."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, start_server, stop_server

LONG_N = 200_000  # a ddpm chain of this many points keeps the tiny model busy for seconds


@pytest.fixture(scope="module")
def tiny_queue_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("tiny-queue") / "server.log"
    server = start_server(tiny_checkpoint, log, SWIRL_MAX_QUEUE="1", SWIRL_MAX_POINTS=str(LONG_N), SWIRL_TORCH_THREADS="1")
    try:
        yield server
    finally:
        stop_server(server)


def in_flight(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith("swirl_requests_in_flight "):
            return float(line.split()[1])
    return 0.0


def rejected(url: str, reason: str) -> float:
    prefix = f'swirl_rejected_total{{reason="{reason}"}} '
    return sum(float(line.split()[-1]) for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines() if line.startswith(prefix))


def hold_the_queue(url: str) -> threading.Thread:
    """Start a long chain in a thread; return once the server holds it (the one queue slot is taken)."""
    # unseeded: a seeded answer may come from the response cache, never taking the slot
    thread = threading.Thread(target=lambda: httpx.get(f"{url}/sample", params={"n": LONG_N}, timeout=300), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while in_flight(url) < 1:
        assert time.monotonic() < deadline, "the long request never arrived"
        time.sleep(0.01)
    return thread


def models_digest(body: dict[str, Any]) -> dict[str, Any]:
    """What every server process answers alike in GET /models: the default and each model's name, id,
    state and default flag (``process`` and the load and warm-up timings are each process's own)."""
    keep = ("name", "id", "state", "default")
    return {"default": body["default"], "models": [{key: model[key] for key in keep} for model in body["models"]]}
