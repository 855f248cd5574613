"""Helpers for the in-process contract tests: an app with chosen settings, metrics parsing."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from app.main import create_app
from app.serving.service import Service
from tests.conftest import make_settings


@dataclass
class Running:
    app: FastAPI
    http: httpx.AsyncClient

    @property
    def service(self) -> Service:
        service: Service = self.app.state.service
        return service


AppFactory = Callable[..., AbstractAsyncContextManager[Running]]


@pytest.fixture
def running_app(tiny_checkpoint: Path) -> AppFactory:
    """``async with running_app(max_queue=1, ...) as r``: an app on the tiny checkpoint with overridden settings."""

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[Running]:
        app = create_app(make_settings(tiny_checkpoint, **overrides))
        async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://swirl.test", timeout=60.0) as http:
                yield Running(app, http)

    return factory


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_client(tiny_checkpoint: Path) -> AsyncIterator[httpx.AsyncClient]:
    """One app per module (cheaper than one per test); its modules set ``pytestmark = MODULE_LOOP``.

    SWIRL_MAX_RESPONSE_POINTS is lowered to 2000 so that the response-size limit is easy to reach.
    """
    app = create_app(make_settings(tiny_checkpoint, max_response_points=2_000))
    async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://swirl.test", timeout=60.0) as http:
            yield http


MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Gate:
    """The worker's chains wait at ``event``; ``waiting`` counts the requests held there."""

    event: threading.Event
    waiting: int = 0

    def set(self) -> None:
        self.event.set()


@contextmanager
def worker_held(service: Service) -> Iterator[Gate]:
    """Make the engine wait before each tick until the gate is opened (opened on exit). An engine on
    the event loop skips its ticks meanwhile (the loop must go on serving); one on its own thread blocks."""
    engine = service.worker.engine
    gate = Gate(threading.Event())
    tick = engine.tick
    on_loop = service.worker.on_loop

    def gated() -> Any:
        gate.waiting = engine.in_flight
        if on_loop and not gate.event.is_set():
            return []  # no tick this pass; the next pass asks again
        gate.event.wait(30)
        return tick()

    engine.tick = gated  # type: ignore[method-assign]
    try:
        yield gate
    finally:
        gate.set()
        engine.tick = tick  # type: ignore[method-assign]


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text → {(sample name, sorted labels): value}."""
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def as_points(body: dict[str, Any], key: str = "points") -> np.ndarray:
    array = np.asarray(body[key], dtype=np.float64)
    assert array.ndim == 2 and array.shape[1] == 2, array.shape
    return array


def assert_names_field(response: httpx.Response, field: str, status: int = 422) -> None:
    """The error is JSON whose message names ``field`` and (for 422s) whose detail[].loc ends with it."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert isinstance(body.get("error"), str) and field in body["error"], body
    if status == 422:
        locs = [item.get("loc", []) for item in body.get("detail", [])]
        assert any(field in loc for loc in locs), body
