"""Swirl on Ray Serve: the same FastAPI app in every replica, one engine per replica.

Each replica builds the app with :func:`app.main.create_app` inside its own process
(``@serve.ingress`` late-bound through ``__serve_build_asgi_app__``), so every replica has
the plain server's endpoints, errors, limits and metrics, and its own checkpoint, device
and worker. Serve runs the app's lifespan as part of the replica's start-up: the
checkpoint is loaded, verified and warmed up before Serve routes the replica a single
request, and a checkpoint that fails verification fails the replica's start. The Serve
health check asks the app's own ``/readyz``.

    python -m app.ray_serve                              # a local Ray + deploy/ray/serve.yaml
    python -m app.ray_serve --address 10.0.0.5:6379      # deploy onto a running cluster
    serve run deploy/ray/serve.yaml                      # the same config through Ray's CLI

Needs the optional extra: ``pip install -r requirements/ray.txt`` (``swirl[ray]``).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar, Literal

import httpx
import ray
import yaml
from fastapi import FastAPI
from pydantic import BaseModel, Field
from ray import serve
from ray.serve import Application
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.main import create_app

log = logging.getLogger("swirl.ray")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "deploy" / "ray" / "serve.yaml"
DEPLOYMENT = "swirl"
REPLICA_HEADER = "x-swirl-replica"
NODE_HEADER = "x-swirl-node"


class SwirlArgs(BaseModel):
    """The application's ``args`` in a Serve config (``applications[].args``)."""

    settings: dict[str, Any] = Field(default_factory=dict, description="SWIRL_* settings by name (lower case); the environment fills the rest")
    num_cpus: float = Field(1.0, gt=0, description="CPUs reserved per replica; torch uses as many threads unless torch_threads is set")
    num_gpus: float | Literal["auto"] = Field("auto", description="GPUs per replica: a number, or 'auto' = 1 when the cluster has GPUs, else 0")


def resolve_checkpoint(path: Path) -> Path:
    """A relative checkpoint is looked up in the working directory, then in the project root.

    Ray starts replica processes in its own working directory, not the one `serve run` or
    `python -m app.ray_serve` was started from.
    """
    if path.is_absolute() or path.exists():
        return path
    candidate = ROOT / path
    return candidate if candidate.exists() else path


