"""The supervisor of several server processes: uvicorn's, with SIGHUP meaning "reload models"
and one listening socket per process.

uvicorn's supervisor answers SIGHUP with a rolling restart: each process is replaced by a
fresh one that loads everything again. A fresh process cannot keep an old version serving
when the new one fails verification (it never had the old one), and it warms every model
up again; so here SIGHUP is forwarded to every server process instead, and each reloads its
models in place (``app.reload``) without stopping. A process that is still starting gets
the signal once it is ready (it may have read the folders before they changed); SIGINT,
SIGTERM, SIGTTIN and SIGTTOU keep uvicorn's meaning.

uvicorn's supervisor gives every process the one socket, and the processes race to accept
on it: asyncio accepts every pending connection in one go, so the process whose event loop
wakes first takes a burst nearly whole. 64 concurrent connections split 49/15, 52/12, 48/16
between two processes (measured), and the busier process set the burst's time. Here each
process listens on its own socket bound to the same address with SO_REUSEPORT, and the kernel
spreads new connections over the sockets by hashing each connection's addresses. The
supervisor binds each socket (so a port in use fails at start, and port 0 picks one port for
all), hands it to its process and closes its own copy: a process that dies takes its socket
with it, and new connections go to the sockets still listening until its replacement starts.
Where SO_REUSEPORT is missing, every process shares one socket, as in uvicorn.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

logger = logging.getLogger("uvicorn.error")


def reuse_port_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def bind_reuse_port(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) with SO_REUSEPORT, not yet listening (the process that
    serves it listens), inheritable by a spawned process."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class Supervisor(Multiprocess):
    def __init__(self, config: Config) -> None:
        self._reuse_port = reuse_port_supported()
        if self._reuse_port:
            try:
                first = bind_reuse_port(config.host, config.port)
            except OSError as exc:  # the port is taken, or the host is not ours: as uvicorn does
                logger.error(exc)
                sys.exit(STARTUP_FAILURE)
            self._address = (config.host, int(first.getsockname()[1]))
            self._spare = [first]  # bound, not yet handed to a process
            logger.info("Serving on http://%s:%d, one SO_REUSEPORT socket per process", *self._address)
            super().__init__(config, sockets=[])
        else:
            super().__init__(config, sockets=[config.bind_socket()])

    def _new_process(self) -> Process:
        """A started server process with its own listening socket (or the shared one)."""
        if not self._reuse_port:
            process = Process(self.config, self.sockets)
            process.start()
            return process
        sock = self._spare.pop() if self._spare else bind_reuse_port(*self._address)
        try:
            process = Process(self.config, [sock])
            process.start()  # spawned with its own copy of the descriptor
        finally:
            sock.close()
        return process

    def init_processes(self) -> None:
        self._reload_pending: list[Process] = []
        for _ in range(self.processes_num):
            self.processes.append(self._new_process())

    def restart_all(self) -> None:
        """uvicorn's rolling restart, each replacement with its own socket (SIGHUP reloads models
        instead: ``handle_hup``)."""
        for index, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._new_process()
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                return
            old.terminate()
            old.join()
            self.processes[index] = new

    def handle_ttin(self) -> None:
        logger.info("Received SIGTTIN, increasing the number of processes.")
        self.processes_num += 1
        self.processes.append(self._new_process())

    def handle_hup(self) -> None:
        logger.info("Received SIGHUP, asking every server process to reload its models.")
        self._reload_pending = list(self.processes)
        self._forward_reloads()

    def keep_subprocess_alive(self) -> None:
        """uvicorn's: replace a process that died or hangs (each replacement with its own
        socket), stop everything if one failed before it ever served; then forward reloads."""
        if self.should_exit.is_set():
            return
        for index, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung: kill it
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                logger.error(f"Child process [{process.pid}] failed to start, stopping the parent process.")
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            logger.info(f"Child process [{process.pid}] died")
            try:
                self.processes[index] = self._new_process()
            except OSError as exc:  # e.g. the port could not be bound again (taken meanwhile): stop
                logger.error(f"Cannot start a replacement process: {exc}; stopping.")
                self.should_exit.set()
                return
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
