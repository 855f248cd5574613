"""``python -m app`` (or ``swirl-serve``): serve with uvicorn on SWIRL_HOST:SWIRL_PORT.

With ``SWIRL_WORKERS`` > 1 (the default on a multi-core CPU host), uvicorn's supervisor runs
that many server processes on one shared socket (accepted by load: app.process.balance, app.process.supervisor), each with its own engine and an even share
of the cores as torch threads: one Python process keeps only about one core busy, because
its event loop and its engine share the GIL. Per-request seeds make every process give
the same answer. Metrics go through Prometheus' multiprocess mode, so ``/metrics`` sums
every process whichever one answers.

SIGHUP reloads the models in every process without a restart: the processes run under
``app.process.supervisor``, which forwards the signal to each; a single process answers it itself.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import shutil
import signal
import sys
import tempfile
from types import FrameType

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from app.config import Settings
from app.edge.logs import configure_logging
from app.process.supervisor import Supervisor
from app.serving.reload import SUPERVISOR_ENV

log = logging.getLogger("swirl")


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _uses_cuda(settings: Settings) -> bool:
    if settings.device == "cpu":
        return False
    import torch

    return settings.device == "cuda" or torch.cuda.is_available()


def main() -> None:
    settings = Settings()
    workers = settings.resolved_workers(_uses_cuda(settings))
    os.environ["SWIRL_PROCESSES"] = str(workers)  # each process takes cores / workers torch threads
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        directory = tempfile.mkdtemp(prefix="swirl-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
    # uvicorn handles SIGTERM itself (stop accepting, finish in-flight requests, lifespan
    # shutdown) and then re-raises it to the handler installed before it; with the default
    # one the process would die of the signal (exit status 143) after a clean shutdown.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    configure_logging(settings.log_level, settings.log_format)
    config = uvicorn.Config(
        "app.main:app",
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level=settings.log_level,
        timeout_graceful_shutdown=math.ceil(settings.graceful_shutdown_s),
        access_log=False,  # app.edge.request_context writes the access log, with request ids
        log_config=None,  # uvicorn's own records go through app.edge.logs' handler and format
        proxy_headers=False,  # X-Forwarded-For is judged by SWIRL_TRUSTED_PROXIES (app.edge.client_address), not uvicorn
    )
    if workers > 1:
        os.environ[SUPERVISOR_ENV] = str(os.getpid())  # POST /admin/reload signals the supervisor
        supervisor = Supervisor(config)
        with contextlib.suppress(KeyboardInterrupt):
            supervisor.run()
        if supervisor.startup_failed:
            sys.exit(STARTUP_FAILURE)
        return
    os.environ.pop(SUPERVISOR_ENV, None)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the app's lifespan answers it with a reload
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    main()