class ReplicaHeaders:
    """ASGI middleware: every response names the replica and the Ray node that produced it."""

    def __init__(self, app: ASGIApp, replica: str, node: str) -> None:
        self.app = app
        self.headers = [(REPLICA_HEADER.encode(), replica.encode()), (NODE_HEADER.encode(), node.encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class ReplicaLostAs503:
    """ASGI middleware for Serve's HTTP proxies: a replica lost mid-request is a 503 with Retry-After.

    When a replica's process dies with a request in flight, Serve's proxy ends the request
    without starting a response, and uvicorn under it answers a bare ``500 Internal Server
    Error``. A Swirl request is seeded, so idempotent: it can be sent again at once, and
    another replica gives the same points. So such an ending becomes Swirl's own JSON error
    with status 503 and ``Retry-After: 1``, the answer a full queue gets. Responses the
    app started (its own 500 for non-finite values included) pass through untouched.
    """

    BODY = b'{"error":"the replica serving this request stopped; send the request again (the same seed gives the same points)"}'
    HEADERS: ClassVar[list[tuple[bytes, bytes]]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
        (b"retry-after", b"1"),
    ]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_note(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception:
            if started:
                raise
            log.warning("request ended without a response (its replica stopped); answering 503", exc_info=True)
        if not started:
            await send({"type": "http.response.start", "status": 503, "headers": self.HEADERS})
            await send({"type": "http.response.body", "body": self.BODY, "more_body": False})


def proxy_middlewares() -> list[Middleware]:
    """For ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=app.ray_serve:proxy_middlewares`` on every node."""
    return [Middleware(ReplicaLostAs503)]


PROXY_CALLBACK_ENV = {"RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": "app.ray_serve:proxy_middlewares"}


@serve.ingress()
class SwirlReplica:
    """One Serve replica: the whole Swirl app with its own engine (built in the replica process)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        values = dict(settings)
        if not values.get("torch_threads") and not os.environ.get("SWIRL_TORCH_THREADS"):
            # as many chain threads as CPUs Ray reserved for this replica (not one per core of the node)
            cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
            values["torch_threads"] = max(1, math.floor(cpus))
        # Replicas serve HTTP through Serve's proxy; gRPC would have every replica of a node bind one
        # port. Serve's own gRPC proxy is the way there (docs/clients.md): off unless the config sets grpc_port.
        values.setdefault("grpc_port", 0)
        self.settings = Settings(**values)
        self.settings.checkpoint = resolve_checkpoint(self.settings.checkpoint)
        self.swirl_app: FastAPI | None = None  # (`app` is the wrapper's own property)

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Called by Serve in the replica after ``__init__``; Serve then runs the app's lifespan."""
        context = serve.get_replica_context()
        app = create_app(self.settings)
        app.add_middleware(ReplicaHeaders, replica=context.replica_id.unique_id, node=ray.get_runtime_context().get_node_id())
        self.swirl_app = app
        return app

    async def check_health(self) -> None:
        """Serve's periodic health check: the app's own ``/readyz`` must answer 200."""
        if self.swirl_app is None:
            raise RuntimeError("the app has not been built")
        transport = httpx.ASGITransport(app=self.swirl_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://replica") as http:
            response = await http.get("/readyz")
        if response.status_code != 200:
            raise RuntimeError(f"/readyz answered {response.status_code}: {response.text[:200]}")


SwirlDeployment = serve.deployment(
    name=DEPLOYMENT,
    # The replica batches concurrent requests into one chain, so it must be sent many at once.
    max_ongoing_requests=64,
    health_check_period_s=5.0,
    health_check_timeout_s=10.0,
    graceful_shutdown_wait_loop_s=1.0,
    graceful_shutdown_timeout_s=30.0,
)(SwirlReplica)


def gpus_per_replica(requested: float | Literal["auto"]) -> float:
    if requested != "auto":
        return float(requested)
    return 1.0 if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


def build_app(args: Mapping[str, Any] | None = None) -> Application:
    """The Serve application for ``import_path: app.ray_serve:build_app`` (args: :class:`SwirlArgs`)."""
    parsed = SwirlArgs.model_validate(dict(args or {}))
    Settings(**parsed.settings)  # reject a bad setting here, with its name, not in every replica
    actor_options: dict[str, Any] = {"num_cpus": parsed.num_cpus}
    gpus = gpus_per_replica(parsed.num_gpus)
    if gpus:
        actor_options["num_gpus"] = gpus
    return SwirlDeployment.options(ray_actor_options=actor_options).bind(parsed.settings)


def read_config(path: Path) -> dict[str, Any]:
    with open(path) as handle:
        config = yaml.safe_load(handle)
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a Serve config is a mapping")
    return config


def deploy(config: Mapping[str, Any], timeout_s: float = 300.0) -> None:
    """Deploy a Serve config (as `serve run config.yaml` does) and wait until every application runs."""
    from ray.serve._private.api import serve_start  # what `serve run` calls; pinned with ray in requirements/ray.txt
    from ray.serve.config import gRPCOptions
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(dict(config))
    client = serve_start(
        http_options=schema.http_options.model_dump(),
        proxy_location=schema.proxy_location,
        grpc_options=gRPCOptions(**schema.grpc_options.model_dump()),
    )
    client.deploy_apps(schema, _blocking=False)
    names = [app.name for app in schema.applications]
    deadline = time.monotonic() + timeout_s
    while True:
        status = serve.status().applications
        states = {name: status[name].status if name in status else "NOT_STARTED" for name in names}
        failed = {
            f"{name}/{deployment}": info.message or status[name].message
            for name in names
            if name in status and status[name].status == "DEPLOY_FAILED"
            for deployment, info in status[name].deployments.items()
        }
        if failed:
            raise RuntimeError(f"deployment failed: {failed}")
        if all(state == "RUNNING" for state in states.values()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"applications not running after {timeout_s:g} s: {states}")
        time.sleep(0.5)


def start_local_ray(num_cpus: int | None, num_gpus: int | None = None) -> None:
    """A Ray on this machine for as long as this process runs: no dashboard, Swirl's proxy middleware."""
    os.environ.update(PROXY_CALLBACK_ENV)  # inherited by the proxies this Ray starts
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        include_dashboard=False,
        namespace="serve",
        # a short temp dir: Ray's socket paths must stay under the 107-byte limit
        _temp_dir=os.environ.get("RAY_TMPDIR", os.path.join(tempfile.gettempdir(), "ray")),
    )


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.ray_serve", description="Deploy Swirl on Ray Serve and serve until Ctrl-C or SIGTERM.")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help=f"Serve config file (default {DEFAULT_CONFIG.relative_to(ROOT)})")
    parser.add_argument("--address", help="a running Ray cluster (host:port); default: start a local one for as long as this runs")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray (default: all cores)")
    parser.add_argument("--num-gpus", type=int, help="GPUs of the local Ray (default: detected)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = read_config(args.config)
    if args.address:  # its nodes set RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH themselves (deploy/kuberay)
        ray.init(address=args.address, namespace="serve")
    else:
        start_local_ray(args.num_cpus, args.num_gpus)
    signal.signal(signal.SIGTERM, _stop)  # after ray.init, which installs its own handler
    try:
        deploy(config)
        http = config.get("http_options", {})
        log.info("Swirl is serving on http://%s:%s (Ctrl-C stops it)", http.get("host", "127.0.0.1"), http.get("port", 8000))
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        log.info("shutting down")
    except (RuntimeError, TimeoutError, ValueError) as exc:
        log.critical("cannot deploy: %s", exc)
        return 1
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
