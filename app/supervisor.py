"""The supervisor of several server processes: uvicorn's, with SIGHUP meaning "reload models".

uvicorn's supervisor answers SIGHUP with a rolling restart: each process is replaced by a
fresh one that loads everything again. A fresh process cannot keep an old version serving
when the new one fails verification (it never had the old one), and it warms every model
up again; so here SIGHUP is forwarded to every server process instead, and each reloads its
models in place (``app.reload``) without stopping. A process that is still starting gets
the signal once it is ready (it may have read the folders before they changed); SIGINT,
SIGTERM, SIGTTIN and SIGTTOU keep uvicorn's meaning.
"""

from __future__ import annotations

import logging
import os
import signal

from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

logger = logging.getLogger("uvicorn.error")


class Supervisor(Multiprocess):
    def init_processes(self) -> None:
        self._reload_pending: list[Process] = []
        super().init_processes()

    def handle_hup(self) -> None:
        logger.info("Received SIGHUP, asking every server process to reload its models.")
        self._reload_pending = list(self.processes)
        self._forward_reloads()

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        self._forward_reloads()

    def _forward_reloads(self) -> None:
        waiting: list[Process] = []
        for process in self._reload_pending:
            if process not in self.processes or process.pid is None or process.exitcode is not None:
                continue  # replaced or gone: its successor loads the folders as they are now
            if not process.is_ready(timeout=1):
                waiting.append(process)
                continue
            try:
                os.kill(process.pid, signal.SIGHUP)
            except ProcessLookupError:
                continue
            logger.info(f"Asked server process [{process.pid}] to reload its models")
        self._reload_pending = waiting

    @property
    def startup_failed(self) -> bool:
        """A server process failed before serving (the supervisor then stops them all)."""
        return any(process.exitcode == STARTUP_FAILURE for process in self.processes)
