"""The gRPC server beside HTTP: grpcio's asyncio server on the app's own event loop, serving
``inference.GRPCInferenceService`` (``app/routes/grpc_v2.py``) with the app's engine.

The app's lifespan starts it on SWIRL_HOST:SWIRL_GRPC_PORT (0: no gRPC) once the models are
loaded, and stops it first on shutdown: new calls are refused (UNAVAILABLE) while the calls in
flight get SWIRL_GRACEFUL_SHUTDOWN_S to finish, before the worker stops.

Several server processes (SWIRL_WORKERS > 1) each bind the gRPC port with SO_REUSEPORT, and the
kernel spreads new connections over them by a hash of their addresses. The HTTP socket's rule
(accept only while no busier than the least busy sibling: ``app.process.balance``) needs the
process to decide when to accept, which grpcio does inside its C core and does not expose; and a
gRPC client multiplexes all its calls over one long-lived connection, so any per-connection rule
places a client's whole load on one process either way: a client that wants every process opens
several channels. With one process SO_REUSEPORT stays off, so a port already in use stops the
start-up with the reason instead of sharing the port with a stranger.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from app.config import Settings
from app.edge.rate_limit import RateLimiter
from app.metrics import Metrics
from app.routes.grpc_v2 import InferenceServicer
from app.serving.service import Service
from app.wire.grpc_messages import METHODS, SERVICE, method_path

log = logging.getLogger("swirl.grpc")


Handler = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


def observed(call: Handler, path: str, metrics: Metrics) -> Handler:
    """``call``, counted and timed in the HTTP requests' metrics: endpoint = the call's path,
    method ``GRPC``, status = the gRPC status code's name (OK, INVALID_ARGUMENT, CANCELLED, …)."""
    latency = metrics.latency.labels(endpoint=path)

    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = time.perf_counter()
        status = "UNKNOWN"
        try:
            answer = await call(request, context)
            status = "OK"
            return answer
        except asyncio.CancelledError:
            status = "CANCELLED"
            raise
        except grpc.aio.AbortError:
            code = context.code()
            status = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
            raise
        finally:
            latency.observe(time.perf_counter() - started)
            metrics.requests.labels(endpoint=path, method="GRPC", status=status).inc()

    return handle


def handlers(servicer: InferenceServicer, metrics: Metrics) -> grpc.GenericRpcHandler:
    """The service's calls as grpcio handlers, each (de)serialising its messages, counted and timed."""
    methods: dict[str, Any] = {
        name: grpc.unary_unary_rpc_method_handler(
            observed(getattr(servicer, name), method_path(name), metrics),
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )
        for name, (request, response) in METHODS.items()
    }
    return grpc.method_handlers_generic_handler(SERVICE, methods)


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def start(service: Service, limiter: RateLimiter | None, settings: Settings, server_version: str) -> grpc.aio.Server:
    """A started gRPC server on SWIRL_HOST:SWIRL_GRPC_PORT (RuntimeError when the port cannot be bound)."""
    shared = int(os.environ.get("SWIRL_PROCESSES", "1")) > 1
    options = [
        ("grpc.so_reuseport", 1 if shared else 0),
        ("grpc.max_receive_message_length", settings.max_body_bytes),  # SWIRL_MAX_BODY_BYTES, as HTTP bodies
        ("grpc.max_send_message_length", -1),  # answers are bounded by SWIRL_MAX_RESPONSE_POINTS
    ]
    server = grpc.aio.server(options=options)
    server.add_generic_rpc_handlers((handlers(InferenceServicer(service, limiter, server_version), service.metrics),))
    where = address(settings.host, settings.grpc_port)
    try:
        server.add_insecure_port(where)
    except RuntimeError as exc:
        raise RuntimeError(f"cannot listen for gRPC on {where} (SWIRL_GRPC_PORT): {exc}") from None
    await server.start()
    log.info("gRPC (Open Inference Protocol) on %s%s", where, ", shared with the other processes (SO_REUSEPORT)" if shared else "")
    return server


async def stop(server: grpc.aio.Server, grace_s: float) -> None:
    """Refuse new calls, give the ones in flight ``grace_s`` seconds, then end them."""
    await server.stop(grace_s)
    log.info("gRPC server stopped")
