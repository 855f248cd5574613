"""The loaded service: settings, the model repository, the worker that owns the engine, metrics."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import Depends, Request

from app.config import Settings
from app.errors import ServiceUnavailable
from app.metrics import Metrics
from app.serving.models import ModelRepository
from app.serving.response_cache import ResponseCache
from app.serving.worker import Worker
from model.checkpoint import Checkpoint
from model.device import resolve_device
from model.engine import Engine
from model.graphs import tick_graphs

log = logging.getLogger("swirl.service")


class ForwardGate:
    """Bounded admission for /forward: at most ``max_points`` points computed at once, else 503."""

    def __init__(self, max_points: int) -> None:
        self.max_points = max_points
        self.busy = 0
        self._lock = threading.Lock()

    def enter(self, n: int) -> bool:
        with self._lock:
            if self.busy and self.busy + n > self.max_points:
                return False
            self.busy += n
            return True

    def leave(self, n: int) -> None:
        with self._lock:
            self.busy -= n


@dataclass
class Service:
    settings: Settings
    models: ModelRepository
    worker: Worker
    metrics: Metrics
    forward_gate: ForwardGate
    response_cache: ResponseCache
    ready: bool = False

    @classmethod
    def load(cls, settings: Settings, metrics: Metrics) -> Service:
        """Load and verify every model onto the configured device (raises CheckpointError)."""
        device = resolve_device(settings.device)
        threads = settings.resolved_torch_threads(int(os.environ.get("SWIRL_PROCESSES", "1")))
        torch.set_num_threads(threads)
        # The engine thread gives up the GIL in every torch op and waits to get it back while the
        # event loop runs; with Python's 5 ms interval a tick of a dozen ops can wait tens of ms.
        sys.setswitchinterval(settings.switch_interval_ms / 1000)
        engine = Engine(
            device,
            tick_rows=settings.max_batch_points or None,
            one_at_a_time=not settings.batching,
            tick_graphs=tick_graphs if settings.cuda_graphs else None,
        )
        models = ModelRepository(settings, device, metrics)
        worker = Worker(
            engine,
            metrics,
            resolve_model=models.served,
            max_queue=settings.max_queue,
            max_queue_work=settings.max_queue_work,
            request_timeout_s=settings.request_timeout_s,
        )
        models.attach(worker)
        cache = ResponseCache(settings.response_cache_bytes, metrics)
        removed = worker.on_version_removed

        def version_removed(key: Hashable) -> None:
            if removed is not None:
                removed(key)
            cache.drop_version(key)

        worker.on_version_removed = version_removed
        models.load_all()
        log.info("engine on %s: %d rows per tick, %d torch thread(s)", device, engine.tick_rows, threads)
        return cls(settings, models, worker, metrics, ForwardGate(settings.max_forward_points), cache)

    # The default model's, for callers that name no model.

    @property
    def checkpoint(self) -> Checkpoint:
        return self.models.get().checkpoint

    @property
    def schedule_json(self) -> bytes:
        return self.models.get().schedule_json

    @property
    def model_info(self) -> dict[str, Any]:
        return self.models.get().info

    def forward(self, t: int, n: int, seed: int, model: str | None = None) -> np.ndarray:
        """n draws of q(x_t | x_0) on a fresh, seeded swiss roll, (n, 2) float32 (CPU, no network)."""
        return self.models.get(model).forward(t, n, seed)


async def get_service(request: Request) -> Service:
    """The loaded service. ``async`` on purpose: FastAPI runs a plain ``def`` dependency in its
    thread pool, a thread hop (and GIL hand-offs) on every request for an attribute lookup."""
    service: Service | None = getattr(request.app.state, "service", None)
    if service is None:  # only reachable when the app is driven without its lifespan
        raise ServiceUnavailable("not ready: the model is not loaded yet", "starting")
    return service


ServiceDep = Annotated[Service, Depends(get_service)]
