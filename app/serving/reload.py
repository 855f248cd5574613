"""Reload triggers: SIGHUP in every server process, and ``POST /admin/reload``.

Each server process owns its own engine and model repository, so each must reload
itself. ``python -m app`` with several processes runs them under ``app.process.supervisor``,
which forwards a SIGHUP it receives to every process (uvicorn's own supervisor would
restart them instead). In every process the app answers SIGHUP by reloading its
repository in a thread while it keeps serving (``ModelRepository.reload``). The admin
route reloads the process that answers it (and reports what happened there), then sends
SIGHUP to the supervisor, whose pid ``python -m app`` puts in ``SWIRL_SUPERVISOR_PID``,
so the other processes follow; in the answering process that second reload finds nothing
changed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading

from starlette.concurrency import run_in_threadpool

from app.serving.models import ModelRepository, ReloadReport

log = logging.getLogger("swirl.reload")

SUPERVISOR_ENV = "SWIRL_SUPERVISOR_PID"


class Reloader:
    """Runs repository reloads off the event loop; a SIGHUP during a reload queues one more."""

    def __init__(self) -> None:
        self.models: ModelRepository | None = None
        self._task: asyncio.Future[None] | None = None
        self._again = False
        self._installed = False

    def install(self) -> None:
        """Answer SIGHUP from now on (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            return
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.request)
        self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._installed = False

    def attach(self, models: ModelRepository) -> None:
        """The repository is loaded: run a reload asked for while it was loading."""
        self.models = models
        if self._again:
            self.request()

    def request(self) -> None:
        """SIGHUP: reload in the background (once more after the current one, if one runs)."""
        log.info("SIGHUP: reloading models")
        if self.models is None or (self._task is not None and not self._task.done()):
            self._again = True
            return
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            self._again = False
            try:
                await self.reload_now()
            except Exception:
                log.exception("model reload failed")
            if not self._again:
                return

    async def reload_now(self) -> ReloadReport:
        if self.models is None:
            raise RuntimeError("no models loaded yet")
        return await run_in_threadpool(self.models.reload)

    async def wait(self) -> None:
        """Until the background reload (if any) is done (tests, shutdown)."""
        if self._task is not None:
            await asyncio.shield(self._task)


def notify_other_processes() -> bool:
    """Ask the supervisor to forward SIGHUP to every server process; False with one process."""
    pid = os.environ.get(SUPERVISOR_ENV)
    if not pid:
        return False
    try:
        os.kill(int(pid), signal.SIGHUP)
    except (ValueError, ProcessLookupError, PermissionError) as exc:
        log.error("could not signal the supervisor (%s=%s): %s", SUPERVISOR_ENV, pid, exc)
        return False
    return True
