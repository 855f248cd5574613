"""``create_app()``: the FastAPI application, its lifespan and its routes.

Start-up loads and verifies every model (``app.serving.models``), moves them to the device, warms
them up and starts the worker; only then does ``/readyz`` answer 200. A missing or corrupt
default checkpoint stops start-up with a clear message (the process exits non-zero);
another corrupt model is left out and shown unavailable. From the start of the lifespan
the process answers SIGHUP by reloading its models (``app.serving.reload``). Shutdown refuses new
samples, finishes the admitted ones, then stops the worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.telemetry import TelemetryConfig
from prometheus_client.multiprocess import mark_process_dead
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse

from app import errors
from app.config import Settings
from app.edge import cors, rate_limit
from app.edge.client_address import ClientResolver, parse_networks
from app.edge.head import HeadAsGet
from app.edge.logs import configure_logging
from app.edge.middleware import BodyLimit, RequestMetrics
from app.edge.request_context import RequestContext
from app.edge.security_headers import SecurityHeaders
from app.metrics import Metrics, multiprocess_dir
from app.routes import admin, density, docs, info, models, ops, sampling, stream, v2
from app.serving.reload import Reloader
from app.serving.service import Service
from model.checkpoint import CheckpointError

log = logging.getLogger("swirl")

STATIC = Path(__file__).parent / "static"
DESCRIPTION = """
A DDPM (Ho et al. 2020) trained on the 2D swiss roll, served as JSON point clouds.

All points are in the model's normalised space; `GET /model` gives `data.mean` and
`data.scale` to map them back: `raw = points × scale + mean`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level, settings.log_format)
        started = time.perf_counter()
        reloader = app.state.reloader = Reloader()
        reloader.install()
        try:
            service = await run_in_threadpool(Service.load, settings, metrics)
        except (CheckpointError, RuntimeError, ValueError) as exc:
            reloader.uninstall()
            log.critical("cannot start: %s", exc)
            raise
        app.state.service = service
        await run_in_threadpool(service.models.warm_up_all)
        service.worker.start(asyncio.get_running_loop() if settings.engine_on_loop(service.worker.engine.device.type) else None)
        grpc_server = None
        if settings.grpc_port:
            from app.routes import grpc_server as grpc_serving  # grpcio loads only when gRPC is on

            try:
                grpc_server = await grpc_serving.start(service, app.state.rate_limiter, settings, app.version)
            except RuntimeError as exc:
                reloader.uninstall()
                log.critical("cannot start: %s", exc)
                await run_in_threadpool(service.worker.stop, settings.graceful_shutdown_s)
                raise
        service.ready = True
        metrics.ready.set(1)
        reloader.attach(service.models)
        default = service.models.get()
        log.info(
            "ready in %.2f s: %d model(s), default %s (%s) on %s",
            time.perf_counter() - started,
            len(service.models.names),
            default.name,
            default.id[:12],
            default.checkpoint.device,
        )
        try:
            yield
        finally:
            reloader.uninstall()
            await reloader.wait()
            service.ready = False
            metrics.ready.set(0)
            log.info("shutting down: finishing admitted requests")
            if grpc_server is not None:
                await grpc_serving.stop(grpc_server, settings.graceful_shutdown_s)
            await run_in_threadpool(service.worker.stop, settings.graceful_shutdown_s)
            log.info("worker stopped")
            if multiprocess_dir() is not None:
                mark_process_dead(os.getpid())  # this process's live gauges leave the sum

    # FastAPI's native OpenTelemetry looks up the global providers on every request: only when asked for
    telemetry: TelemetryConfig | None = None if settings.otel else {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI(title="Swirl", version="0.1.0", description=DESCRIPTION, lifespan=lifespan, docs_url=None, redoc_url=None, telemetry=telemetry)
    errors.install(app)
    docs.install(app)  # /docs and /redoc with self-hosted assets under /docs-static/
    app.include_router(sampling.router)
    app.include_router(stream.router)
    app.include_router(density.router)
    app.include_router(info.router)
    app.include_router(models.router)
    app.include_router(admin.router)
    app.include_router(ops.router)
    app.include_router(v2.router)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # outermost last: HEAD → security headers → request id, client, access log → metrics → CORS → rate limit → body limit
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        path_limits={"/log_prob": (settings.log_prob_body_bytes, "SWIRL_MAX_LOG_PROB_POINTS")},
        u_bytes=settings.u_body_bytes(),
    )
    rate_limit.install(app, rate_limiter(settings, metrics))
    cors.install(app, cors.parse_origins(settings.cors_origins))
    app.add_middleware(RequestMetrics, metrics=metrics)
    resolver = ClientResolver(parse_networks(settings.trusted_proxies))
    app.add_middleware(RequestContext, resolver=resolver, access_log=settings.access_log)
    app.add_middleware(SecurityHeaders, docs_pages=docs.DOCS_PAGES)  # app.docs_url is None: app/routes/docs.py serves them
    app.add_middleware(HeadAsGet)
    return app


def rate_limiter(settings: Settings, metrics: Metrics) -> rate_limit.RateLimiter:
    """SWIRL_RATE_LIMIT* as token buckets (None where a limit is off), this process's share of them.

    Each of the SWIRL_WORKERS processes keeps its own buckets and gets 1/processes of every
    rate and burst, so a client spreading its connections over the processes never gets more
    than the settings in total (see app/edge/rate_limit.py).
    """
    share = 1.0 / max(1, int(os.environ.get("SWIRL_PROCESSES", "1")))
    compute = requests = None
    if settings.rate_limit > 0:
        burst = settings.rate_limit_burst or settings.rate_limit
        compute = rate_limit.TokenBuckets(settings.rate_limit * share, burst * share)
    if settings.rate_limit_requests > 0:
        burst = settings.rate_limit_requests_burst or max(1.0, settings.rate_limit_requests)
        requests = rate_limit.TokenBuckets(settings.rate_limit_requests * share, burst * share)
    return rate_limit.RateLimiter(compute, requests, metrics)


app = create_app()
