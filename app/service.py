"""The loaded service: settings, checkpoint, worker, metrics, and the answers computed once."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import Depends, Request

from app.config import Settings
from app.encoding import dumps
from app.errors import ServiceUnavailable
from app.metrics import Metrics
from app.worker import ServedModel, Worker
from model.checkpoint import Checkpoint, load_checkpoint
from model.data import swiss_roll
from model.denoiser import NetDenoiser
from model.device import resolve_device
from model.diffusion import SAMPLERS, q_sample
from model.engine import Engine
from model.graphs import tick_graphs
from model.schedule import ScheduleTensors

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
    checkpoint: Checkpoint
    worker: Worker
    metrics: Metrics
    forward_tables: ScheduleTensors  # CPU tables for /forward
    forward_gate: ForwardGate
    schedule_json: bytes = b""
    model_info: dict[str, Any] = field(default_factory=dict)
    ready: bool = False

    @classmethod
    def load(cls, settings: Settings, metrics: Metrics) -> Service:
        """Load and verify the checkpoint onto the configured device (raises CheckpointError)."""
        device = resolve_device(settings.device)
        threads = settings.resolved_torch_threads(int(os.environ.get("SWIRL_PROCESSES", "1")))
        torch.set_num_threads(threads)
        checkpoint = load_checkpoint(settings.checkpoint, device)
        engine = Engine(
            device,
            tick_rows=settings.max_batch_points or None,
            one_at_a_time=not settings.batching,
            tick_graphs=tick_graphs if settings.cuda_graphs else None,
        )
        key = checkpoint.sha256
        engine.add_model(key, NetDenoiser(checkpoint.net, device))
        served = ServedModel(key=key, make_plan=checkpoint.plan)  # prediction type and student grids folded in

        def resolve_model(name: str | None) -> ServedModel:
            return served

        worker = Worker(
            engine,
            metrics,
            resolve_model=resolve_model,
            max_queue=settings.max_queue,
            max_queue_work=settings.max_queue_work,
            request_timeout_s=settings.request_timeout_s,
        )
        service = cls(settings, checkpoint, worker, metrics, checkpoint.schedule.to("cpu"), ForwardGate(settings.max_forward_points))
        service.schedule_json = dumps(schedule_payload(checkpoint))
        service.model_info = model_payload(checkpoint)
        log.info("engine on %s: %d rows per tick, %d torch thread(s)", device, engine.tick_rows, threads)
        return service

    def forward(self, t: int, n: int, seed: int) -> np.ndarray:
        """n draws of q(x_t | x_0) on a fresh, seeded swiss roll, (n, 2) float32 (CPU, no network)."""
        norm = self.checkpoint.normalisation
        x0 = torch.from_numpy(norm.normalise(swiss_roll(n, norm.noise, seed=seed))).float()
        noise = torch.randn((n, 2), generator=torch.Generator().manual_seed(seed))
        return q_sample(self.forward_tables, x0, torch.full((n,), t), noise).numpy()


def schedule_payload(checkpoint: Checkpoint) -> dict[str, Any]:
    s = checkpoint.schedule
    return {
        "timesteps": s.timesteps,
        "kind": s.config.kind,
        "beta_start": float(s.betas[0]),
        "beta_end": float(s.betas[-1]),
        "alpha_bar_final": s.alpha_bar_final,
        "beta": s.betas.tolist(),
        "alpha": s.alphas.tolist(),
        "alpha_bar": s.alpha_bars.tolist(),
        "posterior_variance": s.posterior_variance.tolist(),
        "posterior_mean_coef_x0": s.posterior_mean_coef_x0.tolist(),
        "posterior_mean_coef_xt": s.posterior_mean_coef_xt.tolist(),
    }


def model_payload(checkpoint: Checkpoint) -> dict[str, Any]:
    meta, norm = checkpoint.meta, checkpoint.normalisation
    return {
        "id": checkpoint.sha256,
        "name": checkpoint.path.name,
        "format_version": meta["format_version"],
        "net": checkpoint.net_config.to_dict(),
        "parameter_count": checkpoint.net.parameter_count(),
        "schedule": {**checkpoint.schedule.config.to_dict(), "alpha_bar_final": checkpoint.schedule.alpha_bar_final},
        "data": {"noise": norm.noise, "mean": list(norm.mean), "scale": norm.scale},
        "training": meta.get("training", {}),
        "evaluation": meta.get("evaluation", {}),
        "samplers": [s for s in SAMPLERS if s != "student" or checkpoint.student_grids],
        "student": checkpoint.student,  # distilled students: teacher, grids, method; null otherwise
        "student_steps": sorted(checkpoint.student_grids),  # the step counts the student sampler takes
        "device": str(checkpoint.device),
    }


def get_service(request: Request) -> Service:
    service: Service | None = getattr(request.app.state, "service", None)
    if service is None:  # only reachable when the app is driven without its lifespan
        raise ServiceUnavailable("not ready: the model is not loaded yet", "starting")
    return service


ServiceDep = Annotated[Service, Depends(get_service)]
