"""``python -m app`` (or ``swirl-serve``): serve with uvicorn on SWIRL_HOST:SWIRL_PORT."""

from __future__ import annotations

import uvicorn

from app.config import Settings


def main() -> None:
    settings = Settings()
    uvicorn.run(
        "app.main:app",
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_s) or None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
