"""``python -m app`` (or ``swirl-serve``): serve with uvicorn on SWIRL_HOST:SWIRL_PORT."""

from __future__ import annotations

import math
import signal
from types import FrameType

import uvicorn

from app.config import Settings
from app.logs import configure_logging


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main() -> None:
    settings = Settings()
    # uvicorn handles SIGTERM itself (stop accepting, finish in-flight requests, lifespan
    # shutdown) and then re-raises it to the handler installed before it; with the default
    # one the process would die of the signal (exit status 143) after a clean shutdown.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        "app.main:app",
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=math.ceil(settings.graceful_shutdown_s),
        access_log=False,  # app.request_context writes the access log, with request ids
        log_config=None,  # uvicorn's own records go through app.logs' handler and format
        proxy_headers=False,  # X-Forwarded-For is judged by SWIRL_TRUSTED_PROXIES (app.client_address), not uvicorn
    )


if __name__ == "__main__":
    main()
